//! Kinesis events in the shape Lambda delivers them (see `fixtures/readings.json`), and a
//! generated run split over two shards the way Kinesis would split it.
#![allow(dead_code)] // each test file uses part of this

use base64::Engine;
use event_time_windows::KinesisEvent;
use labs_core::partition::{even_ranges, shard_for_key};
use labs_core::time::readings::{Reading, ReadingSpec, StreamRecord, generate_with_true_times};

use labs_core::time::windows::Millis;
use serde_json::{Value, json};

pub const SHARD_0: &str = "shardId-000000000000";
pub const SHARD_1: &str = "shardId-000000000001";
/// Event time of the first generated readings (2026-01-01T00:00:00Z).
pub const START: Millis = 1_767_225_600_000;
/// Wall-clock time the tests pretend it is, so rows compare exactly.
pub const WALL_NOW: Millis = 1_767_300_000_000;

/// A sequence number for position `i` of a shard: long, as Kinesis's are.
pub fn seq(i: usize) -> String {
    format!("4959033827149025660855969253836157109592157598913{i:07}")
}

/// One record as a shard holds it.
#[derive(Debug, Clone)]
pub struct ShardRecord {
    pub sequence_number: String,
    pub arrival: Millis,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// One record as Lambda sends it.
pub fn record_json(shard: &str, record: &ShardRecord) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key,
            "sequenceNumber": record.sequence_number,
            "data": base64::engine::general_purpose::STANDARD.encode(&record.data),
            "approximateArrivalTimestamp": record.arrival as f64 / 1000.0
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard}:{}", record.sequence_number),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/labs-ex6-event-windows",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/labs-ex6-readings"
    })
}

pub fn event(shard: &str, records: &[ShardRecord]) -> KinesisEvent {
    let records: Vec<Value> = records.iter().map(|r| record_json(shard, r)).collect();
    serde_json::from_value(json!({ "Records": records })).expect("a valid Kinesis event")
}

/// A stream of two shards being written to.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    pub shards: [Vec<ShardRecord>; 2],
}

impl Stream {
    pub fn shard_id(index: usize) -> &'static str {
        [SHARD_0, SHARD_1][index]
    }

    fn push(&mut self, shard: usize, arrival: Millis, partition_key: &str, data: Vec<u8>) {
        let records = &mut self.shards[shard];
        let sequence_number = seq(records.len());
        records.push(ShardRecord { sequence_number, arrival, partition_key: partition_key.to_owned(), data });
    }

    /// Produces `readings` as `labs run` does: partition key `device_id`, each arriving when
    /// it was sent (true time).
    pub fn produce(spec: &ReadingSpec) -> (Stream, Vec<Reading>) {
        let ranges = even_ranges(2);
        let mut stream = Stream::default();
        let generated = generate_with_true_times(spec);
        for g in &generated {
            let shard = shard_for_key(&ranges, &g.reading.device_id).expect("two shards cover every key");
            stream.push(shard, g.true_sent_at, &g.reading.device_id, g.reading.to_bytes());
        }
        (stream, generated.into_iter().map(|g| g.reading).collect())
    }

    /// A control record sent to `shard` (as with an ExplicitHashKey).
    pub fn control(&mut self, shard: usize, arrival: Millis, record: &StreamRecord) {
        self.push(shard, arrival, "control", record.to_bytes());
    }

    pub fn last_arrival(&self) -> Millis {
        self.shards.iter().flatten().map(|r| r.arrival).max().unwrap_or(0)
    }

    /// The mapping's batches: per shard, `size` records at a time; the shards take turns, as two
    /// concurrent pollers would, with the one whose next record arrived earlier going first.
    pub fn batches(&self, size: usize) -> Vec<KinesisEvent> {
        let mut positions = [0usize; 2];
        let mut events = Vec::new();
        loop {
            let next = (0..2)
                .filter(|&s| positions[s] < self.shards[s].len())
                .min_by_key(|&s| self.shards[s][positions[s]].arrival);
            let Some(shard) = next else { return events };
            let end = (positions[shard] + size).min(self.shards[shard].len());
            events.push(event(Self::shard_id(shard), &self.shards[shard][positions[shard]..end]));
            positions[shard] = end;
        }
    }
}

/// A run of the standard readings, as `labs run` ends it: an end-of-input record on each shard,
/// and once both are processed, a heartbeat on each, so every shard's function sees the other's
/// end and closes its last windows.
pub fn ended_run(namespace: &str) -> (Vec<KinesisEvent>, Vec<Reading>) {
    let spec = ReadingSpec::standard(namespace, 5, START);
    let (mut stream, readings) = Stream::produce(&spec);
    let end = readings.iter().map(|r| r.event_time).max().unwrap() + 120_000;
    let arrival = stream.last_arrival() + 1_000;
    for shard in 0..2 {
        stream.control(shard, arrival, &StreamRecord::EndOfInput { watermark: end, sent_at: arrival });
    }
    let mut batches = stream.batches(100);
    let mut after = Stream::default();
    for shard in 0..2 {
        after.shards[shard] = stream.shards[shard].clone();
        after.control(shard, arrival + 1_000, &StreamRecord::Heartbeat { sent_at: arrival + 1_000 });
    }
    for shard in 0..2 {
        let heartbeat = after.shards[shard].last().unwrap().clone();
        batches.push(event(Stream::shard_id(shard), &[heartbeat]));
    }
    (batches, readings)
}
