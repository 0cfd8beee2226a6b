use thiserror::Error;

/// A storage call that failed, in one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} failed: {message}")]
    Dynamo { operation: &'static str, message: String },
    #[error("unexpected item in {table}: {message}")]
    Decode { table: String, message: String },
    #[error("{0}")]
    Other(String),
}
