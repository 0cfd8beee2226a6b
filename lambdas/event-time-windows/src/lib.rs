//! Example 6: event-time windows over a Kinesis stream of sensor readings.
//!
//! Each invocation sees one shard's batch, in sequence order. It:
//!
//! 1. reads every shard's row of the watermarks table: its own holds its operators' state (the
//!    open windows) and the last sequence number whose effects are written; the others' clocks
//!    make the watermark global (the minimum across shards, idle ones left out);
//! 2. skips records at or before its checkpoint (a redelivery), then feeds each record, in
//!    order, to the window operators of `labs_core::time` (one per window kind): a reading is
//!    added to its windows or sent to the side output, a heartbeat moves processing time, an
//!    end-of-input record raises the shard's watermark; after each record the watermark is
//!    recomputed at that record's arrival time and the windows it passes are emitted;
//! 3. writes the windows that changed, the late rows and its shard's row (new state, new
//!    checkpoint) together, on the condition that the shard's row is still the version it read.
//!    So a crash before the write loses nothing (the batch comes again and is redone from the
//!    same state), and a redelivery after it counts nothing twice (its records are skipped).
//!
//! Lambda has no timers: time only moves when records arrive, which is why `labs run` sends
//! heartbeats and end-of-input records to every shard.
//!
//! Environment of the deployed function: `WATERMARKS_TABLE`, `WINDOWS_TABLE`, `LATE_TABLE`, and
//! the optional settings of [`settings`].

pub mod batch;
pub mod dynamo;
pub mod settings;
pub mod store;

pub use aws_lambda_events::event::kinesis::KinesisEvent;
pub use aws_lambda_events::event::streams::KinesisEventResponse;
pub use batch::{Batch, BatchError, DeliveredRecord, read_batch};
pub use dynamo::{DynamoStore, Tables};
pub use settings::Settings;
pub use store::{Commit, LateRow, MemoryStore, ShardRow, StoreError, WindowChange, WindowRow, WindowStore, window_key};

use std::collections::BTreeMap;

use labs_core::sequence;
use labs_core::time::operator::{Output, WindowOperator};
use labs_core::time::readings::StreamRecord;
use labs_core::time::watermark::{NO_WATERMARK, WatermarkTracker};
use labs_core::time::windows::Millis;
use lambda_runtime::{Error, LambdaEvent};

/// Environment variable naming the watermarks table.
pub const WATERMARKS_TABLE_ENV: &str = "WATERMARKS_TABLE";
/// Environment variable naming the windows table.
pub const WINDOWS_TABLE_ENV: &str = "WINDOWS_TABLE";
/// Environment variable naming the late (side output) table.
pub const LATE_TABLE_ENV: &str = "LATE_TABLE";

/// Why a batch fails as a whole (a returned error, so Lambda retries it). One line each.
#[derive(Debug, thiserror::Error)]
pub enum BatchFailure {
    #[error(transparent)]
    Unreadable(#[from] BatchError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an invocation did, for the log and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub shard_id: String,
    /// Records at or before the checkpoint: delivered again, skipped.
    pub redelivered: usize,
    pub readings: usize,
    pub heartbeats: usize,
    pub end_markers: usize,
    pub unreadable: usize,
    /// Side-output rows (reading, window).
    pub late: usize,
    /// Window emissions (first answers, revisions, finals).
    pub emitted: usize,
    pub commits: usize,
    pub watermark_before: Millis,
    pub watermark_after: Millis,
}

/// A new shard's row: nothing seen, no watermark.
fn new_shard_row(shard_id: &str, now: Millis) -> ShardRow {
    ShardRow {
        shard_id: shard_id.to_owned(),
        watermark: NO_WATERMARK,
        overall_watermark: NO_WATERMARK,
        first_seen_at: now,
        last_seen_at: now,
        ..ShardRow::default()
    }
}

/// One invocation's work in progress on its shard.
struct ShardTask<'a> {
    settings: &'a Settings,
    shard_id: String,
    row: ShardRow,
    tracker: WatermarkTracker,
    operators: Vec<WindowOperator>,
    commit: Commit,
    wall_now: Millis,
    summary: BatchSummary,
}

