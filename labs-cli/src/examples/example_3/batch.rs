//! Scenario batch-vs-stream: the same search index computed by a periodic batch job (a full scan
//! of the table, "nightly") and by the CDC path, with the staleness of each measured.
//!
//! The batch job keeps its result in its own table with a `#snapshot` row: where the table's
//! change log stood when it scanned, and what the run saw. `verify` rebuilds the table as of
//! that position from the log (each item's old image) and checks the batch result against it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use labs_core::search_index::{self, IndexEntry, Product};
use serde::{Deserialize, Serialize};

use super::{CATCH_UP, IndexRow, Settings, Snapshot, Tables, count_kinds, inputs, wait_for_index, write_ops};
use crate::driver::dynamodb as db;
use crate::driver::table_stream::{self, Change, Tips};
use crate::output::Output;
use crate::target::Target;

/// The key of the batch table's row that describes its contents.
pub(super) const SNAPSHOT_KEY: &str = "#snapshot";

/// The `#snapshot` row: where the change log stood when the batch job scanned, and what the run
/// that wrote it observed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BatchSnapshot {
    term: String,
    product_id: String,
    /// The stream the positions belong to (turning the stream off and on makes a new one).
    pub stream_arn: String,
    pub taken_at_ms: u64,
    /// JSON of [`Tips`]: per shard, the last change the scan already contains.
    pub positions: String,
    pub rows: usize,
    /// The batch run before this one, and how many index rows it was behind the table when the
    /// run's second round of writes had reached the CDC index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_positions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_rows_seen: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdc_lag_ms: Option<u64>,
}

impl BatchSnapshot {
    pub fn tips(&self) -> Result<Tips> {
        serde_json::from_str(&self.positions).context("the batch snapshot's positions do not parse")
    }

    pub fn previous_tips(&self) -> Result<Option<Tips>> {
        self.previous_positions
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("the batch snapshot's previous positions do not parse")
    }
}

/// The batch table's result rows and its `#snapshot` row (absent before the first batch run).
pub(super) async fn read_batch(
    target: &Target,
    tables: &Tables,
) -> Result<(BTreeSet<IndexEntry>, Option<BatchSnapshot>)> {
    let client = &target.clients.dynamodb;
    let (rows, _) = db::scan_typed::<IndexRow>(client, &tables.batch_index).await?;
    let index = rows.into_iter().filter(|r| r.term != SNAPSHOT_KEY).map(|r| (r.term, r.product_id)).collect();
    let snapshot =
        db::get(client, &tables.batch_index, &[("term", SNAPSHOT_KEY), ("product_id", SNAPSHOT_KEY)]).await?;
    Ok((index, snapshot))
}

/// The table as it was at `tips`: each item changed since then goes back to the old image of its
/// first later change (or away, if that change created it).
pub(super) fn as_of<'a>(
    now: &BTreeMap<String, Product>,
    later: impl IntoIterator<Item = &'a Change<Product>>,
) -> BTreeMap<String, Product> {
    let mut past = now.clone();
    let mut rolled_back = BTreeSet::new();
    for change in later {
        if !rolled_back.insert(change.key.clone()) {
            continue;
        }
        match &change.old {
            Some(Ok(product)) => past.insert(change.key.clone(), product.clone()),
            // Created after the position, or not a product then.
            _ => past.remove(&change.key),
        };
    }
    past
}

/// The products table's change log, whole.
pub(super) async fn changes(target: &Target, arn: &str) -> Result<Vec<Change<Product>>> {
    table_stream::read_changes(&target.clients.dynamodb_streams, arn, "id").await
}

/// The index the table implied at `tips`, rebuilt from the table now and its change log.
pub(super) fn index_at(now: &BTreeMap<String, Product>, log: &[Change<Product>], tips: &Tips) -> BTreeSet<IndexEntry> {
    search_index::expected_index(as_of(now, table_stream::after(log, tips)).values())
}

