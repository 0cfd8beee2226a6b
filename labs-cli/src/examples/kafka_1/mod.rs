//! Kafka 1: a log, the Kafka way (DDIA 11, "Partitioned logs"), on the Kafka broker, beside
//! example 1's and 7's Kinesis streams: a topic with partitions, keyed produce, consumer groups
//! that split partitions (load balancing) or each read everything (fan-out), committed offsets,
//! a consumer killed and restarted resuming from its commit, resetting a group to replay, and
//! rebalances as members join and leave.
//!
//! Every run produces the seeded clickstream keyed by user, in two waves with a time mark
//! between them, and records itself (seed, count, the wave boundary and mark, its groups) as one
//! record on the `k1-runs` topic; `verify` regenerates the events from that record and checks
//! the log, the groups' committed offsets and a lookup by time against it.

mod bench;
mod groups;
mod rebalance;
mod resume;
mod verify;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use labs_core::clickstream::{self, ClickEvent, ClickstreamSpec};
use labs_infra::stack::{KafkaTopic, Stream};
use serde::{Deserialize, Serialize};

use super::{About, BenchOptions, RunOptions, VerifyOptions};
use crate::driver::kafka::{self, Broker, Delivered, GroupMember, Incoming, Outgoing, ResetTo};
use crate::driver::seeds;
use crate::output::Output;
use crate::target::Target;

pub const ABOUT: About = About::kafka(
    1,
    "A log, the Kafka way",
    "partitions, keyed produce, consumer groups (load balancing, fan-out), committed offsets, resume, replay, rebalances; each step beside Kinesis",
    "Kafka (embedded tansu), Kinesis for the bench",
);

/// The log (`infra/stacks/kafka-1.toml`).
pub(crate) const CLICKS: KafkaTopic = KafkaTopic::new("k1-clicks");
/// One record per run: what it produced and which groups it ran.
const RUNS: KafkaTopic = KafkaTopic::new("k1-runs");
/// The Kinesis stream the bench measures beside the topic (as many shards as partitions).
const BENCH_STREAM: Stream = Stream::new("k1-bench");

const SCENARIOS: [&str; 5] = ["log", groups::NAME, resume::NAME, "replay", rebalance::NAME];
const DEFAULT_COUNT: usize = 2000;
/// Seeds from here on are the bench's: verify passes over their records.
const BENCH_SEEDS: u64 = 1_000_000;
/// How long a group member may see nothing before the lab takes the log as read.
const IDLE: Duration = Duration::from_secs(3);

example!(Kafka1 {
    scenarios: &SCENARIOS,
    resources: [CLICKS, RUNS, BENCH_STREAM],
    run: run,
    verify: verify::verify,
    bench: bench::bench
});

/// What a run recorded on `k1-runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RunRecord {
    seed: u64,
    count: usize,
    /// Events `0..first_wave` were produced before `mark_millis`, the rest after it.
    first_wave: usize,
    mark_millis: i64,
    scenarios: Vec<String>,
    /// The consumer groups the run used; each read the whole run and committed its end.
    groups: Vec<String>,
}

/// Every run recorded on `k1-runs`, by seed. A record labs cannot read is an error: a verifier
/// that skipped it would check less than was produced.
async fn recorded_runs(bootstrap: &str, topic: &str) -> Result<BTreeMap<u64, RunRecord>> {
    let mut runs = BTreeMap::new();
    for record in kafka::read_topic(bootstrap, topic).await? {
        let run: RunRecord = serde_json::from_slice(record.payload.as_deref().unwrap_or_default())
            .with_context(|| format!("{topic} holds a record labs cannot read at offset {}", record.offset))?;
        runs.insert(run.seed, run);
    }
    Ok(runs)
}

async fn record_run(broker: &Broker, topic: &str, run: &RunRecord) -> Result<()> {
    let record = Outgoing {
        key: run.seed.to_string(),
        payload: serde_json::to_vec(run).context("a run record serializes")?,
        headers: Vec::new(),
    };
    kafka::produce(broker, topic, [record]).await?;
    Ok(())
}

/// The header that names an event's seed, so a reader tells runs apart without decoding.
const SEED_HEADER: &str = "labs-seed";

fn encode(seed: u64, event: &ClickEvent) -> Outgoing {
    Outgoing {
        key: event.user_id.clone(),
        payload: serde_json::to_vec(event).expect("events serialize"),
        headers: vec![(SEED_HEADER.to_owned(), seed.to_string())],
    }
}

fn decode(record: &Incoming) -> Option<ClickEvent> {
    serde_json::from_slice(record.payload.as_deref()?).ok()
}

/// The seed and index of an event id (`s<seed>-e<index>`).
fn seed_and_index(event_id: &str) -> Option<(u64, usize)> {
    let (seed, index) = event_id.strip_prefix('s')?.split_once("-e")?;
    Some((seed.parse().ok()?, index.parse().ok()?))
}

