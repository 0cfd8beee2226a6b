//! Example 1: a log you can produce to, read, and replay (DDIA 11, "Transmitting Event Streams").
//!
//! Every run records what it produced as a stream tag (`labs:run:<seed>` = count), so `verify`
//! can regenerate the exact events from the seeded generator and compare them with the log.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use aws_sdk_kinesis::primitives::DateTime;
use labs_core::clickstream::{self, ClickEvent, ClickstreamSpec};
use labs_core::log_check::{self, ReadRecord};
use serde::Serialize;

use crate::cli::{BenchArgs, RunArgs};
use crate::driver::kinesis::{self as log, Incoming, Outgoing, Position, Until};
use crate::output::{self, Output};
use crate::target::Target;

const STREAM: &str = "ex1-clicks";
const DEFAULT_COUNT: usize = 1000;

pub fn stream_name(target: &Target) -> String {
    format!("{}-{STREAM}", target.prefix)
}

/// The runs produced into the stream so far: seed -> count.
pub async fn recorded_runs(target: &Target, stream: &str) -> Result<BTreeMap<u64, usize>> {
    let runs = log::recorded_runs(&target.clients.kinesis, stream, "example-1").await?;
    Ok(runs.into_iter().filter_map(|(name, value)| Some((name.parse().ok()?, value.parse().ok()?))).collect())
}

pub fn encode(event: &ClickEvent) -> Outgoing {
    Outgoing { partition_key: event.user_id.clone(), data: serde_json::to_vec(event).expect("events serialize") }
}

pub fn decode(record: &Incoming) -> Option<ClickEvent> {
    serde_json::from_slice(&record.data).ok()
}

#[derive(Serialize)]
struct ShardSummary {
    shard_id: String,
    records: usize,
    first_sequence_number: String,
    last_sequence_number: String,
    lag_at_start_ms: i64,
    lag_at_end_ms: i64,
}

#[derive(Serialize)]
struct RunReport {
    stream: String,
    seed: u64,
    produced: log::ProduceStats,
    shards: Vec<ShardSummary>,
    replay_after_sequence: ReplayCheck,
    replay_at_timestamp: ReplayCheck,
}

#[derive(Serialize)]
struct ReplayCheck {
    from: String,
    expected: usize,
    read_again: usize,
    identical: bool,
}

fn same_records(a: &[&Incoming], b: &[Incoming]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.sequence_number == y.sequence_number && x.data == y.data)
}

