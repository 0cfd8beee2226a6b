//! Example 6: Lambda's own tumbling windows (`TumblingWindowInSeconds` on the mapping), beside
//! the event-time windows of `event-time-windows`.
//!
//! Lambda groups a shard's records by *arrival* time (`approximateArrivalTimestamp`) into
//! windows aligned to the window length, and carries a `state` from one invocation's response to
//! the next within a window. This function adds the readings' count and sum to that state; on
//! the window's last call (`isFinalInvokeForWindow`) it writes the shard's row for the window to
//! the windows table. A device's backlog sent minutes late therefore lands in the window it
//! arrived in, not the one it was measured in: the false spike the learner sees.
//!
//! A failed invocation is retried with the state it was given, so nothing is counted twice; the
//! row write is idempotent (see [`store`]). Environment: `WINDOWS_TABLE`.

pub mod state;
pub mod store;

pub use aws_lambda_events::event::kinesis::{KinesisTimeWindowEvent, KinesisTimeWindowEventResponse};
pub use state::{StateError, WindowState};
pub use store::{ArrivalRow, ArrivalStore, DynamoStore, MemoryStore, StoreError, WindowPart};

use labs_core::time::readings::{StreamRecord, parse_record};
use labs_core::time::windows::Millis;
use lambda_runtime::{Error, LambdaEvent};

/// Environment variable naming the windows table.
pub const WINDOWS_TABLE_ENV: &str = "WINDOWS_TABLE";

/// Why an invocation fails (Lambda then retries it with the same state). One line each.
#[derive(Debug, thiserror::Error)]
pub enum WindowFailure {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the event names no shard (shardId), so the window's row has no key")]
    NoShard,
    #[error("the window ends at {end} ms, not after its start at {start} ms")]
    EmptyWindow { start: Millis, end: Millis },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `arrival-<length>`: the kind name of Lambda's windows in the windows table (`arrival-1m`).
pub fn arrival_kind(length_millis: Millis) -> String {
    let length = if length_millis % 60_000 == 0 {
        format!("{}m", length_millis / 60_000)
    } else if length_millis % 1000 == 0 {
        format!("{}s", length_millis / 1000)
    } else {
        format!("{length_millis}ms")
    };
    format!("arrival-{length}")
}

/// Adds `event`'s records to its window's state; on the window's last call (or when Lambda
/// ends it early) writes the part to `store`. Returns the state for Lambda to carry on.
pub async fn process_window<S: ArrivalStore>(
    store: &S,
    event: &KinesisTimeWindowEvent,
    wall_now: Millis,
) -> Result<KinesisTimeWindowEventResponse, WindowFailure> {
    let properties = &event.time_window_properties;
    let mut state = WindowState::from_map(&properties.state)?;
    for record in &event.kinesis_event.records {
        let sequence_number = &record.kinesis.sequence_number;
        if state.first_sequence_number.is_empty() {
            state.first_sequence_number.clone_from(sequence_number);
        }
        state.last_sequence_number.clone_from(sequence_number);
        match parse_record(&record.kinesis.data.0) {
            Ok(StreamRecord::Reading(reading)) => {
                state.count += 1;
                state.sum += reading.value;
            }
            Ok(StreamRecord::Heartbeat { .. } | StreamRecord::EndOfInput { .. }) => state.control += 1,
            Err(problem) => {
                tracing::warn!(sequence_number = %sequence_number, "skipping: {problem}");
                state.unreadable += 1;
            }
        }
    }

    let (start, end) = (properties.window.start.timestamp_millis(), properties.window.end.timestamp_millis());
    let closing = properties.is_final_invoke_for_window || properties.is_window_terminated_early;
    if closing {
        if end <= start {
            return Err(WindowFailure::EmptyWindow { start, end });
        }
        let shard_id = properties.shard_id.clone().filter(|s| !s.is_empty()).ok_or(WindowFailure::NoShard)?;
        let kind = arrival_kind(end - start);
        let part = WindowPart {
            window_key: format!("{kind}#{shard_id}"),
            start,
            end,
            kind,
            shard_id,
            part: if state.first_sequence_number.is_empty() {
                "none".to_owned()
            } else {
                state.first_sequence_number.clone()
            },
            count: state.count,
            sum: state.sum,
            is_final: properties.is_final_invoke_for_window,
            emitted_at: wall_now,
        };
        store.add_part(&part).await?;
        tracing::info!(
            window_key = %part.window_key,
            start,
            end,
            count = part.count,
            sum = part.sum,
            is_final = part.is_final,
            "window written"
        );
    }

    let mut response = KinesisTimeWindowEventResponse::default();
    // The response must carry `state` (without it the invocation counts as failed). After the
    // last call Lambda starts the next window with fresh state whatever is returned here.
    response.time_window_event_response_properties.state = state.to_map();
    Ok(response)
}

/// Milliseconds since the Unix epoch, now.
pub fn wall_clock_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

/// The Lambda handler.
pub async fn handle<S: ArrivalStore>(
    store: &S,
    event: LambdaEvent<KinesisTimeWindowEvent>,
) -> Result<KinesisTimeWindowEventResponse, Error> {
    process_window(store, &event.payload, wall_clock_millis()).await.map_err(|failure| {
        tracing::error!("failing the invocation: {failure}");
        failure.into()
    })
}
