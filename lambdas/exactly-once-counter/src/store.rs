//! Where the counters, the dedup rows and the invocation records live: the trait the handler
//! needs, the item shapes, and an in-memory implementation with DynamoDB's transaction rules,
//! for tests and for in-process benchmarks.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;

use labs_core::sequence;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::plan::{AppliedEvent, MAX_TRANSACTION_ACTIONS, TransactionPlan, UserIncrement};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("{operation} failed: {message}")]
    Dynamo { operation: &'static str, message: String },
    #[error("{0}")]
    Other(String),
}

/// How an invocation ended, as recorded in the invocations table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Recorded before any effect is written; an invocation still `started` afterwards died
    /// without saying so (a timeout, a crash the function did not plan).
    Started,
    Succeeded,
    /// Some records reported as batch item failures.
    PartialFailure,
    /// A returned error: the whole batch fails.
    Failed,
    /// The process aborted on purpose (a crash marker).
    Aborted,
    /// A record could not be decoded; nothing was written.
    Rejected,
}

/// A row of the invocations table: partition key `shard_id`, sort key `batch_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub shard_id: String,
    /// [`sequence_key`] of the first record, `#`, the request id: invocations sort by where their
    /// batch starts, and the retries of one batch share a prefix.
    pub batch_start: String,
    pub request_id: String,
    pub first_sequence_number: String,
    pub last_sequence_number: String,
    /// [`sequence_key`] of the last record, to find the invocations that held a record.
    pub batch_end: String,
    pub records: u32,
    /// 1 for the first invocation of a batch starting at this record, 2 for its first retry, ...
    pub attempt: u32,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The record reported as a batch item failure, or the one that failed or crashed the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_sequence_number: Option<String>,
    /// How many records, from the first, got their naive increment in this invocation.
    pub naive_records: u32,
    /// Events this invocation counted exactly once, and events it found counted already.
    pub applied: u32,
    pub already_applied: u32,
}

impl Invocation {
    pub fn new(shard_id: &str, request_id: &str, first: &str, last: &str, records: u32, attempt: u32) -> Self {
        Self {
            shard_id: shard_id.to_owned(),
            batch_start: format!("{}#{request_id}", sequence_key(first)),
            request_id: request_id.to_owned(),
            first_sequence_number: first.to_owned(),
            last_sequence_number: last.to_owned(),
            batch_end: sequence_key(last),
            records,
            attempt,
            outcome: Outcome::Started,
            detail: String::new(),
            fault_sequence_number: None,
            naive_records: 0,
            applied: 0,
            already_applied: 0,
        }
    }
}

/// A sequence number as text that sorts like the number: its digit count (three digits), then
/// its digits. DynamoDB compares strings as text, so this is what range conditions work on.
pub fn sequence_key(sequence_number: &str) -> String {
    let digits = sequence_number.trim_start_matches('0');
    format!("{:03}{digits}", digits.len())
}

/// A row of the totals table (partition key `user_id`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TotalsRow {
    pub user_id: String,
    /// Counted exactly once.
    pub total: u64,
    pub count: u64,
    /// Incremented once per delivery.
    pub naive_total: u64,
    pub naive_count: u64,
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionResult {
    Committed,
    /// Cancelled, nothing written: these events were counted already.
    AlreadyApplied(BTreeSet<String>),
}

