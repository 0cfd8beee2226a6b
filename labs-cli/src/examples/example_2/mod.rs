//! Example 2: fan-out, load balancing, acknowledgements and redelivery (DDIA 11, "Messaging
//! Systems": "Multiple consumers" and "Acknowledgments and redelivery").
//!
//! An SNS topic fans orders out to three SQS queues. Billing and analytics are consumed by tasks
//! inside `labs`, shipping by the `shipping-worker` Lambda; scenario `direct` also runs billing
//! as a webhook inside `labs`, posted to by the producer itself. Every consumer records its effect in
//! the effects table, idempotently (see `shipping_worker::EffectStore`), and every run records
//! what it sent as a tag on the topic, so `verify` can regenerate it and compare.

mod consumers;
mod dead_letter;
mod direct;
mod fan_out;
mod lambda_partial_failure;
mod load_balance;
mod redelivery;
mod verify;
mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use labs_core::order_messages::{
    self as orders, Effect, Observation, Order, Publication, REJECTED, Rejection, Subscriber, preview,
};
use labs_infra::SdkContext;
use labs_infra::stack::{Lambda, Queue, Table, Topic};
use serde::Serialize;
use shipping_worker::DynamoEffects;

use self::consumers::Handled;
use super::scenario::{ScenarioReport, report};
use super::{About, RunOptions, VerifyOptions};
use crate::driver::dynamodb as db;
use crate::driver::messaging::{self, Outgoing, Received};
use crate::driver::seeds;
use crate::output::Output;
use crate::target::Target;

pub const ABOUT: About = About::new(
    2,
    "Messaging",
    "direct messaging vs a broker, fan-out vs load balancing, acks, redelivery and reordering, dead letters",
    "SNS, SQS, Lambda",
);

// The resources `infra/stacks/example-2.toml` declares.
const ORDERS_TOPIC: Topic = Topic::new("ex2-orders");
const BILLING: Queue = Queue::new("ex2-billing");
const BILLING_DLQ: Queue = Queue::new("ex2-billing-dlq");
const SHIPPING: Queue = Queue::new("ex2-shipping");
const SHIPPING_DLQ: Queue = Queue::new("ex2-shipping-dlq");
const ANALYTICS: Queue = Queue::new("ex2-analytics");
const ANALYTICS_DLQ: Queue = Queue::new("ex2-analytics-dlq");
const EFFECTS: Table = Table::new("ex2-effects");
const WORKER: Lambda = Lambda::new("ex2-shipping-worker");

/// A subscriber's queue and its dead-letter queue.
fn queues_of(subscriber: Subscriber) -> (Queue, Queue) {
    match subscriber {
        Subscriber::Billing => (BILLING, BILLING_DLQ),
        Subscriber::Shipping => (SHIPPING, SHIPPING_DLQ),
        Subscriber::Analytics => (ANALYTICS, ANALYTICS_DLQ),
    }
}

const SCENARIOS: [&str; 6] =
    ["fan-out", "load-balance", "redelivery", "dead-letter", "lambda-partial-failure", "direct"];
const DEFAULT_FAN_OUT_ORDERS: usize = 20;
const DEFAULT_LOAD_BALANCE_ORDERS: usize = 60;
const DEFAULT_DIRECT_ORDERS: usize = 30;
/// Direct needs orders before, during and after its consumer's outage (a third each).
const MIN_DIRECT_ORDERS: usize = 3;
const REDELIVERY_ORDERS: usize = 6;
const DEAD_LETTER_ORDERS: usize = 4;
const PARTIAL_FAILURE_ORDERS: usize = 5;
/// How long consumers and waits may take before a run gives up.
const PATIENCE: Duration = Duration::from_secs(90);
/// SNS allows 50 tags on a topic; three are labs' own, and a couple stay free for the learner.
const MAX_RUNS: usize = 45;
const LOAD_BALANCED_CONSUMERS: [&str; 3] = ["consumer-1", "consumer-2", "consumer-3"];

