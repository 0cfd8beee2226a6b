//! The DynamoDB implementations: [`DynamoEventStore`], [`DynamoStateTable`], [`DynamoBalances`].
//!
//! Tables (all names come from the caller):
//! - event store: partition key `account_id` (S), sort key `version` (N); items are
//!   [`StoredEvent`]s. Calls: Query (consistent), PutItem and TransactWriteItems (conditional).
//! - rejections: partition key `command_id` (S); items are [`Rejection`]s. PutItem.
//! - snapshots, compacted states, balances: partition key `account_id` (S); items are
//!   [`Account`]s. GetItem / BatchGetItem (consistent) and conditional PutItem.
//!
//! `version` is a DynamoDB reserved word, hence the `#v` placeholders.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use labs_core::ledger::{Account, Rejection, StoredEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::balances::BalanceStore;
use crate::error::StoreError;
use crate::event_store::{AppendError, EventStore, StateTable, check_append};

/// Rounds of retrying (throttled or conflicting transactions, unprocessed keys) before failing.
const MAX_ATTEMPTS: u32 = 8;
const GET_BATCH: usize = 100;
/// Cancellation reasons of a transaction that may go through if sent again.
const TRANSIENT_CANCELLATIONS: [&str; 3] = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

fn dynamo_error<E: std::error::Error>(operation: &'static str, err: E) -> StoreError {
    StoreError::Dynamo { operation, message: DisplayErrorContext(&err).to_string() }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(25u64 << attempt.min(6))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn to_item<T: Serialize>(table: &str, value: &T) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Decode { table: table.to_owned(), message: e.to_string() })
}

fn from_item<T: DeserializeOwned>(table: &str, item: HashMap<String, AttributeValue>) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Decode { table: table.to_owned(), message: e.to_string() })
}

/// Puts `item` under `condition`; `Ok(false)` if the condition failed.
async fn conditional_put(
    client: &Client,
    table: &str,
    item: HashMap<String, AttributeValue>,
    condition: &str,
    values: Vec<(&str, AttributeValue)>,
) -> Result<bool, StoreError> {
    let mut request = client.put_item().table_name(table).set_item(Some(item)).condition_expression(condition);
    if condition.contains("#v") {
        request = request.expression_attribute_names("#v", "version");
    }
    for (name, value) in values {
        request = request.expression_attribute_values(name, value);
    }
    match request.send().await {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
        Err(err) => Err(dynamo_error("PutItem", err)),
    }
}

/// The event store and the rejection log.
#[derive(Debug, Clone)]
pub struct DynamoEventStore {
    client: Client,
    events_table: String,
    rejections_table: String,
}

impl DynamoEventStore {
    pub fn new(client: Client, events_table: impl Into<String>, rejections_table: impl Into<String>) -> Self {
        Self { client, events_table: events_table.into(), rejections_table: rejections_table.into() }
    }

    /// Whether (account, version) holds an event (consistent read).
    async fn exists(&self, account_id: &str, version: u64) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.events_table)
            .key("account_id", s(account_id))
            .key("version", n(version))
            .projection_expression("account_id")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        Ok(output.item.is_some())
    }

    /// A transfer: one TransactWriteItems, a conditional Put per event. A cancellation names
    /// the item whose condition failed (AWS lists one reason per item, in order); an emulator
    /// that gives no reasons is answered by reading which version is taken.
    async fn append_together(&self, events: &[StoredEvent]) -> Result<(), AppendError> {
        const OPERATION: &str = "TransactWriteItems";
        let items = events
            .iter()
            .map(|event| {
                let put = Put::builder()
                    .table_name(&self.events_table)
                    .set_item(Some(to_item(&self.events_table, event)?))
                    .condition_expression("attribute_not_exists(account_id)")
                    .build()
                    .map_err(|e| dynamo_error(OPERATION, e))?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut codes = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
                return Err(dynamo_error(OPERATION, err).into());
            };
            codes = cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect();
            if let Some(at) = codes.iter().position(|code| code == "ConditionalCheckFailed") {
                let taken = &events[at.min(events.len() - 1)];
                return Err(AppendError::Conflict { account_id: taken.account_id.clone(), version: taken.version });
            }
            if codes.is_empty() {
                for event in events {
                    if self.exists(&event.account_id, event.version).await? {
                        return Err(AppendError::Conflict {
                            account_id: event.account_id.clone(),
                            version: event.version,
                        });
                    }
                }
                return Err(dynamo_error(OPERATION, err).into());
            }
            if !codes.iter().all(|code| code == "None" || TRANSIENT_CANCELLATIONS.contains(&code.as_str())) {
                return Err(dynamo_error(OPERATION, err).into());
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Dynamo {
            operation: OPERATION,
            message: format!("still cancelled after {MAX_ATTEMPTS} attempts: {codes:?}"),
        }
        .into())
    }
}

