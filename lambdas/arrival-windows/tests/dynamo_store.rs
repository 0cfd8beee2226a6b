//! `DynamoStore` against a real DynamoDB API (an emulator such as MiniStack or LocalStack).
//! Ignored by default; run with
//! `ARRIVAL_WINDOWS_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p arrival-windows --test dynamo_store -- --ignored`.

use arrival_windows::{ArrivalRow, ArrivalStore, DynamoStore, WindowPart};
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

const ENDPOINT_ENV: &str = "ARRIVAL_WINDOWS_TEST_ENDPOINT";

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

/// A windows table keyed as the stack declares it.
async fn create_windows_table(client: &Client, name: &str) {
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().unwrap()
    };
    let key =
        |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("window_key", ScalarAttributeType::S))
        .attribute_definitions(attribute("start", ScalarAttributeType::N))
        .key_schema(key("window_key", KeyType::Hash))
        .key_schema(key("start", KeyType::Range))
        .send()
        .await
        .unwrap();
}

async fn rows(client: &Client, table: &str) -> Vec<ArrivalRow> {
    let page = client.scan().table_name(table).send().await.unwrap();
    page.items().iter().map(|item| serde_dynamo::from_item(item.clone()).unwrap()).collect()
}

fn part(part: &str, count: u64, sum: i64, is_final: bool) -> WindowPart {
    WindowPart {
        window_key: "arrival-1m#shardId-000000000001".into(),
        start: 1_767_225_720_000,
        end: 1_767_225_780_000,
        kind: "arrival-1m".into(),
        shard_id: "shardId-000000000001".into(),
        part: part.into(),
        count,
        sum,
        is_final,
        emitted_at: 1_767_300_000_000,
    }
}

/// Parts add up once each, however often they are written, and the last one makes the row final.
#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in ARRIVAL_WINDOWS_TEST_ENDPOINT"]
async fn parts_are_added_once_and_the_last_makes_the_row_final() {
    let endpoint = std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| panic!("{ENDPOINT_ENV} is not set"));
    let client = client(&endpoint).await;
    let table = format!("ex6-test-arrival-windows-{}", std::process::id());
    create_windows_table(&client, &table).await;
    let store = DynamoStore::new(client.clone(), table.clone());

    store.add_part(&part("4959001", 5, 9_500, false)).await.unwrap();
    store.add_part(&part("4959001", 5, 9_500, false)).await.unwrap(); // a retry
    let [row] = rows(&client, &table).await.try_into().unwrap();
    assert_eq!((row.count, row.sum, row.parts, row.is_final, row.revision), (5, 9_500, 1, false, 1));

    store.add_part(&part("4959077", 2, -40, true)).await.unwrap();
    store.add_part(&part("4959077", 2, -40, true)).await.unwrap();
    let [row] = rows(&client, &table).await.try_into().unwrap();
    let expected = ArrivalRow {
        window_key: "arrival-1m#shardId-000000000001".into(),
        start: 1_767_225_720_000,
        end: 1_767_225_780_000,
        kind: "arrival-1m".into(),
        key: "shardId-000000000001".into(),
        count: 7,
        sum: 9_460,
        revision: 1,
        is_final: true,
        emitted_at: Some(1_767_300_000_000),
        shard_id: "shardId-000000000001".into(),
        parts: 2,
    };
    assert_eq!(row, expected);

    client.delete_table().table_name(&table).send().await.unwrap();
}
