//! Watching a part play: the watermark as it advances (and which shard holds it back, which
//! are idle), and windows as they are emitted; with `--follow`, every window as it opens,
//! updates, is emitted, revised and closed, as a live table.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use event_time_windows::WindowRow;
use labs_core::time::{Millis, WatermarkTracker};
use serde::Serialize;

use super::lab::{Lab, Tables, now_millis};
use super::part::relative;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Watermark advances and emissions of one kind.
    Watermark,
    /// Every change of every window of one kind, as it happens.
    Follow,
    /// Nothing printed (samples still kept).
    Quiet,
}

/// One look at the watermark.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Sample {
    pub seconds: f64,
    /// The overall watermark the furthest shard's windows reached.
    pub watermark: Millis,
    /// Each shard's own watermark.
    pub shards: Vec<(String, Millis)>,
    /// The shard holding the overall watermark back, judged now.
    pub held_by: Option<String>,
    /// Shards left out as idle, judged now.
    pub idle: Vec<String>,
}

pub(super) struct Watch {
    mode: Mode,
    /// Only windows of this kind are reported (`tumbling-1m`).
    kind: String,
    origin: Millis,
    started: Instant,
    last_watermark: Option<Millis>,
    seen: BTreeMap<(String, Millis), (u32, u64, bool)>,
    pub samples: Vec<Sample>,
    header_shown: bool,
}

impl Watch {
    /// Reports times relative to `origin` (the part's start).
    pub fn new(mode: Mode, kind: &str, origin: Millis) -> Self {
        Self {
            mode,
            kind: kind.to_owned(),
            origin,
            started: Instant::now(),
            last_watermark: None,
            seen: BTreeMap::new(),
            samples: Vec::new(),
            header_shown: false,
        }
    }

    /// Reads the tables and reports what changed since the last look.
    pub async fn poll(&mut self, lab: &Lab<'_>) -> Result<Tables> {
        let tables = lab.tables().await?;
        let seconds = self.started.elapsed().as_secs_f64();
        let tracker = WatermarkTracker::from_clocks(lab.settings.watermark, tables.shards.iter().map(|r| r.clock()));
        let judged = tracker.watermark(now_millis());
        let watermark = tables.overall_watermark();
        let sample = Sample {
            seconds,
            watermark,
            shards: tables.shards.iter().map(|r| (short_shard(&r.shard_id), r.watermark)).collect(),
            held_by: judged.held_by.as_deref().map(short_shard),
            idle: judged.idle.iter().map(|s| short_shard(s)).collect(),
        };
        if self.last_watermark != Some(watermark) && self.mode != Mode::Quiet {
            let shards: Vec<String> =
                sample.shards.iter().map(|(s, w)| format!("{s} {}", relative(*w, self.origin))).collect();
            let mut line = format!("{seconds:>6.1} s  watermark {}", relative(watermark, self.origin));
            if !shards.is_empty() {
                line.push_str(&format!("  (own: {})", shards.join(", ")));
            }
            if let Some(held) = &sample.held_by {
                line.push_str(&format!("  held back by {held}"));
            }
            if !sample.idle.is_empty() {
                line.push_str(&format!("  idle: {}", sample.idle.join(", ")));
            }
            lab.out.say(line);
        }
        self.last_watermark = Some(watermark);
        self.samples.push(sample);
        let mut rows: Vec<&WindowRow> =
            tables.windows.iter().filter(|w| w.kind == self.kind && w.end > self.origin).collect();
        rows.sort_by_key(|w| (w.emitted_at, w.start, w.key.clone()));
        for row in rows {
            let id = (row.window_key.clone(), row.start);
            let before = self.seen.insert(id, (row.revision, row.count, row.is_final));
            if let Some(event) = change(before, row, self.mode) {
                if self.mode == Mode::Follow && !self.header_shown {
                    lab.out.say(format!(
                        "{:>8}  {:<9} {:<10} {:<19} {:>5} {:>8} {:>3}  {}",
                        "after", "change", "device", "window", "count", "sum", "rev", "watermark then"
                    ));
                    self.header_shown = true;
                }
                lab.out.say(format!(
                    "{seconds:>6.1} s  {event:<9} {:<10} {:<19} {:>5} {:>8} {:>3}  {}",
                    row.key,
                    format!("{}..{}", relative(row.start, self.origin), relative(row.end, self.origin)),
                    row.count,
                    row.sum,
                    row.revision,
                    row.watermark_at_emit.map_or("-".to_owned(), |w| relative(w, self.origin)),
                ));
            }
        }
        Ok(tables)
    }
}

/// What happened to a window since it was last seen, if it is worth a line in `mode`.
fn change(before: Option<(u32, u64, bool)>, row: &WindowRow, mode: Mode) -> Option<&'static str> {
    let event = match before {
        None if row.is_final => "final",
        None if row.revision > 0 => "emitted",
        None => "opened",
        Some((_, _, true)) => return None,
        Some(_) if row.is_final => "final",
        Some((revision, _, _)) if row.revision > revision && revision == 0 => "emitted",
        Some((revision, _, _)) if row.revision > revision => "revised",
        Some((_, count, _)) if row.count != count => "updated",
        Some(_) => return None,
    };
    let shown = match mode {
        Mode::Quiet => false,
        Mode::Follow => true,
        Mode::Watermark => !matches!(event, "opened" | "updated"),
    };
    shown.then_some(event)
}

/// `shard-1` for `shardId-000000000001`.
pub(super) fn short_shard(shard_id: &str) -> String {
    match shard_id.strip_prefix("shardId-").and_then(|n| n.parse::<u64>().ok()) {
        Some(n) => format!("shard-{n}"),
        None => shard_id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(revision: u32, count: u64, is_final: bool) -> WindowRow {
        WindowRow {
            window_key: "tumbling-1m#device-00".into(),
            start: 0,
            end: 60_000,
            kind: "tumbling-1m".into(),
            key: "device-00".into(),
            count,
            sum: 0,
            revision,
            is_final,
            emitted_at: None,
            watermark_at_emit: None,
            shard_id: "shardId-000000000000".into(),
            sequence_number: String::new(),
        }
    }

    #[test]
    fn changes_are_named_and_follow_shows_more_than_the_watermark_view() {
        assert_eq!(change(None, &row(0, 1, false), Mode::Follow), Some("opened"));
        assert_eq!(change(None, &row(0, 1, false), Mode::Watermark), None);
        assert_eq!(change(Some((0, 1, false)), &row(0, 2, false), Mode::Follow), Some("updated"));
        assert_eq!(change(Some((0, 2, false)), &row(1, 2, false), Mode::Watermark), Some("emitted"));
        assert_eq!(change(Some((1, 2, false)), &row(2, 3, false), Mode::Watermark), Some("revised"));
        assert_eq!(change(Some((2, 3, false)), &row(2, 3, true), Mode::Watermark), Some("final"));
        assert_eq!(change(Some((2, 3, true)), &row(2, 3, true), Mode::Follow), None);
        assert_eq!(change(Some((1, 2, false)), &row(1, 2, false), Mode::Follow), None);
        assert_eq!(change(None, &row(1, 2, true), Mode::Quiet), None);
        assert_eq!(short_shard("shardId-000000000001"), "shard-1");
    }
}
