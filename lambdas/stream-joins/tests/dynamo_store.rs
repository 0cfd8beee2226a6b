//! `DynamoStore` against a real DynamoDB API (an emulator such as MiniStack or LocalStack): the
//! version conditions the joins rely on to never lose a concurrent step. Ignored by default; run
//! with `STREAM_JOINS_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p stream-joins --test dynamo_store -- --ignored`.

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use labs_core::join::window::SessionState;
use serde_json::json;
use stream_joins::StoreError;
use stream_joins::dynamo::DynamoStore;
use stream_joins::enrich::replica_schema;
use stream_joins::state::{self, Loaded};
use stream_joins::store::{JoinStore, Row, Write};

const ENDPOINT_ENV: &str = "STREAM_JOINS_TEST_ENDPOINT";

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
        let definition =
            AttributeDefinition::builder().attribute_name(*attribute).attribute_type(attribute_type.clone()).build();
        let key = KeySchemaElement::builder().attribute_name(*attribute).key_type(key_type.clone()).build();
        request = request.attribute_definitions(definition.unwrap()).key_schema(key.unwrap());
    }
    request.send().await.unwrap();
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in STREAM_JOINS_TEST_ENDPOINT"]
async fn a_state_row_is_written_only_at_the_version_it_was_read() {
    let Ok(endpoint) = std::env::var(ENDPOINT_ENV) else { return };
    let client = client(&endpoint).await;
    let table = format!("ex8-test-state-{}", std::process::id());
    create_table(&client, &table, &[("key", ScalarAttributeType::S, KeyType::Hash)]).await;
    let store = DynamoStore::new(client);

    let absent: Loaded<SessionState> = state::load(&store, &table, "session#s1").await.unwrap();
    assert_eq!((absent.value.is_none(), absent.version), (true, 0));
    let session = SessionState::new("s1");
    let first = state::put(&table, &absent, &session, Some(11_001)).unwrap();
    store.transact(std::slice::from_ref(&first)).await.unwrap();
    // A second invocation that read the row when it was absent loses: the row exists now.
    assert!(matches!(store.transact(&[first]).await, Err(StoreError::Conflict { .. })));

    let read: Loaded<SessionState> = state::load(&store, &table, "session#s1").await.unwrap();
    assert_eq!((read.value.as_ref(), read.version), (Some(&session), 1));
    store.transact(&[state::put(&table, &read, &session, None).unwrap()]).await.unwrap();
    // Written at version 1 again, after it moved to 2: refused, and nothing else in the
    // transaction is written either.
    let mut output = Row::new();
    output.insert("key".into(), json!("output#x"));
    let stale = [
        state::put(&table, &read, &session, None).unwrap(),
        Write::put(&stream_joins::state::state_schema(&table), output),
    ];
    assert!(matches!(store.transact(&stale).await, Err(StoreError::Conflict { .. })));
    let rows = store.scan(&table).await.unwrap();
    assert_eq!(rows.len(), 1, "all or nothing: {rows:?}");
    assert!(matches!(store.transact(&[state::delete(&table, &read)]).await, Err(StoreError::Conflict { .. })));
    let now: Loaded<SessionState> = state::load(&store, &table, "session#s1").await.unwrap();
    store.transact(&[state::delete(&table, &now)]).await.unwrap();
    assert!(store.scan(&table).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint in STREAM_JOINS_TEST_ENDPOINT"]
async fn a_query_returns_a_customers_versions_by_valid_from() {
    let Ok(endpoint) = std::env::var(ENDPOINT_ENV) else { return };
    let client = client(&endpoint).await;
    let table = format!("ex8-test-replica-{}", std::process::id());
    use {KeyType::*, ScalarAttributeType::*};
    create_table(&client, &table, &[("customer_id", S, Hash), ("valid_from", N, Range)]).await;
    let store = DynamoStore::new(client);
    let schema = replica_schema(&table);
    for (customer, valid_from) in [("c1", 900), ("c1", 100), ("c2", 50), ("c1", 1000)] {
        let row = json!({ "customer_id": customer, "valid_from": valid_from, "address": format!("{valid_from} St") });
        let serde_json::Value::Object(row) = row else { unreachable!() };
        store.transact(&[Write::put(&schema, row)]).await.unwrap();
    }
    let rows = store.query(&schema, "c1").await.unwrap();
    let times: Vec<i64> = rows.iter().map(|r| r["valid_from"].as_i64().unwrap()).collect();
    assert_eq!(times, [100, 900, 1000], "numbers come back as numbers, in sort key order");
}
