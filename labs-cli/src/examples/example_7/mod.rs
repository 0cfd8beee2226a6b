//! Example 7: partition keys, ordering, hot shards and resharding (DDIA 11, "Partitioned Logs").
//!
//! Events are order lifecycles (`labs_core::orders`): each order's `step` rises 1, 2, 3, ... in
//! the order the producer emitted them, so any consumer can tell from the data whether it saw an
//! order's steps in order. Every scenario run is recorded as a stream tag
//! (`labs:run:<scenario>:<seed>` = `<orders> #<ordinal>` and each split or merge it made), so
//! `verify` regenerates what each run produced, knows what was produced before each reshard, and
//! checks the stream itself.

mod hot_shard;
mod key_order;
mod producers;
mod random_keys;
mod reshard;
mod retry_reorder;
mod verify;

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use labs_core::orders::{Customers, OrderEvent, OrderSpec};
use labs_infra::stack::Stream;
use serde::Serialize;

use self::hot_shard::{HotShardReport, hot_shard};
use self::key_order::{KeyOrderReport, key_order};
use self::random_keys::{RandomKeysReport, random_keys};
use self::reshard::{ReshardReport, reshard};
use self::retry_reorder::{RetryReorderReport, retry_reorder};
use super::{About, RunOptions, VerifyOptions};
use crate::driver::kinesis::{self, Incoming, Outgoing, Position, ProduceStats};
use crate::driver::seeds;
use crate::output::{self, Output};
use crate::target::{Target, TargetKind};

pub const ABOUT: About = About::new(7, "Partitions and ordering", "per-key order, hot shards, resharding", "Kinesis");

/// The stream every scenario produces into (`infra/stacks/example-7.toml`).
const ORDERS: Stream = Stream::new("ex7-orders");
const SCENARIOS: &[&str] = &{
    let mut names = [""; Scenario::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Scenario::ALL[i].name();
        i += 1;
    }
    names
};
const DEFAULT_ORDERS: usize = 200;
const MAX_ORDERS: usize = 20_000;
/// Kinesis allows 50 tags per stream; labs' ownership tags take two, the last verify result one
/// (`examples::verdict`), each run one.
const MAX_RUNS: usize = 47;
/// Share of entries the retry-reorder scenario refuses on the client side.
const REFUSED_PERCENT: u32 = 20;
/// How many of the hottest customer's last events the hot-shard scenario steers elsewhere.
const STEERED: usize = 20;
/// Rows of examples a table shows.
const EXAMPLES: usize = 5;

example!(Example7 { scenarios: SCENARIOS, resources: [ORDERS], run: run, verify: verify::verify });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Scenario {
    KeyOrder,
    RandomKeys,
    HotShard,
    Reshard,
    RetryReorder,
}

impl Scenario {
    const ALL: [Scenario; 5] =
        [Scenario::KeyOrder, Scenario::RandomKeys, Scenario::HotShard, Scenario::Reshard, Scenario::RetryReorder];

    const fn name(self) -> &'static str {
        match self {
            Scenario::KeyOrder => "key-order",
            Scenario::RandomKeys => "random-keys",
            Scenario::HotShard => "hot-shard",
            Scenario::Reshard => "reshard",
            Scenario::RetryReorder => "retry-reorder",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
            anyhow::anyhow!("example-7 has no scenario '{name}': use one of {}", names.join(", "))
        })
    }

    /// The sets of orders a run of this scenario produces. `verify` calls this too, so run and
    /// verify agree on what was produced.
    fn parts(self, seed: u64, orders: usize) -> Vec<Part> {
        let spec = |namespace: &str, customers, in_flight| OrderSpec {
            namespace: namespace.to_owned(),
            seed,
            orders,
            customers,
            in_flight,
        };
        let even = Customers::Even { customers: 50 };
        match self {
            Scenario::KeyOrder => vec![Part { label: "key-order", spec: spec("ko", even, 16), keeps_order: true }],
            Scenario::RandomKeys => {
                vec![Part { label: "random-keys", spec: spec("rk", even, 16), keeps_order: false }]
            }
            Scenario::HotShard => vec![Part {
                label: "hot-shard",
                spec: spec("hs", Customers::Zipf { customers: 50, exponent_hundredths: 150 }, 16),
                keeps_order: false,
            }],
            // Every order under way at once, so most orders have steps before and after each reshard.
            Scenario::Reshard => vec![Part { label: "reshard", spec: spec("rs", even, orders), keeps_order: true }],
            // Few orders at once: an order's steps sit close together, often in one PutRecords call.
            Scenario::RetryReorder => vec![
                Part { label: "naive: resend refused entries", spec: spec("rn", even, 8), keeps_order: false },
                Part { label: "fix: one record per key per call", spec: spec("rb", even, 8), keeps_order: true },
                Part {
                    label: "fix: PutRecord + SequenceNumberForOrdering",
                    spec: spec("rp", even, 8),
                    keeps_order: true,
                },
            ],
        }
    }
}

