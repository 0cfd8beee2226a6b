//! Example 4: a Lambda stream processor that counts every purchase exactly once through failures
//! (DDIA 11, "Fault Tolerance": microbatching and checkpointing, atomic commit, idempotence).
//!
//! Purchases (`labs_core::purchases`) go into a Kinesis stream; the `exactly-once-counter` Lambda
//! keeps per-user `total`/`count` exactly once (a dedup row per event in the same transaction)
//! and beside them `naive_total`/`naive_count` (a plain increment per delivery). Each scenario
//! plants a fault marker, sets the mapping (retries, bisect, partial batch responses,
//! parallelization) through the stack declaration, and shows what the data says. Every part a
//! scenario produces is recorded as a stream tag (`labs:run:<namespace>:<seed>` = count), so
//! `verify` regenerates what was produced.

mod bench;
mod crash;
mod happy;
mod observed;
mod partial_batch;
mod poison;
mod slow_consumer;
mod transient;
mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use exactly_once_counter::{AppliedEvent, Invocation, Outcome, TotalsRow};
use labs_core::purchases::{self, Fault, Purchase, PurchaseSpec, Scenario};
use labs_core::sequence;
use labs_infra::stack::{self, Lambda, Queue, Stream, Table};
use serde::Serialize;

use super::{About, RunOptions};
use crate::driver::dynamodb as db;
use crate::driver::kinesis::{self, Incoming, Outgoing, Position};
use crate::driver::messaging;
use crate::driver::seeds;
use crate::output::{self, Output};
use crate::provision;
use crate::target::Target;

use self::observed::{
    Deliveries, FailureRecord, Observed, PartOutcome, StreamCopy, by_request, faulty_place, holding, invocations_of,
    named_by, peek_failures, short_seq, show_invocations,
};

// The resources `infra/stacks/example-4.toml` declares.
const EVENTS: Stream = Stream::new("ex4-events");
const TOTALS: Table = Table::new("ex4-totals");
const APPLIED: Table = Table::new("ex4-applied");
const INVOCATIONS: Table = Table::new("ex4-invocations");
const FAILURES: Queue = Queue::new("ex4-failures");
const PROCESSOR: Lambda = Lambda::new("ex4-processor");

pub const ABOUT: About = About::new(
    4,
    "A Lambda stream processor",
    "batches, retries, bisect, partial failures, exactly-once effects",
    "Kinesis, Lambda, DynamoDB, SQS",
);

const SCENARIOS: &[&str] = &{
    let mut names = [""; Scenario::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = scenario_name(Scenario::ALL[i]);
        i += 1;
    }
    names
};
const DEFAULT_EVENTS: usize = 300;
const MAX_EVENTS: usize = 20_000;
/// Kinesis allows 50 tags per stream; labs' own tags take three, each produced part one.
const MAX_PARTS: usize = 50 - labs_infra::OWN_TAGS;
/// How long a scenario waits for the processor before it reports what is missing.
const CATCH_UP: Duration = Duration::from_secs(180);

example!(Example4 {
    scenarios: SCENARIOS,
    resources: [EVENTS, TOTALS, APPLIED, INVOCATIONS, FAILURES, PROCESSOR],
    run: run,
    verify: verify::verify,
    bench: bench::bench,
});

const fn scenario_name(scenario: Scenario) -> &'static str {
    match scenario {
        Scenario::Happy => "happy",
        Scenario::Transient => "transient",
        Scenario::Poison => "poison",
        Scenario::PartialBatch => "partial-batch",
        Scenario::Crash => "crash",
        Scenario::SlowConsumer => "slow-consumer",
    }
}

/// One generated set of purchases a scenario produces. Its namespace starts every event id and
/// names its stream tag, so `verify` knows which fault it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    namespace: &'static str,
    fault: Option<Fault>,
}

