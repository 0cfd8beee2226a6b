//! Snapshots and compaction: two ways of not replaying a whole history.
//!
//! A snapshot is an account's state with the version it covers ([`Account`] is both); loading
//! an account is then "snapshot + the events after it", which must equal a fold of everything.
//! Compaction keeps, per account, only the latest state with its version: what Kafka's log
//! compaction would keep if every record were a full state, and unlike Kafka done outside the
//! log, which Kinesis never compacts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::account::{Account, FoldError, fold_from};
use super::event::Event;
use super::projection::{balances, by_account};

/// How an account was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadStats {
    /// The version of the snapshot the load started from (0: none, a full replay).
    pub snapshot_version: u64,
    /// Events read after the snapshot.
    pub events_read: usize,
}

/// The state of `account_id` from its latest `snapshot` (if any) and `tail`, the events after
/// the snapshot's version, in order. Events at or below the snapshot's version are refused (a
/// store query for the tail must not return them), so the stats count exactly what was read.
pub fn load(account_id: &str, snapshot: Option<&Account>, tail: &[Event]) -> Result<(Account, LoadStats), FoldError> {
    let start = match snapshot {
        Some(snapshot) if snapshot.account_id == account_id => snapshot.clone(),
        Some(snapshot) => {
            return Err(FoldError::WrongAccount {
                expected: account_id.to_owned(),
                found: snapshot.account_id.clone(),
                event_id: format!("snapshot@{}", snapshot.version),
            });
        }
        None => Account::new(account_id),
    };
    let snapshot_version = start.version;
    let state = fold_from(start, tail)?;
    Ok((state, LoadStats { snapshot_version, events_read: tail.len() }))
}

/// Whether to take a new snapshot of `state`, given the version of the last one (0: none):
/// every `every` events (never if `every` is 0).
pub fn snapshot_due(state: &Account, last_snapshot_version: u64, every: u64) -> bool {
    every > 0 && state.version >= last_snapshot_version + every
}

/// The compacted form of a log: the latest state of every account, each with the version it
/// covers, and how many events it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compaction {
    pub rows: BTreeMap<String, Account>,
    pub events_compacted: usize,
}

pub fn compact(events: &[Event]) -> Result<Compaction, FoldError> {
    Ok(Compaction { rows: balances(events)?, events_compacted: events.len() })
}

/// Rebuilds every account's state from compacted rows plus the log's tail. Tail events the rows
/// already cover (version at or below the row's) are skipped, so the tail may start anywhere
/// before the compaction point; anything after must be gap-free.
pub fn rebuild(compacted: &BTreeMap<String, Account>, tail: &[Event]) -> Result<BTreeMap<String, Account>, FoldError> {
    let mut states = compacted.clone();
    for (id, history) in by_account(tail) {
        let start = states.remove(id).unwrap_or_else(|| Account::new(id));
        let covered = start.version;
        let state = fold_from(start, history.into_iter().filter(|event| event.version > covered))?;
        states.insert(id.to_owned(), state);
    }
    Ok(states)
}

/// What Kafka's compaction keeps of a topic keyed by account: the latest record per key. For a
/// log of changes (rather than of full states) that loses information: the last event of an
/// account is not its balance. The lab shows this beside [`compact`].
pub fn latest_event_per_key(events: &[Event]) -> BTreeMap<String, Event> {
    let mut latest: BTreeMap<String, Event> = BTreeMap::new();
    for event in events {
        match latest.get(&event.account_id) {
            Some(kept) if kept.version >= event.version => {}
            _ => {
                latest.insert(event.account_id.clone(), event.clone());
            }
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::account::fold;
    use crate::ledger::event::EventKind;

    fn history(account: &str, deposits: u64) -> Vec<Event> {
        let mut events = vec![Event {
            account_id: account.into(),
            version: 1,
            event_id: format!("{account}-1"),
            command_id: format!("c-{account}-1"),
            occurred_at: "2026-01-01T00:00:00Z".into(),
            kind: EventKind::AccountOpened { owner: "Al".into() },
        }];
        for n in 0..deposits {
            let version = n + 2;
            events.push(Event {
                version,
                event_id: format!("{account}-{version}"),
                command_id: format!("c-{account}-{version}"),
                kind: EventKind::MoneyDeposited { amount: 10 * version },
                ..events[0].clone()
            });
        }
        events
    }

    #[test]
    fn snapshot_plus_tail_equals_a_full_replay_at_every_split() {
        let events = history("a", 9);
        let full = fold("a", &events).unwrap();
        for split in 0..=events.len() {
            let snapshot = (split > 0).then(|| fold("a", &events[..split]).unwrap());
            let (state, stats) = load("a", snapshot.as_ref(), &events[split..]).unwrap();
            assert_eq!(state, full, "split at {split}");
            assert_eq!(stats, LoadStats { snapshot_version: split as u64, events_read: events.len() - split });
        }
    }

    #[test]
    fn a_tail_that_does_not_follow_the_snapshot_is_refused() {
        let events = history("a", 4);
        let snapshot = fold("a", &events[..3]).unwrap();
        assert!(matches!(load("a", Some(&snapshot), &events[2..]), Err(FoldError::VersionGap { .. })));
        assert!(matches!(load("a", Some(&snapshot), &events[4..]), Err(FoldError::VersionGap { .. })));
        assert!(matches!(load("b", Some(&snapshot), &[]), Err(FoldError::WrongAccount { .. })));
    }

    #[test]
    fn snapshots_fall_due_every_n_events() {
        let state = fold("a", &history("a", 9)).unwrap();
        assert!(snapshot_due(&state, 0, 10));
        assert!(!snapshot_due(&state, 1, 10));
        assert!(!snapshot_due(&state, 0, 0));
    }

    #[test]
    fn compaction_plus_tail_rebuilds_the_projection() {
        let (a, b) = (history("a", 6), history("b", 3));
        let log: Vec<Event> = a.iter().chain(&b).cloned().collect();
        let whole = balances(&log).unwrap();
        // Compact a prefix of each account, then rebuild from an overlapping tail.
        let prefix: Vec<Event> = a[..4].iter().chain(&b[..2]).cloned().collect();
        let compaction = compact(&prefix).unwrap();
        assert_eq!(compaction.rows.len(), 2);
        assert_eq!(compaction.events_compacted, 6);
        let tail: Vec<Event> = a[2..].iter().chain(&b[1..]).cloned().collect();
        assert_eq!(rebuild(&compaction.rows, &tail).unwrap(), whole);
        // A tail with a hole after the compaction point cannot be rebuilt from.
        let holed: Vec<Event> = a[5..].to_vec();
        assert!(matches!(rebuild(&compaction.rows, &holed), Err(FoldError::VersionGap { .. })));
    }

    #[test]
    fn kafka_style_compaction_keeps_the_last_event_not_the_state() {
        let log = history("a", 3);
        let kept = latest_event_per_key(&log);
        assert_eq!(kept["a"].version, 4);
        assert_eq!(kept["a"].kind.balance_delta(), 40);
        assert_eq!(compact(&log).unwrap().rows["a"].balance, 20 + 30 + 40);
    }
}
