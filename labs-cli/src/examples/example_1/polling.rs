//! Scenario polling: what polling costs. Consumers poll the shards with GetRecords at several
//! intervals while a producer sends a slow trickle of events, beside a push consumer (enhanced
//! fan-out: Kinesis pushes each shard's records over SubscribeToShard); every ask, every empty
//! answer and every event's latency is counted.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_kinesis::Client;
use indicatif::ProgressBar;
use labs_core::clickstream::{self, ClickstreamSpec};
use serde::Serialize;

use super::observed::{InLog, Observed, ScenarioCheck, record};
use super::seed_counts;
use crate::driver::clickstream::{decode, encode};
use crate::driver::fan_out::{self, Subscription};
use crate::driver::kinesis::{self, Incoming, Outgoing, Page, Position, ShardReader};
use crate::examples::scenario::{ScenarioReport, report};
use crate::output::{self, Output};
use crate::target::Target;

pub(super) const NAME: &str = "polling";
pub(super) const DEFAULT_EVENTS: usize = 20;
/// The polling consumers' intervals, in milliseconds.
const INTERVALS: [u64; 3] = [100, 1000, 3000];
/// The producer sends one event every PACE: a trickle, as most streams carry most of the time.
const PACE: Duration = Duration::from_millis(250);
/// How long consumers wait for the last events after the producer is done.
const GRACE: Duration = Duration::from_secs(5);
/// The enhanced fan-out consumer's name (it is scoped to the stream, which carries the prefix).
const PUSH_CONSUMER: &str = "labs-push";

/// What one consumer did.
#[derive(Debug, Default, Clone, Serialize)]
struct Tally {
    consumer: String,
    /// GetRecords calls, or events pushed.
    asks: u64,
    /// Of those, the ones that carried no record.
    empty: u64,
    /// GetRecords calls the shard refused (5 a second per shard, shared by its polling consumers).
    throttled: u64,
    received: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    #[serde(skip)]
    latencies: Vec<Duration>,
}

impl Tally {
    fn new(consumer: String) -> Self {
        Self { consumer, ..Self::default() }
    }

    /// Counts one answer: the seed's events in it, and how long after their arrival they came.
    fn count(&mut self, page: &Page, seed_prefix: &str) {
        self.asks += 1;
        self.throttled += u64::from(page.throttled);
        self.empty += u64::from(!page.throttled && page.records.is_empty());
        let now = millis_now();
        for record in page.records.iter().filter(|r| is_ours(r, seed_prefix)) {
            self.received += 1;
            self.latencies.push(Duration::from_millis(now.saturating_sub(record.arrival_millis).max(0) as u64));
        }
    }

    fn finish(mut self) -> Self {
        self.latencies.sort();
        self.latency_p50_ms = output::percentile_ms(&self.latencies, 0.5);
        self.latency_p99_ms = output::percentile_ms(&self.latencies, 0.99);
        self
    }
}

fn is_ours(record: &Incoming, seed_prefix: &str) -> bool {
    decode(record).is_some_and(|e| e.event_id.starts_with(seed_prefix))
}

fn millis_now() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Polls every shard every `interval` until it has `expected` events of the seed, or `until`.
async fn poller(
    client: &Client,
    mut readers: Vec<ShardReader>,
    interval: Duration,
    seed_prefix: &str,
    expected: u64,
    until: Instant,
) -> Result<Tally> {
    let mut tally = Tally::new(format!("GetRecords every {} ms", interval.as_millis()));
    while tally.received < expected && Instant::now() < until {
        let tick = Instant::now();
        for reader in &mut readers {
            tally.count(&reader.next_page(client, 10_000).await?, seed_prefix);
        }
        tokio::time::sleep(interval.saturating_sub(tick.elapsed())).await;
    }
    Ok(tally.finish())
}

