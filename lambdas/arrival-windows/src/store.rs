//! Where a finished window goes: a row of example 6's windows table, beside the event-time ones.
//!
//! Partition key `window_key` = `arrival-<size>#<shard>`, sort key `start`. A window whose state
//! Lambda renewed early (`isWindowTerminatedEarly`, past 1 MB of state) arrives in parts; each
//! part is added once, under an attribute named after its first sequence number, so a retried
//! invocation adds nothing twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use labs_core::time::windows::Millis;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("{operation} failed: {message}")]
    Dynamo { operation: &'static str, message: String },
}

/// One part of a window: everything between two fresh states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPart {
    pub window_key: String,
    pub start: Millis,
    pub end: Millis,
    /// `arrival-<size>`.
    pub kind: String,
    pub shard_id: String,
    /// Names the part: its first record's sequence number (`none` for a part without records).
    pub part: String,
    pub count: u64,
    pub sum: i64,
    /// The window's last part.
    pub is_final: bool,
    /// Wall-clock time the part was written.
    pub emitted_at: Millis,
}

/// The row as a scan reads it (the same attribute names as the event-time windows' rows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArrivalRow {
    pub window_key: String,
    pub start: Millis,
    pub end: Millis,
    pub kind: String,
    pub key: String,
    pub count: u64,
    pub sum: i64,
    pub revision: u32,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub emitted_at: Option<Millis>,
    pub shard_id: String,
    /// Parts added (1 unless the window was terminated early).
    pub parts: u32,
}

pub trait ArrivalStore {
    /// Adds `part` to its window's row unless that part was added before.
    fn add_part(&self, part: &WindowPart) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A row in memory and the parts added to it.
type MemoryRow = (ArrivalRow, Vec<String>);

/// The windows table in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: Mutex<BTreeMap<(String, Millis), MemoryRow>>,
    fail: Mutex<bool>,
}

impl MemoryStore {
    /// Every later write fails (a table that is down), or works again.
    pub fn set_failing(&self, failing: bool) {
        *self.fail.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = failing;
    }

    pub fn rows(&self) -> Vec<ArrivalRow> {
        let rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rows.values().map(|(row, _)| row.clone()).collect()
    }
}

impl ArrivalStore for MemoryStore {
    async fn add_part(&self, part: &WindowPart) -> Result<(), StoreError> {
        if *self.fail.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Err(StoreError::Dynamo { operation: "UpdateItem", message: "the table is down".to_owned() });
        }
        let mut rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (row, parts) = rows.entry((part.window_key.clone(), part.start)).or_default();
        if parts.contains(&part.part) {
            return Ok(());
        }
        parts.push(part.part.clone());
        *row = ArrivalRow {
            window_key: part.window_key.clone(),
            start: part.start,
            end: part.end,
            kind: part.kind.clone(),
            key: part.shard_id.clone(),
            count: row.count + part.count,
            sum: row.sum + part.sum,
            revision: 1,
            is_final: part.is_final,
            emitted_at: Some(part.emitted_at),
            shard_id: part.shard_id.clone(),
            parts: row.parts + 1,
        };
        Ok(())
    }
}

/// The windows table in DynamoDB: one conditional UpdateItem per part.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl ArrivalStore for DynamoStore {
    async fn add_part(&self, part: &WindowPart) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("window_key", s(&part.window_key))
            .key("start", n(part.start))
            .update_expression(
                "ADD #count :count, #sum :sum, #parts :one \
                 SET #part = :part, #end = :end, #kind = :kind, #key = :key, #shard = :shard, \
                 #revision = :one, #final = :final, #emitted = :emitted",
            )
            .condition_expression("attribute_not_exists(#part)")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#sum", "sum")
            .expression_attribute_names("#parts", "parts")
            .expression_attribute_names("#part", format!("part_{}", part.part))
            .expression_attribute_names("#end", "end")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_names("#key", "key")
            .expression_attribute_names("#shard", "shard_id")
            .expression_attribute_names("#revision", "revision")
            .expression_attribute_names("#final", "final")
            .expression_attribute_names("#emitted", "emitted_at")
            .expression_attribute_values(":count", n(part.count))
            .expression_attribute_values(":sum", n(part.sum))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(
                ":part",
                AttributeValue::M([("count".to_owned(), n(part.count)), ("sum".to_owned(), n(part.sum))].into()),
            )
            .expression_attribute_values(":end", n(part.end))
            .expression_attribute_values(":kind", s(&part.kind))
            .expression_attribute_values(":key", s(&part.shard_id))
            .expression_attribute_values(":shard", s(&part.shard_id))
            .expression_attribute_values(":final", AttributeValue::Bool(part.is_final))
            .expression_attribute_values(":emitted", n(part.emitted_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The part was added by an earlier attempt of this invocation.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => {
                Err(StoreError::Dynamo { operation: "UpdateItem", message: DisplayErrorContext(&err).to_string() })
            }
        }
    }
}