/// Whether `record` is one of `seed`'s events.
fn of_seed(record: &Incoming, seed: u64) -> bool {
    record.header(SEED_HEADER) == Some(seed.to_string().as_str())
}

/// A produced run: what it delivered where, and the record describing it.
struct Produced {
    run: RunRecord,
    delivered: Vec<Delivered>,
    /// Per partition, the topic's end before the run: where the run's groups start.
    start: BTreeMap<i32, i64>,
    stats: kafka::ProduceStats,
}

/// The Kinesis counterpart of each Kafka idea the lab shows (examples 1 and 7).
fn kinesis_mapping() -> Vec<Vec<String>> {
    [
        ("topic", "stream", "example 1"),
        ("partition (fixed count; add, never remove)", "shard (split, merge; parents close)", "examples 1, 7"),
        ("key -> murmur2(key) mod partitions", "partition key -> MD5 into a shard's hash range", "example 7"),
        ("offset (dense, per partition: 0, 1, 2 ...)", "sequence number (sparse, per shard)", "example 1"),
        (
            "consumer group, its members split the partitions",
            "KCL application, its workers take shard leases",
            "example 1",
        ),
        ("two groups each read everything", "two consumers (or enhanced fan-out) on one stream", "example 1"),
        ("group coordinator (a broker)", "KCL lease table (a DynamoDB table)", "example 1"),
        ("committed offset (OffsetCommit)", "checkpoint (a sequence number in the lease table)", "example 1"),
        (
            "reset a group's offsets (earliest / offset / time)",
            "iterator TRIM_HORIZON / AFTER_SEQUENCE_NUMBER / AT_TIMESTAMP",
            "example 1",
        ),
        ("rebalance (join, sync, assign, revoke)", "lease stealing and expiry", "example 1"),
        ("watermarks low / high", "trim horizon / latest (MillisBehindLatest)", "example 1"),
    ]
    .iter()
    .map(|(kafka, kinesis, example)| vec![(*kafka).to_owned(), (*kinesis).to_owned(), (*example).to_owned()])
    .collect()
}

fn show_mapping(out: Output) {
    out.table("Kafka beside Kinesis", &["Kafka", "Kinesis", "seen in"], kinesis_mapping());
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    if args.query.is_some() || args.follow {
        bail!("kafka-1 has no --query or --follow");
    }
    let count = args.count.unwrap_or(DEFAULT_COUNT);
    if count < 2 {
        bail!("--count must be at least 2 (the run produces in two waves)");
    }
    let broker = target.kafka().await?;
    let bootstrap = broker.bootstrap.as_str();
    let (clicks, runs_topic) = (target.name(CLICKS), target.name(RUNS));
    let admin = kafka::admin(bootstrap)?;
    let partitions = kafka::partitions(&admin, &clicks)
        .await?
        .with_context(|| format!("Kafka topic {clicks} does not exist: run `labs up kafka-1` first"))?;
    let runs = recorded_runs(bootstrap, &runs_topic).await?;
    let used: Vec<u64> = runs.keys().copied().collect();
    let seed = seeds::for_scenario(args.seed, &used, "kafka-1", &runs_topic, "kafka-1")?;
    if seed >= BENCH_SEEDS {
        bail!("seeds from {BENCH_SEEDS} on are the bench's: pick a smaller --seed");
    }
    let scenarios: Vec<&str> = match args.scenario.as_deref() {
        None => SCENARIOS.to_vec(),
        Some(name) => vec![name],
    };
    let mut produced = produce_run(&broker, &clicks, seed, count, partitions, &scenarios, out).await?;
    for scenario in &scenarios {
        out.say("");
        let groups = match *scenario {
            "log" => show_log(bootstrap, &clicks, &produced, out).await?,
            groups::NAME => groups::run(bootstrap, &clicks, &produced, out).await?,
            resume::NAME => resume::run(bootstrap, &clicks, &produced, out).await?,
            "replay" => replay(bootstrap, &clicks, &produced, out).await?,
            rebalance::NAME => rebalance::run(bootstrap, &clicks, &produced, out).await?,
            other => bail!("kafka-1 has no scenario '{other}': use one of {}", SCENARIOS.join(", ")),
        };
        produced.run.groups.extend(groups);
    }
    record_run(&broker, &runs_topic, &produced.run).await?;
    out.say("");
    show_mapping(out);
    out.say(format!(
        "\nCheck it from the data: labs verify kafka-1{}",
        if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
    ));
    out.json(&serde_json::json!({ "topic": clicks, "run": produced.run, "produce": produced.stats }))
}

