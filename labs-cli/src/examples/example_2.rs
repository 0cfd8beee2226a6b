//! Example 2: fan-out, load balancing, acknowledgements and redelivery (DDIA 11, "Messaging
//! Systems": "Multiple consumers" and "Acknowledgments and redelivery").
//!
//! An SNS topic fans orders out to three SQS queues. Billing and analytics are consumed by tasks
//! inside `labs`, shipping by the `shipping-worker` Lambda. Every consumer records its effect in
//! the effects table, idempotently (see `shipping_worker::EffectStore`), and every run records
//! what it sent as a tag on the topic, so `verify` can regenerate it and compare.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use labs_core::order_messages::{
    self as orders, Effect, Finding, Order, Publication, REJECTED, Rejection, Route, Subscriber, parse_order, preview,
};
use labs_infra::SdkContext;
use serde::Serialize;
use shipping_worker::{DynamoEffects, EffectStore};

use crate::cli::RunArgs;
use crate::driver::dynamodb as db;
use crate::driver::messaging::{self, Outgoing, Received};
use crate::output::{self, Output};
use crate::target::Target;

const SCENARIOS: [&str; 5] = ["fan-out", "load-balance", "redelivery", "dead-letter", "lambda-partial-failure"];
const DEFAULT_FAN_OUT_ORDERS: usize = 20;
const DEFAULT_LOAD_BALANCE_ORDERS: usize = 60;
const REDELIVERY_ORDERS: usize = 6;
const DEAD_LETTER_ORDERS: usize = 4;
const PARTIAL_FAILURE_ORDERS: usize = 5;
/// How long consumers and waits may take before a run gives up.
const PATIENCE: Duration = Duration::from_secs(90);
/// SNS allows 50 tags on a topic; two are labs' own, and a few stay free for the learner.
const MAX_RUNS: usize = 45;
const LOAD_BALANCED_CONSUMERS: [&str; 3] = ["consumer-1", "consumer-2", "consumer-3"];

/// The example's resources, looked up once.
struct Lab<'a> {
    target: &'a Target,
    out: Output,
    topic: String,
    topic_arn: String,
    queues: BTreeMap<Subscriber, Queues>,
    effects_table: String,
    worker: String,
    store: DynamoEffects,
}

struct Queues {
    name: String,
    url: String,
    dead_letter_name: String,
    dead_letter_url: String,
}

impl<'a> Lab<'a> {
    async fn connect(target: &'a Target, out: Output) -> Result<Self> {
        let p = &target.prefix;
        let (sns, sqs) = (&target.clients.sns, &target.clients.sqs);
        let topic = format!("{p}-ex2-orders");
        let topic_arn = messaging::topic_arn(sns, &topic, "example-2").await?;
        let mut queues = BTreeMap::new();
        for subscriber in Subscriber::ALL {
            let name = format!("{p}-ex2-{subscriber}");
            let dead_letter_name = format!("{name}-dlq");
            let url = messaging::queue_url(sqs, &name, "example-2").await?;
            let dead_letter_url = messaging::queue_url(sqs, &dead_letter_name, "example-2").await?;
            queues.insert(subscriber, Queues { name, url, dead_letter_name, dead_letter_url });
        }
        let effects_table = format!("{p}-ex2-effects");
        db::describe_table(&target.clients.dynamodb, &effects_table, "example-2").await?;
        let store = DynamoEffects::new(target.clients.dynamodb.clone(), effects_table.clone());
        Ok(Self {
            target,
            out,
            topic,
            topic_arn,
            queues,
            effects_table,
            worker: format!("{p}-ex2-shipping-worker"),
            store,
        })
    }

    fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.target.clients.sqs
    }

    fn queue(&self, subscriber: Subscriber) -> &Queues {
        &self.queues[&subscriber]
    }

    /// What every run so far sent, from the topic's tags.
    async fn runs(&self) -> Result<Vec<Publication>> {
        let tags = self
            .target
            .clients
            .sns
            .list_tags_for_resource()
            .resource_arn(&self.topic_arn)
            .send()
            .await
            .doing(format!("reading tags of {}", self.topic))?;
        let mut runs: Vec<Publication> =
            tags.tags().iter().filter_map(|t| Publication::from_tag(t.key(), t.value())).collect();
        runs.sort_by_key(|p| p.seed);
        Ok(runs)
    }

    /// Records a run on the topic before anything is sent, so a run that stops halfway shows up
    /// in `verify` as missing orders rather than vanishing.
    async fn record(&self, publication: &Publication) -> Result<()> {
        let (key, value) = publication.tag();
        let tag = aws_sdk_sns::types::Tag::builder().key(key).value(value).build()?;
        self.target
            .clients
            .sns
            .tag_resource()
            .resource_arn(&self.topic_arn)
            .tags(tag)
            .send()
            .await
            .doing(format!("recording run {} on {}", publication.seed, self.topic))?;
        Ok(())
    }

    /// Every row of the effects table: what the consumers did, and what the worker rejected.
    async fn effects(&self) -> Result<(Vec<Effect>, Vec<Rejection>)> {
        let (mut effects, mut rejections) = (Vec::new(), Vec::new());
        for item in db::scan_all(&self.target.clients.dynamodb, &self.effects_table).await? {
            let key = format!("{:?}", (item.get("consumer"), item.get("id")));
            let odd = || format!("{} holds a row that is not an effect: {key}", self.effects_table);
            if matches!(item.get("consumer"), Some(AttributeValue::S(c)) if c == REJECTED) {
                rejections.push(serde_dynamo::from_item(item).with_context(odd)?);
            } else {
                effects.push(serde_dynamo::from_item(item).with_context(odd)?);
            }
        }
        Ok((effects, rejections))
    }

    fn prefix_flag(&self) -> String {
        let p = &self.target.prefix;
        if p == "labs" { String::new() } else { format!(" --prefix {p}") }
    }
}

fn ids(orders: &[Order]) -> BTreeSet<String> {
    orders.iter().map(|o| o.order_id.clone()).collect()
}

fn outgoing(order: &Order) -> Outgoing {
    Outgoing {
        body: order.body(),
        number_attributes: vec![(orders::TOTAL_ATTRIBUTE.to_owned(), order.total_attribute())],
    }
}

fn join(seqs: &[u64]) -> String {
    seqs.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
}

/// What a consumer did with one message it received.
#[derive(Debug, Clone, Serialize)]
struct Handled {
    consumer: String,
    message_id: String,
    order_id: Option<String>,
    seq: Option<u64>,
    /// SQS's ApproximateReceiveCount: 2 and more are redeliveries.
    receive_count: u32,
    outcome: Outcome,
    /// Milliseconds since the scenario began.
    at_ms: u64,
    #[serde(skip)]
    body: String,
    #[serde(skip)]
    total_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
enum Outcome {
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
    fn describe(&self) -> String {
        match self {
            Outcome::Applied => "processed, then deleted (ack)".to_owned(),
            Outcome::Duplicate(first) => format!("already processed by {first}: effect skipped, deleted"),
            Outcome::Rejected(reason) => format!("FAILED: {reason}; released for another try"),
            Outcome::Crashed => "processed, then CRASHED before deleting (no ack)".to_owned(),
        }
    }

