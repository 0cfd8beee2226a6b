//! The trigger runner's test function. For every Kinesis or DynamoDB Streams record it is sent
//! it first notes the delivery (sequence number, how many times), then:
//!
//! - data (Kinesis) or a new image (DynamoDB) containing `poison` fails the whole invocation (a
//!   function error);
//! - one containing `partial` is reported in `batchItemFailures`;
//! - anything else succeeds.
//!
//! Environment of the deployed function: `DELIVERIES_TABLE` (hash key `sequence_number`, S); each
//! item counts `deliveries` and keeps `first_at` (epoch ns of the first delivery).
//!
//! With a tumbling window (the event has `window`), it also adds the batch's sequence numbers to
//! the window's `state` (`seen`, comma-separated) and returns it beside `batchItemFailures`; on
//! the window's final (or early-termination) invocation it stores the state it was given as the
//! item `window#<shardId>#<start>` (`seen`, `is_final`, `records` in that invocation).

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse};
use aws_lambda_events::time_window::TimeWindowProperties;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::Error;
use serde_json::Value;

/// Environment variable naming the deliveries table.
pub const DELIVERIES_TABLE_ENV: &str = "DELIVERIES_TABLE";
/// A record whose data contains this fails the invocation.
pub const POISON_MARKER: &str = "poison";
/// A record whose data contains this is reported as a batch item failure.
pub const PARTIAL_MARKER: &str = "partial";

