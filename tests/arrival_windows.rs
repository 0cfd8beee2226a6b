//! Example 6's arrival-time windows on labs' runner, with the real `arrival-windows` Lambda: a
//! window's final invocation carries the state of every batch in it (the window's row counts
//! every record that arrived in it, read back from the stream by `ApproximateArrivalTimestamp`),
//! and a record the mapping's `FilterCriteria` leave out is checkpointed past, never delivered.
//!
//! The stack is example 6's own declaration, cut down to the arrival-time mapping, with a 2 s
//! window (not 60 s) so the test takes seconds. Needs the `arrival-windows` zip (`tests/run.sh`
//! builds it).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use labs_core::time::readings::Reading;
use labs_infra::stack::{self, EventSourceMapping, Stack};
use labs_infra::{Artifact, Clients, Engine};
use labs_triggers::runner::{CheckpointTable, Destinations, Runner, RunnerClients, StreamMapping, stop_signal};
use labs_triggers::{FilterCriteria, MappingSettings, Pacing, StartingPosition};
use sha2::{Digest, Sha256};

const WINDOW_SECONDS: i32 = 2;
/// Smaller than the records of a window, so a window spans several invocations.
const BATCH_SIZE: u32 = 3;
const READINGS: usize = 10;
const FILTERED_DEVICE: &str = "device-99";
/// Sure to show in a sum if the filtered reading were ever delivered.
const FILTERED_VALUE: i64 = 1_000_000;

fn arrival_windows_zip() -> Artifact {
    let path = format!("{}/../target/lambda-build/zips/dev/arrival-windows/bootstrap.zip", env!("CARGO_MANIFEST_DIR"));
    let zip = std::fs::read(&path).unwrap_or_else(|e| panic!("build arrival-windows first ({path}): {e}"));
    let code_sha256 = Sha256::digest(&zip).iter().map(|b| format!("{b:02x}")).collect();
    Artifact { zip, code_sha256 }
}

