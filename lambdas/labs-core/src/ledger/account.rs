//! An account's state, and the two functions event sourcing rests on: `decide` (state + command
//! → events or a rejection) and `evolve` (state + event → state). `fold` replays a history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::command::{Action, Command, RejectReason, Rejection};
use super::event::{Event, EventKind, event_id};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No events yet.
    #[default]
    Unopened,
    Open,
    Closed,
}

/// The state of one account after its first `version` events. This is also the row of the
/// balances projection, a snapshot and a compacted entry: each is "the state as of `version`".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub account_id: String,
    /// How many events the state covers (0: none).
    pub version: u64,
    pub status: Status,
    #[serde(default)]
    pub owner: String,
    /// In cents. Signed so that a fold over a tampered log can show a negative balance instead
    /// of failing; `decide` never lets it go below zero.
    pub balance: i64,
}

impl Account {
    /// The state of an account with no events.
    pub fn new(account_id: impl Into<String>) -> Self {
        Self { account_id: account_id.into(), ..Self::default() }
    }

    fn rejection(&self, command: &Command, reason: RejectReason) -> Rejection {
        Rejection {
            command_id: command.command_id.clone(),
            account_id: self.account_id.clone(),
            checked_version: self.version,
            reason,
        }
    }

    /// Refuses anything but an open account.
    fn require_open(&self, command: &Command) -> Result<(), Rejection> {
        match self.status {
            Status::Open => Ok(()),
            Status::Unopened => Err(self.rejection(command, RejectReason::NotOpened)),
            Status::Closed => Err(self.rejection(command, RejectReason::Closed)),
        }
    }

    fn require_funds(&self, command: &Command, amount: u64) -> Result<(), Rejection> {
        let balance = u64::try_from(self.balance).unwrap_or(0);
        if balance < amount {
            return Err(self.rejection(command, RejectReason::InsufficientFunds { balance, requested: amount }));
        }
        Ok(())
    }

    fn require_room(&self, command: &Command, amount: u64) -> Result<(), Rejection> {
        match i64::try_from(amount).ok().and_then(|amount| self.balance.checked_add(amount)) {
            Some(_) => Ok(()),
            None => Err(self.rejection(command, RejectReason::Overflow)),
        }
    }

    /// The next event of this account, produced by `command`.
    fn next_event(&self, command: &Command, kind: EventKind) -> Event {
        Event {
            account_id: self.account_id.clone(),
            version: self.version + 1,
            event_id: event_id(&command.command_id, &self.account_id),
            command_id: command.command_id.clone(),
            occurred_at: command.issued_at.clone(),
            kind,
        }
    }
}

/// Decides `command` against the current state of the accounts it touches
/// ([`Action::accounts`]); an account missing from `accounts` has no events. On success, returns
/// the events to append, each at its account's next version: one, or two for a transfer (source
/// first), to be appended atomically.
pub fn decide(accounts: &BTreeMap<String, Account>, command: &Command) -> Result<Vec<Event>, Rejection> {
    let state = |id: &str| accounts.get(id).cloned().unwrap_or_else(|| Account::new(id));
    let positive = |account: &Account, amount: u64| {
        if amount == 0 { Err(account.rejection(command, RejectReason::ZeroAmount)) } else { Ok(()) }
    };
    match &command.action {
        Action::Open { account_id, owner } => {
            let account = state(account_id);
            if account.status != Status::Unopened {
                return Err(account.rejection(command, RejectReason::AlreadyOpen));
            }
            Ok(vec![account.next_event(command, EventKind::AccountOpened { owner: owner.clone() })])
        }
        Action::Deposit { account_id, amount } => {
            let account = state(account_id);
            account.require_open(command)?;
            positive(&account, *amount)?;
            account.require_room(command, *amount)?;
            Ok(vec![account.next_event(command, EventKind::MoneyDeposited { amount: *amount })])
        }
        Action::Withdraw { account_id, amount } => {
            let account = state(account_id);
            account.require_open(command)?;
            positive(&account, *amount)?;
            account.require_funds(command, *amount)?;
            Ok(vec![account.next_event(command, EventKind::MoneyWithdrawn { amount: *amount })])
        }
        Action::Transfer { from, to, amount } => {
            let (source, target) = (state(from), state(to));
            if from == to {
                return Err(source.rejection(command, RejectReason::SameAccount));
            }
            source.require_open(command)?;
            target.require_open(command)?;
            positive(&source, *amount)?;
            source.require_funds(command, *amount)?;
            target.require_room(command, *amount)?;
            Ok(vec![
                source.next_event(command, EventKind::TransferSent { to: to.clone(), amount: *amount }),
                target.next_event(command, EventKind::TransferReceived { from: from.clone(), amount: *amount }),
            ])
        }
        Action::Close { account_id } => {
            let account = state(account_id);
            account.require_open(command)?;
            if account.balance != 0 {
                let balance = u64::try_from(account.balance).unwrap_or(0);
                return Err(account.rejection(command, RejectReason::BalanceNotZero { balance }));
            }
            Ok(vec![account.next_event(command, EventKind::AccountClosed)])
        }
    }
}

