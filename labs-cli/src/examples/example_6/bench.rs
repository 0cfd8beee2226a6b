//! `labs bench example-6`: readings per second through the window logic in-process (the
//! function's own handler and in-memory store, every declared window kind), and, on the target,
//! the latency from the record that lets the watermark pass a window's end + allowed lateness
//! to that window's final row.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use labs_core::partition;
use labs_core::time::Millis;
use serde::Serialize;

use super::lab::Lab;
use super::part::{self, Part};
use super::simulate::simulate;
use super::watch::{Mode, Watch};
use crate::driver::seeds;
use crate::examples::BenchOptions;
use crate::figures::Figure;
use crate::output::{self, Output};
use crate::target::Target;

const DEFAULT_PER_DEVICE: u32 = 300;
/// Three minutes of readings on the target: long enough that the readings themselves close the
/// early windows, and the end of input only the last ones.
const E2E_PER_DEVICE: u32 = 90;

#[derive(Serialize)]
struct BenchReport {
    in_process: InProcess,
    end_to_end: EndToEnd,
}

#[derive(Serialize)]
struct InProcess {
    readings: usize,
    /// Readings and control records handed to the handler.
    records: usize,
    final_windows: usize,
    window_kinds: usize,
    seconds: f64,
    readings_per_second: f64,
}

#[derive(Serialize)]
struct EndToEnd {
    readings: usize,
    final_windows: usize,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
}

/// The overall watermark the readings allow after each one is sent (the minimum across shards
/// of the largest event time minus the bound), with the wall time it was sent; last, the
/// heartbeats, which close what only the end of input closes. A window could be final at the
/// first step whose watermark reaches its end + allowed lateness.
fn releases(lab: &Lab<'_>, part: &Part, sent_at: &[Millis], heartbeats_at: Millis) -> Vec<(Millis, Millis)> {
    let config = lab.settings.watermark;
    let ranges = partition::even_ranges(config.expected_shards as u32);
    let mut max_event: Vec<Option<Millis>> = vec![None; config.expected_shards];
    let mut steps = Vec::new();
    for (g, at) in part.generated().iter().zip(sent_at) {
        let shard = partition::shard_for_key(&ranges, &g.reading.device_id).unwrap_or(0);
        max_event[shard] = Some(max_event[shard].map_or(g.reading.event_time, |m| m.max(g.reading.event_time)));
        if let Some(watermark) = max_event.iter().map(|m| m.map(|t| t - config.max_out_of_orderness)).min().flatten() {
            steps.push((watermark, *at));
        }
    }
    steps.push((Millis::MAX, heartbeats_at));
    steps
}

pub(super) async fn bench(target: &Target, options: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let lab = Lab::connect(target, out).await?;
    let per_device = options.count.map_or(DEFAULT_PER_DEVICE, |n| n as u32);
    if !(20..=5_000).contains(&per_device) {
        bail!("--count is readings per device: use 20 to 5000");
    }

    let spinner = output::spinner("in-process: the handler over generated readings");
    let local = Part::new(part::BENCH, 1, 1_800_000_000_000, per_device);
    let started = Instant::now();
    let simulated = simulate(&local, &lab.settings, 100).await?;
    let seconds = started.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let in_process = InProcess {
        readings: simulated.readings,
        records: simulated.records.len(),
        final_windows: simulated.tables.windows.iter().filter(|w| w.is_final).count(),
        window_kinds: lab.settings.kinds.len(),
        seconds,
        readings_per_second: simulated.readings as f64 / seconds.max(1e-9),
    };

    let recorded = lab.parts().await?;
    seeds::check_room(recorded.len(), 1, super::MAX_PARTS, &lab.stream, "example-6")?;
    let seed = seeds::after_highest(recorded.iter().map(|p| p.seed))?;
    target.confirm(&format!("Produce benchmark readings into {}?", lab.stream))?;
    let part = Part::new(part::BENCH, seed, lab.next_start().await?, E2E_PER_DEVICE);
    let mut watch = Watch::new(Mode::Quiet, "", part.start);
    let played = lab.play(&part, &mut watch).await?;
    let steps = releases(&lab, &part, &played.sent_at, played.heartbeats_at);
    let lateness = lab.settings.allowed_lateness;
    let mut latencies: Vec<Duration> = played
        .tables
        .windows
        .iter()
        .filter(|w| w.is_final && w.end > part.start && w.start < played.end)
        .filter_map(|w| {
            let released = steps.iter().find(|(watermark, _)| *watermark >= w.end + lateness)?.1;
            Some(Duration::from_millis(w.emitted_at?.saturating_sub(released).max(0) as u64))
        })
        .collect();
    latencies.sort();
    let end_to_end = EndToEnd {
        readings: part.generated().len(),
        final_windows: latencies.len(),
        p50_ms: output::percentile_ms(&latencies, 0.5),
        p95_ms: output::percentile_ms(&latencies, 0.95),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    };
    out.table(
        "example-6 bench",
        &["measure", "value"],
        [
            vec![
                format!(
                    "in-process: {} readings through {} window kinds ({} final windows)",
                    in_process.readings, in_process.window_kinds, in_process.final_windows
                ),
                format!("{:.0} readings/s ({:.2} s)", in_process.readings_per_second, in_process.seconds),
            ],
            vec![
                format!(
                    "end to end: record that closes a window -> its final row ({} windows)",
                    end_to_end.final_windows
                ),
                format!(
                    "p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
                    end_to_end.p50_ms, end_to_end.p95_ms, end_to_end.max_ms
                ),
            ],
        ],
    );
    let figures = vec![
        Figure::new("example-6", "in-process window logic", in_process.readings_per_second, "readings/s"),
        Figure::new("example-6", "record that closes a window -> final row, p50", end_to_end.p50_ms, "ms"),
        Figure::new("example-6", "record that closes a window -> final row, p95", end_to_end.p95_ms, "ms"),
    ];
    out.json(&BenchReport { in_process, end_to_end })?;
    Ok(figures)
}
