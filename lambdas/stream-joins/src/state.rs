//! A join's state rows: one per key (`session#<id>`, `author#<id>`, `clock#<stream>#<shard>`),
//! the state as JSON in `body`, a `version` for the conditional write, and for window state the
//! watermark at which it next expires (`expires_at`), so expiry finds it without reading bodies.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::store::{JoinStore, KeySchema, Row, StoreError, Write, version_of};

/// A state table: partition key `key` (S).
pub fn state_schema(table: &str) -> KeySchema {
    KeySchema { table: table.to_owned(), partition: "key", sort: None }
}

/// A state row as read: its value and the version to write it back on.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub key: String,
    pub value: Option<T>,
    pub version: u64,
}

pub fn decode<T: DeserializeOwned>(row: &Row) -> Result<Loaded<T>, StoreError> {
    let key = row.get("key").and_then(Value::as_str).unwrap_or_default().to_owned();
    let body = row.get("body").and_then(Value::as_str).unwrap_or("null");
    let value = serde_json::from_str(body).map_err(|e| StoreError::Other(format!("state row {key}: {e}")))?;
    Ok(Loaded { key, value, version: version_of(row) })
}

pub async fn load<T: DeserializeOwned, S: JoinStore>(
    store: &S,
    table: &str,
    key: &str,
) -> Result<Loaded<T>, StoreError> {
    let schema = state_schema(table);
    let mut wanted = Row::new();
    wanted.insert("key".to_owned(), json!(key));
    match store.get(&schema, &wanted).await? {
        Some(row) => decode(&row),
        None => Ok(Loaded { key: key.to_owned(), value: None, version: 0 }),
    }
}

/// Writes `value` as the row's next version, on the condition that it is still `loaded`'s.
pub fn put<T: Serialize>(
    table: &str,
    loaded: &Loaded<T>,
    value: &T,
    expires_at: Option<i64>,
) -> Result<Write, StoreError> {
    let body = serde_json::to_string(value).map_err(|e| StoreError::Other(e.to_string()))?;
    let mut row = Row::new();
    row.insert("key".to_owned(), json!(loaded.key));
    row.insert("version".to_owned(), json!(loaded.version + 1));
    row.insert("body".to_owned(), json!(body));
    if let Some(at) = expires_at {
        row.insert("expires_at".to_owned(), json!(at));
    }
    Ok(Write::Put { schema: state_schema(table), row, expected: Some(loaded.version) })
}

/// Deletes the row, on the condition that it is still `loaded`'s version.
pub fn delete<T>(table: &str, loaded: &Loaded<T>) -> Write {
    let mut key = Row::new();
    key.insert("key".to_owned(), json!(loaded.key));
    Write::Delete { schema: state_schema(table), key, expected: Some(loaded.version) }
}

/// A row of any struct (an output row).
pub fn row_of<T: Serialize>(value: &T) -> Result<Row, StoreError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(row)) => Ok(row),
        Ok(_) => Err(StoreError::Other("an output row is not an object".to_owned())),
        Err(e) => Err(StoreError::Other(e.to_string())),
    }
}
