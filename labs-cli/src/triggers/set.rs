//! `labs triggers set`: one call that changes a stream mapping's settings wherever it runs: the
//! runner's settings row (picked up within a second or so), or the real mapping
//! (`UpdateEventSourceMapping`) on AWS or with `--endpoint-mappings`.

use anyhow::{Context, Result, bail};
use labs_infra::SdkContext;
use labs_infra::stack;

use super::CHECKPOINTS;
use super::rows::{self, MappingRow};
use crate::target::Target;

/// The settings to change; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub bisect: Option<bool>,
    pub max_retries: Option<i64>,
    pub max_record_age: Option<i64>,
    pub parallelization: Option<u32>,
    pub batch_size: Option<u32>,
    pub report_batch_item_failures: Option<bool>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.bisect.is_none()
            && self.max_retries.is_none()
            && self.max_record_age.is_none()
            && self.parallelization.is_none()
            && self.batch_size.is_none()
            && self.report_batch_item_failures.is_none()
    }

    fn apply(&self, row: &mut MappingRow) {
        if let Some(on) = self.bisect {
            row.bisect_batch_on_function_error = on;
        }
        if let Some(n) = self.max_retries {
            row.maximum_retry_attempts = n;
        }
        if let Some(n) = self.max_record_age {
            row.maximum_record_age_seconds = n;
        }
        if let Some(n) = self.parallelization {
            row.parallelization_factor = n;
        }
        if let Some(n) = self.batch_size {
            row.batch_size = n;
        }
        if let Some(on) = self.report_batch_item_failures {
            row.report_batch_item_failures = on;
        }
    }
}

/// The function a mapping argument names: `<source> -> <function>`, a full name, or a name as
/// the stack declares it.
fn function_of(target: &Target, mapping: &str) -> String {
    if let Some((_, function)) = mapping.split_once(" -> ") {
        return function.to_owned();
    }
    if mapping.starts_with(&format!("{}-", target.prefix)) {
        mapping.to_owned()
    } else {
        stack::full_name(&target.prefix, mapping)
    }
}

/// Applies `changes` and returns the mapping's id and its settings afterwards, in a line.
pub async fn set(target: &Target, mapping: &str, changes: &Changes) -> Result<(String, String)> {
    if changes.is_empty() {
        bail!(
            "nothing to change: pass --bisect, --max-retries, --max-record-age, --parallelization, --batch-size or --report-batch-item-failures"
        );
    }
    let function = function_of(target, mapping);
    if target.endpoint().is_some() && !target.endpoint_mappings {
        let table = target.name(CHECKPOINTS);
        let found = rows::read_all(&target.clients.dynamodb, &table).await?.unwrap_or_default();
        let Some((id, mut row, _)) =
            found.into_iter().find(|(id, _, _)| id == mapping || id.ends_with(&format!(" -> {function}")))
        else {
            bail!(
                "labs' runner executes no mapping of {function} with prefix {}: run `labs up` for its example first",
                target.prefix
            );
        };
        changes.apply(&mut row);
        row.settings().with_context(|| format!("refused: {id}"))?;
        rows::write(&target.clients.dynamodb, &table, &id, &row).await?;
        return Ok((id, row.describe()));
    }
    update_real_mapping(target, &function, changes).await
}

async fn update_real_mapping(target: &Target, function: &str, changes: &Changes) -> Result<(String, String)> {
    let lambda = &target.clients.lambda;
    let listed = lambda
        .list_event_source_mappings()
        .function_name(function)
        .send()
        .await
        .doing(format!("listing the event source mappings of {function}"))?;
    let Some(current) = listed.event_source_mappings().iter().find(|m| {
        m.event_source_arn().is_some_and(|arn| arn.contains(":kinesis:") || arn.contains("/stream/"))
            && m.function_arn().is_some_and(|f| f.ends_with(&format!(":function:{function}")))
    }) else {
        bail!("{function} has no stream event source mapping: run `labs up` for its example first");
    };
    let uuid = current.uuid().unwrap_or_default();
    let mut update = lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .set_bisect_batch_on_function_error(changes.bisect)
        .set_maximum_retry_attempts(changes.max_retries.map(|n| n as i32))
        .set_maximum_record_age_in_seconds(changes.max_record_age.map(|n| n as i32))
        .set_parallelization_factor(changes.parallelization.map(|n| n as i32))
        .set_batch_size(changes.batch_size.map(|n| n as i32));
    if let Some(on) = changes.report_batch_item_failures {
        let types =
            if on { vec![aws_sdk_lambda::types::FunctionResponseType::ReportBatchItemFailures] } else { vec![] };
        update = update.set_function_response_types(Some(types));
    }
    let updated = update.send().await.doing(format!("updating the event source mapping of {function}"))?;
    let id = format!("{} -> {function}", updated.event_source_arn().unwrap_or("?"));
    let settings = format!(
        "batch {}, retries {}, max age {}, bisect {}, parallel {}",
        updated.batch_size().unwrap_or_default(),
        updated.maximum_retry_attempts().unwrap_or(-1),
        updated.maximum_record_age_in_seconds().unwrap_or(-1),
        updated.bisect_batch_on_function_error().unwrap_or(false),
        updated.parallelization_factor().unwrap_or(1),
    );
    Ok((id, settings))
}
