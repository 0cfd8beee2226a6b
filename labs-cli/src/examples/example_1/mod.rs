//! Example 1: a log you can produce to, read, and replay (DDIA 11, "Transmitting Event Streams").
//!
//! Every run records what it produced as a stream tag (`labs:run:<seed>` = count), and then where
//! its replays started and what they read, so `verify` can regenerate the exact events from the
//! seeded generator, compare them with the log, and replay again from the same positions.

mod bench;
mod boto3_anchor;
mod ceiling;
mod durability;
mod observed;
mod overload;
mod polling;
mod verify;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use aws_sdk_kinesis::primitives::DateTime;
use labs_core::clickstream::{self, ClickstreamSpec};
use labs_infra::stack::Stream;
use serde::Serialize;

use self::observed::{InLog, Observed};
use super::{About, BenchOptions, RunOptions, VerifyOptions};
use crate::driver::clickstream::{decode, encode};
use crate::driver::kinesis::{self, Incoming, Position};
use crate::driver::seeds;
use crate::output::{self, Output};
use crate::target::Target;

pub const ABOUT: About =
    About::new(1, "A log", "produce, consume, shard iterators, offsets, replay, backpressure", "Kinesis");

/// The stream every run produces into (`infra/stacks/example-1.toml`).
pub(crate) const CLICKS: Stream = Stream::new("ex1-clicks");
const DEFAULT_COUNT: usize = 1000;
/// Kinesis allows 50 tags per stream; labs' own tags take three, each run one.
const MAX_RUNS: usize = 50 - labs_infra::OWN_TAGS;

/// `log` (the default) produces, consumes and replays; the others each record what they observed
/// as tags beside the log runs (see `observed`).
const SCENARIOS: [&str; 4] = ["log", durability::NAME, overload::NAME, polling::NAME];
/// Events per producer in the scenarios other than `log`.
const DEFAULT_SCENARIO_COUNT: usize = 400;

example!(Example1 {
    scenarios: &SCENARIOS,
    resources: [CLICKS],
    run: run,
    verify: verify::verify,
    bench: bench::bench
});

/// What a run recorded on the stream: how many events it produced, and, once it has replayed,
/// where each replay started and how many of the run's records it read again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Recorded {
    count: usize,
    after_sequence: Option<ReplayMark>,
    at_timestamp: Option<ReplayMark>,
}

/// A replay's start (a shard and sequence number, or a time in milliseconds) and what it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ReplayMark {
    shard_id: Option<String>,
    from: String,
    read_again: usize,
}

impl Recorded {
    /// The tag value: `<count>`, then `after:<shard>:<sequence number>:<read>` and
    /// `at:<millis>:<read>` once the run has replayed.
    fn tag_value(&self) -> String {
        let mut value = self.count.to_string();
        if let Some(m) = &self.after_sequence {
            value.push_str(&format!(
                " after:{}:{}:{}",
                m.shard_id.as_deref().unwrap_or_default(),
                m.from,
                m.read_again
            ));
        }
        if let Some(m) = &self.at_timestamp {
            value.push_str(&format!(" at:{}:{}", m.from, m.read_again));
        }
        value
    }

    fn parse(value: &str) -> Option<Recorded> {
        let mut words = value.split(' ');
        let mut recorded = Recorded { count: words.next()?.parse().ok()?, after_sequence: None, at_timestamp: None };
        for word in words {
            let parts: Vec<&str> = word.split(':').collect();
            match parts.as_slice() {
                ["after", shard, from, read] => {
                    recorded.after_sequence = Some(ReplayMark {
                        shard_id: Some((*shard).to_owned()),
                        from: (*from).to_owned(),
                        read_again: read.parse().ok()?,
                    });
                }
                ["at", from, read] => {
                    from.parse::<i64>().ok()?;
                    recorded.at_timestamp =
                        Some(ReplayMark { shard_id: None, from: (*from).to_owned(), read_again: read.parse().ok()? });
                }
                _ => return None,
            }
        }
        Some(recorded)
    }
}

/// Every run recorded on the stream, by seed: the log runs, and what the other scenarios
/// observed. A run tag labs cannot read is an error: a verifier that skipped it would check
/// less than was produced.
async fn all_recorded(target: &Target, stream: &str) -> Result<(BTreeMap<u64, Recorded>, BTreeMap<u64, Observed>)> {
    let (mut runs, mut observed) = (BTreeMap::new(), BTreeMap::new());
    for (name, value) in kinesis::recorded_runs(&target.clients.kinesis, stream, "example-1").await? {
        let seed: Option<u64> = name.parse().ok();
        match (seed, Recorded::parse(&value), Observed::parse(&value, &SCENARIOS)) {
            (Some(seed), Some(recorded), _) => runs.insert(seed, recorded).map(|_| ()),
            (Some(seed), None, Some(scenario)) => observed.insert(seed, scenario).map(|_| ()),
            _ => bail!("{stream} records a run labs cannot read: labs:run:{name} = {value}"),
        };
    }
    Ok((runs, observed))
}

