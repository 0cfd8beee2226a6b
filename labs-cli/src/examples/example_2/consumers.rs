//! The consumers of example 2: competing tasks that receive, apply and acknowledge, and the
//! waits that watch the shipping worker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use labs_core::order_messages::{self as orders, Effect, Publication, Subscriber, parse_order};
use serde::Serialize;
use shipping_worker::EffectStore;

use super::{Lab, PATIENCE, ids, outgoing};
use crate::driver::messaging::{self, Outgoing, Received};
use crate::output::{self};

/// What a consumer did with one message it received.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Handled {
    pub(super) consumer: String,
    pub(super) message_id: String,
    pub(super) order_id: Option<String>,
    pub(super) seq: Option<u64>,
    /// SQS's ApproximateReceiveCount: 2 and more are redeliveries.
    pub(super) receive_count: u32,
    pub(super) outcome: Outcome,
    /// Milliseconds since the scenario began, when the effect was applied (or the message
    /// found unreadable), before the acknowledgement.
    pub(super) at_ms: u64,
    #[serde(skip)]
    pub(super) body: String,
    #[serde(skip)]
    pub(super) total_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub(super) enum Outcome {
    /// The effect happened now, and the message was deleted (acknowledged).
    Applied,
    /// A redelivery of an order whose effect already happened (by the consumer named): skipped,
    /// and deleted.
    Duplicate(String),
    /// Not an order: released for another try (visibility 0), never deleted.
    Rejected(String),
    /// The effect happened, then the consumer died before deleting the message.
    Crashed,
}

impl Outcome {
    pub(super) fn describe(&self) -> String {
        match self {
            Outcome::Applied => "processed, then deleted (ack)".to_owned(),
            Outcome::Duplicate(first) => format!("already processed by {first}: effect skipped, deleted"),
            Outcome::Rejected(reason) => format!("FAILED: {reason}; released for another try"),
            Outcome::Crashed => "processed, then CRASHED before deleting (no ack)".to_owned(),
        }
    }

    pub(super) fn done(&self) -> bool {
        matches!(self, Outcome::Applied | Outcome::Duplicate(_))
    }
}

/// One consumer's work on one message: apply the order's effect (idempotently), then delete the
/// message; a body that is not an order is released instead. With `crash`, it stops after the
/// effect, as a consumer that dies before acknowledging.
pub(super) async fn consume_one(
    lab: &Lab<'_>,
    subscriber: Subscriber,
    consumer: &str,
    message: &Received,
    started: Instant,
    crash: bool,
) -> Result<Handled> {
    let url = &lab.queue(subscriber).url;
    let since_start = || started.elapsed().as_millis() as u64;
    let (order_id, seq, outcome, at_ms) = match parse_order(&message.body) {
        Ok(order) => {
            let recorded = lab.store.record(subscriber, &order, consumer).await?;
            let at_ms = since_start();
            let outcome = if crash {
                Outcome::Crashed
            } else {
                messaging::ack(lab.sqs(), url, message).await?;
                if recorded.first_delivery { Outcome::Applied } else { Outcome::Duplicate(recorded.handled_by) }
            };
            (Some(order.order_id), Some(order.seq), outcome, at_ms)
        }
        Err(problem) => {
            let at_ms = since_start();
            messaging::release(lab.sqs(), url, message).await?;
            (None, None, Outcome::Rejected(problem.to_string()), at_ms)
        }
    };
    Ok(Handled {
        consumer: consumer.to_owned(),
        message_id: message.message_id.clone(),
        order_id,
        seq,
        receive_count: message.receive_count,
        outcome,
        at_ms,
        body: message.body.clone(),
        total_attribute: message.attribute(orders::TOTAL_ATTRIBUTE).map(str::to_owned),
    })
}

