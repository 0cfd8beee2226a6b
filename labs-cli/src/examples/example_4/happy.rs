//! `happy`: no faults. Batches of up to 100 records per shard, a checkpoint after each success,
//! and the backlog falling to zero.

use anyhow::Result;

use super::{BASELINE, Ctx, ScenarioReport, produce_and_count, set_mapping, show_lag};

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let out = ctx.out;
    let mut report = ScenarioReport::new("happy");
    set_mapping(ctx.target, BASELINE, "the baseline", out).await?;
    report.settings.push(BASELINE);
    out.say(
        "Watch: the function gets batches of one shard each (at most BatchSize records); after each \
         success the mapping checkpoints the shard and asks for the next batch. The backlog (what \
         iterator age measures in time) falls to zero.",
    );
    let (_, events, observed, stream) = produce_and_count(ctx, "happy", &mut report).await?;
    show_lag(out, "The backlog while the processor caught up", &report.lag, 10);
    let outcome = report.parts.last().cloned().expect("produce_and_count adds the part");
    report.expect("no redelivery: the naive counters equal the exactly-once ones", outcome.naive_excess == 0);
    report.expect("the backlog fell to zero", report.lag.last().is_some_and(|s| s.behind == 0));
    let shards = super::invocations_of(&observed, &stream, &events)
        .iter()
        .map(|i| i.shard_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    report.expect("both shards were processed, each in its own batches", shards == 2 || ctx.count < 20);
    out.say(
        "In DDIA terms: the mapping microbatches the stream and checkpoints each shard after a batch \
         succeeds, so on the happy path every event is handled once and both counters agree.",
    );
    Ok(report)
}
