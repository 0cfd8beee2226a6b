//! Event JSON against the spec's section 8 examples, and the function's answers (Part B).

use aws_lambda_events::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::kinesis::KinesisEvent;
use labs_triggers::event::{DynamoDbInput, EventSource, KinesisInput, dynamodb_event, kinesis_event};
use serde_json::{Map, Value, json};

/// JSON equality where numbers compare by value (`1428537600` equals `1428537600.0`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(key, a)| y.get(key).is_some_and(|b| same_json(a, b)))
        }
        _ => a == b,
    }
}

fn assert_same(actual: &Value, expected: &Value) {
    assert!(
        same_json(actual, expected),
        "actual:\n{}\nexpected:\n{}",
        serde_json::to_string_pretty(actual).unwrap(),
        serde_json::to_string_pretty(expected).unwrap()
    );
}

fn kinesis_source() -> EventSource {
    EventSource {
        shard_id: "shardId-000000000006".to_owned(),
        stream_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream".to_owned(),
        region: "us-east-2".to_owned(),
        execution_role_arn: "arn:aws:iam::123456789012:role/lambda-role".to_owned(),
    }
}

fn spec_kinesis_input() -> KinesisInput {
    KinesisInput {
        sequence_number: "49590338271490256608559692538361571095921575989136588898".to_owned(),
        partition_key: "1".to_owned(),
        data: b"Hello, this is a test.".to_vec(),
        arrival_millis: 1_545_084_650_987,
        kms_encrypted: false,
    }
}

#[test]
fn kinesis_event_matches_spec_8_1() {
    let event = kinesis_event(&kinesis_source(), &[spec_kinesis_input()]).unwrap();
    let expected = json!({
      "Records": [
        {
          "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            "approximateArrivalTimestamp": 1545084650.987
          },
          "eventSource": "aws:kinesis",
          "eventVersion": "1.0",
          "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
          "eventName": "aws:kinesis:record",
          "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
          "awsRegion": "us-east-2",
          "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
        }
      ]
    });
    assert_same(&event, &expected);
    assert!(event["Records"][0]["kinesis"]["approximateArrivalTimestamp"].is_number(), "a number, not a string");
}

#[test]
fn kinesis_event_names_kms_encryption_only_when_encrypted() {
    let mut input = spec_kinesis_input();
    input.kms_encrypted = true;
    let event = kinesis_event(&kinesis_source(), &[input]).unwrap();
    assert_eq!(event["Records"][0]["kinesis"]["encryptionType"], "KMS");
}

#[test]
fn kinesis_event_reads_back_with_aws_lambda_events() {
    let event = kinesis_event(&kinesis_source(), &[spec_kinesis_input()]).unwrap();
    let parsed: KinesisEvent = serde_json::from_value(event).unwrap();
    let record = &parsed.records[0];
    assert_eq!(record.kinesis.data.0, b"Hello, this is a test.");
    assert_eq!(record.kinesis.approximate_arrival_timestamp.timestamp_millis(), 1_545_084_650_987);
    assert_eq!(
        record.event_id.as_deref(),
        Some("shardId-000000000006:49590338271490256608559692538361571095921575989136588898")
    );
}

fn typed(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("test images are objects"),
    }
}

fn dynamodb_source() -> EventSource {
    EventSource {
        shard_id: "shardId-00000001573689847184-864758bb".to_owned(),
        stream_arn: "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTable/stream/2015-06-27T00:48:05.899"
            .to_owned(),
        region: "us-east-1".to_owned(),
        execution_role_arn: "arn:aws:iam::123456789012:role/lambda-role".to_owned(),
    }
}

fn spec_dynamodb_input() -> DynamoDbInput {
    DynamoDbInput::new(
        "c4ca4238a0b923820dcc509a6f75849b",
        "INSERT",
        "4421584500000000017450439091",
        26,
        "NEW_AND_OLD_IMAGES",
        1_428_537_600_000,
        typed(json!({ "Id": { "N": "101" } })),
        Some(typed(json!({ "Message": { "S": "New item!" }, "Id": { "N": "101" } }))),
        None,
    )
}

