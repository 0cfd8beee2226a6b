//! `crash`: on its first delivery the marked record makes the process abort (no answer, not a
//! returned error) after writing the effects of the first half of its batch. The redelivery
//! finds those events counted already and completes the rest: exactly once.

use anyhow::Result;
use exactly_once_counter::Outcome;

use super::{BASELINE, Ctx, ScenarioReport, faulty_place, holding, produce_and_count, set_mapping, show_invocations};

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let out = ctx.out;
    let mut report = ScenarioReport::new("crash");
    set_mapping(ctx.target, BASELINE, "the baseline", out).await?;
    report.settings.push(BASELINE);
    out.say(
        "Watch: the function dies mid-batch (std::process::abort) after committing half of the batch. \
         Lambda sees a runtime crash, counts it as a function error and redelivers the whole batch.",
    );
    let (_, events, observed, stream) = produce_and_count(ctx, "crash", &mut report).await?;
    let Some((shard, seq)) = faulty_place(&events, &stream) else {
        report.expect("the marked record is in the stream", false);
        return Ok(report);
    };
    let held = holding(&observed, &shard, &seq);
    show_invocations(out, "The invocations whose batch held the crash marker", &held);
    let aborted = held.iter().find(|i| i.outcome == Outcome::Aborted);
    let redelivery = aborted.and_then(|a| {
        held.iter().find(|i| i.first_sequence_number == a.first_sequence_number && i.attempt > a.attempt)
    });
    let outcome = report.parts.last().cloned().expect("produce_and_count adds the part");
    report.expect(
        "the first delivery aborted after committing half of its batch",
        aborted.is_some_and(|a| a.applied > 0 && a.applied < a.records),
    );
    report.expect(
        "the redelivery found exactly those events counted and counted the rest",
        match (aborted, redelivery) {
            (Some(a), Some(r)) => r.already_applied == a.applied && r.outcome == Outcome::Succeeded,
            _ => false,
        },
    );
    report.expect(
        "naive_* over-counts by exactly the aborted delivery's naive increments",
        aborted.is_some_and(|a| outcome.naive_excess == i64::from(a.naive_records)),
    );
    out.say(
        "In DDIA terms: a crash between effects is a partial write; redelivery alone would apply the first \
         half twice. Each event's increment is atomic with its dedup row, so the retry is idempotent and \
         the end state is as if the batch had been processed exactly once.",
    );
    Ok(report)
}
