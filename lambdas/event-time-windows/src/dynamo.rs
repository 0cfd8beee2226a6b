//! [`WindowStore`] on three DynamoDB tables (see [`crate::store`] for their keys).
//!
//! Calls, per table. Watermarks: Scan (consistent) and, inside TransactWriteItems, a conditional
//! Put of the shard's row; GetItem when a cancelled transaction gives no reasons. Windows: Put
//! and Delete inside the same transaction. Late: Put inside it.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use crate::store::{Commit, ShardRow, StoreError, WindowChange, WindowStore};

/// TransactWriteItems takes at most 100 actions.
const MAX_TRANSACTION_ACTIONS: usize = 100;
/// Rounds of re-sending a transaction cancelled by a conflict or throttling before giving up.
const MAX_ATTEMPTS: u32 = 8;
const TRANSIENT_CANCELLATIONS: [&str; 3] = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

/// The three table names, as the stack sets them in the function's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub watermarks: String,
    pub windows: String,
    pub late: String,
}

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
}

fn dynamo_error<E: std::error::Error>(operation: &'static str, err: E) -> StoreError {
    StoreError::Dynamo { operation, message: DisplayErrorContext(&err).to_string() }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(25u64 << attempt.min(6))
}

fn item<T: serde::Serialize>(value: &T) -> Result<std::collections::HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Other(format!("a row does not convert to an item: {e}")))
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The effects of `commit` as transaction actions, in the order they were decided.
    fn effect_actions(&self, commit: &Commit) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build = |e| dynamo_error("TransactWriteItems", e);
        let mut actions = Vec::with_capacity(commit.items());
        for change in commit.windows.values() {
            let action = match change {
                WindowChange::Put(row) => {
                    let put = Put::builder().table_name(&self.tables.windows).set_item(Some(item(row)?)).build();
                    TransactWriteItem::builder().put(put.map_err(build)?).build()
                }
                WindowChange::Delete { window_key, start } => {
                    let delete = Delete::builder()
                        .table_name(&self.tables.windows)
                        .key("window_key", AttributeValue::S(window_key.clone()))
                        .key("start", AttributeValue::N(start.to_string()))
                        .build();
                    TransactWriteItem::builder().delete(delete.map_err(build)?).build()
                }
            };
            actions.push(action);
        }
        for row in commit.late.values() {
            let put = Put::builder().table_name(&self.tables.late).set_item(Some(item(row)?)).build();
            actions.push(TransactWriteItem::builder().put(put.map_err(build)?).build());
        }
        Ok(actions)
    }

    /// The shard's row, put only if its version is still the one the invocation read.
    fn shard_action(&self, commit: &Commit) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.tables.watermarks)
            .set_item(Some(item(&commit.shard)?))
            .condition_expression("attribute_not_exists(shard_id) OR #version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", AttributeValue::N(commit.expected_version.to_string()))
            .build()
            .map_err(|e| dynamo_error("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn stored_version(&self, shard_id: &str) -> Result<u64, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.watermarks)
            .key("shard_id", AttributeValue::S(shard_id.to_owned()))
            .consistent_read(true)
            .projection_expression("#version")
            .expression_attribute_names("#version", "version")
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        let version = output.item.as_ref().and_then(|item| item.get("version")?.as_n().ok()?.parse().ok());
        Ok(version.unwrap_or(0))
    }

    /// Sends one transaction; `guarded` says whether its last action is the shard's
    /// conditional put, whose failure is a [`StoreError::Conflict`].
    async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
        commit: &Commit,
        guarded: bool,
    ) -> Result<(), StoreError> {
        const OPERATION: &str = "TransactWriteItems";
        let mut codes = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            let err = match self.client.transact_write_items().set_transact_items(Some(actions.clone())).send().await {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
                return Err(dynamo_error(OPERATION, err));
            };
            codes = cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect();
            let conflict = if !guarded {
                false
            } else if codes.is_empty() {
                // AWS lists one reason per action; an emulator may leave them out: then look.
                self.stored_version(&commit.shard.shard_id).await? != commit.expected_version
            } else {
                codes.last().is_some_and(|code| code == "ConditionalCheckFailed")
            };
            if conflict {
                return Err(StoreError::Conflict {
                    shard_id: commit.shard.shard_id.clone(),
                    expected: commit.expected_version,
                });
            }
            let transient =
                codes.is_empty() || codes.iter().all(|c| c == "None" || TRANSIENT_CANCELLATIONS.contains(&c.as_str()));
            if !transient {
                return Err(dynamo_error(OPERATION, err));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Dynamo {
            operation: OPERATION,
            message: format!("still cancelled after {MAX_ATTEMPTS} attempts: {codes:?}"),
        })
    }
}

impl WindowStore for DynamoStore {
    async fn load_shards(&self) -> Result<Vec<ShardRow>, StoreError> {
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.watermarks)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| dynamo_error("Scan", e))?;
            for item in page.items() {
                let row: ShardRow = serde_dynamo::from_item(item.clone())
                    .map_err(|e| StoreError::Other(format!("a watermarks row cannot be read: {e}")))?;
                rows.push(row);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(rows);
            }
        }
    }

    /// One transaction when the commit fits (nearly always). A larger one writes its effects in
    /// transactions of 100 first and the shard's row with the last: each effect replaces a row
    /// by key, so writing it again on a retry is harmless, and the checkpoint moves only after
    /// all of them are written.
    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut effects = self.effect_actions(commit)?;
        while effects.len() >= MAX_TRANSACTION_ACTIONS {
            let chunk: Vec<TransactWriteItem> = effects.drain(..MAX_TRANSACTION_ACTIONS).collect();
            self.transact(chunk, commit, false).await?;
        }
        effects.push(self.shard_action(commit)?);
        self.transact(effects, commit, true).await
    }
}
