//! `labs bench triggers`: labs' stream-trigger runner beside the emulator's own poller, measured
//! in the same run on the same kind of stack (`infra/stacks/triggers-bench-{runner,native}.toml`:
//! one shard, batch size 100, no batching window, the `trigger-probe` function, which notes the
//! first delivery time of each record). Per poller: PutRecord-to-invocation latency (p50, p99)
//! over records put one at a time, and records per second through it for a burst.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use labs_infra::stack::{self, Stream, Table};
use serde::Serialize;

use crate::driver::dynamodb as db;
use crate::driver::kinesis::{self, Outgoing, PutOptions};
use crate::figures::{Figure, Goal};
use crate::output::{self, Output};
use crate::provision;
use crate::target::Target;

const RUNNER_STREAM: Stream = Stream::new("tbr-stream");
const RUNNER_DELIVERIES: Table = Table::new("tbr-deliveries");
const NATIVE_STREAM: Stream = Stream::new("tbn-stream");
const NATIVE_DELIVERIES: Table = Table::new("tbn-deliveries");
/// Records put one at a time for the latency figures.
const LATENCY_RECORDS: usize = 50;
const DEFAULT_BURST: usize = 2_000;
const WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
struct Figures {
    poller: &'static str,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    burst_records: usize,
    records_per_second: f64,
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0.0)
}

/// Sequence number to epoch ns of its first delivery, from the probe's table.
async fn deliveries(target: &Target, table: &str) -> Result<HashMap<String, u128>> {
    let mut seen = HashMap::new();
    for item in db::scan_all(&target.clients.dynamodb, table).await? {
        let sequence_number = item.get("sequence_number").and_then(|v| v.as_s().ok()).cloned();
        let first_at = item.get("first_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        if let (Some(sequence_number), Some(first_at)) = (sequence_number, first_at) {
            seen.insert(sequence_number, first_at);
        }
    }
    Ok(seen)
}

