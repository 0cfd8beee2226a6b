//! Where the function keeps its state and its results: the item shapes of the three tables, the
//! trait the handler needs, and an in-memory implementation for tests and in-process benchmarks.
//!
//! - Watermarks (partition key `shard_id`): one [`ShardRow`] per shard: its clock and watermark,
//!   and everything the shard's operators hold (open windows, the last sequence number applied).
//! - Windows (partition key `window_key` = `<kind>#<device>`, sort key `start`): [`WindowRow`].
//! - Late (partition key `reading_id`, sort key `window` = `<kind>#<start>`): [`LateRow`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use labs_core::time::operator::{LateEvent, OpenWindow, WindowResult};
use labs_core::time::watermark::ShardClock;
use labs_core::time::windows::{Millis, Window, WindowKind};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("{operation} failed: {message}")]
    Dynamo { operation: &'static str, message: String },
    /// Another invocation wrote the shard's row since this one read it.
    #[error("the row of {shard_id} changed since it was read (expected version {expected}); the batch will be retried")]
    Conflict { shard_id: String, expected: u64 },
    #[error("{0}")]
    Other(String),
}

/// A row of the watermarks table: one shard's progress and its operators' state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShardRow {
    pub shard_id: String,
    /// This shard's own watermark (largest event time minus the bound, or an end-of-input's).
    pub watermark: Millis,
    /// The overall watermark (minimum across shards, idleness aside) this shard's windows were
    /// last advanced to. Never goes back.
    pub overall_watermark: Millis,
    pub max_event_time: Option<Millis>,
    pub declared_watermark: Option<Millis>,
    /// Processing times (the records' arrival timestamps): first record, latest record, latest
    /// data record (idleness is judged by this one).
    pub first_seen_at: Millis,
    pub last_seen_at: Millis,
    pub last_data_at: Option<Millis>,
    /// The last sequence number whose effects are written: a redelivered record at or before it
    /// is skipped.
    pub checkpoint: String,
    /// Incremented on every write; a write expects the version it read.
    pub version: u64,
    pub readings: u64,
    /// (reading, window) pairs sent to the side output.
    pub late: u64,
    pub heartbeats: u64,
    pub unreadable: u64,
    /// Windows that may still change, by kind name.
    pub open_windows: BTreeMap<String, Vec<OpenWindow>>,
    /// Wall-clock time of the write.
    pub updated_at: Millis,
}

impl ShardRow {
    pub fn clock(&self) -> ShardClock {
        ShardClock {
            shard_id: self.shard_id.clone(),
            max_event_time: self.max_event_time,
            declared_watermark: self.declared_watermark,
            first_seen_at: self.first_seen_at,
            last_seen_at: self.last_seen_at,
            last_data_at: self.last_data_at,
        }
    }

    pub fn set_clock(&mut self, clock: &ShardClock) {
        self.max_event_time = clock.max_event_time;
        self.declared_watermark = clock.declared_watermark;
        self.first_seen_at = clock.first_seen_at;
        self.last_seen_at = clock.last_seen_at;
        self.last_data_at = clock.last_data_at;
    }
}

/// The windows table's partition key for a kind and device.
pub fn window_key(kind: &WindowKind, key: &str) -> String {
    format!("{kind}#{key}")
}

/// A row of the windows table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRow {
    /// `<kind>#<device>` (`tumbling-1m#device-03`), or `arrival-<size>#<shard>` for Lambda's own
    /// tumbling windows.
    pub window_key: String,
    pub start: Millis,
    pub end: Millis,
    pub kind: String,
    pub key: String,
    pub count: u64,
    pub sum: i64,
    /// 0 while open (not emitted), then 1, 2, ... per emission.
    pub revision: u32,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Wall-clock time of the latest emission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_at: Option<Millis>,
    /// The overall watermark at the latest emission: at least `end` for every emitted window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_at_emit: Option<Millis>,
    pub shard_id: String,
    /// The record whose processing wrote this version of the row.
    #[serde(default)]
    pub sequence_number: String,
}

impl WindowRow {
    /// The row for an operator's result; `emitted_at` only for an emission.
    pub fn from_result(result: &WindowResult, emitted_at: Option<Millis>, shard_id: &str, sequence: &str) -> Self {
        Self {
            window_key: window_key(&result.kind, &result.key),
            start: result.window.start,
            end: result.window.end,
            kind: result.kind.to_string(),
            key: result.key.clone(),
            count: result.count,
            sum: result.sum,
            revision: result.revision,
            is_final: result.is_final,
            emitted_at,
            watermark_at_emit: emitted_at.map(|_| result.watermark),
            shard_id: shard_id.to_owned(),
            sequence_number: sequence.to_owned(),
        }
    }
}

/// A row of the late table: one reading that missed one closed window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRow {
    pub reading_id: String,
    /// `<kind>#<window start>`.
    pub window: String,
    pub kind: String,
    pub device_id: String,
    pub window_start: Millis,
    pub window_end: Millis,
    pub event_time: Millis,
    pub value: i64,
    /// The overall watermark the reading met.
    pub watermark: Millis,
    pub shard_id: String,
    pub sequence_number: String,
    /// Its arrival time in the stream.
    pub arrived_at: Millis,
}