pub async fn run(target: &Target, args: &RunArgs, out: Output) -> Result<()> {
    if args.scenario.is_some() || args.query.is_some() {
        bail!("example-1 has no scenarios or queries: it runs produce, consume and replay in turn");
    }
    let kinesis = &target.clients.kinesis;
    let stream = stream_name(target);
    let shards = log::list_shards(kinesis, &stream).await?;
    let runs = recorded_runs(target, &stream).await?;
    let seed = match args.seed {
        Some(seed) if runs.contains_key(&seed) => {
            bail!(
                "seed {seed} was already produced into {stream}: pick another --seed, or `labs down example-1` to start over"
            )
        }
        Some(seed) => seed,
        None => runs.keys().max().map_or(1, |s| s + 1),
    };
    let count = args.count.unwrap_or(DEFAULT_COUNT);
    if count == 0 {
        bail!("--count must be at least 1");
    }
    target.confirm(&format!("Produce {count} records into {stream}?"))?;

    // 1. Produce.
    out.say(format!(
        "1. Producing {count} clickstream events (seed {seed}) into {stream}, {} shards, partition key = user_id",
        shards.len()
    ));
    let events = clickstream::generate(&ClickstreamSpec { seed, count, ..Default::default() });
    log::record_run(kinesis, &stream, &seed.to_string(), &count.to_string()).await?;
    let bar = output::progress(count as u64, "PutRecords");
    let produced = log::produce(kinesis, &stream, events.iter().map(encode).collect(), None, &bar).await?;
    bar.finish_and_clear();
    out.say(format!(
        "   {} records in {:.2} s ({:.0} records/s), {} PutRecords calls, {} entries refused and retried\n",
        produced.records,
        produced.seconds,
        produced.records_per_second(),
        produced.calls,
        produced.retried_entries
    ));

    // 2. Consume every shard from the oldest record.
    out.say("2. Consuming every shard from TRIM_HORIZON with a polling consumer (GetRecords):");
    let ours = |record: &Incoming| decode(record).is_some_and(|e| e.event_id.starts_with(&format!("s{seed}-")));
    let mut first_read: Vec<Incoming> = Vec::new();
    let mut summaries = Vec::new();
    let mut samples = Vec::new();
    for shard in &shards {
        let records =
            log::read_shard(kinesis, &stream, &shard.shard_id, &Position::TrimHorizon, Until::CaughtUp, None, |_| {})
                .await?;
        let this_run: Vec<&Incoming> = records.iter().filter(|r| ours(r)).collect();
        for record in this_run.iter().take(3) {
            let event = decode(record).expect("filtered on decodable records");
            samples.push(vec![
                record.shard_id.clone(),
                record.sequence_number.clone(),
                record.partition_key.clone(),
                format!("{} {} {}", event.event_id, event.action, event.page),
                record.millis_behind_latest.to_string(),
            ]);
        }
        summaries.push(ShardSummary {
            shard_id: shard.shard_id.clone(),
            records: records.len(),
            first_sequence_number: records.first().map(|r| r.sequence_number.clone()).unwrap_or_default(),
            last_sequence_number: records.last().map(|r| r.sequence_number.clone()).unwrap_or_default(),
            lag_at_start_ms: records.first().map_or(0, |r| r.millis_behind_latest),
            lag_at_end_ms: records.last().map_or(0, |r| r.millis_behind_latest),
        });
        first_read.extend(records.into_iter().filter(|r| ours(r)));
    }
    out.table(
        "   The first records of this run on each shard (the sequence number is the offset):",
        &["shard", "sequence number", "partition key", "event", "lag ms"],
        samples,
    );
    out.table(
        "   Per shard (all runs): records, offsets, and MillisBehindLatest when reading began and ended",
        &["shard", "records", "first sequence number", "last sequence number", "lag at start", "lag at end"],
        summaries.iter().map(|s| {
            vec![
                s.shard_id.clone(),
                s.records.to_string(),
                s.first_sequence_number.clone(),
                s.last_sequence_number.clone(),
                format!("{} ms", s.lag_at_start_ms),
                format!("{} ms", s.lag_at_end_ms),
            ]
        }),
    );

    // 3. Replay from a remembered offset.
    let by_shard = log::by_shard(&first_read);
    let (replay_shard, shard_records) = by_shard
        .iter()
        .max_by_key(|(_, records)| records.len())
        .map(|(shard, records)| (shard.to_string(), records.clone()))
        .unwrap_or_default();
    let remembered = shard_records.len() / 2;
    let after_sequence = if let Some(checkpoint) = shard_records.get(remembered) {
        let replayed = log::read_shard(
            kinesis,
            &stream,
            &replay_shard,
            &Position::AfterSequence(checkpoint.sequence_number.clone()),
            Until::CaughtUp,
            None,
            |_| {},
        )
        .await?;
        let replayed: Vec<Incoming> = replayed.into_iter().filter(|r| ours(r)).collect();
        let expected = &shard_records[remembered + 1..];
        ReplayCheck {
            from: format!("AFTER_SEQUENCE_NUMBER {} on {replay_shard}", checkpoint.sequence_number),
            expected: expected.len(),
            read_again: replayed.len(),
            identical: same_records(expected, &replayed),
        }
    } else {
        ReplayCheck { from: "AFTER_SEQUENCE_NUMBER (no records)".into(), expected: 0, read_again: 0, identical: true }
    };

    // 4. Replay from a point in time.
    let arrivals: Vec<i64> = first_read.iter().map(|r| r.arrival_millis).collect();
    let at_millis = replay_time(arrivals);
    let mut expected_at = Vec::new();
    let mut replayed_at = Vec::new();
    for shard in &shards {
        let position = Position::AtTimestamp(DateTime::from_millis(at_millis));
        let replayed =
            log::read_shard(kinesis, &stream, &shard.shard_id, &position, Until::CaughtUp, None, |_| {}).await?;
        replayed_at.extend(replayed.into_iter().filter(|r| ours(r)));
        expected_at.extend(first_read.iter().filter(|r| r.shard_id == shard.shard_id && r.arrival_millis >= at_millis));
    }
    let at_timestamp = ReplayCheck {
        from: format!("AT_TIMESTAMP {}", format_millis(at_millis)),
        expected: expected_at.len(),
        read_again: replayed_at.len(),
        identical: same_records(&expected_at, &replayed_at),
    };

    out.table(
        "3. Replay: a consumer that remembers its offset (or a time) reads the same records again",
        &["start from", "records expected", "records read again", "identical"],
        [&after_sequence, &at_timestamp].iter().map(|c| {
            vec![
                c.from.clone(),
                c.expected.to_string(),
                c.read_again.to_string(),
                if c.identical { "yes" } else { "NO" }.to_owned(),
            ]
        }),
    );
    out.say(format!(
        "\nReading removed nothing: the {count} records of run {seed} are still in the log for any consumer, at any offset.\n\
         A log is not a queue. Check it: labs verify example-1{}",
        if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
    ));
    let identical = after_sequence.identical && at_timestamp.identical;
    out.json(&RunReport {
        stream,
        seed,
        produced,
        shards: summaries,
        replay_after_sequence: after_sequence,
        replay_at_timestamp: at_timestamp,
    })?;
    if !identical {
        bail!("a replay did not return the same records as the first read (see the table above)");
    }
    Ok(())
}

