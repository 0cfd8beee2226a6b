//! Example 5's verifier: regenerates every recorded run's commands from its seed and checks the
//! event store, the rejection log, the Kinesis log and every table derived from them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use labs_core::ledger::check::{MoneyReport, RowMismatch, check_money, check_outcomes, check_rows, check_versions};
use labs_core::ledger::{Account, Command, Event, Rejection};
use serde::Serialize;

use super::rebuild::{PeakRow, peak_rows};
use super::{Lab, Log, RunSpec, VerifyOptions, distinct, money, projection_lag};
use crate::driver::dynamodb as db;
use crate::examples::scenario::few;
use crate::output::{self, Output};
use crate::target::Target;

/// Everything verify reads, at one moment.
struct Reading {
    runs: Vec<RunSpec>,
    commands: Vec<Command>,
    store: Vec<Event>,
    store_odd: Vec<String>,
    rejections: Vec<Rejection>,
    rejections_odd: Vec<String>,
    log: Log,
    balances: Rows<Account>,
    rebuilt: Rows<Account>,
    snapshots: Rows<Account>,
    compacted: Rows<Account>,
    peaks: Rows<PeakRow>,
}

struct Rows<T> {
    table: String,
    rows: Vec<T>,
    odd: Vec<String>,
}

async fn rows<T: serde::de::DeserializeOwned>(lab: &Lab<'_>, table: &str) -> Result<Rows<T>> {
    let (rows, odd) = db::scan_typed(lab.dynamodb(), table).await?;
    Ok(Rows { table: table.to_owned(), rows, odd })
}

