//! `poison`: one record always fails its batch. Three settings in turn:
//! 1. no bisect, unlimited retries: its shard stops (the backlog behind it grows) while the other
//!    shard keeps going;
//! 2. `MaximumRetryAttempts` 2: the whole batch goes to the failure queue, good records with it;
//! 3. bisect and a retry limit, on a second set of purchases: only the poison record does.
//!
//! It ends on the baseline (a retry limit), so later scenarios are not stalled.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;
use labs_core::purchases::Purchase;
use serde_json::json;

use super::{
    BASELINE, CATCH_UP, Ctx, FailureRecord, MappingSettings, PartOutcome, ScenarioReport, StreamCopy, counted_of,
    faulty_place, holding, named_by, peek_failures, produce, set_mapping, show_invocations,
};
use crate::output;

/// How long phase 1 lets the poison shard stay stuck before it shows the learner.
const STALL: Duration = Duration::from_secs(15);

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let (target, names, out) = (ctx.target, &ctx.names, ctx.out);
    let mut report = ScenarioReport::new("poison");

    // 1. Stuck.
    let stuck = MappingSettings { maximum_retry_attempts: -1, ..BASELINE };
    set_mapping(target, stuck, "phase 1: no bisect, unlimited retries", out).await?;
    report.settings.push(stuck);
    out.say(
        "Watch: the batch holding the poison record fails on every delivery. A shard is processed in \
         order, so nothing behind that batch on its shard gets through; the other shard goes on.",
    );
    let produced = ctx.produced("poison");
    let events = produce(target, names, &produced, None).await?;
    let stream = StreamCopy::read(target, names).await?;
    let Some((poison_shard, poison_seq)) = faulty_place(&events, &stream) else {
        report.expect("the poison record is in the stream", false);
        return Ok(report);
    };
    let on_shard = |shard: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| stream.located.get(&e.event_id).is_some_and(|p| p.iter().any(|(s, _)| s == shard)))
            .map(|e| e.event_id.clone())
            .collect()
    };
    let poisoned = on_shard(&poison_shard);
    let others: BTreeSet<String> =
        events.iter().map(|e| e.event_id.clone()).filter(|id| !poisoned.contains(id)).collect();
    let spinner = output::spinner("phase 1: letting the poison record block its shard");
    let started = Instant::now();
    let mut counted = BTreeSet::new();
    while started.elapsed() < CATCH_UP {
        counted = counted_of(target, names, &events.iter().map(|e| e.event_id.clone()).collect()).await?;
        if others.is_subset(&counted) && started.elapsed() >= STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    spinner.finish_and_clear();
    let observed = super::Observed::read(target, names).await?;
    let attempts = holding(&observed, &poison_shard, &poison_seq);
    let stuck_behind = poisoned.iter().filter(|id| !counted.contains(*id)).count();
    out.table(
        "Phase 1: per shard, this part's events counted so far",
        &["shard", "events", "counted", "waiting"],
        [
            vec![
                format!("{poison_shard} (poison)"),
                poisoned.len().to_string(),
                (poisoned.len() - stuck_behind).to_string(),
                stuck_behind.to_string(),
            ],
            vec![
                "the other shard".into(),
                others.len().to_string(),
                others.intersection(&counted).count().to_string(),
                others.difference(&counted).count().to_string(),
            ],
        ],
    );
    show_invocations(out, "Phase 1: deliveries of the poison batch so far", &attempts);
    report.expect("the other shard's events were all counted", others.is_subset(&counted));
    report.expect("the poison shard is stuck behind the failing batch", stuck_behind > 0 && attempts.len() >= 2);

    // 2. A retry limit: the whole batch is discarded.
    let limited = MappingSettings { maximum_retry_attempts: 2, ..BASELINE };
    set_mapping(target, limited, "phase 2: MaximumRetryAttempts 2, still no bisect", out).await?;
    report.settings.push(limited);
    out.say("Watch: after the retries the mapping gives up on the whole batch and sends its metadata to the queue.");
    let (settled, failures) = wait_settled(ctx, &events, &stream).await?;
    let named = named_by(&failures, &stream, &events);
    let lost_good = named.len().saturating_sub(1);
    show_failures(out, "Phase 2: the failure queue", &failures);
    out.say(format!(
        "{} events were discarded with the poison record: {lost_good} good purchases are not counted. \
         They are still in the stream (the failure record names their shard and sequence range) until it \
         expires; a reprocessor would have to read them back from there.",
        named.len()
    ));
    report.expect("the poison record is named by a failure record", named.contains(&poison_id(&events)));
    report.expect("good records went to the failure queue with it", lost_good > 0);
    report.expect("every other event of the part was counted", settled);
    let final_observed = super::Observed::read(target, names).await?;
    report.parts.push(PartOutcome::of(&produced, &events, &final_observed, &stream, None));

    // 3. Bisect: only the poison record.
    let bisect = MappingSettings { maximum_retry_attempts: 2, bisect_batch_on_function_error: true, ..BASELINE };
    set_mapping(target, bisect, "phase 3: BisectBatchOnFunctionError on, MaximumRetryAttempts 2", out).await?;
    report.settings.push(bisect);
    out.say("Watch: a failing batch is split in two and each half retried, until the poison record is alone.");
    let produced_b = ctx.produced("poison-bisect");
    let events_b = produce(target, names, &produced_b, None).await?;
    let stream_b = StreamCopy::read(target, names).await?;
    let (settled_b, failures_b) = wait_settled(ctx, &events_b, &stream_b).await?;
    let named_b = named_by(&failures_b, &stream_b, &events_b);
    let part_failures: Vec<FailureRecord> = failures_b
        .iter()
        .filter(|f| {
            events_b
                .iter()
                .any(|e| stream_b.located.get(&e.event_id).is_some_and(|p| p.iter().any(|(s, q)| f.covers(s, q))))
        })
        .cloned()
        .collect();
    show_failures(out, "Phase 3: failure records for the bisected part", &part_failures);
    report
        .expect("only the poison record was discarded", named_b.len() == 1 && named_b.contains(&poison_id(&events_b)));
    report.expect("every other event of the bisected part was counted", settled_b);
    let observed_b = super::Observed::read(target, names).await?;
    report.parts.push(PartOutcome::of(&produced_b, &events_b, &observed_b, &stream_b, None));
    report.failure_records = failures.into_iter().chain(part_failures).collect();
    report.details = json!({ "stuck_behind_poison": stuck_behind, "lost_with_poison": lost_good, "discarded_after_bisect": named_b.len() });
    out.say(
        "On AWS a bisected failure record may still cover a few records: Lambda stops halving once \
         the retries are used up, so the last failing half can hold good records too.",
    );

    set_mapping(target, BASELINE, "back to the baseline", out).await?;
    out.say(
        "In DDIA terms: a log consumer processes each partition in order, so one message it cannot \
         process blocks its partition (head-of-line blocking). Giving up after N tries trades that for \
         loss; bisecting narrows the loss to the poison message, a dead letter the operator can inspect.",
    );
    Ok(report)
}

