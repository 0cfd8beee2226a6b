//! Kafka 1's verifier: regenerates every recorded run from its seed and checks the topic itself:
//! every event present once, each key in one partition, each key's events in order within it,
//! every group the run used committed exactly the end of the run in each partition, and a lookup
//! by time at the run's mark finds the first record of its second wave.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use labs_core::clickstream::{self, ClickstreamSpec};
use serde::Serialize;

use super::{BENCH_SEEDS, CLICKS, RUNS, RunRecord, VerifyOptions, decode, recorded_runs, seed_and_index};
use crate::driver::kafka::{self, Incoming};
use crate::output::Output;
use crate::target::Target;

/// What the topic holds against what the runs produced.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
struct LogReport {
    expected: usize,
    read: usize,
    missing: Vec<String>,
    duplicated: Vec<String>,
    /// Records that are no recorded run's (nor the bench's) event.
    unexpected: usize,
    /// Keys whose events are in more than one partition.
    keys_split: Vec<String>,
    /// Events that come before an earlier event of their key in their partition.
    out_of_order: Vec<String>,
}

/// Checks `records` (partition by partition, each in offset order) against `runs`.
fn check_log(runs: &BTreeMap<u64, RunRecord>, records: &[Incoming]) -> LogReport {
    let expected: BTreeSet<String> = runs
        .values()
        .flat_map(|run| {
            clickstream::generate(&ClickstreamSpec { seed: run.seed, count: run.count, ..Default::default() })
        })
        .map(|e| e.event_id)
        .collect();
    let mut report = LogReport { expected: expected.len(), read: records.len(), ..Default::default() };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut partitions_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut last_index: BTreeMap<(i32, u64, String), usize> = BTreeMap::new();
    for record in records {
        let Some(event) = decode(record) else {
            report.unexpected += 1;
            continue;
        };
        let Some((seed, index)) = seed_and_index(&event.event_id) else {
            report.unexpected += 1;
            continue;
        };
        if seed >= BENCH_SEEDS {
            continue; // the bench's records
        }
        if !expected.contains(&event.event_id) {
            report.unexpected += 1;
            continue;
        }
        *seen.entry(event.event_id.clone()).or_default() += 1;
        partitions_of_key.entry(event.user_id.clone()).or_default().insert(record.partition);
        let last = last_index.entry((record.partition, seed, event.user_id.clone())).or_insert(index);
        if index < *last {
            report.out_of_order.push(event.event_id.clone());
        }
        *last = (*last).max(index);
    }
    report.missing = expected.iter().filter(|id| !seen.contains_key(*id)).cloned().collect();
    report.duplicated = seen.into_iter().filter(|(_, n)| *n > 1).map(|(id, _)| id).collect();
    report.keys_split = partitions_of_key.into_iter().filter(|(_, p)| p.len() > 1).map(|(k, _)| k).collect();
    report
}

/// Per partition, the offset after `seed`'s last record, and the offset of its first record of
/// the second wave.
struct RunPlaces {
    ends: BTreeMap<i32, i64>,
    second_wave: BTreeMap<i32, i64>,
}

fn places(run: &RunRecord, records: &[Incoming]) -> RunPlaces {
    let mut places = RunPlaces { ends: BTreeMap::new(), second_wave: BTreeMap::new() };
    for record in records {
        let Some((seed, index)) = decode(record).and_then(|e| seed_and_index(&e.event_id)) else { continue };
        if seed != run.seed {
            continue;
        }
        let end = places.ends.entry(record.partition).or_insert(record.offset + 1);
        *end = (*end).max(record.offset + 1);
        if index >= run.first_wave {
            let first = places.second_wave.entry(record.partition).or_insert(record.offset);
            *first = (*first).min(record.offset);
        }
    }
    places
}

#[derive(Serialize)]
struct Check {
    check: String,
    passed: bool,
    details: String,
}

