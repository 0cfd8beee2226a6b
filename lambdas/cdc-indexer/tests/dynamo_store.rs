//! `DynamoStore` against a real DynamoDB API (an emulator such as MiniStack or LocalStack).
//! Ignored by default; run with
//! `CDC_INDEXER_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p cdc-indexer --test dynamo_store -- --ignored`.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use cdc_indexer::backfill::{SNAPSHOT_SEQUENCE_NUMBER, snapshot_of};
use cdc_indexer::store::{CheckpointCommit, MAX_BACKFILL_ROWS};
use cdc_indexer::synthetic;
use cdc_indexer::{
    BackfillReport, BatchStats, Checkpoint, DynamoStore, IndexStore, STATS_ID, backfill_products, process_event,
};
use labs_core::search_index::{IndexEntry, Product, apply_ops, diff_index, expected_index, workload};

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

/// A fresh pair of tables (index, checkpoints) named after `tag` and the process, and a store on them.
async fn setup(client: &Client, tag: &str) -> (DynamoStore, [String; 2]) {
    let suffix = std::process::id();
    let (index_table, checkpoint_table) =
        (format!("cdc-test-{tag}-index-{suffix}"), format!("cdc-test-{tag}-cp-{suffix}"));
    create_table(client, &index_table, &[("term", KeyType::Hash), ("product_id", KeyType::Range)]).await;
    create_table(client, &checkpoint_table, &[("product_id", KeyType::Hash)]).await;
    (DynamoStore::new(client.clone(), &index_table, &checkpoint_table), [index_table, checkpoint_table])
}

async fn teardown(client: &Client, tables: &[String; 2]) {
    for table in tables {
        client.delete_table().table_name(table).send().await.unwrap();
    }
}

