//! [`IndexStore`] on two DynamoDB tables.
//!
//! - Index table: partition key `term` (S), sort key `product_id` (S); attribute `seq` (S).
//! - Checkpoint table: partition key `product_id` (S); attributes `seq` (S), `terms` (L of S),
//!   `deleted` (BOOL). The item `product_id = "#stats"` holds the counters of [`BatchStats`].
//!
//! Calls, per table. The function: BatchWriteItem on the index table; BatchGetItem (consistent),
//! PutItem (conditional) and UpdateItem (`#stats`) on the checkpoint table. The backfill (run by
//! the CLI): TransactWriteItems, a Put on each table, authorized as PutItem on both; and GetItem
//! on the checkpoint table when a cancelled transaction gives no reasons.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use tokio::task::JoinSet;

use crate::plan::STATS_ID;
use crate::store::{
    BatchStats, Checkpoint, CheckpointCommit, IndexItem, IndexKey, IndexRow, IndexStore, StoreError, check_backfill,
};

/// BatchWriteItem takes at most 25 requests, BatchGetItem at most 100 keys.
const WRITE_BATCH: usize = 25;
const GET_BATCH: usize = 100;
/// Requests in flight at once (per kind of call).
const CONCURRENCY: usize = 8;
/// Rounds of retrying unprocessed items before giving up (and failing the batch).
const MAX_ATTEMPTS: u32 = 10;
/// Cancellation reasons of a transaction that may go through if sent again: it met another
/// writer of one of its items (the indexer, say), or was throttled.
const TRANSIENT_CANCELLATIONS: [&str; 3] = ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    index_table: String,
    checkpoint_table: String,
}

