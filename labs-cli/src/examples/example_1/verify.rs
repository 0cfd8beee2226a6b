//! Example 1's verifier: regenerates every recorded run from its seed and checks the log holds
//! each event once, decodable, in sequence-number order per shard.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{Result, bail};
use aws_sdk_kinesis::primitives::DateTime;
use labs_core::clickstream::{self, ClickstreamSpec};
use labs_core::log_check::{self, ReadRecord, ReplayReport};
use labs_core::sequence;
use serde::Serialize;

use super::observed::{Observed, ScenarioCheck};
use super::{CLICKS, Recorded, VerifyOptions, all_recorded, count_seeds, durability, overload, polling};
use crate::driver::clickstream::decode;
use crate::driver::kinesis::{self, Incoming, Position};
use crate::output::Output;
use crate::target::Target;

#[derive(Serialize)]
struct VerifyReport {
    stream: String,
    runs: BTreeMap<u64, Recorded>,
    report: log_check::LogReport,
    replays: Vec<Replay>,
    /// What the other scenarios recorded, by seed, and the checks of it against the log.
    observed: BTreeMap<u64, Observed>,
    scenario_checks: Vec<ScenarioCheck>,
    passed: bool,
}

/// A replay a run recorded, done again from the same position.
#[derive(Serialize)]
struct Replay {
    seed: u64,
    from: String,
    #[serde(flatten)]
    report: ReplayReport,
}

pub(super) async fn verify(target: &Target, _options: &VerifyOptions, out: Output) -> Result<bool> {
    let stream = target.name(CLICKS);
    let (runs, observed) = all_recorded(target, &stream).await?;
    if runs.is_empty() && observed.is_empty() {
        bail!("nothing to verify: {stream} has no recorded runs (run `labs run example-1` first)");
    }
    let expected: Vec<String> = runs
        .iter()
        .flat_map(|(seed, run)| {
            clickstream::generate(&ClickstreamSpec { seed: *seed, count: run.count, ..Default::default() })
        })
        .map(|e| e.event_id)
        .collect();
    let records = kinesis::read_stream(&target.clients.kinesis, &stream, &Position::TrimHorizon).await?;
    let read: Vec<ReadRecord> = records
        .iter()
        .map(|r| ReadRecord {
            shard_id: r.shard_id.clone(),
            sequence_number: r.sequence_number.clone(),
            event_id: decode(r).map(|e| e.event_id),
        })
        .collect();
    let report = log_check::check_log(expected.iter().map(String::as_str), &read);
    let replays = replay_again(target, &stream, &runs, &records).await?;
    let replays_ok = replays.iter().all(|r| r.report.is_ok());
    let scenario_checks = check_scenarios(&observed, &records);
    let passed = report.is_ok() && replays_ok && scenario_checks.iter().all(|c| c.passed);
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
            vec![
                "each recorded replay reads the same again".into(),
                mark(replays_ok),
                format!(
                    "{} of {} replays (from an offset or a time) match the log and what the run recorded",
                    replays.iter().filter(|r| r.report.is_ok()).count(),
                    replays.len()
                ),
            ],
        ]
        .into_iter()
        .chain(
            scenario_checks
                .iter()
                .map(|c| vec![format!("{} (seed {})", c.check, c.seed), mark(c.passed), c.details.clone()]),
        ),
    );
    for replay in replays.iter().filter(|r| !r.report.is_ok()) {
        out.say(format!(
            "Run {} replayed from {}: it recorded {} records; reading again returns {}, the log holds {} after that point{}.",
            replay.seed,
            replay.from,
            replay.report.recorded,
            replay.report.read_again,
            replay.report.expected,
            if replay.report.identical { "" } else { ", and not the same records in the same order" }
        ));
    }
    out.json(&VerifyReport { stream, runs, report, replays, observed, scenario_checks, passed })?;
    Ok(passed)
}

/// Replays every run's recorded replays again from the same positions and compares what comes
/// back with the run's records the full read holds after each position.
async fn replay_again(
    target: &Target,
    stream: &str,
    runs: &BTreeMap<u64, Recorded>,
    full_read: &[Incoming],
) -> Result<Vec<Replay>> {
    let client = &target.clients.kinesis;
    let shards = kinesis::list_shards(client, stream).await?;
    let mut replays = Vec::new();
    for (seed, run) in runs {
        let prefix = format!("s{seed}-");
        let ids = |records: &[Incoming]| -> Vec<String> {
            records.iter().filter_map(|r| decode(r).map(|e| e.event_id)).filter(|id| id.starts_with(&prefix)).collect()
        };
        if let Some(mark) = &run.after_sequence {
            let shard = mark.shard_id.clone().unwrap_or_default();
            let after: Vec<Incoming> = full_read
                .iter()
                .filter(|r| {
                    r.shard_id == shard && sequence::compare(&r.sequence_number, &mark.from) == Ordering::Greater
                })
                .cloned()
                .collect();
            let again =
                kinesis::read_shard_to_tip(client, stream, &shard, &Position::AfterSequence(mark.from.clone())).await?;
            let (expected, replayed) = (ids(&after), ids(&again));
            replays.push(Replay {
                seed: *seed,
                from: format!("AFTER_SEQUENCE_NUMBER {} on {shard}", mark.from),
                report: log_check::check_replay(&as_strs(&expected), &as_strs(&replayed), mark.read_again),
            });
        }
        if let Some(mark) = &run.at_timestamp {
            let millis: i64 = mark.from.parse()?;
            let (mut expected, mut replayed) = (Vec::new(), Vec::new());
            for shard in &shards {
                let at = Position::AtTimestamp(DateTime::from_millis(millis));
                let again = kinesis::read_shard_to_tip(client, stream, &shard.shard_id, &at).await?;
                replayed.extend(ids(&again));
                let after: Vec<Incoming> = full_read
                    .iter()
                    .filter(|r| r.shard_id == shard.shard_id && r.arrival_millis >= millis)
                    .cloned()
                    .collect();
                expected.extend(ids(&after));
            }
            replays.push(Replay {
                seed: *seed,
                from: format!("AT_TIMESTAMP {millis} ms"),
                report: log_check::check_replay(&as_strs(&expected), &as_strs(&replayed), mark.read_again),
            });
        }
    }
    Ok(replays)
}

/// Holds what each scenario recorded against what the log holds of its seeds.
fn check_scenarios(observed: &BTreeMap<u64, Observed>, records: &[Incoming]) -> Vec<ScenarioCheck> {
    let seeds: Vec<u64> = observed.keys().copied().collect();
    let in_log = count_seeds(records, &seeds);
    observed
        .iter()
        .flat_map(|(seed, o)| match o.scenario.as_str() {
            durability::NAME => durability::check(*seed, o, in_log[seed]),
            overload::NAME => overload::check(*seed, o, in_log[seed]),
            polling::NAME => polling::check(*seed, o, in_log[seed]),
            _ => Vec::new(),
        })
        .collect()
}

fn as_strs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

fn preview(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    format!("({}{})", shown.join(", "), if items.len() > 5 { ", ..." } else { "" })
}
