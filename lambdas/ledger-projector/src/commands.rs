//! Running a command against the event store: load the accounts it touches (snapshot + tail),
//! decide, append conditionally; on a conflict (another writer appended first) load again and
//! decide again. The CLI drives the lab through this; tests drive it on the in-memory store.

use std::collections::BTreeMap;

use labs_core::ledger::snapshot::{LoadStats, load, snapshot_due};
use labs_core::ledger::{
    Account, Command, DecodeError, Event, FoldError, Rejection, Schema, StoredEvent, decide, evolve,
};
use serde::Serialize;
use thiserror::Error;

use crate::error::StoreError;
use crate::event_store::{AppendError, EventStore, StateTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteOptions {
    /// The shape new events are written in (v1 plays a writer that predates v2).
    pub schema: Schema,
    /// Loads and decisions before giving up on a command that keeps losing races.
    pub max_attempts: u32,
    /// Take a snapshot every this many events of an account (0: never).
    pub snapshot_every: u64,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        Self { schema: Schema::CURRENT, max_attempts: 5, snapshot_every: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The command's events are in the store. `already` means an earlier attempt had appended
    /// them (its answer was lost), so this one appended nothing.
    Accepted {
        events: Vec<String>,
        already: bool,
    },
    Rejected {
        rejection: Rejection,
    },
}

/// What running a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Execution {
    pub command_id: String,
    pub outcome: Outcome,
    pub attempts: u32,
    /// (account, version) taken by another writer, once per lost race.
    pub conflicts: Vec<(String, u64)>,
    /// How each account was loaded, on the last attempt.
    pub loads: Vec<(String, LoadStats)>,
    pub snapshots_written: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store holds an unreadable event: {0}")]
    Decode(#[from] DecodeError),
    #[error("the store's history does not fold: {0}")]
    Fold(#[from] FoldError),
    #[error("command {command_id} lost {attempts} races in a row; giving up")]
    GaveUp { command_id: String, attempts: u32 },
}

/// Snapshots that are never there: loads read whole histories.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSnapshots;

impl StateTable for NoSnapshots {
    async fn get(&self, _: &str) -> Result<Option<Account>, StoreError> {
        Ok(None)
    }

    async fn put_if_newer(&self, _: &Account) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// An account's current state: its latest snapshot plus the events after it.
pub struct Loaded {
    pub state: Account,
    pub stats: LoadStats,
    /// The events read after the snapshot.
    pub tail: Vec<Event>,
}

pub async fn load_account<E: EventStore, T: StateTable>(
    store: &E,
    snapshots: &T,
    account_id: &str,
) -> Result<Loaded, ExecuteError> {
    let snapshot = snapshots.get(account_id).await?;
    let after = snapshot.as_ref().map_or(0, |s| s.version);
    let tail = store.load(account_id, after).await?.iter().map(StoredEvent::event).collect::<Result<Vec<_>, _>>()?;
    let (state, stats) = load(account_id, snapshot.as_ref(), &tail)?;
    Ok(Loaded { state, stats, tail })
}

/// Runs `command` to an outcome: accepted (its events appended) or rejected (logged).
///
/// A retry after a lost answer finds the command's own events in the tail and reports them
/// instead of deciding again, so a command is never applied twice. (That check reads the tail
/// only: a snapshot taken in between would hide them; snapshots are taken by this function right
/// after its own append, so that needs two writers snapshotting the same account at once.)
/// The rejection log is not consulted: a refused command run again is decided again, and may
/// be accepted this time, so callers run each command once and leave retries to this function.
pub async fn execute<E: EventStore, T: StateTable>(
    store: &E,
    snapshots: &T,
    command: &Command,
    options: ExecuteOptions,
) -> Result<Execution, ExecuteError> {
    let mut execution = Execution {
        command_id: command.command_id.clone(),
        outcome: Outcome::Accepted { events: Vec::new(), already: false },
        attempts: 0,
        conflicts: Vec::new(),
        loads: Vec::new(),
        snapshots_written: 0,
    };
    let mut ids: Vec<&str> = command.action.accounts();
    ids.dedup();
    while execution.attempts < options.max_attempts.max(1) {
        execution.attempts += 1;
        execution.loads.clear();
        let mut states = BTreeMap::new();
        let mut own = Vec::new();
        for id in &ids {
            let loaded = load_account(store, snapshots, id).await?;
            own.extend(loaded.tail.iter().filter(|e| e.command_id == command.command_id).map(|e| e.event_id.clone()));
            execution.loads.push(((*id).to_owned(), loaded.stats));
            states.insert((*id).to_owned(), loaded.state);
        }
        if !own.is_empty() {
            execution.outcome = Outcome::Accepted { events: own, already: true };
            return Ok(execution);
        }
        let events = match decide(&states, command) {
            Ok(events) => events,
            Err(rejection) => {
                store.record_rejection(&rejection).await?;
                execution.outcome = Outcome::Rejected { rejection };
                return Ok(execution);
            }
        };
        let rows: Vec<StoredEvent> = events.iter().map(|event| StoredEvent::new(event, options.schema)).collect();
        match store.append(&rows).await {
            Ok(()) => {}
            Err(AppendError::Conflict { account_id, version }) => {
                execution.conflicts.push((account_id, version));
                continue;
            }
            Err(AppendError::Store(err)) => return Err(err.into()),
        }
        for event in &events {
            let Some(before) = states.remove(&event.account_id) else { continue };
            let snapshot_version = execution
                .loads
                .iter()
                .find(|(id, _)| *id == event.account_id)
                .map_or(0, |(_, stats)| stats.snapshot_version);
            let after = evolve(before, event);
            if snapshot_due(&after, snapshot_version, options.snapshot_every) && snapshots.put_if_newer(&after).await? {
                execution.snapshots_written += 1;
            }
        }
        execution.outcome =
            Outcome::Accepted { events: events.into_iter().map(|e| e.event_id).collect(), already: false };
        return Ok(execution);
    }
    Err(ExecuteError::GaveUp { command_id: command.command_id.clone(), attempts: execution.attempts })
}

#[cfg(test)]
mod tests {
    use labs_core::ledger::event::event_id;
    use labs_core::ledger::{Action, EventKind, RejectReason, fold};

    use super::*;
    use crate::event_store::{MemoryEventStore, MemoryStateTable};

    fn command(id: &str, action: Action) -> Command {
        Command { command_id: id.into(), issued_at: "2026-01-10T00:00:00Z".into(), action }
    }

    fn open(id: &str) -> Action {
        Action::Open { account_id: id.into(), owner: format!("owner of {id}") }
    }

    fn deposit(id: &str, amount: u64) -> Action {
        Action::Deposit { account_id: id.into(), amount }
    }

    fn withdraw(id: &str, amount: u64) -> Action {
        Action::Withdraw { account_id: id.into(), amount }
    }

    /// An event another writer appends to `account` at `version`.
    fn rival(account: &str, version: u64, kind: EventKind) -> StoredEvent {
        let event = Event {
            account_id: account.into(),
            version,
            event_id: event_id("rival", account),
            command_id: "rival".into(),
            occurred_at: "2026-01-10T00:00:00Z".into(),
            kind,
        };
        StoredEvent::new(&event, Schema::V2)
    }

    async fn run(store: &MemoryEventStore, id: &str, action: Action) -> Execution {
        execute(store, &NoSnapshots, &command(id, action), ExecuteOptions::default()).await.unwrap()
    }

    fn history(store: &MemoryEventStore, account: &str) -> Vec<Event> {
        store.events().iter().filter(|e| e.account_id == account).map(|e| e.event().unwrap()).collect()
    }

    #[tokio::test]
    async fn accepted_commands_append_and_refused_ones_are_logged_with_the_version_checked() {
        let store = MemoryEventStore::new();
        run(&store, "c1", open("a")).await;
        run(&store, "c2", deposit("a", 100)).await;
        let refused = run(&store, "c3", withdraw("a", 101)).await;
        let rejection = Rejection {
            command_id: "c3".into(),
            account_id: "a".into(),
            checked_version: 2,
            reason: RejectReason::InsufficientFunds { balance: 100, requested: 101 },
        };
        assert_eq!(refused.outcome, Outcome::Rejected { rejection: rejection.clone() });
        assert_eq!(store.rejections(), vec![rejection]);
        assert_eq!(store.events().len(), 2);
    }

    #[tokio::test]
    async fn the_loser_of_a_race_reloads_and_decides_again() {
        let store = MemoryEventStore::new();
        run(&store, "c1", open("a")).await;
        run(&store, "c2", deposit("a", 100)).await;
        store.before_next_append(|rows| {
            let event = rival("a", 3, EventKind::MoneyDeposited { amount: 5 });
            rows.insert(("a".into(), 3), event);
        });
        let execution = run(&store, "c3", deposit("a", 10)).await;
        assert_eq!(execution.attempts, 2);
        assert_eq!(execution.conflicts, vec![("a".to_owned(), 3)]);
        let events = history(&store, "a");
        assert_eq!(
            events.iter().map(|e| (e.version, e.command_id.as_str())).collect::<Vec<_>>(),
            vec![(1, "c1"), (2, "c2"), (3, "rival"), (4, "c3")]
        );
        assert_eq!(fold("a", &events).unwrap().balance, 115);
    }

    #[tokio::test]
    async fn a_retried_withdrawal_can_be_refused_on_the_new_state() {
        let store = MemoryEventStore::new();
        run(&store, "c1", open("a")).await;
        run(&store, "c2", deposit("a", 100)).await;
        store.before_next_append(|rows| {
            rows.insert(("a".into(), 3), rival("a", 3, EventKind::MoneyWithdrawn { amount: 60 }));
        });
        let execution = run(&store, "c3", withdraw("a", 60)).await;
        let Outcome::Rejected { rejection } = execution.outcome else { panic!("{execution:?}") };
        assert_eq!(rejection.checked_version, 3);
        assert_eq!(rejection.reason, RejectReason::InsufficientFunds { balance: 40, requested: 60 });
    }

    #[tokio::test]
    async fn a_transfer_that_loses_on_one_side_writes_neither() {
        let store = MemoryEventStore::new();
        for (id, action) in [("c1", open("a")), ("c2", open("b")), ("c3", deposit("a", 100))] {
            run(&store, id, action).await;
        }
        let transfer = || Action::Transfer { from: "a".into(), to: "b".into(), amount: 30 };
        store.before_next_append(|rows| {
            rows.insert(("b".into(), 2), rival("b", 2, EventKind::MoneyDeposited { amount: 1 }));
        });
        // One attempt only: the conflict on b must leave a untouched.
        let options = ExecuteOptions { max_attempts: 1, ..ExecuteOptions::default() };
        let result = execute(&store, &NoSnapshots, &command("c4", transfer()), options).await;
        assert!(matches!(result, Err(ExecuteError::GaveUp { attempts: 1, .. })), "{result:?}");
        assert_eq!(history(&store, "a").len(), 2);
        // Run again, it goes through on both sides.
        run(&store, "c4", transfer()).await;
        assert_eq!(fold("a", &history(&store, "a")).unwrap().balance, 70);
        assert_eq!(fold("b", &history(&store, "b")).unwrap().balance, 31);
    }

    #[tokio::test]
    async fn running_a_command_again_does_not_apply_it_twice() {
        let store = MemoryEventStore::new();
        run(&store, "c1", open("a")).await;
        run(&store, "c2", deposit("a", 100)).await;
        let again = run(&store, "c2", deposit("a", 100)).await;
        assert_eq!(again.outcome, Outcome::Accepted { events: vec![event_id("c2", "a")], already: true });
        assert_eq!(fold("a", &history(&store, "a")).unwrap().balance, 100);
    }

    #[tokio::test]
    async fn snapshots_shorten_loads_and_give_the_same_state() {
        let store = MemoryEventStore::new();
        let snapshots = MemoryStateTable::new();
        let options = ExecuteOptions { snapshot_every: 4, ..ExecuteOptions::default() };
        let mut last = None;
        for n in 0..10u64 {
            let action = if n == 0 { open("a") } else { deposit("a", n) };
            last = Some(execute(&store, &snapshots, &command(&format!("c{n}"), action), options).await.unwrap());
        }
        let snapshot = snapshots.rows()["a"].clone();
        assert_eq!(snapshot.version, 8);
        // The tenth command loaded the snapshot at 8 and read one event.
        let last = last.unwrap();
        assert_eq!(last.loads[0].1.snapshot_version, 8);
        assert_eq!(last.loads[0].1.events_read, 1);
        let loaded = load_account(&store, &snapshots, "a").await.unwrap();
        assert_eq!(loaded.state, fold("a", &history(&store, "a")).unwrap());
        assert_eq!(loaded.stats.events_read, 2);
    }

    #[tokio::test]
    async fn old_writers_and_new_ones_share_one_history() {
        let store = MemoryEventStore::new();
        let v1 = ExecuteOptions { schema: Schema::V1, ..ExecuteOptions::default() };
        execute(&store, &NoSnapshots, &command("c1", open("a")), v1).await.unwrap();
        execute(&store, &NoSnapshots, &command("c2", deposit("a", 50)), v1).await.unwrap();
        run(&store, "c3", withdraw("a", 20)).await;
        let schemas: Vec<u32> = store.events().iter().map(|e| e.schema).collect();
        assert_eq!(schemas, vec![1, 1, 2]);
        assert_eq!(fold("a", &history(&store, "a")).unwrap().balance, 30);
    }
}