    fn done(&self) -> bool {
        matches!(self, Outcome::Applied | Outcome::Duplicate(_))
    }
}

/// One consumer's work on one message: apply the order's effect (idempotently), then delete the
/// message; a body that is not an order is released instead. With `crash`, it stops after the
/// effect, as a consumer that dies before acknowledging.
async fn consume_one(
    lab: &Lab<'_>,
    subscriber: Subscriber,
    consumer: &str,
    message: &Received,
    started: Instant,
    crash: bool,
) -> Result<Handled> {
    let url = &lab.queue(subscriber).url;
    let (order_id, seq, outcome) = match parse_order(&message.body) {
        Ok(order) => {
            let recorded = lab.store.record(subscriber, &order, consumer).await?;
            let outcome = if crash {
                Outcome::Crashed
            } else {
                messaging::ack(lab.sqs(), url, message).await?;
                if recorded.first_delivery { Outcome::Applied } else { Outcome::Duplicate(recorded.handled_by) }
            };
            (Some(order.order_id), Some(order.seq), outcome)
        }
        Err(problem) => {
            messaging::release(lab.sqs(), url, message).await?;
            (None, None, Outcome::Rejected(problem.to_string()))
        }
    };
    Ok(Handled {
        consumer: consumer.to_owned(),
        message_id: message.message_id.clone(),
        order_id,
        seq,
        receive_count: message.receive_count,
        outcome,
        at_ms: started.elapsed().as_millis() as u64,
        body: message.body.clone(),
        total_attribute: message.attribute(orders::TOTAL_ATTRIBUTE).map(str::to_owned),
    })
}

/// Competing consumers on one queue, one task each: every one receives (up to `max` at a time),
/// handles and acknowledges, until every order in `expected` is done and the queue answers
/// empty, or [`PATIENCE`] runs out. `pace` stands for the work each message takes. Returns
/// everything they handled, in time order, and the expected orders never done.
async fn drain(
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
async fn watch<T>(
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
async fn wait_shipped(lab: &Lab<'_>, ids: &BTreeSet<String>) -> Result<BTreeMap<String, Effect>> {
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

/// What every subscriber's consumers did with one published run.
struct Consumed {
    billing: Vec<Handled>,
    analytics: Vec<Handled>,
    shipped: BTreeMap<String, Effect>,
}

/// Records `publication`, publishes its orders to the topic, and lets every subscriber's
/// consumers work on them at once: `billing_consumers` compete on billing (taking up to `max`
/// messages at a time, `pace` per message), analytics-1 reads analytics, and the Lambda ships.
async fn publish_and_consume(
    lab: &Lab<'_>,
    publication: &Publication,
    billing_consumers: &[&str],
    max: i32,
    pace: Duration,
) -> Result<Consumed> {
    let orders = publication.orders();
    let all = ids(&orders);
    let large = orders.iter().filter(|o| o.passes_analytics_filter()).map(|o| o.order_id.clone()).collect();
    lab.record(publication).await?;
    let messages: Vec<Outgoing> = orders.iter().map(outgoing).collect();
    let bar = output::progress(messages.len() as u64, "publishing");
    messaging::publish(&lab.target.clients.sns, &lab.topic_arn, &messages, &bar).await?;
    bar.finish_and_clear();
    let started = Instant::now();
    let ((billing, _), (analytics, _), shipped) = tokio::try_join!(
        drain(lab, Subscriber::Billing, billing_consumers, all.clone(), started, max, pace),
        drain(lab, Subscriber::Analytics, &["analytics-1"], large, started, 10, Duration::ZERO),
        wait_shipped(lab, &all),
    )?;
    Ok(Consumed { billing, analytics, shipped })
}

/// One scenario's outcome, for `--json` and for deciding whether the run succeeded.
#[derive(Serialize)]
struct ScenarioReport {
    scenario: &'static str,
    seed: u64,
    /// What went against the lesson, if anything.
    problem: Option<String>,
    #[serde(flatten)]
    details: serde_json::Value,
}

fn report(scenario: &'static str, seed: u64, problems: Vec<String>, details: impl Serialize) -> Result<ScenarioReport> {
    let problem = (!problems.is_empty()).then(|| format!("{scenario}: {}", problems.join("; ")));
    Ok(ScenarioReport { scenario, seed, problem, details: serde_json::to_value(details)? })
}

#[derive(Serialize)]
struct QueueCount {
    queue: String,
    expected: usize,
    handled: usize,
    consumer: String,
}

/// Every subscribed queue gets its own copy of every order (analytics: those its filter passes).
async fn fan_out(lab: &Lab<'_>, seed: u64, count: usize) -> Result<ScenarioReport> {
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

#[derive(Serialize)]
struct ConsumerShare {
    consumer: String,
    orders: usize,
}

/// Competing consumers on one queue: each message goes to exactly one of them.
async fn load_balance(lab: &Lab<'_>, seed: u64, count: usize) -> Result<ScenarioReport> {
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
    let log =
        publish_and_consume(lab, &publication, &LOAD_BALANCED_CONSUMERS, 5, Duration::from_millis(20)).await?.billing;

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

fn timeline(title: &str, out: Output, log: &[Handled]) {
    out.table(
        title,
        &["t", "consumer", "message", "seq", "receive count", "what happened"],
        log.iter().map(|h| {
            vec![
                format!("{:.1} s", h.at_ms as f64 / 1000.0),
                h.consumer.clone(),
                h.order_id.clone().unwrap_or_else(|| format!("({})", preview(&h.body, 30))),
                h.seq.map(|s| s.to_string()).unwrap_or_default(),
                h.receive_count.to_string(),
                h.outcome.describe(),
            ]
        }),
    );
}

/// A consumer crashes before acknowledging: the message comes back after the visibility timeout,
/// behind later ones, and an idempotent consumer keeps its effect to once.
async fn redelivery(lab: &Lab<'_>, seed: u64) -> Result<ScenarioReport> {
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

/// Whether a queue holds a message with this body, and how often it had been received.
async fn find_in(lab: &Lab<'_>, url: &str, body: &str) -> Result<Option<Received>> {
    Ok(messaging::peek(lab.sqs(), url).await?.into_iter().find(|m| m.body == body))
}

/// A poison message is received and failed until the redrive policy moves it to the dead-letter
/// queue; the orders around it keep flowing. Then it is redriven, and fails again.
async fn dead_letter(lab: &Lab<'_>, seed: u64) -> Result<ScenarioReport> {
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

#[derive(Serialize)]
struct WorkerOutcome {
    message: String,
    outcome: String,
    delivered: u64,
    now: String,
}

/// One batch to the shipping worker with one bad message: only that one is retried, then
/// dead-lettered; Lambda deletes the others.
async fn lambda_partial_failure(lab: &Lab<'_>, seed: u64) -> Result<ScenarioReport> {
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

#[derive(Serialize)]
struct RunReport {
    topic: String,
    scenarios: Vec<ScenarioReport>,
}

pub async fn run(target: &Target, args: &RunArgs, out: Output) -> Result<()> {
    if args.query.is_some() {
        bail!("example-2 has no --query (that is example-3's search)");
    }
    let scenarios: Vec<&'static str> = match args.scenario.as_deref() {
        None => SCENARIOS.to_vec(),
        Some(name) => match SCENARIOS.iter().find(|s| **s == name) {
            Some(known) => vec![*known],
            None => bail!("example-2 has no scenario '{name}': use one of {}", SCENARIOS.join(", ")),
        },
    };
    let sized = |s: &&str| *s == "fan-out" || *s == "load-balance";
    match args.count {
        Some(0) => bail!("--count must be at least 1"),
        Some(_) if !scenarios.iter().any(sized) => {
            bail!("--count sets how many orders fan-out and load-balance publish; {} sends a fixed few", scenarios[0])
        }
        _ => {}
    }
    let lab = Lab::connect(target, out).await?;
    let runs = lab.runs().await?;
    if runs.len() + scenarios.len() > MAX_RUNS {
        bail!(
            "{} already records {} runs, and SNS keeps at most 50 tags on a topic: `labs down example-2` to start over",
            lab.topic,
            runs.len()
        );
    }
    let used: BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let first = args.seed.unwrap_or_else(|| used.last().map_or(1, |s| s + 1));
    let seeds: Vec<u64> = (0..scenarios.len() as u64).map(|i| first + i).collect();
    if let Some(taken) = seeds.iter().find(|s| used.contains(s)) {
        bail!(
            "seed {taken} was already used on {}: pick another --seed, or `labs down example-2` to start over",
            lab.topic
        );
    }
    target.confirm(&format!("Publish orders to {} and send messages to its queues?", lab.topic))?;

    let mut reports = Vec::new();
    for (scenario, seed) in scenarios.iter().zip(seeds) {
        let count = |default| args.count.unwrap_or(default);
        reports.push(match *scenario {
            "fan-out" => fan_out(&lab, seed, count(DEFAULT_FAN_OUT_ORDERS)).await?,
            "load-balance" => load_balance(&lab, seed, count(DEFAULT_LOAD_BALANCE_ORDERS)).await?,
            "redelivery" => redelivery(&lab, seed).await?,
            "dead-letter" => dead_letter(&lab, seed).await?,
            _ => lambda_partial_failure(&lab, seed).await?,
        });
    }
    out.say(format!("\nCheck the outcome from the data: labs verify example-2{}", lab.prefix_flag()));
    let problems: Vec<String> = reports.iter().filter_map(|r| r.problem.clone()).collect();
    out.json(&RunReport { topic: lab.topic.clone(), scenarios: reports })?;
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

#[derive(Serialize)]
struct VerifyReport {
    topic: String,
    runs: Vec<Publication>,
    expected: BTreeMap<Subscriber, usize>,
    findings: Vec<Finding>,
    /// Effects whose order was delivered more than once (and still applied once).
    redelivered: usize,
    /// What the queues still hold.
    queues: BTreeMap<Subscriber, messaging::Depth>,
    passed: bool,
}

/// Regenerates what every recorded run sent and checks it against the effects table and the
/// dead-letter queues. The shipping worker runs on its own, so while its queue still holds
/// messages, a difference only counts once it has outlived `grace`.
pub async fn verify(target: &Target, grace: Duration, out: Output) -> Result<bool> {
    let lab = Lab::connect(target, out).await?;
    let runs = lab.runs().await?;
    if runs.is_empty() {
        bail!("nothing to verify: {} has no recorded runs (run `labs run example-2` first)", lab.topic);
    }
    let expected = orders::expect(&runs);
    let ((findings, effects, queues), _) = watch("reading the effects and the dead-letter queues", grace, async || {
        let (effects, _) = lab.effects().await?;
        let mut dead_letters = BTreeMap::new();
        let mut queues = BTreeMap::new();
        for subscriber in Subscriber::ALL {
            let q = lab.queue(subscriber);
            let held = messaging::peek(lab.sqs(), &q.dead_letter_url).await?;
            dead_letters.insert(subscriber, held.into_iter().map(|m| m.body).collect());
            queues.insert(subscriber, messaging::depth(lab.sqs(), &q.url).await?);
        }
        let findings = orders::check(&expected, &effects, &dead_letters);
        let passed = findings.iter().all(Finding::passed);
        let worker_busy = queues[&Subscriber::Shipping].total() > 0;
        let status = format!(
            "{} checks failing; the shipping worker has messages left: {worker_busy}",
            findings.iter().filter(|f| !f.passed()).count()
        );
        Ok(((findings, effects, queues), passed || !worker_busy, status))
    })
    .await?;
    let passed = findings.iter().all(Finding::passed);
    let redelivered = effects.iter().filter(|e| e.deliveries > 1).count();
    let counts: BTreeMap<Subscriber, usize> = expected.orders.iter().map(|(s, ids)| (*s, ids.len())).collect();
    out.table(
        &format!(
            "Verifying example-2: {} recorded runs; billing should have handled {}, shipping {}, analytics {} orders",
            runs.len(),
            counts[&Subscriber::Billing],
            counts[&Subscriber::Shipping],
            counts[&Subscriber::Analytics]
        ),
        &["check", "result", "details"],
        findings.iter().map(|f| {
            let shown: Vec<&str> = f.problems.iter().take(3).map(String::as_str).collect();
            let more = if f.problems.len() > 3 { format!(" (+{} more)", f.problems.len() - 3) } else { String::new() };
            vec![
                f.check.clone(),
                if f.passed() { "ok" } else { "FAILED" }.to_owned(),
                format!("{}{more}", shown.join(", ")),
            ]
        }),
    );
    if redelivered > 0 {
        out.say(format!(
            "note: {} delivered to a consumer more than once and processed once (idempotent effects).",
            if redelivered == 1 { "1 order was".to_owned() } else { format!("{redelivered} orders were") }
        ));
    }
    let waiting: Vec<String> = queues
        .iter()
        .filter(|(_, d)| d.total() > 0)
        .map(|(s, d)| format!("{} holds {} messages", lab.queue(*s).name, d.total()))
        .collect();
    if !waiting.is_empty() && !passed {
        out.say(format!(
            "note: {}: a run stopped before its consumers finished, or the worker is behind.",
            waiting.join(", ")
        ));
    }
    out.json(&VerifyReport {
        topic: lab.topic.clone(),
        runs,
        expected: counts,
        findings,
        redelivered,
        queues,
        passed,
    })?;
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_filter_policy_is_the_one_verify_expects() {
        let stack = labs_infra::stack::load("example-2").unwrap();
        let analytics = stack.subscriptions.iter().find(|s| s.queue == "ex2-analytics").unwrap();
        let policy = analytics.filter_policy.as_ref().unwrap();
        let rule = &policy[orders::TOTAL_ATTRIBUTE][0]["numeric"];
        assert_eq!((rule[0].as_str(), rule[1].as_f64()), (Some(">="), Some(orders::ANALYTICS_MIN_TOTAL)));
        for subscriber in Subscriber::ALL {
            let name = format!("ex2-{subscriber}");
            let queue = stack.sqs_queues.iter().find(|q| q.name == name).unwrap();
            assert_eq!(queue.dead_letter.as_ref().unwrap().queue, format!("{name}-dlq"));
            assert!(stack.subscriptions.iter().any(|s| s.queue == name && s.raw_message_delivery));
        }
    }

    #[test]
    fn outcomes_read_as_sentences() {
        assert!(Outcome::Crashed.describe().contains("before deleting"));
        assert!(Outcome::Duplicate("consumer-A".into()).describe().contains("consumer-A"));
        assert!(!Outcome::Rejected("bad".into()).done());
    }
}
