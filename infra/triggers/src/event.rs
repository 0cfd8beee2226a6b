//! The invocation event, as AWS sends it (spec 8.1, 8.2). Records are built with
//! `aws_lambda_events`' types, so a function reading them with those types reads what we send;
//! then the JSON is put in AWS's wire form where the library's serializer differs from it:
//!
//! - Kinesis `approximateArrivalTimestamp` is a JSON number on AWS (the library writes a string);
//! - `encryptionType` appears only on encrypted streams (the library always writes `"NONE"`);
//! - DynamoDB `ApproximateCreationDateTime` is epoch seconds as a number;
//! - DynamoDB records carry no `userIdentity` (except TTL deletes), `recordFormat`, `tableName`,
//!   and no image the stream view does not include (the library writes nulls and `{}`).

use aws_lambda_events::dynamodb::{EventRecord as DynamoDbEventRecord, StreamRecord, StreamViewType};
use aws_lambda_events::encodings::{Base64Data, SecondTimestamp};
use aws_lambda_events::kinesis::{KinesisEncryptionType, KinesisEventRecord, KinesisRecord};
use chrono::DateTime;
use serde_json::{Map, Number, Value, json};
use thiserror::Error;

use crate::record::{Millis, Record};
use crate::timefmt;
use crate::window::WindowInvocation;

/// Where the records come from and who reads them: what every record of an event repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub shard_id: String,
    pub stream_arn: String,
    pub region: String,
    /// The function's execution role: Kinesis records name it in `invokeIdentityArn`.
    pub execution_role_arn: String,
}

/// A Kinesis record as `GetRecords` returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisInput {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrival_millis: Millis,
    /// `EncryptionType: KMS` on the record.
    pub kms_encrypted: bool,
}

impl Record for KinesisInput {
    fn sequence_number(&self) -> &str {
        &self.sequence_number
    }
    fn arrival_millis(&self) -> Millis {
        self.arrival_millis
    }
    fn ordering_key(&self) -> &str {
        &self.partition_key
    }
    fn size_bytes(&self) -> u64 {
        (self.data.len() + self.partition_key.len()) as u64
    }
    /// The record's metadata with `data` decoded as JSON; data that is not JSON leaves `data`
    /// out, so only a pattern on metadata can match it (spec F3).
    fn filter_view(&self) -> Value {
        let mut view = json!({
            "kinesisSchemaVersion": "1.0",
            "partitionKey": self.partition_key,
            "sequenceNumber": self.sequence_number,
            "approximateArrivalTimestamp": epoch_seconds(self.arrival_millis),
            "eventSource": "aws:kinesis",
            "eventName": "aws:kinesis:record",
        });
        if let Ok(data) = serde_json::from_slice::<Value>(&self.data) {
            view["data"] = data;
        }
        view
    }
}

/// A DynamoDB Streams record as `GetRecords` returned it, images in DynamoDB's typed JSON
/// (`{"Id": {"N": "101"}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoDbInput {
    pub event_id: String,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub event_name: String,
    pub sequence_number: String,
    pub size_bytes: u64,
    /// `KEYS_ONLY`, `NEW_IMAGE`, `OLD_IMAGE` or `NEW_AND_OLD_IMAGES`.
    pub stream_view_type: String,
    pub creation_millis: Millis,
    pub keys: Map<String, Value>,
    pub new_image: Option<Map<String, Value>>,
    pub old_image: Option<Map<String, Value>>,
    /// A delete made by TTL: the record then names DynamoDB as its `userIdentity`.
    pub ttl_delete: bool,
    /// The item key, canonical (sorted), for per-item order under `ParallelizationFactor`.
    item_key: String,
}

impl DynamoDbInput {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        event_id: &str,
        event_name: &str,
        sequence_number: &str,
        size_bytes: u64,
        stream_view_type: &str,
        creation_millis: Millis,
        keys: Map<String, Value>,
        new_image: Option<Map<String, Value>>,
        old_image: Option<Map<String, Value>>,
    ) -> Self {
        let item_key = Value::Object(keys.clone()).to_string();
        Self {
            event_id: event_id.to_owned(),
            event_name: event_name.to_owned(),
            sequence_number: sequence_number.to_owned(),
            size_bytes,
            stream_view_type: stream_view_type.to_owned(),
            creation_millis,
            keys,
            new_image,
            old_image,
            ttl_delete: false,
            item_key,
        }
    }
}