impl EventStore for DynamoEventStore {
    async fn load(&self, account_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.events_table)
                .key_condition_expression("account_id = :account AND #v > :after")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":account", s(account_id))
                .expression_attribute_values(":after", n(after))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| dynamo_error("Query", e))?;
            for item in page.items.unwrap_or_default() {
                events.push(from_item(&self.events_table, item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(events);
            }
        }
    }

    async fn append(&self, events: &[StoredEvent]) -> Result<(), AppendError> {
        check_append(events)?;
        if let [event] = events {
            let item = to_item(&self.events_table, event)?;
            let written =
                conditional_put(&self.client, &self.events_table, item, "attribute_not_exists(account_id)", vec![])
                    .await?;
            return if written {
                Ok(())
            } else {
                Err(AppendError::Conflict { account_id: event.account_id.clone(), version: event.version })
            };
        }
        self.append_together(events).await
    }

    async fn record_rejection(&self, rejection: &Rejection) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.rejections_table)
            .set_item(Some(to_item(&self.rejections_table, rejection)?))
            .send()
            .await
            .map_err(|e| dynamo_error("PutItem", e))?;
        Ok(())
    }
}

/// Snapshots or compacted states.
#[derive(Debug, Clone)]
pub struct DynamoStateTable {
    client: Client,
    table: String,
}

impl DynamoStateTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl StateTable for DynamoStateTable {
    async fn get(&self, account_id: &str) -> Result<Option<Account>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("account_id", s(account_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        output.item.map(|item| from_item(&self.table, item)).transpose()
    }

    async fn put_if_newer(&self, state: &Account) -> Result<bool, StoreError> {
        let item = to_item(&self.table, state)?;
        let condition = "attribute_not_exists(account_id) OR #v < :version";
        conditional_put(&self.client, &self.table, item, condition, vec![(":version", n(state.version))]).await
    }
}

/// The balances projection.
#[derive(Debug, Clone)]
pub struct DynamoBalances {
    client: Client,
    table: String,
}

impl DynamoBalances {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl BalanceStore for DynamoBalances {
    async fn get_rows(&self, account_ids: &[String]) -> Result<HashMap<String, Account>, StoreError> {
        let mut rows = HashMap::new();
        for chunk in account_ids.chunks(GET_BATCH) {
            let mut keys: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|id| HashMap::from([("account_id".to_owned(), s(id))])).collect();
            let mut attempt = 0;
            while !keys.is_empty() {
                if attempt == MAX_ATTEMPTS {
                    return Err(StoreError::Dynamo {
                        operation: "BatchGetItem",
                        message: format!("{} keys still unprocessed after {MAX_ATTEMPTS} attempts", keys.len()),
                    });
                }
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                attempt += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| dynamo_error("BatchGetItem", e))?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("BatchGetItem", e))?;
                for item in output.responses.and_then(|mut m| m.remove(&self.table)).unwrap_or_default() {
                    let row: Account = from_item(&self.table, item)?;
                    rows.insert(row.account_id.clone(), row);
                }
                keys =
                    output.unprocessed_keys.and_then(|mut m| m.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
            }
        }
        Ok(rows)
    }

    async fn put_row(&self, row: &Account, expected_version: u64) -> Result<bool, StoreError> {
        let item = to_item(&self.table, row)?;
        if expected_version == 0 {
            conditional_put(&self.client, &self.table, item, "attribute_not_exists(account_id)", vec![]).await
        } else {
            conditional_put(&self.client, &self.table, item, "#v = :expected", vec![(":expected", n(expected_version))])
                .await
        }
    }
}
