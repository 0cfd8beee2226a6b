//! What differs between Kinesis and DynamoDB Streams for the loop: listing shards, iterators,
//! reading records, and the event built from them. Everything else is shared.

use std::future::Future;

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType as DynamoDbIteratorType};
use aws_sdk_kinesis::types::{EncryptionType, ShardIteratorType};
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::event::{DynamoDbInput, EventSource, KinesisInput, dynamodb_event, kinesis_event, window_event};
use crate::position::IteratorStart;
use crate::record::{Record, SourceKind};
use crate::runner::checkpoints::error_text;
use crate::window::WindowInvocation;

/// A shard as listed, with its up-to-two parents.
#[derive(Debug, Clone)]
pub(crate) struct ListedShard {
    pub shard_id: String,
    pub parents: [Option<String>; 2],
}

/// One `GetRecords` answer.
pub(crate) struct Page<R> {
    pub records: Vec<R>,
    /// `None` once the shard is closed and read to its end.
    pub next_iterator: Option<String>,
    /// Kinesis's iterator age; DynamoDB Streams do not report one.
    pub millis_behind_latest: Option<i64>,
}

pub(crate) trait StreamSource: Clone + Send + Sync + 'static {
    type Record: Record + Send + Sync + 'static;
    const KIND: SourceKind;

    fn list_shards(&self) -> impl Future<Output = Result<Vec<ListedShard>, String>> + Send;
    fn shard_iterator(
        &self,
        shard_id: &str,
        start: &IteratorStart,
    ) -> impl Future<Output = Result<String, String>> + Send;
    fn get_records(&self, iterator: &str) -> impl Future<Output = Result<Page<Self::Record>, String>> + Send;
    fn event(
        source: &EventSource,
        records: &[Self::Record],
        window: Option<&WindowInvocation>,
    ) -> Result<Vec<u8>, String>;
}

/// The event JSON as bytes, with the tumbling-window keys when there is a window.
fn to_bytes(
    event: serde_json::Value,
    source: &EventSource,
    window: Option<&WindowInvocation>,
) -> Result<Vec<u8>, String> {
    let event = match window {
        Some(window) => window_event(event, source, window),
        None => event,
    };
    serde_json::to_vec(&event).map_err(|e| e.to_string())
}

#[derive(Debug, Clone)]
pub(crate) struct KinesisSource {
    pub client: aws_sdk_kinesis::Client,
    pub stream_name: String,
}

impl StreamSource for KinesisSource {
    type Record = KinesisInput;
    const KIND: SourceKind = SourceKind::Kinesis;

    async fn list_shards(&self) -> Result<Vec<ListedShard>, String> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let page = request
                .send()
                .await
                .map_err(|e| format!("listing shards of {}: {}", self.stream_name, error_text(&e)))?;
            shards.extend(page.shards().iter().map(|shard| ListedShard {
                shard_id: shard.shard_id().to_owned(),
                parents: [
                    shard.parent_shard_id().map(str::to_owned),
                    shard.adjacent_parent_shard_id().map(str::to_owned),
                ],
            }));
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                return Ok(shards);
            }
        }
    }

    async fn shard_iterator(&self, shard_id: &str, start: &IteratorStart) -> Result<String, String> {
        let request = self.client.get_shard_iterator().stream_name(&self.stream_name).shard_id(shard_id);
        let request = match start {
            IteratorStart::AfterSequenceNumber(sequence_number) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence_number),
            IteratorStart::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            IteratorStart::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            IteratorStart::AtTimestamp(millis) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from_millis(*millis)),
        };
        request
            .send()
            .await
            .map_err(|e| format!("GetShardIterator for {shard_id}: {}", error_text(&e)))?
            .shard_iterator
            .ok_or_else(|| format!("GetShardIterator for {shard_id} returned no iterator"))
    }

    async fn get_records(&self, iterator: &str) -> Result<Page<KinesisInput>, String> {
        let page = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(10_000)
            .send()
            .await
            .map_err(|e| format!("GetRecords: {}", error_text(&e)))?;
        Ok(Page {
            records: page.records().iter().map(kinesis_input).collect(),
            next_iterator: page.next_shard_iterator().map(str::to_owned),
            millis_behind_latest: page.millis_behind_latest(),
        })
    }

    fn event(
        source: &EventSource,
        records: &[KinesisInput],
        window: Option<&WindowInvocation>,
    ) -> Result<Vec<u8>, String> {
        let event = kinesis_event(source, records).map_err(|e| format!("building the event: {e}"))?;
        to_bytes(event, source, window)
    }
}