/// Produces the run's events in two waves with a time mark between them (the replay by time
/// starts there).
async fn produce_run(
    broker: &Broker,
    topic: &str,
    seed: u64,
    count: usize,
    partitions: i32,
    scenarios: &[&str],
    out: Output,
) -> Result<Produced> {
    let mut start = BTreeMap::new();
    for partition in 0..partitions {
        start.insert(partition, kafka::watermarks(&broker.bootstrap, topic, partition).await?.1);
    }
    out.say(format!(
        "Producing {count} clickstream events (seed {seed}) into {topic}, {partitions} partitions, key = user_id"
    ));
    let events = clickstream::generate(&ClickstreamSpec { seed, count, ..Default::default() });
    let first_wave = count / 2;
    let (mut delivered, mut stats) =
        kafka::produce(broker, topic, events[..first_wave].iter().map(|e| encode(seed, e))).await?;
    // Batches are stamped when the broker appends them: leave a gap on both sides of the mark.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mark_millis = now_millis();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (second, more) = kafka::produce(broker, topic, events[first_wave..].iter().map(|e| encode(seed, e))).await?;
    delivered.extend(second);
    stats.records += more.records;
    stats.seconds += more.seconds;
    for (partition, n) in more.per_partition {
        *stats.per_partition.entry(partition).or_default() += n;
    }
    out.say(format!(
        "   {} records acknowledged (acks=all) in {:.2} s, {:.0} records/s",
        stats.records,
        stats.seconds,
        stats.records_per_second()
    ));
    let run = RunRecord {
        seed,
        count,
        first_wave,
        mark_millis,
        scenarios: scenarios.iter().map(|s| (*s).to_owned()).collect(),
        groups: Vec::new(),
    };
    Ok(Produced { run, delivered, start, stats })
}

fn now_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// `log`: where the keyed records landed, and the partitions as offsets.
async fn show_log(bootstrap: &str, topic: &str, produced: &Produced, out: Output) -> Result<Vec<String>> {
    out.say("log: a topic is a set of partitions; the key picks the partition, the partition gives the order");
    let mut users: BTreeMap<i32, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut offsets: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for d in &produced.delivered {
        users.entry(d.partition).or_default().insert(&d.key);
        let range = offsets.entry(d.partition).or_insert((d.offset, d.offset));
        range.0 = range.0.min(d.offset);
        range.1 = range.1.max(d.offset);
    }
    let mut rows = Vec::new();
    for (partition, (first, last)) in &offsets {
        let (low, high) = kafka::watermarks(bootstrap, topic, *partition).await?;
        rows.push(vec![
            partition.to_string(),
            produced.stats.per_partition.get(partition).copied().unwrap_or(0).to_string(),
            users[partition].len().to_string(),
            format!("{first} .. {last}"),
            format!("{low} / {high}"),
        ]);
    }
    out.table(
        "Where the run's records landed",
        &["partition", "records", "users (keys)", "offsets of this run", "low / high watermark"],
        rows,
    );
    let spread: usize = users.values().map(|u| u.len()).sum();
    let distinct: std::collections::BTreeSet<&str> = produced.delivered.iter().map(|d| d.key.as_str()).collect();
    out.say(format!(
        "   {} users, each in exactly one partition: {}",
        distinct.len(),
        if spread == distinct.len() { "yes" } else { "NO" }
    ));
    // The first few records of one partition, read back from an offset: offsets are positions.
    if let Some((&partition, &(first, _))) = offsets.iter().next() {
        let read = kafka::read_partition(bootstrap, topic, partition, first).await?;
        let rows = read.iter().filter(|r| of_seed(r, produced.run.seed)).take(5).filter_map(|r| {
            let event = decode(r)?;
            Some(vec![r.offset.to_string(), r.key.clone().unwrap_or_default(), event.event_id, event.action])
        });
        out.table(
            &format!("Partition {partition} read from offset {first} (no group, nothing committed)"),
            &["offset", "key", "event", "action"],
            rows,
        );
    }
    Ok(Vec::new())
}

/// A group name for this run: `<topic>-s<seed>-<role>`.
fn group_name(topic: &str, seed: u64, role: &str) -> String {
    format!("{topic}-s{seed}-{role}")
}

/// Points a fresh group at the run's first records (its members then resume there), so each
/// group of the run reads exactly the run.
async fn start_group_at_run(bootstrap: &str, topic: &str, group: &str, produced: &Produced) -> Result<()> {
    kafka::commit_positions(bootstrap, group, topic, &produced.start).await
}

/// Polls `members` side by side until they read `expected` records between them or go idle.
/// Returns what each read.
async fn consume_together(members: &[&GroupMember], expected: usize) -> Result<Vec<Vec<Incoming>>> {
    let mut read: Vec<Vec<Incoming>> = vec![Vec::new(); members.len()];
    let mut idle_rounds = 0;
    while read.iter().map(Vec::len).sum::<usize>() < expected && idle_rounds < 10 {
        let polls = members.iter().map(|m| m.poll(500, Duration::from_millis(300)));
        let results = futures::future::try_join_all(polls).await?;
        let got: usize = results.iter().map(Vec::len).sum();
        idle_rounds = if got == 0 { idle_rounds + 1 } else { 0 };
        for (slot, records) in read.iter_mut().zip(results) {
            slot.extend(records);
        }
    }
    Ok(read)
}