/// Competing consumers on one queue, one task each: every one receives (up to `max` at a time),
/// handles and acknowledges, until every order in `expected` is done and the queue answers
/// empty, or [`PATIENCE`] runs out. `pace` stands for the work each message takes. Returns
/// everything they handled, in time order, and the expected orders never done.
pub(super) async fn drain(
    lab: &Lab<'_>,
    subscriber: Subscriber,
    consumers: &[&str],
    expected: BTreeSet<String>,
    started: Instant,
    max: i32,
    pace: Duration,
) -> Result<(Vec<Handled>, BTreeSet<String>)> {
    let url = &lab.queue(subscriber).url;
    let remaining = Mutex::new(expected);
    let log = Mutex::new(Vec::new());
    let deadline = Instant::now() + PATIENCE;
    let consume = async |consumer: &str| -> Result<()> {
        loop {
            let batch = messaging::receive(lab.sqs(), url, max, 1, None).await?;
            let all_done = remaining.lock().expect("not poisoned").is_empty();
            if batch.is_empty() && (all_done || Instant::now() > deadline) {
                return Ok(());
            }
            for message in &batch {
                let handled = consume_one(lab, subscriber, consumer, message, started, false).await?;
                if let Some(id) = handled.order_id.as_ref().filter(|_| handled.outcome.done()) {
                    remaining.lock().expect("not poisoned").remove(id);
                }
                log.lock().expect("not poisoned").push(handled);
                tokio::time::sleep(pace).await;
            }
            if Instant::now() > deadline {
                return Ok(());
            }
        }
    };
    futures::future::try_join_all(consumers.iter().map(|c| consume(c))).await?;
    let mut log = log.into_inner().expect("not poisoned");
    log.sort_by_key(|h| h.at_ms);
    Ok((log, remaining.into_inner().expect("not poisoned")))
}

/// Looks with `look` until it says done or `timeout` passes, showing its status on a spinner.
/// Returns the last look and whether it was done.
pub(super) async fn watch<T>(
    what: &str,
    timeout: Duration,
    mut look: impl AsyncFnMut() -> Result<(T, bool, String)>,
) -> Result<(T, bool)> {
    let spinner = output::spinner(what);
    let deadline = Instant::now() + timeout;
    loop {
        let (seen, done, status) = look().await?;
        spinner.set_message(format!("{what}: {status}"));
        if done || Instant::now() > deadline {
            spinner.finish_and_clear();
            return Ok((seen, done));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the shipping worker has shipped every order in `ids`; returns the shipments.
pub(super) async fn wait_shipped(lab: &Lab<'_>, ids: &BTreeSet<String>) -> Result<BTreeMap<String, Effect>> {
    let what = format!("waiting for {} to ship {} orders", lab.worker, ids.len());
    let (shipped, _) = watch(&what, PATIENCE, async || {
        let (effects, _) = lab.effects().await?;
        let shipped: BTreeMap<String, Effect> = effects
            .into_iter()
            .filter(|e| e.consumer == Subscriber::Shipping.as_str() && ids.contains(&e.id))
            .map(|e| (e.id.clone(), e))
            .collect();
        let status = format!("{} of {} shipped", shipped.len(), ids.len());
        let done = shipped.len() == ids.len();
        Ok((shipped, done, status))
    })
    .await?;
    Ok(shipped)
}

/// Records `publication`, publishes its orders to the topic, and lets every subscriber's
/// consumers work on them at once: `billing_consumers` compete on billing (taking up to `max`
/// messages at a time, `pace` per message), analytics-1 reads analytics, and the Lambda ships.
/// Returns billing's deliveries; what was applied is for the caller to read from the effects table.
pub(super) async fn publish_and_consume(
    lab: &Lab<'_>,
    publication: &Publication,
    billing_consumers: &[&str],
    max: i32,
    pace: Duration,
) -> Result<Vec<Handled>> {
    let orders = publication.orders();
    let all = ids(&orders);
    let large = orders.iter().filter(|o| o.passes_analytics_filter()).map(|o| o.order_id.clone()).collect();
    lab.record(publication).await?;
    let messages: Vec<Outgoing> = orders.iter().map(outgoing).collect();
    let bar = output::progress(messages.len() as u64, "publishing");
    messaging::publish(&lab.target.clients.sns, &lab.topic_arn, &messages, &bar).await?;
    bar.finish_and_clear();
    let started = Instant::now();
    let ((billing, _), _, _) = tokio::try_join!(
        drain(lab, Subscriber::Billing, billing_consumers, all.clone(), started, max, pace),
        drain(lab, Subscriber::Analytics, &["analytics-1"], large, started, 10, Duration::ZERO),
        wait_shipped(lab, &all),
    )?;
    Ok(billing)
}
