//! Example 3: change data capture. A DynamoDB stream (NEW_AND_OLD_IMAGES) of the products table
//! invokes this function, which keeps a search index table in sync.
//!
//! Delivery is at least once: whole batches are retried, one batch may hold several changes to
//! one item, and a change may arrive after a newer one was applied. So every change is guarded by
//! the stream sequence number, which DynamoDB assigns (it orders writes from any client, and
//! delete-then-recreate), recorded per product in a checkpoint table:
//!
//! 1. [`plan_batch`] (pure) decodes the records and keeps each product's last change (the
//!    handler plans with [`decode_batch`] and [`plan_decoded`], borrowing from the records).
//! 2. [`apply_plan`] skips changes at or below the product's checkpoint, writes the index rows
//!    (idempotent puts and deletes), then writes the checkpoint conditionally.
//!
//! Products that predate the stream are loaded by [`backfill_products`] (run by the CLI, not by
//! the function) from a scan of the table, each with a checkpoint at a position before every
//! stream record.
//!
//! Environment of the deployed function: `INDEX_TABLE`, `CHECKPOINT_TABLE`.

pub mod apply;
pub mod backfill;
pub mod dynamo;
pub mod plan;
pub mod store;
#[cfg(feature = "synthetic")]
pub mod synthetic;

pub use apply::{BatchReport, apply_plan};
pub use aws_lambda_events::event::dynamodb::Event;
pub use backfill::{BackfillReport, backfill_products};
pub use dynamo::DynamoStore;
pub use plan::{
    BatchPlan, BatchPlanRef, ChangeKind, DecodeError, DecodeProblem, PlannedChange, PlannedChangeRef, STATS_ID,
    decode_batch, plan_batch, plan_decoded,
};
pub use store::{BatchStats, Checkpoint, IndexItem, IndexKey, IndexRow, IndexStore, MemoryStore, RowTerm, StoreError};
#[cfg(feature = "synthetic")]
pub use synthetic::synthetic_batch;

use lambda_runtime::{Error, LambdaEvent};

/// Environment variable naming the index table.
pub const INDEX_TABLE_ENV: &str = "INDEX_TABLE";
/// Environment variable naming the checkpoint table.
pub const CHECKPOINT_TABLE_ENV: &str = "CHECKPOINT_TABLE";

/// Indexes one batch of stream records into `store`. An undecodable record fails the whole batch
/// with a one-line message naming it; nothing is written then.
pub async fn process_event<S: IndexStore>(store: &S, event: &Event) -> Result<BatchReport, Error> {
    let decoded = decode_batch(event).inspect_err(|e| tracing::error!("rejecting the batch: {e}"))?;
    let report = apply_plan(store, &plan_decoded(&decoded)).await?;
    tracing::info!(
        records = report.records,
        products = report.products,
        applied = report.applied,
        stale_skipped = report.stale_skipped,
        collapsed = report.collapsed,
        conflicts = report.conflicts,
        index_puts = report.index_puts,
        index_deletes = report.index_deletes,
        "batch indexed"
    );
    Ok(report)
}

/// The Lambda handler.
pub async fn handle<S: IndexStore>(store: &S, event: LambdaEvent<Event>) -> Result<BatchReport, Error> {
    process_event(store, &event.payload).await
}
