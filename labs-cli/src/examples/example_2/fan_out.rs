//! Scenario fan-out: every subscribed queue gets its own copy of every order.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use labs_core::order_messages::{self as orders, Observation, Order, Publication, Route, Subscriber};
use serde::Serialize;

use super::consumers::publish_and_consume;
use super::{Lab, ScenarioReport, ids, report};
use crate::driver::messaging;

#[derive(Serialize)]
struct QueueCount {
    queue: String,
    expected: usize,
    /// The run's orders this subscriber applied, counted in the effects table.
    handled: usize,
    /// Messages still in the queue (waiting or in flight) once the consumers stopped.
    left_in_queue: u64,
    consumer: String,
}

/// Every subscribed queue gets its own copy of every order (analytics: those its filter passes).
pub(super) async fn fan_out(lab: &Lab<'_>, seed: u64, count: usize) -> Result<ScenarioReport> {
    let out = lab.out;
    let publication = Publication { seed, route: Route::Topic, count };
    let orders = publication.orders();
    let all = ids(&orders);
    let large: Vec<&Order> = orders.iter().filter(|o| o.passes_analytics_filter()).collect();
    let large_ids: BTreeSet<String> = large.iter().map(|o| o.order_id.clone()).collect();
    out.say(format!(
        "\n== fan-out: every subscriber gets its own copy ==\n\
         1. Publishing {count} orders (seed {seed}) to the topic {}, each with a `total` message attribute.\n   \
         SNS copies every message to each subscribed queue; the analytics subscription has a filter policy\n   \
         (total >= {}), so {} of these orders should reach it.",
        lab.topic,
        orders::ANALYTICS_MIN_TOTAL,
        large.len()
    ));
    out.say(format!(
        "2. Each queue's consumer reads its own copy: billing-1 and analytics-1 here in labs, and the Lambda\n   \
         {} on shipping. Each processes an order, then deletes (acknowledges) the message.",
        lab.worker
    ));
    let billing = publish_and_consume(lab, &publication, &["billing-1"], 10, Duration::ZERO).await?;
    // The counts come from the effects table and the queues, not from the consumers' own account.
    let (effects, _) = lab.effects().await?;
    let applied = |subscriber: Subscriber| -> BTreeSet<String> {
        effects
            .iter()
            .filter(|e| e.consumer == subscriber.as_str() && all.contains(&e.id))
            .map(|e| e.id.clone())
            .collect()
    };
    let counted = applied(Subscriber::Analytics);
    let leaked: Vec<&String> = counted.difference(&large_ids).collect();
    let mut counts = Vec::new();
    for (subscriber, expected, consumer) in [
        (Subscriber::Billing, count, "billing-1 (labs)".to_owned()),
        (Subscriber::Shipping, count, format!("{} (Lambda)", lab.worker)),
        (Subscriber::Analytics, large.len(), "analytics-1 (labs)".to_owned()),
    ] {
        let queue = lab.queue(subscriber);
        counts.push(QueueCount {
            queue: queue.name.clone(),
            expected,
            handled: applied(subscriber).len(),
            left_in_queue: messaging::depth(lab.sqs(), &queue.url).await?.total(),
            consumer,
        });
    }
    let observed = Observation::FanOut { handled: [counts[0].handled, counts[1].handled, counts[2].handled] };
    lab.record_observation(&publication, &observed).await?;
    out.table(
        "   One publish, three copies: the orders each queue's consumer handled",
        &["queue", "subscription", "orders it should get", "applied (effects table)", "left in the queue", "consumer"],
        counts.iter().zip(["raw, every order", "raw, every order", "raw, filter total >= 100"]).map(|(c, how)| {
            vec![
                c.queue.clone(),
                how.to_owned(),
                c.expected.to_string(),
                c.handled.to_string(),
                c.left_in_queue.to_string(),
                c.consumer.clone(),
            ]
        }),
    );
    if let Some(sample) = billing.iter().find(|h| h.seq == Some(2)) {
        out.say(format!(
            "   What billing received for the order with seq 2 is the published body itself,\n     {}\n   \
             with the message attribute total = {} (Number). That is raw message delivery; without it the queue\n   \
             would get SNS's JSON envelope (Type, MessageId, TopicArn, Message, MessageAttributes, ...) with the\n   \
             body as a string inside. Its total is exactly {:.2}, so analytics got it too; seq 3 ({}) stayed out.",
            sample.body,
            sample.total_attribute.as_deref().unwrap_or("?"),
            orders::ANALYTICS_MIN_TOTAL,
            orders.get(2).map(|o| o.total_attribute()).unwrap_or_default(),
        ));
    }
    out.say(
        "   Fan-out: every subscriber got every order it asked for, and each consumed its copy at its own pace.\n   \
         Deleting a message from billing removed nothing from shipping or analytics.",
    );
    let mut problems = Vec::new();
    for c in &counts {
        if c.handled != c.expected {
            problems.push(format!("{} applied {} of {} orders", c.queue, c.handled, c.expected));
        }
        if c.left_in_queue > 0 {
            problems.push(format!("{} still holds {} messages", c.queue, c.left_in_queue));
        }
    }
    if !leaked.is_empty() {
        problems.push(format!("the analytics filter let through {leaked:?}"));
    }
    report("fan-out", seed, problems, serde_json::json!({ "published": count, "queues": counts, "leaked": leaked }))
}
