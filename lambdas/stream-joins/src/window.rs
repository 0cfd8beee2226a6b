//! The window join in a Lambda: searches and clicks from two Kinesis streams, one function for
//! both mappings.
//!
//! State lives in the function's state table: one row per session (`session#<id>`, the
//! [`SessionState`] of `labs_core::join::window`, with `expires_at`, the watermark at which
//! something in it can no longer match) and one row per shard of each stream
//! (`clock#<stream>#<shard>`: its watermark clock, the last sequence number handled, the late
//! count, and the state's size after its last invocation). An invocation:
//!
//! 1. reads every clock (the watermark is the minimum across both streams' shards, as in
//!    example 6) and skips records at or before its own checkpoint (a redelivery);
//! 2. per search or click, reads the session's row, joins, and writes the row back together
//!    with the matched output rows, on the row's version: whichever of a search and its click is
//!    written second sees the first, even when two pollers handle them at once;
//! 3. once the watermark has moved, evicts every session row due (`expires_at <= watermark`):
//!    unmatched searches leave as "no click" rows, and a row left empty is deleted (explicitly:
//!    TTL would delete it within days);
//! 4. writes its clock row.
//!
//! Lambda has no timers: the watermark only moves when records come, so `labs run` ends with an
//! end-of-input record on every shard and then a heartbeat, as in example 6.

use labs_core::join::clicks::{ClickstreamRecord, parse_record};
use labs_core::join::window::{JoinOutput, JoinRow, SessionState};
use labs_core::sequence;
use labs_core::time::watermark::{NO_WATERMARK, ShardClock, WatermarkConfig, WatermarkTracker};
use labs_core::time::windows::Millis;
use serde::{Deserialize, Serialize};

use crate::records::{KinesisRecord, kinesis_records};
use crate::state::{self, Loaded};
use crate::store::{JoinStore, KeySchema, StoreError, Write};
use crate::{BatchFailure, MAX_CONFLICT_RETRIES};

/// A shard's row in the state table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockRow {
    pub clock: ShardClock,
    pub checkpoint: String,
    /// The furthest the watermark was moved by this shard's invocations.
    pub overall_watermark: Millis,
    pub late: u64,
    pub unreadable: u64,
    /// Buffered searches and clicks across sessions after its last invocation, and the most seen.
    pub buffered: u64,
    pub peak_buffered: u64,
}

/// A row of the join's output table: key `search_id`, `click_id` (`-` for "no click").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRow {
    pub search_id: String,
    pub click_id: String,
    pub session_id: String,
    pub search_time: Millis,
    pub click_time: Option<Millis>,
    /// The watermark when it was written ("no click": past the search's window end).
    pub watermark: Millis,
}

pub const NO_CLICK: &str = "-";

impl OutputRow {
    pub fn new(row: &JoinRow, watermark: Millis) -> Self {
        Self {
            search_id: row.search_id.clone(),
            click_id: row.click_id.clone().unwrap_or_else(|| NO_CLICK.to_owned()),
            session_id: row.session_id.clone(),
            search_time: row.search_time,
            click_time: row.click_time,
            watermark,
        }
    }