fn millis_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One run of the batch job: note where the change log stands, scan the whole table, compute the
/// index, replace the batch table's contents with it.
async fn batch_job(
    target: &Target,
    tables: &Tables,
    previous: Option<(&Tips, usize, u64)>,
) -> Result<(BatchSnapshot, Tips)> {
    let client = &target.clients.dynamodb;
    let stream_arn = table_stream::stream_arn(client, &tables.products).await?;
    let tips = table_stream::tips(&changes(target, &stream_arn).await?);
    let taken_at_ms = millis_now();
    let (products, _) = db::scan_typed::<Product>(client, &tables.products).await?;
    let index = search_index::expected_index(&products);
    db::clear(client, &tables.batch_index).await?;
    let rows: Vec<IndexRow> = index
        .iter()
        .map(|(term, product_id)| IndexRow { term: term.clone(), product_id: product_id.clone() })
        .collect();
    db::put_all(client, &tables.batch_index, &rows).await?;
    let snapshot = BatchSnapshot {
        term: SNAPSHOT_KEY.into(),
        product_id: SNAPSHOT_KEY.into(),
        stream_arn,
        taken_at_ms,
        positions: serde_json::to_string(&tips)?,
        rows: rows.len(),
        previous_positions: previous.map(|(tips, _, _)| serde_json::to_string(tips)).transpose()?,
        stale_rows_seen: previous.map(|(_, stale, _)| stale),
        cdc_lag_ms: previous.map(|(_, _, lag)| lag),
    };
    db::put(client, &tables.batch_index, &snapshot).await?;
    Ok((snapshot, tips))
}

#[derive(Serialize)]
struct BatchReport {
    scenario: &'static str,
    operations: usize,
    products: usize,
    /// Index rows the batch result was behind the table after the writes between its runs.
    batch_stale_rows: usize,
    /// Products changed since the batch snapshot.
    batch_stale_products: usize,
    /// How old the batch result was when the next run replaced it.
    batch_age_ms: u64,
    /// From the last write until the CDC index equalled the table.
    cdc_lag_ms: u64,
    batch_rows_after_rerun_behind: usize,
}

