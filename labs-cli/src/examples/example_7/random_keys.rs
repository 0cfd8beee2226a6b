//! Scenario random-keys: random partition keys spread load and give up per-order order.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Result, bail};
use labs_core::orders::{self, OrderingReport, Verdict, check_order, steps_per_order};
use serde::Serialize;

use super::{EXAMPLES, Run, Scenario, arrivals, encode, produced_line, read_back, steps_text, steps_with_shards};
use crate::driver::kinesis::{self, ProduceStats};
use crate::output::{self, Output};
use crate::target::Target;

#[derive(Serialize)]
pub(super) struct RandomKeysReport {
    seed: u64,
    orders: usize,
    produced: ProduceStats,
    orders_on_several_shards: usize,
    ordering: OrderingReport,
}

pub(super) async fn random_keys(target: &Target, stream: &str, run: &Run, out: Output) -> Result<RandomKeysReport> {
    let part = Scenario::RandomKeys.parts(run.seed, run.orders).remove(0);
    let events = orders::generate(&part.spec);
    out.say(format!(
        "\n== random-keys (seed {}) ==\n1. Producing the same kind of orders ({} events of {} orders), partition key = a random value per record.",
        run.seed,
        events.len(),
        run.orders
    ));
    let records = events.iter().map(|e| encode(e, format!("{:032x}", rand::random::<u128>()))).collect::<Vec<_>>();
    let bar = output::progress(events.len() as u64, "PutRecords");
    let produced = kinesis::produce(&target.clients.kinesis, stream, records, None, &bar).await;
    bar.finish_and_clear();
    let produced = produced?;
    out.say(produced_line(&produced));

    out.say("2. Consuming every shard from TRIM_HORIZON, one shard after another:");
    let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
    let ordering = check_order(&steps_per_order(&events), arrivals(&reads), |_| 0);
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
