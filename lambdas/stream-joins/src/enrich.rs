//! The stream-table join in two functions: the replica and the enrichment.
//!
//! - `replica`: the customers table's change stream (CDC, as example 3's indexer) keeps every
//!   version of each profile in the join's own replica table, keyed by (`customer_id`,
//!   `valid_from`). Each version row carries the stream sequence number that wrote it; a change
//!   at or below it (a redelivery, or an older change delivered late) is skipped.
//! - `enrich`: each order on the orders stream is joined with its customer's versions in the
//!   replica, twice: as of the order's event time (versioned) and with the newest (naive). The
//!   two answers are written side by side, per order and pass, so a replay shows which one moved.
//!
//! The join reads its own replica, never the source table: the source is another service's,
//! and a lookup per event would couple their load and availability (DDIA's enrichment point).

use aws_lambda_events::event::dynamodb::Event as DynamoEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use labs_core::join::profiles::{OrderRecord, Profile, VersionedTable, enrich};
use labs_core::sequence;
use labs_core::time::windows::Millis;
use serde::{Deserialize, Serialize};

use crate::BatchFailure;
use crate::records::{changes, kinesis_records};
use crate::state::row_of;
use crate::store::{JoinStore, KeySchema, Row, StoreError, Write, version_of};

/// A row of the replica table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRow {
    #[serde(flatten)]
    pub profile: Profile,
    pub sequence_number: String,
    pub version: u64,
}

/// A row of the enriched orders table: key `order_id`, `pass`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedRow {
    pub order_id: String,
    pub pass: u32,
    pub customer_id: String,
    pub order_time: Millis,
    pub versioned_address: Option<String>,
    pub versioned_valid_from: Option<Millis>,
    pub latest_address: Option<String>,
    pub latest_valid_from: Option<Millis>,
}

pub fn replica_schema(table: &str) -> KeySchema {
    KeySchema { table: table.to_owned(), partition: "customer_id", sort: Some("valid_from") }
}

pub fn enriched_schema(table: &str) -> KeySchema {
    KeySchema { table: table.to_owned(), partition: "order_id", sort: Some("pass") }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSummary {
    pub applied: usize,
    pub stale: usize,
    pub removed_ignored: usize,
}

/// Applies a batch of the customers stream to the replica.
pub async fn apply_customer_changes<S: JoinStore>(
    store: &S,
    replica_table: &str,
    event: &DynamoEvent,
) -> Result<ReplicaSummary, BatchFailure> {
    let schema = replica_schema(replica_table);
    let mut summary = ReplicaSummary::default();
    for change in changes::<Profile>(event)? {
        // A customer removed from the source keeps its history here: orders before the removal
        // still join with the version that held then.
        let Some(profile) = change.new else {
            summary.removed_ignored += 1;
            continue;
        };
        let key = row_of(&profile)?;
        let stored = store.get(&schema, &key).await?;
        let stored_sequence = stored.as_ref().and_then(|r| r.get("sequence_number")?.as_str().map(str::to_owned));
        if stored_sequence.is_some_and(|s| sequence::compare(&change.sequence_number, &s).is_le()) {
            summary.stale += 1;
            continue;
        }
        let version = stored.as_ref().map_or(0, version_of);
        let row = ReplicaRow { profile, sequence_number: change.sequence_number.clone(), version: version + 1 };
        let write = Write::Put { schema: schema.clone(), row: row_of(&row)?, expected: Some(version) };
        match store.transact(&[write]).await {
            Ok(()) => summary.applied += 1,
            // Another invocation wrote it meanwhile: the batch is retried and compares again.
            Err(err) => return Err(err.into()),
        }
    }
    tracing::info!(applied = summary.applied, stale = summary.stale, "replica batch applied");
    Ok(summary)
}

fn versions(rows: Vec<Row>) -> Result<VersionedTable, StoreError> {
    let mut table = VersionedTable::default();
    for row in rows {
        let replica: ReplicaRow = serde_json::from_value(serde_json::Value::Object(row))
            .map_err(|e| StoreError::Other(format!("a replica row cannot be read: {e}")))?;
        table.insert(replica.profile);
    }
    Ok(table)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichSummary {
    pub enriched: usize,
    /// Versioned and naive answers differ.
    pub differing: usize,
    pub unreadable: usize,
}

/// Joins a batch of the orders stream with the replica.
pub async fn enrich_orders<S: JoinStore>(
    store: &S,
    replica_table: &str,
    enriched_table: &str,
    event: &KinesisEvent,
) -> Result<EnrichSummary, BatchFailure> {
    let mut summary = EnrichSummary::default();
    let replica = replica_schema(replica_table);
    for record in kinesis_records(event)? {
        let order = match OrderRecord::parse(&record.data) {
            Ok(order) => order,
            Err(problem) => {
                tracing::warn!(sequence_number = %record.sequence_number, "skipping: {problem}");
                summary.unreadable += 1;
                continue;
            }
        };
        let table = versions(store.query(&replica, &order.order.customer_id).await?)?;
        let versioned = enrich(&order.order, table.as_of(&order.order.customer_id, order.order.event_time));
        let naive = enrich(&order.order, table.latest(&order.order.customer_id));
        summary.differing += usize::from(versioned.address != naive.address);
        let row = EnrichedRow {
            order_id: order.order.order_id.clone(),
            pass: order.pass,
            customer_id: order.order.customer_id.clone(),
            order_time: order.order.event_time,
            versioned_address: versioned.address,
            versioned_valid_from: versioned.valid_from,
            latest_address: naive.address,
            latest_valid_from: naive.valid_from,
        };
        store.transact(&[Write::put(&enriched_schema(enriched_table), row_of(&row)?)]).await?;
        summary.enriched += 1;
    }
    tracing::info!(enriched = summary.enriched, differing = summary.differing, "orders enriched");
    Ok(summary)
}