async fn scan_index(client: &Client, table: &str) -> BTreeSet<IndexEntry> {
    let mut entries = BTreeSet::new();
    let mut start = None;
    loop {
        let page = client.scan().table_name(table).set_exclusive_start_key(start).send().await.unwrap();
        for item in page.items() {
            let s = |k: &str| item[k].as_s().unwrap().clone();
            entries.insert((s("term"), s("product_id")));
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return entries;
        }
    }
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in CDC_INDEXER_TEST_ENDPOINT"]
async fn dynamo_store_indexes_a_workload_with_redeliveries() {
    let endpoint = std::env::var("CDC_INDEXER_TEST_ENDPOINT").expect("CDC_INDEXER_TEST_ENDPOINT");
    let client = client(&endpoint).await;
    let (store, tables) = setup(&client, "workload").await;
    let [index_table, checkpoint_table] = &tables;

    let ops = workload(5, 600, 40);
    let records = synthetic::stream_records(&mut BTreeMap::new(), &ops, 99_999_999_999_999_990_000);
    let batches: Vec<_> = records.chunks(150).map(|c| synthetic::event(c.to_vec())).collect();
    let mut total = BatchStats::default();
    for batch in &batches {
        total.add(&process_event(&store, batch).await.unwrap().stats());
    }
    // The first batch again: all stale.
    let again = process_event(&store, &batches[0]).await.unwrap();
    assert_eq!(again.stale_skipped, again.records);
    total.add(&again.stats());

    let diff = diff_index(&expected_index(apply_ops(&ops).values()), &scan_index(&client, index_table).await);
    assert!(diff.is_empty(), "{diff:#?}");

    let stats = client
        .get_item()
        .table_name(checkpoint_table)
        .key("product_id", AttributeValue::S(STATS_ID.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let stats: BatchStats = serde_dynamo::from_item(stats).unwrap();
    assert_eq!(stats, total);

    // Checkpoints round-trip, including empty term lists of deleted products.
    let ids: Vec<String> = (0..40).map(labs_core::search_index::product_id).collect();
    let checkpoints = store.get_checkpoints(&ids).await.unwrap();
    assert_eq!(checkpoints.len(), 40);
    assert!(checkpoints.values().any(|cp| cp.deleted && cp.terms.is_empty()));

    // Checkpoint writes are compare-and-swap on the stored `seq`.
    let mut cp = checkpoints["p-0001"].clone();
    let stored = cp.seq.clone();
    cp.seq = "9".repeat(40);
    let commit = |expected: Option<String>| CheckpointCommit { checkpoint: cp.clone(), expected_seq: expected };
    assert_eq!(store.commit_checkpoints(vec![commit(None)]).await.unwrap(), vec![false]);
    assert_eq!(store.commit_checkpoints(vec![commit(Some("1".into()))]).await.unwrap(), vec![false]);
    assert_eq!(store.commit_checkpoints(vec![commit(Some(stored))]).await.unwrap(), vec![true]);
    let new_id = Checkpoint { product_id: "p-new".into(), ..cp.clone() };
    let fresh = CheckpointCommit { checkpoint: new_id, expected_seq: None };
    assert_eq!(store.commit_checkpoints(vec![fresh.clone()]).await.unwrap(), vec![true]);
    assert_eq!(store.commit_checkpoints(vec![fresh]).await.unwrap(), vec![false]);

    teardown(&client, &tables).await;
}

fn product(id: &str, name: &str) -> Product {
    Product { id: id.into(), name: name.into(), ..Default::default() }
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in CDC_INDEXER_TEST_ENDPOINT"]
async fn dynamo_store_backfill_is_conditional_and_all_or_nothing() {
    let endpoint = std::env::var("CDC_INDEXER_TEST_ENDPOINT").expect("CDC_INDEXER_TEST_ENDPOINT");
    let client = client(&endpoint).await;
    let (store, tables) = setup(&client, "backfill").await;
    let index_of = |id: &'static str| {
        let (client, table) = (client.clone(), tables[0].clone());
        async move { scan_index(&client, &table).await.into_iter().filter(|(_, p)| p == id).collect::<BTreeSet<_>>() }
    };
    let ids = |list: &[&str]| list.iter().map(|id| id.to_string()).collect::<Vec<_>>();

    // No checkpoint: the checkpoint and the rows are written, at the snapshot position.
    let hat = product("bf-a", "red wool hat");
    let (cp, rows) = snapshot_of(&hat);
    assert!(store.backfill_product(&cp, &rows).await.unwrap());
    assert_eq!(index_of("bf-a").await, expected_index([&hat]));
    let stored = store.get_checkpoints(&ids(&["bf-a"])).await.unwrap();
    assert_eq!(stored["bf-a"], cp);
    assert_eq!(cp.seq, SNAPSHOT_SEQUENCE_NUMBER);

    // A checkpoint exists: false, and none of the other rows is written (all or nothing).
    let (cp2, rows2) = snapshot_of(&product("bf-a", "green mug"));
    assert!(!store.backfill_product(&cp2, &rows2).await.unwrap());
    assert_eq!(index_of("bf-a").await, expected_index([&hat]));
    assert_eq!(store.get_checkpoints(&ids(&["bf-a"])).await.unwrap()["bf-a"], cp);

    // A tombstone is a checkpoint too.
    let tombstone = Checkpoint { product_id: "bf-b".into(), seq: "100".into(), terms: vec![], deleted: true };
    let commit = CheckpointCommit { checkpoint: tombstone, expected_seq: None };
    assert_eq!(store.commit_checkpoints(vec![commit]).await.unwrap(), vec![true]);
    let (cp, rows) = snapshot_of(&product("bf-b", "oak desk"));
    assert!(!store.backfill_product(&cp, &rows).await.unwrap());
    assert!(index_of("bf-b").await.is_empty());

    // The indexer's commit after a backfill it did not see fails; one expecting "0" goes through.
    let mut after = store.get_checkpoints(&ids(&["bf-a"])).await.unwrap().remove("bf-a").unwrap();
    after.seq = "200".into();
    let commit =
        |expected: Option<&str>| CheckpointCommit { checkpoint: after.clone(), expected_seq: expected.map(Into::into) };
    assert_eq!(store.commit_checkpoints(vec![commit(None)]).await.unwrap(), vec![false]);
    assert_eq!(store.commit_checkpoints(vec![commit(Some(SNAPSHOT_SEQUENCE_NUMBER))]).await.unwrap(), vec![true]);

    // The largest transaction (the checkpoint and 99 rows) is accepted; one more row is refused
    // before anything is sent.
    let name = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let largest = product("bf-c", &name(MAX_BACKFILL_ROWS));
    let (cp, rows) = snapshot_of(&largest);
    assert!(store.backfill_product(&cp, &rows).await.unwrap());
    assert_eq!(index_of("bf-c").await.len(), MAX_BACKFILL_ROWS);
    let (cp, rows) = snapshot_of(&product("bf-d", &name(MAX_BACKFILL_ROWS + 1)));
    let err = store.backfill_product(&cp, &rows).await.unwrap_err().to_string();
    assert!(err.contains("100 terms"), "{err}");
    assert!(store.get_checkpoints(&ids(&["bf-d"])).await.unwrap().is_empty());

    teardown(&client, &tables).await;
}

/// Products that predate the stream, a log indexed in two halves, and between them a scan read
/// later than the indexer's position, loaded by `backfill_products`: the index ends equal to the
/// table, and loading the scan again writes nothing.
#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in CDC_INDEXER_TEST_ENDPOINT"]
async fn dynamo_store_backfill_between_indexer_batches_converges() {
    let endpoint = std::env::var("CDC_INDEXER_TEST_ENDPOINT").expect("CDC_INDEXER_TEST_ENDPOINT");
    let client = client(&endpoint).await;
    let (store, tables) = setup(&client, "converge").await;

    // The log touches the first 20 of the 50 products that predate it.
    let legacy_ops = workload(101, 100, 50);
    let ops = workload(1, 300, 20);
    let mut table = apply_ops(&legacy_ops);
    let records = synthetic::stream_records(&mut table, &ops, 10_000_000_000_000_000_000);
    // The scan reads the table as it is after three quarters of the writes.
    let scanned: Vec<Product> = apply_ops(legacy_ops.iter().chain(&ops[..ops.len() * 3 / 4])).into_values().collect();
    let batches: Vec<_> = records.chunks(50).map(|c| synthetic::event(c.to_vec())).collect();
    let (first, rest) = batches.split_at(batches.len() / 2);
    for batch in first {
        process_event(&store, batch).await.unwrap();
    }
    let report = backfill_products(&store, &scanned).await.unwrap();
    assert_eq!(report.scanned, scanned.len() as u64);
    assert!(report.written > 0 && report.already_covered > 0, "{report:?}");
    for batch in rest {
        process_event(&store, batch).await.unwrap();
    }
    let diff = diff_index(&expected_index(table.values()), &scan_index(&client, &tables[0]).await);
    assert!(diff.is_empty(), "{diff:#?}");

    let again = backfill_products(&store, &scanned).await.unwrap();
    let n = scanned.len() as u64;
    assert_eq!(again, BackfillReport { scanned: n, written: 0, already_covered: n });

    teardown(&client, &tables).await;
}