/// How many of each seed's events the log holds, read from the oldest record.
async fn seed_counts(client: &aws_sdk_kinesis::Client, stream: &str, seeds: &[u64]) -> Result<BTreeMap<u64, InLog>> {
    let records = kinesis::read_stream(client, stream, &Position::TrimHorizon).await?;
    Ok(count_seeds(&records, seeds))
}

fn count_seeds(records: &[Incoming], seeds: &[u64]) -> BTreeMap<u64, InLog> {
    let mut seen: BTreeMap<u64, BTreeMap<String, u64>> = seeds.iter().map(|s| (*s, BTreeMap::new())).collect();
    for event in records.iter().filter_map(decode) {
        let seed =
            event.event_id.strip_prefix('s').and_then(|rest| rest.split_once('-')).and_then(|(s, _)| s.parse().ok());
        if let Some(ids) = seed.and_then(|seed: u64| seen.get_mut(&seed)) {
            *ids.entry(event.event_id).or_default() += 1;
        }
    }
    seen.into_iter()
        .map(|(seed, ids)| {
            let duplicated = ids.values().filter(|n| **n > 1).count() as u64;
            (seed, InLog { distinct: ids.len() as u64, duplicated })
        })
        .collect()
}

/// Where the refusals come from, said once per scenario that injects them.
fn refusal_note(target: &Target) -> String {
    if target.kind.is_aws() {
        "Labs refuses them on the client, as a throttled shard would (real throttling may add to them).".to_owned()
    } else {
        "The emulator never refuses: labs refuses them on the client, as a throttled shard would.".to_owned()
    }
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
    produced: kinesis::ProduceStats,
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

impl ShardSummary {
    fn row(&self) -> Vec<String> {
        let lag = |millis: i64| format!("{millis} ms");
        let offsets = [self.first_sequence_number.clone(), self.last_sequence_number.clone()];
        let mut row = vec![self.shard_id.clone(), self.records.to_string()];
        row.extend(offsets);
        row.extend([lag(self.lag_at_start_ms), lag(self.lag_at_end_ms)]);
        row
    }
}

impl ReplayCheck {
    fn row(&self) -> Vec<String> {
        let identical = if self.identical { "yes" } else { "NO" };
        vec![self.from.clone(), self.expected.to_string(), self.read_again.to_string(), identical.to_owned()]
    }
}

fn same_records(a: &[&Incoming], b: &[Incoming]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.sequence_number == y.sequence_number && x.data == y.data)
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    if args.query.is_some() {
        bail!("example-1 has no --query (that is example-3's search)");
    }
    match args.scenario.as_deref() {
        None | Some("log") => run_log(target, args, out).await,
        Some(name) => run_scenario(target, args, name, out).await,
    }
}

/// A scenario other than `log`: seeds after every recorded run's, refused when taken.
async fn run_scenario(target: &Target, args: &RunOptions, name: &str, out: Output) -> Result<()> {
    let stream = target.name(CLICKS);
    let (runs, observed) = all_recorded(target, &stream).await?;
    // One seed per producer, so the log tells each one's events apart.
    let needed = match name {
        overload::NAME => overload::MODES.len(),
        polling::NAME => 1,
        _ => 2,
    };
    seeds::check_room(runs.len() + observed.len(), needed, MAX_RUNS, &stream, "example-1")?;
    let used: Vec<u64> = runs.keys().chain(observed.keys()).copied().collect();
    let first = match args.seed {
        Some(seed) => seed,
        None => seeds::after_highest(used.iter().copied())?,
    };
    let seeds = seeds::consecutive(first, needed)?;
    if let Some(taken) = seeds.iter().find(|s| used.contains(s)) {
        bail!(
            "seed {taken} was already produced into {stream}: pick another --seed, or `labs down example-1` to start over"
        );
    }
    let default = if name == polling::NAME { polling::DEFAULT_EVENTS } else { DEFAULT_SCENARIO_COUNT };
    let count = args.count.unwrap_or(default);
    if count == 0 {
        bail!("--count must be at least 1");
    }
    target.confirm(&format!("Produce up to {} records into {stream}?", needed * count))?;
    let report = match name {
        durability::NAME => durability::run_durability(target, &stream, [seeds[0], seeds[1]], count, out).await?,
        overload::NAME => overload::run_overload(target, &stream, &seeds, count, out).await?,
        polling::NAME => polling::run_polling(target, &stream, seeds[0], count, out).await?,
        other => bail!("example-1 has no scenario '{other}': use one of {}", SCENARIOS.join(", ")),
    };
    out.say(format!(
        "\nCheck it from the data: labs verify example-1{}",
        if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
    ));
    out.json(&report)?;
    if let Some(problem) = &report.problem {
        bail!("{problem}");
    }
    Ok(())
}

