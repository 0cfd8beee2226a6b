//! Scenario snapshot: commands load an account from its latest snapshot plus the events after
//! it, instead of its whole history; the result equals a full replay.

use anyhow::Result;
use ledger_projector::{ExecuteOptions, NoSnapshots, load_account};
use serde::Serialize;

use super::{EXAMPLES, Lab, Ran, RunSpec, ScenarioReport, execute_steps, money, report, tally, tally_line};
use crate::output;

/// A snapshot every this many events of an account.
const SNAPSHOT_EVERY: u64 = 5;

#[derive(Serialize)]
struct SnapshotReport {
    commands: usize,
    snapshot_every: u64,
    snapshots_written: usize,
    /// Over every command's loads: events read from the store, and what full replays would read.
    events_read: usize,
    events_read_without_snapshots: usize,
    accounts: Vec<AccountLoad>,
}

#[derive(Serialize)]
struct AccountLoad {
    account_id: String,
    version: u64,
    snapshot_version: u64,
    events_read: usize,
    events_read_without_snapshots: usize,
    equal: bool,
}

pub(super) async fn snapshot(lab: &Lab<'_>, run: &RunSpec) -> Result<ScenarioReport> {
    let out = lab.out;
    let workload = run.workload();
    out.say(format!(
        "1. {} commands; after each append, an account that gained {SNAPSHOT_EVERY} events since its last snapshot gets a new\n   \
         one in {} (its state and the version it covers). Each command loads snapshot + tail: the events after it.",
        workload.commands().len(),
        lab.snapshots_table
    ));
    let options = |_| ExecuteOptions { snapshot_every: SNAPSHOT_EVERY, ..ExecuteOptions::default() };
    let ran = execute_steps(lab, &workload.steps, options, "executing commands").await?;
    out.say(tally_line(&tally(&ran)));
    let executions: Vec<_> = ran.iter().flat_map(Ran::executions).collect();
    let snapshots_written: usize = executions.iter().map(|e| e.snapshots_written).sum();
    let loads = executions.iter().flat_map(|e| e.loads.iter().map(|(_, stats)| stats));
    let (read, full) = loads.fold((0, 0), |(read, full), stats| {
        (read + stats.events_read, full + stats.events_read + stats.snapshot_version as usize)
    });
    out.say(format!(
        "   {snapshots_written} snapshots written. The commands' loads read {read} events from the store; full replays would have read {full}."
    ));

    out.say("2. Loading each account both ways now: snapshot + tail, and the whole history from version 1");
    let bar = output::progress(workload.accounts.len() as u64, "loading accounts");
    let mut accounts = Vec::new();
    for id in &workload.accounts {
        let with = load_account(&lab.store, &lab.snapshots, id).await?;
        let without = load_account(&lab.store, &NoSnapshots, id).await?;
        accounts.push((
            AccountLoad {
                account_id: id.clone(),
                version: with.state.version,
                snapshot_version: with.stats.snapshot_version,
                events_read: with.stats.events_read,
                events_read_without_snapshots: without.stats.events_read,
                equal: with.state == without.state,
            },
            with.state.balance,
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.table(
        "",
        &["account", "version", "snapshot at", "events read", "full replay reads", "balance", "same state"],
        accounts.iter().take(EXAMPLES).map(|(a, balance)| {
            vec![
                a.account_id.clone(),
                a.version.to_string(),
                format!("v{}", a.snapshot_version),
                a.events_read.to_string(),
                a.events_read_without_snapshots.to_string(),
                money(*balance),
                if a.equal { "yes" } else { "NO" }.to_owned(),
            ]
        }),
    );
    out.say(
        "   A snapshot is a cache of a fold, not a new truth: it can be thrown away and taken again from the events,\n   \
         and `labs verify` checks each one against a fold of the events it covers.",
    );
    let accounts: Vec<AccountLoad> = accounts.into_iter().map(|(a, _)| a).collect();
    let mut problems = Vec::new();
    if let Some(differs) = accounts.iter().find(|a| !a.equal) {
        problems.push(format!("{}: snapshot + tail differs from a full replay", differs.account_id));
    }
    if snapshots_written == 0 {
        problems.push("no snapshot was taken".to_owned());
    }
    report(
        "snapshot",
        run.seed,
        problems,
        SnapshotReport {
            commands: executions.len(),
            snapshot_every: SNAPSHOT_EVERY,
            snapshots_written,
            events_read: read,
            events_read_without_snapshots: full,
            accounts,
        },
    )
}
