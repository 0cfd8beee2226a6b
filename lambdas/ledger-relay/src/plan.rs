//! From a batch of the event store's change records to the order they are published in.
//!
//! The store is append-only, so only INSERTs are new events; a MODIFY or REMOVE (someone editing
//! the store by hand) is not relayed. Each new image is a [`StoredEvent`]; its `body` is
//! forwarded as written, whatever its shape version, after checking that it is JSON naming the
//! same account, version and event id as the row's keys.
//!
//! Order: Kinesis keeps order per shard only between successive calls, and a failed entry of a
//! PutRecords call retried later would land after entries that followed it. So the batch is cut
//! into waves: wave `k` holds the `k`-th new event of every account in the batch, each account at
//! most once per wave, and a wave is published completely before the next one starts.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::Event;
use labs_core::ledger::StoredEvent;
use thiserror::Error;

/// One event as it goes into the log, keyed by its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub account_id: String,
    pub version: u64,
    pub event_id: String,
    /// The event's JSON text, as the store holds it.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("stream record {event_id}: {problem}")]
pub struct PlanError {
    pub event_id: String,
    pub problem: String,
}

/// The batch cut into waves, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayPlan {
    pub waves: Vec<Vec<LogRecord>>,
    /// MODIFY and REMOVE records, not relayed.
    pub ignored: usize,
    /// The same event twice in the batch (kept once).
    pub duplicates: usize,
}

impl RelayPlan {
    pub fn events(&self) -> usize {
        self.waves.iter().map(Vec::len).sum()
    }
}

/// Checks that `body` is a JSON object whose top level names the row's account, version and id.
fn check_body(row: &StoredEvent) -> Result<(), String> {
    let json: serde_json::Value = serde_json::from_str(&row.body).map_err(|e| format!("body is not JSON: {e}"))?;
    let same = json.get("account_id").and_then(|v| v.as_str()) == Some(row.account_id.as_str())
        && json.get("version").and_then(|v| v.as_u64()) == Some(row.version)
        && json.get("event_id").and_then(|v| v.as_str()) == Some(row.event_id.as_str());
    if same { Ok(()) } else { Err(format!("body does not match the row ({}, v{})", row.account_id, row.version)) }
}

/// Plans a batch. A new image that is not a well-formed event fails the whole batch: skipping it
/// would leave a gap in the account's log for ever, while failing makes the problem visible (and
/// blocks the shard until someone repairs the row).
pub fn plan_batch(event: &Event) -> Result<RelayPlan, PlanError> {
    let mut plan = RelayPlan::default();
    let mut by_account: BTreeMap<String, BTreeMap<u64, LogRecord>> = BTreeMap::new();
    for record in &event.records {
        if record.event_name != "INSERT" {
            plan.ignored += 1;
            continue;
        }
        let fail = |problem: String| PlanError { event_id: record.event_id.clone(), problem };
        let row: StoredEvent = serde_dynamo::from_item(record.change.new_image.clone())
            .map_err(|e| fail(format!("new image is not a stored event: {e}")))?;
        check_body(&row).map_err(fail)?;
        let log_record = LogRecord {
            account_id: row.account_id.clone(),
            version: row.version,
            event_id: row.event_id,
            data: row.body,
        };
        if by_account.entry(row.account_id).or_default().insert(row.version, log_record).is_some() {
            plan.duplicates += 1;
        }
    }
    let mut histories: Vec<std::vec::IntoIter<LogRecord>> =
        by_account.into_values().map(|versions| versions.into_values().collect::<Vec<_>>().into_iter()).collect();
    loop {
        let wave: Vec<LogRecord> = histories.iter_mut().filter_map(Iterator::next).collect();
        if wave.is_empty() {
            return Ok(plan);
        }
        plan.waves.push(wave);
    }
}
