//! Scenario fan-out: every subscribed queue gets its own copy of every order.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use labs_core::order_messages::{self as orders, Order, Publication, Route, Subscriber};
use serde::Serialize;

use super::consumers::{Consumed, Handled, publish_and_consume};
use super::{Lab, ScenarioReport, ids, report};

#[derive(Serialize)]
struct QueueCount {
    queue: String,
    expected: usize,
    handled: usize,
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
    let Consumed { billing, analytics, shipped } =
        publish_and_consume(lab, &publication, &["billing-1"], 10, Duration::ZERO).await?;
    let handled_ids = |log: &[Handled]| -> BTreeSet<String> {
        log.iter()
            .filter(|h| h.outcome.done())
            .filter_map(|h| h.order_id.clone())
            .filter(|id| all.contains(id))
            .collect()
    };
    let (billed, counted) = (handled_ids(&billing), handled_ids(&analytics));
    let leaked: Vec<&String> = counted.difference(&large_ids).collect();
    let counts = [
        QueueCount {
            queue: lab.queue(Subscriber::Billing).name.clone(),
            expected: count,
            handled: billed.len(),
            consumer: "billing-1 (labs)".into(),
        },
        QueueCount {
            queue: lab.queue(Subscriber::Shipping).name.clone(),
            expected: count,
            handled: shipped.len(),
            consumer: format!("{} (Lambda)", lab.worker),
        },
        QueueCount {
            queue: lab.queue(Subscriber::Analytics).name.clone(),
            expected: large.len(),
            handled: counted.len(),
            consumer: "analytics-1 (labs)".into(),
        },
    ];
    out.table(
        "   One publish, three copies: the orders each queue's consumer handled",
        &["queue", "subscription", "orders it should get", "orders its consumer handled", "consumer"],
        counts.iter().zip(["raw, every order", "raw, every order", "raw, filter total >= 100"]).map(|(c, how)| {
            vec![c.queue.clone(), how.to_owned(), c.expected.to_string(), c.handled.to_string(), c.consumer.clone()]
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
            problems.push(format!("{} handled {} of {} orders", c.queue, c.handled, c.expected));
        }
    }
    if !leaked.is_empty() {
        problems.push(format!("the analytics filter let through {leaked:?}"));
    }
    report("fan-out", seed, problems, serde_json::json!({ "published": count, "queues": counts, "leaked": leaked }))
}