pub trait CounterStore {
    /// Earlier invocations on `shard_id` whose batch began at `sequence_number`.
    fn invocations_starting_at(
        &self,
        shard_id: &str,
        sequence_number: &str,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Earlier invocations on `shard_id` whose batch held `sequence_number`.
    fn deliveries_of(
        &self,
        shard_id: &str,
        sequence_number: &str,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Writes `invocation`, replacing the row with the same key.
    fn record_invocation(&self, invocation: &Invocation) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds to `naive_total` and `naive_count`, unconditionally.
    fn add_naive(&self, increments: &[UserIncrement]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Runs `plan` as one all-or-nothing transaction.
    fn apply(&self, plan: &TransactionPlan) -> impl Future<Output = Result<TransactionResult, StoreError>> + Send;
}

/// The same behaviour in memory, with DynamoDB's transaction rules enforced (at most 100
/// actions, no item twice), so a handler that breaks them fails its tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
    /// Every transaction fails, to stand for a table that is down.
    transactions_fail: bool,
}

#[derive(Debug, Default, Clone)]
struct MemoryState {
    invocations: BTreeMap<(String, String), Invocation>,
    totals: BTreeMap<String, TotalsRow>,
    applied: BTreeMap<String, AppliedEvent>,
    transactions: usize,
}

impl MemoryStore {
    /// A store whose transactions all fail (the other calls work).
    pub fn with_failing_transactions() -> Self {
        Self { transactions_fail: true, ..Self::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every user's row.
    pub fn totals(&self) -> BTreeMap<String, TotalsRow> {
        self.state().totals.clone()
    }

    /// The dedup rows, by event id.
    pub fn applied(&self) -> BTreeMap<String, AppliedEvent> {
        self.state().applied.clone()
    }

    /// The invocation records in key order (shard, then where the batch starts).
    pub fn invocations(&self) -> Vec<Invocation> {
        self.state().invocations.values().cloned().collect()
    }

    /// How many transactions committed.
    pub fn transactions(&self) -> usize {
        self.state().transactions
    }
}

fn covers(invocation: &Invocation, sequence_number: &str) -> bool {
    sequence::compare(&invocation.first_sequence_number, sequence_number).is_le()
        && sequence::compare(&invocation.last_sequence_number, sequence_number).is_ge()
}

impl CounterStore for MemoryStore {
    async fn invocations_starting_at(&self, shard_id: &str, sequence_number: &str) -> Result<u32, StoreError> {
        let state = self.state();
        let starting = state
            .invocations
            .values()
            .filter(|i| i.shard_id == shard_id && sequence::compare(&i.first_sequence_number, sequence_number).is_eq())
            .count();
        Ok(starting as u32)
    }

    async fn deliveries_of(&self, shard_id: &str, sequence_number: &str) -> Result<u32, StoreError> {
        let state = self.state();
        let held = state.invocations.values().filter(|i| i.shard_id == shard_id && covers(i, sequence_number)).count();
        Ok(held as u32)
    }

    async fn record_invocation(&self, invocation: &Invocation) -> Result<(), StoreError> {
        let key = (invocation.shard_id.clone(), invocation.batch_start.clone());
        self.state().invocations.insert(key, invocation.clone());
        Ok(())
    }

    async fn add_naive(&self, increments: &[UserIncrement]) -> Result<(), StoreError> {
        let mut state = self.state();
        for increment in increments {
            let row = state.totals.entry(increment.user_id.clone()).or_default();
            row.user_id.clone_from(&increment.user_id);
            row.naive_total += increment.total;
            row.naive_count += increment.count;
        }
        Ok(())
    }

    async fn apply(&self, plan: &TransactionPlan) -> Result<TransactionResult, StoreError> {
        let invalid = |message: String| StoreError::Dynamo { operation: "TransactWriteItems", message };
        if self.transactions_fail {
            return Err(invalid("InternalServerError: the table is down".to_owned()));
        }
        if plan.actions() > MAX_TRANSACTION_ACTIONS {
            return Err(invalid(format!("ValidationException: {} actions, at most 100", plan.actions())));
        }
        let ids: BTreeSet<&str> = plan.events.iter().map(|e| e.event_id.as_str()).collect();
        let users: BTreeSet<&str> = plan.increments.iter().map(|i| i.user_id.as_str()).collect();
        if ids.len() != plan.events.len() || users.len() != plan.increments.len() {
            return Err(invalid("ValidationException: an item appears twice in one transaction".to_owned()));
        }
        let mut state = self.state();
        let counted: BTreeSet<String> =
            ids.iter().filter(|id| state.applied.contains_key(**id)).map(|id| (*id).to_owned()).collect();
        if !counted.is_empty() {
            return Ok(TransactionResult::AlreadyApplied(counted));
        }
        for event in &plan.events {
            state.applied.insert(event.event_id.clone(), event.clone());
        }
        for increment in &plan.increments {
            let row = state.totals.entry(increment.user_id.clone()).or_default();
            row.user_id.clone_from(&increment.user_id);
            row.total += increment.total;
            row.count += increment.count;
        }
        state.transactions += 1;
        Ok(TransactionResult::Committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_keys_sort_like_the_numbers() {
        let numbers = ["7", "9", "10", "0099", "100", "49590338271490256608559692538361571095921575989136588898"];
        let keys: Vec<String> = numbers.iter().map(|n| sequence_key(n)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(sequence_key("0099"), sequence_key("99"));
        assert_eq!(sequence_key("10"), "00210");
    }
}
