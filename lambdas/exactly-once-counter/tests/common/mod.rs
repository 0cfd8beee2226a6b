//! Kinesis events in the shape Lambda delivers them (see `fixtures/three_purchases.json`), built
//! from purchases.

use base64::Engine;
use exactly_once_counter::KinesisEvent;
use labs_core::purchases::Purchase;
use serde_json::{Value, json};

pub const SHARD: &str = "shardId-000000000001";

/// A sequence number for position `i` of a shard: long, as Kinesis's are.
pub fn seq(i: usize) -> String {
    format!("4959033827149025660855969253836157109592157598913{i:07}")
}

/// One record as Lambda sends it.
pub fn record(shard: &str, sequence_number: &str, data: &[u8], partition_key: &str) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": 1767225600.987
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard}:{sequence_number}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/labs-ex4-processor",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/labs-ex4-events"
    })
}

/// The batch of `events[range]` of one shard, where event `i` sits at sequence number `seq(i)`.
pub fn batch(events: &[Purchase], range: std::ops::Range<usize>) -> KinesisEvent {
    let records: Vec<Value> =
        range.map(|i| record(SHARD, &seq(i), &events[i].to_bytes(), &events[i].user_id)).collect();
    serde_json::from_value(json!({ "Records": records })).expect("a valid Kinesis event")
}