/// Reads every shard's subscription until `expected` events of the seed came, or `until`.
async fn pusher(
    mut subscriptions: Vec<Subscription>,
    seed_prefix: &str,
    expected: u64,
    until: Instant,
) -> Result<Tally> {
    let tally = std::cell::RefCell::new(Tally::new("SubscribeToShard (pushed)".into()));
    let done = Cell::new(false);
    let shards = subscriptions.iter_mut().map(|subscription| {
        let (tally, done) = (&tally, &done);
        async move {
            while !done.get() {
                let page = match tokio::time::timeout_at(until.into(), subscription.next_event()).await {
                    Err(_elapsed) => break,
                    Ok(next) => match next? {
                        Some(page) => page,
                        None => break,
                    },
                };
                let mut tally = tally.borrow_mut();
                tally.count(&page, seed_prefix);
                done.set(tally.received >= expected);
            }
            anyhow::Ok(())
        }
    });
    futures::future::try_join_all(shards).await?;
    Ok(tally.into_inner().finish())
}

/// Sends one event every PACE, each waiting for its acknowledgement.
async fn trickle(client: &Client, stream: &str, records: Vec<Outgoing>) -> Result<()> {
    let started = tokio::time::Instant::now();
    for (i, record) in records.into_iter().enumerate() {
        tokio::time::sleep_until(started + PACE * i as u32).await;
        kinesis::produce_acknowledged(client, stream, vec![record], 1, None, &ProgressBar::hidden()).await?;
    }
    Ok(())
}

/// Registers the push consumer and subscribes to every open shard; `Err` with the reason when the
/// target lacks enhanced fan-out.
async fn subscribe(client: &Client, stream: &str, shards: &[String]) -> Result<(String, Vec<Subscription>), String> {
    let arn = fan_out::register_consumer(client, stream, PUSH_CONSUMER).await.map_err(|e| format!("{e:#}"))?;
    let mut subscriptions = Vec::new();
    for shard in shards {
        match Subscription::latest(client, &arn, shard).await {
            Ok(subscription) => subscriptions.push(subscription),
            Err(err) => {
                let _ = fan_out::deregister_consumer(client, &arn).await;
                return Err(format!("{err:#}"));
            }
        }
    }
    Ok((arn, subscriptions))
}