/// `replay`: a group reads the run and commits; then its offsets are reset, to the run's start,
/// to an offset, and to the time mark, and it reads again from there.
async fn replay(bootstrap: &str, topic: &str, produced: &Produced, out: Output) -> Result<Vec<String>> {
    let seed = produced.run.seed;
    let group = group_name(topic, seed, "replay");
    out.say(format!("replay: group {group} reads the run and commits; then its offsets are reset and it reads again"));
    start_group_at_run(bootstrap, topic, &group, produced).await?;
    let read_once = |label: String| {
        let group = group.clone();
        async move {
            let member = GroupMember::join(bootstrap, &group, "replayer", topic)?;
            let read = consume_together(&[&member], usize::MAX).await?.remove(0);
            member.commit(&read)?;
            member.leave().await?;
            let ours = read.iter().filter(|r| of_seed(r, seed)).count();
            Ok::<_, anyhow::Error>((label, read.len(), ours))
        }
    };
    let mut rows = Vec::new();
    let (label, total, ours) = read_once("first read, from the run's start".to_owned()).await?;
    rows.push(vec![label, "-".to_owned(), total.to_string(), ours.to_string()]);
    let resets = [
        (ResetTo::Earliest, "reset to earliest (the oldest record kept)"),
        (ResetTo::Offset(middle_offset(produced)), "reset to one offset on every partition"),
        (ResetTo::Timestamp(produced.run.mark_millis), "reset to the time mark between the waves"),
    ];
    for (to, label) in resets {
        let positions = kafka::reset_group(bootstrap, &group, topic, to).await?;
        let (label, total, ours) = read_once(label.to_owned()).await?;
        let at = positions.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(" ");
        rows.push(vec![label, at, total.to_string(), ours.to_string()]);
    }
    out.table(
        &format!("Replaying with group {group} (a reset commits new offsets while no member is live)"),
        &["read", "positions set (partition:offset)", "records read", "of this run"],
        rows,
    );
    out.say(format!(
        "   The time mark splits the run after event {}: the reset by time reread the {} events after it.",
        produced.run.first_wave,
        produced.run.count - produced.run.first_wave
    ));
    Ok(vec![group])
}

/// An offset about halfway through the run in a partition of average size: the same number
/// means a different place in each partition.
fn middle_offset(produced: &Produced) -> i64 {
    let partitions = produced.start.len().max(1);
    produced.start.values().copied().max().unwrap_or(0) + (produced.run.count / (2 * partitions)) as i64
}

/// The owners of each partition as a table: member and partitions.
fn owners_rows(members: &[&GroupMember]) -> Result<Vec<Vec<String>>> {
    members
        .iter()
        .map(|m| {
            let partitions = m.assignment()?;
            let list = partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
            Ok(vec![m.name.clone(), if list.is_empty() { "(none)".to_owned() } else { list }])
        })
        .collect()
}

/// Polls `members` until every group among them has split `produced`'s topic between its
/// members (each must poll for a rebalance to complete).
async fn settle_together(members: &[&GroupMember], produced: &Produced) -> Result<Vec<Vec<Incoming>>> {
    kafka::settle_groups(members, produced.start.len() as i32, Duration::from_secs(30)).await
}

/// What a member was assigned (+) and had revoked (-), in order.
fn describe_events(events: &[kafka::RebalanceEvent]) -> String {
    let list = |p: &[i32]| p.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    events
        .iter()
        .map(|e| match e {
            kafka::RebalanceEvent::Assigned(p) => format!("+[{}]", list(p)),
            kafka::RebalanceEvent::Revoked(p) => format!("-[{}]", list(p)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_give_back_their_seed_and_index() {
        let events = clickstream::generate(&ClickstreamSpec { seed: 42, count: 3, ..Default::default() });
        assert_eq!(seed_and_index(&events[2].event_id), Some((42, 2)));
        assert_eq!(seed_and_index("x42-e1"), None);
    }

    #[test]
    fn every_kafka_row_of_the_mapping_names_its_kinesis_counterpart() {
        let rows = kinesis_mapping();
        assert!(rows.iter().all(|r| r.len() == 3 && r.iter().all(|cell| !cell.is_empty())));
        for idea in ["partition", "offset", "consumer group", "group coordinator", "committed offset"] {
            assert!(rows.iter().any(|r| r[0].starts_with(idea)), "the table lacks {idea}");
        }
    }
}
