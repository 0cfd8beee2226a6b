//! Scenario durability: a fire-and-forget producer against one that waits for every
//! acknowledgement and re-sends what was refused, under the same refusals: the messages lost,
//! counted in the log, against the throughput gained.

use std::time::Instant;

use anyhow::Result;
use labs_core::clickstream::{self, ClickstreamSpec};
use labs_core::orders::RefusalPlan;
use tokio::task::JoinSet;

use super::observed::{InLog, Observed, ScenarioCheck, record};
use super::{refusal_note, seed_counts};
use crate::driver::clickstream::encode;
use crate::driver::kinesis::{self, Outgoing, ProduceStats, Refuser, put_entries};
use crate::driver::refusals::Refusals;
use crate::examples::scenario::{ScenarioReport, report};
use crate::output::{self, Output};
use crate::target::Target;

pub(super) const NAME: &str = "durability";
const FIRE_AND_FORGET: &str = "fire-and-forget";
const ACKNOWLEDGED: &str = "acknowledged";
/// Share of entries refused, as a throttled shard would refuse them.
const REFUSED_PERCENT: u32 = 20;
/// Records per PutRecords call, the same for both producers.
const BATCH: usize = 50;
/// Calls the fire-and-forget producer has in flight at once: it never waits to send the next.
const IN_FLIGHT: usize = 8;

/// What the fire-and-forget producer sent, and what labs saw refused (the producer never looks).
struct Unchecked {
    stats: ProduceStats,
    refused: usize,
}

