//! Stream triggers with AWS's error semantics on every target. On AWS, Lambda's own event
//! source mappings run them. On an emulator (embedded or `--endpoint-url`), where the mappings
//! lack retry limits, bisect and on-failure destinations, `labs up` creates the real mapping
//! disabled and labs' runner (`labs-triggers`) executes it, in a background process per endpoint
//! and prefix (`process.rs`, `serve.rs`), with the settings the declaration gives, kept in a
//! settings row of the `<prefix>-triggers-checkpoints` table (`rows.rs`).
//!
//! A stream mapping opts in with `runner = true`; one that uses what emulators lack (tumbling
//! windows, `FilterCriteria`, `AT_TIMESTAMP`: MiniStack stores no window, reads `AT_TIMESTAMP` as
//! `LATEST` and filters its own way) goes to the runner on an emulator anyway. The others keep
//! the endpoint's own mappings. `--endpoint-mappings` keeps them all there. The
//! table belongs to a stack of its own ([`TABLE_STACK`]), shared by every example of a prefix
//! whose mappings the runner executes: the first `up` of one provisions it, the `down` that
//! leaves the prefix without a runner mapping removes it (after stopping the runner).

mod process;
pub mod rows;
mod serve;
mod set;
mod status;

use anyhow::{Context, Result, bail};
use labs_infra::stack::{self, EventSourceMapping, FailureDestination, MappingSource, Stack, Table};
use labs_infra::{Engine, SdkContext};

pub use process::{log_path, stop_all_on};
pub use rows::MappingRow;
pub use serve::serve;
pub use set::{Changes, set};
pub use status::{MappingStatus, status};

use crate::target::Target;

/// The runner's table: checkpoints, shard status and settings rows, declared by [`TABLE_STACK`].
pub const CHECKPOINTS: Table = Table::new("triggers-checkpoints");

/// The stack that declares [`CHECKPOINTS`]: one per prefix, whichever examples use the runner
/// (the engine gives each resource one owning example, so no example stack may declare it).
pub const TABLE_STACK: &str = "triggers";

/// Who executes a stack's stream mappings on this target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// labs' runner, from the settings rows; the real mappings exist, disabled.
    Runner,
    /// The target's own event source mappings (AWS, or an endpoint by choice).
    Target,
}

impl Executor {
    pub fn describe(self) -> &'static str {
        match self {
            Executor::Runner => "labs runner",
            Executor::Target => "the target's mapping",
        }
    }
}

pub fn executor(target: &Target, stack: &Stack) -> Executor {
    if target.kind.is_aws() || target.endpoint_mappings || runner_mappings(stack).next().is_none() {
        Executor::Target
    } else {
        Executor::Runner
    }
}

fn stream_mappings(stack: &Stack) -> impl Iterator<Item = &EventSourceMapping> {
    stack.event_source_mappings.iter().filter(|m| m.reads_a_stream())
}

/// Whether the runner executes a stream mapping on an emulator: it opts in (`runner = true`), or
/// it needs what only the runner gives there (tumbling windows, filters, `AT_TIMESTAMP`).
fn on_runner(mapping: &EventSourceMapping) -> bool {
    mapping.reads_a_stream()
        && (mapping.runner
            || mapping.tumbling_window_seconds.is_some()
            || !mapping.filter_criteria.is_empty()
            || mapping.starting_position.as_deref() == Some("AT_TIMESTAMP"))
}

/// The stream mappings the runner executes on an emulator; queues never.
fn runner_mappings(stack: &Stack) -> impl Iterator<Item = &EventSourceMapping> {
    stream_mappings(stack).filter(|m| on_runner(m))
}

fn source_name(mapping: &EventSourceMapping) -> &str {
    match &mapping.source {
        MappingSource::KinesisStream(s) | MappingSource::DynamodbTableStream(s) | MappingSource::SqsQueue(s) => s,
    }
}

/// How the runner's table and `labs status` name a mapping: `<source> -> <function>`, full names.
pub fn mapping_id(prefix: &str, mapping: &EventSourceMapping) -> String {
    format!("{} -> {}", stack::full_name(prefix, source_name(mapping)), stack::full_name(prefix, &mapping.function))
}

/// The declaration the engine applies: where the runner executes the stream mappings, they are
/// created disabled (the emulator does not poll a disabled mapping, so nothing is delivered
/// twice).
pub fn for_engine(target: &Target, declared: &Stack) -> Stack {
    let mut stack = declared.clone();
    if executor(target, declared) == Executor::Runner {
        for mapping in stack.event_source_mappings.iter_mut().filter(|m| on_runner(m)) {
            mapping.enabled = false;
        }
    }
    stack
}