impl Record for DynamoDbInput {
    fn sequence_number(&self) -> &str {
        &self.sequence_number
    }
    fn arrival_millis(&self) -> Millis {
        self.creation_millis
    }
    fn ordering_key(&self) -> &str {
        &self.item_key
    }
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    /// The record as sent, typed JSON images included: patterns use `{"S": [...]}` (spec F3).
    fn filter_view(&self) -> Value {
        let mut change = json!({
            "ApproximateCreationDateTime": epoch_seconds(self.creation_millis),
            "Keys": self.keys,
            "SequenceNumber": self.sequence_number,
            "SizeBytes": self.size_bytes,
            "StreamViewType": self.stream_view_type,
        });
        if let Some(image) = &self.new_image {
            change["NewImage"] = Value::Object(image.clone());
        }
        if let Some(image) = &self.old_image {
            change["OldImage"] = Value::Object(image.clone());
        }
        json!({
            "eventID": self.event_id,
            "eventName": self.event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "dynamodb": change,
        })
    }
}

/// A record that cannot be put into an event.
#[derive(Debug, Error)]
pub enum EventError {
    #[error("record {sequence_number}: arrival time {millis} ms is not a valid instant")]
    Timestamp { sequence_number: String, millis: Millis },
    #[error("record {sequence_number}: {what} is not DynamoDB typed JSON: {source}")]
    Image { sequence_number: String, what: &'static str, source: serde_json::Error },
    #[error("record {sequence_number}: unknown StreamViewType {view:?}")]
    StreamViewType { sequence_number: String, view: String },
    #[error("could not serialize the event: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// `{"Records": [...]}` for a Kinesis batch.
pub fn kinesis_event(source: &EventSource, records: &[KinesisInput]) -> Result<Value, EventError> {
    let records = records.iter().map(|record| kinesis_record(source, record)).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "Records": records }))
}

fn kinesis_record(source: &EventSource, input: &KinesisInput) -> Result<Value, EventError> {
    let mut kinesis = KinesisRecord::default();
    kinesis.approximate_arrival_timestamp = SecondTimestamp(instant(&input.sequence_number, input.arrival_millis)?);
    let mut data = Base64Data::default();
    data.0.clone_from(&input.data);
    kinesis.data = data;
    kinesis.encryption_type =
        if input.kms_encrypted { KinesisEncryptionType::Kms } else { KinesisEncryptionType::None };
    kinesis.partition_key.clone_from(&input.partition_key);
    kinesis.sequence_number.clone_from(&input.sequence_number);
    kinesis.kinesis_schema_version = Some("1.0".to_owned());

    let mut record = KinesisEventRecord::default();
    record.aws_region = Some(source.region.clone());
    record.event_id = Some(format!("{}:{}", source.shard_id, input.sequence_number));
    record.event_name = Some("aws:kinesis:record".to_owned());
    record.event_source = Some("aws:kinesis".to_owned());
    record.event_source_arn = Some(source.stream_arn.clone());
    record.event_version = Some("1.0".to_owned());
    record.invoke_identity_arn = Some(source.execution_role_arn.clone());
    record.kinesis = kinesis;

    let mut value = serde_json::to_value(&record)?;
    if let Some(kinesis) = value.get_mut("kinesis").and_then(Value::as_object_mut) {
        kinesis.insert("approximateArrivalTimestamp".to_owned(), epoch_seconds(input.arrival_millis));
        if !input.kms_encrypted {
            kinesis.remove("encryptionType");
        }
    }
    Ok(value)
}

/// `{"Records": [...]}` for a DynamoDB Streams batch.
pub fn dynamodb_event(source: &EventSource, records: &[DynamoDbInput]) -> Result<Value, EventError> {
    let records = records.iter().map(|record| dynamodb_record(source, record)).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "Records": records }))
}