impl Reading {
    async fn read(lab: &Lab<'_>) -> Result<Self> {
        let runs = lab.runs().await?;
        let commands = runs.iter().flat_map(|run| run.workload().commands().into_iter().cloned().collect::<Vec<_>>());
        let (store, store_odd) = lab.store_events().await?;
        let (rejections, rejections_odd) = lab.rejection_log().await?;
        Ok(Self {
            commands: commands.collect(),
            runs,
            store,
            store_odd,
            rejections,
            rejections_odd,
            log: lab.log().await?,
            balances: rows(lab, &lab.balances).await?,
            rebuilt: rows(lab, &lab.rebuilt).await?,
            snapshots: rows(lab, &lab.snapshots_table).await?,
            compacted: rows(lab, &lab.compacted).await?,
            peaks: rows(lab, &lab.peaks).await?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
struct Check {
    check: &'static str,
    passed: bool,
    details: String,
    /// Derived asynchronously (the log, the projection): may lag while the Lambdas catch up.
    #[serde(skip)]
    derived: bool,
}

fn check(check: &'static str, problems: Vec<String>, fine: String, derived: bool) -> Check {
    let passed = problems.is_empty();
    let details = if passed { fine } else { problems.join("; ") };
    Check { check, passed, details, derived }
}

fn mismatch_text(m: &RowMismatch) -> String {
    let found = format!("{} at v{} says {}", m.found.account_id, m.found.version, money(m.found.balance));
    match &m.expected {
        Some(e) => format!("{found}, the fold of its events {} ({:?})", money(e.balance), e.status),
        None => format!("{found}, but the events do not reach v{}", m.found.version),
    }
}

fn row_check(name: &'static str, rows: &Rows<Account>, events: &[Event]) -> Check {
    let mismatches = check_rows(&rows.rows, events);
    let problems: Vec<String> = [
        few(&format!("rows of {} differ from a fold", rows.table), mismatches.iter().map(mismatch_text)),
        few(&format!("unreadable rows in {}", rows.table), &rows.odd),
    ]
    .into_iter()
    .flatten()
    .collect();
    check(name, problems, format!("{} rows, each the fold of the events it covers", rows.rows.len()), false)
}

fn checks(r: &Reading) -> Vec<Check> {
    let mut checks = Vec::new();
    let versions = check_versions(&r.store);
    let gap = |(account, version): &(String, u64)| format!("{account} v{version}");
    let conflict = |(account, version, ids): &(String, u64, Vec<String>)| format!("{account} v{version} {ids:?}");
    checks.push(check(
        "event store: versions per account gap-free and unique",
        [
            few("gaps", versions.gaps.iter().map(gap)),
            few("versions held twice", versions.conflicts.iter().map(conflict)),
            few("unreadable events", &r.store_odd),
        ]
        .into_iter()
        .flatten()
        .collect(),
        format!("{} events on {} accounts", versions.events, versions.accounts),
        false,
    ));

    let log = distinct(&r.log.events);
    let log_versions = check_versions(&log);
    let ids = |events: &[Event]| -> BTreeSet<String> { events.iter().map(|e| e.event_id.clone()).collect() };
    let (in_store, in_log) = (ids(&r.store), ids(&log));
    checks.push(check(
        "Kinesis log: versions gap-free and unique, the store's events exactly",
        [
            few("gaps in the log", log_versions.gaps.iter().map(gap)),
            few("versions held twice in the log", log_versions.conflicts.iter().map(conflict)),
            few("store events missing from the log", in_store.difference(&in_log)),
            few("log events not in the store", in_log.difference(&in_store)),
            few("records that are not events", &r.log.odd),
        ]
        .into_iter()
        .flatten()
        .collect(),
        format!(
            "{} records, {} distinct events ({} redelivered by the relay)",
            r.log.events.len(),
            log.len(),
            log_versions.redelivered
        ),
        true,
    ));

    let outcomes = check_outcomes(&r.commands, &r.store, &r.rejections);
    let wrong = |(id, expected, found): &(String, Vec<String>, Vec<String>)| {
        format!("{id} touches {expected:?} but has events on {found:?}")
    };
    checks.push(check(
        "every accepted command has exactly one event per account it touches, every rejected one none",
        [
            few("commands with neither event nor rejection", &outcomes.unresolved),
            few("commands both accepted and rejected", &outcomes.accepted_and_rejected),
            few("commands with wrong events", outcomes.wrong_events.iter().map(wrong)),
            few("events or rejections of commands no recorded run issued", &outcomes.unknown),
            few("unreadable rejections", &r.rejections_odd),
        ]
        .into_iter()
        .flatten()
        .collect(),
        format!(
            "{} commands from {} recorded runs: {} accepted, {} rejected",
            outcomes.commands,
            r.runs.len(),
            outcomes.accepted,
            outcomes.rejected
        ),
        false,
    ));

    let money_report = check_money(&r.store);
    checks.push(check(
        "money is conserved: balances = deposits - withdrawals, transfers net to zero",
        money_problems(&money_report),
        format!(
            "{} deposited - {} withdrawn = {} held; {} transferred both ways",
            money(money_report.deposited as i64),
            money(money_report.withdrawn as i64),
            money(money_report.balance_total as i64),
            money(money_report.transferred_out as i64)
        ),
        false,
    ));

    let log_money = check_money(&log);
    let negative =
        |(account, version, balance): &(String, u64, i64)| format!("{account} at v{version}: {}", money(*balance));
    checks.push(check(
        "no balance ever below zero in a fold over the log",
        few("negative balances", log_money.negative.iter().map(negative)).into_iter().collect(),
        format!("{} accounts folded", log_versions.accounts),
        true,
    ));

    let rows = row_check("", &r.balances, &r.store);
    let lag = projection_lag(&r.balances.rows, &r.store);
    let behind = |(account, row, latest): &(String, u64, u64)| format!("{account} at v{row} of {latest}");
    let held: i128 = r.balances.rows.iter().map(|row| i128::from(row.balance)).sum();
    let expected = money_report.deposited as i128 - money_report.withdrawn as i128;
    let mut problems: Vec<String> = (!rows.passed).then_some(rows.details).into_iter().collect();
    problems.extend(few("accounts behind the store (or without a row)", lag.iter().map(behind)));
    // Only a projection that has caught up must hold exactly what the events say.
    if lag.is_empty() && held != expected {
        problems.push(format!(
            "the rows hold {} in all, deposits - withdrawals is {}",
            money(held as i64),
            money(expected as i64)
        ));
    }
    checks.push(check(
        "balances projection: every account at its latest version, each row the fold of its events",
        problems,
        format!("{} rows, holding {} in all", r.balances.rows.len(), money(held as i64)),
        true,
    ));
    checks.push(row_check("rebuilt projection: each row the fold of the events it covers", &r.rebuilt, &r.store));
    checks.push(row_check("snapshots: each the fold of the events it covers", &r.snapshots, &r.store));
    checks.push(row_check("compacted rows: each the fold of the events it covers", &r.compacted, &r.store));
    checks.push(peaks_check(&r.peaks, &r.store));
    checks
}

fn money_problems(report: &MoneyReport) -> Vec<String> {
    let mut problems = Vec::new();
    if report.balance_total != report.deposited as i128 - report.withdrawn as i128 {
        problems.push(format!(
            "balances total {}, but deposits - withdrawals is {}",
            money(report.balance_total as i64),
            money(report.deposited as i64 - report.withdrawn as i64)
        ));
    }
    if report.transferred_in != report.transferred_out {
        problems.push(format!(
            "{} transferred out, {} received",
            money(report.transferred_out as i64),
            money(report.transferred_in as i64)
        ));
    }
    problems.extend(few("transfers without exactly one matching side each", &report.unmatched_transfers));
    problems
}

/// Each peak row against the largest withdrawal of its month among the events it covers.
fn peaks_check(peaks: &Rows<PeakRow>, events: &[Event]) -> Check {
    let mut wrong = Vec::new();
    for row in &peaks.rows {
        let covered: Vec<Event> =
            events.iter().filter(|e| e.account_id == row.account_id && e.version <= row.covers).cloned().collect();
        let expected: BTreeMap<(String, String), PeakRow> =
            peak_rows(&covered).into_iter().map(|p| ((p.account_id.clone(), p.month.clone()), p)).collect();
        let mut want = expected.get(&(row.account_id.clone(), row.month.clone())).cloned();
        // The rows were built from the whole log, so `covers` is that account's last version then.
        if let Some(want) = want.as_mut() {
            want.covers = row.covers;
        }
        if want.as_ref() != Some(row) {
            let found = format!("{} {} says {}", row.account_id, row.month, money(row.amount as i64));
            wrong.push(match want {
                Some(want) => format!("{found}, the events say {} ({})", money(want.amount as i64), want.event_id),
                None => format!("{found}, but its events up to v{} have no withdrawal that month", row.covers),
            });
        }
    }
    let problems = [
        few(&format!("rows of {} differ from the events", peaks.table), wrong),
        few(&format!("unreadable rows in {}", peaks.table), &peaks.odd),
    ];
    check(
        "withdrawal peaks: each the largest withdrawal of its month in the events it covers",
        problems.into_iter().flatten().collect(),
        format!("{} rows", peaks.rows.len()),
        false,
    )
}

#[derive(Serialize)]
struct VerifyReport {
    runs: Vec<RunSpec>,
    commands: usize,
    events: usize,
    log_records: usize,
    checks: Vec<Check>,
    passed: bool,
}

/// Reads everything, checks it, and if only derived data (the log, the projection) is wrong,
/// gives the relay and the projector up to `options.wait` to catch up before the verdict.
pub(super) async fn verify(target: &Target, options: &VerifyOptions, out: Output) -> Result<bool> {
    let lab = Lab::connect(target, out).await?;
    let spinner = output::spinner("reading the store, the log and every table");
    let mut reading = Reading::read(&lab).await?;
    spinner.finish_and_clear();
    let derived_failing = |checks: &[Check]| checks.iter().filter(|c| c.derived && !c.passed).count();
    if derived_failing(&checks(&reading)) > 0 {
        let spinner = output::spinner("derived data differs; giving the relay and the projector time to catch up");
        db::wait_until_converged(
            options.wait,
            || async { Ok(derived_failing(&checks(&Reading::read(&lab).await?))) },
            |_| {},
        )
        .await?;
        spinner.finish_and_clear();
        tokio::time::sleep(Duration::from_millis(100)).await;
        reading = Reading::read(&lab).await?;
    }
    let checks = checks(&reading);
    let passed = checks.iter().all(|c| c.passed);
    out.table(
        &format!(
            "Verifying example-5: {} recorded runs, {} commands, {} events in {}, {} records in {}",
            reading.runs.len(),
            reading.commands.len(),
            reading.store.len(),
            lab.event_store,
            reading.log.events.len(),
            lab.stream
        ),
        &["check", "result", "details"],
        checks
            .iter()
            .map(|c| vec![c.check.to_owned(), if c.passed { "ok" } else { "FAILED" }.to_owned(), c.details.clone()]),
    );
    out.json(&VerifyReport {
        commands: reading.commands.len(),
        events: reading.store.len(),
        log_records: reading.log.events.len(),
        runs: reading.runs,
        checks,
        passed,
    })?;
    Ok(passed)
}