/// Applies one event. Events are facts, so this never refuses one: it records what the event
/// says (even a balance going negative, for checks to find). Whether the event belongs here, at
/// this version, is [`fold`]'s check.
pub fn evolve(mut state: Account, event: &Event) -> Account {
    state.version = event.version;
    let delta = event.kind.balance_delta();
    state.balance =
        i64::try_from(i128::from(state.balance) + delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
    match &event.kind {
        EventKind::AccountOpened { owner } => {
            state.status = Status::Open;
            state.owner.clone_from(owner);
        }
        EventKind::AccountClosed => state.status = Status::Closed,
        _ => {}
    }
    state
}

/// Why a history could not be folded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FoldError {
    #[error("event {event_id} belongs to account {found}, not {expected}")]
    WrongAccount { expected: String, found: String, event_id: String },
    #[error("account {account_id}: expected version {expected} next, found {found}")]
    VersionGap { account_id: String, expected: u64, found: u64 },
}

/// Continues `state` with `events`, which must be this account's next versions, in order.
pub fn fold_from<'a>(mut state: Account, events: impl IntoIterator<Item = &'a Event>) -> Result<Account, FoldError> {
    for event in events {
        if event.account_id != state.account_id {
            return Err(FoldError::WrongAccount {
                expected: state.account_id.clone(),
                found: event.account_id.clone(),
                event_id: event.event_id.clone(),
            });
        }
        if event.version != state.version + 1 {
            return Err(FoldError::VersionGap {
                account_id: state.account_id.clone(),
                expected: state.version + 1,
                found: event.version,
            });
        }
        state = evolve(state, event);
    }
    Ok(state)
}

