//! The initial snapshot (backfill). Products written before the table's stream was enabled are in
//! no change record, so the CLI scans the products table and loads the scan with
//! [`backfill_products`], while writes (and the indexer) go on.
//!
//! Why that is safe: the stream was enabled *before* the scan started, so every change a scanned
//! item did not show yet is in the log. Each scanned product is therefore written as the state at
//! position [`SNAPSHOT_SEQUENCE_NUMBER`], before every stream record, and only if the product has
//! no checkpoint:
//!
//! - No checkpoint: the indexer has applied no change of the product yet. Every change of it in
//!   the log is numbered after the snapshot, so the indexer still applies each one on top of it and
//!   ends at the table's state, whatever moment the scan read the item at (a scan is not a
//!   snapshot of the whole table, and need not be).
//! - A checkpoint, live or a tombstone: the log already covers the product, and the scanned copy
//!   may be older than what the indexer applied. Writing it could bring back old words, or a
//!   deleted product, so it is skipped.
//!
//! The checkpoint and the product's rows are written in one atomic step
//! ([`IndexStore::backfill_product`]). Written apart, a REMOVE the indexer applied between the two
//! writes would be undone by the second one, and the deleted product resurrected.
//!
//! This relies on the indexer reading the stream from its start (`TRIM_HORIZON`, as example 3's
//! event source mapping does) and keeping up within the stream's 24-hour retention.

use labs_core::search_index::{Product, product_terms};
use serde::Serialize;

use crate::store::{Checkpoint, IndexItem, IndexStore, StoreError, check_backfill};

/// The checkpoint sequence number of a scanned product: a position before every stream record.
/// DynamoDB stream sequence numbers are positive decimal numbers, and the indexer compares them
/// numerically, so every logged change is newer than "0" and is applied over the snapshot; and
/// "0" is not newer than any change, so an indexer that loses its checkpoint race to a backfill
/// fails its batch, and the retry applies the change on top of the snapshot.
pub const SNAPSHOT_SEQUENCE_NUMBER: &str = "0";

/// What [`backfill_products`] did. `scanned == written + already_covered`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackfillReport {
    /// Products given (the scan).
    pub scanned: u64,
    /// Products written from the scan: they had no checkpoint.
    pub written: u64,
    /// Products skipped because they had a checkpoint: the change log already covers them.
    pub already_covered: u64,
}

/// The checkpoint and index rows a scanned product is written with, at
/// [`SNAPSHOT_SEQUENCE_NUMBER`].
pub fn snapshot_of(product: &Product) -> (Checkpoint, Vec<IndexItem>) {
    let terms = product_terms(product);
    let rows = terms
        .iter()
        .map(|term| IndexItem {
            term: term.clone(),
            product_id: product.id.clone(),
            seq: SNAPSHOT_SEQUENCE_NUMBER.to_owned(),
        })
        .collect();
    let checkpoint = Checkpoint {
        product_id: product.id.clone(),
        seq: SNAPSHOT_SEQUENCE_NUMBER.to_owned(),
        terms: terms.into_iter().collect(),
        deleted: false,
    };
    (checkpoint, rows)
}

/// Loads `products` (a scan of the products table, taken after its stream was enabled) into the
/// index: each product that has no checkpoint is written with its rows, atomically; the others are
/// skipped. Every product is checked before anything is written, so a product the store cannot
/// take (more than [`crate::store::MAX_BACKFILL_ROWS`] terms, the reserved id) fails the call
/// up front. Idempotent: running it again writes nothing more.
pub async fn backfill_products<S: IndexStore>(store: &S, products: &[Product]) -> Result<BackfillReport, StoreError> {
    let snapshots: Vec<(Checkpoint, Vec<IndexItem>)> = products.iter().map(snapshot_of).collect();
    for (checkpoint, rows) in &snapshots {
        check_backfill(checkpoint, rows)?;
    }
    let mut report = BackfillReport { scanned: products.len() as u64, ..Default::default() };
    for (checkpoint, rows) in &snapshots {
        if store.backfill_product(checkpoint, rows).await? {
            report.written += 1;
        } else {
            report.already_covered += 1;
        }
    }
    Ok(report)
}
