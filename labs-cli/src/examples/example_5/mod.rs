//! Example 5: event sourcing (DDIA 11, "Event Sourcing", "State, Streams, and Immutability",
//! "Log compaction").
//!
//! Bank-account commands are decided against the current state (`labs_core::ledger`) and, when
//! accepted, appended as immutable events to the DynamoDB event store with optimistic
//! concurrency (`ledger_projector::execute`). The store's change stream feeds the `ledger-relay`
//! Lambda, which publishes every event to the Kinesis log; the `ledger-projector` Lambda folds
//! that log into the balances table. Every scenario run is recorded as a stream tag
//! (`labs:run:<scenario>:<seed>` = the workload's size), so `verify` regenerates every command
//! and checks what was recorded (events, rejections) and every table derived from it.

mod bench;
mod commands;
mod evolve;
mod rebuild;
mod retention;
mod snapshot;
mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use labs_core::ledger::projection::by_account;
use labs_core::ledger::workload::{Step, Workload, WorkloadSpec, generate};
use labs_core::ledger::{Account, Command, Event, Rejection, StoredEvent, decode_event};
use labs_infra::stack::{Lambda, Stream, Table};
use ledger_projector::{
    AppendError, DynamoEventStore, DynamoStateTable, EventStore, ExecuteOptions, Execution, Outcome, StoreError,
    execute,
};
use serde::Serialize;
use tokio::sync::Barrier;

use super::scenario::{ScenarioReport, report};
use super::{About, BenchOptions, RunOptions, VerifyOptions};
use crate::driver::dynamodb as db;
use crate::driver::kinesis::{self, Position};
use crate::driver::seeds;
use crate::output::{self, Output};
use crate::target::Target;

pub const ABOUT: About =
    About::new(5, "Event sourcing", "events as truth, projections, replay and rebuild", "Kinesis, Lambda, DynamoDB");

// The resources `infra/stacks/example-5.toml` declares.
const EVENTS: Stream = Stream::new("ex5-events");
const EVENT_STORE: Table = Table::new("ex5-event-store");
const REJECTIONS: Table = Table::new("ex5-rejections");
const BALANCES: Table = Table::new("ex5-balances");
const BALANCES_REBUILT: Table = Table::new("ex5-balances-rebuilt");
const WITHDRAWAL_PEAKS: Table = Table::new("ex5-withdrawal-peaks");
const SNAPSHOTS: Table = Table::new("ex5-snapshots");
const COMPACTED: Table = Table::new("ex5-compacted");
const CRUD_ACCOUNTS: Table = Table::new("ex5-crud-accounts");
const RELAY: Lambda = Lambda::new("ex5-relay");
const PROJECTOR: Lambda = Lambda::new("ex5-projector");

const SCENARIOS: [&str; 5] = ["commands", "rebuild", "snapshot", "evolve", "retention"];
/// Commands per scenario run (after the opening and funding ones), unless `--count`.
const DEFAULT_COMMANDS: usize = 60;
const MAX_COMMANDS: usize = 5_000;
const ACCOUNTS: usize = 6;
const INVALID_PERCENT: u32 = 15;
/// Kinesis allows 50 tags per stream; labs' own tags take three, each run one.
const MAX_RUNS: usize = 50 - labs_infra::OWN_TAGS;
/// How long the relay and the projector may take to bring the balances up to the store.
const CATCH_UP: Duration = Duration::from_secs(180);
/// How long a racing command waits for its rival before appending alone.
const RACE_GATE: Duration = Duration::from_secs(10);
/// Rows of examples a table shows.
const EXAMPLES: usize = 6;

example!(Example5 {
    scenarios: &SCENARIOS,
    resources: [
        EVENTS,
        EVENT_STORE,
        REJECTIONS,
        BALANCES,
        BALANCES_REBUILT,
        WITHDRAWAL_PEAKS,
        SNAPSHOTS,
        COMPACTED,
        CRUD_ACCOUNTS,
        RELAY,
        PROJECTOR
    ],
    run: run,
    verify: verify::verify,
    bench: bench::bench
});

/// One recorded run: a scenario (or the benchmark) and the workload it executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct RunSpec {
    scenario: String,
    seed: u64,
    accounts: usize,
    commands: usize,
    races: usize,
    invalid_percent: u32,
}

