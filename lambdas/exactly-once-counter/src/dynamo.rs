//! [`CounterStore`] on three DynamoDB tables.
//!
//! - Totals: partition key `user_id` (S); `total`, `count`, `naive_total`, `naive_count` (N).
//! - Applied: partition key `event_id` (S); one row per counted event ([`AppliedEvent`]).
//! - Invocations: partition key `shard_id` (S), sort key `batch_start` (S); see [`Invocation`].
//!
//! Calls, per table. Totals: UpdateItem (the naive ADD) and, inside TransactWriteItems, an Update
//! per user. Applied: inside the same transaction, a conditional Put per event; BatchGetItem when
//! a cancelled transaction gives no reasons. Invocations: Query and PutItem.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, Select, TransactWriteItem, Update};

use crate::plan::{TransactionPlan, UserIncrement};
use crate::store::{CounterStore, Invocation, StoreError, TransactionResult, sequence_key};

/// Rounds of re-sending a transaction cancelled by a conflict or throttling before giving up
/// (and failing the batch).
const MAX_ATTEMPTS: u32 = 8;
/// Cancellation reasons that may go away if the transaction is sent again: another writer of the
/// same user row (two batches of one shard with `ParallelizationFactor` > 1), or throttling.
const TRANSIENT_CANCELLATIONS: [&str; 3] = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];
/// Naive increments in flight at once.
const CONCURRENCY: usize = 8;

/// The three table names, as the stack sets them in the function's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub totals: String,
    pub applied: String,
    pub invocations: String,
}

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
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

    /// Which of `event_ids` have a dedup row (strongly consistent).
    async fn counted_already(&self, event_ids: &[&str]) -> Result<BTreeSet<String>, StoreError> {
        let mut found = BTreeSet::new();
        // BatchGetItem takes at most 100 keys; a transaction holds fewer events than that.
        for chunk in event_ids.chunks(100) {
            let mut keys: Vec<HashMap<String, AttributeValue>> =
                chunk.iter().map(|id| HashMap::from([("event_id".to_owned(), s(id))])).collect();
            for attempt in 0..MAX_ATTEMPTS {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .projection_expression("event_id")
                    .build()
                    .map_err(|e| dynamo_error("BatchGetItem", e))?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.applied, request)
                    .send()
                    .await
                    .map_err(|e| dynamo_error("BatchGetItem", e))?;
                let items = output.responses.and_then(|mut r| r.remove(&self.tables.applied)).unwrap_or_default();
                found.extend(items.iter().filter_map(|item| item.get("event_id")?.as_s().ok().cloned()));
                keys = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.tables.applied))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if keys.is_empty() {
                    break;
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            if !keys.is_empty() {
                return Err(StoreError::Dynamo {
                    operation: "BatchGetItem",
                    message: format!("{} keys still unprocessed after {MAX_ATTEMPTS} attempts", keys.len()),
                });
            }
        }
        Ok(found)
    }

    /// Counts the invocations of a shard matching a query, following pages.
    async fn count_invocations(
        &self,
        key_condition: &str,
        filter: Option<&str>,
        values: &[(&str, String)],
    ) -> Result<u32, StoreError> {
        let mut total = 0;
        let mut start = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.tables.invocations)
                .consistent_read(true)
                .select(Select::Count)
                .key_condition_expression(key_condition)
                .set_filter_expression(filter.map(str::to_owned))
                .expression_attribute_names("#shard", "shard_id")
                .expression_attribute_names("#start", "batch_start")
                .set_exclusive_start_key(start);
            if filter.is_some() {
                request = request.expression_attribute_names("#end", "batch_end");
            }
            for (name, value) in values {
                request = request.expression_attribute_values(*name, s(value));
            }
            let page = request.send().await.map_err(|e| dynamo_error("Query", e))?;
            total += page.count().max(0) as u32;
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }
}

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

