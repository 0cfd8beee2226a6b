//! The checks behind `labs verify example-5`, on events, rejections and rows already read.
//! Each returns a report listing what is wrong (empty lists when all is well).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::account::{Account, evolve, fold_from};
use super::command::{Command, Rejection};
use super::event::{Event, EventKind};
use super::projection::by_account;

/// Versions per account: 1, 2, 3, ... with no gap and one event each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionReport {
    pub accounts: usize,
    /// Distinct events.
    pub events: usize,
    /// The same event read more than once (the relay's at-least-once delivery into Kinesis); not
    /// a fault by itself.
    pub redelivered: usize,
    /// (account, missing version).
    pub gaps: Vec<(String, u64)>,
    /// (account, version, the different event ids found there).
    pub conflicts: Vec<(String, u64, Vec<String>)>,
}

impl VersionReport {
    pub fn is_ok(&self) -> bool {
        self.gaps.is_empty() && self.conflicts.is_empty()
    }
}

pub fn check_versions(events: &[Event]) -> VersionReport {
    let mut report = VersionReport::default();
    let mut seen: BTreeMap<&str, BTreeMap<u64, BTreeSet<&str>>> = BTreeMap::new();
    for event in events {
        let ids = seen.entry(&event.account_id).or_default().entry(event.version).or_default();
        if !ids.insert(&event.event_id) {
            report.redelivered += 1;
        }
    }
    report.accounts = seen.len();
    for (account, versions) in seen {
        let last = versions.keys().next_back().copied().unwrap_or(0);
        report.gaps.extend((1..=last).filter(|v| !versions.contains_key(v)).map(|v| (account.to_owned(), v)));
        for (version, ids) in versions {
            report.events += ids.len();
            if ids.len() > 1 {
                report.conflicts.push((account.to_owned(), version, ids.into_iter().map(str::to_owned).collect()));
            }
        }
    }
    report
}

/// Money: nothing created or destroyed except by deposits and withdrawals, and no balance ever
/// below zero at any point of any account's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MoneyReport {
    pub deposited: u128,
    pub withdrawn: u128,
    pub transferred_out: u128,
    pub transferred_in: u128,
    /// Sum of the final balances.
    pub balance_total: i128,
    /// Commands whose transfer does not have exactly one sending and one receiving side, with
    /// the same amount and matching accounts.
    pub unmatched_transfers: Vec<String>,
    /// (account, version, balance) wherever a balance went below zero.
    pub negative: Vec<(String, u64, i64)>,
}

impl MoneyReport {
    /// The sum of balances equals deposits minus withdrawals, and transfers net to zero.
    pub fn conserved(&self) -> bool {
        self.balance_total == self.deposited as i128 - self.withdrawn as i128
            && self.transferred_in == self.transferred_out
            && self.unmatched_transfers.is_empty()
    }

    pub fn is_ok(&self) -> bool {
        self.conserved() && self.negative.is_empty()
    }
}

/// Folds every account's events (distinct, in version order) and checks money. Run
/// [`check_versions`] too: this one does not look for gaps.
pub fn check_money(events: &[Event]) -> MoneyReport {
    let mut report = MoneyReport::default();
    // command id → (sent: (from, to, amount), received: (from, to, amount))
    type Side = (String, String, u64);
    let mut transfers: BTreeMap<&str, (Vec<Side>, Vec<Side>)> = BTreeMap::new();
    for (account, history) in by_account(events) {
        let mut state = Account::new(account);
        for event in history {
            match &event.kind {
                EventKind::MoneyDeposited { amount } => report.deposited += u128::from(*amount),
                EventKind::MoneyWithdrawn { amount } => report.withdrawn += u128::from(*amount),
                EventKind::TransferSent { to, amount } => {
                    report.transferred_out += u128::from(*amount);
                    transfers.entry(&event.command_id).or_default().0.push((account.to_owned(), to.clone(), *amount));
                }
                EventKind::TransferReceived { from, amount } => {
                    report.transferred_in += u128::from(*amount);
                    transfers.entry(&event.command_id).or_default().1.push((from.clone(), account.to_owned(), *amount));
                }
                EventKind::AccountOpened { .. } | EventKind::AccountClosed => {}
            }
            state = evolve(state, event);
            if state.balance < 0 {
                report.negative.push((account.to_owned(), event.version, state.balance));
            }
        }
        report.balance_total += i128::from(state.balance);
    }
    report.unmatched_transfers = transfers
        .into_iter()
        .filter(|(_, (sent, received))| !(sent.len() == 1 && received.len() == 1 && sent[0] == received[0]))
        .map(|(command, _)| command.to_owned())
        .collect();
    report
}