/// Example 6's arrival-time mapping and what it needs, one shard, the runner's table beside it.
fn lean_stack() -> (Stack, EventSourceMapping) {
    let declared = stack::load("example-6").unwrap();
    let mapping = declared.event_source_mappings.iter().find(|m| m.function == "ex6-arrival-windows").unwrap();
    assert_eq!(mapping.tumbling_window_seconds, Some(60), "example 6 declares one-minute arrival windows");
    let mapping = EventSourceMapping {
        tumbling_window_seconds: Some(WINDOW_SECONDS),
        filter_criteria: vec![format!(r#"{{"data": {{"device_id": [{{"anything-but": ["{FILTERED_DEVICE}"]}}]}}}}"#)],
        // As on an emulator: the real mapping exists, disabled, and the runner executes it.
        enabled: false,
        ..mapping.clone()
    };
    let mut streams = declared.kinesis_streams.clone();
    streams.iter_mut().for_each(|s| s.shards = 1);
    let runner_table = stack::load("triggers").unwrap().dynamodb_tables;
    let stack = Stack {
        example: declared.example.clone(),
        kinesis_streams: streams,
        dynamodb_tables: declared
            .dynamodb_tables
            .iter()
            .filter(|t| t.name == "ex6-windows")
            .cloned()
            .chain(runner_table)
            .collect(),
        roles: declared.roles.iter().filter(|r| r.name == mapping.function).cloned().collect(),
        functions: declared.functions.iter().filter(|f| f.name == mapping.function).cloned().collect(),
        event_source_mappings: vec![mapping.clone()],
        ..Stack::default()
    };
    (stack, mapping)
}

fn reading(device: &str, index: usize, value: i64) -> Vec<u8> {
    Reading {
        device_id: device.to_owned(),
        reading_id: format!("{device}-r{index:03}"),
        value,
        event_time: 1_000 * index as i64,
        sent_at: 1_000 * index as i64,
    }
    .to_bytes()
}

/// Every record of the shard: sequence number, arrival time (ms), data.
async fn read_back(clients: &Clients, stream: &str, shard_id: &str) -> Vec<(String, i64, Vec<u8>)> {
    let iterator = clients
        .kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let page = clients.kinesis.get_records().shard_iterator(iterator).limit(1000).send().await.unwrap();
    page.records()
        .iter()
        .map(|r| {
            let arrival = r.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap();
            (r.sequence_number().to_owned(), arrival, r.data().as_ref().to_vec())
        })
        .collect()
}

/// The windows table's arrival rows: (start, end) -> (count, sum, final).
async fn window_rows(clients: &Clients, table: &str) -> HashMap<(i64, i64), (u64, i64, bool)> {
    let scan = clients.dynamodb.scan().table_name(table).consistent_read(true).send().await.unwrap();
    let number = |item: &HashMap<String, AttributeValue>, key: &str| -> i64 {
        item.get(key).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or_default()
    };
    scan.items()
        .iter()
        .map(|item| {
            let is_final = item.get("final").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
            (
                (number(item, "start"), number(item, "end")),
                (number(item, "count") as u64, number(item, "sum"), is_final),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_windows_final_invoke_carries_every_batch_and_filtered_records_are_skipped() {
    let clients = Clients::new(&support::sdk_config().await);
    let prefix = support::prefix("arrival");
    let (stack, mapping) = lean_stack();
    let artifacts = HashMap::from([("arrival-windows".to_owned(), arrival_windows_zip())]);
    let engine = Engine::connect(&clients, &prefix).await.unwrap();
    let plan = engine.plan(&stack, &artifacts).await.unwrap();
    engine.apply(&stack, &plan, &artifacts, &|_: &str| {}).await.unwrap();

    let stream = stack::full_name(&prefix, "ex6-readings");
    let function = stack::full_name(&prefix, &mapping.function);
    let summary = clients.kinesis.describe_stream_summary().stream_name(&stream).send().await.unwrap();
    let stream_arn = summary.stream_description_summary().unwrap().stream_arn().to_owned();
    let configuration = clients.lambda.get_function().function_name(&function).send().await.unwrap();
    let configuration = configuration.configuration().unwrap();
    let filters = FilterCriteria::parse(mapping.filter_criteria.iter().map(String::as_str)).unwrap();
    let settings =
        MappingSettings::new(StartingPosition::parse(mapping.starting_position.as_deref().unwrap()).unwrap())
            .with_batch_size(BATCH_SIZE)
            .unwrap()
            .with_batching_window(mapping.maximum_batching_window_seconds as u32)
            .unwrap()
            .with_tumbling_window(mapping.tumbling_window_seconds.unwrap() as u32)
            .unwrap()
            .with_filter_criteria(filters);
    let mapping_id = format!("{stream} -> {function}");
    let checkpoints =
        CheckpointTable::new(clients.dynamodb.clone(), &stack::full_name(&prefix, "triggers-checkpoints"));
    let runner = Runner::new(RunnerClients {
        kinesis: clients.kinesis.clone(),
        dynamodb_streams: clients.dynamodb_streams.clone(),
        lambda: clients.lambda.clone(),
        destinations: Destinations { sqs: clients.sqs.clone(), sns: clients.sns.clone() },
        checkpoints: checkpoints.clone(),
    });
    let (stop, stopped) = stop_signal();
    let runner_mapping = StreamMapping {
        id: mapping_id.clone(),
        stream_arn,
        function_arn: configuration.function_arn().unwrap().to_owned(),
        execution_role_arn: configuration.role().unwrap().to_owned(),
        region: "us-east-1".to_owned(),
        settings,
        pacing: Pacing::default(),
    };
    let running = tokio::spawn(async move { runner.run(runner_mapping, stopped).await });

    // Readings of two devices, then one the filter leaves out, last on the shard.
    let mut entries: Vec<PutRecordsRequestEntry> = (0..READINGS)
        .map(|i| (format!("device-0{}", i % 2), i, 10 + i as i64))
        .chain([(FILTERED_DEVICE.to_owned(), READINGS, FILTERED_VALUE)])
        .map(|(device, i, value)| {
            PutRecordsRequestEntry::builder()
                .partition_key(&device)
                .data(Blob::new(reading(&device, i, value)))
                .build()
                .unwrap()
        })
        .collect();
    let filtered_entry = entries.pop().unwrap();
    clients.kinesis.put_records().stream_name(&stream).set_records(Some(entries)).send().await.unwrap();
    clients.kinesis.put_records().stream_name(&stream).records(filtered_entry).send().await.unwrap();

    let shard_id =
        clients.kinesis.list_shards().stream_name(&stream).send().await.unwrap().shards()[0].shard_id().to_owned();
    let records = read_back(&clients, &stream, &shard_id).await;
    assert_eq!(records.len(), READINGS + 1);
    let length = i64::from(WINDOW_SECONDS) * 1000;
    let mut expected: HashMap<(i64, i64), (u64, i64, bool)> = HashMap::new();
    for (_, arrival, data) in &records[..READINGS] {
        let value: serde_json::Value = serde_json::from_slice(data).unwrap();
        let start = arrival - arrival.rem_euclid(length);
        let row = expected.entry((start, start + length)).or_insert((0, 0, true));
        row.0 += 1;
        row.1 += value["value"].as_i64().unwrap();
    }
    assert!(
        expected.values().any(|(count, _, _)| *count > u64::from(BATCH_SIZE)),
        "some window spans several batches: {expected:?}"
    );

    // The filtered reading is the shard's last record: its window closes, then the checkpoint
    // moves to it, though it was never delivered.
    let (filtered_sequence, _, _) = records.last().unwrap().clone();
    let windows_table = stack::full_name(&prefix, "ex6-windows");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (rows, checkpoint) = loop {
        let rows = window_rows(&clients, &windows_table).await;
        let checkpoint = checkpoints.load(&mapping_id, &shard_id).await.unwrap().checkpoint;
        if (rows == expected && checkpoint.as_deref() == Some(filtered_sequence.as_str())) || Instant::now() > deadline
        {
            break (rows, checkpoint);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stop.send(true).unwrap();
    let _ = running.await;
    engine.destroy(&stack, &|_: &str| {}).await.unwrap();

    assert_eq!(rows, expected, "each window's final row holds the count and sum of every record that arrived in it");
    assert!(rows.values().all(|(_, sum, _)| *sum < FILTERED_VALUE), "the filtered reading was never delivered");
    assert_eq!(checkpoint, Some(filtered_sequence), "the checkpoint moved past the filtered reading");
}
