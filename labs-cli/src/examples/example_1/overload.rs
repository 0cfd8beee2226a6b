//! Scenario overload: a producer faster than its consumer, three ways: the log buffers (the
//! backlog grows, nothing is lost), the consumer drops what it cannot take (counted), or the
//! producer is pushed back (refused and slowed to what the system takes).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_kinesis::Client;
use indicatif::ProgressBar;
use labs_core::clickstream::{self, ClickstreamSpec};
use serde::Serialize;

use super::observed::{InLog, Observed, ScenarioCheck, record};
use super::{refusal_note, seed_counts};
use crate::driver::clickstream::{decode, encode};
use crate::driver::kinesis::{self, Outgoing, Position, ProduceStats, Refuser, ShardReader};
use crate::examples::scenario::{ScenarioReport, report};
use crate::output::Output;
use crate::target::Target;

pub(super) const NAME: &str = "overload";
const BUFFERING: &str = "buffering";
const DROPPING: &str = "dropping";
const BACKPRESSURE: &str = "backpressure";
pub(super) const MODES: [&str; 3] = [BUFFERING, DROPPING, BACKPRESSURE];
/// The producer's pace, and the consumer's: it takes 1/CONSUMER_RATE s per record.
const PRODUCER_RATE: u32 = 300;
const CONSUMER_RATE: u32 = 100;
/// The consumer polls every shard once a tick and processes what a tick allows.
const TICK: Duration = Duration::from_millis(100);
/// How long a consumer keeps going without a new record before it stops.
const QUIET: Duration = Duration::from_secs(3);

/// Refuses every entry beyond `rate` records a second (a token bucket holding a tenth of a
/// second's worth): a stand-in for a shard's write limit, which the emulator does not enforce.
struct WriteLimit {
    rate: f64,
    state: Mutex<(f64, Instant)>,
    refused: std::sync::atomic::AtomicUsize,
}

impl WriteLimit {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        Self { rate, state: Mutex::new((rate / 10.0, Instant::now())), refused: Default::default() }
    }

    fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Refuser for WriteLimit {
    fn pick(&self, entries: usize) -> Vec<bool> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = &mut *state;
        *tokens = (*tokens + last.elapsed().as_secs_f64() * self.rate).min(self.rate / 10.0);
        *last = Instant::now();
        let picks: Vec<bool> = (0..entries)
            .map(|_| {
                let refuse = *tokens < 1.0;
                if !refuse {
                    *tokens -= 1.0;
                }
                refuse
            })
            .collect();
        let refused = picks.iter().filter(|r| **r).count();
        self.refused.fetch_add(refused, std::sync::atomic::Ordering::SeqCst);
        picks
    }
}

/// What a slow consumer did with one seed's events while the producer ran.
#[derive(Debug, Default, Clone, Serialize)]
struct Consumed {
    processed: u64,
    dropped: u64,
    /// Most events produced but not yet processed or dropped, seen at any tick.
    max_backlog: u64,
    max_millis_behind_latest: i64,
    seconds: f64,
}

/// A reader at the tip of every open shard.
async fn latest_readers(client: &Client, stream: &str) -> Result<Vec<ShardReader>> {
    let mut readers = Vec::new();
    for shard in kinesis::list_shards(client, stream).await?.iter().filter(|s| s.open) {
        readers.push(ShardReader::open(client, stream, &shard.shard_id, &Position::Latest).await?);
    }
    Ok(readers)
}

