//! The pure decisions: what a batch's fault markers make the function do, and how its
//! exactly-once effects are cut into transactions DynamoDB accepts.

use std::collections::{BTreeMap, BTreeSet};

use labs_core::purchases::Fault;
use serde::{Deserialize, Serialize};

use crate::batch::DeliveredRecord;

/// TransactWriteItems takes at most 100 actions (and 4 MB: a purchase's two items are a few
/// hundred bytes, so 100 actions stay far below it).
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// What the function does with a batch, decided before it writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every record counted.
    Complete,
    /// A record fails the whole batch (a returned error): the naive increments are written, as a
    /// careless function would before it fails, and no exactly-once effect is, so a batch that is
    /// finally discarded is wholly uncounted.
    FailBatch { sequence_number: String, fault: Fault },
    /// The process dies after the effects of the first `after_records` records were written.
    Abort { sequence_number: String, after_records: usize },
    /// The records before `index` are counted; the one at `index` is reported as a batch item
    /// failure, and it and the later ones are left for the redelivery.
    ReportItemFailure { index: usize, sequence_number: String },
}

/// Decides what the batch's faults do. `deliveries_before` gives, per faulty record's sequence
/// number, how many earlier invocations held it. A failing record wins over a crash, and a crash
/// over an item failure: the returned error is decided before anything is written, and the crash
/// happens before the response is built.
pub fn decide(records: &[DeliveredRecord], deliveries_before: &BTreeMap<String, u32>) -> Decision {
    let firing: Vec<(usize, &DeliveredRecord, Fault)> = records
        .iter()
        .enumerate()
        .filter_map(|(index, record)| {
            let fault = record.purchase.fault?;
            let before = deliveries_before.get(&record.sequence_number).copied().unwrap_or(0);
            fault.fires(before).then_some((index, record, fault))
        })
        .collect();
    if let Some((_, record, fault)) = firing.iter().find(|(_, _, fault)| fault.fails_batch()) {
        return Decision::FailBatch { sequence_number: record.sequence_number.clone(), fault: *fault };
    }
    if let Some((_, record, _)) = firing.iter().find(|(_, _, fault)| *fault == Fault::Crash) {
        return Decision::Abort { sequence_number: record.sequence_number.clone(), after_records: records.len() / 2 };
    }
    if let Some((index, record, _)) = firing.first() {
        return Decision::ReportItemFailure { index: *index, sequence_number: record.sequence_number.clone() };
    }
    Decision::Complete
}

/// An amount to add to one user's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIncrement {
    pub user_id: String,
    pub total: u64,
    pub count: u64,
}

/// Per user (ordered by user id), the sum and number of `amounts`.
fn per_user<'a>(amounts: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<UserIncrement> {
    let mut users: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (user, amount) in amounts {
        let entry = users.entry(user).or_default();
        entry.0 += amount;
        entry.1 += 1;
    }
    users.into_iter().map(|(user, (total, count))| UserIncrement { user_id: user.to_owned(), total, count }).collect()
}

/// The naive effect of `records`: a plain increment per record, per user (not deduplicated).
pub fn naive_increments(records: &[DeliveredRecord]) -> Vec<UserIncrement> {
    per_user(records.iter().map(|r| (r.purchase.user_id.as_str(), r.purchase.amount)))
}

/// A row of the applied table (partition key `event_id`): the event was counted, by which
/// invocation, from where in the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedEvent {
    pub event_id: String,
    pub user_id: String,
    pub amount: u64,
    pub shard_id: String,
    pub sequence_number: String,
    pub request_id: String,
}

impl AppliedEvent {
    pub fn of(shard_id: &str, request_id: &str, record: &DeliveredRecord) -> Self {
        Self {
            event_id: record.purchase.event_id.clone(),
            user_id: record.purchase.user_id.clone(),
            amount: record.purchase.amount,
            shard_id: shard_id.to_owned(),
            sequence_number: record.sequence_number.clone(),
            request_id: request_id.to_owned(),
        }
    }
}

/// One TransactWriteItems: a conditional put of each event's dedup row (it fails if the event
/// was already counted) and one increment per user of the sum of its events. Each item appears
/// once, as DynamoDB requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionPlan {
    pub events: Vec<AppliedEvent>,
    pub increments: Vec<UserIncrement>,
}

impl TransactionPlan {
    pub fn new(events: Vec<AppliedEvent>) -> Self {
        let increments = per_user(events.iter().map(|e| (e.user_id.as_str(), e.amount)));
        Self { events, increments }
    }

