//! The projector's logic: Kinesis records → events (upcast from v1 or v2) → balance rows.
//!
//! Delivery is at least once and a retried batch comes back whole, so each row carries the
//! version it covers and an event is applied only on top of the version before it: event `v` of
//! an account is applied if the row is at `v - 1`, skipped if the row is already at `v` or later
//! (a redelivery), and a gap (row at `v - 2` or lower) is an error that fails the batch, so that
//! Lambda retries it rather than letting the row skip an event. Rows are written with a condition
//! on the version read, so a concurrent writer (a rebuild, say) cannot be overwritten either.

use std::collections::BTreeMap;

use aws_lambda_events::event::kinesis::KinesisEvent;
use labs_core::ledger::event::schema_of;
use labs_core::ledger::{Account, Event, Schema, decode_event, fold_from};
use serde::Serialize;
use thiserror::Error;

use crate::balances::BalanceStore;
use crate::error::StoreError;

/// The events of a batch, in arrival order, and which shapes they came in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedBatch {
    pub events: Vec<Event>,
    pub v1: usize,
    pub v2: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Kinesis record {sequence_number} (key {partition_key}) is not a ledger event: {problem}")]
pub struct UndecodableRecord {
    pub sequence_number: String,
    pub partition_key: String,
    pub problem: String,
}

/// Decodes every record. One that is not an event fails the batch: skipping it would leave a
/// gap that blocks its account anyway, and failing names it.
pub fn decode_batch(event: &KinesisEvent) -> Result<DecodedBatch, UndecodableRecord> {
    let mut batch = DecodedBatch::default();
    for record in &event.records {
        let fail = |problem: String| UndecodableRecord {
            sequence_number: record.kinesis.sequence_number.clone(),
            partition_key: record.kinesis.partition_key.clone(),
            problem,
        };
        let text = std::str::from_utf8(&record.kinesis.data).map_err(|e| fail(format!("data is not UTF-8: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| fail(format!("data is not JSON: {e}")))?;
        match schema_of(&json).map_err(|e| fail(e.to_string()))? {
            Schema::V1 => batch.v1 += 1,
            Schema::V2 => batch.v2 += 1,
        }
        let event = decode_event(text).map_err(|e| fail(e.to_string()))?;
        if event.account_id != record.kinesis.partition_key {
            return Err(fail(format!("it belongs to account {}, not to its key", event.account_id)));
        }
        batch.events.push(event);
    }
    Ok(batch)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProjectReport {
    pub events: usize,
    pub accounts: usize,
    /// Events applied to a row.
    pub applied: usize,
    /// Events at or below their row's version (redeliveries, or already rebuilt).
    pub skipped: usize,
    /// Events not applied because of a problem: behind a gap, or for a row that moved.
    pub held_back: usize,
    /// Rows written.
    pub rows_written: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProjectError {
    /// Events up to `after` were applied; the batch has no event `after + 1` but a later one.
    #[error("account {account_id}: after version {after}, the next event in the batch is {next}")]
    Gap { account_id: String, after: u64, next: u64 },
    #[error("account {account_id}: the row moved away from version {row_version} while this batch applied to it")]
    Moved { account_id: String, row_version: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies `events` (in arrival order) to the rows in `store`. Accounts without a problem are
/// written even when another account fails the batch; the retry then skips what they applied.
/// Returns the first problem, after logging all.
pub async fn project<S: BalanceStore>(store: &S, events: &[Event]) -> Result<ProjectReport, ProjectError> {
    let mut by_account: BTreeMap<&str, BTreeMap<u64, &Event>> = BTreeMap::new();
    for event in events {
        by_account.entry(&event.account_id).or_default().insert(event.version, event);
    }
    let ids: Vec<String> = by_account.keys().map(|id| (*id).to_owned()).collect();
    let mut rows = store.get_rows(&ids).await?;
    let mut report = ProjectReport { events: events.len(), accounts: ids.len(), ..ProjectReport::default() };
    let mut problems = Vec::new();
    let mut held_back = 0;
    for (id, versions) in by_account {
        let row = rows.remove(id).unwrap_or_else(|| Account::new(id));
        let row_version = row.version;
        let fresh: Vec<&Event> = versions.into_values().filter(|event| event.version > row_version).collect();
        // The run of versions that follows the row without a hole; anything after a hole waits.
        let contiguous = fresh.iter().zip(row_version + 1..).take_while(|(event, want)| event.version == *want).count();
        if let Some(after_hole) = fresh.get(contiguous) {
            let after = row_version + contiguous as u64;
            problems.push(ProjectError::Gap { account_id: id.to_owned(), after, next: after_hole.version });
            held_back += fresh.len() - contiguous;
        }
        if contiguous == 0 {
            continue;
        }
        let applying = &fresh[..contiguous];
        let state = fold_from(row, applying.iter().copied()).map_err(|e| StoreError::Other(e.to_string()))?;
        if store.put_row(&state, row_version).await? {
            report.applied += applying.len();
            report.rows_written += 1;
        } else {
            problems.push(ProjectError::Moved { account_id: id.to_owned(), row_version });
            held_back += applying.len();
        }
    }
    report.held_back = held_back;
    // Redeliveries, and duplicates within the batch (applied once).
    report.skipped = report.events - report.applied - report.held_back;
    for problem in &problems {
        tracing::error!("{problem}");
    }
    match problems.into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(report),
    }
}
