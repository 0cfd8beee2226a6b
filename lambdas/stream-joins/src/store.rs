//! Where the joins keep their state and write their outputs, as a small set of operations on
//! rows (JSON objects, one per DynamoDB item) so the logic is tested against [`MemoryStore`] and
//! deployed against [`crate::dynamo::DynamoStore`].
//!
//! A join's state row carries a `version`. Each step reads the rows it needs, decides, and
//! writes the new state row on the condition that its version is still the one read, together
//! with the step's outputs, in one transaction. Two invocations that touch one key (a search
//! and its click, read by two pollers) cannot both win: the loser re-reads and redoes its step.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Map, Value};
use thiserror::Error;

pub type Row = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("{table}: the row {key} changed since it was read")]
    Conflict { table: String, key: String },
    #[error("DynamoDB {operation} failed: {message}")]
    Dynamo { operation: &'static str, message: String },
    #[error("{0}")]
    Other(String),
}

/// A row's key: its table and the names of its key attributes (partition key first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    pub table: String,
    pub partition: &'static str,
    pub sort: Option<&'static str>,
}

impl KeySchema {
    pub fn key_of(&self, row: &Row) -> Result<Row, StoreError> {
        let mut key = Row::new();
        for name in std::iter::once(self.partition).chain(self.sort) {
            let value =
                row.get(name).ok_or_else(|| StoreError::Other(format!("{}: a row has no {name}", self.table)))?;
            key.insert(name.to_owned(), value.clone());
        }
        Ok(key)
    }
}

/// The condition a write is made on: the row's `version` as read (0: the row must not exist).
pub type ExpectedVersion = Option<u64>;

#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put { schema: KeySchema, row: Row, expected: ExpectedVersion },
    Delete { schema: KeySchema, key: Row, expected: ExpectedVersion },
}

impl Write {
    pub fn put(schema: &KeySchema, row: Row) -> Self {
        Write::Put { schema: schema.clone(), row, expected: None }
    }
}

pub trait JoinStore {
    fn get(&self, schema: &KeySchema, key: &Row) -> impl Future<Output = Result<Option<Row>, StoreError>> + Send;
    /// Every row of a table (strongly consistent).
    fn scan(&self, table: &str) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;
    /// The rows with partition key `value`, by sort key.
    fn query(&self, schema: &KeySchema, value: &str) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;
    /// All or nothing; [`StoreError::Conflict`] when a condition fails.
    fn transact(&self, writes: &[Write]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A row's version, 0 when it has none.
pub fn version_of(row: &Row) -> u64 {
    row.get("version").and_then(Value::as_u64).unwrap_or(0)
}

type MemoryKey = (String, String);

/// The tables in memory, all-or-nothing per transaction.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<BTreeMap<MemoryKey, Row>>,
}

fn memory_key(schema: &KeySchema, key: &Row) -> Result<MemoryKey, StoreError> {
    Ok((schema.table.clone(), Value::Object(schema.key_of(key)?).to_string()))
}

impl MemoryStore {
    pub fn rows(&self, table: &str) -> Vec<Row> {
        let tables = self.tables.lock().expect("memory store lock");
        tables.iter().filter(|((t, _), _)| t == table).map(|(_, row)| row.clone()).collect()
    }
}

impl JoinStore for MemoryStore {
    async fn get(&self, schema: &KeySchema, key: &Row) -> Result<Option<Row>, StoreError> {
        let key = memory_key(schema, key)?;
        Ok(self.tables.lock().expect("memory store lock").get(&key).cloned())
    }

    async fn scan(&self, table: &str) -> Result<Vec<Row>, StoreError> {
        Ok(self.rows(table))
    }

    async fn query(&self, schema: &KeySchema, value: &str) -> Result<Vec<Row>, StoreError> {
        let mut rows: Vec<Row> = self
            .rows(&schema.table)
            .into_iter()
            .filter(|row| row.get(schema.partition).and_then(Value::as_str) == Some(value))
            .collect();
        if let Some(sort) = schema.sort {
            rows.sort_by(|a, b| {
                let (a, b) = (a.get(sort), b.get(sort));
                match (a.and_then(Value::as_i64), b.and_then(Value::as_i64)) {
                    (Some(a), Some(b)) => a.cmp(&b),
                    _ => a.map(Value::to_string).cmp(&b.map(Value::to_string)),
                }
            });
        }
        Ok(rows)
    }

    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut tables = self.tables.lock().expect("memory store lock");
        for write in writes {
            let (schema, key, expected) = match write {
                Write::Put { schema, row, expected } => (schema, row, expected),
                Write::Delete { schema, key, expected } => (schema, key, expected),
            };
            if let Some(expected) = expected {
                let stored = tables.get(&memory_key(schema, key)?).map_or(0, version_of);
                if stored != *expected {
                    return Err(StoreError::Conflict {
                        table: schema.table.clone(),
                        key: Value::Object(schema.key_of(key)?).to_string(),
                    });
                }
            }
        }
        for write in writes {
            match write {
                Write::Put { schema, row, .. } => drop(tables.insert(memory_key(schema, row)?, row.clone())),
                Write::Delete { schema, key, .. } => drop(tables.remove(&memory_key(schema, key)?)),
            }
        }
        Ok(())
    }
}