#[test]
fn dynamodb_event_matches_spec_8_2() {
    let event = dynamodb_event(&dynamodb_source(), &[spec_dynamodb_input()]).unwrap();
    let expected = json!({
      "Records": [
        {
          "eventID": "c4ca4238a0b923820dcc509a6f75849b",
          "eventName": "INSERT",
          "eventVersion": "1.1",
          "eventSource": "aws:dynamodb",
          "awsRegion": "us-east-1",
          "dynamodb": {
            "ApproximateCreationDateTime": 1428537600,
            "Keys": { "Id": { "N": "101" } },
            "NewImage": { "Message": { "S": "New item!" }, "Id": { "N": "101" } },
            "SequenceNumber": "4421584500000000017450439091",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
          },
          "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTable/stream/2015-06-27T00:48:05.899"
        }
      ]
    });
    assert_same(&event, &expected);
    assert!(event["Records"][0].get("invokeIdentityArn").is_none(), "DynamoDB records do not name the role");
}

#[test]
fn dynamodb_event_leaves_out_images_the_view_does_not_carry() {
    let mut removal = spec_dynamodb_input();
    removal.event_name = "REMOVE".to_owned();
    removal.new_image = None;
    removal.old_image = Some(typed(json!({ "Id": { "N": "101" } })));
    removal.ttl_delete = true;
    let keys_only = DynamoDbInput::new(
        "e2",
        "MODIFY",
        "4421584500000000017450439092",
        10,
        "KEYS_ONLY",
        1_428_537_601_000,
        typed(json!({ "Id": { "N": "102" } })),
        None,
        None,
    );
    let event = dynamodb_event(&dynamodb_source(), &[removal, keys_only]).unwrap();
    let removal = &event["Records"][0];
    assert!(removal["dynamodb"].get("NewImage").is_none());
    assert_eq!(removal["dynamodb"]["OldImage"], json!({ "Id": { "N": "101" } }));
    assert_eq!(removal["userIdentity"], json!({ "type": "Service", "principalId": "dynamodb.amazonaws.com" }));
    let keys_only = event["Records"][1]["dynamodb"].as_object().unwrap();
    let mut keys: Vec<&str> = keys_only.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["ApproximateCreationDateTime", "Keys", "SequenceNumber", "SizeBytes", "StreamViewType"]);
    assert!(event["Records"][1].get("userIdentity").is_none());
}

#[test]
fn dynamodb_event_reads_back_with_aws_lambda_events() {
    let event = dynamodb_event(&dynamodb_source(), &[spec_dynamodb_input()]).unwrap();
    let parsed: DynamoDbEvent = serde_json::from_value(event).unwrap();
    let record = &parsed.records[0];
    assert_eq!(record.change.sequence_number.as_deref(), Some("4421584500000000017450439091"));
    assert_eq!(record.change.approximate_creation_date_time.timestamp(), 1_428_537_600);
    assert_eq!(record.change.new_image.len(), 2);
}

#[test]
fn dynamodb_event_rejects_untyped_images_with_a_clear_error() {
    let bad = DynamoDbInput::new("e", "INSERT", "1", 1, "KEYS_ONLY", 0, typed(json!({ "Id": 101 })), None, None);
    let error = dynamodb_event(&dynamodb_source(), &[bad]).unwrap_err().to_string();
    assert!(error.contains("Keys is not DynamoDB typed JSON"), "{error}");
    let bad_view =
        DynamoDbInput::new("e", "INSERT", "1", 1, "EVERYTHING", 0, typed(json!({ "Id": {"N": "1"} })), None, None);
    assert!(dynamodb_event(&dynamodb_source(), &[bad_view]).is_err());
}
