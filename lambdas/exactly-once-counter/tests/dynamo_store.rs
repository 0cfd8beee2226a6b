//! `DynamoStore` against a real DynamoDB API (an emulator such as MiniStack or LocalStack).
//! Ignored by default; run with
//! `EXACTLY_ONCE_COUNTER_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p exactly-once-counter --test dynamo_store -- --ignored`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use common::{SHARD, batch, seq};
use exactly_once_counter::{
    AppliedEvent, BatchOutcome, CounterStore, DynamoStore, Invocation, Outcome, Tables, TotalsRow, TransactionPlan,
    TransactionResult, process_batch,
};
use labs_core::purchases::{Purchase, PurchaseSpec, Scenario, UserTotal, delivered_totals, expected_totals, generate};

const ENDPOINT_ENV: &str = "EXACTLY_ONCE_COUNTER_TEST_ENDPOINT";

async fn client(endpoint: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(function_bootstrap::https_client())
        .endpoint_url(endpoint)
        .region("us-east-1")
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    Client::new(&config)
}

async fn create_table(client: &Client, name: &str, keys: &[(&str, KeyType)]) {
    let mut request = client.create_table().table_name(name).billing_mode(BillingMode::PayPerRequest);
    for (attribute, key_type) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name(*attribute).key_type(key_type.clone()).build().unwrap(),
            );
    }
    request.send().await.unwrap();
}

/// Fresh tables named after `tag` and the process, as the stack declares them, and a store on them.
async fn setup(client: &Client, tag: &str) -> DynamoStore {
    let suffix = std::process::id();
    let tables = Tables {
        totals: format!("ex4-test-{tag}-totals-{suffix}"),
        applied: format!("ex4-test-{tag}-applied-{suffix}"),
        invocations: format!("ex4-test-{tag}-invocations-{suffix}"),
    };
    create_table(client, &tables.totals, &[("user_id", KeyType::Hash)]).await;
    create_table(client, &tables.applied, &[("event_id", KeyType::Hash)]).await;
    create_table(client, &tables.invocations, &[("shard_id", KeyType::Hash), ("batch_start", KeyType::Range)]).await;
    DynamoStore::new(client.clone(), tables)
}

async fn teardown(store: &DynamoStore) {
    let tables = store.tables();
    for table in [&tables.totals, &tables.applied, &tables.invocations] {
        store.client().delete_table().table_name(table).send().await.unwrap();
    }
}

async fn scan<T: serde::de::DeserializeOwned>(client: &Client, table: &str) -> Vec<T> {
    let mut rows = Vec::new();
    let mut start = None;
    loop {
        let page = client.scan().table_name(table).set_exclusive_start_key(start).send().await.unwrap();
        for item in page.items() {
            rows.push(serde_dynamo::from_item(item.clone()).unwrap());
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return rows;
        }
    }
}

/// (exactly once, naive) per user, as stored.
async fn totals(store: &DynamoStore) -> (BTreeMap<String, UserTotal>, BTreeMap<String, UserTotal>) {
    let rows: Vec<TotalsRow> = scan(store.client(), &store.tables().totals).await;
    let pick = |f: fn(&TotalsRow) -> UserTotal| -> BTreeMap<String, UserTotal> {
        rows.iter().map(|r| (r.user_id.clone(), f(r))).filter(|(_, t)| t.count > 0).collect()
    };
    (
        pick(|r| UserTotal { total: r.total, count: r.count }),
        pick(|r| UserTotal { total: r.naive_total, count: r.naive_count }),
    )
}

fn endpoint() -> String {
    std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| panic!("{ENDPOINT_ENV} is not set"))
}

