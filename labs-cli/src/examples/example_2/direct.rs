//! Scenario direct: the producer calls its consumer itself (a webhook, DDIA's "direct messaging
//! from producers to consumers"), and sends the same orders through a broker (billing's queue);
//! the consumer is down for the middle third of them.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use labs_core::order_messages::{Observation, Publication, Route, Subscriber, WEBHOOK, consumer_down};
use serde::Serialize;

use super::consumers::{Handled, consume_one};
use super::webhook::{self, ATTEMPTS, Posted, RETRY_PAUSE, Webhook};
use super::{Lab, PATIENCE, ScenarioReport, ids, outgoing, report};
use crate::driver::messaging;
use crate::output::percentile_ms;

/// The queue consumer's name in the effects table's `handled_by`.
const QUEUE_CONSUMER: &str = "billing-1";

/// What the producer did with one order, on both paths.
struct Sent {
    order_id: String,
    /// Sent while the consumer was down.
    down: bool,
    direct: Posted,
    /// When the queue path's SendMessage began, and how long it took.
    queued_at: Instant,
    queue_send: Duration,
}

#[derive(Serialize)]
struct PathReport {
    sent: usize,
    /// Orders the consumer applied, from the effects table.
    delivered: usize,
    /// Orders sent while the consumer was down that never reached it.
    lost: usize,
    /// Calls the producer made on this path, retries included.
    calls: usize,
    /// Order sent -> effect applied, for the orders sent while the consumer was up.
    latency_p50_ms: f64,
    /// How long the producer was held per order while the consumer was up.
    producer_blocked_p50_ms: f64,
}