/// A consumer that processes `CONSUMER_RATE` events a second. When `bounded`, it takes
/// everything the shards have into a buffer of one tick's work and drops what does not fit;
/// otherwise it takes from the log only what it can process, and the rest waits there.
async fn slow_consumer(
    client: &Client,
    mut readers: Vec<ShardReader>,
    seed: u64,
    expected: u64,
    produced: &ProgressBar,
    bounded: bool,
) -> Result<Consumed> {
    let started = Instant::now();
    let per_tick = (f64::from(CONSUMER_RATE) * TICK.as_secs_f64()) as usize;
    let ours = format!("s{seed}-");
    let mut consumed = Consumed::default();
    let mut buffer: VecDeque<String> = VecDeque::new();
    let mut last_new = Instant::now();
    while consumed.processed + consumed.dropped < expected && last_new.elapsed() < QUIET {
        let tick = Instant::now();
        let limit = if bounded { 10_000 } else { per_tick.div_ceil(readers.len().max(1)) as i32 };
        for reader in &mut readers {
            let page = reader.next_page(client, limit).await?;
            consumed.max_millis_behind_latest = consumed.max_millis_behind_latest.max(page.millis_behind_latest);
            for event in page.records.iter().filter_map(decode).filter(|e| e.event_id.starts_with(&ours)) {
                last_new = Instant::now();
                if bounded && buffer.len() >= per_tick {
                    consumed.dropped += 1;
                } else {
                    buffer.push_back(event.event_id);
                }
            }
        }
        // Processing: one event per 1/CONSUMER_RATE s, at most a tick's worth.
        let work = buffer.len().min(per_tick);
        buffer.drain(..work);
        consumed.processed += work as u64;
        let backlog = produced.position().saturating_sub(consumed.processed + consumed.dropped);
        consumed.max_backlog = consumed.max_backlog.max(backlog);
        let busy = Duration::from_secs_f64(work as f64 / f64::from(CONSUMER_RATE));
        tokio::time::sleep(busy.max(TICK).saturating_sub(tick.elapsed())).await;
    }
    consumed.seconds = started.elapsed().as_secs_f64();
    Ok(consumed)
}

