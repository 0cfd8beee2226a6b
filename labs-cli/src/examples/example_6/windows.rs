//! `tumbling`, `hopping`, `session`: the same readings under each window type. While the part
//! plays the watermark is printed as it advances, with each window as it is emitted; then the
//! windows of two devices (device-02 is the one that went offline), each with the watermark
//! when it was emitted, beside the ground truth from the seed.

use anyhow::Result;
use event_time_windows::WindowRow;
use labs_core::time::{Window, WindowKind, ground_truth, ground_truth_where};
use serde::Serialize;

use super::Ctx;
use super::part::relative;
use crate::examples::scenario::{ScenarioReport, report};

const SHOWN_DEVICES: [&str; 2] = ["device-00", "device-02"];

#[derive(Serialize)]
struct WindowsReport {
    kind: String,
    windows: usize,
    final_windows: usize,
    /// Emitted more than once: a late reading within the allowed lateness revised them.
    revised: usize,
    /// (reading, window) pairs sent to the side output.
    late: usize,
    /// Windows whose first emission came before the watermark passed their end (should be 0).
    emitted_early: usize,
    /// Final windows that differ from the ground truth of every reading (late ones included).
    differ_from_all_readings: usize,
    /// Final windows that differ from the truth over the readings they accepted (should be 0).
    differ_from_accepted: usize,
}

pub(super) async fn run(ctx: &mut Ctx<'_>, scenario: &'static str) -> Result<ScenarioReport> {
    let kind: WindowKind = ctx.kind_named(scenario)?;
    let (part, played) = ctx.readings(&kind.to_string()).await?;
    let name = kind.to_string();
    let rows: Vec<&WindowRow> =
        played.tables.windows.iter().filter(|w| w.kind == name && w.end > part.start && w.start < played.end).collect();
    let readings = part.readings();
    let truth = ground_truth(&readings, &kind);
    let lateness = ctx.lab.settings.allowed_lateness;
    let late: std::collections::BTreeSet<(&str, i64)> = played
        .tables
        .late
        .iter()
        .filter(|l| l.kind == name && part.owns(&l.reading_id))
        .map(|l| (l.reading_id.as_str(), l.window_start))
        .collect();
    // The truth over the readings each window accepted: the side output taken out.
    let accepted = ground_truth_where(&readings, &kind, |r, w| !late.contains(&(r.reading_id.as_str(), w.start)));
    let late = late.len();
    let differ = rows
        .iter()
        .filter(|w| {
            let expected = truth.get(&(w.key.clone(), Window { start: w.start, end: w.end }));
            expected.is_none_or(|a| a.count != w.count || a.sum != w.sum)
        })
        .count();
    let details = WindowsReport {
        kind: name.clone(),
        windows: rows.len(),
        final_windows: rows.iter().filter(|w| w.is_final).count(),
        revised: rows.iter().filter(|w| w.revision > 1).count(),
        late,
        emitted_early: rows.iter().filter(|w| w.watermark_at_emit.is_some_and(|at| at < w.end)).count(),
        differ_from_all_readings: differ,
        differ_from_accepted: rows
            .iter()
            .filter(|w| w.is_final)
            .filter(|w| {
                let expected = accepted.get(&(w.key.clone(), Window { start: w.start, end: w.end }));
                expected.is_none_or(|a| a.count != w.count || a.sum != w.sum)
            })
            .count(),
    };
    let mut shown: Vec<&&WindowRow> = rows.iter().filter(|w| SHOWN_DEVICES.contains(&w.key.as_str())).collect();
    shown.sort_by_key(|w| (w.key.clone(), w.start));
    ctx.lab.out.table(
        &format!("{name} windows of {} (times from the part's start):", SHOWN_DEVICES.join(" and ")),
        &[
            "device",
            "window",
            "count",
            "truth (accepted readings)",
            "revision",
            "final",
            "watermark at emit",
            "emitted (wall)",
        ],
        shown.iter().map(|w| {
            let expected = accepted.get(&(w.key.clone(), Window { start: w.start, end: w.end }));
            vec![
                w.key.clone(),
                format!("{} .. {}", relative(w.start, part.start), relative(w.end, part.start)),
                w.count.to_string(),
                expected.map_or("-".to_owned(), |a| a.count.to_string()),
                w.revision.to_string(),
                if w.is_final { "yes" } else { "no" }.to_owned(),
                w.watermark_at_emit.map_or("-".to_owned(), |at| relative(at, part.start)),
                w.emitted_at
                    .map_or("-".to_owned(), |at| format!("{:.1} s after the part began", seconds_after(at, &played))),
            ]
        }),
    );
    ctx.lab.out.say(format!(
        "{} {name} windows, {} final; {} revised by a late reading within {} s of allowed lateness; {} (reading, \
         window) pairs in the side output. A window is emitted once the watermark passes its end, and final once it \
         passes end + allowed lateness.",
        details.windows,
        details.final_windows,
        details.revised,
        lateness / 1000,
        details.late
    ));
    let mut problems = Vec::new();
    if details.windows == 0 {
        problems.push(format!("no {name} windows were written"));
    }
    if details.final_windows != details.windows {
        problems.push(format!("{} {name} windows are not final", details.windows - details.final_windows));
    }
    if details.differ_from_accepted > 0 {
        problems.push(format!("{} final windows differ from their accepted readings", details.differ_from_accepted));
    }
    if details.emitted_early > 0 {
        problems.push(format!("{} windows were emitted before the watermark passed their end", details.emitted_early));
    }
    report(scenario, ctx.seed, problems, details)
}

fn seconds_after(at: i64, played: &super::Played) -> f64 {
    let began = played.sent_at.first().copied().unwrap_or(at);
    (at - began) as f64 / 1000.0
}
