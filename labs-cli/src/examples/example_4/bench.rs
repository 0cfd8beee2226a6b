//! Example 4's benchmark: the processor's throughput in-process (records per second through
//! `process_batch` on an in-memory store with DynamoDB's transaction rules), and end to end on
//! the target, the time from PutRecord until the event is counted (p50, p99).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use base64::Engine;
use exactly_once_counter::{KinesisEvent, MemoryStore, process_batch};
use labs_core::purchases::Purchase;
use serde::Serialize;
use serde_json::{Value, json};

use super::{CATCH_UP, Names, Produced, recorded_parts};
use crate::driver::dynamodb as db;
use crate::driver::kinesis::{self, Outgoing, PutOptions};
use crate::driver::seeds;
use crate::examples::BenchOptions;
use crate::figures::Figure;
use crate::output::{self, Output};
use crate::target::Target;

const BATCH: usize = 100;
const IN_PROCESS_RECORDS: usize = 50_000;

#[derive(Serialize)]
struct BenchReport {
    processor_records: usize,
    processor_records_per_second: f64,
    optimized_build: bool,
    events: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// `count` purchases as Lambda would deliver them, in batches of 100 of one shard.
fn synthetic_batches(count: usize) -> Result<Vec<KinesisEvent>> {
    let events = Produced { namespace: "bench".into(), seed: 0, count }.events()?;
    events
        .chunks(BATCH)
        .enumerate()
        .map(|(b, chunk)| {
            let records: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    record(&format!("49590338271490256608559692538361571095921575989136{:07}", b * BATCH + i), e)
                })
                .collect();
            Ok(serde_json::from_value(json!({ "Records": records }))?)
        })
        .collect()
}

fn record(sequence_number: &str, event: &Purchase) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": event.user_id,
            "sequenceNumber": sequence_number,
            "data": base64::engine::general_purpose::STANDARD.encode(event.to_bytes()),
            "approximateArrivalTimestamp": 1767225600.0
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("shardId-000000000000:{sequence_number}"),
        "eventName": "aws:kinesis:record",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/bench"
    })
}

async fn in_process() -> Result<f64> {
    let batches = synthetic_batches(IN_PROCESS_RECORDS)?;
    let store = MemoryStore::default();
    let started = Instant::now();
    for (n, batch) in batches.iter().enumerate() {
        process_batch(&store, batch, &format!("bench-{n}")).await?;
    }
    Ok(IN_PROCESS_RECORDS as f64 / started.elapsed().as_secs_f64())
}

pub(super) async fn bench(target: &Target, args: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let names = Names::of(target);
    db::describe_table(&target.clients.dynamodb, &names.totals, "example-4").await?;
    let count = args.count.unwrap_or(100).clamp(1, 5_000);
    let spinner = output::spinner("processor in-process");
    let per_second = in_process().await;
    spinner.finish_and_clear();
    let per_second = per_second?;

    target.confirm(&format!("Produce {count} benchmark purchases into {}?", names.events))?;
    // A recorded part like any scenario's, so `verify` accounts for these purchases too.
    let seed = seeds::after_highest(recorded_parts(target, &names.events).await?.iter().map(|p| p.seed))?;
    let produced = Produced { namespace: "bench".into(), seed, count };
    let events = produced.events()?;
    kinesis::record_run(&target.clients.kinesis, &names.events, &format!("bench:{seed}"), &count.to_string()).await?;
    let bar = output::progress(count as u64, "produce -> counted latency");
    let mut latencies = Vec::with_capacity(count);
    for chunk in events.chunks(8) {
        let probes = chunk.iter().map(|event| {
            let names = &names;
            async move {
                let started = Instant::now();
                let record = Outgoing { partition_key: event.user_id.clone(), data: event.to_bytes() };
                kinesis::put_record(&target.clients.kinesis, &names.events, &record, &PutOptions::default()).await?;
                loop {
                    let row: Option<HashMap<String, serde_json::Value>> =
                        db::get(&target.clients.dynamodb, &names.applied, &[("event_id", &event.event_id)]).await?;
                    if row.is_some() {
                        return anyhow::Ok(started.elapsed());
                    }
                    if started.elapsed() > CATCH_UP {
                        bail!("{} was never counted", event.event_id);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        for latency in futures::future::join_all(probes).await {
            latencies.push(latency?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    latencies.sort();
    let report = BenchReport {
        processor_records: IN_PROCESS_RECORDS,
        processor_records_per_second: per_second,
        optimized_build: !cfg!(debug_assertions),
        events: count,
        p50_ms: output::percentile_ms(&latencies, 0.5),
        p99_ms: output::percentile_ms(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    };
    out.table(
        "example-4 benchmark",
        &["measure", "value"],
        [
            vec![
                format!("processor in-process, batches of {BATCH} (in-memory store)"),
                format!(
                    "{:.0} records/s{}",
                    report.processor_records_per_second,
                    if report.optimized_build { "" } else { " (debug build)" }
                ),
            ],
            vec![format!("produce -> counted, p50 ({count} events)"), format!("{:.0} ms", report.p50_ms)],
            vec!["produce -> counted, p99".into(), format!("{:.0} ms", report.p99_ms)],
            vec!["produce -> counted, max".into(), format!("{:.0} ms", report.max_ms)],
        ],
    );
    out.json(&report)?;
    Ok(vec![
        Figure::new(
            "example-4",
            format!("processor in-process, batches of {BATCH}"),
            report.processor_records_per_second,
            "records/s",
        ),
        Figure::new("example-4", format!("produce -> counted p50 ({count} events)"), report.p50_ms, "ms"),
        Figure::new("example-4", "produce -> counted p99", report.p99_ms, "ms"),
    ])
}