/// Every part any run produces: the scenarios' own (poison produces a second one, for bisect)
/// and the benchmark's.
const PARTS: [Part; 8] = [
    Part { namespace: "happy", fault: None },
    Part { namespace: "transient", fault: Some(Fault::Transient { failures: 2 }) },
    Part { namespace: "poison", fault: Some(Fault::Poison) },
    Part { namespace: "poison-bisect", fault: Some(Fault::Poison) },
    Part { namespace: "partial-batch", fault: Some(Fault::ItemFailure { failures: 1 }) },
    Part { namespace: "crash", fault: Some(Fault::Crash) },
    Part { namespace: "slow-consumer", fault: None },
    Part { namespace: "bench", fault: None },
];

fn part(namespace: &str) -> Option<Part> {
    PARTS.into_iter().find(|p| p.namespace == namespace)
}

/// A part produced with a seed and a count: regenerates exactly the purchases that went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Produced {
    namespace: String,
    seed: u64,
    count: usize,
}

impl Produced {
    fn spec(&self) -> Result<PurchaseSpec> {
        let part = part(&self.namespace).with_context(|| format!("unknown part '{}'", self.namespace))?;
        Ok(PurchaseSpec {
            namespace: self.namespace.clone(),
            fault: part.fault,
            ..PurchaseSpec::for_scenario(Scenario::Happy, self.seed, self.count)
        })
    }

    fn events(&self) -> Result<Vec<Purchase>> {
        Ok(purchases::generate(&self.spec()?))
    }
}

/// The parts recorded on the stream; tags this example did not write are skipped.
async fn recorded_parts(target: &Target, stream: &str) -> Result<Vec<Produced>> {
    let runs = kinesis::recorded_runs(&target.clients.kinesis, stream, "example-4").await?;
    Ok(runs
        .into_iter()
        .filter_map(|(name, count)| {
            let (namespace, seed) = name.rsplit_once(':')?;
            part(namespace)?;
            Some(Produced { namespace: namespace.to_owned(), seed: seed.parse().ok()?, count: count.parse().ok()? })
        })
        .collect())
}

/// The full names of this example's resources, under the target's prefix.
struct Names {
    events: String,
    totals: String,
    applied: String,
    invocations: String,
    failures: String,
}

impl Names {
    fn of(target: &Target) -> Self {
        Self {
            events: target.name(EVENTS),
            totals: target.name(TOTALS),
            applied: target.name(APPLIED),
            invocations: target.name(INVOCATIONS),
            failures: target.name(FAILURES),
        }
    }
}

/// Every user's row of the totals table: the exactly-once total beside the naive one (the
/// dashboard shows the gap).
pub async fn user_totals(target: &Target) -> Result<Vec<TotalsRow>> {
    Ok(db::scan_typed::<TotalsRow>(&target.clients.dynamodb, &target.name(TOTALS)).await?.0)
}

/// The event source mapping's settings a scenario chooses; the rest stay as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct MappingSettings {
    batch_size: i32,
    /// -1: retry until the record expires from the stream.
    maximum_retry_attempts: i32,
    bisect_batch_on_function_error: bool,
    report_batch_item_failures: bool,
    parallelization_factor: i32,
}

/// Where every scenario starts and returns to (as `infra/stacks/example-4.toml` declares it).
const BASELINE: MappingSettings = MappingSettings {
    batch_size: 100,
    maximum_retry_attempts: 3,
    bisect_batch_on_function_error: false,
    report_batch_item_failures: true,
    parallelization_factor: 1,
};

impl MappingSettings {
    fn rows(&self) -> Vec<Vec<String>> {
        let retries = match self.maximum_retry_attempts {
            -1 => "-1 (until the record expires)".to_owned(),
            n => n.to_string(),
        };
        let on = |b: bool| if b { "on" } else { "off" }.to_owned();
        vec![
            vec!["BatchSize".into(), self.batch_size.to_string()],
            vec!["MaximumRetryAttempts".into(), retries],
            vec!["BisectBatchOnFunctionError".into(), on(self.bisect_batch_on_function_error)],
            vec!["FunctionResponseTypes: ReportBatchItemFailures".into(), on(self.report_batch_item_failures)],
            vec!["ParallelizationFactor".into(), self.parallelization_factor.to_string()],
            vec!["DestinationConfig.OnFailure".into(), "the ex4-failures queue".into()],
        ]
    }
}