/// The state of `account_id` after its whole history `events` (versions 1, 2, ... in order).
pub fn fold<'a>(account_id: &str, events: impl IntoIterator<Item = &'a Event>) -> Result<Account, FoldError> {
    fold_from(Account::new(account_id), events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Given/when/then: the history of some accounts, a command, and what must come of it.
    struct Given {
        accounts: BTreeMap<String, Account>,
    }

    fn given(history: &[Event]) -> Given {
        let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
        for event in history {
            let state = accounts.remove(&event.account_id).unwrap_or_else(|| Account::new(&event.account_id));
            let state = fold_from(state, [event]).expect("a well-formed history");
            accounts.insert(event.account_id.clone(), state);
        }
        Given { accounts }
    }

    impl Given {
        fn when(&self, action: Action) -> Result<Vec<Event>, Rejection> {
            decide(&self.accounts, &command(action))
        }
    }

    fn command(action: Action) -> Command {
        Command { command_id: "cmd".into(), issued_at: "2026-02-03T04:05:06Z".into(), action }
    }

    /// The event `kind` at `version` of `account`, as a previous command `c<version>` made it.
    fn past(account: &str, version: u64, kind: EventKind) -> Event {
        let command_id = format!("c{version}-{account}");
        Event {
            account_id: account.into(),
            version,
            event_id: event_id(&command_id, account),
            command_id,
            occurred_at: "2026-01-01T00:00:00Z".into(),
            kind,
        }
    }

    /// The event `kind` the command under test appends at `version` of `account`.
    fn new(account: &str, version: u64, kind: EventKind) -> Event {
        Event {
            account_id: account.into(),
            version,
            event_id: event_id("cmd", account),
            command_id: "cmd".into(),
            occurred_at: "2026-02-03T04:05:06Z".into(),
            kind,
        }
    }

    fn opened(account: &str) -> Event {
        past(account, 1, EventKind::AccountOpened { owner: format!("owner of {account}") })
    }

    fn rejected(account: &str, checked_version: u64, reason: RejectReason) -> Result<Vec<Event>, Rejection> {
        Err(Rejection { command_id: "cmd".into(), account_id: account.into(), checked_version, reason })
    }

    fn deposit(account: &str, amount: u64) -> Action {
        Action::Deposit { account_id: account.into(), amount }
    }

    fn withdraw(account: &str, amount: u64) -> Action {
        Action::Withdraw { account_id: account.into(), amount }
    }

    #[test]
    fn opening_a_new_account() {
        let then = given(&[]).when(Action::Open { account_id: "a".into(), owner: "Ada".into() });
        assert_eq!(then, Ok(vec![new("a", 1, EventKind::AccountOpened { owner: "Ada".into() })]));
    }

    #[test]
    fn opening_twice_is_refused() {
        let then = given(&[opened("a")]).when(Action::Open { account_id: "a".into(), owner: "Eve".into() });
        assert_eq!(then, rejected("a", 1, RejectReason::AlreadyOpen));
    }

    #[test]
    fn deposit_then_withdraw_within_the_balance() {
        let history = [opened("a"), past("a", 2, EventKind::MoneyDeposited { amount: 500 })];
        assert_eq!(
            given(&history).when(withdraw("a", 500)),
            Ok(vec![new("a", 3, EventKind::MoneyWithdrawn { amount: 500 })])
        );
        assert_eq!(
            given(&history).when(deposit("a", 1)),
            Ok(vec![new("a", 3, EventKind::MoneyDeposited { amount: 1 })])
        );
    }

    #[test]
    fn withdrawing_more_than_the_balance_is_refused() {
        let history = [opened("a"), past("a", 2, EventKind::MoneyDeposited { amount: 500 })];
        let then = given(&history).when(withdraw("a", 501));
        assert_eq!(then, rejected("a", 2, RejectReason::InsufficientFunds { balance: 500, requested: 501 }));
    }

    #[test]
    fn nothing_happens_to_an_account_never_opened() {
        assert_eq!(given(&[]).when(deposit("a", 5)), rejected("a", 0, RejectReason::NotOpened));
        assert_eq!(
            given(&[]).when(Action::Close { account_id: "a".into() }),
            rejected("a", 0, RejectReason::NotOpened)
        );
    }

    #[test]
    fn nothing_happens_to_a_closed_account() {
        let history = [opened("a"), past("a", 2, EventKind::AccountClosed)];
        assert_eq!(given(&history).when(deposit("a", 5)), rejected("a", 2, RejectReason::Closed));
        assert_eq!(given(&history).when(withdraw("a", 5)), rejected("a", 2, RejectReason::Closed));
        let reopen = Action::Open { account_id: "a".into(), owner: "Ada".into() };
        assert_eq!(given(&history).when(reopen), rejected("a", 2, RejectReason::AlreadyOpen));
    }

    #[test]
    fn zero_amounts_are_refused() {
        assert_eq!(given(&[opened("a")]).when(deposit("a", 0)), rejected("a", 1, RejectReason::ZeroAmount));
        assert_eq!(given(&[opened("a")]).when(withdraw("a", 0)), rejected("a", 1, RejectReason::ZeroAmount));
    }

    #[test]
    fn a_deposit_that_would_overflow_is_refused() {
        let history = [opened("a"), past("a", 2, EventKind::MoneyDeposited { amount: i64::MAX as u64 })];
        assert_eq!(given(&history).when(deposit("a", 1)), rejected("a", 2, RejectReason::Overflow));
    }

    #[test]
    fn closing_needs_an_empty_account() {
        let funded = [opened("a"), past("a", 2, EventKind::MoneyDeposited { amount: 7 })];
        let close = || Action::Close { account_id: "a".into() };
        assert_eq!(given(&funded).when(close()), rejected("a", 2, RejectReason::BalanceNotZero { balance: 7 }));
        assert_eq!(given(&[opened("a")]).when(close()), Ok(vec![new("a", 2, EventKind::AccountClosed)]));
    }

    #[test]
    fn a_transfer_appends_to_both_accounts_at_their_own_versions() {
        let history = [
            opened("a"),
            past("a", 2, EventKind::MoneyDeposited { amount: 300 }),
            opened("b"),
            past("b", 2, EventKind::MoneyDeposited { amount: 1 }),
            past("b", 3, EventKind::MoneyWithdrawn { amount: 1 }),
        ];
        let then = given(&history).when(Action::Transfer { from: "a".into(), to: "b".into(), amount: 300 });
        assert_eq!(
            then,
            Ok(vec![
                new("a", 3, EventKind::TransferSent { to: "b".into(), amount: 300 }),
                new("b", 4, EventKind::TransferReceived { from: "a".into(), amount: 300 }),
            ])
        );
    }

    #[test]
    fn transfers_are_refused_by_either_side() {
        let history = [opened("a"), past("a", 2, EventKind::MoneyDeposited { amount: 300 }), opened("b")];
        let transfer = |from: &str, to: &str, amount| Action::Transfer { from: from.into(), to: to.into(), amount };
        let funds = RejectReason::InsufficientFunds { balance: 300, requested: 301 };
        assert_eq!(given(&history).when(transfer("a", "b", 301)), rejected("a", 2, funds));
        assert_eq!(given(&history).when(transfer("a", "c", 1)), rejected("c", 0, RejectReason::NotOpened));
        assert_eq!(given(&history).when(transfer("a", "a", 1)), rejected("a", 2, RejectReason::SameAccount));
        let closed_target = [&history[..], &[past("b", 2, EventKind::AccountClosed)]].concat();
        assert_eq!(given(&closed_target).when(transfer("a", "b", 1)), rejected("b", 2, RejectReason::Closed));
    }

    #[test]
    fn fold_replays_a_history_and_refuses_gaps_and_strangers() {
        let history = [
            opened("a"),
            past("a", 2, EventKind::MoneyDeposited { amount: 300 }),
            past("a", 3, EventKind::TransferSent { to: "b".into(), amount: 100 }),
            past("a", 4, EventKind::TransferReceived { from: "b".into(), amount: 5 }),
            past("a", 5, EventKind::MoneyWithdrawn { amount: 200 }),
        ];
        let state = fold("a", &history).unwrap();
        assert_eq!(
            state,
            Account {
                account_id: "a".into(),
                version: 5,
                status: Status::Open,
                owner: "owner of a".into(),
                balance: 5
            }
        );
        let gap = [history[0].clone(), history[2].clone()];
        assert_eq!(fold("a", &gap), Err(FoldError::VersionGap { account_id: "a".into(), expected: 2, found: 3 }));
        assert!(matches!(fold("b", &history), Err(FoldError::WrongAccount { .. })));
    }

    #[test]
    fn evolve_records_what_a_tampered_history_says() {
        let overdrawn = [opened("a"), past("a", 2, EventKind::MoneyWithdrawn { amount: 10 })];
        assert_eq!(fold("a", &overdrawn).unwrap().balance, -10);
    }
}