pub(super) async fn run_batch_vs_stream(
    target: &Target,
    tables: &Tables,
    settings: &Settings<'_>,
    out: Output,
) -> Result<()> {
    let Settings { operations, seed, .. } = *settings;
    let ops = search_index::workload(seed, operations, (operations / 3).max(1));
    let (before_run, between_runs) = ops.split_at(ops.len() / 2);

    out.say(format!(
        "1. Writing {} changes to {} (seed {seed}); the CDC path indexes them as they come.",
        before_run.len(),
        tables.products
    ));
    write_ops(target, tables, before_run, "writing products").await?;
    if wait_for_index(target, tables, CATCH_UP, "CDC index catching up").await?.is_none() {
        bail!("the CDC index did not catch up within {} s", CATCH_UP.as_secs());
    }

    out.say(format!(
        "2. The batch job runs (\"nightly\"): a full scan of {}, the whole index computed again, written to {}.",
        tables.products, tables.batch_index
    ));
    let (first, first_tips) = batch_job(target, tables, None).await?;
    let first_at = Instant::now();

    let (puts, deletes) = count_kinds(between_runs);
    out.say(format!(
        "3. The day goes on: {} more changes ({puts} puts, {deletes} deletes) between two batch runs.",
        between_runs.len()
    ));
    write_ops(target, tables, between_runs, "writing products").await?;
    // Timed from the last write; the wait compares the two tables every 250 ms, so the lag is
    // known to within that (plus a scan of each).
    let Some(cdc_lag) = wait_for_index(target, tables, CATCH_UP, "CDC index catching up").await? else {
        bail!("the CDC index did not catch up within {} s", CATCH_UP.as_secs());
    };
    let cdc_lag_ms = cdc_lag.as_millis() as u64;
    let now = Snapshot::read(target, tables).await?;
    let (batch_index, _) = read_batch(target, tables).await?;
    let behind = search_index::diff_index(&now.expected(), &batch_index);
    let stale_rows = behind.missing.len() + behind.extra.len();
    let stale_products: BTreeSet<&String> = behind.missing.iter().chain(&behind.extra).map(|(_, id)| id).collect();
    let batch_age = first_at.elapsed();

    out.table(
        "4. The same index, two ways, right after the day's writes",
        &["path", "refreshed", "index rows behind the table", "stale for"],
        [
            vec![
                "CDC (table stream -> Lambda)".into(),
                "per change".into(),
                "0".into(),
                format!("{cdc_lag_ms} ms after the last write"),
            ],
            vec![
                format!("batch job (snapshot of {} rows)", first.rows),
                "per run".into(),
                format!("{stale_rows} ({} products changed since the scan)", stale_products.len()),
                format!("until the next run: {:.1} s here, up to 24 h on a nightly schedule", batch_age.as_secs_f64()),
            ],
        ],
    );

    show_one_input_of_each(target, &now.products, &first, &first_tips, out).await?;

    out.say("6. The next batch run catches up, all at once, and is stale again from the next write on.");
    let (second, _) = batch_job(target, tables, Some((&first_tips, stale_rows, cdc_lag_ms))).await?;
    let (rerun_index, _) = read_batch(target, tables).await?;
    let after_rerun = search_index::diff_index(&Snapshot::read(target, tables).await?.expected(), &rerun_index);
    let rerun_behind = after_rerun.missing.len() + after_rerun.extra.len();
    out.say(format!(
        "   Batch result: {} rows, {rerun_behind} behind the table. The CDC index caught up {cdc_lag_ms} ms after the last write;\n   \
         the batch result stayed {stale_rows} rows behind until its next run. A full scan costs the whole\n   \
         table every run, whatever changed; CDC costs each change once.\n\n\
         Check both from the data: labs verify example-3{}",
        second.rows,
        super::prefix_flag(target)
    ));
    out.json(&BatchReport {
        scenario: "batch-vs-stream",
        operations,
        products: now.products.len(),
        batch_stale_rows: stale_rows,
        batch_stale_products: stale_products.len(),
        batch_age_ms: batch_age.as_millis() as u64,
        cdc_lag_ms,
        batch_rows_after_rerun_behind: rerun_behind,
    })?;
    if stale_rows == 0 {
        bail!("the writes between the batch runs changed no index row: try a larger --count");
    }
    if rerun_behind != 0 {
        bail!("the second batch run is {rerun_behind} rows behind the table it just scanned");
    }
    Ok(())
}

/// Step 5: one record each path read, side by side (a row of the first scan, a change after it).
async fn show_one_input_of_each(
    target: &Target,
    now: &BTreeMap<String, Product>,
    scan: &BatchSnapshot,
    scan_tips: &Tips,
    out: Output,
) -> Result<()> {
    let client = &target.clients.dynamodb_streams;
    let whole_log = table_stream::read_records(client, &scan.stream_arn, &Tips::new()).await?;
    let since_scan = table_stream::read_records(client, &scan.stream_arn, scan_tips).await?;
    let Some(event) = inputs::pick_event(&since_scan) else { return Ok(()) };
    let key = inputs::key_of(&event.1).unwrap_or_default();
    let at_scan = as_of(now, table_stream::after(&changes(target, &scan.stream_arn).await?, scan_tips));
    let counts = inputs::changes_per_key(&whole_log);
    // The table as of the scan is what the scan read.
    let rows = inputs::compare(at_scan.get(key), at_scan.len(), event, counts.get(key).copied().unwrap_or(1));
    out.table(
        "5. What each path read: one input record of each, for the same product",
        &["", "batch job: a row of its scan", "CDC: an event of the change log"],
        rows.into_iter().map(Vec::from),
    );
    Ok(())
}

/// What the batch checks of `verify` found.
#[derive(Debug, Serialize)]
pub(super) struct BatchCheck {
    pub rows: usize,
    pub taken_at_ms: u64,
    /// Rows in which the batch result differs from the table as of its snapshot.
    pub differs_from_its_snapshot: Option<usize>,
    /// Rows it is behind the table now (staleness, not an error).
    pub behind_now: usize,
    /// The staleness the run reported, and what the change log says it was.
    pub stale_rows_seen: Option<usize>,
    pub stale_rows_in_log: Option<usize>,
    /// Why a check could not be made.
    pub note: Option<String>,
}

