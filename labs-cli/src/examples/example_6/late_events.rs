//! `late-events`: what the stragglers did. Within the allowed lateness a late reading revises
//! an emitted window (a new revision); beyond it the reading goes to the side output with the
//! watermark it met. Then the trade-off with numbers: the same readings through the same
//! operator in-process, under other bounds and lateness, showing how long the first answer
//! waits against how many readings are dropped and how many first answers were wrong.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use anyhow::Result;
use labs_core::time::readings::GeneratedReading;
use labs_core::time::{Millis, Output, WatermarkConfig, WatermarkTracker, Window, WindowKind, WindowOperator};
use serde::Serialize;

use super::Ctx;
use super::part::relative;
use crate::examples::scenario::{ScenarioReport, report};

/// One way to wait: how far behind the watermark trails, and how long windows accept revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Waiting {
    pub max_out_of_orderness: Millis,
    pub allowed_lateness: Millis,
}

/// What that way of waiting gives, over one set of readings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct TradeOff {
    pub waiting: Waiting,
    /// Median processing time from a window's end to its first answer, in seconds.
    pub first_answer_after_s: f64,
    /// Windows whose first answer (or lack of one) differs from the truth over every reading.
    pub wrong_first_answers: usize,
    pub revisions: usize,
    /// Readings (per window) dropped to the side output.
    pub dropped: usize,
    pub windows: usize,
}

/// Runs `readings` (in production order, processing time = their true send time) through one
/// operator of `kind` with a single-shard watermark.
pub(super) fn trade_off(readings: &[GeneratedReading], kind: WindowKind, waiting: Waiting) -> TradeOff {
    let config = WatermarkConfig {
        max_out_of_orderness: waiting.max_out_of_orderness,
        idle_timeout: Millis::MAX,
        expected_shards: 1,
    };
    let mut tracker = WatermarkTracker::new(config);
    let mut operator = WindowOperator::new(kind, waiting.allowed_lateness);
    let mut first: BTreeMap<(String, Window), (Millis, u64)> = BTreeMap::new();
    let (mut revisions, mut dropped) = (0, 0);
    let mut note = |outputs: Vec<Output>, now: Millis| {
        for output in outputs {
            match output {
                Output::Emitted(result) => match first.entry((result.key.clone(), result.window)) {
                    Entry::Occupied(_) => revisions += usize::from(result.revision > 1 && !result.is_final),
                    Entry::Vacant(entry) => {
                        entry.insert((now - result.window.end, result.count));
                    }
                },
                Output::Late(_) => dropped += 1,
                _ => {}
            }
        }
    };
    let mut last = 0;
    for g in readings {
        let now = g.true_sent_at;
        last = now;
        let r = &g.reading;
        note(operator.process_element(&r.device_id, r.event_time, r.value), now);
        tracker.on_event("shard", r.event_time, now);
        note(operator.process_watermark(tracker.watermark(now).watermark), now);
    }
    note(operator.process_watermark(Millis::MAX), last);
    let truth = labs_core::time::ground_truth(readings.iter().map(|g| &g.reading), &kind);
    // A window whose readings all came too late has no answer at all: wrong as well.
    let wrong = truth.iter().filter(|(id, a)| first.get(*id).is_none_or(|(_, count)| *count != a.count)).count();
    let mut delays: Vec<Millis> = first.values().map(|(delay, _)| *delay).collect();
    delays.sort_unstable();
    let median = delays.get(delays.len() / 2).copied().unwrap_or(0);
    TradeOff {
        waiting,
        first_answer_after_s: median as f64 / 1000.0,
        wrong_first_answers: wrong,
        revisions,
        dropped,
        windows: first.len(),
    }
}

#[derive(Serialize)]
struct Details {
    revised_windows: usize,
    side_output: usize,
    side_output_by_kind: BTreeMap<String, usize>,
    trade_offs: Vec<TradeOff>,
}

