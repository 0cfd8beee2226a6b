//! Scenario dead-letter: a poison message moves to the dead-letter queue, and is redriven.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use labs_core::order_messages::{Publication, Route, Subscriber};

use super::consumers::{Outcome, drain};
use super::{DEAD_LETTER_ORDERS, Lab, ScenarioReport, find_in, ids, outgoing, report, timeline};
use crate::driver::messaging::{self, Outgoing};

/// A poison message is received and failed until the redrive policy moves it to the dead-letter
/// queue; the orders around it keep flowing. Then it is redriven, and fails again.
pub(super) async fn dead_letter(lab: &Lab<'_>, seed: u64) -> Result<ScenarioReport> {
    let out = lab.out;
    let publication = Publication { seed, route: Route::BillingWithPoison, count: DEAD_LETTER_ORDERS };
    let orders = publication.orders();
    let (_, poison) = publication.dead_letter().context("this route sends a poison message")?;
    let billing = lab.queue(Subscriber::Billing);
    let (source, dead_letter) = (
        messaging::settings(lab.sqs(), &billing.url).await?,
        messaging::settings(lab.sqs(), &billing.dead_letter_url).await?,
    );
    let max_receives = source.max_receive_count.map_or("?".to_owned(), |n| n.to_string());
    out.say(format!(
        "\n== dead-letter: a poison message is set aside, the rest keep flowing ==\n\
         1. Sending {} orders (seed {seed}) and one poison message (its JSON stops half-way) to {}.\n   \
         The consumer cannot parse the poison message, so it releases it (visibility 0: a negative\n   \
         acknowledgement) to be retried at once. After {max_receives} receives, the queue's redrive policy moves\n   \
         it to {}.",
        orders.len(),
        billing.name,
        billing.dead_letter_name
    ));
    lab.record(&publication).await?;
    let mut messages: Vec<Outgoing> = orders.iter().map(outgoing).collect();
    messages.insert(2, Outgoing::plain(&poison));
    messaging::send(lab.sqs(), &billing.url, &messages, None).await?;
    let started = Instant::now();
    let (log, missing) =
        drain(lab, Subscriber::Billing, &["billing-1"], ids(&orders), started, 10, Duration::ZERO).await?;
    timeline("2. Every receive, in time order:", out, &log);
    let parked = find_in(lab, &billing.dead_letter_url, &poison).await?;
    let failures = log.iter().filter(|h| matches!(h.outcome, Outcome::Rejected(_))).count();
    out.say(match &parked {
        Some(_) => format!(
            "3. The poison message failed {failures} times and is now in {}; all {} orders around it were processed.\n   \
             A dead-letter queue keeps one bad message from blocking or looping forever, and keeps it for a person.",
            billing.dead_letter_name,
            orders.len() - missing.len()
        ),
        None => format!("3. The poison message is NOT in {}.", billing.dead_letter_name),
    });

    out.say(format!(
        "4. Redrive: moving it back to {} for another try. On AWS that is one call,\n   \
         aws sqs start-message-move-task --source-arn {}\n   \
         labs does it by receiving from the dead-letter queue, sending a copy and deleting the original, which\n   \
         works on every target (MiniStack has no StartMessageMoveTask).",
        billing.name, dead_letter.arn
    ));
    let moved = messaging::redrive(lab.sqs(), &billing.dead_letter_url, &billing.url).await?;
    let (again, _) =
        drain(lab, Subscriber::Billing, &["billing-1"], BTreeSet::new(), Instant::now(), 10, Duration::ZERO).await?;
    timeline(&format!("   Redrove {moved} message(s); the consumer is unchanged, so:"), out, &again);
    let back = find_in(lab, &billing.dead_letter_url, &poison).await?;
    out.say(if back.is_some() {
        "   Back in the dead-letter queue. Redrive after fixing the consumer (or the message), not before."
    } else {
        "   It did NOT come back to the dead-letter queue."
    });
    let mut problems = Vec::new();
    if parked.is_none() || back.is_none() {
        problems.push(format!("the poison message did not end in {}", billing.dead_letter_name));
    }
    if !missing.is_empty() {
        problems.push(format!("orders not processed: {missing:?}"));
    }
    report(
        "dead-letter",
        seed,
        problems,
        serde_json::json!({
            "orders_processed": orders.len() - missing.len(), "poison_failures": failures,
            "in_dead_letter_queue": back.is_some(), "redriven": moved, "deliveries": log, "after_redrive": again,
        }),
    )
}
