//! Scenario retry-reorder: resending refused entries reorders a key; two producers that do not.

use anyhow::{Result, bail};
use labs_core::orders::{self, OrderingReport, RefusalPlan, Verdict, check_order, steps_per_order};
use serde::Serialize;

use super::producers;
use super::{EXAMPLES, REFUSED_PERCENT, Run, Scenario, arrivals, encode, read_back, steps_text, steps_with_shards};
use crate::driver::kinesis::{self, Outgoing, ProduceStats, Refuser};
use crate::driver::refusals::Refusals;
use crate::output::{self, Output};
use crate::target::Target;

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
pub(super) struct RetryReorderReport {
    seed: u64,
    orders: usize,
    /// Share of entries labs refuses on the client side, so the lesson does not depend on load.
    refused_percent: u32,
    producers: Vec<ProducerRow>,
}

pub(super) async fn retry_reorder(target: &Target, stream: &str, run: &Run, out: Output) -> Result<RetryReorderReport> {
    let client = &target.clients.kinesis;
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
            0 => {
                kinesis::produce_resending_refused(client, stream, records, Some(&refusals as &dyn Refuser), &bar).await
            }
            1 => producers::produce_in_key_order(client, stream, records, Some(&refusals as &dyn Refuser), &bar).await,
            _ => producers::produce_with_sequence_ordering(client, stream, records, Some(&refusals), 8, &bar).await,
        };
        bar.finish_and_clear();
        let produced = produced?;
        let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
        let ordering = check_order(&steps_per_order(&events), arrivals(&reads), |_| 0);
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
    Ok(RetryReorderReport { seed: run.seed, orders: run.orders, refused_percent: REFUSED_PERCENT, producers })
}