impl ShardTask<'_> {
    fn apply(&mut self, outputs: Vec<Output>, reading_id: Option<&str>, record: &DeliveredRecord) {
        let (shard, sequence) = (self.shard_id.as_str(), record.sequence_number.as_str());
        for output in outputs {
            match output {
                // A window already emitted that changed past the watermark (a growing session)
                // keeps its emitted row until it is emitted again; its state is in the shard row.
                Output::Updated(result) if result.revision > 0 => {}
                Output::Updated(result) => {
                    self.commit.put_window(WindowRow::from_result(&result, None, shard, sequence))
                }
                Output::Emitted(result) => {
                    self.summary.emitted += 1;
                    let row = WindowRow::from_result(&result, Some(self.wall_now), shard, sequence);
                    self.commit.put_window(row);
                }
                Output::Late(late) => {
                    self.summary.late += 1;
                    self.row.late += 1;
                    let id = reading_id.unwrap_or_default();
                    self.commit.put_late(LateRow::new(id, &late, shard, sequence, record.arrival_millis));
                }
                Output::Retracted { kind, key, window } => self.commit.delete_window(&kind, &key, &window),
            }
        }
    }

    /// Moves every window operator to `watermark` (if it is ahead), on behalf of `record`.
    fn advance(&mut self, watermark: Millis, record: &DeliveredRecord) {
        self.row.overall_watermark = self.row.overall_watermark.max(watermark);
        for index in 0..self.operators.len() {
            let outputs = self.operators[index].process_watermark(self.row.overall_watermark);
            self.apply(outputs, None, record);
        }
    }

    fn handle(&mut self, record: &DeliveredRecord) {
        let now = record.arrival_millis;
        match &record.record {
            Err(problem) => {
                tracing::warn!(shard_id = %self.shard_id, sequence_number = %record.sequence_number, "skipping: {problem}");
                self.summary.unreadable += 1;
                self.row.unreadable += 1;
            }
            Ok(StreamRecord::Reading(reading)) => {
                self.summary.readings += 1;
                self.row.readings += 1;
                for index in 0..self.operators.len() {
                    let outputs =
                        self.operators[index].process_element(&reading.device_id, reading.event_time, reading.value);
                    self.apply(outputs, Some(&reading.reading_id), record);
                }
                self.tracker.on_event(&self.shard_id, reading.event_time, now);
            }
            Ok(StreamRecord::Heartbeat { .. }) => {
                self.summary.heartbeats += 1;
                self.row.heartbeats += 1;
                self.tracker.on_heartbeat(&self.shard_id, now);
            }
            Ok(StreamRecord::EndOfInput { watermark, .. }) => {
                self.summary.end_markers += 1;
                self.tracker.on_end_of_input(&self.shard_id, *watermark, now);
            }
        }
        let overall = self.tracker.watermark(now).watermark;
        self.advance(overall, record);
        self.row.checkpoint.clone_from(&record.sequence_number);
    }

    /// Writes what the records so far did, and the shard's row that says so.
    async fn flush<S: WindowStore>(&mut self, store: &S) -> Result<(), StoreError> {
        if let Some(clock) = self.tracker.clock(&self.shard_id) {
            self.row.set_clock(clock);
            self.row.watermark = clock.watermark(&self.settings.watermark);
        }
        self.row.open_windows = self
            .operators
            .iter()
            .map(|op| (op.kind().to_string(), op.open_windows().cloned().collect::<Vec<_>>()))
            .filter(|(_, open)| !open.is_empty())
            .collect();
        self.row.version = self.commit.expected_version + 1;
        self.row.updated_at = self.wall_now;
        self.commit.shard = self.row.clone();
        store.commit(&self.commit).await?;
        self.summary.commits += 1;
        self.commit = Commit { expected_version: self.row.version, ..Commit::default() };
        Ok(())
    }
}

/// Handles one batch at wall-clock time `wall_now` (what `emitted_at` records).
pub async fn process_batch<S: WindowStore>(
    store: &S,
    settings: &Settings,
    event: &KinesisEvent,
    wall_now: Millis,
) -> Result<BatchSummary, BatchFailure> {
    let batch = read_batch(event)?;
    let Some(first) = batch.records.first() else { return Ok(BatchSummary::default()) };
    let shard_id = batch.shard_id.clone();
    let rows = store.load_shards().await?;
    let mut row = rows
        .iter()
        .find(|r| r.shard_id == shard_id)
        .cloned()
        .unwrap_or_else(|| new_shard_row(&shard_id, first.arrival_millis));
    let tracker = WatermarkTracker::from_clocks(settings.watermark, rows.iter().map(ShardRow::clock));
    let mut open: BTreeMap<String, Vec<_>> = std::mem::take(&mut row.open_windows);
    let operators = settings
        .kinds
        .iter()
        .map(|kind| {
            let state = open.remove(&kind.to_string()).unwrap_or_default();
            WindowOperator::restore(*kind, settings.allowed_lateness, row.overall_watermark, state)
        })
        .collect();
    let summary = BatchSummary {
        shard_id: shard_id.clone(),
        watermark_before: row.overall_watermark,
        watermark_after: row.overall_watermark,
        ..BatchSummary::default()
    };
    let commit = Commit { expected_version: row.version, ..Commit::default() };
    let mut task = ShardTask { settings, shard_id, row, tracker, operators, commit, wall_now, summary };

    // The overall watermark never goes back, even when an idle shard wakes up behind it (as
    // Flink's output watermark never does): the furthest any shard's windows were moved is where
    // every shard's windows start from.
    let floor = rows.iter().map(|r| r.overall_watermark).max().unwrap_or(NO_WATERMARK);
    task.advance(floor, first);

    let mut pending = false;
    for record in &batch.records {
        let done = &task.row.checkpoint;
        if !done.is_empty() && sequence::compare(&record.sequence_number, done).is_le() {
            task.summary.redelivered += 1;
            continue;
        }
        task.handle(record);
        pending = true;
        if task.commit.items() >= settings.commit_at_items {
            task.flush(store).await?;
            pending = false;
        }
    }
    if pending {
        task.flush(store).await?;
    }
    task.summary.watermark_after = task.row.overall_watermark;
    let summary = task.summary;
    tracing::info!(
        shard_id = %summary.shard_id,
        records = batch.records.len(),
        redelivered = summary.redelivered,
        readings = summary.readings,
        late = summary.late,
        emitted = summary.emitted,
        watermark_before = summary.watermark_before,
        watermark_after = summary.watermark_after,
        "batch handled"
    );
    Ok(summary)
}

/// Milliseconds since the Unix epoch, now.
pub fn wall_clock_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

/// The Lambda handler: success is an empty response; any failure fails the batch, which Lambda
/// retries (the checkpoint makes the retry skip what was written).
pub async fn handle<S: WindowStore>(
    store: &S,
    settings: &Settings,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, Error> {
    match process_batch(store, settings, &event.payload, wall_clock_millis()).await {
        Ok(_) => Ok(KinesisEventResponse::default()),
        Err(failure) => {
            tracing::error!("failing the batch: {failure}");
            Err(failure.into())
        }
    }
}
