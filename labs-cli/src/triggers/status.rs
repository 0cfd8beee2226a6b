//! What `labs status` shows about stream mappings: who runs each, its settings, and per shard
//! (where the runner runs it) the checkpoint, iterator age, retries in progress, last result,
//! batches sent to the on-failure destination and the open tumbling window.

use anyhow::Result;
use labs_infra::stack::{self, Stack};
use serde::Serialize;

use super::rows::{self, ShardRow};
use super::{CHECKPOINTS, Executor, executor, mapping_id, on_runner, process, stream_mappings};
use crate::target::Target;

#[derive(Debug, Serialize)]
pub struct MappingStatus {
    pub mapping: String,
    /// `labs runner` or `the target's mapping`.
    pub run_by: &'static str,
    /// The runner's process, when it runs the mapping.
    pub runner_pid: Option<i32>,
    pub settings: String,
    /// Where the iterator age comes from, or why there is none.
    pub iterator_age_source: &'static str,
    pub shards: Vec<ShardRow>,
}

/// Every stream mapping of `stacks` that exists under the target's prefix.
pub async fn status(target: &Target, stacks: &[Stack]) -> Result<Vec<MappingStatus>> {
    let mut found = Vec::new();
    let runner_pid = target.endpoint().and_then(|endpoint| process::running_pid(endpoint, &target.prefix));
    if target.endpoint().is_some() {
        let table = target.name(CHECKPOINTS);
        for (id, row, shards) in rows::read_all(&target.clients.dynamodb, &table).await?.unwrap_or_default() {
            found.push(MappingStatus {
                mapping: id,
                run_by: Executor::Runner.describe(),
                runner_pid,
                settings: row.describe(),
                iterator_age_source: "MillisBehindLatest of the runner's last read",
                shards,
            });
        }
    }
    for stack in stacks {
        let runner_executes = executor(target, stack) == Executor::Runner;
        for mapping in stream_mappings(stack).filter(|m| !(runner_executes && on_runner(m))) {
            let function = stack::full_name(&target.prefix, &mapping.function);
            let Ok(listed) = target.clients.lambda.list_event_source_mappings().function_name(&function).send().await
            else {
                continue; // the function does not exist: not provisioned
            };
            let Some(real) = listed.event_source_mappings().iter().find(|m| {
                m.function_arn().is_some_and(|f| f.ends_with(&format!(":function:{function}")))
                    && m.event_source_arn().is_some_and(|a| a.contains(":kinesis:") || a.contains("/stream/"))
            }) else {
                continue;
            };
            let mut settings = format!(
                "{}, batch {}, retries {}, max age {}, bisect {}, parallel {}",
                real.state().unwrap_or("?"),
                real.batch_size().unwrap_or_default(),
                real.maximum_retry_attempts().unwrap_or(-1),
                real.maximum_record_age_in_seconds().unwrap_or(-1),
                if real.bisect_batch_on_function_error().unwrap_or(false) { "on" } else { "off" },
                real.parallelization_factor().unwrap_or(1),
            );
            if let Some(window) = real.tumbling_window_in_seconds().filter(|w| *w > 0) {
                settings.push_str(&format!(", {window} s tumbling windows"));
            }
            let filters = real.filter_criteria().map_or(0, |f| f.filters().len());
            if filters > 0 {
                settings.push_str(&format!(", {filters} filter patterns"));
            }
            found.push(MappingStatus {
                mapping: mapping_id(&target.prefix, mapping),
                run_by: Executor::Target.describe(),
                runner_pid: None,
                settings,
                iterator_age_source: if target.kind.is_aws() {
                    "n/a: labs does not read CloudWatch's IteratorAge (see the Lambda console's monitoring tab)"
                } else {
                    "n/a: the endpoint's mappings report none"
                },
                shards: Vec::new(),
            });
        }
    }
    Ok(found)
}
