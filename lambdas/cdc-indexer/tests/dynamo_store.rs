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
use cdc_indexer::store::CheckpointCommit;
use cdc_indexer::synthetic;
use cdc_indexer::{BatchStats, Checkpoint, DynamoStore, IndexStore, STATS_ID, process_event};
use labs_core::search_index::{IndexEntry, apply_ops, diff_index, expected_index, workload};

async fn client(endpoint: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
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
    let suffix = std::process::id();
    let (index_table, checkpoint_table) = (format!("cdc-test-index-{suffix}"), format!("cdc-test-cp-{suffix}"));
    create_table(&client, &index_table, &[("term", KeyType::Hash), ("product_id", KeyType::Range)]).await;
    create_table(&client, &checkpoint_table, &[("product_id", KeyType::Hash)]).await;
    let store = DynamoStore::new(client.clone(), &index_table, &checkpoint_table);

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

    let diff = diff_index(&expected_index(apply_ops(&ops).values()), &scan_index(&client, &index_table).await);
    assert!(diff.is_empty(), "{diff:#?}");

    let stats = client
        .get_item()
        .table_name(&checkpoint_table)
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
    assert_eq!(store.commit_checkpoints(&[commit(None)]).await.unwrap(), vec![false]);
    assert_eq!(store.commit_checkpoints(&[commit(Some("1".into()))]).await.unwrap(), vec![false]);
    assert_eq!(store.commit_checkpoints(&[commit(Some(stored))]).await.unwrap(), vec![true]);
    let new_id = Checkpoint { product_id: "p-new".into(), ..cp.clone() };
    let fresh = CheckpointCommit { checkpoint: new_id, expected_seq: None };
    assert_eq!(store.commit_checkpoints(std::slice::from_ref(&fresh)).await.unwrap(), vec![true]);
    assert_eq!(store.commit_checkpoints(&[fresh]).await.unwrap(), vec![false]);

    for table in [&index_table, &checkpoint_table] {
        client.delete_table().table_name(table).send().await.unwrap();
    }
}