impl RunSpec {
    fn new(scenario: &str, seed: u64, commands: usize) -> Self {
        Self {
            scenario: scenario.to_owned(),
            seed,
            accounts: ACCOUNTS,
            commands,
            races: (commands / 10).max(1),
            invalid_percent: INVALID_PERCENT,
        }
    }

    /// The generator's settings: account and command ids start with `<scenario>-<seed>-`, so
    /// runs share the tables without touching each other's accounts.
    fn workload_spec(&self) -> WorkloadSpec {
        WorkloadSpec {
            namespace: format!("{}-", self.scenario),
            seed: self.seed,
            accounts: self.accounts,
            commands: self.commands,
            races: self.races,
            invalid_percent: self.invalid_percent,
        }
    }

    fn workload(&self) -> Workload {
        generate(&self.workload_spec())
    }

    /// Tag name and value: `<scenario>:<seed>` = `<accounts>/<commands>/<races>/<invalid %>`.
    fn tag(&self) -> (String, String) {
        (
            format!("{}:{}", self.scenario, self.seed),
            format!("{}/{}/{}/{}", self.accounts, self.commands, self.races, self.invalid_percent),
        )
    }

    fn from_tag(name: &str, value: &str) -> Option<Self> {
        let (scenario, seed) = name.split_once(':')?;
        let numbers: Vec<&str> = value.split('/').collect();
        let [accounts, commands, races, invalid] = numbers.as_slice() else { return None };
        Some(Self {
            scenario: scenario.to_owned(),
            seed: seed.parse().ok()?,
            accounts: accounts.parse().ok()?,
            commands: commands.parse().ok()?,
            races: races.parse().ok()?,
            invalid_percent: invalid.parse().ok()?,
        })
    }
}

/// The example's resources, looked up once.
struct Lab<'a> {
    target: &'a Target,
    out: Output,
    stream: String,
    event_store: String,
    rejections: String,
    balances: String,
    rebuilt: String,
    peaks: String,
    snapshots_table: String,
    compacted: String,
    crud: String,
    store: DynamoEventStore,
    snapshots: DynamoStateTable,
}