/// Commands against what was recorded: every accepted command has exactly one event on each
/// account it touches, every rejected one none, and every command is one or the other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeReport {
    pub commands: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// Neither an event nor a rejection.
    pub unresolved: Vec<String>,
    /// Both events and a rejection.
    pub accepted_and_rejected: Vec<String>,
    /// (command, accounts it touches, accounts of its events): missing, extra or repeated events.
    pub wrong_events: Vec<(String, Vec<String>, Vec<String>)>,
    /// Event or rejection of a command the workload does not have.
    pub unknown: Vec<String>,
}

impl OutcomeReport {
    pub fn is_ok(&self) -> bool {
        self.unresolved.is_empty()
            && self.accepted_and_rejected.is_empty()
            && self.wrong_events.is_empty()
            && self.unknown.is_empty()
    }
}

/// `events` must be distinct (the store's, or the log's with redeliveries removed).
pub fn check_outcomes(commands: &[Command], events: &[Event], rejections: &[Rejection]) -> OutcomeReport {
    let mut report = OutcomeReport { commands: commands.len(), ..OutcomeReport::default() };
    let mut event_accounts: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for event in events {
        event_accounts.entry(&event.command_id).or_default().push(event.account_id.clone());
    }
    let rejected: BTreeSet<&str> = rejections.iter().map(|r| r.command_id.as_str()).collect();
    let known: BTreeSet<&str> = commands.iter().map(|c| c.command_id.as_str()).collect();
    for command in commands {
        let id = command.command_id.as_str();
        match (event_accounts.get(id), rejected.contains(id)) {
            (None, false) => report.unresolved.push(id.to_owned()),
            (None, true) => report.rejected += 1,
            (Some(_), true) => report.accepted_and_rejected.push(id.to_owned()),
            (Some(found), false) => {
                let mut expected: Vec<String> = command.action.accounts().into_iter().map(str::to_owned).collect();
                let mut found = found.clone();
                expected.sort();
                found.sort();
                if expected == found {
                    report.accepted += 1;
                } else {
                    report.wrong_events.push((id.to_owned(), expected, found));
                }
            }
        }
    }
    let strangers = event_accounts.keys().copied().chain(rejected.iter().copied()).filter(|id| !known.contains(id));
    report.unknown = strangers.map(str::to_owned).collect::<BTreeSet<_>>().into_iter().collect();
    report
}

/// A stored state (projection row, snapshot or compacted row) that is not the fold of the
/// events it claims to cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowMismatch {
    pub found: Account,
    /// The fold of the account's events up to `found.version`; `None` when the events do not
    /// reach that version (or do not fold).
    pub expected: Option<Account>,
}

/// Checks each row against a fold of `events` (distinct) up to the row's version.
pub fn check_rows(rows: &[Account], events: &[Event]) -> Vec<RowMismatch> {
    let histories = by_account(events);
    rows.iter()
        .filter_map(|row| {
            let history = histories.get(row.account_id.as_str()).map(Vec::as_slice).unwrap_or_default();
            let covered = history.iter().copied().filter(|event| event.version <= row.version);
            let expected =
                fold_from(Account::new(&row.account_id), covered).ok().filter(|state| state.version == row.version);
            (expected.as_ref() != Some(row)).then(|| RowMismatch { found: row.clone(), expected })
        })
        .collect()
}

