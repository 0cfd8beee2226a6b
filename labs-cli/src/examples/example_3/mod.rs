//! Example 3: change data capture keeps a search index in sync with a database (DDIA 11,
//! "Keeping Systems in Sync" and "Change Data Capture").
//!
//! The products table's stream feeds the `cdc-indexer` Lambda, which maintains an inverted index
//! table. This module writes to the products table, watches the index catch up, searches it, and
//! verifies it against the table; the `backfill` scenario loads products that predate the stream.

mod backfill;
mod batch;
mod bench;
mod inputs;
mod poison;
mod verify;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use cdc_indexer::{BatchStats, STATS_ID};
use labs_core::search_index::{self, IndexDiff, IndexEntry, Product, ProductOp};
use labs_infra::SdkContext;
use labs_infra::stack::{Lambda, Queue, Table};
use serde::{Deserialize, Serialize};

use super::{About, BenchOptions, RunOptions, VerifyOptions};
use crate::driver::dynamodb as db;
use crate::output::{self, Output};
use crate::target::Target;

// The resources `infra/stacks/example-3.toml` declares.
const PRODUCTS: Table = Table::new("ex3-products");
const SEARCH_INDEX: Table = Table::new("ex3-search-index");
/// The same index, computed by the batch job of the batch-vs-stream scenario.
const BATCH_INDEX: Table = Table::new("ex3-batch-index");
const CHECKPOINTS: Table = Table::new("ex3-indexer-checkpoints");
const INDEXER: Lambda = Lambda::new("ex3-cdc-indexer");
/// The mapping's on-failure destination: metadata of the batches it gave up on.
const FAILURES: Queue = Queue::new("ex3-failures");

pub const ABOUT: About = About::new(
    3,
    "Change data capture",
    "a derived search index kept in sync from the database's change log",
    "DynamoDB + Streams, Lambda",
);

const DEFAULT_OPERATIONS: usize = 300;
/// How long the index may take to catch up before `run` and `verify` give up.
const CATCH_UP: Duration = Duration::from_secs(120);
const SCENARIOS: [&str; 4] = ["workload", "backfill", "poison", "batch-vs-stream"];
/// Products written before the stream existed, in the backfill scenario.
const LEGACY_PRODUCTS: usize = 40;

example!(Example3 {
    scenarios: &SCENARIOS,
    resources: [PRODUCTS, SEARCH_INDEX, BATCH_INDEX, CHECKPOINTS, INDEXER, FAILURES],
    run: run,
    verify: verify::verify,
    bench: bench::bench,
});

/// The full names of this example's resources, under the target's prefix.
struct Tables {
    products: String,
    index: String,
    batch_index: String,
    checkpoints: String,
    indexer: String,
}

impl Tables {
    fn of(target: &Target) -> Self {
        Self {
            products: target.name(PRODUCTS),
            index: target.name(SEARCH_INDEX),
            batch_index: target.name(BATCH_INDEX),
            checkpoints: target.name(CHECKPOINTS),
            indexer: target.name(INDEXER),
        }
    }
}

/// An index row as this module reads it (the indexer also stores the sequence number).
#[derive(Serialize, Deserialize)]
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

/// How many index rows disagree with the products table right now (missing plus extra; 0 when
/// in sync): the dashboard's drift figure, computed as `verify` computes it.
pub async fn index_drift(target: &Target) -> Result<usize> {
    let diff = Snapshot::read(target, &Tables::of(target)).await?.diff();
    Ok(diff.missing.len() + diff.extra.len())
}

/// The indexer's counters (`#stats` in the checkpoint table): what it saw, redeliveries included.
async fn indexer_stats(target: &Target, tables: &Tables) -> Result<BatchStats> {
    Ok(db::get(&target.clients.dynamodb, &tables.checkpoints, &[("product_id", STATS_ID)]).await?.unwrap_or_default())
}

/// The indexer's counters once they count `records` more records than `before` (or after a few
/// seconds): it writes them after the index rows, so the index can be in sync a moment earlier.
async fn settled_stats(target: &Target, tables: &Tables, before: &BatchStats, records: u64) -> Result<BatchStats> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = indexer_stats(target, tables).await?;
        if after.records.saturating_sub(before.records) >= records || std::time::Instant::now() > deadline {
            return Ok(after);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
        let mut pages = target
            .clients
            .dynamodb
            .query()
            .table_name(&tables.index)
            .key_condition_expression("term = :t")
            .expression_attribute_values(":t", AttributeValue::S(term.clone()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.doing(format!("querying {} for '{term}'", tables.index))?;
            for item in page.items() {
                if let Some(AttributeValue::S(id)) = item.get("product_id") {
                    ids.insert(id.clone());
                }
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

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
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
        "backfill" => backfill::run_backfill(target, &tables, &settings, out).await,
        "poison" => poison::run_poison(target, &tables, &settings, out).await,
        "batch-vs-stream" => batch::run_batch_vs_stream(target, &tables, &settings, out).await,
        _ => workload::run_workload(target, &tables, &settings, out).await,
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

fn count_kinds(ops: &[ProductOp]) -> (usize, usize) {
    let puts = ops.iter().filter(|op| matches!(op, ProductOp::Put(_))).count();
    (puts, ops.len() - puts)
}

fn prefix_flag(target: &Target) -> String {
    if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
}