/// Sends a tick's worth of events every tick (`PRODUCER_RATE` a second), each call waiting for
/// its answer and re-sending what was refused: refusals make it fall behind its schedule.
async fn paced_producer(
    client: &Client,
    stream: &str,
    records: Vec<Outgoing>,
    refuser: Option<&dyn Refuser>,
    produced: &ProgressBar,
) -> Result<ProduceStats> {
    let started = tokio::time::Instant::now();
    let per_tick = (f64::from(PRODUCER_RATE) * TICK.as_secs_f64()) as usize;
    let mut stats = ProduceStats { records: records.len(), ..Default::default() };
    for (tick, chunk) in records.chunks(per_tick.max(1)).enumerate() {
        tokio::time::sleep_until(started + TICK * tick as u32).await;
        let sent = kinesis::produce_acknowledged(client, stream, chunk.to_vec(), 10, refuser, produced).await?;
        stats.calls += sent.calls;
        stats.retried_entries += sent.retried_entries;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// One mode: the producer and the slow consumer at the same time, on one seed's events.
async fn one_mode(
    target: &Target,
    stream: &str,
    mode: &str,
    seed: u64,
    count: usize,
) -> Result<(ProduceStats, usize, Consumed)> {
    let client = &target.clients.kinesis;
    let records: Vec<Outgoing> =
        clickstream::generate(&ClickstreamSpec { seed, count, ..Default::default() }).iter().map(encode).collect();
    let produced = ProgressBar::hidden();
    let limit = WriteLimit::new(CONSUMER_RATE);
    let refuser = (mode == BACKPRESSURE).then_some(&limit as &dyn Refuser);
    let producer = paced_producer(client, stream, records, refuser, &produced);
    // The consumer's iterators are taken before the producer starts, at LATEST: it reads this
    // mode's events and nothing older.
    let readers = latest_readers(client, stream).await?;
    let consumer = slow_consumer(client, readers, seed, count as u64, &produced, mode == DROPPING);
    let (stats, consumed) = tokio::join!(producer, consumer);
    Ok((stats?, limit.refused(), consumed?))
}

pub(super) async fn run_overload(
    target: &Target,
    stream: &str,
    seeds: &[u64],
    count: usize,
    out: Output,
) -> Result<ScenarioReport> {
    let client = &target.clients.kinesis;
    out.say(format!(
        "\n== overload: a producer at {PRODUCER_RATE} events/s, a consumer that processes {CONSUMER_RATE}/s ==\n\
         Three runs of {count} events each, one per way to cope:\n   \
         - {BUFFERING}: the log holds what the consumer has not read yet; it reads only what it can process.\n   \
         - {DROPPING}: the consumer keeps up with the tip, buffers one tick's work ({} ms) and drops the rest.\n   \
         - {BACKPRESSURE}: the stream refuses writes beyond {CONSUMER_RATE}/s (ProvisionedThroughputExceeded) and the producer\n     \
         waits and re-sends, slowed to what the system takes. {}",
        TICK.as_millis(),
        refusal_note(target)
    ));
    let mut rows = Vec::new();
    let mut observed = Vec::new();
    for (mode, seed) in MODES.iter().zip(seeds) {
        record(client, stream, *seed, &Observed::new(NAME, mode, &[("sent", count as u64)])).await?;
        let (stats, refused, consumed) = one_mode(target, stream, mode, *seed, count).await?;
        let figures = Observed::new(
            NAME,
            mode,
            &[
                ("sent", count as u64),
                ("refused", refused as u64),
                ("processed", consumed.processed),
                ("dropped", consumed.dropped),
                ("backlog", consumed.max_backlog),
            ],
        );
        record(client, stream, *seed, &figures).await?;
        rows.push((mode, *seed, stats, refused, consumed));
        observed.push((*seed, figures));
    }
    let seeds_run: Vec<u64> = observed.iter().map(|(seed, _)| *seed).collect();
    let in_log = seed_counts(client, stream, &seeds_run).await?;
    out.table(
        "   The same overload, three ways (the log column is read back from the stream)",
        &[
            "mode",
            "producer events/s",
            "refused (throttled)",
            "processed",
            "dropped",
            "max backlog",
            "max MillisBehindLatest",
            "in the log",
        ],
        rows.iter().map(|(mode, seed, stats, refused, consumed)| {
            vec![
                mode.to_string(),
                format!("{:.0}", stats.records_per_second()),
                refused.to_string(),
                consumed.processed.to_string(),
                consumed.dropped.to_string(),
                consumed.max_backlog.to_string(),
                format!("{} ms", consumed.max_millis_behind_latest),
                in_log[seed].distinct.to_string(),
            ]
        }),
    );
    out.say(
        "   Buffering: the producer never slows, the backlog grows while it outruns the consumer, and every event is\n   \
         processed, late. Dropping: the consumer stays current and loses what it dropped (the log still has it: a\n   \
         consumer could go back). Backpressure: nothing is lost and the backlog stays small, because the producer\n   \
         was refused and slowed; where it cannot wait, the pressure moves further up (its own buffer, or its callers).",
    );
    let mut problems = Vec::new();
    for (seed, figures) in &observed {
        for check in check(*seed, figures, in_log[seed]).into_iter().filter(|c| !c.passed) {
            problems.push(check.details);
        }
    }
    let dropped = rows.iter().find(|r| *r.0 == DROPPING).map_or(0, |r| r.4.dropped);
    let refused = rows.iter().find(|r| *r.0 == BACKPRESSURE).map_or(0, |r| r.3);
    if dropped == 0 || refused == 0 {
        problems.push(format!(
            "the consumer kept up (dropped {dropped}, refused {refused}): nothing shows the overload (try a larger --count)"
        ));
    }
    let details: Vec<serde_json::Value> = rows
        .iter()
        .map(|(mode, seed, stats, refused, consumed)| {
            serde_json::json!({ "mode": mode, "seed": seed, "producer": stats, "refused": refused,
                "consumer": consumed, "in_log": in_log[seed] })
        })
        .collect();
    report(NAME, seeds[0], problems, serde_json::json!({ "modes": details }))
}

/// What `verify` holds against the log for one mode of this scenario: the log lost nothing,
/// and what the consumer processed and dropped adds up to it.
pub(super) fn check(seed: u64, observed: &Observed, in_log: InLog) -> Vec<ScenarioCheck> {
    let (sent, processed, dropped) = (observed.get("sent"), observed.get("processed"), observed.get("dropped"));
    let accounted = in_log.distinct == sent && processed + dropped == in_log.distinct;
    let (check, passed) = match observed.role.as_str() {
        BUFFERING => ("overload, buffering: every event in the log and processed", accounted && dropped == 0),
        DROPPING => ("overload, dropping: processed + dropped = the log", accounted && dropped > 0),
        _ => (
            "overload, backpressure: refused, re-sent, every event in the log",
            accounted && dropped == 0 && observed.get("refused") > 0,
        ),
    };
    vec![ScenarioCheck {
        seed,
        check: check.to_owned(),
        passed,
        details: format!(
            "sent {sent}; the log holds {}; processed {processed}, dropped {dropped}, refused {}",
            in_log.distinct,
            observed.get("refused")
        ),
    }]
}
