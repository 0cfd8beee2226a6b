//! The handler against the in-memory store, with Kinesis events in Lambda's shape.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{SHARD_0, SHARD_1, START, Stream, WALL_NOW, ended_run, event, seq};
use event_time_windows::{
    KinesisEvent, LateRow, MemoryStore, Settings, ShardRow, StoreError, WindowRow, WindowStore, process_batch,
};
use labs_core::time::readings::{Reading, StreamRecord, ground_truth_where};
use labs_core::time::watermark::NO_WATERMARK;
use labs_core::time::windows::{Millis, WindowKind};
use serde_json::json;

fn fixture(name: &str) -> KinesisEvent {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn tumbling_only(allowed_lateness: Millis) -> Settings {
    Settings { kinds: vec![WindowKind::Tumbling { size: 60_000 }], allowed_lateness, ..Settings::default() }
}

/// The same run cut into batches of `size` (the end's heartbeats stay batches of their own).
fn rebatch(batches: &[KinesisEvent], size: usize) -> Vec<KinesisEvent> {
    let (body, heartbeats) = batches.split_at(batches.len() - 2);
    let mut stream = Stream::default();
    for batch in body {
        let shard = usize::from(batch.records[0].event_id.as_deref().unwrap().starts_with(SHARD_1));
        for record in &batch.records {
            stream.shards[shard].push(common::ShardRecord {
                sequence_number: record.kinesis.sequence_number.clone(),
                arrival: record.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
                partition_key: record.kinesis.partition_key.clone(),
                data: record.kinesis.data.0.clone(),
            });
        }
    }
    let mut batches = stream.batches(size);
    batches.extend_from_slice(heartbeats);
    batches
}

async fn deliver_all(store: &MemoryStore, settings: &Settings, batches: &[KinesisEvent]) {
    for batch in batches {
        process_batch(store, settings, batch, WALL_NOW).await.unwrap();
    }
}

/// What `labs verify example-6` checks, from the tables alone and the regenerated readings:
/// every (reading, window) pair is in that final window or in the side output, every final
/// window equals the ground truth over what it accepted, no window was emitted before the
/// watermark passed its end, late rows met a watermark past their window's end + lateness.
fn assert_books_balance(store: &MemoryStore, settings: &Settings, readings: &[Reading]) {
    let windows = store.windows();
    let late = store.late();
    for kind in &settings.kinds {
        let name = kind.to_string();
        let missed: BTreeSet<(String, String)> =
            late.iter().filter(|l| l.kind == name).map(|l| (l.reading_id.clone(), l.window.clone())).collect();
        let truth = ground_truth_where(readings, kind, |r, w| {
            !missed.contains(&(r.reading_id.clone(), format!("{name}#{}", w.start)))
        });
        let rows: BTreeMap<(String, Millis), &WindowRow> =
            windows.iter().filter(|w| w.kind == name).map(|w| ((w.key.clone(), w.start), w)).collect();
        assert_eq!(rows.len(), truth.len(), "{name}: one row per window");
        for ((device, window), aggregate) in &truth {
            let row = rows.get(&(device.clone(), window.start)).unwrap_or_else(|| panic!("{name} {device} {window:?}"));
            assert_eq!((row.end, row.count, row.sum), (window.end, aggregate.count, aggregate.sum), "{name}");
            assert!(row.is_final && row.revision >= 1, "{row:?}");
            assert!(row.watermark_at_emit.is_some_and(|w| w >= row.end), "emitted before its end: {row:?}");
            assert_eq!(row.emitted_at, Some(WALL_NOW));
        }
        for row in late.iter().filter(|l| l.kind == name) {
            // Sessions judge by the reading's own time (see the operator).
            let closed_at = if kind.is_session() { row.event_time } else { row.window_end };
            assert!(row.watermark >= closed_at + settings.allowed_lateness, "{row:?}");
        }
    }
}

#[tokio::test]
async fn the_fixture_batch_opens_windows_and_records_its_shard() {
    let store = MemoryStore::default();
    let summary = process_batch(&store, &tumbling_only(0), &fixture("readings.json"), WALL_NOW).await.unwrap();
    assert_eq!((summary.readings, summary.heartbeats, summary.late, summary.emitted), (3, 1, 0, 0));

    let windows = store.windows();
    let row = |key: &str| windows.iter().find(|w| w.window_key == key).unwrap();
    let device_1 = row("tumbling-1m#device-01");
    assert_eq!((device_1.start, device_1.end, device_1.count, device_1.sum), (START, START + 60_000, 2, 4_320));
    assert_eq!((device_1.revision, device_1.is_final, device_1.emitted_at), (0, false, None), "open, not emitted");
    assert_eq!(row("tumbling-1m#device-04").count, 1);

    let shards = store.shards();
    let shard = &shards[SHARD_0];
    assert_eq!(shard.checkpoint, "49590338271490256608559692540779422735150834338548301828");
    assert_eq!((shard.readings, shard.heartbeats, shard.version), (3, 1, 1));
    assert_eq!(shard.max_event_time, Some(1_767_225_603_300));
    assert_eq!(shard.watermark, 1_767_225_603_300 - 5_000);
    assert_eq!(shard.last_data_at, Some(1_767_225_604_002), "the heartbeat is not data");
    assert_eq!(shard.last_seen_at, 1_767_225_605_013);
    assert_eq!(shard.overall_watermark, NO_WATERMARK, "the other shard has not been heard from");
    assert_eq!(shard.open_windows["tumbling-1m"].len(), 2);
}

#[tokio::test]
async fn a_whole_run_over_two_shards_balances_and_leaves_no_state() {
    let settings = Settings::default();
    let (batches, readings) = ended_run("balance");
    let store = MemoryStore::default();
    deliver_all(&store, &settings, &rebatch(&batches, 25)).await;

    assert_books_balance(&store, &settings, &readings);
    assert!(!store.late().is_empty(), "the offline device's backlog is beyond the allowed lateness");
    assert!(store.windows().iter().any(|w| w.revision > 1), "some late readings revised an emitted window");
    for (shard, row) in store.shards() {
        assert!(row.open_windows.is_empty(), "{shard}: state left behind: {:?}", row.open_windows.keys());
        assert!(row.overall_watermark > row.max_event_time.unwrap(), "{shard}");
    }
    let counted: u64 = store.shards().values().map(|r| r.readings).sum();
    assert_eq!(counted, readings.len() as u64);
}

#[tokio::test]
async fn a_redelivered_batch_changes_nothing() {
    let settings = Settings::default();
    let (batches, _) = ended_run("redelivery");
    let batches = rebatch(&batches, 40);
    let store = MemoryStore::default();
    for (i, batch) in batches.iter().enumerate() {
        process_batch(&store, &settings, batch, WALL_NOW).await.unwrap();
        if i % 3 == 0 {
            let (windows, late, commits) = (store.windows(), store.late(), store.commits());
            let again = process_batch(&store, &settings, batch, WALL_NOW).await.unwrap();
            assert_eq!(again.redelivered, batch.records.len());
            assert_eq!((store.windows(), store.late(), store.commits()), (windows, late, commits));
        }
    }
    let clean = MemoryStore::default();
    deliver_all(&clean, &settings, &batches).await;
    assert_eq!(store.windows(), clean.windows());
    assert_eq!(store.late(), clean.late());
}

/// Shard rows without their write counter and time, which depend on where commits fell.
fn progress(store: &MemoryStore) -> Vec<ShardRow> {
    store.shards().into_values().map(|row| ShardRow { version: 0, updated_at: 0, ..row }).collect()
}

#[tokio::test]
async fn a_crash_between_commits_loses_nothing_and_counts_nothing_twice() {
    // Small commits, so a batch takes several and a crash can fall between two.
    let settings = Settings { commit_at_items: 10, ..Settings::default() };
    let (batches, readings) = ended_run("crash");
    let clean = MemoryStore::default();
    deliver_all(&clean, &settings, &batches).await;

    let store = MemoryStore::default();
    let mut crashes = 0;
    for (i, batch) in batches.iter().enumerate() {
        let mut crashed = false;
        if i % 2 == 1 {
            // The first commit of the batch goes through, then the process dies.
            store.fail_after(1);
            crashed = process_batch(&store, &settings, batch, WALL_NOW).await.is_err();
            crashes += usize::from(crashed);
            store.recover();
        }
        let summary = process_batch(&store, &settings, batch, WALL_NOW).await.unwrap();
        if crashed {
            // The records of the commit that went through are skipped, the others redone.
            assert!(summary.redelivered > 0 && summary.redelivered < batch.records.len(), "{summary:?}");
        }
    }
    assert!(crashes >= 3, "batches of 100 readings need more than one commit: {crashes} crashes");
    assert_eq!(store.windows(), clean.windows());
    assert_eq!(store.late(), clean.late());
    assert_eq!(progress(&store), progress(&clean));
    assert_books_balance(&store, &settings, &readings);
}

fn reading_record(device: &str, id: &str, event_time: Millis) -> StreamRecord {
    StreamRecord::Reading(Reading {
        device_id: device.into(),
        reading_id: id.into(),
        value: 100,
        event_time,
        sent_at: event_time,
    })
}

fn batch_of(shard: &str, first: usize, records: &[(Millis, StreamRecord)]) -> KinesisEvent {
    let records: Vec<common::ShardRecord> = records
        .iter()
        .enumerate()
        .map(|(i, (arrival, record))| common::ShardRecord {
            sequence_number: seq(first + i),
            arrival: *arrival,
            partition_key: "k".into(),
            data: record.to_bytes(),
        })
        .collect();
    event(shard, &records)
}

#[tokio::test]
async fn the_watermark_is_the_minimum_across_shards_until_a_quiet_shard_goes_idle() {
    let settings = tumbling_only(0); // idle timeout 30 s, out-of-orderness 5 s, 2 shards
    let store = MemoryStore::default();
    // Shard 1 reports event time START + 10 s at START.
    process_batch(
        &store,
        &settings,
        &batch_of(SHARD_1, 0, &[(START, reading_record("b", "b1", START + 10_000))]),
        WALL_NOW,
    )
    .await
    .unwrap();
    // Shard 0 runs ahead to START + 2 min: its window [START, START + 1 min) cannot close while
    // shard 1 holds the watermark at START + 5 s.
    let ahead: Vec<(Millis, StreamRecord)> = (0..=12)
        .map(|i| (START + 1_000 + i * 1_000, reading_record("a", &format!("a{i}"), START + i * 10_000)))
        .collect();
    let summary = process_batch(&store, &settings, &batch_of(SHARD_0, 0, &ahead), WALL_NOW).await.unwrap();
    assert_eq!(summary.watermark_after, START + 5_000);
    assert_eq!(summary.emitted, 0);
    assert_eq!(store.shards()[SHARD_0].watermark, START + 115_000, "its own watermark is far ahead");

    // A heartbeat on shard 0 before the timeout changes nothing; after it, shard 1 is idle.
    let heartbeat = |at: Millis| (at, StreamRecord::Heartbeat { sent_at: at });
    let early = batch_of(SHARD_0, 13, &[heartbeat(START + 29_999)]);
    assert_eq!(process_batch(&store, &settings, &early, WALL_NOW).await.unwrap().emitted, 0);
    let after = batch_of(SHARD_0, 14, &[heartbeat(START + 30_000)]);
    let summary = process_batch(&store, &settings, &after, WALL_NOW).await.unwrap();
    assert_eq!(summary.watermark_after, START + 115_000);
    assert_eq!(summary.emitted, 1, "shard 0's device a: [START, START + 1 min) is final");
    let rows = store.windows();
    let a = rows.iter().find(|w| w.key == "a" && w.start == START).unwrap();
    assert_eq!((a.count, a.is_final, a.watermark_at_emit), (6, true, Some(START + 115_000)));
    let b = rows.iter().find(|w| w.key == "b").unwrap();
    assert!(!b.is_final, "shard 1's windows only move when shard 1's function runs");

    // Shard 1 wakes up behind the watermark: its reading is too late, not counted in a closed
    // window, and its own pending window closes on the same call.
    let wake = batch_of(SHARD_1, 1, &[(START + 40_000, reading_record("b", "b2", START + 20_000))]);
    let summary = process_batch(&store, &settings, &wake, WALL_NOW).await.unwrap();
    assert_eq!(summary.watermark_before, NO_WATERMARK, "shard 1's windows were last moved before shard 0 spoke");
    assert_eq!(summary.watermark_after, START + 115_000);
    assert_eq!(summary.late, 1);
    let late: Vec<LateRow> = store.late();
    assert_eq!((late[0].reading_id.as_str(), late[0].watermark), ("b2", START + 115_000));
    let b = store.windows().into_iter().find(|w| w.key == "b").unwrap();
    assert_eq!((b.count, b.is_final), (1, true));
    assert!(store.shards()[SHARD_1].open_windows.is_empty());
}

#[tokio::test]
async fn unreadable_records_are_skipped_and_counted_not_fatal() {
    let store = MemoryStore::default();
    let summary =
        process_batch(&store, &Settings::default(), &fixture("aws_documentation.json"), WALL_NOW).await.unwrap();
    assert_eq!((summary.unreadable, summary.readings), (1, 0));
    let shard = &store.shards()["shardId-000000000006"];
    assert_eq!((shard.unreadable, shard.checkpoint.len()), (1, 56));
    assert!(store.windows().is_empty());
}

#[tokio::test]
async fn a_batch_without_shards_or_across_shards_is_refused_and_nothing_is_written() {
    let mut no_id = fixture("readings.json");
    no_id.records[1].event_id = None;
    let store = MemoryStore::default();
    let err = process_batch(&store, &Settings::default(), &no_id, WALL_NOW).await.unwrap_err().to_string();
    assert!(err.contains("record 1 has no eventID"), "{err}");

    let mut mixed = fixture("readings.json");
    mixed.records[2].event_id = Some(format!("{SHARD_1}:{}", seq(2)));
    let err = process_batch(&store, &Settings::default(), &mixed, WALL_NOW).await.unwrap_err().to_string();
    assert!(err.contains(SHARD_1) && err.contains(SHARD_0), "{err}");
    assert_eq!(store.commits(), 0);

    let empty: KinesisEvent = serde_json::from_value(json!({"Records": []})).unwrap();
    assert_eq!(process_batch(&store, &Settings::default(), &empty, WALL_NOW).await.unwrap().commits, 0);
}

#[tokio::test]
async fn a_store_failure_fails_the_batch_and_a_changed_shard_row_is_a_conflict() {
    let store = MemoryStore::default();
    store.fail_after(0);
    let err = process_batch(&store, &Settings::default(), &fixture("readings.json"), WALL_NOW).await.unwrap_err();
    assert!(err.to_string().contains("TransactWriteItems") && err.to_string().contains("down"), "{err}");
    assert!(store.shards().is_empty());
    store.recover();

    // Two invocations of one shard at once: the second to write finds the row changed.
    let first = fixture("readings.json");
    process_batch(&store, &Settings::default(), &first, WALL_NOW).await.unwrap();
    let mut stale = store.shards()[SHARD_0].clone();
    stale.version = 0;
    let commit = event_time_windows::Commit { shard: stale, expected_version: 0, ..Default::default() };
    let err = store.commit(&commit).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected: 0, .. }), "{err}");
    assert!(err.to_string().contains("retried"), "{err}");
}
