//! [`JoinStore`] on DynamoDB. Rows convert to items with serde_dynamo. Calls: GetItem and Query
//! (consistent), Scan (consistent), TransactWriteItems (Put and Delete, conditional on `version`
//! where a write says so).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

use crate::store::{ExpectedVersion, JoinStore, KeySchema, Row, StoreError, Write};

const MAX_ATTEMPTS: u32 = 6;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
}

fn dynamo_error<E: std::error::Error>(operation: &'static str, err: E) -> StoreError {
    StoreError::Dynamo { operation, message: DisplayErrorContext(&err).to_string() }
}

fn to_item(row: &Row) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(row).map_err(|e| StoreError::Other(format!("a row does not convert to an item: {e}")))
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<Row, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Other(format!("an item does not convert to a row: {e}")))
}

/// A condition expression with its attribute names and values.
struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// The condition for `expected`: the row absent (0) or at that version.
fn condition(schema: &KeySchema, expected: ExpectedVersion) -> Option<Condition> {
    let expected = expected?;
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    if expected == 0 {
        names.insert("#pk".to_owned(), schema.partition.to_owned());
        Some(Condition { expression: "attribute_not_exists(#pk)".to_owned(), names, values })
    } else {
        names.insert("#version".to_owned(), "version".to_owned());
        values.insert(":expected".to_owned(), AttributeValue::N(expected.to_string()));
        Some(Condition { expression: "#version = :expected".to_owned(), names, values })
    }
}

impl DynamoStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn action(write: &Write) -> Result<TransactWriteItem, StoreError> {
        let build = |e| dynamo_error("TransactWriteItems", e);
        Ok(match write {
            Write::Put { schema, row, expected } => {
                let mut put = Put::builder().table_name(&schema.table).set_item(Some(to_item(row)?));
                if let Some(Condition { expression, names, values }) = condition(schema, *expected) {
                    put = put.condition_expression(expression).set_expression_attribute_names(Some(names));
                    put = put.set_expression_attribute_values((!values.is_empty()).then_some(values));
                }
                TransactWriteItem::builder().put(put.build().map_err(build)?).build()
            }
            Write::Delete { schema, key, expected } => {
                let mut delete =
                    Delete::builder().table_name(&schema.table).set_key(Some(to_item(&schema.key_of(key)?)?));
                if let Some(Condition { expression, names, values }) = condition(schema, *expected) {
                    delete = delete.condition_expression(expression).set_expression_attribute_names(Some(names));
                    delete = delete.set_expression_attribute_values((!values.is_empty()).then_some(values));
                }
                TransactWriteItem::builder().delete(delete.build().map_err(build)?).build()
            }
        })
    }
}

impl JoinStore for DynamoStore {
    async fn get(&self, schema: &KeySchema, key: &Row) -> Result<Option<Row>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&schema.table)
            .set_key(Some(to_item(&schema.key_of(key)?)?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        output.item.map(from_item).transpose()
    }

    async fn scan(&self, table: &str) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| dynamo_error("Scan", e))?;
            for item in page.items() {
                rows.push(from_item(item.clone())?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(rows);
            }
        }
    }

    async fn query(&self, schema: &KeySchema, value: &str) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&schema.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", schema.partition)
                .expression_attribute_values(":pk", AttributeValue::S(value.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| dynamo_error("Query", e))?;
            for item in page.items() {
                rows.push(from_item(item.clone())?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(rows);
            }
        }
    }

    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        const OPERATION: &str = "TransactWriteItems";
        let actions = writes.iter().map(Self::action).collect::<Result<Vec<_>, _>>()?;
        let guarded = writes
            .iter()
            .position(|w| matches!(w, Write::Put { expected: Some(_), .. } | Write::Delete { expected: Some(_), .. }));
        for attempt in 0..MAX_ATTEMPTS {
            let err = match self.client.transact_write_items().set_transact_items(Some(actions.clone())).send().await {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() else {
                return Err(dynamo_error(OPERATION, err));
            };
            let codes: Vec<&str> =
                cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
            // AWS gives one reason per action; an emulator may give none: with a condition in
            // the transaction, read that as the condition failing (the caller re-reads).
            let failed_condition = codes.contains(&"ConditionalCheckFailed") || (codes.is_empty() && guarded.is_some());
            if let (true, Some(index)) = (failed_condition, guarded) {
                let (table, key) = match &writes[index] {
                    Write::Put { schema, row, .. } => (schema.table.clone(), schema.key_of(row)?),
                    Write::Delete { schema, key, .. } => (schema.table.clone(), schema.key_of(key)?),
                };
                return Err(StoreError::Conflict { table, key: serde_json::Value::Object(key).to_string() });
            }
            if !codes.iter().all(|c| matches!(*c, "None" | "TransactionConflict" | "ThrottlingError")) {
                return Err(dynamo_error(OPERATION, err));
            }
            tokio::time::sleep(Duration::from_millis(25u64 << attempt)).await;
        }
        Err(StoreError::Dynamo {
            operation: OPERATION,
            message: format!("still cancelled after {MAX_ATTEMPTS} attempts"),
        })
    }
}
