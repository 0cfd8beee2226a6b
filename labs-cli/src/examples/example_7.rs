//! Example 7: partition keys, ordering, hot shards and resharding (DDIA 11, "Partitioned Logs").
//!
//! Events are order lifecycles (`labs_core::orders`): each order's `step` rises 1, 2, 3, ... in
//! the order the producer emitted them, so any consumer can tell from the data whether it saw an
//! order's steps in order. Every scenario run is recorded as a stream tag
//! (`labs:run:<scenario>:<seed>` = orders), so `verify` regenerates what each run produced and
//! checks the stream itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use labs_core::orders::{
    self, Customers, OrderEvent, OrderSpec, OrderingReport, RefusalPlan, ShardLoad, Verdict, check_order,
    steps_per_order,
};
use labs_core::partition::{ShardRange, hash_key, shard_for_key};
use serde::Serialize;

use crate::cli::RunArgs;
use crate::driver::kinesis::{self as log, Incoming, Outgoing, Position, ProduceStats, PutOptions, Refusals, Until};
use crate::output::{self, Output};
use crate::target::{Target, TargetKind};

const STREAM: &str = "ex7-orders";
const DEFAULT_ORDERS: usize = 200;
const MAX_ORDERS: usize = 20_000;
/// Kinesis allows 50 tags per stream; labs' ownership tags take two, each run one.
const MAX_RUNS: usize = 48;
/// Share of entries the retry-reorder scenario refuses on the client side.
const REFUSED_PERCENT: u32 = 20;
/// How many of the hottest customer's last events the hot-shard scenario steers elsewhere.
const STEERED: usize = 20;
/// Rows of examples a table shows.
const EXAMPLES: usize = 5;

pub fn stream_name(target: &Target) -> String {
    format!("{}-{STREAM}", target.prefix)
}

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

    fn name(self) -> &'static str {
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
}

/// The runs recorded on the stream, in tag order.
async fn recorded_runs(client: &Client, stream: &str) -> Result<Vec<Run>> {
    let runs = log::recorded_runs(client, stream, "example-7").await?;
    Ok(runs
        .into_iter()
        .filter_map(|(name, orders)| {
            let (scenario, seed) = name.split_once(':')?;
            Some(Run {
                scenario: Scenario::parse(scenario).ok()?,
                seed: seed.parse().ok()?,
                orders: orders.parse().ok()?,
            })
        })
        .collect())
}

