//! Example 8: stream joins (DDIA 11, "Stream Joins"; the plan's module 4.3).
//!
//! Three joins, each by its own function of the `stream-joins` package, with the join logic in
//! `labs_core::join` shared with the verifier:
//!
//! - `window-join`: searches x clicks by session within 10 s, outer on searches ("no click" once
//!   the watermark passes a search's window end); the state rises and falls and is deleted once
//!   past its window. The run ends each stream with end-of-input and a heartbeat, as example 6.
//! - `enrichment`: orders x customer profile through a replica fed by the customers table's
//!   change stream, joined as of the order's event time and with the latest profile.
//! - `replay`: the same orders again (pass 2) after the addresses changed: the versioned join
//!   answers as before, the naive one does not.
//! - `timeline`: posts x follows, two change streams, one timeline table kept incrementally.
//!
//! Runs are recorded as stream tags (`labs:run:window:<seed>` = `<start>:<sessions>` on the
//! searches stream, `labs:run:enrich:<seed>` = `<start>` and `labs:run:replay:<seed>` on the
//! orders stream), so `verify` regenerates the inputs from seeds.

mod bench;
mod data;
mod enrichment;
mod timeline;
mod verify;
mod window_join;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use labs_infra::stack::{Lambda, Stream, Table};

use super::{About, RunOptions};
use crate::driver::dynamodb as db;
use crate::driver::kinesis;
use crate::output::Output;
use crate::target::Target;

// The resources `infra/stacks/example-8.toml` declares.
const SEARCHES: Stream = Stream::new("ex8-searches");
const CLICKS: Stream = Stream::new("ex8-clicks");
const ORDERS: Stream = Stream::new("ex8-orders");
const CUSTOMERS: Table = Table::new("ex8-customers");
const POSTS: Table = Table::new("ex8-posts");
const FOLLOWS: Table = Table::new("ex8-follows");
const WINDOW_STATE: Table = Table::new("ex8-window-state");
const SEARCH_CLICKS: Table = Table::new("ex8-search-clicks");
const REPLICA: Table = Table::new("ex8-customer-replica");
const ENRICHED: Table = Table::new("ex8-enriched-orders");
const TIMELINE_STATE: Table = Table::new("ex8-timeline-state");
const TIMELINES: Table = Table::new("ex8-timelines");
const WINDOW_JOIN: Lambda = Lambda::new("ex8-window-join");
const ENRICH: Lambda = Lambda::new("ex8-enrich-orders");
const TIMELINE: Lambda = Lambda::new("ex8-timeline");
const CUSTOMER_REPLICA: Lambda = Lambda::new("ex8-customer-replica");

pub const ABOUT: About = About::new(
    8,
    "Stream joins",
    "window join (searches x clicks), stream-table enrichment as of event time, table-table timeline",
    "Kinesis, DynamoDB Streams, Lambda, DynamoDB",
);

const SCENARIOS: &[&str] = &["window-join", "enrichment", "replay", "timeline"];
/// The window join's window (the stack's WINDOW_MS).
pub const WINDOW_MS: i64 = 10_000;
/// How long a scenario waits for a join to catch up before it reports what is missing.
const CATCH_UP: Duration = Duration::from_secs(180);
const DEFAULT_SESSIONS: usize = 24;
const MAX_SESSIONS: usize = 400;
/// Kinesis keeps 50 tags per stream; labs' ownership tags take two.
const MAX_RUNS: usize = 48;

example!(Example8 {
    scenarios: SCENARIOS,
    resources: [
        SEARCHES,
        CLICKS,
        ORDERS,
        CUSTOMERS,
        POSTS,
        FOLLOWS,
        WINDOW_STATE,
        SEARCH_CLICKS,
        REPLICA,
        ENRICHED,
        TIMELINE_STATE,
        TIMELINES,
        WINDOW_JOIN,
        ENRICH,
        TIMELINE,
        CUSTOMER_REPLICA
    ],
    run: run,
    verify: verify::verify,
    bench: bench::bench,
});

/// The full names of this example's resources, under the target's prefix.
pub struct Names {
    searches: String,
    clicks: String,
    orders: String,
    customers: String,
    posts: String,
    follows: String,
    window_state: String,
    search_clicks: String,
    replica: String,
    enriched: String,
    timelines: String,
}

impl Names {
    fn of(target: &Target) -> Self {
        Self {
            searches: target.name(SEARCHES),
            clicks: target.name(CLICKS),
            orders: target.name(ORDERS),
            customers: target.name(CUSTOMERS),
            posts: target.name(POSTS),
            follows: target.name(FOLLOWS),
            window_state: target.name(WINDOW_STATE),
            search_clicks: target.name(SEARCH_CLICKS),
            replica: target.name(REPLICA),
            enriched: target.name(ENRICHED),
            timelines: target.name(TIMELINES),
        }
    }
}