/// A time to replay from: in the middle of the run, but in a gap between arrivals. Arrival times
/// carry milliseconds and round-trip through floating-point seconds, so a time equal to some
/// record's arrival could land on either side of it; a time in a gap of a few milliseconds cannot.
fn replay_time(mut arrivals: Vec<i64>) -> i64 {
    const GAP_MILLIS: i64 = 4;
    arrivals.sort_unstable();
    arrivals.dedup();
    let middle = arrivals.len() / 2;
    let gaps = arrivals.windows(2).enumerate().filter(|(_, pair)| pair[1] - pair[0] >= GAP_MILLIS);
    match gaps.min_by_key(|(i, _)| i.abs_diff(middle)) {
        Some((_, pair)) => pair[0] + (pair[1] - pair[0]) / 2,
        // No usable gap: replay from before the first record, which is still a replay.
        None => arrivals.first().map_or(0, |first| first - GAP_MILLIS),
    }
}

fn format_millis(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| millis.to_string())
}

#[derive(Serialize)]
struct VerifyReport {
    stream: String,
    runs: BTreeMap<u64, usize>,
    report: log_check::LogReport,
    passed: bool,
}

pub async fn verify(target: &Target, out: Output) -> Result<bool> {
    let stream = stream_name(target);
    let runs = recorded_runs(target, &stream).await?;
    if runs.is_empty() {
        bail!("nothing to verify: {stream} has no recorded runs (run `labs run example-1` first)");
    }
    let expected: Vec<String> = runs
        .iter()
        .flat_map(|(seed, count)| {
            clickstream::generate(&ClickstreamSpec { seed: *seed, count: *count, ..Default::default() })
        })
        .map(|e| e.event_id)
        .collect();
    let records = log::read_stream(&target.clients.kinesis, &stream, &Position::TrimHorizon).await?;
    let read: Vec<ReadRecord> = records
        .iter()
        .map(|r| ReadRecord {
            shard_id: r.shard_id.clone(),
            sequence_number: r.sequence_number.clone(),
            event_id: decode(r).map(|e| e.event_id),
        })
        .collect();
    let report = log_check::check_log(expected.iter().map(String::as_str), &read);
    let passed = report.is_ok();
    let mark = |ok: bool| if ok { "ok" } else { "FAILED" }.to_owned();
    out.table(
        &format!(
            "Verifying {stream}: {} runs, {} events expected, {} records read from {} shards",
            runs.len(),
            report.expected,
            report.records_read,
            report.shards
        ),
        &["check", "result", "details"],
        [
            vec![
                "every event is in the log".into(),
                mark(report.missing.is_empty()),
                format!("{} missing {}", report.missing.len(), preview(&report.missing)),
            ],
            vec![
                "no event is there twice".into(),
                mark(report.duplicated.is_empty()),
                format!(
                    "{} duplicated {}",
                    report.duplicated.len(),
                    preview(&report.duplicated.iter().map(|(id, n)| format!("{id} x{n}")).collect::<Vec<_>>())
                ),
            ],
            vec![
                "every record decodes".into(),
                mark(report.undecodable == 0),
                format!("{} undecodable", report.undecodable),
            ],
            vec![
                "sequence numbers rise within each shard".into(),
                mark(report.out_of_order.is_empty()),
                format!("{} inversions", report.out_of_order.len()),
            ],
        ],
    );
    out.json(&VerifyReport { stream, runs, report, passed })?;
    Ok(passed)
}

