//! Example 5: the balances projector, and the event store behind the ledger's commands.
//!
//! The function reads the Kinesis log the relay fills (each record one event, v1 or v2 shape,
//! keyed by account) and keeps the balances table (named by `BALANCES_TABLE`): one row per
//! account, the state as of the version it covers. See [`project`] for how redelivery is made
//! harmless.
//!
//! The library also holds what the `labs` CLI needs to run commands: the event store
//! ([`EventStore`], on DynamoDB [`DynamoEventStore`]), snapshot and compacted-state tables
//! ([`StateTable`]), and [`execute`] (load, decide, append, retry on conflict).
//!
//! Environment of the deployed function: `BALANCES_TABLE`.

pub mod balances;
pub mod commands;
pub mod dynamo;
pub mod error;
pub mod event_store;
pub mod project;

pub use aws_lambda_events::event::kinesis::KinesisEvent;
pub use balances::{BalanceStore, MemoryBalances};
pub use commands::{ExecuteError, ExecuteOptions, Execution, Loaded, NoSnapshots, Outcome, execute, load_account};
pub use dynamo::{DynamoBalances, DynamoEventStore, DynamoStateTable};
pub use error::StoreError;
pub use event_store::{AppendError, EventStore, MemoryEventStore, MemoryStateTable, StateTable};
pub use project::{DecodedBatch, ProjectError, ProjectReport, decode_batch, project};

use lambda_runtime::{Error, LambdaEvent};
use serde_json::json;

/// Environment variable naming the balances table.
pub const BALANCES_TABLE_ENV: &str = "BALANCES_TABLE";

/// Projects one batch of log records into `store`.
pub async fn process_event<S: BalanceStore>(
    store: &S,
    event: &KinesisEvent,
) -> Result<(ProjectReport, DecodedBatch), Error> {
    let batch = decode_batch(event).inspect_err(|e| tracing::error!("rejecting the batch: {e}"))?;
    let report = project(store, &batch.events).await?;
    tracing::info!(
        events = report.events,
        accounts = report.accounts,
        applied = report.applied,
        skipped = report.skipped,
        v1 = batch.v1,
        v2 = batch.v2,
        "batch projected"
    );
    Ok((report, batch))
}

/// The Lambda handler.
pub async fn handle<S: BalanceStore>(store: &S, event: LambdaEvent<KinesisEvent>) -> Result<serde_json::Value, Error> {
    let (report, batch) = process_event(store, &event.payload).await?;
    Ok(json!({ "applied": report.applied, "skipped": report.skipped, "v1": batch.v1, "v2": batch.v2 }))
}

#[cfg(test)]
mod tests {
    use labs_core::ledger::{Account, Status, fold};

    use super::*;

    fn fixture(name: &str) -> KinesisEvent {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn row(id: &str, version: u64, balance: i64) -> Account {
        Account { account_id: id.into(), version, status: Status::Open, owner: format!("owner of {id}"), balance }
    }

    #[tokio::test]
    async fn projects_v1_and_v2_events_into_balances() {
        let store = MemoryBalances::new();
        let answer = handle(&store, LambdaEvent::new(fixture("log.json"), Default::default())).await.unwrap();
        assert_eq!(answer, json!({ "applied": 7, "skipped": 0, "v1": 3, "v2": 4 }));
        let rows = store.rows();
        assert_eq!(rows["acct-a"], row("acct-a", 4, 5000 - 1250 - 1000));
        assert_eq!(rows["acct-b"], row("acct-b", 3, 1000 + 1000));
        // The row is the fold of the events, whatever shape they came in.
        let events = decode_batch(&fixture("log.json")).unwrap().events;
        assert_eq!(rows["acct-a"], fold("acct-a", events.iter().filter(|e| e.account_id == "acct-a")).unwrap());
    }

    #[tokio::test]
    async fn a_redelivered_batch_changes_nothing() {
        let store = MemoryBalances::new();
        process_event(&store, &fixture("log.json")).await.unwrap();
        let before = store.rows();
        let (report, _) = process_event(&store, &fixture("log.json")).await.unwrap();
        assert_eq!((report.applied, report.skipped), (0, 7));
        assert_eq!(store.rows(), before);
    }

    #[tokio::test]
    async fn a_batch_overlapping_the_rows_applies_only_what_is_new() {
        let store = MemoryBalances::new();
        store.overwrite(row("acct-a", 2, 5000));
        let (report, _) = process_event(&store, &fixture("log.json")).await.unwrap();
        assert_eq!((report.applied, report.skipped), (5, 2));
        assert_eq!(store.rows()["acct-a"].balance, 5000 - 1250 - 1000);
    }

    #[tokio::test]
    async fn a_gap_fails_the_batch_but_other_accounts_are_written() {
        let store = MemoryBalances::new();
        let err = process_event(&store, &fixture("gap.json")).await.unwrap_err().to_string();
        assert!(err.contains("acct-a: after version 1, the next event in the batch is 3"), "{err}");
        // What precedes the hole is applied; the retry skips it.
        let rows = store.rows();
        assert_eq!(rows["acct-a"].version, 1);
        assert_eq!(rows["acct-b"].version, 3);
    }

    #[tokio::test]
    async fn a_crash_mid_batch_is_repaired_by_the_retry() {
        let store = MemoryBalances::new();
        store.fail_next_puts(1);
        assert!(process_event(&store, &fixture("log.json")).await.is_err());
        process_event(&store, &fixture("log.json")).await.unwrap();
        assert_eq!(store.rows()["acct-a"], row("acct-a", 4, 5000 - 1250 - 1000));
    }

    #[tokio::test]
    async fn a_record_that_is_not_an_event_fails_the_batch_naming_it() {
        let store = MemoryBalances::new();
        let err = process_event(&store, &fixture("undecodable.json")).await.unwrap_err().to_string();
        assert!(err.contains("49658000000000000000000000000000000000000000000000000099"), "{err}");
        assert!(store.rows().is_empty());
    }
}