example!(Example2 {
    scenarios: &SCENARIOS,
    resources: [ORDERS_TOPIC, BILLING, BILLING_DLQ, SHIPPING, SHIPPING_DLQ, ANALYTICS, ANALYTICS_DLQ, EFFECTS, WORKER],
    run: run,
    verify: verify::verify
});

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
        let (sns, sqs) = (&target.clients.sns, &target.clients.sqs);
        let topic = target.name(ORDERS_TOPIC);
        let topic_arn = messaging::topic_arn(sns, &topic, "example-2").await?;
        let mut queues = BTreeMap::new();
        for subscriber in Subscriber::ALL {
            let (queue, dead_letter) = queues_of(subscriber);
            let (name, dead_letter_name) = (target.name(queue), target.name(dead_letter));
            let url = messaging::queue_url(sqs, &name, "example-2").await?;
            let dead_letter_url = messaging::queue_url(sqs, &dead_letter_name, "example-2").await?;
            queues.insert(subscriber, Queues { name, url, dead_letter_name, dead_letter_url });
        }
        let effects_table = target.name(EFFECTS);
        db::describe_table(&target.clients.dynamodb, &effects_table, "example-2").await?;
        let store = DynamoEffects::new(target.clients.dynamodb.clone(), effects_table.clone());
        Ok(Self { target, out, topic, topic_arn, queues, effects_table, worker: target.name(WORKER), store })
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

    /// What each run recorded it saw, by seed: an unreadable observation is an error, never
    /// skipped.
    async fn observations(&self) -> Result<BTreeMap<u64, Observation>> {
        let tags = self
            .target
            .clients
            .sns
            .list_tags_for_resource()
            .resource_arn(&self.topic_arn)
            .send()
            .await
            .doing(format!("reading tags of {}", self.topic))?;
        let mut observed = BTreeMap::new();
        for tag in tags.tags() {
            let Some(publication) = Publication::from_tag(tag.key(), tag.value()) else { continue };
            match Observation::from_tag_value(tag.value()) {
                Ok(Some(observation)) => {
                    observed.insert(publication.seed, observation);
                }
                Ok(None) => {}
                Err(why) => bail!("{} records run {} with an {why}", self.topic, publication.seed),
            }
        }
        Ok(observed)
    }

    /// Adds what a run saw to its tag, once the run has seen it.
    async fn record_observation(&self, publication: &Publication, observation: &Observation) -> Result<()> {
        let (key, _) = publication.tag();
        let tag = aws_sdk_sns::types::Tag::builder().key(key).value(observation.tag_value(publication)).build()?;
        self.target
            .clients
            .sns
            .tag_resource()
            .resource_arn(&self.topic_arn)
            .tags(tag)
            .send()
            .await
            .doing(format!("recording what run {} saw on {}", publication.seed, self.topic))?;
        Ok(())
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

/// Whether a queue holds a message with this body, and how often it had been received.
async fn find_in(lab: &Lab<'_>, url: &str, body: &str) -> Result<Option<Received>> {
    Ok(messaging::peek(lab.sqs(), url).await?.into_iter().find(|m| m.body == body))
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
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
    let sized = |s: &&str| ["fan-out", "load-balance", "direct"].contains(s);
    match args.count {
        Some(0) => bail!("--count must be at least 1"),
        Some(_) if !scenarios.iter().any(sized) => {
            bail!(
                "--count sets how many orders fan-out, load-balance and direct send; {} sends a fixed few",
                scenarios[0]
            )
        }
        Some(n) if n < MIN_DIRECT_ORDERS && scenarios.contains(&"direct") => {
            bail!(
                "--count must be at least {MIN_DIRECT_ORDERS} for direct: a third of its orders go out while the consumer is down"
            )
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
    let first = match args.seed {
        Some(seed) => seed,
        None => seeds::after_highest(used.iter().copied())?,
    };
    let seeds = seeds::consecutive(first, scenarios.len())?;
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
            "fan-out" => fan_out::fan_out(&lab, seed, count(DEFAULT_FAN_OUT_ORDERS)).await?,
            "load-balance" => load_balance::load_balance(&lab, seed, count(DEFAULT_LOAD_BALANCE_ORDERS)).await?,
            "redelivery" => redelivery::redelivery(&lab, seed).await?,
            "dead-letter" => dead_letter::dead_letter(&lab, seed).await?,
            "direct" => direct::direct(&lab, seed, count(DEFAULT_DIRECT_ORDERS)).await?,
            _ => lambda_partial_failure::lambda_partial_failure(&lab, seed).await?,
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
struct RunReport {
    topic: String,
    scenarios: Vec<ScenarioReport>,
}

#[cfg(test)]
mod tests {
    use super::consumers::Outcome;
    use super::*;

    #[test]
    fn the_declared_filter_policy_is_the_one_verify_expects() {
        let stack = labs_infra::stack::load("example-2").unwrap();
        let analytics = stack.subscriptions.iter().find(|s| s.queue == ANALYTICS.logical()).unwrap();
        let policy = analytics.filter_policy.as_ref().unwrap();
        let rule = &policy[orders::TOTAL_ATTRIBUTE][0]["numeric"];
        assert_eq!((rule[0].as_str(), rule[1].as_f64()), (Some(">="), Some(orders::ANALYTICS_MIN_TOTAL)));
        for subscriber in Subscriber::ALL {
            let (queue, dead_letter) = queues_of(subscriber);
            let name = queue.logical();
            let queue = stack.sqs_queues.iter().find(|q| q.name == name).unwrap();
            assert_eq!(queue.dead_letter.as_ref().unwrap().queue, dead_letter.logical());
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