fn preview(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    format!("({}{})", shown.join(", "), if items.len() > 5 { ", ..." } else { "" })
}

#[derive(Serialize)]
struct BenchReport {
    stream: String,
    records: usize,
    sequential_records_per_second: f64,
    concurrent_records_per_second: f64,
    ratio: f64,
}

const ROUNDS: u64 = 4;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `labs produce` (one sender per shard) against a plain loop of 500-record PutRecords calls,
/// on the same stream and data, each round taking turns at going first, median of the rounds.
pub async fn bench(target: &Target, args: &BenchArgs, out: Output) -> Result<()> {
    let kinesis = &target.clients.kinesis;
    let stream = stream_name(target);
    let count = args.count.unwrap_or(20_000);
    log::list_shards(kinesis, &stream).await?;
    target.confirm(&format!("Produce {} benchmark records into {stream}?", count as u64 * 2 * ROUNDS))?;
    // Bench events carry a seed no run uses, so `verify` passes over them.
    let records = |round: u64| -> Vec<Outgoing> {
        clickstream::generate(&ClickstreamSpec { seed: 1_000_000 + round, count, ..Default::default() })
            .iter()
            .map(encode)
            .collect()
    };
    // The emulator gets slower as the stream grows, so the two producers take turns going first.
    let (mut sequential, mut concurrent) = (Vec::new(), Vec::new());
    let bar = output::progress(2 * ROUNDS, "benchmark rounds");
    for round in 0..ROUNDS {
        for concurrent_turn in if round % 2 == 0 { [false, true] } else { [true, false] } {
            let batch = records(round * 2 + u64::from(concurrent_turn));
            if concurrent_turn {
                let stats = log::produce(kinesis, &stream, batch, None, &indicatif::ProgressBar::hidden()).await?;
                concurrent.push(stats.records_per_second());
            } else {
                sequential.push(log::produce_sequentially(kinesis, &stream, batch).await?.records_per_second());
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let (sequential, concurrent) = (median(&mut sequential), median(&mut concurrent));
    let ratio = if sequential > 0.0 { concurrent / sequential } else { 0.0 };
    out.table(
        &format!("PutRecords throughput into {stream} ({count} records a round, median of {ROUNDS} rounds)"),
        &["producer", "records/s"],
        [
            vec!["sequential loop of 500-record PutRecords".to_owned(), format!("{sequential:.0}")],
            vec!["labs produce (one sender per shard)".to_owned(), format!("{concurrent:.0}")],
            vec!["ratio".to_owned(), format!("{ratio:.2}x")],
        ],
    );
    out.json(&BenchReport {
        stream,
        records: count,
        sequential_records_per_second: sequential,
        concurrent_records_per_second: concurrent,
        ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::replay_time;

    #[test]
    fn replay_time_falls_in_a_gap_near_the_middle() {
        // Two PutRecords calls: records share a millisecond within a call.
        let arrivals = vec![1000, 1000, 1001, 1001, 1050, 1050, 1051, 1200];
        let at = replay_time(arrivals.clone());
        assert!(arrivals.iter().all(|a| (a - at).abs() >= 2), "{at} is too close to an arrival");
        assert!(at > 1001 && at < 1050, "{at}");
    }

    #[test]
    fn replay_time_without_a_gap_starts_before_everything() {
        assert!(replay_time(vec![5000, 5000, 5001]) < 5000);
        assert_eq!(replay_time(vec![]), 0);
    }
}