    pub fn join_row(&self) -> JoinRow {
        JoinRow {
            search_id: self.search_id.clone(),
            click_id: (self.click_id != NO_CLICK).then(|| self.click_id.clone()),
            session_id: self.session_id.clone(),
            search_time: self.search_time,
            click_time: self.click_time,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSettings {
    pub state_table: String,
    pub output_table: String,
    pub window: Millis,
    pub watermark: WatermarkConfig,
}

pub fn output_schema(table: &str) -> KeySchema {
    KeySchema { table: table.to_owned(), partition: "search_id", sort: Some("click_id") }
}

pub const SESSION_PREFIX: &str = "session#";
pub const CLOCK_PREFIX: &str = "clock#";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowSummary {
    pub redelivered: usize,
    pub joined: usize,
    pub no_click: usize,
    pub late: usize,
    pub evicted_sessions: usize,
    pub watermark: Millis,
}

/// Reads, changes and writes back one session's row with the step's outputs; a conflict
/// (another invocation wrote the row meanwhile) re-reads and redoes the step.
async fn step_session<S: JoinStore>(
    store: &S,
    settings: &WindowSettings,
    session_id: &str,
    watermark: Millis,
    step: impl Fn(&mut SessionState) -> Vec<JoinOutput>,
) -> Result<Vec<JoinOutput>, StoreError> {
    let key = format!("{SESSION_PREFIX}{session_id}");
    for _ in 0..MAX_CONFLICT_RETRIES {
        let loaded: Loaded<SessionState> = state::load(store, &settings.state_table, &key).await?;
        let mut session = loaded.value.clone().unwrap_or_else(|| SessionState::new(session_id));
        let outputs = step(&mut session);
        let mut writes: Vec<Write> = Vec::new();
        if session.is_empty() {
            if loaded.version > 0 {
                writes.push(state::delete(&settings.state_table, &loaded));
            }
        } else if loaded.value.as_ref() != Some(&session) {
            writes.push(state::put(&settings.state_table, &loaded, &session, session.next_expiry(settings.window))?);
        }
        for row in outputs.iter().filter_map(JoinOutput::row) {
            let row = state::row_of(&OutputRow::new(row, watermark))?;
            writes.push(Write::put(&output_schema(&settings.output_table), row));
        }
        if writes.is_empty() {
            return Ok(outputs);
        }
        match store.transact(&writes).await {
            Ok(()) => return Ok(outputs),
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Other(format!("session {session_id}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")))
}

/// Evicts every session due at `watermark`; returns the buffered events left.
async fn expire<S: JoinStore>(
    store: &S,
    settings: &WindowSettings,
    watermark: Millis,
    summary: &mut WindowSummary,
) -> Result<u64, StoreError> {
    let mut buffered = 0;
    for row in store.scan(&settings.state_table).await? {
        let is_session =
            row.get("key").and_then(serde_json::Value::as_str).is_some_and(|k| k.starts_with(SESSION_PREFIX));
        if !is_session {
            continue;
        }
        let loaded: Loaded<SessionState> = state::decode(&row)?;
        let Some(session) = loaded.value else { continue };
        let due = row.get("expires_at").and_then(serde_json::Value::as_i64).is_some_and(|at| at <= watermark);
        if !due {
            buffered += session.len() as u64;
            continue;
        }
        let window = settings.window;
        let outputs =
            step_session(store, settings, &session.session_id, watermark, |s| s.on_watermark(window, watermark))
                .await?;
        summary.no_click += outputs.len();
        summary.evicted_sessions += 1;
        let left: Loaded<SessionState> = state::load(store, &settings.state_table, &loaded.key).await?;
        buffered += left.value.map_or(0, |s| s.len() as u64);
    }
    Ok(buffered)
}

fn shard_name(record: &KinesisRecord) -> String {
    format!("{}/{}", record.stream, record.shard_id)
}

pub async fn process_batch<S: JoinStore>(
    store: &S,
    settings: &WindowSettings,
    event: &aws_lambda_events::event::kinesis::KinesisEvent,
) -> Result<WindowSummary, BatchFailure> {
    let records = kinesis_records(event)?;
    let Some(first) = records.first() else { return Ok(WindowSummary::default()) };
    let shard = shard_name(first);
    let clock_key = format!("{CLOCK_PREFIX}{shard}");
    let mut clocks = Vec::new();
    let mut floor = NO_WATERMARK;
    let mut mine: Option<Loaded<ClockRow>> = None;
    for row in store.scan(&settings.state_table).await? {
        let is_clock = row.get("key").and_then(serde_json::Value::as_str).is_some_and(|k| k.starts_with(CLOCK_PREFIX));
        if !is_clock {
            continue;
        }
        let loaded: Loaded<ClockRow> = state::decode(&row)?;
        if let Some(clock) = &loaded.value {
            floor = floor.max(clock.overall_watermark);
            clocks.push(clock.clock.clone());
        }
        if loaded.key == clock_key {
            mine = Some(loaded);
        }
    }
    let mine = mine.unwrap_or(Loaded { key: clock_key, value: None, version: 0 });
    let mut row = mine.value.clone().unwrap_or_else(|| ClockRow {
        clock: ShardClock::new(&shard, first.arrival_millis),
        checkpoint: String::new(),
        overall_watermark: NO_WATERMARK,
        late: 0,
        unreadable: 0,
        buffered: 0,
        peak_buffered: 0,
    });
    let mut tracker = WatermarkTracker::from_clocks(settings.watermark, clocks);
    let mut watermark = floor;
    let mut summary = WindowSummary::default();
    let window = settings.window;
    for record in &records {
        if !row.checkpoint.is_empty() && sequence::compare(&record.sequence_number, &row.checkpoint).is_le() {
            summary.redelivered += 1;
            continue;
        }
        let now = record.arrival_millis;
        let outputs = match parse_record(&record.data) {
            Err(problem) => {
                tracing::warn!(shard = %shard, sequence_number = %record.sequence_number, "skipping: {problem}");
                row.unreadable += 1;
                Vec::new()
            }
            Ok(ClickstreamRecord::Search(search)) => {
                tracker.on_event(&shard, search.event_time, now);
                step_session(store, settings, &search.session_id, watermark, |s| {
                    s.on_search(&search, window, watermark)
                })
                .await?
            }
            Ok(ClickstreamRecord::Click(click)) => {
                tracker.on_event(&shard, click.event_time, now);
                step_session(store, settings, &click.session_id, watermark, |s| s.on_click(&click, window, watermark))
                    .await?
            }
            Ok(ClickstreamRecord::Heartbeat { .. }) => {
                tracker.on_heartbeat(&shard, now);
                Vec::new()
            }
            Ok(ClickstreamRecord::EndOfInput { watermark: declared, .. }) => {
                tracker.on_end_of_input(&shard, declared, now);
                Vec::new()
            }
        };
        for output in &outputs {
            match output {
                JoinOutput::Late { id, event_time, watermark } => {
                    tracing::warn!(%id, event_time, watermark, "late: dropped");
                    summary.late += 1;
                    row.late += 1;
                }
                _ => summary.joined += 1,
            }
        }
        watermark = watermark.max(tracker.watermark(now).watermark);
        row.checkpoint.clone_from(&record.sequence_number);
    }
    row.buffered = expire(store, settings, watermark, &mut summary).await?;
    row.peak_buffered = row.peak_buffered.max(row.buffered);
    if let Some(clock) = tracker.clock(&shard) {
        row.clock = clock.clone();
    }
    row.overall_watermark = row.overall_watermark.max(watermark);
    store.transact(&[state::put(&settings.state_table, &mine, &row, None)?]).await?;
    summary.watermark = watermark;
    tracing::info!(
        shard = %shard,
        redelivered = summary.redelivered,
        joined = summary.joined,
        no_click = summary.no_click,
        late = summary.late,
        buffered = row.buffered,
        watermark,
        "window join batch handled"
    );
    Ok(summary)
}