/// Applies `settings` to the mapping through the same declaration `labs up` uses: on AWS an
/// UpdateEventSourceMapping, locally whatever runs the mapping picks it up.
async fn set_mapping(target: &Target, settings: MappingSettings, why: &str, out: Output) -> Result<()> {
    let mut stack = stack::load("example-4")?;
    let mapping = stack.event_source_mappings.first_mut().context("example-4 declares no event source mapping")?;
    mapping.batch_size = settings.batch_size;
    mapping.maximum_retry_attempts = Some(settings.maximum_retry_attempts);
    mapping.bisect_batch_on_function_error = settings.bisect_batch_on_function_error;
    mapping.report_batch_item_failures = settings.report_batch_item_failures;
    mapping.parallelization_factor = Some(settings.parallelization_factor);
    let spinner = output::spinner("updating the event source mapping");
    let applied = provision::up_stack(target, &stack, false, Output::quiet()).await;
    spinner.finish_and_clear();
    applied?;
    out.table(&format!("Mapping settings ({why}):"), &["setting", "value"], settings.rows());
    Ok(())
}

/// Records `part` on the stream, then produces its purchases, partition key `user_id`.
async fn produce(target: &Target, names: &Names, produced: &Produced, rate: Option<u32>) -> Result<Vec<Purchase>> {
    let events = produced.events()?;
    let client = &target.clients.kinesis;
    kinesis::record_run(
        client,
        &names.events,
        &format!("{}:{}", produced.namespace, produced.seed),
        &produced.count.to_string(),
    )
    .await?;
    let records: Vec<Outgoing> =
        events.iter().map(|e| Outgoing { partition_key: e.user_id.clone(), data: e.to_bytes() }).collect();
    let bar = output::progress(records.len() as u64, &format!("producing {}", produced.namespace));
    let produced_stats = kinesis::produce(client, &names.events, records, rate, &bar).await;
    bar.finish_and_clear();
    produced_stats?;
    Ok(events)
}

/// Events of `events` counted so far (a dedup row each), by shard where known.
async fn counted_of(target: &Target, names: &Names, ids: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let (applied, _) = db::scan_typed::<AppliedEvent>(&target.clients.dynamodb, &names.applied).await?;
    Ok(applied.into_iter().map(|a| a.event_id).filter(|id| ids.contains(id)).collect())
}

/// One sample of how far the processor is behind: produced so far against counted.
#[derive(Debug, Clone, Serialize)]
struct LagSample {
    seconds: f64,
    counted: usize,
    behind: usize,
}