impl<'a> Lab<'a> {
    async fn connect(target: &'a Target, out: Output) -> Result<Self> {
        let event_store = target.name(EVENT_STORE);
        let rejections = target.name(REJECTIONS);
        let snapshots_table = target.name(SNAPSHOTS);
        let client = &target.clients.dynamodb;
        db::describe_table(client, &event_store, "example-5").await?;
        let stream = target.name(EVENTS);
        kinesis::list_shards(&target.clients.kinesis, &stream).await?;
        Ok(Self {
            target,
            out,
            stream,
            store: DynamoEventStore::new(client.clone(), &event_store, &rejections),
            snapshots: DynamoStateTable::new(client.clone(), &snapshots_table),
            event_store,
            rejections,
            balances: target.name(BALANCES),
            rebuilt: target.name(BALANCES_REBUILT),
            peaks: target.name(WITHDRAWAL_PEAKS),
            snapshots_table,
            compacted: target.name(COMPACTED),
            crud: target.name(CRUD_ACCOUNTS),
        })
    }

    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.target.clients.dynamodb
    }

    async fn runs(&self) -> Result<Vec<RunSpec>> {
        let tags = kinesis::recorded_runs(&self.target.clients.kinesis, &self.stream, "example-5").await?;
        Ok(tags.iter().filter_map(|(name, value)| RunSpec::from_tag(name, value)).collect())
    }

    /// Records a run before its first command, so a run that stops halfway shows up in `verify`
    /// as unresolved commands rather than vanishing.
    async fn record(&self, run: &RunSpec) -> Result<()> {
        let (name, value) = run.tag();
        kinesis::record_run(&self.target.clients.kinesis, &self.stream, &name, &value).await
    }

    /// Every event in the store, decoded (upcast); rows that do not decode are returned apart.
    async fn store_events(&self) -> Result<(Vec<Event>, Vec<String>)> {
        let (rows, mut odd) = db::scan_typed::<StoredEvent>(self.dynamodb(), &self.event_store).await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            match row.event() {
                Ok(event) => events.push(event),
                Err(err) => odd.push(format!("{} v{}: {err}", row.account_id, row.version)),
            }
        }
        Ok((events, odd))
    }

    async fn stored_rows(&self) -> Result<Vec<StoredEvent>> {
        Ok(db::scan_typed::<StoredEvent>(self.dynamodb(), &self.event_store).await?.0)
    }

    async fn rejection_log(&self) -> Result<(Vec<Rejection>, Vec<String>)> {
        db::scan_typed(self.dynamodb(), &self.rejections).await
    }

    /// Every row of a table of account states (balances, snapshots, compacted, CRUD).
    async fn states(&self, table: &str) -> Result<(Vec<Account>, Vec<String>)> {
        db::scan_typed(self.dynamodb(), table).await
    }

    /// The whole Kinesis log, every shard from TRIM_HORIZON, decoded.
    async fn log(&self) -> Result<Log> {
        let records = kinesis::read_stream(&self.target.clients.kinesis, &self.stream, &Position::TrimHorizon).await?;
        let mut log = Log { bytes: records.iter().map(|r| r.data.len()).sum(), ..Log::default() };
        for record in records {
            let decoded = std::str::from_utf8(&record.data)
                .map_err(|e| e.to_string())
                .and_then(|text| decode_event(text).map_err(|e| e.to_string()));
            match decoded {
                Ok(event) => log.events.push(event),
                Err(err) => {
                    log.odd.push(format!("record {} (key {}): {err}", record.sequence_number, record.partition_key))
                }
            }
        }
        Ok(log)
    }

    /// [`Lab::log`] behind a spinner.
    async fn read_log(&self) -> Result<Log> {
        let spinner = output::spinner("reading the Kinesis log from TRIM_HORIZON");
        let log = self.log().await;
        spinner.finish_and_clear();
        log
    }

    /// Waits until the balances projection covers every event in the store; returns how long it
    /// took, or `None` on timeout.
    async fn wait_for_projection(&self, timeout: Duration) -> Result<Option<Duration>> {
        let spinner = output::spinner("waiting for relay -> Kinesis -> projector to catch up");
        let waited = db::wait_until_converged(
            timeout,
            || async {
                let (events, _) = self.store_events().await?;
                let (rows, _) = self.states(&self.balances).await?;
                Ok(projection_lag(&rows, &events).len())
            },
            |behind| spinner.set_message(format!("projection catching up: {behind} accounts behind the store")),
        )
        .await;
        spinner.finish_and_clear();
        waited
    }

    fn prefix_flag(&self) -> String {
        let p = &self.target.prefix;
        if p == "labs" { String::new() } else { format!(" --prefix {p}") }
    }
}

/// The Kinesis log as read: its events in reading order (redeliveries included), the records
/// that are not events, and the bytes of all records.
#[derive(Debug, Default)]
struct Log {
    events: Vec<Event>,
    odd: Vec<String>,
    bytes: usize,
}

/// Accounts whose projection row is not at the latest version in `events` (or has no row):
/// (account, row version, latest version).
fn projection_lag(rows: &[Account], events: &[Event]) -> Vec<(String, u64, u64)> {
    let versions: BTreeMap<&str, u64> = rows.iter().map(|r| (r.account_id.as_str(), r.version)).collect();
    by_account(events)
        .into_iter()
        .filter_map(|(id, history)| {
            let latest = history.last().map_or(0, |e| e.version);
            let row = versions.get(id).copied().unwrap_or(0);
            (row != latest).then(|| (id.to_owned(), row, latest))
        })
        .collect()
}

/// Distinct events (the log holds redeliveries), first copy kept.
fn distinct(events: &[Event]) -> Vec<Event> {
    let mut seen = BTreeSet::new();
    events.iter().filter(|e| seen.insert((e.account_id.clone(), e.version, e.event_id.clone()))).cloned().collect()
}

/// The events of the accounts of one run.
fn of_run<'e>(events: &'e [Event], workload: &Workload) -> Vec<&'e Event> {
    let accounts: BTreeSet<&str> =
        workload.accounts.iter().map(String::as_str).chain([workload.closed_account.as_str()]).collect();
    events.iter().filter(|e| accounts.contains(e.account_id.as_str())).collect()
}

