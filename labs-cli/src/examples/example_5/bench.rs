//! Example 5's benchmark: events folded per second in-process, and command latency (load,
//! decide, conditional append) against the target.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use labs_core::ledger::projection::balances;
use labs_core::ledger::workload::{Step, WorkloadSpec, generate};
use labs_core::ledger::{Account, Event, decide, evolve};
use ledger_projector::{ExecuteOptions, execute};
use serde::Serialize;

use super::{BenchOptions, Lab, MAX_COMMANDS, MAX_RUNS, RunSpec};
use crate::figures::Figure;
use crate::output::{self, Output};
use crate::target::Target;

const DEFAULT_COMMANDS: usize = 100;
/// Commands whose events the in-process fold replays.
const FOLD_COMMANDS: usize = 200_000;
const FOLD_ROUNDS: usize = 5;

#[derive(Serialize)]
struct BenchReport {
    commands: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    fold_events: usize,
    events_folded_per_second: f64,
    optimized_build: bool,
}

/// A long history, decided one command at a time in memory, as a single writer would.
fn history(commands: usize) -> Vec<Event> {
    let spec =
        WorkloadSpec { namespace: "fold-".into(), seed: 1, accounts: 200, commands, races: 0, invalid_percent: 5 };
    let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
    let mut events = Vec::new();
    for command in generate(&spec).commands() {
        if let Ok(new) = decide(&accounts, command) {
            for event in &new {
                let state = accounts.remove(&event.account_id).unwrap_or_else(|| Account::new(&event.account_id));
                accounts.insert(event.account_id.clone(), evolve(state, event));
            }
            events.extend(new);
        }
    }
    events
}

pub(super) async fn bench(target: &Target, args: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let commands = args.count.unwrap_or(DEFAULT_COMMANDS);
    if !(2..=MAX_COMMANDS).contains(&commands) {
        bail!("--count is the number of commands to time: use 2 to {MAX_COMMANDS}");
    }
    let lab = Lab::connect(target, out).await?;
    let runs = lab.runs().await?;
    if runs.len() >= MAX_RUNS {
        bail!(
            "{} already records {} runs: `labs down example-5` and `labs up example-5` to start over",
            lab.stream,
            runs.len()
        );
    }
    // Recorded like a scenario run, so `verify` knows its commands.
    let seed = runs.iter().filter(|r| r.scenario == "bench").map(|r| r.seed + 1).max().unwrap_or(1);
    let run = RunSpec { races: 0, ..RunSpec::new("bench", seed, commands) };
    target.confirm(&format!("Run {commands} benchmark commands against {}?", lab.event_store))?;
    lab.record(&run).await?;
    let workload = run.workload();
    let bar = output::progress(workload.steps.len() as u64, "timing commands");
    let mut latencies = Vec::with_capacity(workload.steps.len());
    for step in &workload.steps {
        let Step::Single { command } = step else { continue };
        let started = Instant::now();
        execute(&lab.store, &lab.snapshots, command, ExecuteOptions::default()).await?;
        latencies.push(started.elapsed());
        bar.inc(1);
    }
    bar.finish_and_clear();
    latencies.sort();

    let spinner = output::spinner("deciding a long history in memory");
    let events = history(FOLD_COMMANDS);
    spinner.set_message("folding it");
    let mut best = Duration::MAX;
    for _ in 0..FOLD_ROUNDS {
        let started = Instant::now();
        let folded = balances(&events)?;
        best = best.min(started.elapsed());
        std::hint::black_box(folded);
    }
    spinner.finish_and_clear();
    let per_second = events.len() as f64 / best.as_secs_f64().max(1e-9);
    let optimized_build = !cfg!(debug_assertions);
    let report = BenchReport {
        commands: latencies.len(),
        p50_ms: output::percentile_ms(&latencies, 0.5),
        p99_ms: output::percentile_ms(&latencies, 0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        fold_events: events.len(),
        events_folded_per_second: per_second,
        optimized_build,
    };
    out.table(
        &format!(
            "Example 5 benchmark{}",
            if optimized_build { "" } else { " (debug build: use --release for real numbers)" }
        ),
        &["measure", "value"],
        [
            vec![
                format!("command latency: load, decide, conditional append ({} commands)", report.commands),
                format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", report.p50_ms, report.p99_ms, report.max_ms),
            ],
            vec![
                format!("in-process fold of {} events into balances (best of {FOLD_ROUNDS})", report.fold_events),
                format!("{per_second:.0} events/s"),
            ],
        ],
    );
    out.json(&report)?;
    Ok(vec![
        Figure::new("example-5", "command: load, decide, conditional append p50", report.p50_ms, "ms"),
        Figure::new("example-5", "command p99", report.p99_ms, "ms"),
        Figure::new("example-5", format!("in-process fold of {} events", report.fold_events), per_second, "events/s"),
    ])
}