impl BatchCheck {
    pub fn passed(&self) -> bool {
        self.differs_from_its_snapshot.unwrap_or(0) == 0 && self.stale_rows_seen == self.stale_rows_in_log
    }
}

/// Checks the batch result against the table as of its snapshot, rebuilt from the change log,
/// and what the run reported against the log. `None` when the batch job never ran.
pub(super) async fn check_batch(target: &Target, tables: &Tables, now: &Snapshot) -> Result<Option<BatchCheck>> {
    let (batch_index, Some(snapshot)) = read_batch(target, tables).await? else { return Ok(None) };
    let behind_now = search_index::diff_index(&now.expected(), &batch_index);
    let mut check = BatchCheck {
        rows: batch_index.len(),
        taken_at_ms: snapshot.taken_at_ms,
        differs_from_its_snapshot: None,
        behind_now: behind_now.missing.len() + behind_now.extra.len(),
        stale_rows_seen: snapshot.stale_rows_seen,
        stale_rows_in_log: None,
        note: None,
    };
    let arn = table_stream::stream_arn(&target.clients.dynamodb, &tables.products).await?;
    if arn != snapshot.stream_arn {
        check.stale_rows_seen = None;
        check.note = Some(format!(
            "the stream of {} was replaced since the batch run (the backfill scenario turns it off and on): \
             the table as of the batch snapshot cannot be rebuilt; run --scenario batch-vs-stream again",
            tables.products
        ));
        return Ok(Some(check));
    }
    let log = changes(target, &arn).await?;
    let tips = snapshot.tips()?;
    let at_snapshot = index_at(&now.products, &log, &tips);
    let differs = search_index::diff_index(&at_snapshot, &batch_index);
    check.differs_from_its_snapshot = Some(differs.missing.len() + differs.extra.len());
    if let Some(previous) = snapshot.previous_tips()? {
        let before = search_index::diff_index(&at_snapshot, &index_at(&now.products, &log, &previous));
        check.stale_rows_in_log = Some(before.missing.len() + before.extra.len());
    }
    Ok(Some(check))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, name: &str) -> Product {
        Product { id: id.into(), name: name.into(), description: None, price: None, version: None }
    }

    fn change(key: &str, sequence: &str, old: Option<Product>) -> Change<Product> {
        Change { shard_id: "s".into(), sequence_number: sequence.into(), key: key.into(), old: old.map(Ok) }
    }

    #[test]
    fn the_table_as_of_a_position_undoes_every_later_change_once() {
        let now: BTreeMap<String, Product> =
            [product("a", "red shoe v3"), product("c", "new cup")].into_iter().map(|p| (p.id.clone(), p)).collect();
        let log = vec![
            change("a", "1", None),                              // created before the position
            change("b", "2", None),                              // created before the position
            change("a", "3", Some(product("a", "red shoe v1"))), // updated after it, twice
            change("a", "4", Some(product("a", "red shoe v2"))),
            change("b", "10", Some(product("b", "blue hat"))), // deleted after it
            change("c", "11", None),                           // created after it
        ];
        let tips: Tips = [("s".to_owned(), "2".to_owned())].into();
        let past = as_of(&now, table_stream::after(&log, &tips));
        let names: Vec<(&str, &str)> = past.values().map(|p| (p.id.as_str(), p.name.as_str())).collect();
        assert_eq!(names, vec![("a", "red shoe v1"), ("b", "blue hat")]);
        // Sequence numbers compare as numbers: "10" is after "2".
        let everything_logged: Tips = [("s".to_owned(), "11".to_owned())].into();
        assert_eq!(as_of(&now, table_stream::after(&log, &everything_logged)), now);
        // A shard the position does not name was born later: all of it is undone.
        let other_shard: Tips = [("t".to_owned(), "99".to_owned())].into();
        assert!(as_of(&now, table_stream::after(&log, &other_shard)).is_empty());
    }
}