async fn run_log(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    let client = &target.clients.kinesis;
    let stream = target.name(CLICKS);
    let shards = kinesis::list_shards(client, &stream).await?;
    let (runs, observed) = all_recorded(target, &stream).await?;
    seeds::check_room(runs.len() + observed.len(), 1, MAX_RUNS, &stream, "example-1")?;
    let seed = match args.seed {
        Some(seed) if runs.contains_key(&seed) || observed.contains_key(&seed) => {
            bail!(
                "seed {seed} was already produced into {stream}: pick another --seed, or `labs down example-1` to start over"
            )
        }
        Some(seed) => seed,
        None => seeds::after_highest(runs.keys().chain(observed.keys()).copied())?,
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
    let mut recorded = Recorded { count, after_sequence: None, at_timestamp: None };
    kinesis::record_run(client, &stream, &seed.to_string(), &recorded.tag_value()).await?;
    let bar = output::progress(count as u64, "PutRecords");
    let produced = kinesis::produce(client, &stream, events.iter().map(encode), None, &bar).await?;
    bar.finish_and_clear();
    out.say(format!(
        "   {} records in {:.2} s ({:.0} records/s), {} PutRecords calls, {} entries refused and retried\n",
        produced.records,
        produced.seconds,
        produced.records_per_second(),
        produced.calls,
        produced.retried_entries
    ));
    if produced.retried_entries > 0 {
        // A resent entry is written after entries sent behind it, so its user's clicks are out of send order.
        out.say(
            "   The resent entries landed behind later clicks of their users: those users' clicks are not in send \
             order on their shard (example 7's retry-reorder shows it, and two producers that avoid it).\n",
        );
    }

    // 2. Consume every shard from the oldest record.
    out.say("2. Consuming every shard from TRIM_HORIZON with a polling consumer (GetRecords):");
    let ours = |record: &Incoming| decode(record).is_some_and(|e| e.event_id.starts_with(&format!("s{seed}-")));
    let mut first_read: Vec<Incoming> = Vec::new();
    let mut summaries = Vec::new();
    let mut samples = Vec::new();
    for shard in &shards {
        let records = kinesis::read_shard_to_tip(client, &stream, &shard.shard_id, &Position::TrimHorizon).await?;
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
        summaries.iter().map(ShardSummary::row),
    );

    // 3. Replay from a remembered offset.
    let by_shard = kinesis::by_shard(&first_read);
    let (replay_shard, shard_records) = by_shard
        .iter()
        .max_by_key(|(_, records)| records.len())
        .map(|(shard, records)| (shard.to_string(), records.clone()))
        .unwrap_or_default();
    let remembered = shard_records.len() / 2;
    let after_sequence = if let Some(checkpoint) = shard_records.get(remembered) {
        let replayed = kinesis::read_shard_to_tip(
            client,
            &stream,
            &replay_shard,
            &Position::AfterSequence(checkpoint.sequence_number.clone()),
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
        let replayed = kinesis::read_shard_to_tip(client, &stream, &shard.shard_id, &position).await?;
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
        [&after_sequence, &at_timestamp].map(ReplayCheck::row),
    );
    out.say(format!(
        "\nReading removed nothing: the {count} records of run {seed} are still in the log for any consumer, at any offset.\n\
         A log is not a queue. Check it: labs verify example-1{}",
        if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
    ));
    // What the replays read, recorded on the stream: `verify` replays from the same positions and
    // checks the record against the log and the regenerated events.
    if let Some(checkpoint) = shard_records.get(remembered) {
        recorded.after_sequence = Some(ReplayMark {
            shard_id: Some(replay_shard.clone()),
            from: checkpoint.sequence_number.clone(),
            read_again: after_sequence.read_again,
        });
    }
    recorded.at_timestamp =
        Some(ReplayMark { shard_id: None, from: at_millis.to_string(), read_again: at_timestamp.read_again });
    kinesis::record_run(client, &stream, &seed.to_string(), &recorded.tag_value()).await?;
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

#[cfg(test)]
mod tests {
    use super::{Recorded, ReplayMark, replay_time};

    #[test]
    fn a_run_tag_reads_back_as_written_and_fits_a_tag_value() {
        let recorded = Recorded {
            count: 1_000_000,
            after_sequence: Some(ReplayMark {
                shard_id: Some("shardId-000000000003".into()),
                from: "49671234567890123456789012345678901234567890123456789012".into(),
                read_again: 999_999,
            }),
            at_timestamp: Some(ReplayMark { shard_id: None, from: "1764561234567".into(), read_again: 999_999 }),
        };
        let value = recorded.tag_value();
        assert!(value.len() <= 256, "{value}");
        assert_eq!(Recorded::parse(&value), Some(recorded));
        assert_eq!(Recorded::parse("40").map(|r| r.count), Some(40), "a run that has not replayed yet");
        assert_eq!(Recorded::parse("40 at:soon:3"), None);
        assert_eq!(Recorded::parse("forty"), None);
    }

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