impl CounterStore for DynamoStore {
    async fn invocations_starting_at(&self, shard_id: &str, sequence_number: &str) -> Result<u32, StoreError> {
        let prefix = format!("{}#", sequence_key(sequence_number));
        self.count_invocations(
            "#shard = :shard AND begins_with(#start, :prefix)",
            None,
            &[(":shard", shard_id.to_owned()), (":prefix", prefix)],
        )
        .await
    }

    async fn deliveries_of(&self, shard_id: &str, sequence_number: &str) -> Result<u32, StoreError> {
        // Batches starting at or before the record ('$' sorts after the '#' that follows the
        // key) and ending at or after it.
        let key = sequence_key(sequence_number);
        self.count_invocations(
            "#shard = :shard AND #start <= :upper",
            Some("#end >= :key"),
            &[(":shard", shard_id.to_owned()), (":upper", format!("{key}$")), (":key", key)],
        )
        .await
    }

    async fn record_invocation(&self, invocation: &Invocation) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(invocation)
            .map_err(|e| StoreError::Other(format!("an invocation does not convert to an item: {e}")))?;
        self.client
            .put_item()
            .table_name(&self.tables.invocations)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| dynamo_error("PutItem", e))?;
        Ok(())
    }

    async fn add_naive(&self, increments: &[UserIncrement]) -> Result<(), StoreError> {
        for chunk in increments.chunks(CONCURRENCY) {
            let updates = chunk.iter().map(|increment| {
                self.client
                    .update_item()
                    .table_name(&self.tables.totals)
                    .key("user_id", s(&increment.user_id))
                    .update_expression("ADD #total :total, #count :count")
                    .expression_attribute_names("#total", "naive_total")
                    .expression_attribute_names("#count", "naive_count")
                    .expression_attribute_values(":total", n(increment.total))
                    .expression_attribute_values(":count", n(increment.count))
                    .send()
            });
            futures::future::try_join_all(updates).await.map_err(|e| dynamo_error("UpdateItem", e))?;
        }
        Ok(())
    }

    /// One TransactWriteItems: the events' conditional puts first (so reason `i < events` names
    /// event `i`), then the users' increments.
    async fn apply(&self, plan: &TransactionPlan) -> Result<TransactionResult, StoreError> {
        const OPERATION: &str = "TransactWriteItems";
        let mut actions = Vec::with_capacity(plan.actions());
        for event in &plan.events {
            let item = serde_dynamo::to_item(event).map_err(|e| StoreError::Other(format!("{OPERATION}: {e}")))?;
            let put = Put::builder()
                .table_name(&self.tables.applied)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(event_id)")
                .build()
                .map_err(|e| dynamo_error(OPERATION, e))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for increment in &plan.increments {
            let update = Update::builder()
                .table_name(&self.tables.totals)
                .key("user_id", s(&increment.user_id))
                .update_expression("ADD #total :total, #count :count")
                .expression_attribute_names("#total", "total")
                .expression_attribute_names("#count", "count")
                .expression_attribute_values(":total", n(increment.total))
                .expression_attribute_values(":count", n(increment.count))
                .build()
                .map_err(|e| dynamo_error(OPERATION, e))?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }

        let mut codes = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            let err = match self.client.transact_write_items().set_transact_items(Some(actions.clone())).send().await {
                Ok(_) => return Ok(TransactionResult::Committed),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
                return Err(dynamo_error(OPERATION, err));
            };
            codes = cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect();
            let counted: BTreeSet<String> = if codes.is_empty() {
                // AWS lists one reason per action, but an emulator may leave them out: then ask
                // the dedup table which events are there (a cancelled transaction wrote nothing).
                let ids: Vec<&str> = plan.events.iter().map(|e| e.event_id.as_str()).collect();
                self.counted_already(&ids).await?
            } else {
                codes
                    .iter()
                    .zip(&plan.events)
                    .filter(|(code, _)| *code == "ConditionalCheckFailed")
                    .map(|(_, event)| event.event_id.clone())
                    .collect()
            };
            if !counted.is_empty() {
                return Ok(TransactionResult::AlreadyApplied(counted));
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