/// Before `up` creates anything: the settings of every stream mapping as the runner reads them
/// (filter patterns parsed), so a pattern AWS would refuse is one line, not a half-applied stack.
pub fn check(declared: &Stack) -> Result<()> {
    for mapping in stream_mappings(declared) {
        MappingRow::declared(mapping)?.settings().with_context(|| {
            format!("{}: the mapping {} -> {} is not valid", declared.example, source_name(mapping), mapping.function)
        })?;
    }
    Ok(())
}

/// After `up`: provisions the runner's table if the prefix has none yet, writes the settings row
/// of every stream mapping the runner executes (so a changed declaration changes the running
/// mapping) and starts the runner if it is not running.
pub async fn publish(target: &Target, declared: &Stack) -> Result<()> {
    if executor(target, declared) != Executor::Runner {
        return Ok(());
    }
    provision_table(target).await?;
    let table = target.name(CHECKPOINTS);
    let mut written = Vec::new();
    for mapping in runner_mappings(declared) {
        let id = mapping_id(&target.prefix, mapping);
        if !mapping.enabled {
            rows::forget(&target.clients.dynamodb, &table, &id).await?;
            continue;
        }
        let row = row_for(target, mapping).await?;
        rows::write(&target.clients.dynamodb, &table, &id, &row).await?;
        written.push(id);
    }
    let endpoint = target.endpoint().context("the runner only runs against an endpoint")?;
    process::ensure_running(endpoint, &target.prefix)?;
    // `up` returns once the runner runs the new settings, as UpdateEventSourceMapping is done once
    // the mapping is `Enabled` again: records produced next are not read under the old ones.
    let pending = rows::wait_applied(&target.clients.dynamodb, &table, &written, APPLY_LIMIT).await?;
    if !pending.is_empty() {
        crate::output::note(format!(
            "note: the stream-trigger runner has not taken the new settings of {} yet (`labs triggers logs`)",
            pending.join(", ")
        ));
    }
    Ok(())
}

/// How long `up` waits for the runner to run changed settings (it polls them every second).
const APPLY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Before `down` (or disconnecting sources): the runner stops the stack's mappings and forgets
/// their checkpoints.
pub async fn forget(target: &Target, declared: &Stack) -> Result<()> {
    if executor(target, declared) != Executor::Runner {
        return Ok(());
    }
    let table = target.name(CHECKPOINTS);
    for mapping in runner_mappings(declared) {
        rows::forget(&target.clients.dynamodb, &table, &mapping_id(&target.prefix, mapping)).await?;
    }
    Ok(())
}

/// After `down`: when this prefix has no runner mapping left, stops its runner and then removes
/// the runner's table (the runner first, so it never finds its table gone under it).
pub async fn stop_if_idle(target: &Target) -> Result<()> {
    let Some(endpoint) = target.endpoint() else { return Ok(()) };
    let left = rows::read_all(&target.clients.dynamodb, &target.name(CHECKPOINTS)).await?;
    match left {
        Some(mappings) if !mappings.is_empty() => Ok(()),
        None => {
            process::stop(endpoint, &target.prefix)?;
            Ok(())
        }
        Some(_) => {
            process::stop(endpoint, &target.prefix)?;
            let stack = stack::load(TABLE_STACK)?;
            let engine = Engine::connect(&target.clients, &target.prefix).await?;
            engine.destroy(&stack, &|_: &str| {}).await?;
            Ok(())
        }
    }
}

/// Creates the runner's table for the target's prefix unless it is there (its own stack, so
/// examples that share it never contest its ownership).
async fn provision_table(target: &Target) -> Result<()> {
    let stack = stack::load(TABLE_STACK)?;
    let engine = Engine::connect(&target.clients, &target.prefix).await?;
    let artifacts = Default::default();
    let plan = engine.plan(&stack, &artifacts).await?;
    plan.refuse_conflicts()?;
    if !plan.is_noop() {
        engine.apply(&stack, &plan, &artifacts, &|_: &str| {}).await?;
    }
    Ok(())
}

