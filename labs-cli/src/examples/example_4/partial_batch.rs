//! `partial-batch`: the function reports the marked record as a batch item failure
//! (`ReportBatchItemFailures`). The mapping checkpoints just before it: that record and the ones
//! after it are delivered again, the earlier ones are not.

use anyhow::Result;
use exactly_once_counter::Outcome;

use super::{BASELINE, Ctx, ScenarioReport, faulty_place, holding, produce_and_count, set_mapping, show_invocations};
use labs_core::sequence;

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let out = ctx.out;
    let mut report = ScenarioReport::new("partial-batch");
    set_mapping(ctx.target, BASELINE, "ReportBatchItemFailures on", out).await?;
    report.settings.push(BASELINE);
    out.say(
        "Watch: the function counts the records before the marked one, then answers \
         {\"batchItemFailures\":[{\"itemIdentifier\":\"<its sequence number>\"}]}. The next batch of that \
         shard starts at the marked record.",
    );
    let (_, events, observed, stream) = produce_and_count(ctx, "partial-batch", &mut report).await?;
    let Some((shard, seq)) = faulty_place(&events, &stream) else {
        report.expect("the marked record is in the stream", false);
        return Ok(report);
    };
    let held = holding(&observed, &shard, &seq);
    show_invocations(out, "The invocations whose batch held the marked record", &held);
    let partial = held.iter().find(|i| i.outcome == Outcome::PartialFailure);
    let outcome = report.parts.last().cloned().expect("produce_and_count adds the part");
    // Records of the partial batch from the marked one to its end: what is delivered again.
    let again = partial.map_or(0, |p| stream.range(&shard, &seq, &p.last_sequence_number).len());
    report.expect(
        "the partial response named the marked record",
        partial.is_some_and(|p| p.fault_sequence_number.as_deref() == Some(seq.as_str())),
    );
    report.expect(
        "the next batch started at the marked record",
        held.iter().any(|i| i.first_sequence_number == seq && i.outcome == Outcome::Succeeded),
    );
    report.expect(
        "no record before the marked one was delivered again",
        partial.is_some_and(|p| {
            !observed.invocations.iter().any(|i| {
                i.shard_id == shard
                    && i.request_id != p.request_id
                    && sequence::compare(&i.first_sequence_number, &seq).is_lt()
                    && sequence::compare(&i.last_sequence_number, &p.first_sequence_number).is_ge()
            })
        }),
    );
    report.expect(
        format!("naive_* over-counts by exactly the records from the marked one on ({again})"),
        partial.is_some() && outcome.naive_excess == again as i64,
    );
    out.say(
        "In DDIA terms: a finer-grained checkpoint. Instead of failing (and redoing) the whole microbatch, \
         the consumer commits its offset up to the failed record; only the rest is redone.",
    );
    Ok(report)
}
