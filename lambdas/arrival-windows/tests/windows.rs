//! The handler against the in-memory store, with tumbling-window events in Lambda's shape.

use std::collections::BTreeMap;

use arrival_windows::{ArrivalRow, KinesisTimeWindowEvent, MemoryStore, WindowState, arrival_kind, process_window};
use base64::Engine;
use labs_core::partition::{even_ranges, shard_for_key};
use labs_core::time::readings::{ReadingSpec, generate_with_true_times, ground_truth};
use labs_core::time::windows::{Millis, WindowKind};
use serde_json::{Value, json};

const WALL_NOW: Millis = 1_767_300_000_000;
const START: Millis = 1_767_225_600_000;
const WINDOW_START: Millis = 1_767_225_720_000;
const SHARD: &str = "shardId-000000000001";

fn fixture(name: &str) -> KinesisTimeWindowEvent {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn state_of(response: &arrival_windows::KinesisTimeWindowEventResponse) -> WindowState {
    WindowState::from_map(&response.time_window_event_response_properties.state).unwrap()
}

#[tokio::test]
async fn a_batch_adds_its_readings_to_the_carried_state_and_writes_nothing_yet() {
    let store = MemoryStore::default();
    let response = process_window(&store, &fixture("window_batch.json"), WALL_NOW).await.unwrap();
    let state = state_of(&response);
    assert_eq!((state.count, state.sum, state.control, state.unreadable), (7, 9_500 + 1_870 + 1_890, 1, 0));
    assert_eq!(state.first_sequence_number, "49590338271490256608559692538361571095921575989136588000");
    assert_eq!(state.last_sequence_number, "49590338271490256608559692540779422735150834338548301827");
    assert!(store.rows().is_empty(), "not the window's last call");
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(json["state"]["count"], "7", "the response carries `state`: {json}");
}

#[tokio::test]
async fn the_final_invoke_writes_the_shards_row_once_even_when_retried() {
    let store = MemoryStore::default();
    let event = fixture("final_invoke.json");
    process_window(&store, &event, WALL_NOW).await.unwrap();
    let expected = ArrivalRow {
        window_key: format!("arrival-1m#{SHARD}"),
        start: WINDOW_START,
        end: WINDOW_START + 60_000,
        kind: "arrival-1m".into(),
        key: SHARD.into(),
        count: 5,
        sum: 9_500,
        revision: 1,
        is_final: true,
        emitted_at: Some(WALL_NOW),
        shard_id: SHARD.into(),
        parts: 1,
    };
    assert_eq!(store.rows(), std::slice::from_ref(&expected));
    // Lambda retries a failed final invoke with the same state: the row does not change.
    process_window(&store, &event, WALL_NOW + 5).await.unwrap();
    assert_eq!(store.rows(), [expected]);
}

#[tokio::test]
async fn a_window_ended_early_is_written_in_parts_that_add_up() {
    let store = MemoryStore::default();
    let mut first = fixture("window_batch.json");
    first.time_window_properties.is_window_terminated_early = true;
    let carried = state_of(&process_window(&store, &first, WALL_NOW).await.unwrap());
    assert!(!store.rows()[0].is_final);
    // The next call continues the same window with fresh state.
    let mut second = fixture("window_batch.json");
    second.time_window_properties.state.clear();
    for (i, record) in second.kinesis_event.records.iter_mut().enumerate() {
        record.kinesis.sequence_number = format!("6{i:055}");
    }
    second.time_window_properties.is_final_invoke_for_window = true;
    let rest = state_of(&process_window(&store, &second, WALL_NOW).await.unwrap());
    process_window(&store, &second, WALL_NOW).await.unwrap(); // a retry adds nothing
    let row = &store.rows()[0];
    assert_eq!(
        (row.count, row.sum, row.parts, row.is_final),
        (carried.count + rest.count, carried.sum + rest.sum, 2, true)
    );
}

#[tokio::test]
async fn bad_state_a_missing_shard_and_a_failing_table_fail_the_invocation() {
    let store = MemoryStore::default();
    let mut bad = fixture("window_batch.json");
    bad.time_window_properties.state.insert("count".into(), "lots".into());
    let err = process_window(&store, &bad, WALL_NOW).await.unwrap_err().to_string();
    assert!(err.contains("\"count\"") && err.contains("lots"), "{err}");

    let mut no_shard = fixture("final_invoke.json");
    no_shard.time_window_properties.shard_id = None;
    let err = process_window(&store, &no_shard, WALL_NOW).await.unwrap_err().to_string();
    assert!(err.contains("shardId"), "{err}");

    store.set_failing(true);
    let err = process_window(&store, &fixture("final_invoke.json"), WALL_NOW).await.unwrap_err().to_string();
    assert!(err.contains("UpdateItem") && err.contains("down"), "{err}");
    assert!(store.rows().is_empty());
}

fn iso(millis: Millis) -> String {
    let seconds = millis / 1000;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // 2026-01-01 is day 20454 since the epoch; the tests stay within that day.
    assert_eq!(days, 20_454, "the test's readings stay on 2026-01-01");
    format!("2026-01-01T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// A record in a shard: its arrival time and data.
type Arrived = (Millis, Vec<u8>);
/// A record and its position in the shard.
type Positioned<'a> = (usize, &'a Arrived);

/// Lambda's tumbling windows over a shard: records grouped by arrival into aligned windows,
/// delivered in batches of `batch` with the state carried, then a final call without records.
async fn run_windows(store: &MemoryStore, shard: &str, records: &[Arrived], length: Millis, batch: usize) {
    let mut by_window: BTreeMap<Millis, Vec<Positioned>> = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        by_window.entry(record.0 - record.0.rem_euclid(length)).or_default().push((i, record));
    }
    for (start, records) in by_window {
        let mut state: Value = json!({});
        let calls: Vec<&[Positioned]> = records.chunks(batch).chain([&[][..]]).collect();
        let last = calls.len() - 1;
        for (call, chunk) in calls.into_iter().enumerate() {
            let records: Vec<Value> = chunk
                .iter()
                .map(|(i, (arrival, data))| {
                    let sequence_number = format!("4959{i:052}");
                    json!({
                        "kinesis": {
                            "kinesisSchemaVersion": "1.0",
                            "partitionKey": "k",
                            "sequenceNumber": sequence_number,
                            "data": base64::engine::general_purpose::STANDARD.encode(data),
                            "approximateArrivalTimestamp": *arrival as f64 / 1000.0
                        },
                        "eventSource": "aws:kinesis",
                        "eventVersion": "1.0",
                        "eventID": format!("{shard}:{sequence_number}"),
                        "eventName": "aws:kinesis:record",
                        "awsRegion": "us-east-1",
                        "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/labs-ex6-readings"
                    })
                })
                .collect();
            let event: KinesisTimeWindowEvent = serde_json::from_value(json!({
                "Records": records,
                "window": {"start": iso(start), "end": iso(start + length)},
                "state": state,
                "shardId": shard,
                "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/labs-ex6-readings",
                "isFinalInvokeForWindow": call == last,
                "isWindowTerminatedEarly": false
            }))
            .unwrap();
            let response = process_window(store, &event, WALL_NOW).await.unwrap();
            state = serde_json::to_value(&response).unwrap()["state"].clone();
        }
    }
}

/// DDIA's mobile-app example: a device offline for 90 s sends its backlog when it is back, and
/// the per-minute counts by arrival time show a spike that the counts by event time do not.
#[tokio::test]
async fn by_arrival_an_outage_backlog_is_a_false_spike_by_event_time_it_is_not() {
    let spec = ReadingSpec::standard("arrival", 9, START);
    let generated = generate_with_true_times(&spec);
    let ranges = even_ranges(2);
    let mut shards: [Vec<Arrived>; 2] = Default::default();
    for g in &generated {
        let shard = shard_for_key(&ranges, &g.reading.device_id).unwrap();
        shards[shard].push((g.true_sent_at, g.reading.to_bytes()));
    }
    let store = MemoryStore::default();
    for (index, records) in shards.iter().enumerate() {
        run_windows(&store, &format!("shardId-{index:012}"), records, 60_000, 7).await;
    }

    let rows = store.rows();
    assert!(rows.iter().all(|r| r.is_final && r.kind == arrival_kind(60_000) && r.parts == 1));
    let mut by_arrival: BTreeMap<Millis, u64> = BTreeMap::new();
    for row in &rows {
        *by_arrival.entry(row.start).or_default() += row.count;
    }
    assert_eq!(by_arrival.values().sum::<u64>(), generated.len() as u64, "every reading once");
    let readings: Vec<_> = generated.iter().map(|g| g.reading.clone()).collect();
    let mut by_event: BTreeMap<Millis, u64> = BTreeMap::new();
    for ((_, window), aggregate) in ground_truth(&readings, &WindowKind::Tumbling { size: 60_000 }) {
        *by_event.entry(window.start).or_default() += aggregate.count;
    }
    // The device is offline from START + 60 s to START + 150 s: by arrival, the minute it is
    // away dips and the minute it comes back in spikes; by event time both look like any other.
    let (away, back) = (START + 60_000, START + 120_000);
    let typical = by_event[&(START + 180_000)];
    assert!(by_arrival[&away] + 20 <= typical, "by arrival: {} vs a typical {typical}", by_arrival[&away]);
    assert!(by_arrival[&back] >= typical + 20, "by arrival: {} vs a typical {typical}", by_arrival[&back]);
    for minute in [away, back] {
        assert!(by_event[&minute].abs_diff(typical) <= 8, "by event time: {} vs {typical}", by_event[&minute]);
    }
}