/// The runner's settings for a declared mapping, with the ARNs it needs.
async fn row_for(target: &Target, mapping: &EventSourceMapping) -> Result<MappingRow> {
    let clients = &target.clients;
    let function_name = stack::full_name(&target.prefix, &mapping.function);
    let function = clients
        .lambda
        .get_function()
        .function_name(&function_name)
        .send()
        .await
        .doing(format!("reading function {function_name}"))?;
    let configuration = function.configuration().context("the function has no configuration")?;
    let function_arn = configuration.function_arn().unwrap_or_default().to_owned();
    let role_arn = configuration.role().unwrap_or_default().to_owned();
    let source = stack::full_name(&target.prefix, source_name(mapping));
    let stream_arn = match &mapping.source {
        MappingSource::KinesisStream(_) => clients
            .kinesis
            .describe_stream_summary()
            .stream_name(&source)
            .send()
            .await
            .doing(format!("describing stream {source}"))?
            .stream_description_summary()
            .map(|s| s.stream_arn().to_owned()),
        MappingSource::DynamodbTableStream(_) => clients
            .dynamodb
            .describe_table()
            .table_name(&source)
            .send()
            .await
            .doing(format!("describing table {source}"))?
            .table()
            .and_then(|t| t.latest_stream_arn().map(str::to_owned)),
        MappingSource::SqsQueue(_) => None,
    }
    .with_context(|| format!("{source} has no stream"))?;
    // Same partition, region and account as the function: `arn:aws:lambda:<region>:<account>:...`.
    let parts: Vec<&str> = function_arn.split(':').collect();
    let (partition, region, account) = match parts.as_slice() {
        ["arn", partition, _, region, account, ..] => (partition.to_string(), region.to_string(), account.to_string()),
        _ => bail!("{function_name} has an unexpected ARN {function_arn:?}"),
    };
    let on_failure_destination = mapping.on_failure.as_ref().map(|destination| match destination {
        FailureDestination::SqsQueue(queue) => {
            format!("arn:{partition}:sqs:{region}:{account}:{}", stack::full_name(&target.prefix, queue))
        }
        FailureDestination::SnsTopic(topic) => {
            format!("arn:{partition}:sns:{region}:{account}:{}", stack::full_name(&target.prefix, topic))
        }
    });
    let row = MappingRow {
        stream_arn,
        function_arn,
        role_arn,
        region: region.clone(),
        on_failure_destination,
        ..MappingRow::declared(mapping)?
    };
    row.settings().with_context(|| format!("the mapping {} is not valid", mapping_id(&target.prefix, mapping)))?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_table_stack_declares_the_runner_table() {
        for name in stack::declared() {
            let stack = stack::load(name).unwrap();
            assert_eq!(stack.check(&CHECKPOINTS.any()).is_ok(), name == TABLE_STACK, "{name}");
        }
    }

    fn mapping(extra: &str) -> EventSourceMapping {
        let text = format!("function = \"f\"\nsource = {{ kinesis_stream = \"s\" }}\nbatch_size = 10\n{extra}");
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn windows_filters_and_timestamps_go_to_the_runner_even_without_opting_in() {
        assert!(!on_runner(&mapping("starting_position = \"LATEST\"")));
        assert!(on_runner(&mapping("starting_position = \"LATEST\"\nrunner = true")));
        assert!(on_runner(&mapping("starting_position = \"LATEST\"\ntumbling_window_seconds = 60")));
        assert!(on_runner(&mapping("starting_position = \"LATEST\"\nfilter_criteria = ['{\"data\": {\"a\": [1]}}']")));
        assert!(on_runner(&mapping("starting_position = \"AT_TIMESTAMP\"\nstarting_position_timestamp = 10")));
        let queue = EventSourceMapping {
            source: MappingSource::SqsQueue("q".into()),
            starting_position: None,
            filter_criteria: vec!["{}".into()],
            ..mapping("runner = true")
        };
        assert!(!on_runner(&queue), "queues never run on the runner");
    }

    #[test]
    fn every_declared_runner_mapping_gives_valid_runner_settings() {
        let mut on_the_runner = Vec::new();
        for name in stack::declared() {
            let stack = stack::load(name).unwrap();
            for mapping in runner_mappings(&stack) {
                let row = MappingRow {
                    stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/s".into(),
                    function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
                    role_arn: "arn:aws:iam::000000000000:role/r".into(),
                    region: "us-east-1".into(),
                    ..MappingRow::declared(mapping).unwrap()
                };
                let settings = row.settings().unwrap_or_else(|e| panic!("{name}: {e:#}"));
                assert_eq!(settings.tumbling_window_seconds, mapping.tumbling_window_seconds.unwrap_or(0) as u32);
                assert_eq!(settings.filter_criteria.patterns().len(), mapping.filter_criteria.len(), "{name}");
                on_the_runner.push(name);
            }
        }
        for expected in ["example-3", "example-4", "example-6", "triggers-bench-runner"] {
            assert!(on_the_runner.contains(&expected), "{expected} runs on the runner: {on_the_runner:?}");
        }
    }
}
