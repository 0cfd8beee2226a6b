//! The handler against the in-memory store, with Kinesis events in Lambda's shape.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{SHARD, batch, seq};
use exactly_once_counter::{BatchOutcome, Invocation, KinesisEvent, MemoryStore, Outcome, TotalsRow, process_batch};
use labs_core::purchases::{
    Fault, Purchase, PurchaseSpec, Scenario, UserTotal, compare_totals, delivered_totals, expected_totals, generate,
};
use serde_json::json;

fn fixture(name: &str) -> KinesisEvent {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn counted(store: &MemoryStore) -> BTreeMap<String, UserTotal> {
    rows(store, |r| UserTotal { total: r.total, count: r.count })
}

fn naive(store: &MemoryStore) -> BTreeMap<String, UserTotal> {
    rows(store, |r| UserTotal { total: r.naive_total, count: r.naive_count })
}

fn rows(store: &MemoryStore, pick: impl Fn(&TotalsRow) -> UserTotal) -> BTreeMap<String, UserTotal> {
    store.totals().into_iter().map(|(user, row)| (user, pick(&row))).filter(|(_, t)| t.count > 0).collect()
}

/// The totals counting every event of `events` once.
fn truth(events: &[Purchase]) -> BTreeMap<String, UserTotal> {
    expected_totals(events, &BTreeSet::new())
}

fn failures(outcome: &BatchOutcome) -> Vec<String> {
    match outcome {
        BatchOutcome::Respond(response) => {
            response.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap_or_default()).collect()
        }
        BatchOutcome::Abort { .. } => panic!("the process would have aborted"),
    }
}

fn attempts_and_outcomes(store: &MemoryStore) -> Vec<(u32, Outcome)> {
    let mut invocations: Vec<Invocation> = store.invocations();
    invocations.sort_by_key(|i| i.request_id.clone());
    invocations.iter().map(|i| (i.attempt, i.outcome)).collect()
}

fn spec(scenario: Scenario, count: usize) -> PurchaseSpec {
    PurchaseSpec::for_scenario(scenario, 3, count)
}

fn fault_position(events: &[Purchase]) -> usize {
    events.iter().position(|e| e.fault.is_some()).expect("a planted fault")
}

#[tokio::test]
async fn the_fixture_batch_is_counted_once_and_recorded() {
    let store = MemoryStore::default();
    let event = fixture("three_purchases.json");
    let outcome = process_batch(&store, &event, "req-1").await.unwrap();
    assert!(failures(&outcome).is_empty());
    let BatchOutcome::Respond(response) = outcome else { unreachable!() };
    assert_eq!(serde_json::to_value(&response).unwrap(), json!({"batchItemFailures": []}));

    let expected = BTreeMap::from([
        ("user-003".to_owned(), UserTotal { total: 21_250, count: 2 }),
        ("user-011".to_owned(), UserTotal { total: 499, count: 1 }),
    ]);
    assert_eq!(counted(&store), expected);
    assert_eq!(naive(&store), expected);
    let applied = store.applied();
    assert_eq!(applied.len(), 3);
    let first = &applied["happy1-e000000"];
    assert_eq!(first.shard_id, "shardId-000000000001");
    assert_eq!(first.sequence_number, "49590338271490256608559692538361571095921575989136588898");
    assert_eq!(first.request_id, "req-1");

    let invocations = store.invocations();
    assert_eq!(invocations.len(), 1);
    let invocation = &invocations[0];
    assert_eq!(invocation.shard_id, "shardId-000000000001");
    assert_eq!(invocation.first_sequence_number, "49590338271490256608559692538361571095921575989136588898");
    assert_eq!(invocation.last_sequence_number, "49590338271490256608559692540779422735150834338548301827");
    assert_eq!((invocation.records, invocation.attempt, invocation.outcome), (3, 1, Outcome::Succeeded));
    assert_eq!((invocation.naive_records, invocation.applied, invocation.already_applied), (3, 3, 0));
}

