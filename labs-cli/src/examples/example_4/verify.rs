//! Example 4's verifier. From the stream, the tables and the failure queue, with the purchases
//! regenerated from the parts recorded on the stream:
//! - every produced event is either counted exactly once (a dedup row, and in `total`/`count`)
//!   or named by exactly one failure record (its shard and sequence range, fetched back from
//!   the stream), never both, never neither;
//! - per user, `total`/`count` equal the events counted;
//! - per user, `naive_total`/`naive_count` equal what the invocations table says was delivered:
//!   the truth plus exactly the redeliveries it shows.
//!
//! The failure queue is only peeked at: its messages become visible again at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use labs_core::purchases::{self, Purchase, TotalMismatch, UserTotal};
use serde::Serialize;

use super::{
    Deliveries, FailureRecord, Names, Observed, Produced, StreamCopy, by_request, peek_failures, recorded_parts,
};
use crate::driver::dynamodb as db;
use crate::examples::VerifyOptions;
use crate::output::{self, Output};
use crate::target::Target;

#[derive(Debug, Serialize)]
struct VerifyReport {
    parts: Vec<Produced>,
    produced: usize,
    counted: usize,
    discarded: usize,
    failure_records: usize,
    /// Failure queue messages that are not on-failure records.
    unreadable_failure_records: Vec<String>,
    /// Produced events the stream does not hold.
    not_in_stream: Vec<String>,
    /// Neither counted nor named by a failure record.
    lost: Vec<String>,
    counted_and_discarded: Vec<String>,
    named_more_than_once: Vec<String>,
    /// Dedup rows for events no recorded part produced.
    counted_not_produced: Vec<String>,
    total_mismatches: Vec<TotalMismatch>,
    naive_mismatches: Vec<TotalMismatch>,
    /// Sum of naive_count minus sum of count.
    naive_excess: i64,
    /// Naive increments the invocations table shows, minus the events counted.
    redelivered: i64,
    /// Naive increments of batches of a split shard that the data does not name by record.
    unattributed_naive: usize,
    passed: bool,
}

fn sample(ids: &[String]) -> String {
    let shown: Vec<&str> = ids.iter().take(4).map(String::as_str).collect();
    format!("{}{}", shown.join(", "), if ids.len() > 4 { ", ..." } else { "" })
}

