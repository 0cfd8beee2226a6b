//! Example 8: stream joins, one crate for the four functions (the stack sets `JOIN`):
//!
//! - `window` ([`window`]): searches x clicks by session within a window, outer on searches,
//!   its state evicted past the watermark. Mappings: `ex8-searches`, `ex8-clicks`.
//! - `replica` ([`enrich`]): the customers table's change stream into the join's replica.
//! - `enrich` ([`enrich`]): orders x customer profile, as of the order's time and the latest.
//! - `timeline` ([`timeline`]): posts x follows, a materialised timeline per user. Mappings:
//!   the two tables' streams.
//!
//! The join logic is `labs_core::join`; this crate keeps its state in DynamoDB ([`store`],
//! [`state`]) and reads the batches ([`records`]). Any failure fails the whole batch, which the
//! mapping retries; every step is idempotent (ids in state, sequence guards, keyed puts).

pub mod dynamo;
pub mod enrich;
pub mod records;
pub mod settings;
pub mod state;
pub mod store;
pub mod timeline;
pub mod window;

use aws_lambda_events::event::dynamodb::Event as DynamoEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

pub use settings::{Mode, Settings, SettingsError};
pub use store::{JoinStore, MemoryStore, StoreError};

/// Times a step re-reads and redoes its key after losing a conditional write to another
/// invocation before failing the batch.
pub const MAX_CONFLICT_RETRIES: usize = 8;

/// Why a batch fails as a whole (Lambda retries it). One line each.
#[derive(Debug, thiserror::Error)]
pub enum BatchFailure {
    #[error(transparent)]
    Unreadable(#[from] records::BatchError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

fn event<T: serde::de::DeserializeOwned>(payload: Value, what: &str) -> Result<T, BatchFailure> {
    serde_json::from_value(payload).map_err(|e| BatchFailure::Other(format!("the event is not a {what} batch: {e}")))
}

/// Handles one batch in the function's mode.
pub async fn process<S: JoinStore>(store: &S, settings: &Settings, payload: Value) -> Result<(), BatchFailure> {
    match settings.mode {
        Mode::Window => {
            let event: KinesisEvent = event(payload, "Kinesis")?;
            window::process_batch(store, &settings.window, &event).await.map(drop)
        }
        Mode::Replica => {
            let event: DynamoEvent = event(payload, "DynamoDB stream")?;
            enrich::apply_customer_changes(store, &settings.tables.replica, &event).await.map(drop)
        }
        Mode::Enrich => {
            let event: KinesisEvent = event(payload, "Kinesis")?;
            enrich::enrich_orders(store, &settings.tables.replica, &settings.tables.enriched, &event).await.map(drop)
        }
        Mode::Timeline => {
            let event: DynamoEvent = event(payload, "DynamoDB stream")?;
            timeline::process_batch(store, &settings.timeline, &event).await.map(drop)
        }
    }
}

/// The Lambda handler: an empty response on success; a failure fails the batch.
pub async fn handle<S: JoinStore>(store: &S, settings: &Settings, event: LambdaEvent<Value>) -> Result<Value, Error> {
    match process(store, settings, event.payload).await {
        Ok(()) => Ok(Value::Object(Default::default())),
        Err(failure) => {
            tracing::error!("failing the batch: {failure}");
            Err(failure.into())
        }
    }
}