fn kinesis_input(record: &aws_sdk_kinesis::types::Record) -> KinesisInput {
    KinesisInput {
        sequence_number: record.sequence_number().to_owned(),
        partition_key: record.partition_key().to_owned(),
        data: record.data().as_ref().to_vec(),
        arrival_millis: record.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or_default(),
        kms_encrypted: record.encryption_type() == Some(&EncryptionType::Kms),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoDbStreamSource {
    pub client: aws_sdk_dynamodbstreams::Client,
    pub stream_arn: String,
}

impl StreamSource for DynamoDbStreamSource {
    type Record = DynamoDbInput;
    const KIND: SourceKind = SourceKind::DynamoDbStreams;

    async fn list_shards(&self) -> Result<Vec<ListedShard>, String> {
        let mut shards = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(after)
                .send()
                .await
                .map_err(|e| format!("describing {}: {}", self.stream_arn, error_text(&e)))?;
            let Some(description) = page.stream_description() else { return Ok(shards) };
            shards.extend(description.shards().iter().filter_map(|shard| {
                Some(ListedShard {
                    shard_id: shard.shard_id()?.to_owned(),
                    parents: [shard.parent_shard_id().map(str::to_owned), None],
                })
            }));
            after = description.last_evaluated_shard_id().map(str::to_owned);
            if after.is_none() {
                return Ok(shards);
            }
        }
    }

    async fn shard_iterator(&self, shard_id: &str, start: &IteratorStart) -> Result<String, String> {
        let request = self.client.get_shard_iterator().stream_arn(&self.stream_arn).shard_id(shard_id);
        let request = match start {
            IteratorStart::AfterSequenceNumber(sequence_number) => {
                request.shard_iterator_type(DynamoDbIteratorType::AfterSequenceNumber).sequence_number(sequence_number)
            }
            IteratorStart::TrimHorizon => request.shard_iterator_type(DynamoDbIteratorType::TrimHorizon),
            // No AT_TIMESTAMP on table streams: LATEST again (see `iterator_start`).
            IteratorStart::Latest | IteratorStart::AtTimestamp(_) => {
                request.shard_iterator_type(DynamoDbIteratorType::Latest)
            }
        };
        request
            .send()
            .await
            .map_err(|e| format!("GetShardIterator for {shard_id}: {}", error_text(&e)))?
            .shard_iterator
            .ok_or_else(|| format!("GetShardIterator for {shard_id} returned no iterator"))
    }

    async fn get_records(&self, iterator: &str) -> Result<Page<DynamoDbInput>, String> {
        let page = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(1_000)
            .send()
            .await
            .map_err(|e| format!("GetRecords: {}", error_text(&e)))?;
        Ok(Page {
            records: page.records().iter().filter_map(dynamodb_input).collect(),
            next_iterator: page.next_shard_iterator().map(str::to_owned),
            millis_behind_latest: None,
        })
    }

    fn event(
        source: &EventSource,
        records: &[DynamoDbInput],
        window: Option<&WindowInvocation>,
    ) -> Result<Vec<u8>, String> {
        let event = dynamodb_event(source, records).map_err(|e| format!("building the event: {e}"))?;
        to_bytes(event, source, window)
    }
}

/// A stream record without a change or sequence number cannot be delivered; the API always
/// sends both. Public for relays that forward table stream records as Lambda would see them.
pub fn dynamodb_input(record: &aws_sdk_dynamodbstreams::types::Record) -> Option<DynamoDbInput> {
    let change = record.dynamodb()?;
    let image = |image: Option<&std::collections::HashMap<String, AttributeValue>>| image.map(typed_map);
    let mut input = DynamoDbInput::new(
        record.event_id().unwrap_or_default(),
        record.event_name().map(|name| name.as_str()).unwrap_or_default(),
        change.sequence_number()?,
        change.size_bytes().unwrap_or_default().max(0) as u64,
        change.stream_view_type().map(|view| view.as_str()).unwrap_or("KEYS_ONLY"),
        change.approximate_creation_date_time().and_then(|t| t.to_millis().ok()).unwrap_or_default(),
        image(change.keys()).unwrap_or_default(),
        image(change.new_image()),
        image(change.old_image()),
    );
    input.ttl_delete =
        record.user_identity().and_then(|identity| identity.principal_id()) == Some("dynamodb.amazonaws.com");
    Some(input)
}

fn typed_map(item: &std::collections::HashMap<String, AttributeValue>) -> Map<String, Value> {
    item.iter().map(|(name, value)| (name.clone(), typed(value))).collect()
}

/// DynamoDB's typed JSON for one attribute value (`{"N": "101"}`).
fn typed(value: &AttributeValue) -> Value {
    let base64 = |blob: &aws_smithy_types::Blob| Value::String(base64::engine::general_purpose::STANDARD.encode(blob));
    let strings = |values: &[String]| Value::Array(values.iter().cloned().map(Value::String).collect());
    let (tag, inner) = match value {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", base64(b)),
        AttributeValue::Ss(values) => ("SS", strings(values)),
        AttributeValue::Ns(values) => ("NS", strings(values)),
        AttributeValue::Bs(values) => ("BS", Value::Array(values.iter().map(base64).collect())),
        AttributeValue::M(map) => ("M", Value::Object(typed_map(map))),
        AttributeValue::L(list) => ("L", Value::Array(list.iter().map(typed).collect())),
        AttributeValue::Null(null) => ("NULL", Value::Bool(*null)),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        // A type newer than this SDK: keep the record, mark the value.
        _ => ("NULL", Value::Bool(true)),
    };
    Value::Object(Map::from_iter([(tag.to_owned(), inner)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attribute_values_become_typed_json() {
        let nested = AttributeValue::M(
            [
                ("n".to_owned(), AttributeValue::N("4.5".to_owned())),
                ("b".to_owned(), AttributeValue::B(aws_smithy_types::Blob::new(b"hi".to_vec()))),
                ("l".to_owned(), AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)])),
                ("ss".to_owned(), AttributeValue::Ss(vec!["a".to_owned()])),
            ]
            .into(),
        );
        assert_eq!(
            typed(&nested),
            json!({ "M": { "n": { "N": "4.5" }, "b": { "B": "aGk=" }, "l": { "L": [{ "BOOL": true }, { "NULL": true }] }, "ss": { "SS": ["a"] } } })
        );
    }
}