fn poison_id(events: &[Purchase]) -> String {
    events.iter().find(|e| e.fault.is_some()).map(|e| e.event_id.clone()).unwrap_or_default()
}

/// Waits until every event of `events` is counted or named by a failure record; returns whether
/// it came to that, and the failure records seen.
async fn wait_settled(ctx: &Ctx<'_>, events: &[Purchase], stream: &StreamCopy) -> Result<(bool, Vec<FailureRecord>)> {
    let ids: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let spinner = output::spinner("waiting until every event is counted or discarded");
    let started = Instant::now();
    loop {
        let counted = counted_of(ctx.target, &ctx.names, &ids).await?;
        let failures: Vec<FailureRecord> = peek_failures(ctx.target, &ctx.names).await?.into_iter().flatten().collect();
        let named = named_by(&failures, stream, events);
        let open = ids.iter().filter(|id| !counted.contains(*id) && !named.contains(*id)).count();
        spinner.set_message(format!("waiting: {open} events neither counted nor discarded"));
        if open == 0 || started.elapsed() > CATCH_UP {
            spinner.finish_and_clear();
            return Ok((open == 0, failures));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn show_failures(out: output::Output, title: &str, failures: &[FailureRecord]) {
    out.table(
        title,
        &["shard", "sequence range", "batch size", "condition"],
        failures.iter().map(|f| {
            vec![
                f.shard_id.clone(),
                format!(
                    "{} .. {}",
                    super::short_seq(&f.start_sequence_number),
                    super::short_seq(&f.end_sequence_number)
                ),
                f.batch_size.to_string(),
                f.condition.clone(),
            ]
        }),
    );
}
