//! Stream triggers with AWS's error semantics on every target. On AWS, Lambda's own event
//! source mappings run them. On an emulator (embedded or `--endpoint-url`), where the mappings
//! lack retry limits, bisect and on-failure destinations, `labs up` creates the real mapping
//! disabled and labs' runner (`labs-triggers`) executes it, in a background process per endpoint
//! and prefix (`process.rs`, `serve.rs`), with the settings the declaration gives, kept in a
//! settings row of the `<prefix>-triggers-checkpoints` table (`rows.rs`).
//!
//! A stream mapping opts in with `runner = true`; the others (tumbling windows are not in the
//! runner yet) keep the endpoint's own mappings. `--endpoint-mappings` keeps them everywhere. The
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
    stack.event_source_mappings.iter().filter(|m| !matches!(m.source, MappingSource::SqsQueue(_)))
}

/// The stream mappings that opt in to the runner (`runner = true`); queues never do.
fn runner_mappings(stack: &Stack) -> impl Iterator<Item = &EventSourceMapping> {
    stream_mappings(stack).filter(|m| m.runner)
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
        for mapping in &mut stack.event_source_mappings {
            if mapping.runner && !matches!(mapping.source, MappingSource::SqsQueue(_)) {
                mapping.enabled = false;
            }
        }
    }
    stack
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
    for mapping in runner_mappings(declared) {
        if !mapping.enabled {
            rows::forget(&target.clients.dynamodb, &table, &mapping_id(&target.prefix, mapping)).await?;
            continue;
        }
        if mapping.tumbling_window_seconds.is_some() {
            bail!(
                "{}: the runner has no tumbling windows yet; drop `runner = true` from {} or use --endpoint-mappings",
                declared.example,
                mapping_id(&target.prefix, mapping)
            );
        }
        let row = row_for(target, mapping).await?;
        rows::write(&target.clients.dynamodb, &table, &mapping_id(&target.prefix, mapping), &row).await?;
    }
    let endpoint = target.endpoint().context("the runner only runs against an endpoint")?;
    process::ensure_running(endpoint, &target.prefix)
}

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
        starting_position: mapping.starting_position.clone().unwrap_or_else(|| "TRIM_HORIZON".to_owned()),
        batch_size: u32::try_from(mapping.batch_size).context("a negative batch size")?,
        batching_window_seconds: u32::try_from(mapping.maximum_batching_window_seconds)
            .context("a negative batching window")?,
        parallelization_factor: u32::try_from(mapping.parallelization_factor.unwrap_or(1))
            .context("a negative parallelization factor")?,
        maximum_retry_attempts: i64::from(mapping.maximum_retry_attempts.unwrap_or(-1)),
        maximum_record_age_seconds: i64::from(mapping.maximum_record_age_seconds.unwrap_or(-1)),
        bisect_batch_on_function_error: mapping.bisect_batch_on_function_error,
        report_batch_item_failures: mapping.report_batch_item_failures,
        on_failure_destination,
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

    #[test]
    fn runner_mappings_are_stream_mappings_without_windows() {
        let mut opted_in = Vec::new();
        for name in stack::declared() {
            let stack = stack::load(name).unwrap();
            for mapping in stack.event_source_mappings.iter().filter(|m| m.runner) {
                assert!(!matches!(mapping.source, MappingSource::SqsQueue(_)), "{name}: a queue mapping opts in");
                assert!(mapping.tumbling_window_seconds.is_none(), "{name}: the runner has no tumbling windows");
                opted_in.push(name);
            }
        }
        for expected in ["example-3", "example-4", "triggers-bench-runner"] {
            assert!(opted_in.contains(&expected), "{expected} runs on the runner: {opted_in:?}");
        }
    }
}
