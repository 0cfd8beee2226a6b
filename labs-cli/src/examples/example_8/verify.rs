//! Example 8's verifier. From the outputs, with inputs regenerated from the seeds recorded on
//! the streams: each join equals the reference join computed here over the same inputs (the
//! window join with its unmatched searches; the enrichment as of each order's event time, in
//! every pass, so a replay answers the same; the timelines equal to the batch join of the two
//! tables as they are), and the window join's state is bounded (no session row past its
//! window, no event dropped as late).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use labs_core::join::clicks::generate;
use labs_core::join::profiles::{Order, reference_enrichment};
use labs_core::join::window::{JoinRow, reference_of};
use serde::Serialize;

use super::data::{SocialTables, WindowState, enriched_rows, window_rows};
use super::enrichment::data_of;
use super::window_join::{rows_of, spec_of};
use super::{Names, WINDOW_MS, enrich_runs, window_runs};
use crate::driver::dynamodb as db;
use crate::examples::VerifyOptions;
use crate::output::Output;
use crate::target::Target;

#[derive(Debug, Clone, Serialize)]
struct Check {
    what: String,
    passed: bool,
    details: String,
}

fn check(what: &str, passed: bool, details: impl Into<String>) -> Check {
    Check { what: what.to_owned(), passed, details: details.into() }
}

fn short<T: std::fmt::Debug>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(3).map(|i| format!("{i:?}")).collect();
    format!("{}{}", shown.join("; "), if items.len() > 3 { "; ..." } else { "" })
}

async fn window_checks(target: &Target, names: &Names) -> Result<Vec<Check>> {
    let runs = window_runs(target, names).await?;
    if runs.is_empty() {
        return Ok(vec![check("window join", true, "not run yet")]);
    }
    let (rows, odd) = window_rows(target, names).await?;
    let state = WindowState::read(target, names).await?;
    let (mut missing, mut extra): (Vec<JoinRow>, Vec<JoinRow>) = (Vec::new(), Vec::new());
    let mut expected_rows = 0;
    let mut sessions_left = Vec::new();
    for run in &runs {
        let stream = generate(&spec_of(run));
        let expected = reference_of(&stream, WINDOW_MS);
        let got = rows_of(&rows, &stream);
        expected_rows += expected.len();
        missing.extend(expected.difference(&got).cloned());
        extra.extend(got.difference(&expected).cloned());
        let sessions: BTreeSet<&str> = stream.searches.iter().map(|s| s.session_id.as_str()).collect();
        sessions_left.extend(
            state
                .sessions
                .iter()
                .filter(|(s, _)| sessions.contains(s.session_id.as_str()))
                .map(|(s, _)| s.session_id.clone()),
        );
    }
    let overdue: Vec<String> = state.overdue().iter().map(|s| s.session_id.clone()).collect();
    let late: u64 = state.clocks.iter().map(|c| c.late).sum();
    let peak = state.clocks.iter().map(|c| c.peak_buffered).max().unwrap_or(0);
    Ok(vec![
        check(
            "window join = reference join (each search with its clicks in 10 s, or no click)",
            missing.is_empty() && extra.is_empty() && odd.is_empty(),
            format!(
                "{} runs, {expected_rows} rows expected; {} missing {}; {} extra {}{}",
                runs.len(),
                missing.len(),
                short(&missing),
                extra.len(),
                short(&extra),
                if odd.is_empty() { String::new() } else { format!("; {} unreadable rows", odd.len()) }
            ),
        ),
        check(
            "join state bounded: nothing kept past its window",
            overdue.is_empty() && sessions_left.is_empty(),
            format!(
                "{} session rows left of finished runs, {} past their expiry; peak {peak} buffered events",
                sessions_left.len(),
                overdue.len()
            ),
        ),
        check("no search or click dropped as late", late == 0, format!("{late} late")),
    ])
}