impl LateRow {
    pub fn new(reading_id: &str, late: &LateEvent, shard_id: &str, sequence_number: &str, arrived_at: Millis) -> Self {
        Self {
            reading_id: reading_id.to_owned(),
            window: format!("{}#{}", late.kind, late.window.start),
            kind: late.kind.to_string(),
            device_id: late.key.clone(),
            window_start: late.window.start,
            window_end: late.window.end,
            event_time: late.event_time,
            value: late.value,
            watermark: late.watermark,
            shard_id: shard_id.to_owned(),
            sequence_number: sequence_number.to_owned(),
            arrived_at,
        }
    }
}

/// A change to the windows table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowChange {
    Put(WindowRow),
    /// A session swallowed by one that starts elsewhere.
    Delete {
        window_key: String,
        start: Millis,
    },
}

/// Everything one step writes: window rows and late rows (each replacing any row with the same
/// key, so writing them twice is harmless), then the shard's row, on the condition that its
/// version is still `expected_version` (0: no row yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// At most one change per window: the latest.
    pub windows: BTreeMap<(String, Millis), WindowChange>,
    /// By (reading id, window).
    pub late: BTreeMap<(String, String), LateRow>,
    pub shard: ShardRow,
    pub expected_version: u64,
}

impl Commit {
    pub fn put_window(&mut self, row: WindowRow) {
        self.windows.insert((row.window_key.clone(), row.start), WindowChange::Put(row));
    }

    pub fn delete_window(&mut self, kind: &WindowKind, key: &str, window: &Window) {
        let window_key = window_key(kind, key);
        self.windows
            .insert((window_key.clone(), window.start), WindowChange::Delete { window_key, start: window.start });
    }

    pub fn put_late(&mut self, row: LateRow) {
        self.late.insert((row.reading_id.clone(), row.window.clone()), row);
    }

    /// Items written, the shard's row included.
    pub fn items(&self) -> usize {
        self.windows.len() + self.late.len() + 1
    }
}

pub trait WindowStore {
    /// Every shard's row (strongly consistent).
    fn load_shards(&self) -> impl Future<Output = Result<Vec<ShardRow>, StoreError>> + Send;

    /// Writes `commit`: its effects, then the shard's row if its version is as expected.
    fn commit(&self, commit: &Commit) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The same tables in memory, all-or-nothing per commit.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    shards: BTreeMap<String, ShardRow>,
    windows: BTreeMap<(String, Millis), WindowRow>,
    late: BTreeMap<(String, String), LateRow>,
    commits: usize,
    /// Commits left before every further one fails (a crash or an outage); `None`: never.
    commits_before_failure: Option<usize>,
}

impl MemoryStore {
    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After `n` more successful commits, every commit fails until [`MemoryStore::recover`].
    pub fn fail_after(&self, n: usize) {
        self.state().commits_before_failure = Some(n);
    }

    pub fn recover(&self) {
        self.state().commits_before_failure = None;
    }

    pub fn shards(&self) -> BTreeMap<String, ShardRow> {
        self.state().shards.clone()
    }

    pub fn windows(&self) -> Vec<WindowRow> {
        self.state().windows.values().cloned().collect()
    }

    pub fn late(&self) -> Vec<LateRow> {
        self.state().late.values().cloned().collect()
    }

    pub fn commits(&self) -> usize {
        self.state().commits
    }

    /// Puts a shard's row as another invocation would have (tests of the overall watermark).
    pub fn put_shard(&self, row: ShardRow) {
        self.state().shards.insert(row.shard_id.clone(), row);
    }
}

impl WindowStore for MemoryStore {
    async fn load_shards(&self) -> Result<Vec<ShardRow>, StoreError> {
        Ok(self.state().shards.values().cloned().collect())
    }

    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut state = self.state();
        match state.commits_before_failure {
            Some(0) => {
                return Err(StoreError::Dynamo {
                    operation: "TransactWriteItems",
                    message: "InternalServerError: the table is down".to_owned(),
                });
            }
            Some(n) => state.commits_before_failure = Some(n - 1),
            None => {}
        }
        let shard_id = &commit.shard.shard_id;
        let version = state.shards.get(shard_id).map_or(0, |row| row.version);
        if version != commit.expected_version {
            return Err(StoreError::Conflict { shard_id: shard_id.clone(), expected: commit.expected_version });
        }
        for (key, change) in &commit.windows {
            match change {
                WindowChange::Put(row) => state.windows.insert(key.clone(), row.clone()),
                WindowChange::Delete { .. } => state.windows.remove(key),
            };
        }
        for (key, row) in &commit.late {
            state.late.insert(key.clone(), row.clone());
        }
        state.shards.insert(shard_id.clone(), commit.shard.clone());
        state.commits += 1;
        Ok(())
    }
}
