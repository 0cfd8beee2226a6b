//! Example 3's verifier: the index must equal what the products table implies.

use anyhow::Result;
use labs_core::search_index::IndexEntry;
use serde::Serialize;

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