async fn enrichment_checks(target: &Target, names: &Names) -> Result<Vec<Check>> {
    let runs = enrich_runs(target, names).await?;
    if runs.is_empty() {
        return Ok(vec![check("enrichment", true, "not run yet")]);
    }
    let (rows, odd) = enriched_rows(target, names).await?;
    let mut wrong = Vec::new();
    let mut missing = Vec::new();
    let mut replayed = 0;
    let mut replay_differs = Vec::new();
    let mut naive_changed = 0;
    for run in &runs {
        let data = data_of(run);
        let orders: Vec<Order> = data.orders().cloned().collect();
        let reference = reference_enrichment(&orders, data.versions());
        for pass in 1..=run.passes {
            for expected in &reference {
                let Some(row) = rows.iter().find(|r| r.order_id == expected.order_id && r.pass == pass) else {
                    missing.push(format!("{} pass {pass}", expected.order_id));
                    continue;
                };
                if row.versioned_address != expected.address || row.versioned_valid_from != expected.valid_from {
                    wrong.push(format!(
                        "{} pass {pass}: {:?}, expected {:?}",
                        row.order_id, row.versioned_address, expected.address
                    ));
                }
                if pass > 1 {
                    let first = rows.iter().find(|r| r.order_id == expected.order_id && r.pass == 1);
                    if first.is_some_and(|f| f.versioned_address != row.versioned_address) {
                        replay_differs.push(row.order_id.clone());
                    }
                    naive_changed += usize::from(first.is_some_and(|f| f.latest_address != row.latest_address));
                }
            }
        }
        replayed += usize::from(run.passes > 1);
    }
    let mut checks = vec![check(
        "enrichment as of each order's event time (versioned), every pass",
        wrong.is_empty() && missing.is_empty() && odd.is_empty(),
        format!(
            "{} runs; {} wrong {}; {} missing {}",
            runs.len(),
            wrong.len(),
            short(&wrong),
            missing.len(),
            short(&missing)
        ),
    )];
    checks.push(if replayed == 0 {
        check("replay gives the same versioned result", true, "not replayed yet (--scenario replay)")
    } else {
        check(
            "replay gives the same versioned result",
            replay_differs.is_empty(),
            format!(
                "{replayed} runs replayed; {} orders differ; the naive join changed {naive_changed}",
                replay_differs.len()
            ),
        )
    });
    Ok(checks)
}

async fn timeline_checks(target: &Target, names: &Names) -> Result<Vec<Check>> {
    let tables = SocialTables::read(target, names).await?;
    if tables.posts.is_empty() && tables.follows.is_empty() && tables.timelines.is_empty() {
        return Ok(vec![check("timelines", true, "not run yet")]);
    }
    let (missing, extra) = tables.diff();
    Ok(vec![check(
        "timelines = batch join of posts and follows",
        missing.is_empty() && extra.is_empty() && tables.odd.is_empty(),
        format!(
            "{} posts, {} follows, {} entries; {} missing {}; {} extra {}",
            tables.posts.len(),
            tables.follows.len(),
            tables.timelines.len(),
            missing.len(),
            short(&missing),
            extra.len(),
            short(&extra)
        ),
    )])
}

async fn all_checks(target: &Target, names: &Names) -> Result<Vec<Check>> {
    let mut checks = window_checks(target, names).await?;
    checks.extend(enrichment_checks(target, names).await?);
    checks.extend(timeline_checks(target, names).await?);
    Ok(checks)
}

pub(super) async fn verify(target: &Target, options: &VerifyOptions, out: Output) -> Result<bool> {
    let names = Names::of(target);
    db::describe_table(&target.clients.dynamodb, &names.window_state, "example-8").await?;
    // The joins are asynchronous: a difference is final once it outlived the grace period.
    let started = Instant::now();
    let mut checks = all_checks(target, &names).await?;
    while checks.iter().any(|c| !c.passed) && started.elapsed() < options.wait {
        tokio::time::sleep(Duration::from_millis(500)).await;
        checks = all_checks(target, &names).await?;
    }
    if checks.iter().all(|c| c.details.starts_with("not ")) {
        bail!("nothing to verify: `labs run example-8` first");
    }
    let passed = checks.iter().all(|c| c.passed);
    out.table(
        "Verifying example-8 from its tables, inputs regenerated from the recorded seeds:",
        &["check", "result", "details"],
        checks.iter().map(|c| vec![c.what.clone(), if c.passed { "ok" } else { "FAILED" }.into(), c.details.clone()]),
    );
    out.json(&serde_json::json!({ "checks": checks, "passed": passed }))?;
    Ok(passed)
}
