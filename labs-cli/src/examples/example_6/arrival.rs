//! `arrival-windows`: Lambda's own tumbling windows (`TumblingWindowInSeconds`) beside the
//! event-time ones. Lambda groups each shard's records by arrival, so the learner sees one row
//! per shard and window, and their total; the counts equal the readings counted by their
//! ApproximateArrivalTimestamp read back from the stream.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use arrival_windows::ArrivalRow;
use labs_core::time::Millis;
use labs_core::time::readings::{StreamRecord, parse_record};
use serde::Serialize;

use super::Ctx;
use super::watch::{Mode, Watch, short_shard};
use crate::driver::kinesis::Incoming;
use crate::examples::scenario::{ScenarioReport, report};

pub(super) const NOT_IN_THIS_BUILD: &str =
    "arrival-time windows need the runner's tumbling windows (not in this build)";

/// Readings per (shard, window start) by arrival time, for windows of `length`.
pub(super) fn counts_by_arrival(records: &[Incoming], length: Millis) -> BTreeMap<(String, Millis), u64> {
    let mut counts = BTreeMap::new();
    for record in records {
        if let Ok(StreamRecord::Reading(_)) = parse_record(&record.data) {
            let start = record.arrival_millis - record.arrival_millis.rem_euclid(length);
            *counts.entry((record.shard_id.clone(), start)).or_default() += 1;
        }
    }
    counts
}

/// Readings that arrived on `shard_id` in `[start, end)`: what its arrival-time window holds.
pub(super) fn arrived_between(records: &[Incoming], shard_id: &str, start: Millis, end: Millis) -> u64 {
    let arrived = records.iter().filter(|r| r.shard_id == shard_id && (start..end).contains(&r.arrival_millis));
    arrived.filter(|r| matches!(parse_record(&r.data), Ok(StreamRecord::Reading(_)))).count() as u64
}

#[derive(Serialize)]
struct Details {
    supported: bool,
    note: Option<&'static str>,
    rows: Vec<ArrivalRow>,
    differing: usize,
}

fn wall(millis: Millis) -> String {
    let seconds = millis.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

pub(super) async fn run(ctx: &mut Ctx<'_>) -> Result<ScenarioReport> {
    let Some(window_seconds) = ctx.lab.arrival_window_seconds else {
        ctx.lab.out.say(format!(
            "{NOT_IN_THIS_BUILD}: the declaration of {}'s mapping has no tumbling_window_seconds yet.",
            ctx.lab.target.name(super::ARRIVAL_WINDOWS)
        ));
        let details = Details { supported: false, note: Some(NOT_IN_THIS_BUILD), rows: vec![], differing: 0 };
        return report("arrival-windows", ctx.seed, vec![], details);
    };
    let length = Millis::from(window_seconds) * 1000;
    let tumbling = ctx.kind_named("tumbling")?;
    let (part, _) = ctx.readings(&tumbling.to_string()).await?;
    let records = ctx.lab.stream_records().await?;
    let ours: Vec<Incoming> = records
        .iter()
        .filter(
            |r| matches!(parse_record(&r.data), Ok(StreamRecord::Reading(reading)) if part.owns(&reading.reading_id)),
        )
        .cloned()
        .collect();
    let wanted: Vec<(String, Millis)> = counts_by_arrival(&ours, length).into_keys().collect();
    ctx.lab.out.say(format!(
        "Lambda closes a window once it has ended; waiting up to {} s for the rows of {} (shard, window) pairs.",
        window_seconds + 90,
        wanted.len()
    ));
    let mut watch = Watch::new(Mode::Quiet, "", part.start);
    let done = |t: &super::lab::Tables| {
        wanted
            .iter()
            .all(|(shard, start)| t.arrival.iter().any(|r| &r.shard_id == shard && r.start == *start && r.is_final))
    };
    let tables = match tokio::time::timeout(
        Duration::from_secs(window_seconds as u64 + 90),
        ctx.lab.wait_for(&mut watch, "Lambda's arrival-time windows", done),
    )
    .await
    {
        Ok(tables) => tables?,
        Err(_) => ctx.lab.tables().await?,
    };
    let rows: Vec<ArrivalRow> = tables
        .arrival
        .iter()
        .filter(|r| wanted.iter().any(|(shard, start)| &r.shard_id == shard && r.start == *start))
        .cloned()
        .collect();
    let differing = rows.iter().filter(|r| arrived_between(&records, &r.shard_id, r.start, r.end) != r.count).count();
    let mut totals: BTreeMap<Millis, u64> = BTreeMap::new();
    for row in &rows {
        *totals.entry(row.start).or_default() += row.count;
    }
    ctx.lab.out.table(
        &format!("Lambda's {window_seconds} s tumbling windows, by arrival (wall clock, UTC), per shard and in total:"),
        &["window", "shard", "Lambda's count", "read back by arrival", "final"],
        rows.iter()
            .map(|r| {
                vec![
                    format!("{} .. {}", wall(r.start), wall(r.end)),
                    short_shard(&r.shard_id),
                    r.count.to_string(),
                    arrived_between(&records, &r.shard_id, r.start, r.end).to_string(),
                    if r.is_final { "yes" } else { "no" }.to_owned(),
                ]
            })
            .chain(totals.iter().map(|(start, total)| {
                vec![
                    format!("{} ..", wall(*start)),
                    "total".to_owned(),
                    total.to_string(),
                    String::new(),
                    String::new(),
                ]
            })),
    );
    ctx.lab.out.say(
        "Every reading counts in the window it arrived in: the backlog lands with everything else that arrived then, \
         wherever it was measured. The event-time windows above put it where it belongs.",
    );
    let mut problems = Vec::new();
    if rows.len() < wanted.len() {
        problems.push(format!("{} of {} arrival windows were written", rows.len(), wanted.len()));
    }
    if differing > 0 {
        problems.push(format!("{differing} arrival windows differ from the counts by arrival time"));
    }
    report("arrival-windows", ctx.seed, problems, Details { supported: true, note: None, rows, differing })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(shard: &str, arrival: Millis, data: &[u8]) -> Incoming {
        Incoming {
            shard_id: shard.into(),
            sequence_number: "1".into(),
            partition_key: "k".into(),
            data: data.to_vec(),
            arrival_millis: arrival,
            millis_behind_latest: 0,
        }
    }

    #[test]
    fn only_readings_count_by_shard_and_arrival_window() {
        let reading = br#"{"kind":"reading","device_id":"d","reading_id":"r","value":1,"event_time":1,"sent_at":1}"#;
        let records = [
            record("s0", 59_999, reading),
            record("s0", 60_000, reading),
            record("s1", 60_001, reading),
            record("s0", 60_002, br#"{"kind":"heartbeat","sent_at":1}"#),
        ];
        let counts = counts_by_arrival(&records, 60_000);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [(("s0".to_owned(), 0), 1), (("s0".to_owned(), 60_000), 1), (("s1".to_owned(), 60_000), 1)]
        );
        assert_eq!(arrived_between(&records, "s0", 0, 70_000), 2, "the heartbeat is not a reading");
        assert_eq!(arrived_between(&records, "s1", 0, 60_001), 0);
        assert_eq!(arrived_between(&records, "s1", 0, 60_002), 1);
        assert_eq!(wall(3_723_000), "01:02:03");
    }
}
