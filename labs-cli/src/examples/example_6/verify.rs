//! Example 6's verifier. From the data alone: the stream read back, the windows, watermarks and
//! late tables, and the readings regenerated from the recorded seeds. Whether a reading was late
//! depends on how the shards interleaved, so it is judged against the watermark recorded when
//! it was processed (the late row's), never re-derived from the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Result;
use event_time_windows::Settings;
use labs_core::time::readings::{StreamRecord, parse_record};
use labs_core::time::{Millis, Reading, Window, WindowKind, ground_truth_where};
use serde::Serialize;

use super::arrival::arrived_between;
use super::lab::{Lab, Tables};
use super::part::Part;
use crate::driver::kinesis::Incoming;
use crate::examples::VerifyOptions;
use crate::examples::scenario::few;
use crate::output::{self, Output};
use crate::target::Target;

/// Everything the verifier reads, at one moment.
pub(super) struct Evidence {
    pub parts: Vec<Part>,
    pub records: Vec<Incoming>,
    pub tables: Tables,
    pub settings: Settings,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Check {
    pub check: &'static str,
    pub passed: bool,
    pub details: String,
}

fn check(check: &'static str, problems: Vec<String>, fine: String) -> Check {
    let passed = problems.is_empty();
    Check { check, passed, details: if passed { fine } else { problems.join("; ") } }
}

/// The window a late row names, if it is one of the reading's windows of that kind.
fn is_window_of(kind: &WindowKind, reading: &Reading, window: &Window) -> bool {
    kind.windows_of(reading.event_time).contains(window)
}

/// Whether a reading of `window` was really too late at `watermark` (the operator's rule: a
/// fixed window closes when the watermark reaches end + lateness; a session event is late only
/// once the watermark is past event time + lateness, since an on-time event may still join a
/// session ending there).
fn too_late(kind: &WindowKind, event_time: Millis, window: &Window, watermark: Millis, lateness: Millis) -> bool {
    if kind.is_session() {
        event_time.saturating_add(lateness) < watermark
    } else {
        window.end.saturating_add(lateness) <= watermark
    }
}

pub(super) fn checks(e: &Evidence) -> Vec<Check> {
    let lateness = e.settings.allowed_lateness;
    let produced: BTreeMap<String, Reading> =
        e.parts.iter().flat_map(Part::readings).map(|r| (r.reading_id.clone(), r)).collect();
    let mut checks = Vec::new();

    // 1. The stream holds every produced reading exactly once, as produced.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut altered = Vec::new();
    let mut unknown = Vec::new();
    let mut unreadable = 0;
    for record in &e.records {
        match parse_record(&record.data) {
            Ok(StreamRecord::Reading(reading)) => match produced.get(&reading.reading_id) {
                Some(expected) if *expected == reading => {
                    *seen.entry(expected.reading_id.as_str()).or_default() += 1;
                }
                Some(_) => altered.push(reading.reading_id),
                None => unknown.push(reading.reading_id),
            },
            Ok(_) => {}
            Err(_) => unreadable += 1,
        }
    }
    let missing = produced.keys().filter(|id| !seen.contains_key(id.as_str()));
    let twice = seen.iter().filter(|(_, n)| **n > 1).map(|(id, n)| format!("{id} x{n}"));
    let problems = [
        few("missing from the stream", missing),
        few("in the stream more than once", twice),
        few("differ from their seed", &altered),
        few("not from any recorded part", &unknown),
        (unreadable > 0).then(|| format!("{unreadable} records are not example-6 records")),
    ];
    checks.push(check(
        "the stream holds every reading regenerated from the seeds, once",
        problems.into_iter().flatten().collect(),
        format!("{} readings of {} parts", produced.len(), e.parts.len()),
    ));

    // 2. The side output: real readings, each in one of its windows, and too late for it at
    //    the watermark it met.
    let mut bad_late = Vec::new();
    let mut late_pairs: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &e.tables.late {
        let window = Window { start: row.window_start, end: row.window_end };
        let kind = WindowKind::from_str(&row.kind).ok();
        let reading = produced.get(&row.reading_id);
        let problem = match (kind, reading) {
            (None, _) => Some("an unknown kind"),
            (_, None) => Some("no such reading"),
            (Some(kind), Some(r)) => {
                if r.event_time != row.event_time || r.value != row.value || r.device_id != row.device_id {
                    Some("not the reading as produced")
                } else if !is_window_of(&kind, r, &window) || row.window != format!("{kind}#{}", window.start) {
                    Some("not one of its windows")
                } else if !too_late(&kind, r.event_time, &window, row.watermark, lateness) {
                    Some("not late at the watermark it met")
                } else {
                    None
                }
            }
        };
        match problem {
            Some(problem) => bad_late.push(format!("{} {}: {problem}", row.reading_id, row.window)),
            None => {
                late_pairs.insert((row.reading_id.clone(), row.window.clone()));
            }
        }
    }
    checks.push(check(
        "each side-output row is a reading later than its window's end + allowed lateness, at the watermark it met",
        few("side-output rows wrong", &bad_late).into_iter().collect(),
        format!("{} side-output rows", e.tables.late.len()),
    ));

    // 3 and 4. Per kind: every final window equals the truth over the readings it accepted, and
    //    every reading is in exactly one of (its final window, the side output).
    let mut differ = Vec::new();
    let mut books = Vec::new();
    let mut not_final = Vec::new();
    let mut windows = 0;
    for kind in &e.settings.kinds {
        let name = kind.to_string();
        let accepted =
            |r: &Reading, w: &Window| !late_pairs.contains(&(r.reading_id.clone(), format!("{name}#{}", w.start)));
        let truth = ground_truth_where(produced.values(), kind, accepted);
        let rows: Vec<_> = e.tables.windows.iter().filter(|w| w.kind == name).collect();
        not_final.extend(rows.iter().filter(|w| !w.is_final).map(|w| format!("{} {}", w.window_key, w.start)));
        windows += rows.len();
        let found: BTreeMap<(String, Window), (u64, i64)> = rows
            .iter()
            .filter(|w| w.is_final)
            .map(|w| ((w.key.clone(), Window { start: w.start, end: w.end }), (w.count, w.sum)))
            .collect();
        for (id, aggregate) in &truth {
            match found.get(id) {
                Some(&(count, sum)) if count == aggregate.count && sum == aggregate.sum => {}
                Some(&(count, sum)) => differ.push(format!(
                    "{name}#{} {}: {count} readings summing {sum}, truth {} summing {}",
                    id.0, id.1.start, aggregate.count, aggregate.sum
                )),
                None => differ.push(format!("{name}#{} {}: no final window", id.0, id.1.start)),
            }
        }
        for id in found.keys().filter(|id| !truth.contains_key(*id)) {
            differ.push(format!("{name}#{} {}..{}: no reading belongs there", id.0, id.1.start, id.1.end));
        }
        let pairs: usize = produced.values().map(|r| kind.windows_of(r.event_time).len()).sum();
        let counted: u64 = found.values().map(|(count, _)| count).sum();
        let late = late_pairs.iter().filter(|(_, w)| w.starts_with(&format!("{name}#"))).count();
        if counted as usize + late != pairs {
            books.push(format!("{name}: {pairs} (reading, window) pairs, {counted} in final windows + {late} late"));
        }
    }
    let mut problems: Vec<String> =
        [few("windows not final", &not_final), few("final windows differ", &differ)].into_iter().flatten().collect();
    problems.extend(few("unreadable rows", &e.tables.odd));
    checks.push(check(
        "every final window equals the ground truth over the readings it accepted",
        problems,
        format!("{windows} windows of {} kinds, all final and equal", e.settings.kinds.len()),
    ));
    checks.push(check(
        "every reading is in exactly one of (its final window, the side output)",
        books,
        "for every kind, readings in final windows + side output = readings".to_owned(),
    ));

    // 5. Nothing was emitted before the watermark passed its end (final: its end + lateness).
    let early: Vec<String> = e
        .tables
        .windows
        .iter()
        .filter(|w| w.revision > 0 || w.is_final)
        .filter(|w| {
            let needed = if w.is_final { w.end.saturating_add(lateness) } else { w.end };
            w.emitted_at.is_none() || w.watermark_at_emit.is_none_or(|at| at < needed)
        })
        .map(|w| format!("{} {} (end {}, watermark {:?})", w.window_key, w.start, w.end, w.watermark_at_emit))
        .collect();
    checks.push(check(
        "no window was emitted before the watermark passed its end",
        few("emitted early", &early).into_iter().collect(),
        "every emission recorded a watermark at or past its end (final ones: past end + allowed lateness)".to_owned(),
    ));

    // 6. Lambda's arrival-time windows, when there are any, count by arrival.
    let arrival: Vec<_> = e.tables.arrival.iter().filter(|r| r.is_final).collect();
    let differing: Vec<String> = arrival
        .iter()
        .filter_map(|row| {
            let arrived = arrived_between(&e.records, &row.shard_id, row.start, row.end);
            (arrived != row.count)
                .then(|| format!("{} {}: {} counted, {arrived} arrived", row.window_key, row.start, row.count))
        })
        .collect();
    let fine = if arrival.is_empty() {
        "no arrival-time windows written (they need the runner's tumbling windows)".to_owned()
    } else {
        format!("{} arrival-time windows, each equal to the readings that arrived in it", arrival.len())
    };
    checks.push(check(
        "arrival-time windows equal the counts by ApproximateArrivalTimestamp",
        few("arrival windows differ", &differing).into_iter().collect(),
        fine,
    ));
    checks
}

#[derive(Serialize)]
struct VerifyReport {
    passed: bool,
    parts: Vec<Part>,
    readings: usize,
    checks: Vec<Check>,
}

pub(super) async fn verify(target: &Target, options: &VerifyOptions, out: Output) -> Result<bool> {
    let lab = Lab::connect(target, out).await?;
    let started = Instant::now();
    let spinner = output::spinner("reading the stream and the tables");
    let (evidence, checks) = loop {
        let evidence = Evidence {
            parts: lab.parts().await?,
            records: lab.stream_records().await?,
            tables: lab.tables().await?,
            settings: lab.settings.clone(),
        };
        let checks = checks(&evidence);
        if checks.iter().all(|c| c.passed) || started.elapsed() >= options.wait {
            break (evidence, checks);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    spinner.finish_and_clear();
    let passed = checks.iter().all(|c| c.passed);
    out.table(
        &format!("example-6: {} parts, regenerated from their seeds", evidence.parts.len()),
        &["check", "passed", "details"],
        checks
            .iter()
            .map(|c| vec![c.check.to_owned(), if c.passed { "yes" } else { "NO" }.to_owned(), c.details.clone()]),
    );
    let readings = evidence.parts.iter().map(|p| p.generated().len()).sum();
    out.json(&VerifyReport { passed, parts: evidence.parts, readings, checks })?;
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::example_6::part::{self, Part};
    use crate::examples::example_6::simulate::simulate;

    async fn evidence() -> Evidence {
        let settings = Settings::default();
        let part = Part::new(part::READINGS, 5, 1_800_000_000_000, 120);
        let simulated = simulate(&part, &settings, 40).await.unwrap();
        Evidence { parts: vec![part], records: simulated.records, tables: simulated.tables, settings }
    }

    fn failed(e: &Evidence) -> Vec<&'static str> {
        checks(e).into_iter().filter(|c| !c.passed).map(|c| c.check).collect()
    }

    #[tokio::test]
    async fn the_handlers_own_output_passes_and_has_stragglers() {
        let e = evidence().await;
        let all = checks(&e);
        assert!(all.iter().all(|c| c.passed), "{all:#?}");
        assert!(!e.tables.late.is_empty(), "the backlog reaches the side output");
        assert!(e.tables.windows.iter().any(|w| w.revision > 1), "and revises windows");
    }

    #[tokio::test]
    async fn a_window_count_edited_fails() {
        let mut e = evidence().await;
        let row = e.tables.windows.iter_mut().find(|w| w.kind == "tumbling-1m").unwrap();
        row.count += 1;
        assert_eq!(
            failed(&e),
            [
                "every final window equals the ground truth over the readings it accepted",
                "every reading is in exactly one of (its final window, the side output)"
            ]
        );
    }

    #[tokio::test]
    async fn a_side_output_row_removed_fails() {
        let mut e = evidence().await;
        e.tables.late.remove(0);
        let failed = failed(&e);
        assert!(
            failed.contains(&"every reading is in exactly one of (its final window, the side output)"),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn a_straggler_that_was_not_late_fails() {
        let mut e = evidence().await;
        let row = &mut e.tables.late[0];
        row.watermark = row.window_end - 1;
        assert!(failed(&e).iter().any(|c| c.starts_with("each side-output row")), "{:?}", failed(&e));
    }

    #[tokio::test]
    async fn an_early_emission_fails() {
        let mut e = evidence().await;
        let row = e.tables.windows.iter_mut().find(|w| w.is_final).unwrap();
        row.watermark_at_emit = Some(row.end - 1);
        assert_eq!(failed(&e), ["no window was emitted before the watermark passed its end"]);
    }

    #[tokio::test]
    async fn a_reading_missing_from_the_stream_or_altered_fails() {
        let mut e = evidence().await;
        let index = e.records.iter().position(|r| r.partition_key != "control").unwrap();
        e.records.remove(index);
        assert_eq!(failed(&e), ["the stream holds every reading regenerated from the seeds, once"]);
        let mut e = evidence().await;
        let record = e.records.iter_mut().find(|r| r.partition_key != "control").unwrap();
        let mut reading = match parse_record(&record.data).unwrap() {
            StreamRecord::Reading(reading) => reading,
            other => panic!("{other:?}"),
        };
        reading.value += 1;
        record.data = reading.to_bytes();
        assert_eq!(failed(&e), ["the stream holds every reading regenerated from the seeds, once"]);
    }

    #[tokio::test]
    async fn arrival_windows_must_match_arrivals() {
        let mut e = evidence().await;
        let first = &e.records[0];
        let start = first.arrival_millis - first.arrival_millis.rem_euclid(60_000);
        let expected = arrived_between(&e.records, &first.shard_id, start, start + 60_000);
        assert!(expected > 0);
        let row = arrival_windows::ArrivalRow {
            window_key: format!("arrival-1m#{}", first.shard_id),
            start,
            end: start + 60_000,
            kind: "arrival-1m".into(),
            shard_id: first.shard_id.clone(),
            count: expected,
            is_final: true,
            ..Default::default()
        };
        e.tables.arrival.push(row.clone());
        assert!(failed(&e).is_empty(), "{:?}", failed(&e));
        e.tables.arrival[0].count += 1;
        assert_eq!(failed(&e), ["arrival-time windows equal the counts by ApproximateArrivalTimestamp"]);
    }
}