/// One generated set of orders within a scenario run.
struct Part {
    label: &'static str,
    spec: OrderSpec,
    /// Whether its producer promises each order's steps in order (what `verify` checks).
    keeps_order: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    scenario: Scenario,
    seed: u64,
    orders: usize,
    /// How many runs the stream recorded before this one: orders runs in time, so `verify` knows
    /// which runs were produced before a reshard. `None` for runs recorded by older versions.
    ordinal: Option<usize>,
    /// The splits and merges this run made, recorded as each one happened.
    reshards: Vec<Reshard>,
}

/// A split or merge a run made: its parents, the hash range they covered together, and how many
/// of the run's events were produced before it. All that was produced into that range before it
/// was in the parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Reshard {
    operation: String,
    parents: Vec<String>,
    #[serde(serialize_with = "as_text")]
    starting_hash_key: u128,
    #[serde(serialize_with = "as_text")]
    ending_hash_key: u128,
    events_before: usize,
}

fn as_text<S: serde::Serializer>(value: &u128, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_string())
}

impl Run {
    /// The tag value: `<orders> #<ordinal>` and one ` <operation>:<parents>:<start>-<end>:<events>`
    /// per reshard, hash keys in hex (a tag value holds 256 characters).
    fn tag_value(&self) -> String {
        let mut value = self.orders.to_string();
        if let Some(ordinal) = self.ordinal {
            value.push_str(&format!(" #{ordinal}"));
        }
        for r in &self.reshards {
            value.push_str(&format!(
                " {}:{}:{:x}-{:x}:{}",
                r.operation,
                r.parents.join("+"),
                r.starting_hash_key,
                r.ending_hash_key,
                r.events_before
            ));
        }
        value
    }

    fn parse(name: &str, value: &str) -> Option<Run> {
        let (scenario, seed) = name.split_once(':')?;
        let mut words = value.split(' ');
        let orders = words.next()?.parse().ok()?;
        let mut ordinal = None;
        let mut reshards = Vec::new();
        for word in words {
            if let Some(n) = word.strip_prefix('#') {
                ordinal = Some(n.parse().ok()?);
                continue;
            }
            let mut parts = word.split(':');
            let (operation, parents, range, events) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let (start, end) = range.split_once('-')?;
            reshards.push(Reshard {
                operation: operation.to_owned(),
                parents: parents.split('+').map(str::to_owned).collect(),
                starting_hash_key: u128::from_str_radix(start, 16).ok()?,
                ending_hash_key: u128::from_str_radix(end, 16).ok()?,
                events_before: events.parse().ok()?,
            });
        }
        Some(Run { scenario: Scenario::parse(scenario).ok()?, seed: seed.parse().ok()?, orders, ordinal, reshards })
    }
}

/// The runs recorded on the stream. A run tag labs cannot read is an error, not skipped: a
/// verifier that skipped it would check less than was produced.
async fn recorded_runs(client: &Client, stream: &str) -> Result<Vec<Run>> {
    let runs = kinesis::recorded_runs(client, stream, "example-7").await?;
    runs.into_iter()
        .map(|(name, value)| {
            Run::parse(&name, &value)
                .ok_or_else(|| anyhow::anyhow!("{stream} records a run labs cannot read: labs:run:{name} = {value}"))
        })
        .collect()
}

async fn record_run(client: &Client, stream: &str, run: &Run) -> Result<()> {
    kinesis::record_run(client, stream, &format!("{}:{}", run.scenario.name(), run.seed), &run.tag_value()).await
}

fn encode(event: &OrderEvent, partition_key: String) -> Outgoing {
    Outgoing { partition_key, data: serde_json::to_vec(event).expect("events serialize") }
}

fn decode(record: &Incoming) -> Option<OrderEvent> {
    serde_json::from_slice(&record.data).ok()
}

/// A record read back, with the event it carries.
struct Read {
    record: Incoming,
    event: OrderEvent,
}

fn decode_run(records: Vec<Incoming>, id_prefix: &str) -> Vec<Read> {
    records
        .into_iter()
        .filter_map(|record| decode(&record).map(|event| Read { record, event }))
        .filter(|read| read.event.order_id.starts_with(id_prefix))
        .collect()
}

/// This run's records as a plain consumer reads the whole stream: every shard from
/// TRIM_HORIZON, parents before children, one shard after another.
async fn read_back(target: &Target, stream: &str, id_prefix: &str) -> Result<Vec<Read>> {
    let spinner = output::spinner("reading every shard from TRIM_HORIZON");
    let records = kinesis::read_stream(&target.clients.kinesis, stream, &Position::TrimHorizon).await;
    spinner.finish_and_clear();
    Ok(decode_run(records?, id_prefix))
}

fn arrivals(reads: &[Read]) -> impl Iterator<Item = (&str, u32)> {
    reads.iter().map(|r| (r.event.order_id.as_str(), r.event.step))
}