/// Sends every order both ways, one at a time, taking the consumer down for the middle third:
/// its webhook refuses connections and its queue consumer stops polling. Then counts, from the
/// effects table, what reached it by each path.
pub(super) async fn direct(lab: &Lab<'_>, seed: u64, count: usize) -> Result<ScenarioReport> {
    let out = lab.out;
    let publication = Publication { seed, route: Route::Direct, count };
    let orders = publication.orders();
    let down = consumer_down(count);
    let billing = lab.queue(Subscriber::Billing);
    let mut webhook = Webhook::start(lab.store.clone()).await?;
    let url = webhook.url();
    let (first_down, last_down) = (orders[down.start].seq, orders[down.end - 1].seq);
    out.say(format!(
        "\n== direct: the producer calls its consumer itself, or sends through a broker ==\n\
         1. Billing listens as a webhook on {url} and reads {}. Sending {count} orders (seed {seed})\n   \
         both ways, one at a time: a POST to the webhook (direct), and a message to the queue (broker).\n   \
         Orders {first_down} to {last_down} are sent while billing is down: its webhook server is stopped (connection\n   \
         refused) and it stops polling the queue. A direct send is tried {ATTEMPTS} times, {} ms apart,\n   \
         then given up (a webhook sender retries briefly and moves on); the queue path just sends.",
        billing.name,
        RETRY_PAUSE.as_millis()
    ));
    lab.record(&publication).await?;
    let started = Instant::now();
    // Held by the queue consumer while it polls, and by the producer while billing is down.
    let gate = tokio::sync::Mutex::new(());
    let remaining = Mutex::new(ids(&orders));
    let agent = webhook::client();

    let produce = async {
        let mut sent = Vec::with_capacity(orders.len());
        let mut outage = None;
        for (index, order) in orders.iter().enumerate() {
            if index == down.start {
                webhook.stop().await?;
                outage = Some(gate.lock().await);
                out.say(format!("   order {}: billing goes down", order.seq));
            }
            if index == down.end {
                webhook.restart().await?;
                outage = None;
                out.say(format!("   order {}: billing is back", order.seq));
            }
            let direct = webhook::post_order(&agent, &url, order).await;
            let queued_at = Instant::now();
            messaging::send(lab.sqs(), &billing.url, &[outgoing(order)], None).await?;
            let queue_send = queued_at.elapsed();
            sent.push(Sent {
                order_id: order.order_id.clone(),
                down: down.contains(&index),
                direct,
                queued_at,
                queue_send,
            });
        }
        drop(outage);
        anyhow::Ok(sent)
    };
    let consume = async {
        let deadline = Instant::now() + PATIENCE;
        let mut log: Vec<Handled> = Vec::new();
        loop {
            let _up = gate.lock().await;
            if remaining.lock().expect("not poisoned").is_empty() || Instant::now() > deadline {
                return anyhow::Ok(log);
            }
            for message in messaging::receive(lab.sqs(), &billing.url, 10, 1, None).await? {
                let handled = consume_one(lab, Subscriber::Billing, QUEUE_CONSUMER, &message, started, false).await?;
                if let Some(id) = handled.order_id.as_ref().filter(|_| handled.outcome.done()) {
                    remaining.lock().expect("not poisoned").remove(id);
                }
                log.push(handled);
            }
        }
    };
    let (sent, log) = tokio::try_join!(produce, consume)?;
    webhook.stop().await?;

    // What arrived, read back from the effects table rather than from either side's account.
    let (effects, _) = lab.effects().await?;
    let run = ids(&orders);
    let reached = |consumer: &str| -> BTreeSet<&str> {
        effects.iter().filter(|e| e.consumer == consumer && run.contains(&e.id)).map(|e| e.id.as_str()).collect()
    };
    let (by_webhook, by_queue) = (reached(WEBHOOK), reached(Subscriber::Billing.as_str()));
    let lost = |got: &BTreeSet<&str>| sent.iter().filter(|s| s.down && !got.contains(s.order_id.as_str())).count();
    let up: Vec<&Sent> = sent.iter().filter(|s| !s.down).collect();
    let applied_at = |id: &str| {
        log.iter().find(|h| h.order_id.as_deref() == Some(id)).map(|h| started + Duration::from_millis(h.at_ms))
    };
    let queue_latency: Vec<Duration> =
        sorted(up.iter().filter_map(|s| applied_at(&s.order_id).map(|at| at.saturating_duration_since(s.queued_at))));
    let direct_latency = sorted(up.iter().filter_map(|s| s.direct.outcome.clone().ok()));
    let held: Vec<Duration> = sorted(
        sent.iter()
            .filter(|s| s.down)
            .filter_map(|s| applied_at(&s.order_id).map(|at| at.saturating_duration_since(s.queued_at))),
    );
    let posts: usize = sent.iter().map(|s| s.direct.attempts as usize).sum();
    let gave_up: Vec<&Sent> = sent.iter().filter(|s| s.direct.outcome.is_err()).collect();
    let retrying: Duration = gave_up.iter().map(|s| s.direct.busy).sum();
    let refused = gave_up.first().and_then(|s| s.direct.outcome.clone().err()).unwrap_or_default();
    let direct = PathReport {
        sent: sent.len(),
        delivered: by_webhook.len(),
        lost: lost(&by_webhook),
        calls: posts,
        latency_p50_ms: percentile_ms(&direct_latency, 0.5),
        producer_blocked_p50_ms: percentile_ms(&sorted(up.iter().map(|s| s.direct.busy)), 0.5),
    };
    let broker = PathReport {
        sent: sent.len(),
        delivered: by_queue.len(),
        lost: lost(&by_queue),
        calls: sent.len(),
        latency_p50_ms: percentile_ms(&queue_latency, 0.5),
        producer_blocked_p50_ms: percentile_ms(&sorted(up.iter().map(|s| s.queue_send)), 0.5),
    };
    let down_count = down.len();
    let observed = Observation::Direct { webhook: direct.delivered, lost: direct.lost, queue: broker.delivered };
    lab.record_observation(&publication, &observed).await?;
    let seconds = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    out.table(
        "2. Each path, counted in the effects table:",
        &["path", "sent", "delivered", "lost while billing was down", "what the producer had to do"],
        [
            vec![
                format!("direct: POST {url}"),
                direct.sent.to_string(),
                direct.delivered.to_string(),
                format!("{} of {down_count}", direct.lost),
                format!(
                    "{posts} POSTs: the {} refused ({refused}) tried {ATTEMPTS} times each, {} in all, then dropped",
                    gave_up.len(),
                    seconds(retrying)
                ),
            ],
            vec![
                format!("broker: SendMessage to {}", billing.name),
                broker.sent.to_string(),
                broker.delivered.to_string(),
                format!("{} of {down_count}", broker.lost),
                format!(
                    "{} SendMessage calls; the queue held the {down_count} for {} to {}, until billing polled again",
                    broker.calls,
                    seconds(held.first().copied().unwrap_or_default()),
                    seconds(held.last().copied().unwrap_or_default())
                ),
            ],
        ],
    );
    let ms = |v: f64| format!("{v:.1} ms");
    out.table(
        "3. Direct messaging's pros and cons, from this run:",
        &["", "direct (webhook)", "broker (queue)"],
        [
            vec!["parts to run".to_owned(), "producer, consumer".to_owned(), "producer, queue, consumer".to_owned()],
            vec![
                "order sent -> effect applied (p50, billing up)".to_owned(),
                ms(direct.latency_p50_ms),
                ms(broker.latency_p50_ms),
            ],
            vec!["orders lost while billing was down".to_owned(), direct.lost.to_string(), broker.lost.to_string()],
            vec![
                "what the producer must know".to_owned(),
                "each consumer's address: one POST per consumer".to_owned(),
                "the queue's (or a topic's: consumers subscribe)".to_owned(),
            ],
            vec![
                "producer held per order (p50, billing up)".to_owned(),
                format!("{} (the consumer's work included)", ms(direct.producer_blocked_p50_ms)),
                format!("{} (the queue answers)", ms(broker.producer_blocked_p50_ms)),
            ],
        ],
    );
    out.say(format!(
        "   Pros of direct messaging: no broker to run, and the lowest latency ({} against {}: through the\n   \
         queue an order waits for the consumer's next receive; the embedded emulator's long poll looks every\n   \
         0.1 s). Cons: {} of the {down_count} orders sent while billing was down are lost, unless the producer keeps\n   \
         and retries them for as long as the outage lasts, and then it has become a broker itself; the producer\n   \
         must know every consumer; and nothing buffers for a slow consumer: a POST returns only once the\n   \
         consumer has done its work, so a slower consumer holds the producer up by as much. The queue lost\n   \
         none: it kept them until billing polled again.",
        ms(direct.latency_p50_ms),
        ms(broker.latency_p50_ms),
        direct.lost
    ));

    let mut problems = Vec::new();
    if direct.delivered != count - down_count || direct.lost != down_count {
        problems.push(format!(
            "the webhook got {} orders, {} of the {down_count} sent while it was down were lost: expected {} and all",
            direct.delivered,
            direct.lost,
            count - down_count
        ));
    }
    if broker.delivered != count {
        problems.push(format!("only {} of {count} orders came through the queue", broker.delivered));
    }
    report(
        "direct",
        seed,
        problems,
        serde_json::json!({
            "orders": count, "down_seqs": [first_down, last_down], "webhook": url, "direct": direct, "broker": broker,
            "retry_attempts": ATTEMPTS, "held_by_queue_ms": held.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
        }),
    )
}

fn sorted(durations: impl IntoIterator<Item = Duration>) -> Vec<Duration> {
    let mut all: Vec<Duration> = durations.into_iter().collect();
    all.sort_unstable();
    all
}
