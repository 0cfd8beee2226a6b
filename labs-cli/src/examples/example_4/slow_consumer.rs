//! `slow-consumer`: a producer faster than the function (small batches, one at a time per shard):
//! the backlog and the age of its oldest record grow. Raising `ParallelizationFactor` lets up to
//! that many batches of one shard run at once, and the data shows each user's purchases were
//! still handled in order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use labs_core::sequence;
use serde_json::json;

use super::{
    BASELINE, CATCH_UP, Ctx, LagSample, MappingSettings, Observed, PartOutcome, Produced, ScenarioReport, StreamCopy,
    counted_of, produce, set_mapping,
};
use crate::output;

/// Records per second the producer sends: more than one small batch at a time per shard handles.
const RATE: u32 = 500;
/// This scenario produces this many times `--count`: enough for a backlog to build.
const VOLUME: usize = 4;
const PARALLEL: i32 = 4;

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let (target, names, out) = (ctx.target, &ctx.names, ctx.out);
    let mut report = ScenarioReport::new("slow-consumer");
    let slow = MappingSettings { batch_size: 10, ..BASELINE };
    set_mapping(target, slow, "phase 1: batches of 10, one batch per shard at a time", out).await?;
    report.settings.push(slow);
    out.say(format!(
        "Watch: {RATE} purchases/s arrive; the function takes small batches one after another per shard, \
         so the backlog grows and the oldest waiting record ages (that age is the mapping's IteratorAge)."
    ));
    let produced = Produced { count: ctx.count * VOLUME, ..ctx.produced("slow-consumer") };
    let events = produced.events()?;
    let ids: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let started = Instant::now();
    let producing = produce(target, names, &produced, Some(RATE));
    let sampling = async {
        let mut samples = Vec::new();
        // Until the producer is done (it takes count / RATE seconds), one sample a second.
        let producing_for = Duration::from_secs_f64(produced.count as f64 / f64::from(RATE));
        while started.elapsed() < producing_for {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let counted = counted_of(target, names, &ids).await?.len();
            // The producer is paced, so this is how many it has sent by now (at most).
            let sent = ((started.elapsed().as_secs_f64() * f64::from(RATE)) as usize).min(ids.len());
            samples.push(LagSample {
                seconds: started.elapsed().as_secs_f64(),
                counted,
                behind: sent.saturating_sub(counted),
            });
        }
        anyhow::Ok(samples)
    };
    let (produced_events, samples) = tokio::join!(producing, sampling);
    produced_events?;
    report.lag = samples?;

    let fast = MappingSettings { parallelization_factor: PARALLEL, ..slow };
    set_mapping(target, fast, "phase 2: ParallelizationFactor 4", out).await?;
    report.settings.push(fast);
    let stream = StreamCopy::read(target, names).await?;
    let arrivals: BTreeMap<String, i64> = stream
        .shards
        .values()
        .flatten()
        .filter_map(|r| {
            let purchase = labs_core::purchases::parse_purchase(&r.data).ok()?;
            ids.contains(&purchase.event_id).then_some((purchase.event_id, r.arrival_millis))
        })
        .collect();
    let spinner = output::spinner("phase 2: catching up");
    let mut ages: Vec<(f64, i64)> = Vec::new();
    let caught_up = loop {
        let counted = counted_of(target, names, &ids).await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let oldest = arrivals.iter().filter(|(id, _)| !counted.contains(*id)).map(|(_, at)| *at).min();
        let seconds = started.elapsed().as_secs_f64();
        ages.push((seconds, oldest.map_or(0, |at| (now as i64 - at).max(0))));
        report.lag.push(LagSample { seconds, counted: counted.len(), behind: ids.len() - counted.len() });
        spinner.set_message(format!("phase 2: {} of {} counted", counted.len(), ids.len()));
        if counted.len() == ids.len() {
            break true;
        }
        if started.elapsed() > CATCH_UP {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    spinner.finish_and_clear();
    super::show_lag(out, "The backlog: growing with one batch per shard, shrinking with 4", &report.lag, 14);
    out.table(
        "Age of the oldest record not yet counted (what IteratorAge reports)",
        &["after", "age"],
        ages.iter()
            .step_by(ages.len().div_ceil(8).max(1))
            .map(|(s, age)| vec![format!("{s:.1} s"), format!("{age} ms")]),
    );

    let observed = Observed::read(target, names).await?;
    let (in_order, users) = per_user_order(&observed, &events);
    let concurrent = overlapping_batches(&observed, &stream, &ids);
    report.expect(
        "the backlog grew while one batch per shard ran",
        report.lag.windows(2).any(|w| w[1].behind > w[0].behind),
    );
    report.expect("every purchase was counted once the factor was raised", caught_up);
    report.expect(format!("each of {users} users' purchases were counted in order"), in_order);
    report.expect("batches of one shard overlapped (ParallelizationFactor at work)", concurrent > 0);
    report.parts.push(PartOutcome::of(&produced, &events, &observed, &stream, None));
    report.details = json!({ "overlapping_batches": concurrent, "users": users, "per_user_order_kept": in_order });
    out.say(
        "In DDIA terms: a log gives order per partition, and throughput is bounded by one consumer per \
         partition. ParallelizationFactor splits a shard by key hash, so ordering is kept per key (here \
         per user), not per shard: more parallelism without giving up the order that matters.",
    );
    Ok(report)
}

/// Per user, whether the batches that counted its purchases start in the purchases' order: a
/// user's records go to one lane, whose batches run one after another.
fn per_user_order(observed: &Observed, events: &[labs_core::purchases::Purchase]) -> (bool, usize) {
    let batch_of: BTreeMap<&str, &str> =
        observed.invocations.iter().map(|i| (i.request_id.as_str(), i.first_sequence_number.as_str())).collect();
    let mut by_user: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for event in events {
        if let Some(applied) = observed.applied.get(&event.event_id)
            && let Some(first) = batch_of.get(applied.request_id.as_str())
        {
            by_user.entry(event.user_id.as_str()).or_default().push((event.user_seq, first));
        }
    }
    let in_order = by_user.values_mut().all(|seen| {
        seen.sort_by_key(|(user_seq, _)| *user_seq);
        seen.windows(2).all(|w| sequence::compare(w[0].1, w[1].1).is_le())
    });
    (in_order, by_user.len())
}

/// Pairs of this part's batches on one shard whose sequence ranges overlap: only a split shard
/// (ParallelizationFactor > 1) delivers those.
fn overlapping_batches(observed: &Observed, stream: &StreamCopy, ids: &BTreeSet<String>) -> usize {
    let places: BTreeSet<(&str, &str)> =
        ids.iter().filter_map(|id| stream.located.get(id)).flatten().map(|(s, q)| (s.as_str(), q.as_str())).collect();
    let ours: Vec<_> = observed
        .invocations
        .iter()
        .filter(|i| {
            places.iter().any(|(s, q)| {
                *s == i.shard_id
                    && sequence::compare(&i.first_sequence_number, q).is_le()
                    && sequence::compare(&i.last_sequence_number, q).is_ge()
            })
        })
        .collect();
    let mut pairs = 0;
    for (n, a) in ours.iter().enumerate() {
        for b in &ours[n + 1..] {
            if a.shard_id == b.shard_id
                && a.first_sequence_number != b.first_sequence_number
                && sequence::compare(&a.first_sequence_number, &b.last_sequence_number).is_le()
                && sequence::compare(&b.first_sequence_number, &a.last_sequence_number).is_le()
            {
                pairs += 1;
            }
        }
    }
    pairs
}