/// Every scenario's batches through the real tables: totals exactly once, naive once per
/// delivery, attempts and outcomes counted from the invocations table.
#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in EXACTLY_ONCE_COUNTER_TEST_ENDPOINT"]
async fn dynamo_store_counts_exactly_once_through_every_fault() {
    let client = client(&endpoint()).await;
    let store = setup(&client, "faults").await;
    let mut produced: Vec<Purchase> = Vec::new();
    let mut delivered: Vec<Purchase> = Vec::new();
    // Each scenario's events sit on their own stretch of one shard: event `i` at `seq(i)`.
    let mut all: Vec<Purchase> = Vec::new();
    let mut run = Vec::new();
    let scenarios =
        [(Scenario::Happy, 250), (Scenario::Transient, 40), (Scenario::Crash, 40), (Scenario::PartialBatch, 40)];
    for (scenario, count) in scenarios {
        let start = all.len();
        all.extend(generate(&PurchaseSpec { users: 40, ..PurchaseSpec::for_scenario(scenario, 11, count) }));
        run.push((scenario, start..all.len()));
    }

    for (scenario, range) in run {
        let fault = all[range.clone()].iter().position(|e| e.fault.is_some()).map(|i| range.start + i);
        let whole = batch(&all, range.clone());
        let name = scenario.name();
        match scenario {
            Scenario::Happy => {
                let outcome = process_batch(&store, &whole, "happy-1").await.unwrap();
                assert_eq!(outcome, BatchOutcome::Respond(Default::default()));
                // The same batch again: nothing counted twice.
                process_batch(&store, &whole, "happy-2").await.unwrap();
                delivered.extend_from_slice(&all[range.clone()]);
                delivered.extend_from_slice(&all[range.clone()]);
            }
            Scenario::Transient => {
                for attempt in 1..=2 {
                    let err = process_batch(&store, &whole, &format!("{name}-{attempt}")).await.unwrap_err();
                    assert!(err.to_string().contains(&format!("delivery {attempt}")), "{err}");
                }
                process_batch(&store, &whole, &format!("{name}-3")).await.unwrap();
                for _ in 0..3 {
                    delivered.extend_from_slice(&all[range.clone()]);
                }
            }
            Scenario::Crash => {
                let outcome = process_batch(&store, &whole, &format!("{name}-1")).await.unwrap();
                assert_eq!(outcome, BatchOutcome::Abort { after_records: 20 });
                process_batch(&store, &whole, &format!("{name}-2")).await.unwrap();
                delivered.extend_from_slice(&all[range.start..range.start + 20]);
                delivered.extend_from_slice(&all[range.clone()]);
            }
            Scenario::PartialBatch => {
                let failed = fault.unwrap();
                let BatchOutcome::Respond(response) =
                    process_batch(&store, &whole, &format!("{name}-1")).await.unwrap()
                else {
                    panic!("no abort")
                };
                assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some(seq(failed).as_str()));
                process_batch(&store, &batch(&all, failed..range.end), &format!("{name}-2")).await.unwrap();
                delivered.extend_from_slice(&all[range.clone()]);
                delivered.extend_from_slice(&all[failed..range.end]);
            }
            _ => unreachable!(),
        }
        produced.extend_from_slice(&all[range]);
    }

    let (counted, naive) = totals(&store).await;
    assert_eq!(counted, expected_totals(&produced, &BTreeSet::new()));
    assert_eq!(naive, delivered_totals(&delivered));
    let applied: Vec<AppliedEvent> = scan(&client, &store.tables().applied).await;
    assert_eq!(applied.len(), produced.len());

    let invocations: Vec<Invocation> = scan(&client, &store.tables().invocations).await;
    let by_request: BTreeMap<&str, &Invocation> = invocations.iter().map(|i| (i.request_id.as_str(), i)).collect();
    let summary = |id: &str| (by_request[id].attempt, by_request[id].outcome);
    assert_eq!(summary("happy-2"), (2, Outcome::Succeeded));
    assert_eq!(summary("transient-1"), (1, Outcome::Failed));
    assert_eq!(summary("transient-3"), (3, Outcome::Succeeded));
    assert_eq!(summary("crash-1"), (1, Outcome::Aborted));
    assert_eq!(summary("crash-2"), (2, Outcome::Succeeded));
    assert_eq!(summary("partial-batch-1"), (1, Outcome::PartialFailure));
    assert_eq!(summary("partial-batch-2"), (1, Outcome::Succeeded), "the partial response moved the checkpoint");
    assert_eq!(by_request["crash-2"].already_applied, 20);
    assert_eq!(by_request["happy-2"].already_applied, 250);

    teardown(&store).await;
}

