//! A Kinesis endpoint that acknowledges every record and keeps none, inside `labs bench`: where it
//! measures `labs produce`'s memory over ten million records, which no emulator holds (MiniStack
//! scans its whole stream on every PutRecords, so a call costs more the longer the stream). It
//! answers the two calls `labs produce` makes, ListShards and PutRecords, in the JSON 1.1 protocol
//! the SDK speaks, and counts what it acknowledged, so the figure is checked against the count.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::task::JoinHandle;

/// The stream's two shards, which split the hash key space (2^128) in halves, like example 1's.
const LIST_SHARDS: &str = r#"{"Shards":[
{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"170141183460469231731687303715884105727"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}},
{"ShardId":"shardId-000000000001","HashKeyRange":{"StartingHashKey":"170141183460469231731687303715884105728","EndingHashKey":"340282366920938463463374607431768211455"},"SequenceNumberRange":{"StartingSequenceNumber":"1"}}]}"#;

pub struct DiscardingKinesis {
    address: SocketAddr,
    acknowledged: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl DiscardingKinesis {
    /// Listens on 127.0.0.1, on a port the system picks.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen for the discarding Kinesis endpoint")?;
        let address = listener.local_addr()?;
        let acknowledged = Arc::new(AtomicU64::new(0));
        let app = Router::new().route("/", post(answer)).with_state(acknowledged.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { address, acknowledged, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Records acknowledged since it started.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }
}

impl Drop for DiscardingKinesis {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Deserialize)]
struct PutRecords {
    #[serde(rename = "Records")]
    records: Vec<IgnoredAny>,
}

async fn answer(State(acknowledged): State<Arc<AtomicU64>>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let json = match operation {
        "Kinesis_20131202.ListShards" => LIST_SHARDS.to_owned(),
        "Kinesis_20131202.PutRecords" => match serde_json::from_slice::<PutRecords>(&body) {
            Ok(request) => {
                let first = acknowledged.fetch_add(request.records.len() as u64, Ordering::Relaxed);
                put_records_answer(first, request.records.len())
            }
            Err(err) => return refuse("SerializationException", &err.to_string()),
        },
        other => {
            return refuse(
                "UnknownOperationException",
                &format!("this endpoint answers ListShards and PutRecords, not {other:?}"),
            );
        }
    };
    ([(header::CONTENT_TYPE, "application/x-amz-json-1.1")], json).into_response()
}

/// Every entry accepted, numbered on from `first`, all on the first shard (the producer checks
/// only that each entry has a shard and a sequence number).
fn put_records_answer(first: u64, entries: usize) -> String {
    let mut json = String::with_capacity(32 + entries * 64);
    json.push_str(r#"{"FailedRecordCount":0,"Records":["#);
    for i in 0..entries {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(json, r#"{{"SequenceNumber":"{}","ShardId":"shardId-000000000000"}}"#, first + i as u64 + 1);
    }
    json.push_str("]}");
    json
}

fn refuse(kind: &str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/x-amz-json-1.1")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_records_answer_has_one_numbered_entry_per_record() {
        let answer: serde_json::Value = serde_json::from_str(&put_records_answer(10, 3)).unwrap();
        assert_eq!(answer["FailedRecordCount"], 0);
        let numbers: Vec<&str> =
            answer["Records"].as_array().unwrap().iter().map(|r| r["SequenceNumber"].as_str().unwrap()).collect();
        assert_eq!(numbers, ["11", "12", "13"]);
    }

    #[test]
    fn the_shards_split_the_hash_key_space_without_a_gap() {
        let shards: serde_json::Value = serde_json::from_str(LIST_SHARDS).unwrap();
        let ranges: Vec<(u128, u128)> = shards["Shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let range = &s["HashKeyRange"];
                let key = |k: &str| range[k].as_str().unwrap().parse::<u128>().unwrap();
                (key("StartingHashKey"), key("EndingHashKey"))
            })
            .collect();
        assert_eq!(ranges.first().unwrap().0, 0);
        assert_eq!(ranges.last().unwrap().1, u128::MAX);
        assert!(ranges.windows(2).all(|pair| pair[0].1 + 1 == pair[1].0));
    }

    /// `labs produce`'s own driver against the endpoint: every record acknowledged and counted.
    #[tokio::test]
    async fn the_producer_sends_every_record_and_the_endpoint_counts_them() {
        let endpoint = DiscardingKinesis::start().await.unwrap();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new("test", "test", None, None, "test"))
            .load()
            .await;
        let client = aws_sdk_kinesis::Client::new(&config);
        let records = (0..1234).map(|i| crate::driver::kinesis::Outgoing {
            partition_key: format!("key-{i}"),
            data: format!("record {i}").into_bytes(),
        });
        let bar = indicatif::ProgressBar::hidden();
        let stats = crate::driver::kinesis::produce(&client, "anything", records, None, &bar).await.unwrap();
        assert_eq!((stats.records, endpoint.acknowledged()), (1234, 1234));
        assert!(stats.calls >= 3, "500 records a call at most: {} calls", stats.calls);
    }
}
