//! Scenario evolve: events written in two shapes (v1 by an "old writer", then v2) live side by
//! side in the store and the log forever; the projector and every replay upcast both.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use labs_core::ledger::projection::balances;
use labs_core::ledger::{Schema, StoredEvent};
use ledger_projector::ExecuteOptions;
use serde::Serialize;

use super::{
    CATCH_UP, EXAMPLES, Lab, RunSpec, ScenarioReport, distinct, execute_steps, money, of_run, report, tally, tally_line,
};

#[derive(Serialize)]
struct EvolveReport {
    commands: usize,
    v1_events: usize,
    v2_events: usize,
    v1_example: Option<String>,
    v2_example: Option<String>,
    caught_up_seconds: Option<f64>,
    /// Accounts whose projection row differs from a replay of the log.
    differing_accounts: Vec<String>,
}

pub(super) async fn evolve(lab: &Lab<'_>, run: &RunSpec) -> Result<ScenarioReport> {
    let out = lab.out;
    let workload = run.workload();
    let half = workload.steps.len() / 2;
    out.say(format!(
        "1. {} commands: the first half written by an old writer in the v1 shape (`amount_cents`, currency implied),\n   \
         the rest in v2 (`amount: {{cents, currency}}`, `schema: 2`). Nothing is migrated: events are immutable.",
        workload.commands().len()
    ));
    let schema = |n: usize| if n < half { Schema::V1 } else { Schema::V2 };
    let options = |n| ExecuteOptions { schema: schema(n), ..ExecuteOptions::default() };
    let ran = execute_steps(lab, &workload.steps, options, "executing commands").await?;
    out.say(tally_line(&tally(&ran)));

    let accounts: BTreeSet<&str> =
        workload.accounts.iter().map(String::as_str).chain([workload.closed_account.as_str()]).collect();
    let rows: Vec<StoredEvent> =
        lab.stored_rows().await?.into_iter().filter(|r| accounts.contains(r.account_id.as_str())).collect();
    let count = |n| rows.iter().filter(|r| r.schema == n).count();
    let (v1, v2) = (count(1), count(2));
    let example =
        |n: u32| rows.iter().find(|r| r.schema == n && r.event_type == "MoneyDeposited").map(|r| r.body.clone());
    let (v1_example, v2_example) = (example(1), example(2));
    out.table(
        &format!("   The store holds {v1} v1 and {v2} v2 events of this run; a deposit in each shape:"),
        &["shape", "as stored and as published to Kinesis"],
        [
            vec!["v1".to_owned(), v1_example.clone().unwrap_or_default()],
            vec!["v2".to_owned(), v2_example.clone().unwrap_or_default()],
        ],
    );

    out.say(
        "2. The projector decodes both through one upcaster (v1 -> the current shape) before folding; waiting for it,\n   \
         then replaying the whole log the same way and comparing.",
    );
    let caught_up = lab.wait_for_projection(CATCH_UP).await?;
    let records = lab.read_log().await?.events;
    let log = distinct(&records);
    let replayed = balances(of_run(&log, &workload))?;
    let (live, _) = lab.states(&lab.balances).await?;
    let live: BTreeMap<&str, _> = live.iter().map(|r| (r.account_id.as_str(), r)).collect();
    let shapes = |id: &str, n: u32| rows.iter().filter(|r| r.account_id == id && r.schema == n).count();
    out.table(
        "",
        &["account", "v1 events", "v2 events", "projection", "replay of the log", "same"],
        workload.accounts.iter().take(EXAMPLES).map(|id| {
            let projected = live.get(id.as_str()).map(|r| (r.version, r.balance));
            let replay = replayed.get(id).map(|r| (r.version, r.balance));
            let show =
                |v: Option<(u64, i64)>| v.map_or("-".to_owned(), |(version, b)| format!("v{version}, {}", money(b)));
            vec![
                id.clone(),
                shapes(id, 1).to_string(),
                shapes(id, 2).to_string(),
                show(projected),
                show(replay),
                if projected == replay { "yes" } else { "NO" }.to_owned(),
            ]
        }),
    );
    let differing: Vec<String> =
        replayed.iter().filter(|(id, state)| live.get(id.as_str()) != Some(state)).map(|(id, _)| id.clone()).collect();
    out.say(
        "   Old events keep their shape forever; readers carry the upcaster. A change that cannot be upcast (a new\n   \
         meaning, not a new spelling) needs a new event type instead.",
    );
    let mut problems = Vec::new();
    if v1 == 0 || v2 == 0 {
        problems.push(format!("expected events in both shapes, found {v1} v1 and {v2} v2"));
    }
    if caught_up.is_none() {
        problems.push(format!("the projection did not catch up within {} s", CATCH_UP.as_secs()));
    } else if !differing.is_empty() {
        problems.push(format!("the projection differs from a replay of the log for {}", differing.join(", ")));
    }
    report(
        "evolve",
        run.seed,
        problems,
        EvolveReport {
            commands: workload.commands().len(),
            v1_events: v1,
            v2_events: v2,
            v1_example,
            v2_example,
            caught_up_seconds: caught_up.map(|d| d.as_secs_f64()),
            differing_accounts: differing,
        },
    )
}