/// Waits until every one of `sequence_numbers` was delivered; returns their first delivery times.
async fn wait_delivered(target: &Target, table: &str, sequence_numbers: &[String]) -> Result<Vec<u128>> {
    let started = Instant::now();
    loop {
        let seen = deliveries(target, table).await?;
        let times: Vec<u128> = sequence_numbers.iter().filter_map(|s| seen.get(s).copied()).collect();
        if times.len() == sequence_numbers.len() {
            return Ok(times);
        }
        if started.elapsed() > WAIT {
            bail!(
                "{} of {} records reached the function within {} s",
                times.len(),
                sequence_numbers.len(),
                WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn measure(target: &Target, poller: &'static str, stream: Stream, table: Table, burst: usize) -> Result<Figures> {
    let (stream, table) = (target.name(stream), target.name(table));
    let client = &target.clients.kinesis;
    let bar = output::progress(LATENCY_RECORDS as u64, &format!("{poller}: PutRecord -> invocation"));
    let mut latencies = Vec::with_capacity(LATENCY_RECORDS);
    for i in 0..LATENCY_RECORDS {
        let record = Outgoing { partition_key: format!("key-{i}"), data: format!("latency {i}").into_bytes() };
        let put_at = now_nanos();
        let placed = kinesis::put_record(client, &stream, &record, &PutOptions::default()).await?;
        let first_at = wait_delivered(target, &table, std::slice::from_ref(&placed.sequence_number)).await?[0];
        latencies.push(first_at.saturating_sub(put_at) as f64 / 1e6);
        bar.inc(1);
    }
    bar.finish_and_clear();
    latencies.sort_by(f64::total_cmp);

    let records: Vec<Outgoing> = (0..burst)
        .map(|i| Outgoing { partition_key: format!("key-{}", i % 64), data: format!("burst {i}").into_bytes() })
        .collect();
    let spinner = output::spinner(&format!("{poller}: {burst} records through the function"));
    let started = now_nanos();
    kinesis::produce(client, &stream, records, None, &indicatif::ProgressBar::hidden()).await?;
    let expected = LATENCY_RECORDS + burst;
    let wait_started = Instant::now();
    let last = loop {
        let seen = deliveries(target, &table).await?;
        if seen.len() >= expected {
            break seen.into_values().max().context("no records")?;
        }
        if wait_started.elapsed() > WAIT {
            bail!("{poller}: {} of {expected} records reached the function within {} s", seen.len(), WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    spinner.finish_and_clear();
    let seconds = last.saturating_sub(started) as f64 / 1e9;
    Ok(Figures {
        poller,
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
        burst_records: burst,
        records_per_second: if seconds > 0.0 { burst as f64 / seconds } else { 0.0 },
    })
}

pub async fn bench(target: &Target, count: Option<usize>, out: Output) -> Result<Vec<Figure>> {
    if target.kind.is_aws() || target.endpoint_mappings {
        bail!(
            "`labs bench triggers` compares labs' runner with an emulator's own poller: run it on an emulator, without --endpoint-mappings"
        );
    }
    let burst = count.unwrap_or(DEFAULT_BURST).max(1);
    let runner = stack::load("triggers-bench-runner")?;
    let native = stack::load("triggers-bench-native")?;
    provision::up_stack(target, &runner, false, Output::quiet()).await?;
    provision::up_stack(target, &native, false, Output::quiet()).await?;
    let measured = async {
        Ok::<_, anyhow::Error>([
            measure(target, "labs runner", RUNNER_STREAM, RUNNER_DELIVERIES, burst).await?,
            measure(target, "emulator's own poller", NATIVE_STREAM, NATIVE_DELIVERIES, burst).await?,
        ])
    }
    .await;
    for stack in [&runner, &native] {
        let (_, failure) = provision::destroy_stack(target, stack).await?;
        if let Some(failure) = failure {
            output::note(format!("could not remove everything of {}: {failure:#}", stack.example));
        }
    }
    let figures = measured?;
    out.table(
        &format!(
            "Stream triggers on {} (one shard, batch 100, no batching window; records put one by one)",
            target.kind.describe()
        ),
        &["poller", "PutRecord -> invocation p50", "p99", "burst", "records/s"],
        figures.iter().map(|f| {
            vec![
                f.poller.to_owned(),
                format!("{:.0} ms", f.latency_p50_ms),
                format!("{:.0} ms", f.latency_p99_ms),
                f.burst_records.to_string(),
                format!("{:.0}", f.records_per_second),
            ]
        }),
    );
    out.say("Goal: the runner at least as fast as the emulator's poller, and p50 under 300 ms.");
    out.json(&figures)?;
    let [runner, native] = &figures;
    Ok(vec![
        Figure::new("triggers", "labs runner: PutRecord -> invocation p50", runner.latency_p50_ms, "ms")
            .anchored("emulator's poller", native.latency_p50_ms)
            .goal(Goal::AtMost(300.0)),
        Figure::new("triggers", "labs runner: PutRecord -> invocation p99", runner.latency_p99_ms, "ms")
            .anchored("emulator's poller", native.latency_p99_ms),
        Figure::new("triggers", format!("labs runner: burst of {burst}"), runner.records_per_second, "records/s")
            .anchored("emulator's poller", native.records_per_second)
            .goal(Goal::RatioAtLeast(1.0)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_handles_are_declared() {
        let runner = stack::load("triggers-bench-runner").unwrap();
        let native = stack::load("triggers-bench-native").unwrap();
        for handle in [RUNNER_STREAM.any(), RUNNER_DELIVERIES.any()] {
            assert_eq!(runner.check(&handle), Ok(()));
        }
        for handle in [NATIVE_STREAM.any(), NATIVE_DELIVERIES.any()] {
            assert_eq!(native.check(&handle), Ok(()));
        }
        assert!(runner.event_source_mappings.iter().all(|m| m.runner), "labs' runner runs it");
        assert!(native.event_source_mappings.iter().all(|m| !m.runner), "the emulator's own poller runs it");
    }
}