/// The store's own contract: counts of earlier invocations by where batches start and what they
/// hold (sequence numbers of different lengths compare as numbers), and a transaction cancelled
/// by counted events names exactly those and writes nothing.
#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in EXACTLY_ONCE_COUNTER_TEST_ENDPOINT"]
async fn dynamo_store_counts_invocations_and_names_counted_events() {
    let client = client(&endpoint()).await;
    let store = setup(&client, "contract").await;
    let shard = SHARD;
    for (request, first, last) in [("r1", "95", "120"), ("r2", "95", "99"), ("r3", "100", "1000"), ("r4", "7", "8")] {
        store.record_invocation(&Invocation::new(shard, request, first, last, 2, 1)).await.unwrap();
    }
    store.record_invocation(&Invocation::new("shardId-000000000009", "other", "95", "120", 2, 1)).await.unwrap();
    assert_eq!(store.invocations_starting_at(shard, "95").await.unwrap(), 2);
    assert_eq!(store.invocations_starting_at(shard, "095").await.unwrap(), 2, "leading zeros do not matter");
    assert_eq!(store.invocations_starting_at(shard, "9").await.unwrap(), 0);
    let held = |sequence_number: &'static str| {
        let store = store.clone();
        async move { store.deliveries_of(shard, sequence_number).await.unwrap() }
    };
    assert_eq!((held("95").await, held("99").await, held("100").await), (2, 2, 2));
    assert_eq!((held("121").await, held("1000").await, held("1001").await, held("8").await), (1, 1, 0, 1));
    assert_eq!(held("9").await, 0);

    // Re-recording an invocation replaces its row.
    let mut done = Invocation::new(shard, "r4", "7", "8", 2, 1);
    done.outcome = Outcome::Succeeded;
    store.record_invocation(&done).await.unwrap();
    let rows: Vec<Invocation> = scan(&client, &store.tables().invocations).await;
    assert_eq!(rows.len(), 5);
    assert!(rows.contains(&done));

    let event = |id: &str, user: &str, amount| AppliedEvent {
        event_id: id.into(),
        user_id: user.into(),
        amount,
        shard_id: shard.into(),
        sequence_number: "1".into(),
        request_id: "r".into(),
    };
    let first = TransactionPlan::new(vec![event("e1", "u1", 10), event("e2", "u2", 5)]);
    assert_eq!(store.apply(&first).await.unwrap(), TransactionResult::Committed);
    let second = TransactionPlan::new(vec![event("e3", "u1", 7), event("e2", "u2", 5), event("e4", "u3", 1)]);
    let cancelled = store.apply(&second).await.unwrap();
    assert_eq!(cancelled, TransactionResult::AlreadyApplied(BTreeSet::from(["e2".to_owned()])));
    let (counted, _) = totals(&store).await;
    assert_eq!(counted["u1"], UserTotal { total: 10, count: 1 }, "the cancelled transaction wrote nothing");
    assert!(!counted.contains_key("u3"));
    let rest = second.without(&BTreeSet::from(["e2".to_owned()]));
    assert_eq!(store.apply(&rest).await.unwrap(), TransactionResult::Committed);
    let (counted, _) = totals(&store).await;
    assert_eq!(counted["u1"], UserTotal { total: 17, count: 2 });

    // The largest transaction (100 actions) is accepted.
    let big: Vec<AppliedEvent> = (0..90).map(|i| event(&format!("big{i}"), &format!("bu{}", i % 10), 1)).collect();
    let big = TransactionPlan::new(big);
    assert_eq!(big.actions(), 100);
    assert_eq!(store.apply(&big).await.unwrap(), TransactionResult::Committed);

    teardown(&store).await;
}
