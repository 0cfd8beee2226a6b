//! Example 3: change data capture keeps a search index in sync with a database (DDIA 11,
//! "Keeping Systems in Sync" and "Change Data Capture").
//!
//! The products table's stream feeds the `cdc-indexer` Lambda, which maintains an inverted index
//! table. This module writes to the products table, watches the index catch up, searches it, and
//! verifies it against the table; the `backfill` scenario loads products that predate the stream.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_sdk_dynamodb::types::{AttributeValue, StreamSpecification};
use cdc_indexer::{BatchStats, DynamoStore, STATS_ID, backfill_products};
use labs_core::search_index::{self, IndexDiff, IndexEntry, Product, ProductOp};
use labs_infra::{Engine, SdkContext, WaitContext, stack};
use serde::{Deserialize, Serialize};

use crate::cli::{BenchArgs, RunArgs};
use crate::driver::dynamodb as db;
use crate::output::{self, Output};
use crate::target::Target;

const DEFAULT_OPERATIONS: usize = 300;
/// How long the index may take to catch up before `run` and `verify` give up.
const CATCH_UP: Duration = Duration::from_secs(120);
const SCENARIOS: [&str; 2] = ["workload", "backfill"];
/// Products written before the stream existed, in the backfill scenario.
const LEGACY_PRODUCTS: usize = 40;

/// The names of this example's resources (as `infra/stacks/example-3.toml` declares them).
struct Tables {
    products: String,
    index: String,
    checkpoints: String,
    indexer: String,
}

impl Tables {
    fn of(target: &Target) -> Self {
        let p = &target.prefix;
        Self {
            products: format!("{p}-ex3-products"),
            index: format!("{p}-ex3-search-index"),
            checkpoints: format!("{p}-ex3-indexer-checkpoints"),
            indexer: format!("{p}-ex3-cdc-indexer"),
        }
    }
}

/// An index row as this module reads it (the indexer also stores the sequence number).
#[derive(Deserialize)]
struct IndexRow {
    term: String,
    product_id: String,
}

/// The products table and the index table, read at (nearly) the same moment.
struct Snapshot {
    products: BTreeMap<String, Product>,
    index: BTreeSet<IndexEntry>,
    /// Items of the products table that are not products (no `id`, odd types), by key.
    odd_items: Vec<String>,
}

impl Snapshot {
    async fn read(target: &Target, tables: &Tables) -> Result<Self> {
        let client = &target.clients.dynamodb;
        let (products, odd_items) = db::scan_typed::<Product>(client, &tables.products).await?;
        let (rows, _) = db::scan_typed::<IndexRow>(client, &tables.index).await?;
        Ok(Self {
            products: products.into_iter().map(|p| (p.id.clone(), p)).collect(),
            index: rows.into_iter().map(|r| (r.term, r.product_id)).collect(),
            odd_items,
        })
    }

    fn expected(&self) -> BTreeSet<IndexEntry> {
        search_index::expected_index(self.products.values())
    }

    fn diff(&self) -> IndexDiff {
        search_index::diff_index(&self.expected(), &self.index)
    }
}

/// The indexer's counters (`#stats` in the checkpoint table): what it saw, redeliveries included.
async fn indexer_stats(target: &Target, tables: &Tables) -> Result<BatchStats> {
    Ok(db::get(&target.clients.dynamodb, &tables.checkpoints, &[("product_id", STATS_ID)]).await?.unwrap_or_default())
}

async fn apply_op(target: &Target, tables: &Tables, op: &ProductOp) -> Result<()> {
    let client = &target.clients.dynamodb;
    match op {
        ProductOp::Put(product) => db::put(client, &tables.products, product).await,
        ProductOp::Delete { id } => db::delete(client, &tables.products, ("id", id)).await,
    }
}