    pub fn actions(&self) -> usize {
        self.events.len() + self.increments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The same transaction without the events in `applied` (found counted already).
    pub fn without(&self, applied: &BTreeSet<String>) -> Self {
        Self::new(self.events.iter().filter(|e| !applied.contains(&e.event_id)).cloned().collect())
    }
}

/// The exactly-once effects of `records`, cut into transactions of at most
/// [`MAX_TRANSACTION_ACTIONS`] actions, in record order. An event id seen earlier in the batch (a
/// record produced twice) is left out: it is one purchase. Returns the plans and how many records
/// were left out that way.
pub fn plan_transactions(
    shard_id: &str,
    request_id: &str,
    records: &[DeliveredRecord],
) -> (Vec<TransactionPlan>, usize) {
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    let mut plans = Vec::new();
    let mut events: Vec<AppliedEvent> = Vec::new();
    let mut users: BTreeSet<&str> = BTreeSet::new();
    for record in records {
        let purchase = &record.purchase;
        if !seen.insert(purchase.event_id.as_str()) {
            duplicates += 1;
            continue;
        }
        let new_user = !users.contains(purchase.user_id.as_str());
        if events.len() + 1 + users.len() + usize::from(new_user) > MAX_TRANSACTION_ACTIONS {
            plans.push(TransactionPlan::new(std::mem::take(&mut events)));
            users.clear();
        }
        users.insert(purchase.user_id.as_str());
        events.push(AppliedEvent::of(shard_id, request_id, record));
    }
    if !events.is_empty() {
        plans.push(TransactionPlan::new(events));
    }
    (plans, duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use labs_core::purchases::Purchase;

    fn record(seq: u64, id: &str, user: &str, amount: u64, fault: Option<Fault>) -> DeliveredRecord {
        DeliveredRecord {
            sequence_number: seq.to_string(),
            purchase: Purchase { event_id: id.into(), user_id: user.into(), amount, event_time: 0, user_seq: 1, fault },
        }
    }

    fn plain(n: u64) -> Vec<DeliveredRecord> {
        (0..n).map(|i| record(100 + i, &format!("e{i}"), &format!("u{}", i % 7), 10 + i, None)).collect()
    }

    #[test]
    fn fault_precedence_and_deliveries() {
        let mut records = plain(6);
        records[1].purchase.fault = Some(Fault::ItemFailure { failures: 1 });
        records[3].purchase.fault = Some(Fault::Crash);
        records[4].purchase.fault = Some(Fault::Transient { failures: 1 });
        let none = BTreeMap::new();
        assert_eq!(
            decide(&records, &none),
            Decision::FailBatch { sequence_number: "104".into(), fault: Fault::Transient { failures: 1 } }
        );
        let transient_spent = BTreeMap::from([("104".to_owned(), 1)]);
        assert_eq!(
            decide(&records, &transient_spent),
            Decision::Abort { sequence_number: "103".into(), after_records: 3 }
        );
        let crashed_once = BTreeMap::from([("104".to_owned(), 1), ("103".to_owned(), 1)]);
        assert_eq!(
            decide(&records, &crashed_once),
            Decision::ReportItemFailure { index: 1, sequence_number: "101".into() }
        );
        let all_spent = BTreeMap::from([("104".to_owned(), 1), ("103".to_owned(), 1), ("101".to_owned(), 1)]);
        assert_eq!(decide(&records, &all_spent), Decision::Complete);
        records[5].purchase.fault = Some(Fault::Poison);
        assert!(matches!(decide(&records, &all_spent), Decision::FailBatch { fault: Fault::Poison, .. }));
    }

    #[test]
    fn transactions_respect_the_action_limit_and_touch_each_item_once() {
        for n in [1, 49, 50, 93, 94, 100, 101, 250, 1000] {
            let records = plain(n);
            let (plans, duplicates) = plan_transactions("shard", "req", &records);
            assert_eq!(duplicates, 0);
            let mut ids = Vec::new();
            for plan in &plans {
                assert!(plan.actions() <= MAX_TRANSACTION_ACTIONS, "{n}: {}", plan.actions());
                let users: BTreeSet<_> = plan.increments.iter().map(|i| &i.user_id).collect();
                assert_eq!(users.len(), plan.increments.len(), "one increment per user");
                let sum: u64 = plan.increments.iter().map(|i| i.total).sum();
                assert_eq!(sum, plan.events.iter().map(|e| e.amount).sum::<u64>());
                ids.extend(plan.events.iter().map(|e| e.event_id.clone()));
            }
            let expected: Vec<String> = records.iter().map(|r| r.purchase.event_id.clone()).collect();
            assert_eq!(ids, expected, "every event once, in order");
            // Seven users: a full transaction holds 93 events and their 7 increments.
            assert_eq!(plans.len(), (n as usize).div_ceil(93), "{n}");
        }
    }

    #[test]
    fn one_user_per_event_halves_a_transaction() {
        let records: Vec<_> = (0..120).map(|i| record(i, &format!("e{i}"), &format!("u{i}"), 1, None)).collect();
        let (plans, _) = plan_transactions("s", "r", &records);
        assert_eq!(plans.iter().map(|p| p.events.len()).collect::<Vec<_>>(), [50, 50, 20]);
    }

    #[test]
    fn an_event_twice_in_a_batch_is_one_purchase() {
        let mut records = plain(3);
        records.push(record(200, "e1", "u1", 11, None));
        let (plans, duplicates) = plan_transactions("s", "r", &records);
        assert_eq!((plans.len(), plans[0].events.len(), duplicates), (1, 3, 1));
        let without = plans[0].without(&BTreeSet::from(["e0".to_owned()]));
        assert_eq!(without.events.len(), 2);
        assert!(without.increments.iter().all(|i| i.user_id != "u0"));
        let naive = naive_increments(&records);
        let u1 = naive.iter().find(|i| i.user_id == "u1").unwrap();
        assert_eq!((u1.total, u1.count), (22, 2), "the naive counter counts both");
    }
}