/// Accounts with events but no row in a projection that should cover every account.
pub fn missing_rows(rows: &[Account], events: &[Event]) -> Vec<String> {
    let present: BTreeSet<&str> = rows.iter().map(|row| row.account_id.as_str()).collect();
    by_account(events).into_keys().filter(|id| !present.contains(id)).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::account::{decide, fold};
    use crate::ledger::command::{Action, RejectReason};

    fn command(id: &str, action: Action) -> Command {
        Command { command_id: id.into(), issued_at: "2026-01-01T00:00:00Z".into(), action }
    }

    /// Runs `actions` through `decide` one after the other, as a single writer would.
    fn run(actions: Vec<Action>) -> (Vec<Command>, Vec<Event>, Vec<Rejection>) {
        let mut accounts = BTreeMap::new();
        let (mut commands, mut events, mut rejections) = (Vec::new(), Vec::new(), Vec::new());
        for (n, action) in actions.into_iter().enumerate() {
            let command = command(&format!("c{n}"), action);
            match decide(&accounts, &command) {
                Ok(new) => {
                    for event in &new {
                        let state =
                            accounts.remove(&event.account_id).unwrap_or_else(|| Account::new(&event.account_id));
                        accounts.insert(event.account_id.clone(), evolve(state, event));
                    }
                    events.extend(new);
                }
                Err(rejection) => rejections.push(rejection),
            }
            commands.push(command);
        }
        (commands, events, rejections)
    }

    fn sample() -> (Vec<Command>, Vec<Event>, Vec<Rejection>) {
        let open = |id: &str| Action::Open { account_id: id.into(), owner: id.to_uppercase() };
        run(vec![
            open("a"),
            open("b"),
            Action::Deposit { account_id: "a".into(), amount: 1000 },
            Action::Transfer { from: "a".into(), to: "b".into(), amount: 400 },
            Action::Withdraw { account_id: "b".into(), amount: 500 },
            Action::Withdraw { account_id: "b".into(), amount: 150 },
        ])
    }

    #[test]
    fn a_decided_history_passes_every_check() {
        let (commands, events, rejections) = sample();
        assert_eq!(rejections.len(), 1);
        assert!(matches!(rejections[0].reason, RejectReason::InsufficientFunds { .. }));
        let versions = check_versions(&events);
        assert!(versions.is_ok(), "{versions:?}");
        assert_eq!((versions.accounts, versions.events), (2, 6));
        let money = check_money(&events);
        assert!(money.is_ok(), "{money:?}");
        assert_eq!((money.deposited, money.withdrawn, money.balance_total), (1000, 150, 850));
        let outcomes = check_outcomes(&commands, &events, &rejections);
        assert!(outcomes.is_ok(), "{outcomes:?}");
        assert_eq!((outcomes.accepted, outcomes.rejected), (5, 1));
        let rows = vec![fold("a", events.iter().filter(|e| e.account_id == "a")).unwrap()];
        assert!(check_rows(&rows, &events).is_empty());
        assert_eq!(missing_rows(&rows, &events), vec!["b".to_owned()]);
    }

    #[test]
    fn redeliveries_are_counted_but_gaps_and_conflicts_fail() {
        let (_, events, _) = sample();
        let mut log = events.clone();
        log.push(events[2].clone());
        let report = check_versions(&log);
        assert!(report.is_ok());
        assert_eq!(report.redelivered, 1);

        let removed: Vec<Event> = events.iter().filter(|e| !(e.account_id == "a" && e.version == 2)).cloned().collect();
        assert_eq!(check_versions(&removed).gaps, vec![("a".to_owned(), 2)]);

        let mut rival = events[2].clone();
        rival.event_id = "other".into();
        let report = check_versions(&[events.clone(), vec![rival]].concat());
        assert_eq!(report.conflicts.len(), 1);
    }

    #[test]
    fn money_checks_catch_a_removed_event_and_a_half_transfer() {
        let (_, events, _) = sample();
        // Without the deposit, a's history goes negative at the transfer.
        let no_deposit: Vec<Event> =
            events.iter().filter(|e| !matches!(e.kind, EventKind::MoneyDeposited { .. })).cloned().collect();
        let report = check_money(&no_deposit);
        assert_eq!(report.negative, vec![("a".to_owned(), 3, -400)]);
        // Without the receiving side, money vanished.
        let half: Vec<Event> =
            events.iter().filter(|e| !matches!(e.kind, EventKind::TransferReceived { .. })).cloned().collect();
        let report = check_money(&half);
        assert!(!report.conserved());
        assert_eq!(report.unmatched_transfers, vec!["c3".to_owned()]);
    }

    #[test]
    fn outcome_checks_catch_lost_and_double_outcomes() {
        let (commands, events, rejections) = sample();
        let lost: Vec<Event> = events.iter().filter(|e| e.command_id != "c2").cloned().collect();
        assert_eq!(check_outcomes(&commands, &lost, &rejections).unresolved, vec!["c2".to_owned()]);
        let mut both = rejections.clone();
        both.push(Rejection { command_id: "c2".into(), ..rejections[0].clone() });
        assert_eq!(check_outcomes(&commands, &events, &both).accepted_and_rejected, vec!["c2".to_owned()]);
        let half: Vec<Event> =
            events.iter().filter(|e| !matches!(e.kind, EventKind::TransferReceived { .. })).cloned().collect();
        assert_eq!(check_outcomes(&commands, &half, &rejections).wrong_events.len(), 1);
        assert_eq!(check_outcomes(&commands[..5], &events, &rejections).unknown, vec!["c5".to_owned()]);
    }

    #[test]
    fn an_edited_row_or_one_ahead_of_the_log_is_caught() {
        let (_, events, _) = sample();
        let mut row = fold("b", events.iter().filter(|e| e.account_id == "b")).unwrap();
        row.balance += 1;
        let mismatches = check_rows(std::slice::from_ref(&row), &events);
        assert_eq!(mismatches.len(), 1);
        assert_eq!(mismatches[0].expected.as_ref().map(|a| a.balance), Some(row.balance - 1));
        row.balance -= 1;
        row.version += 1;
        assert_eq!(check_rows(&[row], &events)[0].expected, None);
    }
}