/// Waits until `wanted` of `events` are counted, sampling the lag; `None` on timeout.
async fn wait_counted(
    target: &Target,
    names: &Names,
    events: &[Purchase],
    wanted: usize,
    timeout: Duration,
    samples: &mut Vec<LagSample>,
) -> Result<Option<Duration>> {
    let ids: BTreeSet<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let started = Instant::now();
    let spinner = output::spinner("waiting for the processor");
    let mut last_sample = None::<Instant>;
    loop {
        let counted = counted_of(target, names, &ids).await?.len();
        if last_sample.is_none_or(|t| t.elapsed() >= Duration::from_millis(250)) {
            samples.push(LagSample { seconds: started.elapsed().as_secs_f64(), counted, behind: ids.len() - counted });
            last_sample = Some(Instant::now());
        }
        spinner.set_message(format!("waiting for the processor: {counted} of {wanted} counted"));
        if counted >= wanted {
            spinner.finish_and_clear();
            samples.push(LagSample { seconds: started.elapsed().as_secs_f64(), counted, behind: ids.len() - counted });
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > timeout {
            spinner.finish_and_clear();
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Lag samples, thinned to at most `rows`.
fn show_lag(out: Output, title: &str, samples: &[LagSample], rows: usize) {
    let step = samples.len().div_ceil(rows.max(1)).max(1);
    let mut shown: Vec<&LagSample> = samples.iter().step_by(step).collect();
    if let Some(last) = samples.last()
        && shown.last().is_none_or(|s| !std::ptr::eq(*s, last))
    {
        shown.push(last);
    }
    out.table(
        title,
        &["after", "counted", "not yet counted"],
        shown.iter().map(|s| vec![format!("{:.1} s", s.seconds), s.counted.to_string(), s.behind.to_string()]),
    );
}

/// What `labs run example-4` reports in JSON: one entry per scenario run.
#[derive(Debug, Serialize)]
struct ScenarioReport {
    scenario: &'static str,
    settings: Vec<MappingSettings>,
    parts: Vec<PartOutcome>,
    lag: Vec<LagSample>,
    failure_records: Vec<FailureRecord>,
    /// What the learner should see, checked against the data.
    expectations: Vec<Expectation>,
    details: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct Expectation {
    what: String,
    held: bool,
}

impl ScenarioReport {
    fn new(scenario: &'static str) -> Self {
        Self {
            scenario,
            settings: vec![],
            parts: vec![],
            lag: vec![],
            failure_records: vec![],
            expectations: vec![],
            details: serde_json::Value::Null,
        }
    }

    fn expect(&mut self, what: impl Into<String>, held: bool) {
        self.expectations.push(Expectation { what: what.into(), held });
    }

    fn show(&self, out: Output) {
        out.table(
            &format!("What {} should show, checked against the data:", self.scenario),
            &["expected", "held"],
            self.expectations.iter().map(|e| vec![e.what.clone(), if e.held { "yes" } else { "NO" }.to_owned()]),
        );
    }
}

/// What every scenario gets: the target, the names, its seed and event count.
struct Ctx<'a> {
    target: &'a Target,
    names: Names,
    seed: u64,
    count: usize,
    out: Output,
}

impl Ctx<'_> {
    fn produced(&self, namespace: &str) -> Produced {
        Produced { namespace: namespace.to_owned(), seed: self.seed, count: self.count }
    }
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    let names = Names::of(target);
    db::describe_table(&target.clients.dynamodb, &names.totals, "example-4").await?;
    let count = args.count.unwrap_or(DEFAULT_EVENTS);
    if count == 0 || count > MAX_EVENTS {
        bail!("--count must be between 1 and {MAX_EVENTS}");
    }
    let scenarios: Vec<Scenario> = match &args.scenario {
        Some(name) => vec![Scenario::from_name(name).with_context(|| format!("example-4 has no scenario '{name}'"))?],
        None => Scenario::ALL.to_vec(),
    };
    let recorded = recorded_parts(target, &names.events).await?;
    // A seed is used once per part: the same events twice would be one purchase produced twice.
    let seed = match args.seed {
        Some(seed) => {
            if let Some(taken) =
                recorded.iter().find(|p| p.seed == seed && scenarios.iter().any(|s| p.namespace.starts_with(s.name())))
            {
                bail!(
                    "{}:{seed} was produced already: choose another --seed (or leave it out for the next free one)",
                    taken.namespace
                );
            }
            seed
        }
        None => seeds::after_highest(recorded.iter().map(|p| p.seed))?,
    };
    let new_parts: usize = scenarios.iter().map(|s| if *s == Scenario::Poison { 2 } else { 1 }).sum();
    if recorded.len() + new_parts > MAX_PARTS {
        bail!(
            "{} holds {} recorded runs; Kinesis keeps 50 tags per stream: `labs down example-4` and `labs up example-4` start afresh",
            names.events,
            recorded.len()
        );
    }
    target.confirm(&format!("Produce {count} purchases per scenario into {}?", names.events))?;
    out.say(format!(
        "{} counts purchases from {} into {} (exactly once and naively, side by side).",
        target.name(PROCESSOR),
        names.events,
        names.totals
    ));
    let ctx = Ctx { target, names, seed, count, out };
    let mut reports = Vec::new();
    for scenario in scenarios {
        out.say(format!("\n=== example-4 / {} (seed {seed}) ===", scenario.name()));
        let report = match scenario {
            Scenario::Happy => happy::run(&ctx).await?,
            Scenario::Transient => transient::run(&ctx).await?,
            Scenario::Poison => poison::run(&ctx).await?,
            Scenario::PartialBatch => partial_batch::run(&ctx).await?,
            Scenario::Crash => crash::run(&ctx).await?,
            Scenario::SlowConsumer => slow_consumer::run(&ctx).await?,
        };
        report.show(out);
        reports.push(report);
    }
    out.say(format!("\nNext: labs verify example-4{}", prefix_flag(target)));
    out.json(&reports)
}

fn prefix_flag(target: &Target) -> String {
    if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
}

/// The common shape of the scenarios that produce one part and wait until all of it is counted.
async fn produce_and_count(
    ctx: &Ctx<'_>,
    namespace: &str,
    report: &mut ScenarioReport,
) -> Result<(Produced, Vec<Purchase>, Observed, StreamCopy)> {
    let produced = ctx.produced(namespace);
    let events = produce(ctx.target, &ctx.names, &produced, None).await?;
    let waited = wait_counted(ctx.target, &ctx.names, &events, events.len(), CATCH_UP, &mut report.lag).await?;
    let observed = Observed::read(ctx.target, &ctx.names).await?;
    let stream = StreamCopy::read(ctx.target, &ctx.names).await?;
    let outcome = PartOutcome::of(&produced, &events, &observed, &stream, waited.map(|d| d.as_secs_f64()));
    ctx.out.table(&format!("{namespace}: what the data says"), &["", ""], outcome.rows());
    report.expect("every event is counted exactly once in total/count", outcome.counted == events.len());
    report.parts.push(outcome);
    Ok((produced, events, observed, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_records_are_read_in_aws_shape_and_cover_their_range_numerically() {
        let body = r#"{"requestContext":{"requestId":"r","functionArn":"arn:f","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},
            "responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},
            "version":"1.0","timestamp":"2026-01-01T00:00:00.000Z",
            "KinesisBatchInfo":{"shardId":"shardId-000000000001","startSequenceNumber":"99","endSequenceNumber":"105",
            "approximateArrivalOfFirstRecord":"x","approximateArrivalOfLastRecord":"y","batchSize":3,"streamArn":"arn:s"}}"#;
        let record = FailureRecord::parse(body).unwrap();
        assert_eq!(record.condition, "RetryAttemptsExhausted");
        assert_eq!(record.batch_size, 3);
        assert!(record.covers("shardId-000000000001", "100"), "100 lies between 99 and 105 as numbers");
        assert!(!record.covers("shardId-000000000001", "1000"));
        assert!(!record.covers("shardId-000000000000", "100"));
        assert!(
            FailureRecord::parse(r#"{"KinesisBatchInfo":{"shardId":"s"}}"#)
                .unwrap_err()
                .contains("startSequenceNumber")
        );
        assert!(FailureRecord::parse("not json").is_err());
    }

    #[test]
    fn every_part_regenerates_its_fault() {
        for part in PARTS {
            let events = Produced { namespace: part.namespace.into(), seed: 3, count: 30 }.events().unwrap();
            assert_eq!(
                events.iter().filter_map(|e| e.fault).collect::<Vec<_>>(),
                part.fault.into_iter().collect::<Vec<_>>()
            );
            assert!(events.iter().all(|e| e.event_id.starts_with(&format!("{}3-", part.namespace))));
        }
        assert!(Produced { namespace: "nope".into(), seed: 1, count: 1 }.events().is_err());
    }
}