pub(super) async fn verify(target: &Target, options: &VerifyOptions, out: Output) -> Result<bool> {
    let names = Names::of(target);
    db::describe_table(&target.clients.dynamodb, &names.totals, "example-4").await?;
    let started = Instant::now();
    let spinner = output::spinner("checking");
    let report = loop {
        let report = check(target, &names).await?;
        // The processor may still be working: a difference only counts once it has lasted.
        if report.passed || started.elapsed() >= options.wait {
            break report;
        }
        spinner.set_message(format!("not settled yet ({} events open); waiting", report.lost.len()));
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    spinner.finish_and_clear();
    show(&report, &names, out);
    out.json(&report)?;
    Ok(report.passed)
}

async fn check(target: &Target, names: &Names) -> Result<VerifyReport> {
    let parts = recorded_parts(target, &names.events).await?;
    let mut produced: Vec<Purchase> = Vec::new();
    for part in &parts {
        produced.extend(part.events()?);
    }
    let observed = Observed::read(target, names).await?;
    let stream = StreamCopy::read(target, names).await?;
    let peeked = peek_failures(target, names).await?;
    let unreadable: Vec<String> = peeked.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    let failures: Vec<FailureRecord> = peeked.into_iter().flatten().collect();

    let mut not_in_stream = Vec::new();
    let mut lost = Vec::new();
    let mut counted_and_discarded = Vec::new();
    let mut named_more_than_once = Vec::new();
    let mut discarded = BTreeSet::new();
    for event in &produced {
        let Some(places) = stream.located.get(&event.event_id) else {
            not_in_stream.push(event.event_id.clone());
            continue;
        };
        let named = failures.iter().filter(|f| places.iter().any(|(shard, seq)| f.covers(shard, seq))).count();
        let counted = observed.applied.contains_key(&event.event_id);
        match (counted, named) {
            (true, 0) => {}
            (false, 1) => {
                discarded.insert(event.event_id.clone());
            }
            (false, 0) => lost.push(event.event_id.clone()),
            (true, _) => counted_and_discarded.push(event.event_id.clone()),
            (false, _) => named_more_than_once.push(event.event_id.clone()),
        }
    }
    let produced_ids: BTreeSet<&str> = produced.iter().map(|e| e.event_id.as_str()).collect();
    let counted_not_produced: Vec<String> =
        observed.applied.keys().filter(|id| !produced_ids.contains(id.as_str())).cloned().collect();

    let expected = purchases::expected_totals(&produced, &discarded);
    let found: BTreeMap<String, UserTotal> = observed
        .totals
        .values()
        .filter(|row| row.count > 0 || row.total > 0)
        .map(|row| (row.user_id.clone(), UserTotal { total: row.total, count: row.count }))
        .collect();
    let total_mismatches = purchases::compare_totals(&expected, &found);

    // What the invocations say was delivered with a naive increment.
    let requests = by_request(&observed.applied);
    let mut delivered: Vec<Purchase> = Vec::new();
    let mut unattributed_naive = 0;
    for invocation in &observed.invocations {
        match stream.naive_deliveries(invocation, &requests) {
            Deliveries::Known(events) => delivered.extend(events),
            Deliveries::Unattributed(n) => unattributed_naive += n,
        }
    }
    let naive_found: BTreeMap<String, UserTotal> = observed
        .totals
        .values()
        .filter(|row| row.naive_count > 0)
        .map(|row| (row.user_id.clone(), UserTotal { total: row.naive_total, count: row.naive_count }))
        .collect();
    let naive_count: u64 = naive_found.values().map(|t| t.count).sum();
    let naive_mismatches = if unattributed_naive == 0 {
        purchases::compare_totals(&purchases::delivered_totals(&delivered), &naive_found)
    } else {
        // Without per-record attribution only the sum can be checked.
        let shown = (delivered.len() + unattributed_naive) as u64;
        if shown == naive_count {
            vec![]
        } else {
            vec![TotalMismatch {
                user_id: "(all users)".into(),
                expected: UserTotal { total: 0, count: shown },
                found: UserTotal { total: 0, count: naive_count },
            }]
        }
    };
    let count: u64 = found.values().map(|t| t.count).sum();
    let counted = produced.iter().filter(|e| observed.applied.contains_key(&e.event_id)).count();
    let passed = unreadable.is_empty()
        && not_in_stream.is_empty()
        && lost.is_empty()
        && counted_and_discarded.is_empty()
        && named_more_than_once.is_empty()
        && counted_not_produced.is_empty()
        && total_mismatches.is_empty()
        && naive_mismatches.is_empty();
    Ok(VerifyReport {
        parts,
        produced: produced.len(),
        counted,
        discarded: discarded.len(),
        failure_records: failures.len(),
        unreadable_failure_records: unreadable,
        not_in_stream,
        lost,
        counted_and_discarded,
        named_more_than_once,
        counted_not_produced,
        total_mismatches,
        naive_mismatches,
        naive_excess: naive_count as i64 - count as i64,
        redelivered: (delivered.len() + unattributed_naive) as i64 - counted as i64,
        unattributed_naive,
        passed,
    })
}

fn show(report: &VerifyReport, names: &Names, out: Output) {
    let ok = |good: bool| if good { "ok" } else { "FAILED" }.to_owned();
    let users = |m: &[TotalMismatch]| {
        m.iter()
            .take(3)
            .map(|m| {
                format!(
                    "{}: {}/{} expected, {}/{} found",
                    m.user_id, m.expected.total, m.expected.count, m.found.total, m.found.count
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    out.table(
        &format!(
            "Verifying {}: {} events from {} recorded parts; {} counted, {} discarded ({} failure records)",
            names.totals,
            report.produced,
            report.parts.len(),
            report.counted,
            report.discarded,
            report.failure_records
        ),
        &["check", "result", "details"],
        [
            vec![
                "every produced event is in the stream".into(),
                ok(report.not_in_stream.is_empty()),
                sample(&report.not_in_stream),
            ],
            vec![
                "every event is counted or named by a failure record".into(),
                ok(report.lost.is_empty()),
                format!("{} neither: {}", report.lost.len(), sample(&report.lost)),
            ],
            vec![
                "no event is both counted and discarded".into(),
                ok(report.counted_and_discarded.is_empty()),
                sample(&report.counted_and_discarded),
            ],
            vec![
                "no event is named by two failure records".into(),
                ok(report.named_more_than_once.is_empty()),
                sample(&report.named_more_than_once),
            ],
            vec![
                "the failure queue holds only on-failure records".into(),
                ok(report.unreadable_failure_records.is_empty()),
                sample(&report.unreadable_failure_records),
            ],
            vec![
                "nothing counted that was not produced".into(),
                ok(report.counted_not_produced.is_empty()),
                sample(&report.counted_not_produced),
            ],
            vec![
                "total/count per user = each event once".into(),
                ok(report.total_mismatches.is_empty()),
                users(&report.total_mismatches),
            ],
            vec![
                "naive_* per user = what the invocations delivered".into(),
                ok(report.naive_mismatches.is_empty()),
                format!(
                    "naive over-count {}, redeliveries shown {}{}",
                    report.naive_excess,
                    report.redelivered,
                    if report.naive_mismatches.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", users(&report.naive_mismatches))
                    }
                ),
            ],
        ],
    );
    out.say(if report.passed { "PASSED" } else { "FAILED" });
}
