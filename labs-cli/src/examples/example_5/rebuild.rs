//! Scenario rebuild: drop the projection and replay the log into a fresh table; then build a
//! projection no table of current balances could answer, from history alone.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use labs_core::ledger::projection::{by_account, largest_withdrawal_per_month};
use labs_core::ledger::{Account, Event};
use ledger_projector::{DynamoBalances, ExecuteOptions, project};
use serde::{Deserialize, Serialize};

use super::{
    CATCH_UP, EXAMPLES, Lab, RunSpec, ScenarioReport, distinct, execute_steps, money, report, tally, tally_line,
};
use crate::driver::dynamodb as db;

/// A row of the withdrawal-peaks table: the largest withdrawal of an account in a month, and
/// the account version the table was built up to (so `verify` folds exactly those events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PeakRow {
    pub account_id: String,
    /// `YYYY-MM`.
    pub month: String,
    pub amount: u64,
    pub event_id: String,
    pub version: u64,
    pub covers: u64,
}

/// The peaks of `events` (distinct), each row marked with its account's last version.
pub(super) fn peak_rows(events: &[Event]) -> Vec<PeakRow> {
    let latest: BTreeMap<&str, u64> =
        by_account(events).into_iter().map(|(id, h)| (id, h.last().map_or(0, |e| e.version))).collect();
    largest_withdrawal_per_month(events)
        .into_values()
        .map(|w| PeakRow {
            covers: latest.get(w.account_id.as_str()).copied().unwrap_or(0),
            account_id: w.account_id,
            month: w.month,
            amount: w.amount,
            event_id: w.event_id,
            version: w.version,
        })
        .collect()
}

#[derive(Serialize)]
struct RebuildReport {
    commands: usize,
    log_records: usize,
    distinct_events: usize,
    rebuilt_rows: usize,
    live_rows: usize,
    identical: bool,
    differing_accounts: Vec<String>,
    peaks: Vec<PeakRow>,
}

pub(super) async fn rebuild(lab: &Lab<'_>, run: &RunSpec) -> Result<ScenarioReport> {
    let out = lab.out;
    let workload = run.workload();
    out.say(format!("1. A workload of {} commands, so this run's accounts have a history", workload.commands().len()));
    let ran = execute_steps(lab, &workload.steps, |_| ExecuteOptions::default(), "executing commands").await?;
    let counts = tally(&ran);
    out.say(tally_line(&counts));
    let caught_up = lab.wait_for_projection(CATCH_UP).await?;

    out.say(format!(
        "2. Dropping the projection: {} emptied. Then the Kinesis log is read from TRIM_HORIZON, every shard,\n   \
         and folded into it by the projector's own code (the same `project` the Lambda runs).",
        lab.rebuilt
    ));
    db::clear(lab.dynamodb(), &lab.rebuilt).await?;
    let records = lab.read_log().await?.events;
    let events = distinct(&records);
    let rebuilt_store = DynamoBalances::new(lab.dynamodb().clone(), &lab.rebuilt);
    project(&rebuilt_store, &events).await?;
    let (rebuilt, _) = lab.states(&lab.rebuilt).await?;
    let (live, _) = lab.states(&lab.balances).await?;
    let by_id = |rows: &[Account]| -> BTreeMap<String, Account> {
        rows.iter().map(|r| (r.account_id.clone(), r.clone())).collect()
    };
    let (rebuilt_rows, live_rows) = (by_id(&rebuilt), by_id(&live));
    let differing: Vec<String> = rebuilt_rows
        .keys()
        .chain(live_rows.keys())
        .filter(|id| rebuilt_rows.get(*id) != live_rows.get(*id))
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    let identical = differing.is_empty();
    out.table(
        &format!(
            "   {} log records ({} distinct events; the rest are the relay's redeliveries) rebuilt {} rows",
            records.len(),
            events.len(),
            rebuilt_rows.len()
        ),
        &["account", "live: version, balance", "rebuilt: version, balance", "same"],
        workload.accounts.iter().take(EXAMPLES).map(|id| {
            let show =
                |row: Option<&Account>| row.map_or("-".to_owned(), |r| format!("v{}, {}", r.version, money(r.balance)));
            vec![
                id.clone(),
                show(live_rows.get(id)),
                show(rebuilt_rows.get(id)),
                if live_rows.get(id) == rebuilt_rows.get(id) { "yes" } else { "NO" }.to_owned(),
            ]
        }),
    );
    out.say(if identical {
        "   Identical, row for row: the projection is derived data. Lose it, change its code, and replay the log."
            .to_owned()
    } else {
        format!("   {} accounts differ: {}", differing.len(), differing.join(", "))
    });

    out.say(format!(
        "3. A new question: for each account and month, the largest withdrawal. A table of current balances cannot\n   \
         answer it (each write overwrote the last), but the log still holds every withdrawal. Built into {}:",
        lab.peaks
    ));
    db::clear(lab.dynamodb(), &lab.peaks).await?;
    let peaks = peak_rows(&events);
    for row in &peaks {
        db::put(lab.dynamodb(), &lab.peaks, row).await?;
    }
    let mine: Vec<&PeakRow> = peaks.iter().filter(|p| workload.accounts.contains(&p.account_id)).collect();
    out.table(
        "",
        &["account", "month", "largest withdrawal", "event (version)"],
        mine.iter().take(2 * EXAMPLES).map(|p| {
            vec![
                p.account_id.clone(),
                p.month.clone(),
                money(p.amount as i64),
                format!("{} (v{})", p.event_id, p.version),
            ]
        }),
    );

    let mut problems = Vec::new();
    if caught_up.is_none() {
        problems.push(format!("the projection did not catch up within {} s", CATCH_UP.as_secs()));
    }
    if !identical {
        problems.push(format!("the rebuilt projection differs from the live one for {}", differing.join(", ")));
    }
    report(
        "rebuild",
        run.seed,
        problems,
        RebuildReport {
            commands: counts.commands,
            log_records: records.len(),
            distinct_events: events.len(),
            rebuilt_rows: rebuilt_rows.len(),
            live_rows: live_rows.len(),
            identical,
            differing_accounts: differing,
            peaks: mine.into_iter().cloned().collect(),
        },
    )
}