/// A recorded window-join run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRun {
    pub seed: u64,
    pub start: i64,
    pub sessions: u32,
}

/// A recorded enrichment run, and the highest pass it was replayed with (1: not replayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrichRun {
    pub seed: u64,
    pub start: i64,
    pub passes: u32,
}

pub async fn window_runs(target: &Target, names: &Names) -> Result<Vec<WindowRun>> {
    let runs = kinesis::recorded_runs(&target.clients.kinesis, &names.searches, "example-8").await?;
    Ok(runs
        .into_iter()
        .filter_map(|(name, value)| {
            let seed = name.strip_prefix("window:")?.parse().ok()?;
            let (start, sessions) = value.split_once(':')?;
            Some(WindowRun { seed, start: start.parse().ok()?, sessions: sessions.parse().ok()? })
        })
        .collect())
}

pub async fn enrich_runs(target: &Target, names: &Names) -> Result<Vec<EnrichRun>> {
    let tags = kinesis::recorded_runs(&target.clients.kinesis, &names.orders, "example-8").await?;
    let mut runs: Vec<EnrichRun> = tags
        .iter()
        .filter_map(|(name, value)| {
            let seed = name.strip_prefix("enrich:")?.parse().ok()?;
            Some(EnrichRun { seed, start: value.parse().ok()?, passes: 1 })
        })
        .collect();
    for (name, value) in &tags {
        let (Some(seed), Ok(pass)) = (name.strip_prefix("replay:").and_then(|s| s.parse::<u64>().ok()), value.parse())
        else {
            continue;
        };
        if let Some(run) = runs.iter_mut().find(|r| r.seed == seed) {
            run.passes = run.passes.max(pass);
        }
    }
    Ok(runs)
}

/// Milliseconds since the epoch: event times of a new run start here, after any earlier run's
/// (a watermark never goes back).
fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn prefix_flag(target: &Target) -> String {
    if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
}

/// What every scenario gets.
pub struct Ctx<'a> {
    target: &'a Target,
    names: Names,
    options: &'a RunOptions,
    out: Output,
}

async fn run(target: &Target, options: &RunOptions, out: Output) -> Result<()> {
    let names = Names::of(target);
    db::describe_table(&target.clients.dynamodb, &names.window_state, "example-8").await?;
    let scenarios: Vec<&str> = match options.scenario.as_deref() {
        Some(name) if SCENARIOS.contains(&name) => vec![name],
        Some(name) => bail!("example-8 has no scenario '{name}': choose one of {}", SCENARIOS.join(", ")),
        None => SCENARIOS.to_vec(),
    };
    if let Some(count) = options.count
        && (count == 0 || count > MAX_SESSIONS)
    {
        bail!("--count (sessions of the window join) must be between 1 and {MAX_SESSIONS}");
    }
    target.confirm("Produce searches, clicks and orders and write customers, posts and follows for example-8?")?;
    out.say(format!(
        "Joins: {} (searches x clicks), {} and {} (orders x customers through the replica), {} (posts x follows, state in {}).",
        target.name(WINDOW_JOIN),
        target.name(CUSTOMER_REPLICA),
        target.name(ENRICH),
        target.name(TIMELINE),
        target.name(TIMELINE_STATE)
    ));
    let ctx = Ctx { target, names, options, out };
    let mut reports = Vec::new();
    for scenario in scenarios {
        out.say(format!("\n=== example-8 / {scenario} ==="));
        let report = match scenario {
            "window-join" => window_join::run(&ctx).await?,
            "enrichment" => enrichment::run(&ctx).await?,
            "replay" => enrichment::replay(&ctx).await?,
            _ => timeline::run(&ctx).await?,
        };
        reports.push(report);
    }
    out.say(format!("\nNext: labs verify example-8{}", prefix_flag(target)));
    out.json(&reports)
}

/// Polls `remaining` until it is 0 or [`CATCH_UP`] passes; a clear error names what is missing.
async fn wait_for<F, Fut>(what: &str, mut remaining: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize>>,
{
    let spinner = crate::output::spinner(what);
    let waited =
        db::wait_until_converged(CATCH_UP, &mut remaining, |n| spinner.set_message(format!("{what}: {n} to go"))).await;
    spinner.finish_and_clear();
    waited?.with_context(|| {
        format!("{what}: not done after {} s (is the function failing? `labs status example-8`)", CATCH_UP.as_secs())
    })
}