fn steps_text(steps: &[u32]) -> String {
    steps.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

/// Each step of an order with the shard it was read from, in reading order: `3@shard 2 4@shard 2`.
fn steps_with_shards(reads: &[Read], order_id: &str) -> String {
    reads
        .iter()
        .filter(|r| r.event.order_id == order_id)
        .map(|r| format!("{}@{}", r.event.step, short_shard(&r.record.shard_id)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `shardId-000000000004` -> `shard 4`, for tables that would otherwise wrap.
fn short_shard(shard_id: &str) -> String {
    shard_id
        .strip_prefix("shardId-")
        .and_then(|n| n.parse::<u64>().ok())
        .map_or_else(|| shard_id.to_owned(), |n| format!("shard {n}"))
}

fn what_the_target_is(kind: &TargetKind) -> String {
    match kind {
        TargetKind::Embedded { .. } => {
            format!("the embedded emulator (MiniStack {})", crate::emulator::MINISTACK_VERSION)
        }
        TargetKind::Endpoint { endpoint } => format!("the emulator at {endpoint}"),
        TargetKind::Aws { .. } => "AWS".to_owned(),
    }
}

async fn produce_in_key_order(target: &Target, stream: &str, records: Vec<Outgoing>) -> Result<ProduceStats> {
    let bar = output::progress(records.len() as u64, "PutRecords");
    let stats = producers::produce_in_key_order(&target.clients.kinesis, stream, records, None, &bar).await;
    bar.finish_and_clear();
    stats
}

fn produced_line(stats: &ProduceStats) -> String {
    format!(
        "   {} records in {:.2} s, {} PutRecords calls, {} entries refused and sent again",
        stats.records, stats.seconds, stats.calls, stats.retried_entries
    )
}

#[derive(Serialize)]
#[serde(tag = "scenario", rename_all = "kebab-case")]
enum ScenarioReport {
    KeyOrder(KeyOrderReport),
    RandomKeys(RandomKeysReport),
    HotShard(HotShardReport),
    Reshard(ReshardReport),
    RetryReorder(RetryReorderReport),
}

#[derive(Serialize)]
struct RunReport {
    stream: String,
    scenarios: Vec<ScenarioReport>,
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    if args.query.is_some() {
        bail!("example-7 has no --query: it runs scenarios (--scenario NAME)");
    }
    let scenarios = match &args.scenario {
        Some(name) => vec![Scenario::parse(name)?],
        None => Scenario::ALL.to_vec(),
    };
    let orders = args.count.unwrap_or(DEFAULT_ORDERS);
    if !(1..=MAX_ORDERS).contains(&orders) {
        bail!("--count is the number of orders per scenario: use 1 to {MAX_ORDERS}");
    }
    let client = &target.clients.kinesis;
    let stream = target.name(ORDERS);
    let shards = kinesis::list_shards(client, &stream).await?;
    let runs = recorded_runs(client, &stream).await?;
    seeds::check_room(runs.len(), scenarios.len(), MAX_RUNS, &stream, "example-7")?;
    let mut planned = Vec::new();
    for (index, scenario) in scenarios.into_iter().enumerate() {
        let used: Vec<u64> = runs.iter().filter(|r| r.scenario == scenario).map(|r| r.seed).collect();
        let seed = seeds::for_scenario(args.seed, &used, scenario.name(), &stream, "example-7")?;
        planned.push(Run { scenario, seed, orders, ordinal: Some(runs.len() + index), reshards: Vec::new() });
    }
    target.confirm(&format!("Produce {} scenario runs of {orders} orders into {stream}?", planned.len()))?;
    out.say(format!(
        "Stream {stream}: {} open shards. Events are order lifecycles (created, paid, packed, shipped, delivered):\n\
         each carries order_id, customer_id and step (1, 2, 3, ... in the order the producer emitted them).",
        shards.iter().filter(|s| s.open).count()
    ));

    let mut reports = Vec::new();
    for run in &mut planned {
        record_run(client, &stream, run).await?;
        let report = match run.scenario {
            Scenario::KeyOrder => ScenarioReport::KeyOrder(key_order(target, &stream, run, out).await?),
            Scenario::RandomKeys => ScenarioReport::RandomKeys(random_keys(target, &stream, run, out).await?),
            Scenario::HotShard => ScenarioReport::HotShard(hot_shard(target, &stream, run, out).await?),
            Scenario::Reshard => ScenarioReport::Reshard(reshard(target, &stream, run, out).await?),
            Scenario::RetryReorder => ScenarioReport::RetryReorder(retry_reorder(target, &stream, run, out).await?),
        };
        reports.push(report);
    }
    out.say(format!(
        "\nCheck it from the data: labs verify example-7{} reads the whole stream and checks every order\n\
         of key-order, reshard and the two fixed producers of retry-reorder.",
        if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
    ));
    out.json(&RunReport { stream, scenarios: reports })
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}
