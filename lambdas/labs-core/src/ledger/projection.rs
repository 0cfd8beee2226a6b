//! Read models folded from the log. `balances` is what a CRUD table would also hold; the largest
//! withdrawal per month is one it could never answer, because it needs every past withdrawal, and
//! a table of current balances overwrote them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::account::{Account, FoldError, fold_from};
use super::event::{Event, EventKind};

/// Groups `events` by account, each account's in version order (the log's order per key, or the
/// store's sort order; a sort makes the result independent of how accounts interleave).
pub fn by_account<'a>(events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<&'a str, Vec<&'a Event>> {
    let mut grouped: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in events {
        grouped.entry(&event.account_id).or_default().push(event);
    }
    for history in grouped.values_mut() {
        history.sort_by_key(|event| event.version);
    }
    grouped
}

/// The balances projection: every account's state after all its events in `events`.
pub fn balances<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<BTreeMap<String, Account>, FoldError> {
    by_account(events)
        .into_iter()
        .map(|(id, history)| Ok((id.to_owned(), fold_from(Account::new(id), history)?)))
        .collect()
}

/// The largest withdrawal of one account in one calendar month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargestWithdrawal {
    pub account_id: String,
    /// `YYYY-MM`, from `occurred_at`.
    pub month: String,
    pub amount: u64,
    pub event_id: String,
    pub version: u64,
}

/// Per account and month, the largest `MoneyWithdrawn` (the earliest of equal ones). Built from
/// history alone: no current-state table keeps what it would need.
pub fn largest_withdrawal_per_month<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> BTreeMap<(String, String), LargestWithdrawal> {
    let mut largest: BTreeMap<(String, String), LargestWithdrawal> = BTreeMap::new();
    for history in by_account(events).into_values() {
        for event in history {
            let EventKind::MoneyWithdrawn { amount } = event.kind else { continue };
            let month = event.occurred_at.get(..7).unwrap_or(&event.occurred_at).to_owned();
            let candidate = LargestWithdrawal {
                account_id: event.account_id.clone(),
                month: month.clone(),
                amount,
                event_id: event.event_id.clone(),
                version: event.version,
            };
            largest
                .entry((event.account_id.clone(), month))
                .and_modify(|best| {
                    if amount > best.amount {
                        *best = candidate.clone();
                    }
                })
                .or_insert(candidate);
        }
    }
    largest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::account::Status;

    fn event(account: &str, version: u64, at: &str, kind: EventKind) -> Event {
        Event {
            account_id: account.into(),
            version,
            event_id: format!("{account}-{version}"),
            command_id: format!("c-{account}-{version}"),
            occurred_at: at.into(),
            kind,
        }
    }

    fn history() -> Vec<Event> {
        vec![
            event("b", 1, "2026-01-02T00:00:00Z", EventKind::AccountOpened { owner: "Bo".into() }),
            event("a", 1, "2026-01-01T00:00:00Z", EventKind::AccountOpened { owner: "Al".into() }),
            event("a", 2, "2026-01-03T00:00:00Z", EventKind::MoneyDeposited { amount: 1000 }),
            event("a", 3, "2026-01-04T00:00:00Z", EventKind::MoneyWithdrawn { amount: 300 }),
            event("a", 4, "2026-01-20T00:00:00Z", EventKind::MoneyWithdrawn { amount: 400 }),
            event("a", 5, "2026-01-21T00:00:00Z", EventKind::MoneyWithdrawn { amount: 400 }),
            event("a", 6, "2026-02-01T00:00:00Z", EventKind::TransferSent { to: "b".into(), amount: 250 }),
            event("b", 2, "2026-02-01T00:00:00Z", EventKind::TransferReceived { from: "a".into(), amount: 250 }),
            event("b", 3, "2026-02-02T00:00:00Z", EventKind::MoneyWithdrawn { amount: 50 }),
        ]
    }

    #[test]
    fn balances_fold_each_account_in_version_order() {
        let mut shuffled = history();
        shuffled.reverse();
        let balances = balances(&shuffled).unwrap();
        assert_eq!(balances.len(), 2);
        assert_eq!((balances["a"].version, balances["a"].balance), (6, 1000 - 300 - 400 - 400 - 250));
        assert_eq!((balances["b"].version, balances["b"].balance, balances["b"].status), (3, 200, Status::Open));
    }

    #[test]
    fn largest_withdrawal_per_month_keeps_the_first_of_equals_and_ignores_transfers() {
        let largest = largest_withdrawal_per_month(&history());
        let got: Vec<(&str, &str, u64, u64)> =
            largest.values().map(|w| (w.account_id.as_str(), w.month.as_str(), w.amount, w.version)).collect();
        assert_eq!(got, vec![("a", "2026-01", 400, 4), ("b", "2026-02", 50, 3)]);
    }
}