pub(super) async fn run(ctx: &mut Ctx<'_>) -> Result<ScenarioReport> {
    let tumbling = ctx.kind_named("tumbling")?;
    let (part, played) = ctx.readings(&tumbling.to_string()).await?;
    let settings = &ctx.lab.settings;
    let windows: Vec<_> = played.tables.windows.iter().filter(|w| w.end > part.start && w.start < played.end).collect();
    let revised: Vec<_> = windows.iter().filter(|w| w.revision > 1).collect();
    let late: Vec<_> = played.tables.late.iter().filter(|l| part.owns(&l.reading_id)).collect();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for l in &late {
        *by_kind.entry(l.kind.clone()).or_default() += 1;
    }
    let mut shown_revised = revised.clone();
    shown_revised.sort_by_key(|w| (w.kind.clone(), w.key.clone(), w.start));
    ctx.lab.out.table(
        "Windows revised by late readings (emitted, then again for each late reading within the allowed lateness):",
        &["kind", "device", "window", "count", "revision", "watermark at last emit"],
        shown_revised.iter().take(8).map(|w| {
            vec![
                w.kind.clone(),
                w.key.clone(),
                format!("{} .. {}", relative(w.start, part.start), relative(w.end, part.start)),
                w.count.to_string(),
                w.revision.to_string(),
                w.watermark_at_emit.map_or("-".to_owned(), |at| relative(at, part.start)),
            ]
        }),
    );
    let mut shown_late = late.clone();
    shown_late.sort_by_key(|l| (l.kind.clone(), l.event_time));
    ctx.lab.out.table(
        &format!(
            "The side output ({} rows): readings that came after their window's end + {} s, with the watermark they met:",
            late.len(),
            settings.allowed_lateness / 1000
        ),
        &["kind", "reading", "measured", "window", "watermark it met"],
        shown_late.iter().take(8).map(|l| {
            vec![
                l.kind.clone(),
                l.reading_id.clone(),
                relative(l.event_time, part.start),
                format!("{} .. {}", relative(l.window_start, part.start), relative(l.window_end, part.start)),
                relative(l.watermark, part.start),
            ]
        }),
    );
    let declared = Waiting {
        max_out_of_orderness: settings.watermark.max_out_of_orderness,
        allowed_lateness: settings.allowed_lateness,
    };
    let generated = part.generated();
    let options = [
        Waiting { max_out_of_orderness: declared.max_out_of_orderness, allowed_lateness: 0 },
        declared,
        Waiting { max_out_of_orderness: declared.max_out_of_orderness, allowed_lateness: 120_000 },
        Waiting { max_out_of_orderness: 120_000, allowed_lateness: 0 },
    ];
    let trade_offs: Vec<TradeOff> = options.iter().map(|w| trade_off(&generated, tumbling, *w)).collect();
    ctx.lab.out.table(
        &format!("The trade-off, {tumbling} windows over the same readings (in-process, one shard):"),
        &[
            "watermark bound",
            "allowed lateness",
            "first answer (median, after window end)",
            "first answers wrong",
            "revisions",
            "readings dropped",
        ],
        trade_offs.iter().map(|t| {
            let mark = if t.waiting == declared { " (deployed)" } else { "" };
            vec![
                format!("{} s{mark}", t.waiting.max_out_of_orderness / 1000),
                format!("{} s", t.waiting.allowed_lateness / 1000),
                format!("{:.1} s", t.first_answer_after_s),
                t.wrong_first_answers.to_string(),
                t.revisions.to_string(),
                t.dropped.to_string(),
            ]
        }),
    );
    ctx.lab.out.say(
        "Waiting longer (a larger bound) answers later but rightly the first time; answering sooner (a small bound) \
         needs revisions, and a short allowed lateness drops the stragglers instead.",
    );
    let mut problems = Vec::new();
    if late.is_empty() && revised.is_empty() {
        problems.push("no reading was late: the backlog should revise windows or reach the side output".to_owned());
    }
    if let (Some(eager), Some(patient)) = (trade_offs.first(), trade_offs.last())
        && patient.first_answer_after_s <= eager.first_answer_after_s
    {
        problems.push("a larger bound did not delay the first answer".to_owned());
    }
    let details =
        Details { revised_windows: revised.len(), side_output: late.len(), side_output_by_kind: by_kind, trade_offs };
    report("late-events", ctx.seed, problems, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::example_6::part::{self, Part};

    #[test]
    fn waiting_longer_answers_later_and_drops_fewer() {
        let generated = Part::new(part::READINGS, 4, 1_800_000_000_000, 120).generated();
        let kind = WindowKind::Tumbling { size: 60_000 };
        let eager = trade_off(&generated, kind, Waiting { max_out_of_orderness: 5_000, allowed_lateness: 0 });
        let lenient = trade_off(&generated, kind, Waiting { max_out_of_orderness: 5_000, allowed_lateness: 120_000 });
        let patient = trade_off(&generated, kind, Waiting { max_out_of_orderness: 120_000, allowed_lateness: 0 });
        assert!(eager.dropped > 0, "the backlog misses closed windows: {eager:?}");
        assert_eq!(lenient.dropped, 0, "{lenient:?}");
        assert!(lenient.revisions > 0 && lenient.wrong_first_answers > 0, "{lenient:?}");
        assert!(patient.first_answer_after_s > eager.first_answer_after_s + 45.0, "{patient:?} {eager:?}");
        assert!(patient.wrong_first_answers < eager.wrong_first_answers, "{patient:?} {eager:?}");
        assert_eq!(eager.windows, lenient.windows);
    }
}