/// One record of [`dynamodb_event`]: what a function reads as `Records[i]`.
pub fn dynamodb_record(source: &EventSource, input: &DynamoDbInput) -> Result<Value, EventError> {
    let sequence_number = &input.sequence_number;
    let item =
        |what: &'static str, image: &Map<String, Value>| {
            serde_json::from_value::<serde_dynamo::Item>(Value::Object(image.clone()))
                .map_err(|source| EventError::Image { sequence_number: sequence_number.clone(), what, source })
        };
    let mut change = StreamRecord::default();
    change.approximate_creation_date_time = instant(sequence_number, input.creation_millis)?;
    change.keys = item("Keys", &input.keys)?;
    if let Some(image) = &input.new_image {
        change.new_image = item("NewImage", image)?;
    }
    if let Some(image) = &input.old_image {
        change.old_image = item("OldImage", image)?;
    }
    change.sequence_number = Some(sequence_number.clone());
    change.size_bytes = input.size_bytes as i64;
    change.stream_view_type = Some(stream_view_type(sequence_number, &input.stream_view_type)?);

    let mut record = DynamoDbEventRecord::default();
    record.aws_region.clone_from(&source.region);
    record.change = change;
    record.event_id.clone_from(&input.event_id);
    record.event_name.clone_from(&input.event_name);
    record.event_source = Some("aws:dynamodb".to_owned());
    record.event_version = Some("1.1".to_owned());
    record.event_source_arn = Some(source.stream_arn.clone());

    let mut value = serde_json::to_value(&record)?;
    if let Some(object) = value.as_object_mut() {
        object.remove("recordFormat");
        object.remove("tableName");
        object.remove("userIdentity");
        if input.ttl_delete {
            object.insert(
                "userIdentity".to_owned(),
                json!({ "type": "Service", "principalId": "dynamodb.amazonaws.com" }),
            );
        }
    }
    if let Some(change) = value.get_mut("dynamodb").and_then(Value::as_object_mut) {
        change.insert("ApproximateCreationDateTime".to_owned(), epoch_seconds(input.creation_millis));
        // An image always holds at least the key, so an empty one is one the view leaves out.
        for image in ["NewImage", "OldImage"] {
            if change.get(image).and_then(Value::as_object).is_some_and(Map::is_empty) {
                change.remove(image);
            }
        }
    }
    Ok(value)
}

/// Adds the tumbling-window keys to an event (spec W3): `window` (ISO-8601, whole seconds),
/// `state`, `shardId`, `eventSourceARN`, `isFinalInvokeForWindow`, `isWindowTerminatedEarly`.
pub fn window_event(mut event: Value, source: &EventSource, window: &WindowInvocation) -> Value {
    if let Some(object) = event.as_object_mut() {
        object.insert(
            "window".to_owned(),
            json!({ "start": timefmt::iso_seconds(window.start), "end": timefmt::iso_seconds(window.end) }),
        );
        object.insert("state".to_owned(), Value::Object(window.state.clone()));
        object.insert("shardId".to_owned(), Value::String(source.shard_id.clone()));
        object.insert("eventSourceARN".to_owned(), Value::String(source.stream_arn.clone()));
        object.insert("isFinalInvokeForWindow".to_owned(), Value::Bool(window.is_final));
        object.insert("isWindowTerminatedEarly".to_owned(), Value::Bool(window.terminated_early));
    }
    event
}

fn stream_view_type(sequence_number: &str, view: &str) -> Result<StreamViewType, EventError> {
    serde_json::from_value(Value::String(view.to_owned()))
        .map_err(|_| EventError::StreamViewType { sequence_number: sequence_number.to_owned(), view: view.to_owned() })
}

fn instant(sequence_number: &str, millis: Millis) -> Result<DateTime<chrono::Utc>, EventError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| EventError::Timestamp { sequence_number: sequence_number.to_owned(), millis })
}

/// Epoch seconds with the millisecond fraction, as a JSON number (`1545084650.987`).
fn epoch_seconds(millis: Millis) -> Value {
    Number::from_f64(millis as f64 / 1000.0).map_or(Value::Null, Value::Number)
}
