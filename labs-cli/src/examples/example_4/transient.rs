//! `transient`: the batch holding the marked record fails twice (after its naive increments were
//! written), then succeeds. The whole batch is redelivered each time: `naive_*` over-counts by
//! exactly the redelivered records, `total`/`count` do not.

use anyhow::Result;
use exactly_once_counter::Outcome;

use super::{BASELINE, Ctx, ScenarioReport, faulty_place, holding, produce_and_count, set_mapping, show_invocations};

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<ScenarioReport> {
    let out = ctx.out;
    let mut report = ScenarioReport::new("transient");
    set_mapping(ctx.target, BASELINE, "the baseline: 3 retries cover 2 failures", out).await?;
    report.settings.push(BASELINE);
    out.say(
        "Watch: one record makes its batch fail on its first two deliveries. The function has already \
         added the batch to naive_total/naive_count when it fails; Lambda retries the whole batch.",
    );
    let (_, events, observed, stream) = produce_and_count(ctx, "transient", &mut report).await?;
    let Some((shard, seq)) = faulty_place(&events, &stream) else {
        report.expect("the marked record is in the stream", false);
        return Ok(report);
    };
    let held = holding(&observed, &shard, &seq);
    show_invocations(out, "The invocations whose batch held the marked record", &held);
    let failed: Vec<_> = held.iter().filter(|i| i.outcome == Outcome::Failed).collect();
    let redelivered: u32 = failed.iter().map(|i| i.naive_records).sum();
    let outcome = report.parts.last().cloned().expect("produce_and_count adds the part");
    report.expect(
        "the marked batch failed twice, then succeeded",
        failed.len() == 2 && held.last().is_some_and(|i| i.outcome == Outcome::Succeeded),
    );
    report.expect(
        format!("naive_* over-counts by exactly the records of the failed deliveries ({redelivered})"),
        outcome.naive_excess == i64::from(redelivered) && redelivered > 0,
    );
    out.say(format!(
        "In DDIA terms: delivery is at least once, so the failed attempts' side effects stay: the naive \
         counters hold {redelivered} extra increments. The exactly-once counters do not, because each \
         event's increment commits atomically with its dedup row (idempotence through an atomic commit)."
    ));
    Ok(report)
}
