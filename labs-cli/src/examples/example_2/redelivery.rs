//! Scenario redelivery: a consumer crashes before acknowledging, and the message comes back.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use labs_core::order_messages::{Observation, Publication, Route, Subscriber};

use super::consumers::{Handled, consume_one, drain};
use super::{Lab, PATIENCE, REDELIVERY_ORDERS, ScenarioReport, ids, join, outgoing, report, timeline};
use crate::driver::messaging::{self};
use crate::output::{self};

/// A consumer crashes before acknowledging: the message comes back after the visibility timeout,
/// behind later ones, and an idempotent consumer keeps its effect to once.
pub(super) async fn redelivery(lab: &Lab<'_>, seed: u64) -> Result<ScenarioReport> {
    let out = lab.out;
    let publication = Publication { seed, route: Route::Billing, count: REDELIVERY_ORDERS };
    let orders = publication.orders();
    let billing = lab.queue(Subscriber::Billing);
    let visibility = messaging::settings(lab.sqs(), &billing.url).await?.visibility_timeout;
    out.say(format!(
        "\n== redelivery: no acknowledgement, so the message comes back ==\n\
         1. Sending {} orders (seed {seed}, seq 1 to {}) straight to {} (visibility timeout {} s).",
        orders.len(),
        orders.len(),
        billing.name,
        visibility.as_secs()
    ));
    lab.record(&publication).await?;
    messaging::send(lab.sqs(), &billing.url, &orders.iter().map(outgoing).collect::<Vec<_>>(), None).await?;
    let started = Instant::now();

    // consumer-A takes one message, processes it, and dies before deleting it.
    let mut log = Vec::new();
    let first = loop {
        let batch = messaging::receive(lab.sqs(), &billing.url, 1, 1, None).await?;
        if let Some(message) = batch.into_iter().next() {
            break message;
        }
        if started.elapsed() > PATIENCE {
            bail!("nothing arrived in {} within {} s", billing.name, PATIENCE.as_secs());
        }
    };
    log.push(consume_one(lab, Subscriber::Billing, "consumer-A", &first, started, true).await?);
    let crashed = log[0].order_id.clone().context("consumer-A received a message that is not an order")?;
    out.say(format!(
        "2. consumer-A receives {crashed}, processes it, and crashes before deleting it. consumer-B carries\n   \
         on; the unacknowledged message stays hidden until its visibility timeout runs out, then SQS hands it\n   \
         out again."
    ));
    let spinner = output::spinner("consumer-B at work, waiting for the redelivery");
    let (rest, missing) =
        drain(lab, Subscriber::Billing, &["consumer-B"], ids(&orders), started, 10, Duration::ZERO).await?;
    spinner.finish_and_clear();
    log.extend(rest);
    timeline("3. Every delivery, in time order:", out, &log);

    let publish_order: Vec<u64> = orders.iter().map(|o| o.seq).collect();
    let b: Vec<&Handled> = log.iter().filter(|h| h.consumer == "consumer-B").collect();
    let processing_order: Vec<u64> = b.iter().filter_map(|h| h.seq).collect();
    let (effects, _) = lab.effects().await?;
    let effect = |id: &str| effects.iter().find(|e| e.consumer == Subscriber::Billing.as_str() && e.id == id);
    let processed = orders.iter().filter(|o| effect(&o.order_id).is_some()).count();
    let crashed_deliveries = effect(&crashed).map_or(0, |e| e.deliveries);
    if let Some(crashed_seq) = log[0].seq {
        let observed = Observation::Redelivery { crashed_seq, processing: processing_order.clone() };
        lab.record_observation(&publication, &observed).await?;
    }
    out.table(
        "4. What it shows",
        &["", "seen"],
        [
            vec!["publish order (seq)".to_owned(), join(&publish_order)],
            vec!["order consumer-B saw them in (seq)".to_owned(), join(&processing_order)],
            vec![format!("deliveries of {crashed}"), crashed_deliveries.to_string()],
            vec!["orders processed (rows in the effects table)".to_owned(), format!("{processed} of {}", orders.len())],
        ],
    );
    out.say(format!(
        "   The redelivered message reached consumer-B after messages published later: with redelivery (and\n   \
         several consumers), a queue does not keep order. It was delivered {crashed_deliveries} times but processed\n   \
         once: consumer-B found its order_id in the effects table and skipped it. Without that check the\n   \
         customer would be charged twice."
    ));
    let mut problems = Vec::new();
    if crashed_deliveries < 2 {
        problems.push(format!("{crashed} was not redelivered"));
    }
    if processed != orders.len() || !missing.is_empty() {
        problems.push(format!("only {processed} of {} orders were processed", orders.len()));
    }
    if processing_order == publish_order {
        problems.push("consumer-B saw the orders in publish order: nothing was reordered".to_owned());
    }
    report(
        "redelivery",
        seed,
        problems,
        serde_json::json!({
            "crashed_order": crashed, "deliveries_of_crashed_order": crashed_deliveries,
            "publish_order": publish_order, "processing_order": processing_order,
            "processed": processed, "deliveries": log,
        }),
    )
}
