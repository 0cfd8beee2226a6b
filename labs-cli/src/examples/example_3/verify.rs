//! Example 3's verifier: the index must equal what the products table implies.

use anyhow::Result;
use labs_core::search_index::IndexEntry;
use serde::Serialize;

use super::batch::{BatchCheck, check_batch};
use super::{Snapshot, Tables, VerifyOptions, wait_for_index};
use crate::driver::dynamodb as db;
use crate::output::Output;
use crate::target::Target;

#[derive(Serialize)]
struct VerifyReport {
    products: usize,
    expected_rows: usize,
    index_rows: usize,
    missing: Vec<IndexEntry>,
    extra: Vec<IndexEntry>,
    odd_items: Vec<String>,
    /// The batch job's result, when the batch-vs-stream scenario has run.
    batch: Option<BatchCheck>,
    passed: bool,
}

/// Scans the products table, computes the index it implies, scans the index, and reports every
/// difference. The index is derived asynchronously, so a difference is only final once it has
/// outlived a grace period in which the indexer could have caught up.
pub(super) async fn verify(target: &Target, options: &VerifyOptions, out: Output) -> Result<bool> {
    let grace = options.wait;
    let tables = Tables::of(target);
    db::describe_table(&target.clients.dynamodb, &tables.products, "example-3").await?;
    let mut snapshot = Snapshot::read(target, &tables).await?;
    if !snapshot.diff().is_empty() {
        wait_for_index(target, &tables, grace, "the index differs; giving the indexer time to catch up").await?;
        snapshot = Snapshot::read(target, &tables).await?;
    }
    let diff = snapshot.diff();
    let expected = snapshot.expected();
    let batch = check_batch(target, &tables, &snapshot).await?;
    let passed = diff.is_empty() && batch.as_ref().is_none_or(BatchCheck::passed);
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
        ]
        .into_iter()
        .chain(batch.as_ref().map(batch_rows).into_iter().flatten()),
    );
    if let Some(note) = batch.as_ref().and_then(|b| b.note.as_ref()) {
        out.say(format!("note: {note}"));
    }
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
        batch,
        passed,
    })?;
    Ok(passed)
}

/// The batch job's rows of the verify table: its result against the table as of its snapshot
/// (rebuilt from the change log), and the staleness the run reported against the log.
fn batch_rows(batch: &BatchCheck) -> Vec<Vec<String>> {
    let mark = |ok: bool| if ok { "ok" } else { "FAILED" }.to_owned();
    let mut rows = Vec::new();
    if let Some(differs) = batch.differs_from_its_snapshot {
        rows.push(vec![
            "the batch result equals the table as of its snapshot".into(),
            mark(differs == 0),
            format!("{differs} rows differ; {} rows, rebuilt from the change log", batch.rows),
        ]);
    }
    if let Some(seen) = batch.stale_rows_seen {
        let in_log = batch.stale_rows_in_log.map_or("unknown".to_owned(), |n| n.to_string());
        rows.push(vec![
            "the staleness the run reported is in the change log".into(),
            mark(batch.stale_rows_in_log == Some(seen)),
            format!("run: the previous batch result was {seen} rows behind; log: {in_log}"),
        ]);
    }
    rows.push(vec![
        "the batch result is stale (not an error)".into(),
        "info".into(),
        format!("{} rows behind the table now; it catches up at its next run", batch.behind_now),
    ]);
    rows
}