#[tokio::test]
async fn a_redelivered_batch_counts_total_once_and_naive_twice() {
    let store = MemoryStore::default();
    let event = fixture("three_purchases.json");
    process_batch(&store, &event, "req-1").await.unwrap();
    let again = process_batch(&store, &event, "req-2").await.unwrap();
    assert!(failures(&again).is_empty(), "a redelivery is handled, not failed");

    let totals = store.totals();
    let alice = &totals["user-003"];
    assert_eq!((alice.total, alice.count), (21_250, 2));
    assert_eq!((alice.naive_total, alice.naive_count), (42_500, 4));
    assert_eq!(attempts_and_outcomes(&store), [(1, Outcome::Succeeded), (2, Outcome::Succeeded)]);
    let second = store.invocations().into_iter().find(|i| i.request_id == "req-2").unwrap();
    assert_eq!((second.applied, second.already_applied), (0, 3));
    assert_eq!(store.applied()["happy1-e000000"].request_id, "req-1", "the first delivery counted it");
}

#[tokio::test]
async fn a_poison_record_fails_every_delivery_and_is_never_counted() {
    let events = generate(&spec(Scenario::Poison, 30));
    let poison = fault_position(&events);
    let store = MemoryStore::default();
    let event = batch(&events, 0..30);
    for request in ["a", "b", "c"] {
        let err = process_batch(&store, &event, request).await.unwrap_err().to_string();
        assert!(err.contains("poison") && err.contains(&seq(poison)), "{err}");
    }
    assert!(counted(&store).is_empty(), "a failing batch commits no exactly-once effect");
    assert!(store.applied().is_empty());
    // The careless counter counted the whole batch on every delivery.
    let delivered: Vec<Purchase> = (0..3).flat_map(|_| events.clone()).collect();
    assert_eq!(naive(&store), delivered_totals(&delivered));
    assert_eq!(attempts_and_outcomes(&store), [(1, Outcome::Failed), (2, Outcome::Failed), (3, Outcome::Failed)]);
    let invocation = &store.invocations()[0];
    assert_eq!(invocation.fault_sequence_number.as_deref(), Some(seq(poison).as_str()));
    assert!(invocation.detail.contains("poison"), "{}", invocation.detail);

    // Bisected down to the halves without it, the rest of the batch is counted.
    process_batch(&store, &batch(&events, 0..poison), "left").await.unwrap();
    process_batch(&store, &batch(&events, poison + 1..30), "right").await.unwrap();
    let discarded = BTreeSet::from([events[poison].event_id.clone()]);
    assert_eq!(counted(&store), expected_totals(&events, &discarded));
}

#[tokio::test]
async fn a_transient_fault_fails_twice_then_counts_once() {
    let events = generate(&spec(Scenario::Transient, 40));
    assert_eq!(events[fault_position(&events)].fault, Some(Fault::Transient { failures: 2 }));
    let store = MemoryStore::default();
    let event = batch(&events, 0..40);
    for (request, delivery) in [("a", 1), ("b", 2)] {
        let err = process_batch(&store, &event, request).await.unwrap_err().to_string();
        assert!(err.contains("transient") && err.contains(&format!("delivery {delivery}")), "{err}");
        assert!(counted(&store).is_empty());
    }
    assert!(failures(&process_batch(&store, &event, "c").await.unwrap()).is_empty());
    assert_eq!(counted(&store), truth(&events));
    let delivered: Vec<Purchase> = (0..3).flat_map(|_| events.clone()).collect();
    assert_eq!(naive(&store), delivered_totals(&delivered), "naive over-counts by the two redeliveries");
    assert_eq!(attempts_and_outcomes(&store), [(1, Outcome::Failed), (2, Outcome::Failed), (3, Outcome::Succeeded)]);
}

