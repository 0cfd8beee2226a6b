//! `DynamoStore` against a real DynamoDB API (an emulator such as MiniStack or LocalStack).
//! Ignored by default; run with
//! `EVENT_TIME_WINDOWS_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p event-time-windows --test dynamo_store -- --ignored`.

mod common;

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use common::{WALL_NOW, ended_run};
use event_time_windows::{
    Commit, DynamoStore, LateRow, MemoryStore, Settings, ShardRow, StoreError, Tables, WindowRow, WindowStore,
    process_batch,
};
use labs_core::time::watermark::NO_WATERMARK;

const ENDPOINT_ENV: &str = "EVENT_TIME_WINDOWS_TEST_ENDPOINT";

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

async fn create_table(client: &Client, name: &str, keys: &[(&str, ScalarAttributeType, KeyType)]) {
    let mut request = client.create_table().table_name(name).billing_mode(BillingMode::PayPerRequest);
    for (attribute, attribute_type, key_type) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(attribute_type.clone())
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name(*attribute).key_type(key_type.clone()).build().unwrap(),
            );
    }
    request.send().await.unwrap();
}

/// Fresh tables named after `tag` and the process, keyed as the stack declares them.
async fn setup(client: &Client, tag: &str) -> DynamoStore {
    let suffix = std::process::id();
    let tables = Tables {
        watermarks: format!("ex6-test-{tag}-watermarks-{suffix}"),
        windows: format!("ex6-test-{tag}-windows-{suffix}"),
        late: format!("ex6-test-{tag}-late-{suffix}"),
    };
    use {KeyType::*, ScalarAttributeType::*};
    create_table(client, &tables.watermarks, &[("shard_id", S, Hash)]).await;
    create_table(client, &tables.windows, &[("window_key", S, Hash), ("start", N, Range)]).await;
    create_table(client, &tables.late, &[("reading_id", S, Hash), ("window", S, Range)]).await;
    DynamoStore::new(client.clone(), tables)
}

async fn teardown(store: &DynamoStore) {
    let tables = store.tables();
    for table in [&tables.watermarks, &tables.windows, &tables.late] {
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

fn endpoint() -> String {
    std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| panic!("{ENDPOINT_ENV} is not set"))
}

/// A whole two-shard run, with redeliveries, through the real tables ends exactly where the
/// in-memory store does: the same windows, late rows and shard rows.
#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in EVENT_TIME_WINDOWS_TEST_ENDPOINT"]
async fn a_run_through_dynamodb_ends_like_the_in_memory_one() {
    let client = client(&endpoint()).await;
    let store = setup(&client, "run").await;
    // Small commits, so batches take several and the shard row's condition is exercised.
    let settings = Settings { commit_at_items: 15, ..Settings::default() };
    let (batches, readings) = ended_run("dynamo");
    let memory = MemoryStore::default();
    for (i, batch) in batches.iter().enumerate() {
        process_batch(&memory, &settings, batch, WALL_NOW).await.unwrap();
        let summary = process_batch(&store, &settings, batch, WALL_NOW).await.unwrap();
        assert!(summary.commits >= 1);
        if i % 4 == 0 {
            let again = process_batch(&store, &settings, batch, WALL_NOW).await.unwrap();
            assert_eq!((again.redelivered, again.commits), (batch.records.len(), 0));
        }
    }

    let mut windows: Vec<WindowRow> = scan(&client, &store.tables().windows).await;
    windows.sort_by(|a, b| (&a.window_key, a.start).cmp(&(&b.window_key, b.start)));
    assert_eq!(windows, memory.windows());
    assert!(windows.iter().all(|w| w.is_final), "every window closed");
    let mut late: Vec<LateRow> = scan(&client, &store.tables().late).await;
    late.sort_by(|a, b| (&a.reading_id, &a.window).cmp(&(&b.reading_id, &b.window)));
    assert_eq!(late, memory.late());
    assert!(!late.is_empty());
    let shards: BTreeMap<String, ShardRow> =
        store.load_shards().await.unwrap().into_iter().map(|r| (r.shard_id.clone(), r)).collect();
    let strip = |rows: BTreeMap<String, ShardRow>| -> Vec<ShardRow> {
        rows.into_values().map(|r| ShardRow { version: 0, ..r }).collect()
    };
    assert_eq!(strip(shards.clone()), strip(memory.shards()));
    assert!(shards.values().all(|r| r.open_windows.is_empty()), "no state left behind");
    assert_eq!(shards.values().map(|r| r.readings).sum::<u64>(), readings.len() as u64);

    teardown(&store).await;
}

/// The store's own contract: a commit larger than one transaction lands whole; a commit whose
/// shard row changed underneath it is a conflict and moves nothing of the row.
#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in EVENT_TIME_WINDOWS_TEST_ENDPOINT"]
async fn large_commits_land_whole_and_a_stale_version_is_a_conflict() {
    let client = client(&endpoint()).await;
    let store = setup(&client, "contract").await;
    let row = |version: u64, checkpoint: &str| ShardRow {
        shard_id: "shardId-000000000000".into(),
        watermark: NO_WATERMARK,
        overall_watermark: NO_WATERMARK,
        checkpoint: checkpoint.into(),
        version,
        ..ShardRow::default()
    };
    let window = |i: i64| WindowRow {
        window_key: format!("tumbling-1m#device-{:02}", i % 7),
        start: i * 60_000,
        end: (i + 1) * 60_000,
        kind: "tumbling-1m".into(),
        key: format!("device-{:02}", i % 7),
        count: 1,
        sum: i,
        revision: 0,
        is_final: false,
        emitted_at: None,
        watermark_at_emit: None,
        shard_id: "shardId-000000000000".into(),
        sequence_number: "1".into(),
    };
    let mut big = Commit { shard: row(1, "100"), expected_version: 0, ..Commit::default() };
    for i in 0..230 {
        big.put_window(window(i));
    }
    store.commit(&big).await.unwrap();
    let windows: Vec<WindowRow> = scan(&client, &store.tables().windows).await;
    assert_eq!(windows.len(), 230);
    assert_eq!(store.load_shards().await.unwrap(), [row(1, "100")]);

    // A second writer that read version 0 loses; the row keeps the first writer's checkpoint.
    let stale = Commit { shard: row(1, "999"), expected_version: 0, ..Commit::default() };
    let err = store.commit(&stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected: 0, .. }), "{err}");
    assert_eq!(store.load_shards().await.unwrap(), [row(1, "100")]);

    // Deleting a swallowed session and putting its successor in one commit.
    let mut next = Commit { shard: row(2, "101"), expected_version: 1, ..Commit::default() };
    next.windows.insert(
        ("tumbling-1m#device-00".into(), 0),
        event_time_windows::WindowChange::Delete { window_key: "tumbling-1m#device-00".into(), start: 0 },
    );
    next.put_window(WindowRow { count: 5, ..window(1) });
    store.commit(&next).await.unwrap();
    let windows: Vec<WindowRow> = scan(&client, &store.tables().windows).await;
    assert_eq!(windows.len(), 229);
    assert_eq!(windows.iter().find(|w| w.start == 60_000).unwrap().count, 5);

    teardown(&store).await;
}
