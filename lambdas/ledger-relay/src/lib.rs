//! Example 5: the relay from the event store to the Kinesis log (a transactional outbox).
//!
//! Commands append events to a DynamoDB table with conditional writes; Kinesis has no conditional
//! append, so writing to both from the command handler could lose an accepted event (crash after
//! the store write) or publish a refused one (crash before it, or a lost race). Instead the
//! store's own change stream (NEW_IMAGE) invokes this function, which publishes each new event
//! to the stream named by `EVENTS_STREAM`, keyed by account, in version order per account. Only
//! what the store accepted is ever published, and a failed invocation is retried by Lambda with
//! the same records: delivery into Kinesis is at least once, and the projector skips versions it
//! has already applied.
//!
//! Environment of the deployed function: `EVENTS_STREAM`.

pub mod log;
pub mod plan;

use std::time::Duration;

pub use aws_lambda_events::event::dynamodb::Event;
pub use log::{EventLog, KinesisLog, LogError, MAX_PUT, MemoryLog};
pub use plan::{LogRecord, PlanError, RelayPlan, plan_batch};

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

/// Environment variable naming the Kinesis stream.
pub const EVENTS_STREAM_ENV: &str = "EVENTS_STREAM";
/// Rounds of re-sending refused entries of one wave before failing the batch.
const MAX_ATTEMPTS: u32 = 8;

/// What one invocation published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub records: usize,
    pub relayed: usize,
    pub ignored: usize,
    pub duplicates: usize,
    pub waves: usize,
    /// Entries sent again after the log refused them.
    pub resent: usize,
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(20u64 << attempt.min(6))
}

/// Publishes one wave completely: refused entries are sent again (only they), so that no later
/// version of an account is sent before an earlier one is in.
async fn publish_wave<L: EventLog>(log: &L, wave: &[LogRecord]) -> Result<usize, Error> {
    let mut resent = 0;
    for chunk in wave.chunks(MAX_PUT) {
        let mut pending: Vec<LogRecord> = chunk.to_vec();
        for attempt in 0.. {
            let outcomes = log.put(&pending).await?;
            let refused: Vec<(LogRecord, String)> = pending
                .into_iter()
                .zip(outcomes)
                .filter_map(|(record, outcome)| outcome.map(|code| (record, code)))
                .collect();
            if refused.is_empty() {
                break;
            }
            if attempt + 1 >= MAX_ATTEMPTS {
                let (first, code) = &refused[0];
                return Err(format!(
                    "{} entries still refused after {MAX_ATTEMPTS} attempts (e.g. {} v{}: {code})",
                    refused.len(),
                    first.account_id,
                    first.version
                )
                .into());
            }
            resent += refused.len();
            pending = refused.into_iter().map(|(record, _)| record).collect();
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
    Ok(resent)
}

/// Relays one batch of the store's change records into `log`.
pub async fn process_event<L: EventLog>(log: &L, event: &Event) -> Result<RelayReport, Error> {
    let plan = plan_batch(event).inspect_err(|e| tracing::error!("rejecting the batch: {e}"))?;
    let mut report = RelayReport {
        records: event.records.len(),
        relayed: plan.events(),
        ignored: plan.ignored,
        duplicates: plan.duplicates,
        waves: plan.waves.len(),
        resent: 0,
    };
    for wave in &plan.waves {
        report.resent += publish_wave(log, wave).await?;
    }
    tracing::info!(
        records = report.records,
        relayed = report.relayed,
        ignored = report.ignored,
        waves = report.waves,
        resent = report.resent,
        "batch relayed"
    );
    Ok(report)
}

/// The Lambda handler.
pub async fn handle<L: EventLog>(log: &L, event: LambdaEvent<Event>) -> Result<serde_json::Value, Error> {
    let report = process_event(log, &event.payload).await?;
    Ok(json!({ "relayed": report.relayed, "ignored": report.ignored, "waves": report.waves }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Event {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn keys(records: &[LogRecord]) -> Vec<(&str, u64)> {
        records.iter().map(|r| (r.account_id.as_str(), r.version)).collect()
    }

    #[tokio::test]
    async fn relays_inserts_in_version_order_per_account_and_ignores_edits() {
        let log = MemoryLog::new();
        let report = process_event(&log, &fixture("inserts.json")).await.unwrap();
        assert_eq!((report.records, report.relayed, report.ignored, report.waves), (5, 4, 1, 3));
        // acct-a's versions arrive out of order in the batch; they leave in order.
        assert_eq!(keys(&log.records()), vec![("acct-a", 1), ("acct-b", 1), ("acct-a", 2), ("acct-a", 3)]);
        // Bodies are forwarded as written: the v1 one stays v1.
        let b = log.records().into_iter().find(|r| r.account_id == "acct-b").unwrap();
        let written = r#"{"account_id":"acct-b","version":1,"event_id":"c2/acct-b","command_id":"c2","occurred_at":"2026-01-05T10:00:00Z","type":"AccountOpened","owner":"Bob"}"#;
        assert_eq!(b.data, written);
    }

    #[tokio::test]
    async fn a_refused_entry_is_resent_before_the_next_version() {
        let log = MemoryLog::new();
        log.refuse_once("c1/acct-a");
        let report = process_event(&log, &fixture("inserts.json")).await.unwrap();
        assert_eq!(report.resent, 1);
        assert_eq!(keys(&log.records()), vec![("acct-b", 1), ("acct-a", 1), ("acct-a", 2), ("acct-a", 3)]);
    }

    #[tokio::test]
    async fn a_failed_call_fails_the_batch_and_a_retry_publishes_everything() {
        let log = MemoryLog::new();
        log.fail_next_calls(1);
        assert!(process_event(&log, &fixture("inserts.json")).await.is_err());
        process_event(&log, &fixture("inserts.json")).await.unwrap();
        assert_eq!(log.records().len(), 4);
    }

    #[tokio::test]
    async fn a_row_whose_body_disagrees_fails_the_batch_naming_it() {
        let log = MemoryLog::new();
        let err = process_event(&log, &fixture("tampered.json")).await.unwrap_err().to_string();
        assert!(err.contains("evt-tampered"), "{err}");
        assert!(err.contains("does not match"), "{err}");
        assert!(log.records().is_empty());
    }

    #[tokio::test]
    async fn a_handler_answer_counts_what_was_relayed() {
        let log = MemoryLog::new();
        let answer = handle(&log, LambdaEvent::new(fixture("inserts.json"), Default::default())).await.unwrap();
        assert_eq!(answer, json!({ "relayed": 4, "ignored": 1, "waves": 3 }));
    }
}