#[tokio::test]
async fn a_batch_item_failure_names_its_sequence_number_and_counts_only_the_records_before_it() {
    let events = generate(&spec(Scenario::PartialBatch, 30));
    let failed = fault_position(&events);
    let store = MemoryStore::default();
    let outcome = process_batch(&store, &batch(&events, 0..30), "a").await.unwrap();
    assert_eq!(failures(&outcome), [seq(failed)]);
    let BatchOutcome::Respond(response) = &outcome else { unreachable!() };
    assert_eq!(
        serde_json::to_value(response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": seq(failed)}]})
    );
    assert_eq!(counted(&store), truth(&events[..failed]));
    let invocation = &store.invocations()[0];
    assert_eq!(invocation.outcome, Outcome::PartialFailure);
    assert_eq!(invocation.fault_sequence_number.as_deref(), Some(seq(failed).as_str()));

    // Lambda checkpoints before the failed record and redelivers it and the ones after it.
    let outcome = process_batch(&store, &batch(&events, failed..30), "b").await.unwrap();
    assert!(failures(&outcome).is_empty(), "an item failure fails only its first delivery");
    assert_eq!(counted(&store), truth(&events));
    let delivered: Vec<Purchase> = events.iter().chain(&events[failed..]).cloned().collect();
    assert_eq!(naive(&store), delivered_totals(&delivered));
    // A batch starting further on is a first attempt, as Lambda counts retries: the partial
    // response moved the checkpoint.
    assert_eq!(attempts_and_outcomes(&store), [(1, Outcome::PartialFailure), (1, Outcome::Succeeded)]);
}

#[tokio::test]
async fn a_crash_marker_aborts_its_first_delivery_after_half_the_effects_and_redelivery_completes_it() {
    let events = generate(&spec(Scenario::Crash, 30));
    let store = MemoryStore::default();
    let event = batch(&events, 0..30);
    let outcome = process_batch(&store, &event, "a").await.unwrap();
    assert_eq!(outcome, BatchOutcome::Abort { after_records: 15 });
    assert_eq!(counted(&store), truth(&events[..15]));
    assert_eq!(naive(&store), delivered_totals(&events[..15]));
    let crashed = &store.invocations()[0];
    assert_eq!((crashed.outcome, crashed.naive_records, crashed.applied), (Outcome::Aborted, 15, 15));

    let outcome = process_batch(&store, &event, "b").await.unwrap();
    assert!(failures(&outcome).is_empty(), "no abort on the second delivery");
    assert_eq!(counted(&store), truth(&events), "exactly once");
    let delivered: Vec<Purchase> = events[..15].iter().chain(&events).cloned().collect();
    assert_eq!(naive(&store), delivered_totals(&delivered));
    let redelivery = store.invocations().into_iter().find(|i| i.request_id == "b").unwrap();
    assert_eq!((redelivery.attempt, redelivery.applied, redelivery.already_applied), (2, 15, 15));
}

#[tokio::test]
async fn a_fault_counts_deliveries_of_its_record_whatever_batch_held_it() {
    // A crash record first delivered in a bisected half does not crash the other half's batch.
    let events = generate(&spec(Scenario::Crash, 20));
    let crash = fault_position(&events);
    let store = MemoryStore::default();
    let outcome = process_batch(&store, &batch(&events, crash..20), "a").await.unwrap();
    assert!(matches!(outcome, BatchOutcome::Abort { .. }));
    let outcome = process_batch(&store, &batch(&events, 0..20), "b").await.unwrap();
    assert!(failures(&outcome).is_empty(), "the record was delivered before, in another batch");
    let starts: Vec<u32> = store.invocations().iter().map(|i| i.attempt).collect();
    assert_eq!(starts, [1, 1], "a batch starting elsewhere is a first attempt");
    assert_eq!(counted(&store), truth(&events));
}

#[tokio::test]
async fn a_batch_above_one_hundred_records_is_cut_into_transactions_and_overlaps_lose_nothing() {
    let spec = PurchaseSpec { users: 60, ..spec(Scenario::Happy, 600) };
    let events = generate(&spec);
    let store = MemoryStore::default();
    assert!(failures(&process_batch(&store, &batch(&events, 0..250), "a").await.unwrap()).is_empty());
    assert!(store.transactions() >= 3, "250 records need at least 3 transactions of 100 actions");
    assert_eq!(counted(&store), truth(&events[..250]));

    // A batch overlapping the counted one: its transactions are cancelled by the counted events
    // and sent again without them, so the new ones are not lost.
    let outcome = process_batch(&store, &batch(&events, 200..600), "b").await.unwrap();
    assert!(failures(&outcome).is_empty());
    assert_eq!(compare_totals(&truth(&events), &counted(&store)), []);
    let overlap = store.invocations().into_iter().find(|i| i.request_id == "b").unwrap();
    assert_eq!((overlap.applied, overlap.already_applied), (350, 50));
}

#[tokio::test]
async fn an_event_produced_twice_is_counted_once_even_in_one_batch() {
    let mut events = generate(&spec(Scenario::Happy, 10));
    events.push(events[3].clone()); // a producer retry wrote it again
    let store = MemoryStore::default();
    process_batch(&store, &batch(&events, 0..11), "a").await.unwrap();
    assert_eq!(counted(&store), truth(&events));
    assert_eq!(naive(&store), delivered_totals(&events));
    assert_eq!(store.invocations()[0].already_applied, 1);
}

#[tokio::test]
async fn an_unreadable_record_fails_the_batch_before_anything_is_written() {
    let store = MemoryStore::default();
    let err = process_batch(&store, &fixture("aws_documentation.json"), "a").await.unwrap_err().to_string();
    assert!(
        err.contains("49590338271490256608559692538361571095921575989136588898") && err.contains("not a purchase"),
        "{err}"
    );
    assert!(store.totals().is_empty() && store.applied().is_empty());
    let invocations = store.invocations();
    assert_eq!(invocations.len(), 1);
    assert_eq!((invocations[0].outcome, invocations[0].shard_id.as_str()), (Outcome::Rejected, "shardId-000000000006"));
}

#[tokio::test]
async fn a_batch_without_shards_or_across_shards_is_refused() {
    let events = generate(&spec(Scenario::Happy, 3));
    let mut no_id = batch(&events, 0..3);
    no_id.records[1].event_id = None;
    let err = process_batch(&MemoryStore::default(), &no_id, "a").await.unwrap_err().to_string();
    assert!(err.contains("record 1 has no eventID"), "{err}");

    let mut mixed = batch(&events, 0..3);
    mixed.records[2].event_id = Some(format!("shardId-000000000000:{}", seq(2)));
    let err = process_batch(&MemoryStore::default(), &mixed, "a").await.unwrap_err().to_string();
    assert!(err.contains("shardId-000000000000") && err.contains(SHARD), "{err}");

    let empty: KinesisEvent = serde_json::from_value(json!({"Records": []})).unwrap();
    let store = MemoryStore::default();
    assert!(failures(&process_batch(&store, &empty, "a").await.unwrap()).is_empty());
    assert!(store.invocations().is_empty());
}

#[tokio::test]
async fn a_store_failure_fails_the_batch_and_is_recorded() {
    let events = generate(&spec(Scenario::Happy, 5));
    let store = MemoryStore::with_failing_transactions();
    let err = process_batch(&store, &batch(&events, 0..5), "a").await.unwrap_err().to_string();
    assert!(err.contains("TransactWriteItems") && err.contains("down"), "{err}");
    assert!(counted(&store).is_empty());
    assert_eq!(naive(&store), delivered_totals(&events), "the naive increments went through first");
    let invocation = &store.invocations()[0];
    assert_eq!((invocation.outcome, invocation.naive_records), (Outcome::Failed, 5));
    assert!(invocation.detail.contains("TransactWriteItems"), "{}", invocation.detail);
}
