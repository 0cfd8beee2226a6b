//! Scenario key-order: a partition key keeps one customer's orders on one shard, in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, bail};
use labs_core::orders::{self, OrderingReport, check_order, steps_per_order};
use serde::Serialize;

use super::{
    EXAMPLES, Read, Run, Scenario, arrivals, encode, produce_in_key_order, produced_line, read_back, steps_text,
};
use crate::driver::kinesis::ProduceStats;
use crate::output::Output;
use crate::target::Target;

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
pub(super) struct KeyOrderReport {
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

pub(super) async fn key_order(target: &Target, stream: &str, run: &Run, out: Output) -> Result<KeyOrderReport> {
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
    let ordering = check_order(&steps_per_order(&events), arrivals(&reads), |_| 0);

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
