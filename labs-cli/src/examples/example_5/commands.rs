//! Scenario commands: accepted, rejected and racing commands against the event store; beside it,
//! the same workload as read-modify-write on a plain CRUD table, which loses updates.

use std::collections::BTreeMap;

use anyhow::Result;
use labs_core::ledger::projection::balances;
use labs_core::ledger::workload::Step;
use labs_core::ledger::{Account, Action, Command, decide, evolve};
use ledger_projector::{ExecuteOptions, Execution, Outcome};
use serde::Serialize;

use super::{CATCH_UP, tally_line};
use super::{
    EXAMPLES, Lab, Ran, RunSpec, ScenarioReport, Tally, describe, execute_steps, money, of_run, report, tally,
};
use crate::driver::dynamodb as db;
use crate::output;

#[derive(Serialize)]
struct CommandsReport {
    #[serde(flatten)]
    tally: Tally,
    /// Per race: the account, and how the command that lost ended after its retry.
    race_outcomes: Vec<RaceRow>,
    /// Accounts whose CRUD balance differs from the event-sourced one, with the command lost.
    lost_updates: Vec<LostUpdate>,
    caught_up_seconds: Option<f64>,
}

#[derive(Serialize)]
struct RaceRow {
    account_id: String,
    winner: String,
    loser: String,
    conflict_at_version: u64,
    loser_outcome: String,
}

#[derive(Serialize)]
struct LostUpdate {
    account_id: String,
    /// The command whose write was overwritten, and the one that overwrote it.
    erased: String,
    by: String,
    consequence: String,
}

pub(super) async fn commands(lab: &Lab<'_>, run: &RunSpec) -> Result<ScenarioReport> {
    let out = lab.out;
    let workload = run.workload();
    out.say(format!(
        "1. {} commands on {} accounts, each loaded, decided against the account's current state and, if accepted,\n   \
         appended as events with a conditional put on the next version. Watch the rejections (with the version\n   \
         they were checked against) and the races: both commands load the same version, only one append gets in.",
        workload.commands().len(),
        workload.accounts.len() + 1
    ));
    let ran = execute_steps(lab, &workload.steps, |_| ExecuteOptions::default(), "executing commands").await?;
    let counts = tally(&ran);
    out.say(tally_line(&counts));

    let rejections: Vec<&Execution> = ran
        .iter()
        .flat_map(Ran::executions)
        .filter(|e| matches!(e.outcome, Outcome::Rejected { .. }) && e.conflicts.is_empty())
        .collect();
    let commands: BTreeMap<&str, &Command> =
        workload.commands().into_iter().map(|c| (c.command_id.as_str(), c)).collect();
    out.table(
        "   Rejected commands: logged with the reason and the version of the state that refused them; no event",
        &["command", "what", "checked at version", "reason"],
        rejections.iter().take(EXAMPLES).map(|e| {
            let Outcome::Rejected { rejection } = &e.outcome else { unreachable!("filtered above") };
            vec![
                e.command_id.clone(),
                commands.get(e.command_id.as_str()).map_or_else(String::new, |c| describe(c)),
                rejection.checked_version.to_string(),
                rejection.reason.to_string(),
            ]
        }),
    );

    let races = race_rows(&ran);
    out.table(
        "   Races: two commands on one account at once. The loser's append hit a taken version; it reloaded and decided again",
        &["account", "won", "lost (conflict at version)", "after reload"],
        races.iter().take(EXAMPLES).map(|r| {
            vec![
                r.account_id.clone(),
                r.winner.clone(),
                format!("{} (v{})", r.loser, r.conflict_at_version),
                r.loser_outcome.clone(),
            ]
        }),
    );

    out.say(format!(
        "2. The same workload as read-modify-write on the plain table {}: read the row, check, write the new\n   \
         balance back, no version condition. A race there is both commands reading before either writes.",
        lab.crud
    ));
    let crud = run_crud(lab, &workload.steps).await?;
    let (events, _) = lab.store_events().await?;
    let truth = balances(of_run(&events, &workload))?;
    out.table(
        "   Lost updates: both commands of each race were told \"accepted\", but the second write replaced the first",
        &["account", "erased", "by", "consequence"],
        crud.lost
            .iter()
            .take(EXAMPLES)
            .map(|l| vec![l.account_id.clone(), l.erased.clone(), l.by.clone(), l.consequence.clone()]),
    );
    let differing =
        truth.iter().filter(|(id, state)| crud.rows.get(id.as_str()).map(|r| r.balance) != Some(state.balance));
    out.say(format!(
        "   {} of {} accounts end with a different balance in the CRUD table. The event store refused the second\n   \
         append of every race instead (optimistic concurrency), and the loser decided again on the new state.",
        differing.count(),
        truth.len()
    ));

    out.say("3. Waiting for the balances projection: store -> DynamoDB stream -> relay -> Kinesis -> projector");
    let caught_up = lab.wait_for_projection(CATCH_UP).await?;
    match caught_up {
        Some(took) => {
            out.say(format!("   The projection covers every event in the store ({:.1} s).", took.as_secs_f64()))
        }
        None => out.say("   The projection did NOT catch up in time (see `labs verify example-5`)."),
    }

    let mut problems = Vec::new();
    if counts.races > 0 && counts.lost_races == 0 {
        problems.push("no race was lost: optimistic concurrency never showed".to_owned());
    }
    if counts.rejected == 0 {
        problems.push("no command was rejected".to_owned());
    }
    if counts.races > 0 && crud.lost.is_empty() {
        problems.push("the CRUD table lost no update".to_owned());
    }
    if caught_up.is_none() {
        problems.push(format!("the projection did not catch up within {} s", CATCH_UP.as_secs()));
    }
    report(
        "commands",
        run.seed,
        problems,
        CommandsReport {
            tally: counts,
            race_outcomes: races,
            lost_updates: crud.lost,
            caught_up_seconds: caught_up.map(|d| d.as_secs_f64()),
        },
    )
}

