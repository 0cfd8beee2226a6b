//! `event-vs-processing`: readings per minute counted by when they arrived (the stream's
//! ApproximateArrivalTimestamp, scaled back to the readings' clock since the part plays sped
//! up) and by when they were measured (the final tumbling windows). After device-02's outage,
//! arrival time shows a dip and then a false spike; event time does not.

use std::collections::BTreeMap;

use anyhow::Result;
use labs_core::time::readings::{StreamRecord, parse_record};
use labs_core::time::{Millis, WindowKind};
use serde::Serialize;

use super::Ctx;
use crate::examples::scenario::{ScenarioReport, report};

const MINUTE: Millis = 60_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(super) struct MinuteCounts {
    /// Minute of the part (0 = its first).
    pub minute: i64,
    pub by_arrival: u64,
    /// From the final event-time tumbling windows.
    pub by_event_time: u64,
    /// From the seed alone.
    pub ground_truth: u64,
}

#[derive(Serialize)]
struct Details {
    minutes: Vec<MinuteCounts>,
    readings_read_back: usize,
}

/// Arrival minute of each reading: the time since the first arrival, times the playback speed,
/// from the first reading's true send time.
pub(super) fn arrival_minute(
    arrival: Millis,
    first_arrival: Millis,
    first_sent: Millis,
    start: Millis,
    speed: f64,
) -> i64 {
    let scaled = first_sent + ((arrival - first_arrival) as f64 * speed) as Millis;
    (scaled - start).div_euclid(MINUTE)
}

fn at(minutes: &mut BTreeMap<i64, MinuteCounts>, minute: i64) -> &mut MinuteCounts {
    minutes.entry(minute).or_insert_with(|| MinuteCounts { minute, ..MinuteCounts::default() })
}

pub(super) async fn run(ctx: &mut Ctx<'_>) -> Result<ScenarioReport> {
    let tumbling: WindowKind = ctx.kind_named("tumbling")?;
    let (part, played) = ctx.readings(&tumbling.to_string()).await?;
    let records = ctx.lab.stream_records().await?;
    let arrivals: Vec<(Millis, String)> = records
        .iter()
        .filter_map(|r| match parse_record(&r.data) {
            Ok(StreamRecord::Reading(reading)) if part.owns(&reading.reading_id) => {
                Some((r.arrival_millis, reading.reading_id))
            }
            _ => None,
        })
        .collect();
    let generated = part.generated();
    let first_arrival = arrivals.iter().map(|a| a.0).min().unwrap_or(0);
    let first_sent = generated.first().map_or(part.start, |g| g.true_sent_at);
    let mut minutes: BTreeMap<i64, MinuteCounts> = BTreeMap::new();
    for (arrival, _) in &arrivals {
        at(&mut minutes, arrival_minute(*arrival, first_arrival, first_sent, part.start, part.speed())).by_arrival += 1;
    }
    for g in &generated {
        at(&mut minutes, (g.reading.event_time - part.start).div_euclid(MINUTE)).ground_truth += 1;
    }
    let name = tumbling.to_string();
    for row in played.tables.windows.iter().filter(|w| w.kind == name && w.is_final) {
        if row.start >= part.start - MINUTE && row.start < played.end {
            at(&mut minutes, (row.start - part.start).div_euclid(MINUTE)).by_event_time += row.count;
        }
    }
    let minutes: Vec<MinuteCounts> = minutes.into_values().collect();
    let spike = minutes.iter().max_by_key(|m| m.by_arrival).cloned().unwrap_or_default();
    ctx.lab.out.table(
        "Readings per minute of the part: by arrival time vs by event time",
        &["minute", "by arrival (stream)", "by event time (final windows)", "ground truth (seed)"],
        minutes.iter().map(|m| {
            let mark = if m.minute == spike.minute && m.by_arrival > m.ground_truth { "  <- false spike" } else { "" };
            vec![
                if m.minute < 0 { m.minute.to_string() } else { format!("+{}", m.minute) },
                format!("{}{mark}", m.by_arrival),
                m.by_event_time.to_string(),
                m.ground_truth.to_string(),
            ]
        }),
    );
    ctx.lab.out.say(
        "By arrival, the minute device-02 came back holds its whole backlog: a spike that never happened. By event \
         time each reading counts in the minute it was measured, so the counts match the seed's.",
    );
    let mut problems = Vec::new();
    if arrivals.len() != generated.len() {
        problems.push(format!("{} of {} readings read back from the stream", arrivals.len(), generated.len()));
    }
    if !minutes.iter().any(|m| m.by_arrival != m.by_event_time) {
        problems.push("arrival-time counts equal event-time counts in every minute: no outage shows".to_owned());
    }
    if minutes.iter().any(|m| m.by_event_time > m.ground_truth) {
        problems.push("an event-time minute counts more readings than were measured in it".to_owned());
    }
    report("event-vs-processing", ctx.seed, problems, Details { minutes, readings_read_back: arrivals.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_minutes_scale_back_to_the_readings_clock() {
        // Played 20x faster: 3 s after the first arrival is a minute later on the readings' clock.
        assert_eq!(arrival_minute(1_000, 1_000, 0, 0, 20.0), 0);
        assert_eq!(arrival_minute(4_000, 1_000, 0, 0, 20.0), 1);
        assert_eq!(arrival_minute(8_600, 1_000, 0, 0, 20.0), 2);
        assert_eq!(arrival_minute(1_000, 1_000, 61_000, 0, 20.0), 1, "from the first true send time");
    }
}