/// Sends every batch without waiting for the one before, and never reads the answers: whatever
/// a call refused is gone. Labs counts the refusals only to report them.
async fn fire_and_forget(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: Vec<Outgoing>,
    refusals: &Refusals,
) -> Result<Unchecked> {
    let started = Instant::now();
    let total = records.len();
    let mut calls = JoinSet::new();
    let mut batches = kinesis::batches(records, BATCH).into_iter();
    let mut stats = ProduceStats { records: total, ..Default::default() };
    let mut refused = 0;
    loop {
        while calls.len() < IN_FLIGHT
            && let Some(batch) = batches.next()
        {
            let (client, stream, refusals) = (client.clone(), stream.to_owned(), refusals.clone());
            calls.spawn(async move {
                let mut stats = ProduceStats::default();
                let refs: Vec<&Outgoing> = batch.iter().collect();
                let answers = put_entries(&client, &stream, &refs, Some(&refusals as &dyn Refuser), &mut stats).await?;
                anyhow::Ok((stats.calls, answers.iter().filter(|a| a.is_err()).count()))
            });
        }
        let Some(done) = calls.join_next().await else { break };
        let (sent_calls, failed) = done??;
        stats.calls += sent_calls;
        refused += failed;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(Unchecked { stats, refused })
}

pub(super) async fn run_durability(
    target: &Target,
    stream: &str,
    seeds: [u64; 2],
    count: usize,
    out: Output,
) -> Result<ScenarioReport> {
    let client = &target.clients.kinesis;
    let [unchecked_seed, acked_seed] = seeds;
    let events = |seed| -> Vec<Outgoing> {
        clickstream::generate(&ClickstreamSpec { seed, count, ..Default::default() }).iter().map(encode).collect()
    };
    out.say(format!(
        "\n== durability: fire-and-forget vs waiting for acknowledgements ==\n\
         Two producers send {count} events each into {stream}, {BATCH} per PutRecords call, and {REFUSED_PERCENT}% of the\n\
         entries are refused. {}\n   \
         - {FIRE_AND_FORGET} (seed {unchecked_seed}): {IN_FLIGHT} calls in flight, never reads an answer, never re-sends.\n   \
         - {ACKNOWLEDGED} (seed {acked_seed}): waits for each call's answer and re-sends the refused entries (with backoff).",
        refusal_note(target)
    ));
    let sent = count as u64;
    // Recorded before producing: a run that stops halfway shows up in verify.
    record(client, stream, unchecked_seed, &Observed::new(NAME, FIRE_AND_FORGET, &[("sent", sent)])).await?;
    record(client, stream, acked_seed, &Observed::new(NAME, ACKNOWLEDGED, &[("sent", sent)])).await?;

    let plan = |seed: u64| Refusals::new(RefusalPlan { seed: seed.wrapping_mul(7_919), percent: REFUSED_PERCENT });
    let unchecked = fire_and_forget(client, stream, events(unchecked_seed), &plan(unchecked_seed)).await?;
    let acked_refusals = plan(acked_seed);
    let bar = output::progress(sent, "acknowledged producer");
    let acked = kinesis::produce_acknowledged(
        client,
        stream,
        events(acked_seed),
        BATCH,
        Some(&acked_refusals as &dyn Refuser),
        &bar,
    )
    .await?;
    bar.finish_and_clear();

    let in_log = seed_counts(client, stream, &[unchecked_seed, acked_seed]).await?;
    let (unchecked_log, acked_log) = (in_log[&unchecked_seed], in_log[&acked_seed]);
    let unchecked_observed = Observed::new(
        NAME,
        FIRE_AND_FORGET,
        &[
            ("sent", sent),
            ("claimed", sent),
            ("refused", unchecked.refused as u64),
            ("arrived", unchecked_log.distinct),
        ],
    );
    let acked_observed = Observed::new(
        NAME,
        ACKNOWLEDGED,
        &[("sent", sent), ("claimed", sent), ("resent", acked.retried_entries as u64), ("arrived", acked_log.distinct)],
    );
    record(client, stream, unchecked_seed, &unchecked_observed).await?;
    record(client, stream, acked_seed, &acked_observed).await?;

    let rate = |stats: &ProduceStats| format!("{:.0}", stats.records_per_second());
    out.table(
        "   Each producer claims all its events were sent; the log says what arrived",
        &["producer", "claims sent", "refused", "re-sent", "in the log", "lost", "calls", "seconds", "records/s"],
        [
            vec![
                FIRE_AND_FORGET.to_owned(),
                sent.to_string(),
                unchecked.refused.to_string(),
                "0".into(),
                unchecked_log.distinct.to_string(),
                sent.saturating_sub(unchecked_log.distinct).to_string(),
                unchecked.stats.calls.to_string(),
                format!("{:.2}", unchecked.stats.seconds),
                rate(&unchecked.stats),
            ],
            vec![
                ACKNOWLEDGED.to_owned(),
                sent.to_string(),
                acked_refusals.refused().to_string(),
                acked.retried_entries.to_string(),
                acked_log.distinct.to_string(),
                sent.saturating_sub(acked_log.distinct).to_string(),
                acked.calls.to_string(),
                format!("{:.2}", acked.seconds),
                rate(&acked),
            ],
        ],
    );
    out.say(format!(
        "   The fire-and-forget producer finished {:.1}x as fast and lost every refused entry without knowing it;\n   \
         the acknowledged one lost nothing and paid with a round trip per call plus the retries' backoff.\n   \
         Loss is acceptable where the next message supersedes the last (a sensor reading, a position) or the\n   \
         data is sampled anyway (metrics); never for orders, payments or anything counted.",
        unchecked.stats.records_per_second() / acked.records_per_second().max(f64::MIN_POSITIVE),
    ));

    let mut problems = Vec::new();
    problems.extend(
        check(unchecked_seed, &unchecked_observed, unchecked_log).into_iter().filter(|c| !c.passed).map(|c| c.details),
    );
    problems.extend(check(acked_seed, &acked_observed, acked_log).into_iter().filter(|c| !c.passed).map(|c| c.details));
    if unchecked.refused == 0 {
        problems.push("no entry was refused: nothing shows what fire-and-forget loses (try a larger --count)".into());
    }
    report(
        NAME,
        unchecked_seed,
        problems,
        serde_json::json!({
            "fire_and_forget": { "observed": unchecked_observed, "stats": unchecked.stats, "in_log": unchecked_log },
            "acknowledged": { "observed": acked_observed, "stats": acked, "in_log": acked_log },
        }),
    )
}

/// What `verify` holds against the log for one producer of this scenario.
pub(super) fn check(seed: u64, observed: &Observed, in_log: InLog) -> Vec<ScenarioCheck> {
    let sent = observed.get("sent");
    let recorded = observed.get("arrived");
    let (check, passed, details) = if observed.role == FIRE_AND_FORGET {
        let refused = observed.get("refused");
        (
            "fire-and-forget: the log holds what it sent minus what was refused",
            in_log.distinct + refused == sent && in_log.duplicated == 0 && in_log.distinct == recorded,
            format!(
                "claimed {sent}, refused {refused}; the log holds {} (the run saw {recorded}): {} lost",
                in_log.distinct,
                sent.saturating_sub(in_log.distinct)
            ),
        )
    } else {
        (
            "acknowledged: every event it claims is in the log",
            in_log.distinct == sent && in_log.distinct == recorded,
            format!(
                "claimed {sent}, re-sent {}; the log holds {} (the run saw {recorded}), {} twice",
                observed.get("resent"),
                in_log.distinct,
                in_log.duplicated
            ),
        )
    };
    vec![ScenarioCheck { seed, check: check.to_owned(), passed, details }]
}