async fn write_ops(target: &Target, tables: &Tables, ops: &[ProductOp], message: &str) -> Result<()> {
    let bar = output::progress(ops.len() as u64, message);
    for op in ops {
        apply_op(target, tables, op).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Waits until the index equals what the table implies; returns the time it took.
async fn wait_for_index(target: &Target, tables: &Tables, timeout: Duration, what: &str) -> Result<Option<Duration>> {
    let spinner = output::spinner(what);
    let waited = db::wait_until_converged(
        timeout,
        || async {
            {
                let diff = Snapshot::read(target, tables).await?.diff();
                Ok(diff.missing.len() + diff.extra.len())
            }
        },
        |remaining| spinner.set_message(format!("{what}: {remaining} index rows still differ")),
    )
    .await;
    spinner.finish_and_clear();
    waited
}

/// Products matching every word of `query`, found the way a search service would: one Query on
/// the index table per term, then the intersection.
async fn search(target: &Target, tables: &Tables, query: &str) -> Result<BTreeSet<String>> {
    let terms = search_index::terms(query);
    let mut result: Option<BTreeSet<String>> = None;
    for term in &terms {
        let mut ids = BTreeSet::new();
        let mut start = None;
        loop {
            let page = target
                .clients
                .dynamodb
                .query()
                .table_name(&tables.index)
                .key_condition_expression("term = :t")
                .expression_attribute_values(":t", AttributeValue::S(term.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .doing(format!("querying {} for '{term}'", tables.index))?;
            for item in page.items() {
                if let Some(AttributeValue::S(id)) = item.get("product_id") {
                    ids.insert(id.clone());
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        result = Some(match result {
            None => ids,
            Some(so_far) => so_far.intersection(&ids).cloned().collect(),
        });
    }
    Ok(result.unwrap_or_default())
}

#[derive(Serialize)]
struct SearchResult {
    query: String,
    from_index: BTreeSet<String>,
    from_table: BTreeSet<String>,
    agree: bool,
}

/// Runs the sample queries for this data (and the learner's own, first) both ways and shows them.
async fn show_searches(
    target: &Target,
    tables: &Tables,
    snapshot: &Snapshot,
    own_query: Option<&str>,
    out: Output,
) -> Result<Vec<SearchResult>> {
    let mut queries = sample_queries(&snapshot.products);
    if let Some(q) = own_query {
        queries.insert(0, q.to_owned());
    }
    let mut results = Vec::new();
    for query in &queries {
        let from_index = search(target, tables, query).await?;
        // The truth: scan every product and test it directly, as the index is meant to spare us.
        let wanted = search_index::terms(query);
        let from_table: BTreeSet<String> = snapshot
            .products
            .values()
            .filter(|p| !wanted.is_empty() && wanted.is_subset(&search_index::product_terms(p)))
            .map(|p| p.id.clone())
            .collect();
        let agree = from_index == from_table;
        results.push(SearchResult { query: query.clone(), from_index, from_table, agree });
    }
    out.table(
        "Searches: the index (one Query per word) against a full scan of the table",
        &["query", "matches via index", "matches via table scan", "agree"],
        results.iter().map(|r| {
            vec![
                format!("\"{}\"", r.query),
                preview(&r.from_index),
                preview(&r.from_table),
                if r.agree { "yes" } else { "NO" }.to_owned(),
            ]
        }),
    );
    Ok(results)
}

fn preview(ids: &BTreeSet<String>) -> String {
    let shown: Vec<&str> = ids.iter().take(6).map(String::as_str).collect();
    let more = if ids.len() > 6 { format!(" (+{} more)", ids.len() - 6) } else { String::new() };
    if ids.is_empty() { "none".to_owned() } else { format!("{}{more}", shown.join(", ")) }
}

/// Queries worth running on this data: a product's first two name words, and a single word.
fn sample_queries(products: &BTreeMap<String, Product>) -> Vec<String> {
    let mut queries = Vec::new();
    if let Some(product) = products.values().find(|p| p.name.split_whitespace().count() >= 2) {
        queries.push(product.name.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
    }
    queries.push("red shoes".to_owned());
    queries.push(search_index::MATERIALS[0].to_owned());
    queries.dedup();
    queries
}

fn stats_rows(before: &BatchStats, after: &BatchStats) -> Vec<Vec<String>> {
    before
        .counters()
        .iter()
        .zip(after.counters())
        .map(|((name, b), (_, a))| vec![name.replace('_', " "), a.saturating_sub(*b).to_string()])
        .collect()
}

#[derive(Serialize)]
struct RunReport {
    scenario: String,
    operations: usize,
    products: usize,
    index_rows: usize,
    caught_up_seconds: Option<f64>,
    indexer_saw: BTreeMap<String, u64>,
    backfill: Option<cdc_indexer::BackfillReport>,
    searches: Vec<SearchResult>,
}

fn saw(before: &BatchStats, after: &BatchStats) -> BTreeMap<String, u64> {
    before
        .counters()
        .iter()
        .zip(after.counters())
        .map(|((n, b), (_, a))| ((*n).to_owned(), a.saturating_sub(*b)))
        .collect()
}

pub async fn run(target: &Target, args: &RunArgs, out: Output) -> Result<()> {
    let tables = Tables::of(target);
    db::describe_table(&target.clients.dynamodb, &tables.products, "example-3").await?;
    if let Some(query) = &args.query
        && args.scenario.is_none()
    {
        return run_query(target, &tables, query, out).await;
    }
    let scenario = args.scenario.as_deref().unwrap_or("workload");
    if !SCENARIOS.contains(&scenario) {
        bail!("example-3 has no scenario '{scenario}': use one of {}", SCENARIOS.join(", "));
    }
    let operations = args.count.unwrap_or(DEFAULT_OPERATIONS);
    if operations == 0 {
        bail!("--count must be at least 1");
    }
    let seed = args.seed.unwrap_or(1);
    target.confirm(&format!("Write {operations} changes to {}?", tables.products))?;
    let settings = Settings { operations, seed, query: args.query.as_deref() };
    match scenario {
        "backfill" => run_backfill(target, &tables, &settings, out).await,
        _ => run_workload(target, &tables, &settings, out).await,
    }
}

/// What a scenario is asked to do.
#[derive(Clone, Copy)]
struct Settings<'a> {
    operations: usize,
    seed: u64,
    /// A learner's own query, searched besides the sample ones.
    query: Option<&'a str>,
}

async fn run_query(target: &Target, tables: &Tables, query: &str, out: Output) -> Result<()> {
    if search_index::terms(query).is_empty() {
        bail!("the query '{query}' has no words to search for (letters and digits)");
    }
    let ids = search(target, tables, query).await?;
    let mut rows = Vec::new();
    for id in &ids {
        let product: Option<Product> = db::get(&target.clients.dynamodb, &tables.products, &[("id", id)]).await?;
        rows.push(match product {
            Some(p) => vec![
                p.id,
                p.name,
                p.description.unwrap_or_default(),
                p.price.map(|x| format!("{x:.2}")).unwrap_or_default(),
            ],
            // The index answered before the deletion reached it: it is eventually consistent.
            None => vec![id.clone(), "(no longer in the table)".into(), String::new(), String::new()],
        });
    }
    out.table(
        &format!("{} products match \"{query}\" (every word must match)", ids.len()),
        &["id", "name", "description", "price"],
        rows,
    );
    out.json(&ids)
}

async fn run_workload(target: &Target, tables: &Tables, settings: &Settings<'_>, out: Output) -> Result<()> {
    let Settings { operations, seed, query } = *settings;
    let ops = search_index::workload(seed, operations, (operations / 3).max(1));
    let kinds = count_kinds(&ops);
    out.say(format!(
        "1. Writing {operations} changes to {} (seed {seed}): {} puts, {} deletes. Nothing writes the index directly:\n   \
         the table's stream carries every change to the {} Lambda, which derives the index from it.",
        tables.products,
        kinds.0,
        kinds.1,
        tables.indexer
    ));
    let before = indexer_stats(target, tables).await?;
    write_ops(target, tables, &ops, "writing products").await?;
    let wrote_at = Instant::now();

    out.say("2. Waiting for the index to catch up with the table (it is derived data: eventually consistent)");
    let caught_up = wait_for_index(target, tables, CATCH_UP, "index catching up").await?;
    let lag = wrote_at.elapsed();
    let after = indexer_stats(target, tables).await?;
    out.table(
        "   Change events as the indexer saw them during this run (redeliveries included)",
        &["counter", "count"],
        stats_rows(&before, &after),
    );
    let snapshot = Snapshot::read(target, tables).await?;
    match caught_up {
        Some(_) => out.say(format!(
            "   In sync {:.1} s after the last write: {} products, {} index rows.",
            lag.as_secs_f64(),
            snapshot.products.len(),
            snapshot.index.len()
        )),
        None => out.say("   The index did NOT catch up in time (see `labs verify example-3`)."),
    }

    out.say("\n3. Searching the derived index");
    let searches = show_searches(target, tables, &snapshot, query, out).await?;
    out.say(format!(
        "\nTry your own: labs run example-3 --query \"red shoes\"{}; then labs verify example-3",
        prefix_flag(target)
    ));
    out.json(&RunReport {
        scenario: "workload".into(),
        operations,
        products: snapshot.products.len(),
        index_rows: snapshot.index.len(),
        caught_up_seconds: caught_up.map(|_| lag.as_secs_f64()),
        indexer_saw: saw(&before, &after),
        backfill: None,
        searches,
    })?;
    if caught_up.is_none() {
        bail!("the index did not catch up with the products table within {} s", CATCH_UP.as_secs());
    }
    Ok(())
}

fn count_kinds(ops: &[ProductOp]) -> (usize, usize) {
    let puts = ops.iter().filter(|op| matches!(op, ProductOp::Put(_))).count();
    (puts, ops.len() - puts)
}

fn prefix_flag(target: &Target) -> String {
    if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
}

/// Turns the products table's stream off or on (a new stream, with a new ARN, each time).
async fn set_stream(target: &Target, table: &str, enabled: bool) -> Result<()> {
    let spec = if enabled {
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
            .build()?
    } else {
        StreamSpecification::builder().stream_enabled(false).build()?
    };
    let client = &target.clients.dynamodb;
    client
        .update_table()
        .table_name(table)
        .stream_specification(spec)
        .send()
        .await
        .doing(format!("turning the stream of {table} {}", if enabled { "on" } else { "off" }))?;
    use aws_sdk_dynamodb::client::Waiters;
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(Duration::from_secs(300))
        .await
        .waiting(format!("waiting for {table}"))?;
    Ok(())
}

/// Products that exist before the stream does are not in the change log. Show them missing, then
/// backfill them from a scan while writes continue, and end in sync.
async fn run_backfill(target: &Target, tables: &Tables, settings: &Settings<'_>, out: Output) -> Result<()> {
    let Settings { operations, seed, query } = *settings;
    let stack = stack::load("example-3")?;
    let engine = Engine::connect(&target.clients, &target.prefix).await?;
    let quiet = |_: &str| {};

    // 1. A database that predates change data capture: no stream, no indexer.
    out.say(format!(
        "1. Starting over without CDC: the stream of {} off, all three tables emptied, then products written\n   \
         the way a database did before change data capture existed",
        tables.products
    ));
    let mapping_only = stack::Stack {
        example: stack.example.clone(),
        event_source_mappings: stack.event_source_mappings.clone(),
        ..Default::default()
    };
    engine.destroy(&mapping_only, &quiet).await?;
    set_stream(target, &tables.products, false).await?;
    // Emptied with the stream off, so no REMOVE events reach the indexer's new stream.
    for table in [&tables.products, &tables.index, &tables.checkpoints] {
        db::clear(&target.clients.dynamodb, table).await?;
    }
    let legacy_ops = search_index::workload(seed.wrapping_add(7_919), 2 * LEGACY_PRODUCTS, LEGACY_PRODUCTS);
    write_ops(target, tables, &legacy_ops, "writing pre-CDC products").await?;
    let legacy: BTreeMap<String, Product> = search_index::apply_ops(&legacy_ops);

    // 2. Turn CDC on: a new stream, and the mapping recreated on it (the engine's ordinary `up`).
    out.say("2. Turning the stream back on and connecting the indexer to it (labs up example-3)");
    crate::commands::up_stack(target, &stack, false, Output::quiet()).await?;
    // Later writes start at the last quarter of the legacy ids: those race with the backfill,
    // the rest of the legacy products never appear in the log.
    let ops = shift_ids(search_index::workload(seed, operations, operations.max(60) / 4), LEGACY_PRODUCTS * 3 / 4);
    let (during_gap, during_backfill) = ops.split_at(ops.len() / 2);
    write_ops(target, tables, during_gap, "writing changes through the stream").await?;
    let spinner = output::spinner("waiting for the indexer to apply the logged changes");
    wait_logged_changes_applied(target, tables, during_gap).await?;
    spinner.finish_and_clear();
    let snapshot = Snapshot::read(target, tables).await?;
    let gap = snapshot.diff();
    let missing_products: BTreeSet<&String> = gap.missing.iter().map(|(_, id)| id).collect();
    out.say(format!(
        "   The indexer applied every logged change, yet {} of the {} products in the table are missing\n   \
         from the index: they were written before the stream existed, so no change event will ever mention them.",
        missing_products.len(),
        snapshot.products.len()
    ));

    // 3. Backfill from a scan while writes go on.
    out.say("3. Backfilling from a scan of the table while writes continue");
    let store = DynamoStore::new(target.clients.dynamodb.clone(), tables.index.clone(), tables.checkpoints.clone());
    let writer = async {
        for op in during_backfill {
            apply_op(target, tables, op).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(())
    };
    let backfill = async {
        let (scanned, _) = db::scan_typed::<Product>(&target.clients.dynamodb, &tables.products).await?;
        Ok::<_, anyhow::Error>(backfill_products(&store, &scanned).await?)
    };
    let spinner = output::spinner(&format!("backfilling while {} more changes are written", during_backfill.len()));
    let (written, report) = tokio::join!(writer, backfill);
    spinner.finish_and_clear();
    written?;
    let report = report?;
    out.table(
        "   Backfill: each scanned product is written only if no logged change has reached it yet",
        &["scanned", "written from the scan", "skipped: the log already covers it"],
        [vec![report.scanned.to_string(), report.written.to_string(), report.already_covered.to_string()]],
    );

    // 4. In sync, nothing lost, nothing resurrected.
    let caught_up = wait_for_index(target, tables, CATCH_UP, "index catching up").await?;
    let snapshot = Snapshot::read(target, tables).await?;
    let diff = snapshot.diff();
    let final_ids: BTreeSet<&String> = snapshot.products.keys().collect();
    let indexed_ids: BTreeSet<&String> = snapshot.index.iter().map(|(_, id)| id).collect();
    let legacy_still_there = legacy.keys().filter(|id| final_ids.contains(id)).count();
    let resurrected = indexed_ids.difference(&final_ids).count();
    let lost = final_ids
        .iter()
        .filter(|id| !search_index::product_terms(&snapshot.products[**id]).is_empty() && !indexed_ids.contains(*id))
        .count();
    out.table(
        "4. After the backfill",
        &["check", "result"],
        [
            vec!["pre-CDC products still in the table".into(), legacy_still_there.to_string()],
            vec!["products missing from the index (lost)".into(), lost.to_string()],
            vec!["deleted products still in the index (resurrected)".into(), resurrected.to_string()],
            vec!["index rows that differ from the table".into(), (diff.missing.len() + diff.extra.len()).to_string()],
        ],
    );
    let searches = show_searches(target, tables, &snapshot, query, out).await?;
    out.json(&RunReport {
        scenario: "backfill".into(),
        operations,
        products: snapshot.products.len(),
        index_rows: snapshot.index.len(),
        caught_up_seconds: caught_up.map(|d| d.as_secs_f64()),
        indexer_saw: BTreeMap::new(),
        backfill: Some(report),
        searches,
    })?;
    if !diff.is_empty() || caught_up.is_none() {
        bail!("after the backfill the index still differs from the table: run `labs verify example-3` for the rows");
    }
    out.say("   In sync: every product is searchable, and no deleted product came back.");
    Ok(())
}

/// Moves generated product ids (`p-0001`, ...) up by `offset`, so two workloads overlap only partly.
fn shift_ids(ops: Vec<ProductOp>, offset: usize) -> Vec<ProductOp> {
    let shift = |id: &str| -> String {
        let n: usize = id.trim_start_matches("p-").parse().unwrap_or(0);
        search_index::product_id(n.saturating_sub(1) + offset)
    };
    ops.into_iter()
        .map(|op| match op {
            ProductOp::Put(mut product) => {
                product.id = shift(&product.id);
                ProductOp::Put(product)
            }
            ProductOp::Delete { id } => ProductOp::Delete { id: shift(&id) },
        })
        .collect()
}

/// Waits until the indexer has applied every change in `logged`: each product they touch has a
/// checkpoint, and the index agrees with the table for those products.
async fn wait_logged_changes_applied(target: &Target, tables: &Tables, logged: &[ProductOp]) -> Result<()> {
    let touched: BTreeSet<&str> = logged.iter().map(ProductOp::id).collect();
    let client = &target.clients.dynamodb;
    let converged = db::wait_until_converged(
        CATCH_UP,
        || async {
            let (checkpoints, _) = db::scan_typed::<cdc_indexer::Checkpoint>(client, &tables.checkpoints).await?;
            let applied: BTreeSet<String> = checkpoints.into_iter().map(|c| c.product_id).collect();
            let unapplied = touched.iter().filter(|id| !applied.contains(**id)).count();
            let diff = Snapshot::read(target, tables).await?.diff();
            let behind = diff.missing.iter().chain(&diff.extra).filter(|(_, id)| touched.contains(id.as_str())).count();
            Ok(unapplied + behind)
        },
        |_| {},
    )
    .await?;
    if converged.is_none() {
        bail!("the indexer did not apply the logged changes within {} s", CATCH_UP.as_secs());
    }
    Ok(())
}

#[derive(Serialize)]
struct VerifyReport {
    products: usize,
    expected_rows: usize,
    index_rows: usize,
    missing: Vec<IndexEntry>,
    extra: Vec<IndexEntry>,
    odd_items: Vec<String>,
    passed: bool,
}

/// Scans the products table, computes the index it implies, scans the index, and reports every
/// difference. The index is derived asynchronously, so a difference is only final once it has
/// outlived a grace period in which the indexer could have caught up.
pub async fn verify(target: &Target, grace: Duration, out: Output) -> Result<bool> {
    let tables = Tables::of(target);
    db::describe_table(&target.clients.dynamodb, &tables.products, "example-3").await?;
    let mut snapshot = Snapshot::read(target, &tables).await?;
    if !snapshot.diff().is_empty() {
        wait_for_index(target, &tables, grace, "the index differs; giving the indexer time to catch up").await?;
        snapshot = Snapshot::read(target, &tables).await?;
    }
    let diff = snapshot.diff();
    let expected = snapshot.expected();
    let passed = diff.is_empty();
    let rows = |entries: &[IndexEntry]| -> String {
        let shown: Vec<String> = entries.iter().take(5).map(|(t, id)| format!("{t}->{id}")).collect();
        format!("{}{}", shown.join(", "), if entries.len() > 5 { ", ..." } else { "" })
    };
    out.table(
        &format!(
            "Verifying {} against {}: {} products imply {} index rows; the index has {}",
            tables.index,
            tables.products,
            snapshot.products.len(),
            expected.len(),
            snapshot.index.len()
        ),
        &["check", "result", "details"],
        [
            vec![
                "every word of every product is indexed".into(),
                if diff.missing.is_empty() { "ok" } else { "FAILED" }.into(),
                format!("{} missing {}", diff.missing.len(), rows(&diff.missing)),
            ],
            vec![
                "the index holds nothing the table does not".into(),
                if diff.extra.is_empty() { "ok" } else { "FAILED" }.into(),
                format!("{} extra {}", diff.extra.len(), rows(&diff.extra)),
            ],
        ],
    );
    if !snapshot.odd_items.is_empty() {
        out.say(format!(
            "note: {} items of {} are not products and were left out: {}",
            snapshot.odd_items.len(),
            tables.products,
            snapshot.odd_items.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    out.json(&VerifyReport {
        products: snapshot.products.len(),
        expected_rows: expected.len(),
        index_rows: snapshot.index.len(),
        missing: diff.missing,
        extra: diff.extra,
        odd_items: snapshot.odd_items,
        passed,
    })?;
    Ok(passed)
}

#[derive(Serialize)]
struct BenchReport {
    writes: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    handler_records: usize,
    handler_records_per_second: f64,
    optimized_build: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Time from a write to the products table until the index shows it (p50, p99), and the
/// handler's in-process throughput on a large synthetic batch.
pub async fn bench(target: &Target, args: &BenchArgs, out: Output) -> Result<()> {
    let tables = Tables::of(target);
    db::describe_table(&target.clients.dynamodb, &tables.products, "example-3").await?;
    let writes = args.count.unwrap_or(100).max(1);
    target.confirm(&format!("Write {writes} benchmark products to {}?", tables.products))?;
    let nonce = format!("{:08x}", rand::random::<u32>());
    let bar = output::progress(writes as u64, "write -> index latency");
    let mut latencies = Vec::with_capacity(writes);
    // A few writes in flight at once, so a hundred of them take seconds, not minutes.
    for chunk in (0..writes).collect::<Vec<_>>().chunks(8) {
        let probes = chunk.iter().map(|i| {
            let id = format!("bench-{nonce}-{i:04}");
            let term = format!("benchmark{nonce}n{i}");
            let tables = &tables;
            async move {
                let product =
                    Product { id: id.clone(), name: term.clone(), description: None, price: None, version: Some(1) };
                let started = Instant::now();
                db::put(&target.clients.dynamodb, &tables.products, &product).await?;
                loop {
                    let row: Option<serde::de::IgnoredAny> =
                        db::get(&target.clients.dynamodb, &tables.index, &[("term", &term), ("product_id", &id)])
                            .await?;
                    if row.is_some() {
                        return anyhow::Ok(started.elapsed());
                    }
                    if started.elapsed() > CATCH_UP {
                        bail!("{id} never reached the index");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        for latency in futures::future::join_all(probes).await {
            latencies.push(latency?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let cleanup = output::spinner("removing the benchmark products");
    for i in 0..writes {
        db::delete(&target.clients.dynamodb, &tables.products, ("id", &format!("bench-{nonce}-{i:04}"))).await?;
    }
    cleanup.finish_and_clear();
    latencies.sort();

    // Handler only: plan and apply a large batch against the in-memory store, on one core.
    let records = 50_000;
    let event = cdc_indexer::synthetic_batch(records, 7);
    let store = cdc_indexer::MemoryStore::default();
    let started = Instant::now();
    cdc_indexer::process_event(&store, &event).await.map_err(|e| anyhow::anyhow!("handler failed: {e}"))?;
    let handler_rate = records as f64 / started.elapsed().as_secs_f64();

    let report = BenchReport {
        writes,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: percentile(&latencies, 1.0),
        handler_records: records,
        handler_records_per_second: handler_rate,
        optimized_build: !cfg!(debug_assertions),
    };
    out.table(
        &format!(
            "Example 3 on {} ({} build)",
            target.kind.describe(),
            if report.optimized_build { "release" } else { "debug" }
        ),
        &["measure", "value", "goal"],
        [
            vec![
                format!("write -> index, p50 over {writes} writes"),
                format!("{:.0} ms", report.p50_ms),
                "< 1000 ms".into(),
            ],
            vec![
                format!("write -> index, p99 over {writes} writes"),
                format!("{:.0} ms", report.p99_ms),
                String::new(),
            ],
            vec![
                format!("indexer handler alone, {records}-record batch"),
                format!("{:.0} records/s", report.handler_records_per_second),
                ">= 100,000 records/s".into(),
            ],
        ],
    );
    out.json(&report)
}