/// An event store in which the two commands of a race both load before either appends (or logs
/// a refusal): the interleaving that makes one of them lose, made certain so every run shows it.
struct Gated<'a> {
    inner: &'a DynamoEventStore,
    gate: &'a Barrier,
    passed: AtomicBool,
}

impl<'a> Gated<'a> {
    fn new(inner: &'a DynamoEventStore, gate: &'a Barrier) -> Self {
        Self { inner, gate, passed: AtomicBool::new(false) }
    }

    async fn pass(&self) {
        if !self.passed.swap(true, Ordering::SeqCst) {
            // A rival that failed before its first write never arrives: go on alone.
            let _ = tokio::time::timeout(RACE_GATE, self.gate.wait()).await;
        }
    }
}

impl EventStore for Gated<'_> {
    async fn load(&self, account_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.load(account_id, after).await
    }

    async fn append(&self, events: &[StoredEvent]) -> Result<(), AppendError> {
        self.pass().await;
        self.inner.append(events).await
    }

    async fn record_rejection(&self, rejection: &Rejection) -> Result<(), StoreError> {
        self.pass().await;
        self.inner.record_rejection(rejection).await
    }
}

/// What one step of a workload did in the event store.
enum Ran {
    Single(Execution),
    Race(Execution, Execution),
}

impl Ran {
    fn executions(&self) -> Vec<&Execution> {
        match self {
            Ran::Single(one) => vec![one],
            Ran::Race(first, second) => vec![first, second],
        }
    }
}

