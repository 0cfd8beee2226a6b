//! `KinesisLog` and the relay against a real Kinesis API (an emulator such as MiniStack or
//! LocalStack). Ignored by default; run with
//! `LEDGER_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p ledger-relay --test kinesis_log -- --ignored`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use labs_core::ledger::decode_event;
use ledger_relay::{Event, KinesisLog, process_event};

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

fn fixture(name: &str) -> Event {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every record of every shard, as (partition key, data), each shard's in order.
async fn read_all(client: &Client, stream: &str) -> Vec<(String, String)> {
    let shards = client.list_shards().stream_name(stream).send().await.unwrap().shards.unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(current) = iterator {
            let page = client.get_records().shard_iterator(current).send().await.unwrap();
            let empty = page.records().is_empty();
            for record in page.records() {
                let data = String::from_utf8(record.data().as_ref().to_vec()).unwrap();
                records.push((record.partition_key().to_owned(), data));
            }
            iterator = if empty { None } else { page.next_shard_iterator };
        }
    }
    records
}

#[tokio::test]
#[ignore = "needs a Kinesis endpoint in LEDGER_TEST_ENDPOINT"]
async fn relays_into_kinesis_in_version_order_per_account() {
    let endpoint = std::env::var("LEDGER_TEST_ENDPOINT").expect("LEDGER_TEST_ENDPOINT");
    let client = client(&endpoint).await;
    let stream = format!("ledger-relay-test-{}", std::process::id());
    client.create_stream().stream_name(&stream).shard_count(2).send().await.unwrap();
    for _ in 0..50 {
        let summary = client.describe_stream_summary().stream_name(&stream).send().await.unwrap();
        if summary.stream_description_summary().is_some_and(|s| *s.stream_status() == StreamStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let log = KinesisLog::new(client.clone(), &stream);
    let report = process_event(&log, &fixture("inserts.json")).await.unwrap();
    assert_eq!(report.relayed, 4);
    // A redelivered batch publishes again: delivery into the log is at least once.
    process_event(&log, &fixture("inserts.json")).await.unwrap();

    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, data) in read_all(&client, &stream).await {
        let event = decode_event(&data).unwrap();
        assert_eq!(event.account_id, key);
        versions.entry(key).or_default().push(event.version);
    }
    assert_eq!(versions["acct-a"], vec![1, 2, 3, 1, 2, 3]);
    assert_eq!(versions["acct-b"], vec![1, 1]);
    client.delete_stream().stream_name(&stream).send().await.unwrap();
}
