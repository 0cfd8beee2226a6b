//! `labs bench example-8`: how long each join takes to settle. The window join: from the first
//! record sent until every search is decided and its state evicted (end-of-input and heartbeat
//! included). The timeline: from the first table write until the view equals the batch join.

use std::time::Instant;

use anyhow::Result;
use labs_core::join::clicks::generate;
use serde_json::json;

use super::window_join::{end_of, produce_and_close, spec_of};
use super::{Ctx, Names, WindowRun, now_millis, window_runs};
use crate::driver::{dynamodb as db, kinesis, seeds};
use crate::examples::{BenchOptions, RunOptions};
use crate::figures::Figure;
use crate::output::Output;
use crate::target::Target;

pub(super) async fn bench(target: &Target, options: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let names = Names::of(target);
    db::describe_table(&target.clients.dynamodb, &names.window_state, "example-8").await?;
    let sessions = options.count.unwrap_or(100).clamp(1, super::MAX_SESSIONS) as u32;
    let runs = window_runs(target, &names).await?;
    seeds::check_room(runs.len(), 1, super::MAX_RUNS, &names.searches, "example-8")?;
    let seed = seeds::after_highest(runs.iter().map(|r| r.seed))?;
    let after_previous = runs.iter().map(|r| end_of(&generate(&spec_of(r))) + 1_000).max().unwrap_or(0);
    let run = WindowRun { seed, start: now_millis().max(after_previous), sessions };
    let stream = generate(&spec_of(&run));
    kinesis::record_run(
        &target.clients.kinesis,
        &names.searches,
        &format!("window:{seed}"),
        &format!("{}:{sessions}", run.start),
    )
    .await?;
    let run_options = RunOptions::default();
    let ctx = Ctx { target, names, options: &run_options, out: Output::quiet() };
    let started = Instant::now();
    produce_and_close(&ctx, &stream, 0).await?;
    let window_seconds = started.elapsed().as_secs_f64();
    let events = stream.production.len();
    out.table(
        &format!("example-8 bench (window join, {sessions} sessions, seed {seed}):"),
        &["measure", "value"],
        [
            vec!["searches and clicks".into(), events.to_string()],
            vec!["first record to every search decided, state evicted".into(), format!("{window_seconds:.1} s")],
            vec!["events per second, end to end".into(), format!("{:.1}", events as f64 / window_seconds.max(0.001))],
        ],
    );
    out.json(&json!({ "sessions": sessions, "events": events, "window_join_seconds": window_seconds }))?;
    Ok(vec![Figure::new(
        "example-8",
        format!("window join, {sessions} sessions: first record to all decided"),
        window_seconds,
        "s",
    )])
}
