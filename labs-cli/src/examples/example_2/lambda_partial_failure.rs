//! Scenario lambda-partial-failure: the shipping worker fails one message of a batch.

use anyhow::{Context, Result};
use labs_core::order_messages::{Effect, Publication, Route, Subscriber, preview};
use serde::Serialize;

use super::consumers::watch;
use super::{Lab, PARTIAL_FAILURE_ORDERS, PATIENCE, ScenarioReport, find_in, ids, outgoing, report};
use crate::driver::messaging::{self, Outgoing};

#[derive(Serialize)]
struct WorkerOutcome {
    message: String,
    outcome: String,
    delivered: u64,
    now: String,
}

/// One batch to the shipping worker with one bad message: only that one is retried, then
/// dead-lettered; Lambda deletes the others.
pub(super) async fn lambda_partial_failure(lab: &Lab<'_>, seed: u64) -> Result<ScenarioReport> {
    let out = lab.out;
    let publication = Publication { seed, route: Route::ShippingWithReject, count: PARTIAL_FAILURE_ORDERS };
    let orders = publication.orders();
    let all = ids(&orders);
    let (_, bad) = publication.dead_letter().context("this route sends a bad message")?;
    let shipping = lab.queue(Subscriber::Shipping);
    out.say(format!(
        "\n== lambda-partial-failure: only the bad message is retried ==\n\
         1. Sending one batch of {} messages straight to {}: {} orders and, in the middle, one with\n   \
         no customer_id. Lambda polls the queue and hands {} up to 10 messages per call.\n   \
         The worker ships what it can and returns the bad message's id in batchItemFailures\n   \
         (ReportBatchItemFailures is on); Lambda deletes the rest. The bad one comes back after the visibility\n   \
         timeout, until SQS moves it to {}.",
        orders.len() + 1,
        shipping.name,
        orders.len(),
        lab.worker,
        shipping.dead_letter_name
    ));
    lab.record(&publication).await?;
    let mut messages: Vec<Outgoing> = orders.iter().map(outgoing).collect();
    messages.insert(2, Outgoing::plain(&bad));
    // Lambda polls all the time: a one-second timer makes the six visible at once, so they travel
    // to the worker as one batch rather than split by a poll that landed between two sends.
    messaging::send(lab.sqs(), &shipping.url, &messages, Some(1)).await?;
    let kept_body = preview(&bad, 200);
    let ((shipped, rejection, parked), done) = watch("the worker at work", PATIENCE, async || {
        let (effects, rejections) = lab.effects().await?;
        let shipped: Vec<Effect> = effects
            .into_iter()
            .filter(|e| e.consumer == Subscriber::Shipping.as_str() && all.contains(&e.id))
            .collect();
        let rejection = rejections.into_iter().find(|r| r.body == kept_body);
        // Peek only once the queue is empty: until then the bad message is still being retried.
        let drained = messaging::depth(lab.sqs(), &shipping.url).await?.total() == 0;
        let parked =
            drained && shipped.len() == all.len() && find_in(lab, &shipping.dead_letter_url, &bad).await?.is_some();
        let attempts = rejection.as_ref().map_or(0, |r| r.attempts);
        let status =
            format!("{} of {} orders shipped, bad message rejected {attempts} times", shipped.len(), all.len());
        Ok(((shipped, rejection, parked), parked, status))
    })
    .await?;
    let mut rows: Vec<WorkerOutcome> = shipped
        .iter()
        .map(|e| WorkerOutcome {
            message: e.id.clone(),
            outcome: "shipped".into(),
            delivered: e.deliveries,
            now: "deleted by Lambda".into(),
        })
        .collect();
    rows.insert(
        rows.len().min(2),
        WorkerOutcome {
            message: "(the one with no customer_id)".into(),
            outcome: rejection
                .as_ref()
                .map_or("never seen by the worker".into(), |r| format!("rejected: {}", r.reason)),
            delivered: rejection.as_ref().map_or(0, |r| r.attempts),
            now: if parked { shipping.dead_letter_name.clone() } else { "not in the dead-letter queue".into() },
        },
    );
    out.table(
        "2. What the worker did with each message:",
        &["message", "worker's answer", "times it was delivered", "where it is now"],
        rows.iter().map(|r| vec![r.message.clone(), r.outcome.clone(), r.delivered.to_string(), r.now.clone()]),
    );
    if let Some(r) = &rejection {
        let sizes = r.batch_sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        out.say(format!(
            "   The worker saw the bad message in batches of {sizes} messages: first with the others, then alone."
        ));
    }
    out.say(
        "   Only the bad message was retried; every order was delivered once. Without partial batch responses,\n   \
         the worker could only fail the whole call, and Lambda would retry all of its messages, good ones included.",
    );
    let mut problems = Vec::new();
    if !done {
        problems.push(format!("the batch was not settled within {} s (is the worker deployed?)", PATIENCE.as_secs()));
    }
    if let Some(again) = shipped.iter().find(|e| e.deliveries > 1) {
        problems.push(format!("{} was delivered {} times", again.id, again.deliveries));
    }
    report(
        "lambda-partial-failure",
        seed,
        problems,
        serde_json::json!({
            "shipped": shipped.len(), "rejection": rejection, "in_dead_letter_queue": parked, "messages": rows,
        }),
    )
}
