//! `idle-shard`: the devices of one shard fall silent. The overall watermark is the minimum
//! across shards, so it stalls at the silent shard's; once that shard has sent no data for the
//! idleness timeout (by arrival time) it is left out, and the watermark moves with the other.

use anyhow::Result;
use serde::Serialize;

use super::Ctx;
use super::part::{self, IDLE_SHARD, IDLE_SILENT_AFTER, Part, relative};
use super::watch::{Mode, Watch, short_shard};
use crate::examples::scenario::{ScenarioReport, report};

#[derive(Serialize)]
struct Details {
    silent_shard: String,
    idle_timeout_s: i64,
    /// Longest time the overall watermark stood still while the part played.
    longest_stall_s: f64,
    /// Whether it moved past the silent shard's own watermark before the end of input.
    released: bool,
    samples: Vec<super::watch::Sample>,
}

pub(super) async fn run(ctx: &mut Ctx<'_>) -> Result<ScenarioReport> {
    let tumbling = ctx.kind_named("tumbling")?;
    let part = Part::new(part::IDLE, ctx.seed, ctx.lab.next_start().await?, 0);
    let silent = short_shard(&format!("shardId-{IDLE_SHARD:012}"));
    let idle_timeout = ctx.lab.settings.watermark.idle_timeout;
    ctx.lab.out.say(format!(
        "Playing {} readings in true time ({} s): after {} s the devices of {silent} stop sending. Watch the \
         watermark stall, held back by {silent}, until it has been silent for {} s.",
        part.generated().len(),
        part.per_device * 2,
        IDLE_SILENT_AFTER / 1000,
        idle_timeout / 1000
    ));
    let mode = if ctx.follow { Mode::Follow } else { Mode::Watermark };
    let mut watch = Watch::new(mode, &tumbling.to_string(), part.start);
    let played = ctx.lab.play(&part, &mut watch).await?;
    // The samples before the end of input: what the readings alone did to the watermark.
    let ended_after = (played.ended_at - played.sent_at.first().copied().unwrap_or(played.ended_at)) as f64 / 1000.0;
    let samples: Vec<_> = watch.samples.iter().filter(|s| s.seconds <= ended_after).cloned().collect();
    let mut longest_stall: f64 = 0.0;
    let mut since = samples.first().map_or(0.0, |s| s.seconds);
    for pair in samples.windows(2) {
        if pair[1].watermark != pair[0].watermark {
            since = pair[1].seconds;
        }
        longest_stall = longest_stall.max(pair[1].seconds - since);
    }
    let released = samples.iter().any(|s| {
        let own = s.shards.iter().find(|(shard, _)| *shard == silent).map(|(_, w)| *w);
        own.is_some_and(|own| s.watermark > own) && s.idle.contains(&silent)
    });
    ctx.lab.out.table(
        "The watermark while one shard was silent (seconds since the part began):",
        &["after", "overall watermark", "held back by", "idle"],
        samples.iter().step_by(samples.len().div_ceil(12).max(1)).map(|s| {
            vec![
                format!("{:.1} s", s.seconds),
                relative(s.watermark, part.start),
                s.held_by.clone().unwrap_or_else(|| "-".to_owned()),
                s.idle.join(", "),
            ]
        }),
    );
    ctx.lab.out.say(format!(
        "The watermark stood still for up to {longest_stall:.0} s; {}.",
        if released {
            format!("then {silent} counted as idle and the watermark moved on with the other shard")
        } else {
            format!("{silent} was never left out as idle before the end of input")
        }
    ));
    let mut problems = Vec::new();
    if !released {
        problems.push(format!("the watermark did not move past {silent}'s once it was idle"));
    }
    let details = Details {
        silent_shard: silent,
        idle_timeout_s: idle_timeout / 1000,
        longest_stall_s: longest_stall,
        released,
        samples,
    };
    report("idle-shard", ctx.seed, problems, details)
}