/// Executes `steps` in order, the two commands of a race at the same time. `options(n)` gives
/// the options of step `n`.
async fn execute_steps(
    lab: &Lab<'_>,
    steps: &[Step],
    options: impl Fn(usize) -> ExecuteOptions,
    message: &str,
) -> Result<Vec<Ran>> {
    let bar = output::progress(steps.len() as u64, message);
    let mut ran = Vec::with_capacity(steps.len());
    for (n, step) in steps.iter().enumerate() {
        let options = options(n);
        ran.push(match step {
            Step::Single { command } => Ran::Single(execute(&lab.store, &lab.snapshots, command, options).await?),
            Step::Race { first, second } => {
                let gate = Barrier::new(2);
                let (a, b) = (Gated::new(&lab.store, &gate), Gated::new(&lab.store, &gate));
                let (first, second) = tokio::join!(
                    execute(&a, &lab.snapshots, first, options),
                    execute(&b, &lab.snapshots, second, options)
                );
                Ran::Race(first?, second?)
            }
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(ran)
}

/// Counts of what a workload did.
#[derive(Debug, Clone, Default, Serialize)]
struct Tally {
    commands: usize,
    accepted: usize,
    rejected: usize,
    races: usize,
    lost_races: usize,
}

fn tally(ran: &[Ran]) -> Tally {
    let mut tally = Tally::default();
    for step in ran {
        if matches!(step, Ran::Race(..)) {
            tally.races += 1;
        }
        for execution in step.executions() {
            tally.commands += 1;
            tally.lost_races += execution.conflicts.len();
            match execution.outcome {
                Outcome::Accepted { .. } => tally.accepted += 1,
                Outcome::Rejected { .. } => tally.rejected += 1,
            }
        }
    }
    tally
}

fn tally_line(t: &Tally) -> String {
    format!(
        "   {} commands: {} accepted (events appended), {} rejected (logged with their reason); {} races, {} lost and retried",
        t.commands, t.accepted, t.rejected, t.races, t.lost_races
    )
}

/// A command in a few words: `withdraw 120.00 from commands-1-acct-002`.
fn describe(command: &Command) -> String {
    use labs_core::ledger::Action;
    match &command.action {
        Action::Open { account_id, owner } => format!("open {account_id} for {owner}"),
        Action::Deposit { account_id, amount } => format!("deposit {} into {account_id}", money(*amount as i64)),
        Action::Withdraw { account_id, amount } => format!("withdraw {} from {account_id}", money(*amount as i64)),
        Action::Transfer { from, to, amount } => format!("transfer {} {from} -> {to}", money(*amount as i64)),
        Action::Close { account_id } => format!("close {account_id}"),
    }
}

/// Cents as euros: `-12.05`.
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.unsigned_abs() / 100, cents.unsigned_abs() % 100)
}

#[derive(Serialize)]
struct RunReport {
    stream: String,
    scenarios: Vec<ScenarioReport>,
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    if args.query.is_some() {
        bail!("example-5 has no --query: it runs scenarios (--scenario NAME)");
    }
    let scenarios: Vec<&'static str> = match args.scenario.as_deref() {
        None => SCENARIOS.to_vec(),
        Some(name) => match SCENARIOS.iter().find(|s| **s == name) {
            Some(known) => vec![*known],
            None => bail!("example-5 has no scenario '{name}': use one of {}", SCENARIOS.join(", ")),
        },
    };
    let commands = args.count.unwrap_or(DEFAULT_COMMANDS);
    if !(2..=MAX_COMMANDS).contains(&commands) {
        bail!("--count is the number of commands per scenario: use 2 to {MAX_COMMANDS}");
    }
    let lab = Lab::connect(target, out).await?;
    let runs = lab.runs().await?;
    seeds::check_room(runs.len(), scenarios.len(), MAX_RUNS, &lab.stream, "example-5")?;
    let mut planned = Vec::new();
    for scenario in &scenarios {
        let used: Vec<u64> = runs.iter().filter(|r| r.scenario == *scenario).map(|r| r.seed).collect();
        let seed = seeds::for_scenario(args.seed, &used, scenario, &lab.stream, "example-5")?;
        planned.push(RunSpec::new(scenario, seed, commands));
    }
    target.confirm(&format!("Run {} scenarios of {commands} commands against {}?", planned.len(), lab.event_store))?;
    out.say(format!(
        "Event store {} (the source of truth) -> its DynamoDB stream -> Lambda {} -> Kinesis {} (the log)\n\
         -> Lambda {} -> {}.\n\
         Each scenario runs its own seeded workload on its own accounts: opens, deposits, withdrawals, transfers,\n\
         closes, some meant to be refused, and pairs of commands racing on one account.",
        lab.event_store,
        target.name(RELAY),
        lab.stream,
        target.name(PROJECTOR),
        lab.balances
    ));
    let mut reports = Vec::new();
    for run in &planned {
        lab.record(run).await?;
        out.say(format!("\n== {} (seed {}) ==", run.scenario, run.seed));
        reports.push(match run.scenario.as_str() {
            "commands" => commands::commands(&lab, run).await?,
            "rebuild" => rebuild::rebuild(&lab, run).await?,
            "snapshot" => snapshot::snapshot(&lab, run).await?,
            "evolve" => evolve::evolve(&lab, run).await?,
            _ => retention::retention(&lab, run).await?,
        });
    }
    out.say(format!(
        "\nCheck it from the data: labs verify example-5{} regenerates every command from the recorded seeds\n\
         and checks the store, the Kinesis log and every table derived from them.",
        lab.prefix_flag()
    ));
    let problems: Vec<String> = reports.iter().filter_map(|r| r.problem.clone()).collect();
    out.json(&RunReport { stream: lab.stream.clone(), scenarios: reports })?;
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_survives_its_tag() {
        let run = RunSpec::new("snapshot", 12, 80);
        let (name, value) = run.tag();
        assert_eq!((name.as_str(), value.as_str()), ("snapshot:12", "6/80/8/15"));
        assert_eq!(RunSpec::from_tag(&name, &value), Some(run));
        assert_eq!(RunSpec::from_tag("snapshot:x", "6/80/8/15"), None);
        assert_eq!(RunSpec::from_tag("snapshot:1", "6/80/8"), None);
    }

    #[test]
    fn runs_of_different_scenarios_never_share_an_account() {
        let a = RunSpec::new("commands", 1, 20).workload();
        let b = RunSpec::new("rebuild", 1, 20).workload();
        let accounts = |w: &Workload| -> BTreeSet<String> { w.accounts.iter().cloned().collect() };
        assert!(accounts(&a).is_disjoint(&accounts(&b)));
    }

    #[test]
    fn money_reads_as_euros() {
        assert_eq!(money(12_05), "12.05");
        assert_eq!(money(-7), "-0.07");
    }
}