pub(super) async fn run_polling(
    target: &Target,
    stream: &str,
    seed: u64,
    count: usize,
    out: Output,
) -> Result<ScenarioReport> {
    let client = &target.clients.kinesis;
    let shards: Vec<String> =
        kinesis::list_shards(client, stream).await?.into_iter().filter(|s| s.open).map(|s| s.shard_id).collect();
    out.say(format!(
        "\n== polling: what asking costs when little is there ==\n\
         A producer sends {count} events (seed {seed}), one every {} ms, into {stream} ({} shards). Three consumers\n\
         poll every shard with GetRecords, every {} ms; one more registers for enhanced fan-out and\n\
         Kinesis pushes each shard's records to it over SubscribeToShard.",
        PACE.as_millis(),
        shards.len(),
        INTERVALS.map(|i| i.to_string()).join(", ")
    ));
    let mut pollers = Vec::new();
    for interval in INTERVALS {
        let mut readers = Vec::new();
        for shard in &shards {
            readers.push(ShardReader::open(client, stream, shard, &Position::Latest).await?);
        }
        pollers.push((Duration::from_millis(interval), readers));
    }
    record(client, stream, seed, &Observed::new(NAME, "consumers", &[("sent", count as u64)])).await?;
    // Registered last: from here to its deregistration nothing returns early.
    let push = subscribe(client, stream, &shards).await;
    if let Err(why) = &push {
        out.say(format!(
            "   This target lacks enhanced fan-out ({why}): no push row. Example 2's SQS long polling\n   \
             (ReceiveMessage with WaitTimeSeconds) is the push-like contrast there."
        ));
    }
    let records: Vec<Outgoing> =
        clickstream::generate(&ClickstreamSpec { seed, count, ..Default::default() }).iter().map(encode).collect();
    let until = Instant::now() + PACE * count as u32 + GRACE;
    let prefix = format!("s{seed}-");
    let expected = count as u64;
    let polling = futures::future::try_join_all(
        pollers.into_iter().map(|(interval, readers)| poller(client, readers, interval, &prefix, expected, until)),
    );
    let (arn, subscriptions) = match push {
        Ok((arn, subscriptions)) => (Some(arn), Some(subscriptions)),
        Err(_) => (None, None),
    };
    let pushing = async {
        match subscriptions {
            Some(subscriptions) => pusher(subscriptions, &prefix, expected, until).await.map(Some),
            None => Ok(None),
        }
    };
    let spinner = output::spinner("producing a trickle while the consumers ask");
    let (produced, polled, pushed) = tokio::join!(trickle(client, stream, records), polling, pushing);
    spinner.finish_and_clear();
    if let Some(arn) = &arn {
        // A registered consumer costs per shard-hour on AWS.
        fan_out::deregister_consumer(client, arn).await?;
    }
    produced?;
    let mut tallies = polled?;
    tallies.extend(pushed?);

    out.table(
        "   Every ask, every empty answer, and how long after arrival each event reached the consumer",
        &["consumer", "asks (calls or events)", "empty", "throttled", "events received", "latency p50", "latency p99"],
        tallies.iter().map(|t| {
            vec![
                t.consumer.clone(),
                t.asks.to_string(),
                t.empty.to_string(),
                t.throttled.to_string(),
                t.received.to_string(),
                format!("{:.0} ms", t.latency_p50_ms),
                format!("{:.0} ms", t.latency_p99_ms),
            ]
        }),
    );
    out.say(
        "   A short interval buys latency with asks that come back empty; a long one saves asks and adds up to\n   \
         an interval of delay. Pushed, each event arrives once it is there, with no empty asks but the\n   \
         heartbeats. On AWS a shard serves its polling consumers 5 GetRecords calls a second in all, so\n   \
         eager pollers throttle each other; each enhanced fan-out consumer gets its own 2 MB/s per shard.",
    );

    let mut figures = vec![("sent", expected)];
    let keys: Vec<(String, u64)> = tallies
        .iter()
        .zip(INTERVALS.iter().map(|i| i.to_string()).chain(["push".to_owned()]))
        .flat_map(|(t, key)| {
            [(format!("c{key}"), t.asks), (format!("e{key}"), t.empty), (format!("g{key}"), t.received)]
        })
        .collect();
    figures.extend(keys.iter().map(|(k, v)| (k.as_str(), *v)));
    let observed = Observed::new(NAME, "consumers", &figures);
    record(client, stream, seed, &observed).await?;
    let in_log = seed_counts(client, stream, &[seed]).await?[&seed];
    let problems: Vec<String> =
        check(seed, &observed, in_log).into_iter().filter(|c| !c.passed).map(|c| c.details).collect();
    report(
        NAME,
        seed,
        problems,
        serde_json::json!({ "consumers": tallies, "in_log": in_log, "push_supported": arn.is_some() }),
    )
}

/// What `verify` holds against the log: every consumer received every event of the seed the log
/// holds, and no consumer counted more empty answers than asks.
pub(super) fn check(seed: u64, observed: &Observed, in_log: InLog) -> Vec<ScenarioCheck> {
    let sent = observed.get("sent");
    let consumers: Vec<String> = INTERVALS.iter().map(|i| i.to_string()).chain(["push".to_owned()]).collect();
    let mut received = Vec::new();
    let mut consistent = true;
    for key in consumers.iter().filter(|k| observed.values.contains_key(&format!("c{k}"))) {
        let (asks, empty, got) =
            (observed.get(&format!("c{key}")), observed.get(&format!("e{key}")), observed.get(&format!("g{key}")));
        consistent &= empty <= asks && got == in_log.distinct;
        received.push(format!("{key}: {got} in {asks} asks, {empty} empty"));
    }
    vec![ScenarioCheck {
        seed,
        check: "polling: every consumer received every event the log holds".into(),
        passed: consistent && in_log.distinct == sent && !received.is_empty(),
        details: format!("the log holds {} of {sent}; {}", in_log.distinct, received.join("; ")),
    }]
}
