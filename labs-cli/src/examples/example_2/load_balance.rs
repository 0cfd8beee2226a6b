//! Scenario load-balance: competing consumers on one queue, each message to exactly one.

use std::time::Duration;

use anyhow::Result;
use labs_core::order_messages::{Effect, Observation, Publication, Route, Subscriber};
use serde::Serialize;

use super::consumers::publish_and_consume;
use super::{LOAD_BALANCED_CONSUMERS, Lab, ScenarioReport, ids, join, report};

#[derive(Serialize)]
struct ConsumerShare {
    consumer: String,
    orders: usize,
}

/// Competing consumers on one queue: each message goes to exactly one of them.
pub(super) async fn load_balance(lab: &Lab<'_>, seed: u64, count: usize) -> Result<ScenarioReport> {
    let out = lab.out;
    let publication = Publication { seed, route: Route::Topic, count };
    let orders = publication.orders();
    let all = ids(&orders);
    let billing = lab.queue(Subscriber::Billing);
    out.say(format!(
        "\n== load-balance: competing consumers share one queue ==\n\
         1. Publishing {count} orders (seed {seed}) to {}. Three consumers ({}) now read\n   \
         {} at the same time. A received message is hidden from the others (the visibility timeout)\n   \
         until its consumer deletes it.",
        lab.topic,
        LOAD_BALANCED_CONSUMERS.join(", "),
        billing.name
    ));
    // The other subscribers get these orders too; their consumers keep up alongside.
    let log = publish_and_consume(lab, &publication, &LOAD_BALANCED_CONSUMERS, 5, Duration::from_millis(20)).await?;

    // The outcome, read back from the effects table rather than from the consumers' own account.
    let (effects, _) = lab.effects().await?;
    let rows: Vec<&Effect> =
        effects.iter().filter(|e| e.consumer == Subscriber::Billing.as_str() && all.contains(&e.id)).collect();
    let shares: Vec<ConsumerShare> = LOAD_BALANCED_CONSUMERS
        .iter()
        .map(|c| ConsumerShare {
            consumer: (*c).to_owned(),
            orders: rows.iter().filter(|e| e.handled_by == *c).count(),
        })
        .collect();
    out.table(
        "2. Who processed what (from the effects table):",
        &["consumer", "orders processed", "first orders it got (seq)"],
        shares.iter().map(|s| {
            let first: Vec<u64> =
                log.iter().filter(|h| h.consumer == s.consumer).filter_map(|h| h.seq).take(8).collect();
            vec![s.consumer.clone(), s.orders.to_string(), join(&first)]
        }),
    );
    let observed = Observation::LoadBalance { shares: shares.iter().map(|s| (s.consumer.clone(), s.orders)).collect() };
    lab.record_observation(&publication, &observed).await?;
    let redelivered = rows.iter().filter(|e| e.deliveries > 1).count();
    let lost = count - rows.len();
    out.table(
        "3. With delete-after-processing (acknowledgement), the work is shared and nothing is lost:",
        &["orders published", "processed (rows in the effects table)", "delivered more than once", "lost"],
        [vec![count.to_string(), rows.len().to_string(), redelivered.to_string(), lost.to_string()]],
    );
    if redelivered > 0 {
        out.say(format!(
            "   {redelivered} orders were delivered twice: their consumer outlasted the visibility timeout. The effects\n   \
             table still holds each once, because processing is idempotent (keyed on order_id)."
        ));
    }
    out.say(
        "   Load balancing: each message went to one consumer. Add consumers to go faster; the queue decides\n   \
         who gets what, so there is no order across them (DDIA: fine when messages are independent).",
    );
    let mut problems = Vec::new();
    if lost > 0 {
        problems.push(format!("{lost} orders were never processed"));
    }
    if shares.iter().filter(|s| s.orders > 0).count() < 2 {
        problems.push("the work was not shared between consumers".to_owned());
    }
    report(
        "load-balance",
        seed,
        problems,
        serde_json::json!({ "published": count, "processed": rows.len(), "redelivered": redelivered, "lost": lost, "consumers": shares }),
    )
}