impl DynamoStore {
    pub fn new(client: Client, index_table: impl Into<String>, checkpoint_table: impl Into<String>) -> Self {
        Self { client, index_table: index_table.into(), checkpoint_table: checkpoint_table.into() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn dynamo_error<E>(operation: &'static str, err: E) -> StoreError
where
    E: std::error::Error,
{
    StoreError::Dynamo { operation, message: DisplayErrorContext(&err).to_string() }
}

fn decode_error(operation: &'static str, err: serde_dynamo::Error) -> StoreError {
    StoreError::Dynamo { operation, message: format!("unexpected item shape: {err}") }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// Runs `make(item)` for every item, at most [`CONCURRENCY`] at a time; results in input order.
async fn run_bounded<T, R, F, Fut>(items: Vec<T>, make: F) -> Result<Vec<R>, StoreError>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R, StoreError>> + Send + 'static,
    R: Send + 'static,
{
    let mut results: Vec<Option<R>> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut items = items.into_iter().enumerate().peekable();
    while items.peek().is_some() || !tasks.is_empty() {
        while tasks.len() < CONCURRENCY {
            let Some((index, item)) = items.next() else {
                break;
            };
            results.push(None);
            let fut = make(item);
            tasks.spawn(async move { (index, fut.await) });
        }
        if let Some(joined) = tasks.join_next().await {
            let (index, result) = joined.map_err(|e| StoreError::Other(format!("task failed: {e}")))?;
            results[index] = Some(result?);
        }
    }
    Ok(results.into_iter().map(|r| r.expect("every task reported")).collect())
}

async fn batch_write(client: Client, table: String, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
    for attempt in 0..MAX_ATTEMPTS {
        let output = client
            .batch_write_item()
            .request_items(table.clone(), requests)
            .send()
            .await
            .map_err(|e| dynamo_error("BatchWriteItem", e))?;
        requests = output.unprocessed_items.and_then(|mut m| m.remove(&table)).unwrap_or_default();
        if requests.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(StoreError::Dynamo {
        operation: "BatchWriteItem",
        message: format!("{} items still unprocessed after {MAX_ATTEMPTS} attempts", requests.len()),
    })
}

async fn batch_get(
    client: Client,
    table: String,
    keys: Vec<HashMap<String, AttributeValue>>,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let mut found = Vec::new();
    let mut keys = keys;
    for attempt in 0..MAX_ATTEMPTS {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| dynamo_error("BatchGetItem", e))?;
        let output = client
            .batch_get_item()
            .request_items(table.clone(), request)
            .send()
            .await
            .map_err(|e| dynamo_error("BatchGetItem", e))?;
        found.extend(output.responses.and_then(|mut m| m.remove(&table)).unwrap_or_default());
        keys = output.unprocessed_keys.and_then(|mut m| m.remove(&table)).map(|k| k.keys).unwrap_or_default();
        if keys.is_empty() {
            return Ok(found);
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(StoreError::Dynamo {
        operation: "BatchGetItem",
        message: format!("{} keys still unprocessed after {MAX_ATTEMPTS} attempts", keys.len()),
    })
}

async fn put_checkpoint(client: Client, table: String, commit: CheckpointCommit) -> Result<bool, StoreError> {
    let item = serde_dynamo::to_item(&commit.checkpoint).map_err(|e| decode_error("PutItem", e))?;
    let request = client.put_item().table_name(table).set_item(Some(item)).expression_attribute_names("#seq", "seq");
    let request = match commit.expected_seq {
        None => request.condition_expression("attribute_not_exists(#seq)"),
        Some(seq) => request.condition_expression("#seq = :expected").expression_attribute_values(":expected", s(&seq)),
    };
    match request.send().await {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
        Err(err) => Err(dynamo_error("PutItem", err)),
    }
}

impl DynamoStore {
    /// Whether `product_id` has a checkpoint (strongly consistent read).
    async fn has_checkpoint(&self, product_id: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.checkpoint_table)
            .key("product_id", s(product_id))
            .projection_expression("product_id")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        Ok(output.item.is_some())
    }
}

impl IndexStore for DynamoStore {
    async fn get_checkpoints<I: AsRef<str> + Sync>(
        &self,
        product_ids: &[I],
    ) -> Result<HashMap<String, Checkpoint>, StoreError> {
        let chunks: Vec<Vec<HashMap<String, AttributeValue>>> = product_ids
            .chunks(GET_BATCH)
            .map(|chunk| chunk.iter().map(|id| HashMap::from([("product_id".to_owned(), s(id.as_ref()))])).collect())
            .collect();
        let results =
            run_bounded(chunks, |keys| batch_get(self.client.clone(), self.checkpoint_table.clone(), keys)).await?;
        let mut checkpoints = HashMap::new();
        for item in results.into_iter().flatten() {
            let cp: Checkpoint = serde_dynamo::from_item(item).map_err(|e| decode_error("BatchGetItem", e))?;
            checkpoints.insert(cp.product_id.clone(), cp);
        }
        Ok(checkpoints)
    }

    async fn write_index(&self, puts: &[IndexRow<'_>], deletes: &[IndexKey<'_>]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(puts.len() + deletes.len());
        for row in puts {
            // The shape `serde_dynamo::to_item` gives an `IndexItem`.
            let item = HashMap::from([
                ("term".to_owned(), AttributeValue::S(row.term.to_owned_term())),
                ("product_id".to_owned(), s(row.product_id)),
                ("seq".to_owned(), s(row.seq)),
            ]);
            let put =
                PutRequest::builder().set_item(Some(item)).build().map_err(|e| dynamo_error("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        for key in deletes {
            let delete = DeleteRequest::builder()
                .key("term", AttributeValue::S(key.term.to_owned_term()))
                .key("product_id", s(key.product_id))
                .build()
                .map_err(|e| dynamo_error("BatchWriteItem", e))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(WRITE_BATCH).map(<[_]>::to_vec).collect();
        run_bounded(chunks, |chunk| batch_write(self.client.clone(), self.index_table.clone(), chunk)).await?;
        Ok(())
    }

    async fn commit_checkpoints(&self, commits: Vec<CheckpointCommit>) -> Result<Vec<bool>, StoreError> {
        run_bounded(commits, |commit| put_checkpoint(self.client.clone(), self.checkpoint_table.clone(), commit)).await
    }

    async fn add_stats(&self, stats: &BatchStats) -> Result<(), StoreError> {
        let counters = stats.counters();
        let expression = counters.iter().map(|(name, _)| format!("#{name} :{name}")).collect::<Vec<_>>().join(", ");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.checkpoint_table)
            .key("product_id", s(STATS_ID))
            .update_expression(format!("ADD {expression}"));
        for (name, value) in counters {
            request = request
                .expression_attribute_names(format!("#{name}"), name)
                .expression_attribute_values(format!(":{name}"), AttributeValue::N(value.to_string()));
        }
        request.send().await.map_err(|e| dynamo_error("UpdateItem", e))?;
        Ok(())
    }

    /// One TransactWriteItems: a Put of the checkpoint, conditional on there being none, and a
    /// Put of every row. Item 0 is the checkpoint, so a cancellation whose first reason is
    /// ConditionalCheckFailed means "already covered". Conflicts with other writers and
    /// throttling are retried; any other cancellation is an error.
    async fn backfill_product(&self, checkpoint: &Checkpoint, rows: &[IndexItem]) -> Result<bool, StoreError> {
        const OPERATION: &str = "TransactWriteItems";
        check_backfill(checkpoint, rows)?;
        let put = |table: &str, item, condition: Option<&str>| -> Result<TransactWriteItem, StoreError> {
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
                .build()
                .map_err(|e| dynamo_error(OPERATION, e))?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        let mut items = Vec::with_capacity(1 + rows.len());
        let item = serde_dynamo::to_item(checkpoint).map_err(|e| decode_error(OPERATION, e))?;
        items.push(put(&self.checkpoint_table, item, Some("attribute_not_exists(product_id)"))?);
        for row in rows {
            let item = serde_dynamo::to_item(row).map_err(|e| decode_error(OPERATION, e))?;
            items.push(put(&self.index_table, item, None)?);
        }

        let id = &checkpoint.product_id;
        let mut codes = Vec::new();
        for attempt in 0..MAX_ATTEMPTS {
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(true),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
                return Err(dynamo_error(OPERATION, err));
            };
            codes = cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect();
            if codes.is_empty() {
                // AWS (and MiniStack 1.5.33) list one reason per item, but an emulator may leave
                // them out. A cancelled transaction wrote nothing, so if the product has a
                // checkpoint now, the answer is "already covered" whatever cancelled it;
                // otherwise the cause is unknown, and the caller may run the backfill again.
                return if self.has_checkpoint(id).await? { Ok(false) } else { Err(dynamo_error(OPERATION, err)) };
            }
            if codes[0] == "ConditionalCheckFailed" {
                return Ok(false);
            }
            if !codes.iter().all(|code| code == "None" || TRANSIENT_CANCELLATIONS.contains(&code.as_str())) {
                return Err(dynamo_error(OPERATION, err));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(StoreError::Dynamo {
            operation: OPERATION,
            message: format!("backfill of {id} still cancelled after {MAX_ATTEMPTS} attempts: {codes:?}"),
        })
    }
}