fn outcome_text(execution: &Execution) -> String {
    match &execution.outcome {
        Outcome::Accepted { .. } => "accepted".to_owned(),
        Outcome::Rejected { rejection } => format!("rejected at v{}: {}", rejection.checked_version, rejection.reason),
    }
}

fn race_rows(ran: &[Ran]) -> Vec<RaceRow> {
    ran.iter()
        .filter_map(|step| {
            let Ran::Race(first, second) = step else { return None };
            let (winner, loser) = if first.conflicts.is_empty() { (first, second) } else { (second, first) };
            let (account_id, version) = loser.conflicts.first()?.clone();
            Some(RaceRow {
                account_id,
                winner: winner.command_id.clone(),
                loser: loser.command_id.clone(),
                conflict_at_version: version,
                loser_outcome: outcome_text(loser),
            })
        })
        .collect()
}

/// The CRUD table after the workload, and the updates it lost.
struct Crud {
    rows: BTreeMap<String, Account>,
    lost: Vec<LostUpdate>,
}

/// What losing `erased`'s write means for the account.
fn consequence(erased: &Command) -> String {
    match &erased.action {
        Action::Withdraw { amount, .. } => format!("{} paid out but never debited", money(*amount as i64)),
        Action::Deposit { amount, .. } => format!("a deposit of {} vanished", money(*amount as i64)),
        _ => "its change vanished".to_owned(),
    }
}

async fn run_crud(lab: &Lab<'_>, steps: &[Step]) -> Result<Crud> {
    let bar = output::progress(steps.len() as u64, "read-modify-write on the CRUD table");
    let mut lost = Vec::new();
    for step in steps {
        match step {
            Step::Single { command } => {
                let read = crud_read(lab, command).await?;
                crud_write(lab, &read, command).await?;
            }
            Step::Race { first, second } => {
                // Both read, then both write: the interleaving a race produces.
                let (read_first, read_second) = (crud_read(lab, first).await?, crud_read(lab, second).await?);
                let wrote_first = crud_write(lab, &read_first, first).await?;
                let wrote_second = crud_write(lab, &read_second, second).await?;
                if wrote_first && wrote_second {
                    lost.push(LostUpdate {
                        account_id: first.action.accounts().first().map(|a| (*a).to_owned()).unwrap_or_default(),
                        erased: format!("{} ({})", first.command_id, describe(first)),
                        by: format!("{} ({})", second.command_id, describe(second)),
                        consequence: consequence(first),
                    });
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (rows, _) = lab.states(&lab.crud).await?;
    Ok(Crud { rows: rows.into_iter().map(|r| (r.account_id.clone(), r)).collect(), lost })
}

async fn crud_read(lab: &Lab<'_>, command: &Command) -> Result<BTreeMap<String, Account>> {
    let mut states = BTreeMap::new();
    for id in command.action.accounts() {
        let row: Option<Account> = db::get(lab.dynamodb(), &lab.crud, &[("account_id", id)]).await?;
        states.insert(id.to_owned(), row.unwrap_or_else(|| Account::new(id)));
    }
    Ok(states)
}

/// Checks `command` against the rows as read and writes the new rows back, unconditionally.
/// Returns whether it wrote.
async fn crud_write(lab: &Lab<'_>, read: &BTreeMap<String, Account>, command: &Command) -> Result<bool> {
    let Ok(events) = decide(read, command) else { return Ok(false) };
    for event in &events {
        let before = read.get(&event.account_id).cloned().unwrap_or_else(|| Account::new(&event.account_id));
        db::put(lab.dynamodb(), &lab.crud, &evolve(before, event)).await?;
    }
    Ok(true)
}