pub(super) async fn verify(target: &Target, _options: &VerifyOptions, out: Output) -> Result<bool> {
    let broker = target.kafka().await?;
    let bootstrap = broker.bootstrap;
    let (clicks, runs_topic) = (target.name(CLICKS), target.name(RUNS));
    let runs = recorded_runs(&bootstrap, &runs_topic).await?;
    if runs.is_empty() {
        bail!("nothing to verify: {runs_topic} records no run (run `labs run kafka-1` first)");
    }
    let records = kafka::read_topic(&bootstrap, &clicks).await?;
    let partitions = kafka::partitions(&kafka::admin(&bootstrap)?, &clicks).await?.unwrap_or(0);
    let report = check_log(&runs, &records);
    let mut checks = vec![
        Check {
            check: "every event of every run present once".into(),
            passed: report.missing.is_empty() && report.duplicated.is_empty() && report.unexpected == 0,
            details: format!(
                "{} expected, {} missing, {} duplicated, {} unexpected records (of {} read)",
                report.expected,
                report.missing.len(),
                report.duplicated.len(),
                report.unexpected,
                report.read
            ),
        },
        Check {
            check: "each key in one partition".into(),
            passed: report.keys_split.is_empty(),
            details: first_few("split", &report.keys_split),
        },
        Check {
            check: "each key's events in order within its partition".into(),
            passed: report.out_of_order.is_empty(),
            details: first_few("out of order", &report.out_of_order),
        },
    ];
    for run in runs.values() {
        let places = places(run, &records);
        for group in &run.groups {
            let committed = kafka::committed(&bootstrap, group, &clicks, partitions).await?;
            let wrong: Vec<String> = places
                .ends
                .iter()
                .filter(|(p, end)| committed.get(p).copied().flatten() != Some(**end))
                .map(|(p, end)| format!("partition {p}: {:?}, end of run {end}", committed.get(p).copied().flatten()))
                .collect();
            checks.push(Check {
                check: format!("group {group} committed the end of run {}", run.seed),
                passed: wrong.is_empty(),
                details: if wrong.is_empty() {
                    format!("{} partitions at the run's end", places.ends.len())
                } else {
                    wrong.join("; ")
                },
            });
        }
        let found = kafka::offsets_at_time(&bootstrap, &clicks, partitions, run.mark_millis).await?;
        let wrong: Vec<String> = places
            .second_wave
            .iter()
            .filter(|(p, first)| found.get(p).copied().flatten() != Some(**first))
            .map(|(p, first)| {
                format!("partition {p}: {:?}, second wave starts at {first}", found.get(p).copied().flatten())
            })
            .collect();
        checks.push(Check {
            check: format!("run {}: the offset by time at its mark is its second wave's first", run.seed),
            passed: wrong.is_empty(),
            details: if wrong.is_empty() { "every partition".to_owned() } else { wrong.join("; ") },
        });
    }
    let passed = checks.iter().all(|c| c.passed);
    out.table(
        &format!(
            "Verifying {clicks}: {} runs, {} records read from {partitions} partitions",
            runs.len(),
            records.len()
        ),
        &["check", "result", "details"],
        checks
            .iter()
            .map(|c| vec![c.check.clone(), if c.passed { "ok" } else { "FAILED" }.to_owned(), c.details.clone()]),
    );
    out.json(&serde_json::json!({ "topic": clicks, "report": report, "checks": checks, "passed": passed }))?;
    Ok(passed)
}

fn first_few(what: &str, items: &[String]) -> String {
    match items.len() {
        0 => format!("none {what}"),
        n => format!("{n} {what}: {}", items.iter().take(3).cloned().collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode;
    use super::*;

    fn run(seed: u64, count: usize) -> RunRecord {
        RunRecord { seed, count, first_wave: count / 2, mark_millis: 0, scenarios: vec![], groups: vec![] }
    }

    /// The records a partitioner that sends each user to `user mod 3` would leave, in offset order.
    fn log_of(seed: u64, count: usize) -> Vec<Incoming> {
        let events = clickstream::generate(&ClickstreamSpec { seed, count, ..Default::default() });
        let mut next = BTreeMap::new();
        let mut records: Vec<Incoming> = events
            .iter()
            .map(|e| {
                let partition = (e.user_id.bytes().map(u32::from).sum::<u32>() % 3) as i32;
                let offset = next.entry(partition).or_insert(0i64);
                *offset += 1;
                let out = encode(seed, e);
                Incoming {
                    partition,
                    offset: *offset - 1,
                    key: Some(out.key),
                    payload: Some(out.payload),
                    headers: out.headers,
                    timestamp_millis: None,
                }
            })
            .collect();
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    #[test]
    fn a_complete_log_passes() {
        let runs = BTreeMap::from([(3, run(3, 200))]);
        let report = check_log(&runs, &log_of(3, 200));
        assert_eq!(report, LogReport { expected: 200, read: 200, ..Default::default() });
        assert_eq!((report.expected, report.read), (200, 200));
    }

    #[test]
    fn missing_duplicated_and_foreign_records_fail() {
        let runs = BTreeMap::from([(3, run(3, 200))]);
        let mut records = log_of(3, 200);
        let dropped = records.remove(10);
        let copy = records[20].clone();
        records.push(copy);
        records.extend(log_of(4, 1)); // a seed no run recorded
        records.extend(log_of(BENCH_SEEDS + 1, 5)); // the bench's: passed over
        let report = check_log(&runs, &records);
        assert_eq!(report.missing, vec![decode(&dropped).unwrap().event_id]);
        assert_eq!(report.duplicated.len(), 1);
        assert_eq!(report.unexpected, 1);
    }

    #[test]
    fn a_key_in_two_partitions_or_out_of_order_fails() {
        let runs = BTreeMap::from([(3, run(3, 200))]);
        let mut records = log_of(3, 200);
        records[0].partition = 2; // its key's other events are elsewhere
        assert!(!check_log(&runs, &records).keys_split.is_empty());
        let mut records = log_of(3, 200);
        let user = decode(&records[0]).unwrap().user_id;
        let same_user: Vec<usize> =
            records.iter().enumerate().filter(|(_, r)| decode(r).unwrap().user_id == user).map(|(i, _)| i).collect();
        let (a, b) = (same_user[0], same_user[1]);
        let (pa, pb) = (records[a].payload.clone(), records[b].payload.clone());
        records[a].payload = pb;
        records[b].payload = pa;
        assert_eq!(check_log(&runs, &records).out_of_order.len(), 1);
    }

    #[test]
    fn a_runs_places_are_its_ends_and_its_second_waves_start() {
        let records = log_of(3, 200);
        let places = places(&run(3, 200), &records);
        for (partition, end) in &places.ends {
            let last = records.iter().filter(|r| r.partition == *partition).map(|r| r.offset).max().unwrap();
            assert_eq!(*end, last + 1);
        }
        for (partition, first) in &places.second_wave {
            let record = records.iter().find(|r| r.partition == *partition && r.offset == *first).unwrap();
            assert!(seed_and_index(&decode(record).unwrap().event_id).unwrap().1 >= 100);
        }
    }
}