async fn record_run(client: &Client, stream: &str, run: &Run) -> Result<()> {
    log::record_run(client, stream, &format!("{}:{}", run.scenario.name(), run.seed), &run.orders.to_string()).await
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
    let records = log::read_stream(&target.clients.kinesis, stream, &Position::TrimHorizon).await;
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
    let stats = log::produce_in_key_order(&target.clients.kinesis, stream, records, None, &bar).await;
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

pub async fn run(target: &Target, args: &RunArgs, out: Output) -> Result<()> {
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
    let kinesis = &target.clients.kinesis;
    let stream = stream_name(target);
    let shards = log::list_shards(kinesis, &stream).await?;
    let runs = recorded_runs(kinesis, &stream).await?;
    if runs.len() + scenarios.len() > MAX_RUNS {
        bail!(
            "{stream} already records {} runs and Kinesis allows 50 tags per stream (labs uses one per run): \
             `labs down example-7` and `labs up example-7` to start over",
            runs.len()
        );
    }
    let mut planned = Vec::new();
    for scenario in scenarios {
        let used = |seed: u64| runs.iter().any(|r| r.scenario == scenario && r.seed == seed);
        let seed = match args.seed {
            Some(seed) if used(seed) => bail!(
                "seed {seed} was already used for {} in {stream}: pick another --seed, or `labs down example-7` to start over",
                scenario.name()
            ),
            Some(seed) => seed,
            None => runs.iter().filter(|r| r.scenario == scenario).map(|r| r.seed + 1).max().unwrap_or(1),
        };
        planned.push(Run { scenario, seed, orders });
    }
    target.confirm(&format!("Produce {} scenario runs of {orders} orders into {stream}?", planned.len()))?;
    out.say(format!(
        "Stream {stream}: {} open shards. Events are order lifecycles (created, paid, packed, shipped, delivered):\n\
         each carries order_id, customer_id and step (1, 2, 3, ... in the order the producer emitted them).",
        shards.iter().filter(|s| s.open).count()
    ));

    let mut reports = Vec::new();
    for run in &planned {
        record_run(kinesis, &stream, run).await?;
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

// ---------------------------------------------------------------------------------------------
// key-order

#[derive(Serialize)]
struct ShardSpread {
    shard_id: String,
    records: usize,
    orders: usize,
    first_emitted: u64,
    last_emitted: u64,
}

#[derive(Serialize)]
struct BackwardRead {
    previous_emitted: u64,
    previous_shard: String,
    emitted: u64,
    shard: String,
}

#[derive(Serialize)]
struct KeyOrderReport {
    seed: u64,
    orders: usize,
    produced: ProduceStats,
    shards: Vec<ShardSpread>,
    /// Orders whose records all sit on one shard.
    orders_on_one_shard: usize,
    ordering: OrderingReport,
    /// Shards whose records are in emission order (the producer wrote them in that order).
    shards_in_emission_order: usize,
    /// How often the consumer read a record emitted before the one it had just read...
    backward_reads: usize,
    /// ...and how many of those were where it moved on to the next shard.
    backward_reads_at_shard_change: usize,
    first_backward_read: Option<BackwardRead>,
}

async fn key_order(target: &Target, stream: &str, run: &Run, out: Output) -> Result<KeyOrderReport> {
    let part = Scenario::KeyOrder.parts(run.seed, run.orders).remove(0);
    let events = orders::generate(&part.spec);
    out.say(format!(
        "\n== key-order (seed {}) ==\n1. Producing {} events of {} orders, interleaved, partition key = order_id.\n   \
         The producer keeps each order's steps in order: a PutRecords call ends before a key would repeat,\n   \
         so an order's next step goes only after the previous one was written.",
        run.seed,
        events.len(),
        run.orders
    ));
    let records = events.iter().map(|e| encode(e, e.order_id.clone())).collect();
    let produced = produce_in_key_order(target, stream, records).await?;
    out.say(produced_line(&produced));

    out.say("2. Consuming every shard from TRIM_HORIZON, one shard after another:");
    let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
    let ordering = check_order(&steps_per_order(&events), arrivals(&reads), |_| false);

    let mut spread: BTreeMap<&str, ShardSpread> = BTreeMap::new();
    let mut order_shards: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut orders_per_shard: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for read in &reads {
        let shard = read.record.shard_id.as_str();
        let entry = spread.entry(shard).or_insert_with(|| ShardSpread {
            shard_id: shard.to_owned(),
            records: 0,
            orders: 0,
            first_emitted: read.event.emitted,
            last_emitted: read.event.emitted,
        });
        entry.records += 1;
        entry.last_emitted = read.event.emitted;
        order_shards.entry(&read.event.order_id).or_default().insert(shard);
        orders_per_shard.entry(shard).or_default().insert(&read.event.order_id);
    }
    let shards: Vec<ShardSpread> = spread
        .into_values()
        .map(|mut s| {
            s.orders = orders_per_shard[s.shard_id.as_str()].len();
            s
        })
        .collect();
    let orders_on_one_shard = order_shards.values().filter(|s| s.len() == 1).count();

    // A few orders, with where each step sat in its shard: other orders' records come between.
    let mut position_in_shard: HashMap<&str, usize> = HashMap::new();
    let mut samples: BTreeMap<&str, (Vec<u32>, Vec<usize>, &str)> = BTreeMap::new();
    for read in &reads {
        let position = position_in_shard.entry(&read.record.shard_id).or_default();
        *position += 1;
        let sample = samples.entry(&read.event.order_id).or_insert((Vec::new(), Vec::new(), &read.record.shard_id));
        sample.0.push(read.event.step);
        sample.1.push(*position);
    }
    out.table(
        "   A few orders: all steps on one shard, in order, with other orders' records in between",
        &["order", "shard", "steps as read", "record # within the shard"],
        samples.iter().take(EXAMPLES).map(|(order, (steps, positions, shard))| {
            vec![
                (*order).to_owned(),
                (*shard).to_owned(),
                steps_text(steps),
                positions.iter().map(|p| format!("#{p}")).collect::<Vec<_>>().join(" "),
            ]
        }),
    );

    let backward: Vec<&[Read]> = reads.windows(2).filter(|w| w[1].event.emitted < w[0].event.emitted).collect();
    let backward_reads = backward.len();
    let at_shard_change = backward.iter().filter(|w| w[0].record.shard_id != w[1].record.shard_id).count();
    let shards_in_emission_order = shards.len()
        - backward
            .iter()
            .filter(|w| w[0].record.shard_id == w[1].record.shard_id)
            .map(|w| &w[0].record.shard_id)
            .collect::<BTreeSet<_>>()
            .len();
    let first_backward_read = backward.first().map(|w| BackwardRead {
        previous_emitted: w[0].event.emitted,
        previous_shard: w[0].record.shard_id.clone(),
        emitted: w[1].event.emitted,
        shard: w[1].record.shard_id.clone(),
    });
    out.table(
        "   Per shard: the emission numbers (the producer's global order) overlap across shards",
        &["shard", "records", "orders", "first record emitted as #", "last record emitted as #"],
        shards.iter().map(|s| {
            vec![
                s.shard_id.clone(),
                s.records.to_string(),
                s.orders.to_string(),
                s.first_emitted.to_string(),
                s.last_emitted.to_string(),
            ]
        }),
    );
    out.table(
        "",
        &["check", "result"],
        [
            vec![
                "orders whose steps arrived 1, 2, 3, ... with no gap".to_owned(),
                format!("{} of {}", ordering.in_order, ordering.orders),
            ],
            vec![
                "orders whose records are all on one shard".to_owned(),
                format!("{orders_on_one_shard} of {}", run.orders),
            ],
            vec![
                "shards whose records are in emission order".to_owned(),
                format!("{shards_in_emission_order} of {}", shards.len()),
            ],
            vec![
                "reads of a record emitted before the one read just before it".to_owned(),
                format!("{backward_reads} ({at_shard_change} where the consumer moved on to the next shard)"),
            ],
        ],
    );
    let example = first_backward_read.as_ref().map_or(String::new(), |b| {
        format!(
            ",\n   the first to #{} on {} right after #{} on {}",
            b.emitted, b.shard, b.previous_emitted, b.previous_shard
        )
    });
    out.say(format!(
        "   Per key, order holds: an order's records share a partition key, so they hash to one shard, and a\n   \
         shard is a log that keeps records in the order they were written. Across shards there is no order:\n   \
         every shard holds records from the whole run (the emission numbers above overlap), so reading shard\n   \
         after shard the consumer went back to an earlier record {backward_reads} times{example}.\n   \
         A consumer reading the shards in parallel would see yet another interleaving. Nothing in the log says whether\n   \
         a record on one shard came before or after a record on another.\n   \
         Kinesis orders records per shard, hence per key, and promises nothing across shards. Kafka: the same,\n   \
         per partition."
    ));
    if !ordering.is_ok() || orders_on_one_shard != run.orders {
        bail!(
            "key-order: {} orders did not arrive in order or were spread over shards (see above): the stream broke per-key order",
            ordering.violations.len() + (run.orders - orders_on_one_shard)
        );
    }
    Ok(KeyOrderReport {
        seed: run.seed,
        orders: run.orders,
        produced,
        shards,
        orders_on_one_shard,
        ordering,
        shards_in_emission_order,
        backward_reads,
        backward_reads_at_shard_change: at_shard_change,
        first_backward_read,
    })
}

// ---------------------------------------------------------------------------------------------
// random-keys

#[derive(Serialize)]
struct RandomKeysReport {
    seed: u64,
    orders: usize,
    produced: ProduceStats,
    orders_on_several_shards: usize,
    ordering: OrderingReport,
}

async fn random_keys(target: &Target, stream: &str, run: &Run, out: Output) -> Result<RandomKeysReport> {
    let part = Scenario::RandomKeys.parts(run.seed, run.orders).remove(0);
    let events = orders::generate(&part.spec);
    out.say(format!(
        "\n== random-keys (seed {}) ==\n1. Producing the same kind of orders ({} events of {} orders), partition key = a random value per record.",
        run.seed,
        events.len(),
        run.orders
    ));
    let records = events.iter().map(|e| encode(e, format!("{:032x}", rand::random::<u128>()))).collect();
    let bar = output::progress(events.len() as u64, "PutRecords");
    let produced = log::produce(&target.clients.kinesis, stream, records, None, &bar).await;
    bar.finish_and_clear();
    let produced = produced?;
    out.say(produced_line(&produced));

    out.say("2. Consuming every shard from TRIM_HORIZON, one shard after another:");
    let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
    let ordering = check_order(&steps_per_order(&events), arrivals(&reads), |_| false);
    let mut order_shards: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for read in &reads {
        order_shards.entry(&read.event.order_id).or_default().insert(&read.record.shard_id);
    }
    let several = order_shards.values().filter(|s| s.len() > 1).count();
    let reordered = ordering.reordered();
    out.table(
        "   Orders whose steps arrived out of order (step@shard, in reading order)",
        &["order", "steps as read", "where each step was"],
        ordering
            .violations
            .iter()
            .filter(|t| t.verdict == Verdict::Reordered)
            .take(EXAMPLES)
            .map(|t| vec![t.order_id.clone(), steps_text(&t.arrival), steps_with_shards(&reads, &t.order_id)]),
    );
    out.table(
        "",
        &["check", "result"],
        [
            vec!["orders with steps on more than one shard".to_owned(), format!("{several} of {}", run.orders)],
            vec!["orders whose steps arrived out of order".to_owned(), format!("{reordered} of {}", run.orders)],
        ],
    );
    out.say(format!(
        "   With a random key, an order's steps scatter over the shards. Each shard still kept its own records in\n   \
         order; but the steps of one order now sit in different logs, and positions in different shards say\n   \
         nothing about each other. This consumer read one shard after another; one reading shards in parallel\n   \
         would interleave them differently, and no consumer can recover the producer's order from the log alone\n   \
         (only a field like `step` lets it notice, and buffer to repair).\n   \
         The partition key must be the thing whose order matters: here, the order id.{}",
        if reordered == 0 {
            "\n   This time no order happened to come out of order: try a larger --count."
        } else {
            ""
        }
    ));
    let other: Vec<_> = ordering.violations.iter().filter(|t| t.verdict != Verdict::Reordered).collect();
    if let Some(trace) = other.first() {
        bail!(
            "random-keys: {} orders lost or repeated records, e.g. {}: {}",
            other.len(),
            trace.order_id,
            trace.verdict.describe()
        );
    }
    Ok(RandomKeysReport { seed: run.seed, orders: run.orders, produced, orders_on_several_shards: several, ordering })
}

// ---------------------------------------------------------------------------------------------
// hot-shard

#[derive(Serialize)]
struct ShardBar {
    shard_id: String,
    starting_hash_key: String,
    ending_hash_key: String,
    key_space_percent: f64,
    records: usize,
    steered_records: usize,
}

#[derive(Serialize)]
struct KeyMapping {
    partition_key: String,
    records: usize,
    md5_hex: String,
    hash_key: String,
    computed_shard: Option<String>,
    landed_on: Vec<String>,
    agrees: bool,
}

#[derive(Serialize)]
struct Steering {
    partition_key: String,
    explicit_hash_key: String,
    intended_shard: String,
    records: usize,
    landed_on: Vec<String>,
    agrees: bool,
}

#[derive(Serialize)]
struct HotShardReport {
    seed: u64,
    orders: usize,
    produced: ProduceStats,
    shards: Vec<ShardBar>,
    keys: Vec<KeyMapping>,
    steering: Steering,
}

fn key_space_percent(range: &ShardRange) -> f64 {
    ((range.ending_hash_key - range.starting_hash_key) as f64 + 1.0) / 2f64.powi(128) * 100.0
}

fn bar(count: usize, max: usize) -> String {
    const WIDTH: usize = 40;
    let cells = if max == 0 { 0 } else { (count * WIDTH).div_ceil(max) };
    "█".repeat(cells)
}

async fn hot_shard(target: &Target, stream: &str, run: &Run, out: Output) -> Result<HotShardReport> {
    let kinesis = &target.clients.kinesis;
    let part = Scenario::HotShard.parts(run.seed, run.orders).remove(0);
    let events = orders::generate(&part.spec);
    let mut per_customer: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &events {
        *per_customer.entry(&event.customer_id).or_default() += 1;
    }
    let mut customers: Vec<(&str, usize)> = per_customer.into_iter().collect();
    customers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let hottest = customers[0].0.to_owned();
    // The hottest customer's last events are held back, to be steered with ExplicitHashKey.
    let held_back: BTreeSet<u64> = {
        let theirs: Vec<u64> = events.iter().filter(|e| e.customer_id == hottest).map(|e| e.emitted).collect();
        let count = STEERED.min(theirs.len() / 4).max(1);
        theirs[theirs.len() - count..].iter().copied().collect()
    };
    out.say(format!(
        "\n== hot-shard (seed {}) ==\n1. Producing {} events of {} orders from 50 customers, a few of whom place most orders\n   \
         (customer n orders in proportion to 1/n^1.5, so the first three place about two thirds);\n   \
         partition key = customer_id. ({} of {hottest}'s last events are held back for step 3.)",
        run.seed,
        events.len() - held_back.len(),
        run.orders,
        held_back.len()
    ));
    let records =
        events.iter().filter(|e| !held_back.contains(&e.emitted)).map(|e| encode(e, e.customer_id.clone())).collect();
    let bar_ = output::progress((events.len() - held_back.len()) as u64, "PutRecords");
    let produced = log::produce(kinesis, stream, records, None, &bar_).await;
    bar_.finish_and_clear();
    let produced = produced?;
    out.say(produced_line(&produced));

    let open: Vec<log::Shard> = log::list_shards(kinesis, stream).await?.into_iter().filter(|s| s.open).collect();
    let ranges: Vec<ShardRange> = open.iter().map(log::Shard::range).collect::<Result<_>>()?;
    let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
    let mut per_shard: BTreeMap<&str, usize> = BTreeMap::new();
    let mut landed: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for read in &reads {
        *per_shard.entry(&read.record.shard_id).or_default() += 1;
        landed.entry(&read.record.partition_key).or_default().insert(&read.record.shard_id);
    }

    out.table(
        "2. The open shards' hash key ranges, as ListShards reports them (a 128-bit key space)",
        &["shard", "starting hash key", "ending hash key", "share of the key space"],
        ranges.iter().map(|r| {
            vec![
                r.shard_id.clone(),
                r.starting_hash_key.to_string(),
                r.ending_hash_key.to_string(),
                format!("{:.1}%", key_space_percent(r)),
            ]
        }),
    );
    let max = per_shard.values().copied().max().unwrap_or(0);
    let total: usize = per_shard.values().sum();
    out.table(
        "   Records of this run per shard",
        &["shard", "records", "share", ""],
        ranges.iter().map(|r| {
            let n = per_shard.get(r.shard_id.as_str()).copied().unwrap_or(0);
            vec![
                r.shard_id.clone(),
                n.to_string(),
                format!("{:.0}%", 100.0 * n as f64 / total.max(1) as f64),
                bar(n, max),
            ]
        }),
    );

    let keys: Vec<KeyMapping> = customers
        .iter()
        .take(3)
        .map(|(key, records)| {
            let computed = shard_for_key(&ranges, key).map(|i| ranges[i].shard_id.clone());
            let landed_on: Vec<String> =
                landed.get(key).map(|s| s.iter().map(|s| (*s).to_owned()).collect()).unwrap_or_default();
            let agrees = computed.as_ref().is_some_and(|c| landed_on == [c.clone()]);
            KeyMapping {
                partition_key: (*key).to_owned(),
                records: *records,
                md5_hex: format!("{:032x}", hash_key(key)),
                hash_key: hash_key(key).to_string(),
                computed_shard: computed,
                landed_on,
                agrees,
            }
        })
        .collect();
    out.table(
        "   How a key finds its shard: MD5 of the partition key, read as a 128-bit number, falls in one range",
        &["partition key", "MD5 (hex)", "as a number", "in the range of", "records landed on", "agrees"],
        keys.iter().map(|k| {
            vec![
                k.partition_key.clone(),
                k.md5_hex.clone(),
                k.hash_key.clone(),
                k.computed_shard.clone().unwrap_or_else(|| "no shard".into()),
                k.landed_on.join(", "),
                if k.agrees { "yes" } else { "NO" }.to_owned(),
            ]
        }),
    );

    // 3. Steer the held-back records onto the quietest shard the hot key does not map to.
    let hot_shard = shard_for_key(&ranges, &hottest).map(|i| ranges[i].shard_id.clone()).unwrap_or_default();
    let quiet = ranges
        .iter()
        .filter(|r| r.shard_id != hot_shard)
        .min_by_key(|r| per_shard.get(r.shard_id.as_str()).copied().unwrap_or(0))
        .unwrap_or(&ranges[0]);
    let explicit = quiet.starting_hash_key + (quiet.ending_hash_key - quiet.starting_hash_key) / 2;
    out.say(format!(
        "3. Steering: the {} held-back events of {hottest} go with PutRecord, the same partition key, and\n   \
         ExplicitHashKey = {explicit} (the middle of {}'s range), which replaces the MD5.",
        held_back.len(),
        quiet.shard_id
    ));
    let options = PutOptions { explicit_hash_key: Some(explicit), sequence_number_for_ordering: None };
    let mut steered_to: BTreeSet<String> = BTreeSet::new();
    let steer_bar = output::progress(held_back.len() as u64, "PutRecord");
    for event in events.iter().filter(|e| held_back.contains(&e.emitted)) {
        let placement = log::put_record(kinesis, stream, &encode(event, hottest.clone()), &options).await;
        steer_bar.inc(1);
        steered_to.insert(placement?.shard_id);
    }
    steer_bar.finish_and_clear();
    let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
    let mut steered_read: BTreeMap<&str, usize> = BTreeMap::new();
    let mut after: BTreeMap<&str, usize> = BTreeMap::new();
    for read in &reads {
        *after.entry(&read.record.shard_id).or_default() += 1;
        if held_back.contains(&read.event.emitted) {
            *steered_read.entry(&read.record.shard_id).or_default() += 1;
        }
    }
    let steering = Steering {
        partition_key: hottest.clone(),
        explicit_hash_key: explicit.to_string(),
        intended_shard: quiet.shard_id.clone(),
        records: held_back.len(),
        landed_on: steered_to.into_iter().collect(),
        agrees: steered_read.keys().copied().collect::<Vec<_>>() == [quiet.shard_id.as_str()]
            && steered_read.values().sum::<usize>() == held_back.len(),
    };
    let max = after.values().copied().max().unwrap_or(0);
    out.table(
        &format!(
            "   Records per shard after steering ({} of them steered; PutRecord said: {})",
            held_back.len(),
            steering.landed_on.join(", ")
        ),
        &["shard", "records", "steered here", ""],
        ranges.iter().map(|r| {
            let n = after.get(r.shard_id.as_str()).copied().unwrap_or(0);
            let s = steered_read.get(r.shard_id.as_str()).copied().unwrap_or(0);
            vec![r.shard_id.clone(), n.to_string(), s.to_string(), bar(n, max)]
        }),
    );
    let busiest =
        ranges.iter().max_by_key(|r| after.get(r.shard_id.as_str()).copied().unwrap_or(0)).unwrap_or(&ranges[0]);
    let hottest_share = 100.0 * max as f64 / after.values().sum::<usize>().max(1) as f64;
    out.say(format!(
        "   A few customers place most orders, and a partition key sends all of one customer's events to one shard:\n   \
         the busiest shard took {hottest_share:.0}% of the records with {:.0}% of the key space. On AWS a shard takes at most\n   \
         1 MB/s or 1,000 records/s of writes and refuses the rest (ProvisionedThroughputExceededException), however\n   \
         idle the others are; {}\n   \
         Splitting the hot shard helps only when its load comes from many keys: one key is one hash key, so a\n   \
         single hot customer cannot be split. To spread one key you change it (customer_id plus a suffix 0..N,\n   \
         \"salting\") or steer it with ExplicitHashKey as above. Both cost that customer's order: {hottest}'s steered\n   \
         events now sit on another shard than its earlier ones. (Kafka: a custom partitioner plays ExplicitHashKey's part.)",
        key_space_percent(busiest),
        if target.kind.is_aws() {
            "watch for throttled entries at high rates."
        } else {
            "the emulator never throttles, so here you see only the imbalance."
        }
    ));
    if let Some(k) = keys.iter().find(|k| !k.agrees) {
        bail!(
            "hot-shard: records with key {} landed on {} but its hash key falls in {}: the target does not place keys as Kinesis does",
            k.partition_key,
            k.landed_on.join(", "),
            k.computed_shard.as_deref().unwrap_or("no shard")
        );
    }
    if !steering.agrees {
        bail!(
            "hot-shard: records sent with ExplicitHashKey {} did not all land on {} (read back: {steered_read:?})",
            steering.explicit_hash_key,
            steering.intended_shard
        );
    }
    let shards = ranges
        .iter()
        .map(|r| ShardBar {
            shard_id: r.shard_id.clone(),
            starting_hash_key: r.starting_hash_key.to_string(),
            ending_hash_key: r.ending_hash_key.to_string(),
            key_space_percent: key_space_percent(r),
            records: after.get(r.shard_id.as_str()).copied().unwrap_or(0),
            steered_records: steered_read.get(r.shard_id.as_str()).copied().unwrap_or(0),
        })
        .collect();
    Ok(HotShardReport { seed: run.seed, orders: run.orders, produced, shards, keys, steering })
}

// ---------------------------------------------------------------------------------------------
// reshard

/// A polling consumer that keeps, per shard, what it has read; the last record is its
/// checkpoint. It catches up shard by shard, parents before children, as a log consumer should.
#[derive(Default)]
struct CheckpointingConsumer {
    shards: Vec<SeenShard>,
}

struct SeenShard {
    shard: log::Shard,
    /// Whether the target listed it at the last catch-up.
    listed: bool,
    records: Vec<Incoming>,
}

impl CheckpointingConsumer {
    async fn catch_up(&mut self, client: &Client, stream: &str) -> Result<()> {
        let listed = log::list_shards(client, stream).await?;
        for seen in &mut self.shards {
            seen.listed = false;
        }
        for shard in listed {
            let index = match self.shards.iter().position(|s| s.shard.shard_id == shard.shard_id) {
                Some(index) => index,
                None => {
                    self.shards.push(SeenShard { shard: shard.clone(), listed: true, records: Vec::new() });
                    self.shards.len() - 1
                }
            };
            let seen = &mut self.shards[index];
            seen.shard = shard;
            seen.listed = true;
            let position = seen
                .records
                .last()
                .map_or(Position::TrimHorizon, |r| Position::AfterSequence(r.sequence_number.clone()));
            let more =
                log::read_shard(client, stream, &seen.shard.shard_id, &position, Until::CaughtUp, None, |_| {}).await?;
            seen.records.extend(more);
        }
        Ok(())
    }

    fn get(&self, shard_id: &str) -> Option<&SeenShard> {
        self.shards.iter().find(|s| s.shard.shard_id == shard_id)
    }
}

fn count_run(records: &[Incoming], id_prefix: &str) -> usize {
    records.iter().filter(|r| decode(r).is_some_and(|e| e.order_id.starts_with(id_prefix))).count()
}

#[derive(Serialize)]
struct ReshardStep {
    operation: &'static str,
    parents: Vec<String>,
    children: Vec<String>,
    /// Records (of every run) the consumer had read from the parents before the reshard.
    parent_records: usize,
    /// Whether the target still lists the parents afterwards.
    parents_kept: bool,
    /// Records read from the parents again, from TRIM_HORIZON, after the reshard (when kept).
    parent_records_readable: Option<usize>,
}

/// Finds out what the target did with the parents of a split or merge: still listed and
/// readable (AWS), or gone (MiniStack).
async fn observe_reshard(
    client: &Client,
    stream: &str,
    operation: &'static str,
    parents: Vec<String>,
    consumer: &CheckpointingConsumer,
) -> Result<ReshardStep> {
    let listed = log::list_shards(client, stream).await?;
    let is_parent = |p: &Option<String>| p.as_ref().is_some_and(|p| parents.contains(p));
    let children = listed
        .iter()
        .filter(|s| is_parent(&s.parent_shard_id) || is_parent(&s.adjacent_parent_shard_id))
        .map(|s| s.shard_id.clone())
        .collect();
    let parents_kept = parents.iter().all(|p| listed.iter().any(|s| &s.shard_id == p));
    let mut parent_records_readable = None;
    if parents_kept {
        let mut readable = 0;
        for parent in &parents {
            readable += log::read_shard(client, stream, parent, &Position::TrimHorizon, Until::CaughtUp, None, |_| {})
                .await?
                .len();
        }
        parent_records_readable = Some(readable);
    }
    Ok(ReshardStep {
        operation,
        parent_records: parents.iter().filter_map(|id| consumer.get(id)).map(|s| s.records.len()).sum(),
        parents,
        children,
        parents_kept,
        parent_records_readable,
    })
}

#[derive(Serialize)]
struct LineageRow {
    shard_id: String,
    parents: Vec<String>,
    state: &'static str,
    records: usize,
    source: &'static str,
}

#[derive(Serialize)]
struct ConsumerView {
    consumer: &'static str,
    shard_order: Vec<String>,
    ordering: OrderingReport,
}

#[derive(Serialize)]
struct ReshardReport {
    seed: u64,
    orders: usize,
    produced: Vec<ProduceStats>,
    steps: Vec<ReshardStep>,
    /// The target's behaviour: true where closed parents stay listed and readable (AWS).
    target_keeps_parents: bool,
    shards: Vec<LineageRow>,
    lineage_aware: ConsumerView,
    lineage_ignoring: ConsumerView,
}

/// Says what the target did with the parents of a split or merge, plainly.
fn say_behaviour(out: Output, kind: &TargetKind, step: &ReshardStep) {
    let parents = step.parents.join(" and ");
    let (it, they, its) = if step.parents.len() > 1 { ("them", "they", "their") } else { ("it", "it", "its") };
    let children = step.children.join(", ");
    match step.parent_records_readable {
        Some(readable) => out.say(format!(
            "   {parents}: still listed, now closed (an ending sequence number), and still readable:\n   \
             {readable} of the {} records the consumer had read from {it}. New records go to {children}.\n   \
             This is what Kinesis does: a closed shard stays readable until the retention period ends, so a\n   \
             consumer can always finish a parent before its children.",
            step.parent_records
        )),
        None => out.say(format!(
            "   GONE: {} no longer lists {parents},\n   \
             although {children} {} {it} as parent.\n   \
             The {} records {they} held (from every run so far) cannot be read any more.\n   \
             This is the emulator, not Kinesis: {}\n   \
             This consumer lost nothing: it had read {its} records to the end before the {}.\n   \
             (`labs verify` knows about the loss and does not count it against you.)",
            what_the_target_is(kind),
            if step.children.len() == 1 { "names" } else { "name" },
            step.parent_records,
            if kind.is_aws() {
                "on AWS a closed parent stays readable\n   \
                 for the retention period, so this should not happen there."
            } else {
                "it deletes a split or merged parent with its records,\n   \
                 while AWS closes the parent and keeps it readable until the retention period ends (24 hours by default)."
            },
            step.operation
        )),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

async fn reshard(target: &Target, stream: &str, run: &Run, out: Output) -> Result<ReshardReport> {
    let kinesis = &target.clients.kinesis;
    let part = Scenario::Reshard.parts(run.seed, run.orders).remove(0);
    let events = orders::generate(&part.spec);
    let prefix = part.spec.id_prefix();
    let expected = steps_per_order(&events);
    let phases: Vec<&[OrderEvent]> = events.chunks(events.len().div_ceil(3).max(1)).collect();
    out.say(format!(
        "\n== reshard (seed {}) ==\n{} orders all under way at once ({} events, partition key = order_id), produced in three parts;\n\
         between them the busiest shard is split and two quiet ones merged. A consumer reads along, keeping a\n\
         checkpoint per shard.",
        run.seed,
        run.orders,
        events.len()
    ));
    let encode_phase = |phase: &[OrderEvent]| phase.iter().map(|e| encode(e, e.order_id.clone())).collect::<Vec<_>>();
    let mut consumer = CheckpointingConsumer::default();
    let mut produced = Vec::new();
    let mut steps = Vec::new();

    out.say(format!("1. Producing part 1 ({} records); the consumer reads every shard to its end.", phases[0].len()));
    produced.push(produce_in_key_order(target, stream, encode_phase(phases[0])).await?);
    consumer.catch_up(kinesis, stream).await?;

    let loads: Vec<ShardLoad> = consumer
        .shards
        .iter()
        .filter(|s| s.listed && s.shard.open)
        .map(|s| Ok(ShardLoad { range: s.shard.range()?, records: count_run(&s.records, &prefix) }))
        .collect::<Result<_>>()?;
    let Some(plan) = orders::plan_reshard(&loads) else {
        bail!("reshard: {stream} has no open shard whose hash key range can be split");
    };
    let split_load = loads.iter().find(|l| l.range.shard_id == plan.split).map_or(0, |l| l.records);
    out.say(format!(
        "2. Splitting {} (the busiest: {split_load} records of this run) at hash key {}.",
        plan.split, plan.new_starting_hash_key
    ));
    let spinner = output::spinner(&format!("splitting {}", plan.split));
    let split = log::split_shard(kinesis, stream, &plan.split, plan.new_starting_hash_key).await;
    spinner.finish_and_clear();
    split?;
    let split_step = observe_reshard(kinesis, stream, "split", vec![plan.split.clone()], &consumer).await?;
    say_behaviour(out, &target.kind, &split_step);
    steps.push(split_step);

    if let Some(phase) = phases.get(1) {
        out.say(format!("3. Producing part 2 ({} records); the consumer catches up.", phase.len()));
        produced.push(produce_in_key_order(target, stream, encode_phase(phase)).await?);
        consumer.catch_up(kinesis, stream).await?;
    }

    match &plan.merge {
        Some((a, b)) => {
            out.say(format!("4. Merging {a} and {b}, the quietest pair of adjacent shards."));
            let spinner = output::spinner(&format!("merging {a} and {b}"));
            let merged = log::merge_shards(kinesis, stream, a, b).await;
            spinner.finish_and_clear();
            merged?;
            let merge_step = observe_reshard(kinesis, stream, "merge", vec![a.clone(), b.clone()], &consumer).await?;
            say_behaviour(out, &target.kind, &merge_step);
            steps.push(merge_step);
        }
        None => out.say("4. No two other shards have adjacent hash ranges: nothing to merge."),
    }

    if let Some(phase) = phases.get(2) {
        out.say(format!("5. Producing part 3 ({} records); the consumer catches up.", phase.len()));
        produced.push(produce_in_key_order(target, stream, encode_phase(phase)).await?);
        consumer.catch_up(kinesis, stream).await?;
    }

    // Every shard the consumer has seen, with this run's records: read again from TRIM_HORIZON
    // where the target still has it, as drained before the reshard where it does not.
    let listed = log::list_shards(kinesis, stream).await?;
    struct Content {
        row: LineageRow,
        lineage: (String, [Option<String>; 2]),
        reads: Vec<Read>,
    }
    let mut contents = Vec::new();
    for seen in &consumer.shards {
        let now = listed.iter().find(|s| s.shard_id == seen.shard.shard_id);
        let (records, state, source) = match now {
            Some(shard) => {
                let records = log::read_shard(
                    kinesis,
                    stream,
                    &shard.shard_id,
                    &Position::TrimHorizon,
                    Until::CaughtUp,
                    None,
                    |_| {},
                )
                .await?;
                (records, if shard.open { "open" } else { "closed" }, "read again from TRIM_HORIZON")
            }
            None => (seen.records.clone(), "deleted by the target", "as drained before the reshard"),
        };
        let reads = decode_run(records, &prefix);
        let parents = [seen.shard.parent_shard_id.clone(), seen.shard.adjacent_parent_shard_id.clone()];
        contents.push(Content {
            row: LineageRow {
                shard_id: seen.shard.shard_id.clone(),
                parents: parents.iter().flatten().cloned().collect(),
                state,
                records: reads.len(),
                source,
            },
            lineage: (seen.shard.shard_id.clone(), parents),
            reads,
        });
    }
    let aware_order = labs_core::lineage::parents_first(contents, |c| c.lineage.clone());
    out.table(
        "   Shard lineage now, with this run's records",
        &["shard", "parents", "state", "records", "records shown from"],
        aware_order.iter().map(|c| {
            vec![
                c.row.shard_id.clone(),
                if c.row.parents.is_empty() { "-".to_owned() } else { c.row.parents.join(", ") },
                c.row.state.to_owned(),
                c.row.records.to_string(),
                c.row.source.to_owned(),
            ]
        }),
    );

    let view = |name: &'static str, order: &[&Content]| {
        let reads: Vec<&Read> = order.iter().flat_map(|c| &c.reads).collect();
        let ordering =
            check_order(&expected, reads.iter().map(|r| (r.event.order_id.as_str(), r.event.step)), |_| false);
        ConsumerView { consumer: name, shard_order: order.iter().map(|c| c.row.shard_id.clone()).collect(), ordering }
    };
    let aware_refs: Vec<&Content> = aware_order.iter().collect();
    let ignoring_refs: Vec<&Content> = aware_order.iter().rev().collect();
    let aware = view("lineage-aware: finishes every parent before its children", &aware_refs);
    let ignoring = view("lineage-ignoring: reads the newest shards first", &ignoring_refs);
    out.table(
        "6. Two consumers read the whole run from the start, shard by shard; they differ only in which shard comes first",
        &["consumer", "shard order", "orders in order", "orders out of order"],
        [&aware, &ignoring].iter().map(|v| {
            vec![
                v.consumer.to_owned(),
                v.shard_order.iter().map(|s| short_shard(s)).collect::<Vec<_>>().join(", "),
                format!("{} of {}", v.ordering.in_order, v.ordering.orders),
                v.ordering.violations.len().to_string(),
            ]
        }),
    );
    let ignoring_reads: Vec<&Read> = ignoring_refs.iter().flat_map(|c| &c.reads).collect();
    let where_steps = |order_id: &str| {
        ignoring_reads
            .iter()
            .filter(|r| r.event.order_id == order_id)
            .map(|r| format!("{}@{}", r.event.step, short_shard(&r.record.shard_id)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    out.table(
        "   What the lineage-ignoring consumer saw (step@shard, in reading order)",
        &["order", "steps as read", "where each step was"],
        ignoring
            .ordering
            .violations
            .iter()
            .take(EXAMPLES)
            .map(|t| vec![t.order_id.clone(), steps_text(&t.arrival), where_steps(&t.order_id)]),
    );
    let target_keeps_parents = steps.iter().all(|s| s.parents_kept);
    out.say(format!(
        "   After a split or merge, a key's older records are in the parent and its newer ones in a child. A consumer\n   \
         that finishes each parent before reading its children (ListShards gives ParentShardId and\n   \
         AdjacentParentShardId for that) sees every order in order. One that ignores lineage, for example one\n   \
         worker per shard all started at once, can handle a child's records first: {} orders came out of order.\n   \
         The Kinesis Client Library and Lambda's Kinesis trigger follow the lineage rule for you.\n   \
         Kafka never splits a partition; adding partitions instead remaps keys (hash mod partitions) and breaks\n   \
         per-key order for keys that move, with no lineage to follow.{}",
        ignoring.ordering.violations.len(),
        if target_keeps_parents {
            String::new()
        } else {
            format!(
                "\n   On {}, deleted parents are shown as the consumer drained them before\n   \
                 the reshard; on AWS both consumers would read them from the stream itself.",
                what_the_target_is(&target.kind)
            )
        }
    ));
    if !aware.ordering.is_ok() {
        let trace = &aware.ordering.violations[0];
        bail!(
            "reshard: the lineage-aware consumer saw {} orders out of order or incomplete, e.g. {}: {}",
            aware.ordering.violations.len(),
            trace.order_id,
            trace.verdict.describe()
        );
    }
    Ok(ReshardReport {
        seed: run.seed,
        orders: run.orders,
        produced,
        steps,
        target_keeps_parents,
        shards: aware_order.into_iter().map(|c| c.row).collect(),
        lineage_aware: aware,
        lineage_ignoring: ignoring,
    })
}

// ---------------------------------------------------------------------------------------------
// retry-reorder

#[derive(Serialize)]
struct ProducerRow {
    producer: &'static str,
    order_id_prefix: String,
    keeps_order: bool,
    produced: ProduceStats,
    refused: usize,
    ordering: OrderingReport,
}

#[derive(Serialize)]
struct RetryReorderReport {
    seed: u64,
    orders: usize,
    refused_percent: u32,
    /// Refusals are always made on the client side, so the lesson does not depend on load.
    refusals_injected_by_labs: bool,
    producers: Vec<ProducerRow>,
}

async fn retry_reorder(target: &Target, stream: &str, run: &Run, out: Output) -> Result<RetryReorderReport> {
    let kinesis = &target.clients.kinesis;
    out.say(format!(
        "\n== retry-reorder (seed {}) ==\nPutRecords can fail for some entries and succeed for others in the same call. {}\n\
         labs refuses {REFUSED_PERCENT}% of entries itself, on the client side, the way a throttled shard refuses them\n\
         (ProvisionedThroughputExceededException): a refused entry is not written, the rest of the call is.\n\
         Three producers send {} orders each (partition key = order_id) and meet the same refusals:",
        run.seed,
        if target.kind.is_aws() {
            "On AWS that happens above 1,000 records/s or 1 MB/s per shard; to show it at any rate,"
        } else {
            "The emulator never throttles, so"
        },
        run.orders
    ));
    let mut producers = Vec::new();
    for (index, part) in Scenario::RetryReorder.parts(run.seed, run.orders).into_iter().enumerate() {
        let events = orders::generate(&part.spec);
        let records: Vec<Outgoing> = events.iter().map(|e| encode(e, e.order_id.clone())).collect();
        let refusals =
            Refusals::new(RefusalPlan { seed: run.seed.wrapping_mul(31) + index as u64, percent: REFUSED_PERCENT });
        let bar = output::progress(records.len() as u64, part.label);
        let produced = match index {
            0 => log::produce_resending_refused(kinesis, stream, records, Some(&refusals), &bar).await,
            1 => log::produce_in_key_order(kinesis, stream, records, Some(&refusals), &bar).await,
            _ => log::produce_with_sequence_ordering(kinesis, stream, records, Some(&refusals), 8, &bar).await,
        };
        bar.finish_and_clear();
        let produced = produced?;
        let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
        let ordering = check_order(&steps_per_order(&events), arrivals(&reads), |_| false);
        if index == 0 {
            out.table(
                "   What the naive producer did to some orders (step@shard, in reading order)",
                &["order", "steps as read", "where each step was"],
                ordering
                    .violations
                    .iter()
                    .take(EXAMPLES)
                    .map(|t| vec![t.order_id.clone(), steps_text(&t.arrival), steps_with_shards(&reads, &t.order_id)]),
            );
        }
        producers.push(ProducerRow {
            producer: part.label,
            order_id_prefix: part.spec.id_prefix(),
            keeps_order: part.keeps_order,
            produced,
            refused: refusals.refused(),
            ordering,
        });
    }
    out.table(
        "",
        &["producer", "API calls", "entries refused (by labs)", "seconds", "orders out of order, read back"],
        producers.iter().map(|p| {
            vec![
                p.producer.to_owned(),
                p.produced.calls.to_string(),
                p.refused.to_string(),
                format!("{:.2}", p.produced.seconds),
                format!("{} of {}", p.ordering.violations.len(), p.ordering.orders),
            ]
        }),
    );
    out.say(
        "   The naive producer sends a batch, then resends the refused entries in a new call. If step 2 of an order\n   \
         was refused while step 3, later in the same call, was written, step 2 lands after step 3: all of a key's\n   \
         records still go to one shard, but no longer in the order they were sent.\n   \
         Fix 1 puts at most one record per key in a call and sends a key's next record only after the previous one\n   \
         was written: a refused record is simply first in line again. Fix 2 sends each key's records one at a time\n   \
         with PutRecord, waiting for each, and passes the previous record's sequence number as\n   \
         SequenceNumberForOrdering so Kinesis guarantees that key's sequence numbers rise. Both cost throughput:\n   \
         fix 1's calls end where a key repeats, and most of its time is the backoff it waits after each refusal\n   \
         (as any producer must when a shard throttles); fix 2 makes one call per record. That is the price of\n   \
         per-key order, and it is highest for hot keys. (Kafka: max.in.flight.requests.per.connection with\n   \
         retries reorders the same way; the idempotent producer fixes it with per-partition sequence numbers.)",
    );
    if let Some(p) = producers.iter().find(|p| p.keeps_order && !p.ordering.is_ok()) {
        let trace = &p.ordering.violations[0];
        bail!(
            "retry-reorder: the producer '{}' should keep order but {} orders broke it, e.g. {}: {}",
            p.producer,
            p.ordering.violations.len(),
            trace.order_id,
            trace.verdict.describe()
        );
    }
    if let Some(trace) = producers[0].ordering.violations.iter().find(|t| t.verdict != Verdict::Reordered) {
        bail!(
            "retry-reorder: the naive producer lost or repeated records, e.g. {}: {}",
            trace.order_id,
            trace.verdict.describe()
        );
    }
    Ok(RetryReorderReport {
        seed: run.seed,
        orders: run.orders,
        refused_percent: REFUSED_PERCENT,
        refusals_injected_by_labs: true,
        producers,
    })
}

// ---------------------------------------------------------------------------------------------
// verify

#[derive(Serialize)]
struct VerifyReport {
    stream: String,
    runs: Vec<Run>,
    records_read: usize,
    /// Records of orders whose producer promises per-order order: these are checked.
    checked_records: usize,
    /// Records of runs that promise no order (random-keys, hot-shard, the naive retry).
    unchecked_records: usize,
    undecodable: usize,
    /// Order events of no recorded run.
    foreign: usize,
    /// Parents that shards name but the target no longer lists.
    missing_parent_shards: Vec<String>,
    ordering: OrderingReport,
    passed: bool,
}

pub async fn verify(target: &Target, out: Output) -> Result<bool> {
    let kinesis = &target.clients.kinesis;
    let stream = stream_name(target);
    let runs = recorded_runs(kinesis, &stream).await?;
    if runs.is_empty() {
        bail!("nothing to verify: {stream} has no recorded runs (run `labs run example-7` first)");
    }
    // Which run each order-id prefix belongs to, and what the checked orders should hold.
    let mut prefixes: HashMap<String, (Scenario, bool)> = HashMap::new();
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    for run in &runs {
        for part in run.scenario.parts(run.seed, run.orders) {
            prefixes.insert(part.spec.id_prefix(), (run.scenario, part.keeps_order));
            if part.keeps_order {
                expected.extend(steps_per_order(&orders::generate(&part.spec)));
            }
        }
    }
    let shards = log::list_shards(kinesis, &stream).await?;
    let orphans = orders::orphans(&shards, |s| {
        (s.shard_id.clone(), [s.parent_shard_id.clone(), s.adjacent_parent_shard_id.clone()])
    });
    let orphan_ranges: Vec<ShardRange> = orphans.iter().map(|(i, _)| shards[*i].range()).collect::<Result<_>>()?;
    let mut missing_parents: Vec<String> = orphans.iter().flat_map(|(_, parents)| parents.clone()).collect();
    missing_parents.sort();
    missing_parents.dedup();

    let spinner = output::spinner("reading every shard from TRIM_HORIZON, parents before children");
    let records = log::read_stream(kinesis, &stream, &Position::TrimHorizon).await;
    spinner.finish_and_clear();
    let records = records?;
    let (mut undecodable, mut foreign, mut unchecked) = (0, 0, 0);
    let mut checked: Vec<(String, u32, String)> = Vec::new();
    for record in &records {
        let Some(event) = decode(record) else {
            undecodable += 1;
            continue;
        };
        let prefix = event.order_id.split_inclusive('-').next().unwrap_or_default();
        match prefixes.get(prefix) {
            Some((_, true)) => checked.push((event.order_id, event.step, record.shard_id.clone())),
            Some((_, false)) => unchecked += 1,
            None => foreign += 1,
        }
    }
    // A missing run of first steps is the target's doing only if the order's key maps into a
    // shard whose parent the target no longer has.
    let loss_excused = |order_id: &str| orphan_ranges.iter().any(|r| r.contains(hash_key(order_id)));
    let report = check_order(&expected, checked.iter().map(|(id, step, _)| (id.as_str(), *step)), loss_excused);
    let passed = report.is_ok() && undecodable == 0 && foreign == 0;

    let mark = |ok: bool| if ok { "ok" } else { "FAILED" }.to_owned();
    let reordered = report.reordered();
    let duplicated = report.count(|v| matches!(v, Verdict::Duplicated));
    let missing = report.count(|v| matches!(v, Verdict::Missing { .. } | Verdict::UnknownStep { .. }));
    let mut rows = vec![
        vec![
            "every record is an order event of a recorded run".to_owned(),
            mark(undecodable == 0 && foreign == 0),
            format!(
                "{} read: {} checked, {unchecked} from runs that promise no order, {undecodable} undecodable, {foreign} from no recorded run",
                records.len(),
                checked.len()
            ),
        ],
        vec![
            "each order's steps arrive strictly rising".to_owned(),
            mark(reordered == 0),
            format!("{reordered} of {} orders had a step after a later one", report.orders),
        ],
        vec!["no step arrives twice".to_owned(), mark(duplicated == 0), format!("{duplicated} orders")],
        vec!["no step is missing (no gap)".to_owned(), mark(missing == 0), format!("{missing} orders")],
    ];
    if !missing_parents.is_empty() {
        rows.push(vec![
            "steps gone with parent shards the target deleted".to_owned(),
            "not counted".to_owned(),
            format!(
                "{} first steps of {} orders, lost with deleted parent shards ({} and any before them; see below)",
                report.lost_steps,
                report.in_order_after_loss,
                missing_parents.iter().map(|s| short_shard(s)).collect::<Vec<_>>().join(", "),
            ),
        ]);
    }
    out.table(
        &format!(
            "Verifying {stream}: {} runs, {} orders checked (key-order, reshard, the fixed producers of retry-reorder)",
            runs.len(),
            report.orders
        ),
        &["check", "result", "details"],
        rows,
    );
    if !report.violations.is_empty() {
        let shards_of = |order_id: &str| {
            checked
                .iter()
                .filter(|(id, _, _)| id == order_id)
                .map(|(_, step, shard)| format!("{step}@{}", short_shard(shard)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.table(
            &format!(
                "Orders that broke the rule ({} in all, the first {} shown)",
                report.violations.len(),
                10.min(report.violations.len())
            ),
            &["order", "steps as read", "where each step was", "problem"],
            report.violations.iter().take(10).map(|t| {
                vec![t.order_id.clone(), steps_text(&t.arrival), shards_of(&t.order_id), t.verdict.describe()]
            }),
        );
    }
    if !missing_parents.is_empty() {
        out.say(if target.kind.is_aws() {
            "Shards past the retention period are gone on AWS too: orders whose first steps were in them are checked on what remains.".to_owned()
        } else {
            format!(
                "{} deletes a shard and its records when it is split or merged (the reshard scenario does that);\n\
                 AWS keeps a closed shard readable until the retention period ends. Those steps are the emulator's\n\
                 loss, not a fault of yours or of Kinesis.",
                capitalized(&what_the_target_is(&target.kind))
            )
        });
    }
    out.json(&VerifyReport {
        stream,
        runs,
        records_read: records.len(),
        checked_records: checked.len(),
        unchecked_records: unchecked,
        undecodable,
        foreign,
        missing_parent_shards: missing_parents,
        ordering: report,
        passed,
    })?;
    Ok(passed)
}