/// Where deliveries are noted.
pub trait Deliveries {
    fn note(&self, sequence_number: &str, data: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Where a window's final state is stored.
pub trait Windows {
    fn store(
        &self,
        key: &str,
        seen: &str,
        is_final: bool,
        records: usize,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Handles an event from either source, told apart by the records' `eventSource`; a window
/// event (with `window`) is handled by [`handle_window`].
pub async fn handle<D: Deliveries + Windows>(deliveries: &D, payload: Value) -> Result<Value, Error> {
    if payload.get("window").is_some() {
        return handle_window(deliveries, payload).await;
    }
    handle_records(deliveries, payload).await
}

async fn handle_records<D: Deliveries>(deliveries: &D, payload: Value) -> Result<Value, Error> {
    let source = payload.pointer("/Records/0/eventSource").and_then(Value::as_str).unwrap_or("aws:kinesis");
    if source == "aws:dynamodb" {
        let event: DynamoDbEvent = serde_json::from_value(payload)?;
        Ok(serde_json::to_value(handle_changes(deliveries, &event).await?)?)
    } else {
        let event: KinesisEvent = serde_json::from_value(payload)?;
        Ok(serde_json::to_value(handle_batch(deliveries, &event).await?)?)
    }
}

/// Handles a DynamoDB Streams batch, reading each record's new image as its data.
pub async fn handle_changes<D: Deliveries>(
    deliveries: &D,
    event: &DynamoDbEvent,
) -> Result<DynamoDbEventResponse, Error> {
    let mut response = DynamoDbEventResponse::default();
    let mut poison = None;
    for record in &event.records {
        let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
        let data = serde_json::to_string(&record.change.new_image)?;
        deliveries.note(&sequence_number, &data).await?;
        if data.contains(POISON_MARKER) {
            poison.get_or_insert_with(|| sequence_number.clone());
        } else if data.contains(PARTIAL_MARKER) {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence_number);
            response.batch_item_failures.push(failure);
        }
    }
    match poison {
        Some(sequence_number) => Err(format!("poison record {sequence_number}").into()),
        None => Ok(response),
    }
}

/// Handles one Kinesis batch: notes every record, then fails, reports or succeeds as its data says.
pub async fn handle_batch<D: Deliveries>(deliveries: &D, event: &KinesisEvent) -> Result<KinesisEventResponse, Error> {
    let mut response = KinesisEventResponse::default();
    let mut poison = None;
    for record in &event.records {
        let sequence_number = &record.kinesis.sequence_number;
        let data = String::from_utf8_lossy(&record.kinesis.data.0);
        deliveries.note(sequence_number, &data).await?;
        if data.contains(POISON_MARKER) {
            poison.get_or_insert_with(|| sequence_number.clone());
        } else if data.contains(PARTIAL_MARKER) {
            response.add_failure(sequence_number.clone());
        }
    }
    if let Some(sequence_number) = poison {
        return Err(format!("poison record {sequence_number}").into());
    }
    tracing::info!(records = event.records.len(), failures = response.batch_item_failures.len(), "batch handled");
    Ok(response)
}

/// The window state key holding the sequence numbers seen so far.
pub const SEEN: &str = "seen";

/// A tumbling-window invocation from either source: the records are handled as usual (poison
/// fails, partial is reported), the sequence numbers of those before the lowest failure join
/// `seen`, and the state given to a final (or early-termination) invocation is stored. Reads the
/// raw JSON: `aws_lambda_events`' window response types lack `batchItemFailures` (Kinesis).
pub async fn handle_window<D: Deliveries + Windows>(deliveries: &D, payload: Value) -> Result<Value, Error> {
    let properties: TimeWindowProperties = serde_json::from_value(payload.clone())?;
    let mut seen: Vec<String> = properties
        .state
        .get(SEEN)
        .map(|seen| seen.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let records = payload.get("Records").and_then(Value::as_array).cloned().unwrap_or_default();
    if properties.is_final_invoke_for_window || properties.is_window_terminated_early {
        let shard_id = properties.shard_id.clone().unwrap_or_default();
        let key = format!("window#{shard_id}#{}", properties.window.start.timestamp_millis());
        deliveries.store(&key, &seen.join(","), properties.is_final_invoke_for_window, records.len()).await?;
    }
    let failures = if records.is_empty() {
        Value::Array(Vec::new())
    } else {
        let response = handle_records(deliveries, serde_json::json!({ "Records": records })).await?;
        response.get("batchItemFailures").cloned().unwrap_or(Value::Array(Vec::new()))
    };
    let failed: Vec<&str> = failures
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|failure| failure.get("itemIdentifier").and_then(Value::as_str))
        .collect();
    for record in &records {
        let sequence_number = record
            .pointer("/kinesis/sequenceNumber")
            .or_else(|| record.pointer("/dynamodb/SequenceNumber"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Only the records before the lowest failure count: the rest comes again.
        if failed.contains(&sequence_number) {
            break;
        }
        seen.push(sequence_number.to_owned());
    }
    Ok(serde_json::json!({ "state": { SEEN: seen.join(",") }, "batchItemFailures": failures }))
}

/// Counts deliveries per sequence number in DynamoDB.
pub struct DynamoDeliveries {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl Deliveries for DynamoDeliveries {
    async fn note(&self, sequence_number: &str, data: &str) -> Result<(), Error> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("sequence_number", AttributeValue::S(sequence_number.to_owned()))
            .update_expression("ADD deliveries :one SET #data = :data, first_at = if_not_exists(first_at, :now)")
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":data", AttributeValue::S(data.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(nanos_now().to_string()))
            .send()
            .await?;
        Ok(())
    }
}

impl Windows for DynamoDeliveries {
    async fn store(&self, key: &str, seen: &str, is_final: bool, records: usize) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("sequence_number", AttributeValue::S(key.to_owned()))
            .item(SEEN, AttributeValue::S(seen.to_owned()))
            .item("is_final", AttributeValue::Bool(is_final))
            .item("records", AttributeValue::N(records.to_string()))
            .send()
            .await?;
        Ok(())
    }
}

/// Wall-clock nanoseconds: orders first deliveries across the function's processes on one host.
fn nanos_now() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Noted(Mutex<Vec<String>>, Mutex<Vec<(String, String, bool)>>);

    impl Deliveries for Noted {
        async fn note(&self, sequence_number: &str, _data: &str) -> Result<(), Error> {
            self.0.lock().unwrap().push(sequence_number.to_owned());
            Ok(())
        }
    }

    impl Windows for Noted {
        async fn store(&self, key: &str, seen: &str, is_final: bool, _records: usize) -> Result<(), Error> {
            self.1.lock().unwrap().push((key.to_owned(), seen.to_owned(), is_final));
            Ok(())
        }
    }

    #[tokio::test]
    async fn window_state_gathers_the_records_before_a_failure_and_the_final_call_stores_it() {
        let noted = Noted::default();
        let mut batch = serde_json::to_value(event(&["a", "partial b", "c"])).unwrap();
        let window = serde_json::json!({
            "window": { "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:01:00Z" },
            "state": { "seen": "0" },
            "shardId": "shardId-000000000001",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:0:stream/s",
            "isFinalInvokeForWindow": false,
            "isWindowTerminatedEarly": false
        });
        batch.as_object_mut().unwrap().extend(window.as_object().unwrap().clone());
        let response = handle(&noted, batch.clone()).await.unwrap();
        assert_eq!(
            response,
            serde_json::json!({ "state": { "seen": "0,1" }, "batchItemFailures": [{ "itemIdentifier": "2" }] })
        );
        assert!(noted.1.lock().unwrap().is_empty());

        batch["Records"] = serde_json::json!([]);
        batch["isFinalInvokeForWindow"] = serde_json::json!(true);
        batch["state"] = serde_json::json!({ "seen": "0,1,2" });
        handle(&noted, batch).await.unwrap();
        let stored = noted.1.lock().unwrap().clone();
        assert_eq!(stored, [("window#shardId-000000000001#1767225600000".to_owned(), "0,1,2".to_owned(), true)]);
    }

    fn event(data: &[&str]) -> KinesisEvent {
        let records: Vec<serde_json::Value> = data
            .iter()
            .enumerate()
            .map(|(i, text)| {
                use base64::Engine as _;
                serde_json::json!({
                    "kinesis": {
                        "partitionKey": "k",
                        "sequenceNumber": (i + 1).to_string(),
                        "data": base64::engine::general_purpose::STANDARD.encode(text),
                        "approximateArrivalTimestamp": 1545084650.987
                    }
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn reports_partial_records_and_notes_every_delivery() {
        let noted = Noted::default();
        let response = handle_batch(&noted, &event(&["a", "partial b", "c"])).await.unwrap();
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        assert_eq!(failed, vec![Some("2".to_owned())]);
        assert_eq!(*noted.0.lock().unwrap(), ["1", "2", "3"]);
    }

    #[tokio::test]
    async fn handles_dynamodb_changes_by_their_new_image() {
        let noted = Noted::default();
        let change = |seq: &str, note: &str| {
            serde_json::json!({
                "eventID": "e", "eventName": "INSERT", "awsRegion": "us-east-1", "eventSource": "aws:dynamodb",
                "dynamodb": { "SequenceNumber": seq, "SizeBytes": 10, "ApproximateCreationDateTime": 1428537600.0,
                    "Keys": { "id": { "S": seq } }, "NewImage": { "id": { "S": seq }, "note": { "S": note } } }
            })
        };
        let event = serde_json::json!({ "Records": [change("100", "fine"), change("200", "partial")] });
        let response = handle(&noted, event).await.unwrap();
        assert_eq!(response, serde_json::json!({ "batchItemFailures": [{ "itemIdentifier": "200" }] }));
        let poisoned = serde_json::json!({ "Records": [change("300", "poison")] });
        assert!(handle(&noted, poisoned).await.is_err());
        assert_eq!(*noted.0.lock().unwrap(), ["100", "200", "300"]);
    }

    #[tokio::test]
    async fn fails_the_invocation_on_a_poison_record() {
        let noted = Noted::default();
        let error = handle_batch(&noted, &event(&["a", "poison", "c"])).await.unwrap_err();
        assert!(error.to_string().contains("poison record 2"), "{error}");
        assert_eq!(noted.0.lock().unwrap().len(), 3);
    }
}
