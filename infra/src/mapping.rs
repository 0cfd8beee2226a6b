//! Event source mappings: what feeds a Lambda function from a Kinesis stream, a DynamoDB table's
//! stream or an SQS queue. A mapping has no name on AWS, only a UUID; it is found by its two ends
//! and is ours only if its own tags say so.

use anyhow::{Context, Result, bail};
use aws_sdk_lambda::types::{
    DestinationConfig, EventSourceMappingConfiguration, EventSourcePosition, Filter, FilterCriteria,
    FunctionResponseType, OnFailure,
};
use aws_smithy_types::DateTime;

use crate::model::{Action, Change, Ctx, Kind, Removal, resource};
use crate::sdk_error::{ErrorClass, SdkContext, SdkOutcome};
use crate::stack::{EventSourceMapping, FailureDestination, MappingSource};
use crate::{poll, sns, sqs};

resource!(
    EventSourceMapping,
    Kind::EventSourceMapping,
    name = mapping_name,
    plan = plan,
    apply = apply,
    destroy = destroy,
);

/// How a mapping is named in plans and reports.
fn mapping_name(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> String {
    let source = match &spec.source {
        MappingSource::KinesisStream(s) | MappingSource::DynamodbTableStream(s) | MappingSource::SqsQueue(s) => {
            ctx.vars.name(s)
        }
    };
    format!("{source} -> {}", ctx.vars.name(&spec.function))
}

/// The ARN of the stream or queue a mapping reads.
async fn source_arn(ctx: &Ctx<'_>, source: &MappingSource) -> Result<Option<String>> {
    match source {
        MappingSource::KinesisStream(stream) => {
            let name = ctx.vars.name(stream);
            let out = ctx
                .clients
                .kinesis
                .describe_stream_summary()
                .stream_name(&name)
                .send()
                .await
                .or_absent(format!("describing Kinesis stream {name}"))?;
            Ok(out.and_then(|out| out.stream_description_summary.map(|s| s.stream_arn)))
        }
        MappingSource::DynamodbTableStream(table) => {
            let name = ctx.vars.name(table);
            Ok(crate::dynamodb::describe(ctx, &name).await?.and_then(|t| t.latest_stream_arn))
        }
        MappingSource::SqsQueue(queue) => crate::sqs::queue_arn(ctx, &ctx.vars.name(queue)).await,
    }
}

/// `FilterCriteria` as Lambda takes it; with no patterns, an empty one (which removes filters).
fn filter_criteria(spec: &EventSourceMapping) -> FilterCriteria {
    let filters = spec.filter_criteria.iter().map(|pattern| Filter::builder().pattern(pattern).build());
    FilterCriteria::builder().set_filters((!spec.filter_criteria.is_empty()).then(|| filters.collect())).build()
}

/// Filter patterns compared as JSON, so a service that reformats them shows no drift.
fn same_patterns(current: &[Filter], declared: &[String]) -> bool {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let mut current: Vec<_> = current.iter().map(|f| f.pattern().and_then(parse)).collect();
    let mut declared: Vec<_> = declared.iter().map(|p| parse(p)).collect();
    let key = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    current.sort_by_key(key);
    declared.sort_by_key(key);
    current == declared
}

async fn find_mapping(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> Result<Option<EventSourceMappingConfiguration>> {
    let Some(arn) = source_arn(ctx, &spec.source).await? else {
        return Ok(None);
    };
    let function = ctx.vars.name(&spec.function);
    let function_suffix = format!(":function:{function}");
    let mut pages =
        ctx.clients.lambda.list_event_source_mappings().function_name(&function).into_paginator().items().send();
    while let Some(mapping) = pages.next().await {
        let Some(mapping) = mapping.or_absent(format!("listing event source mappings of {function}"))? else {
            return Ok(None);
        };
        // Some emulators ignore the function filter: check both ends ourselves.
        if mapping.event_source_arn() == Some(arn.as_str())
            && mapping.function_arn().is_some_and(|f| f.ends_with(&function_suffix))
        {
            return Ok(Some(mapping));
        }
    }
    Ok(None)
}

/// The mapping's ARN, which tags are read and written through.
fn mapping_arn(ctx: &Ctx<'_>, mapping: &EventSourceMappingConfiguration) -> String {
    match mapping.event_source_mapping_arn() {
        Some(arn) => arn.to_owned(),
        None => ctx.vars.expand(&format!(
            "arn:${{partition}}:lambda:${{region}}:${{account}}:event-source-mapping:{}",
            mapping.uuid().unwrap_or_default()
        )),
    }
}

/// The mapping's own tags, or `None` when it went while we asked.
async fn tags(ctx: &Ctx<'_>, name: &str, arn: &str) -> Result<Option<Vec<(String, String)>>> {
    let out = ctx
        .clients
        .lambda
        .list_tags()
        .resource(arn)
        .send()
        .await
        .or_absent(format!("reading tags of event source mapping {name}"))?;
    Ok(out.map(|out| out.tags.unwrap_or_default().into_iter().collect()))
}

/// The ARN of the queue or topic a stream mapping records failed batches in.
fn failure_destination(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> Option<String> {
    spec.on_failure.as_ref().map(|destination| match destination {
        FailureDestination::SqsQueue(queue) => sqs::arn_of(ctx, &ctx.vars.name(queue)),
        FailureDestination::SnsTopic(topic) => sns::topic_arn(ctx, &ctx.vars.name(topic)),
    })
}

/// The destination setting as Lambda takes it; an empty `OnFailure` removes one.
fn destination_config(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> DestinationConfig {
    let on_failure = OnFailure::builder().set_destination(failure_destination(ctx, spec)).build();
    DestinationConfig::builder().on_failure(on_failure).build()
}

/// The state a mapping settles in once created or updated.
fn settled_state(spec: &EventSourceMapping) -> &'static str {
    if spec.enabled { "Enabled" } else { "Disabled" }
}

fn response_types(spec: &EventSourceMapping) -> Vec<FunctionResponseType> {
    if spec.report_batch_item_failures { vec![FunctionResponseType::ReportBatchItemFailures] } else { vec![] }
}

fn drift(ctx: &Ctx<'_>, spec: &EventSourceMapping, current: &EventSourceMappingConfiguration) -> Vec<&'static str> {
    let mut drift = Vec::new();
    let enabled = !matches!(current.state(), Some("Disabled" | "Disabling"));
    if enabled != spec.enabled {
        drift.push("enabled");
    }
    if current.batch_size() != Some(spec.batch_size) {
        drift.push("batch size");
    }
    if current.maximum_batching_window_in_seconds().unwrap_or(0) != spec.maximum_batching_window_seconds {
        drift.push("batching window");
    }
    if current.bisect_batch_on_function_error().unwrap_or(false) != spec.bisect_batch_on_function_error {
        drift.push("bisect");
    }
    if current.maximum_retry_attempts().unwrap_or(-1) != spec.maximum_retry_attempts.unwrap_or(-1) {
        drift.push("retry attempts");
    }
    if current.function_response_types() != response_types(spec).as_slice() {
        drift.push("response types");
    }
    if spec.reads_a_stream() {
        if current.parallelization_factor().unwrap_or(1) != spec.parallelization_factor.unwrap_or(1) {
            drift.push("parallelization factor");
        }
        if current.maximum_record_age_in_seconds().unwrap_or(-1) != spec.maximum_record_age_seconds.unwrap_or(-1) {
            drift.push("maximum record age");
        }
        let destination = current.destination_config().and_then(|d| d.on_failure()).and_then(|o| o.destination());
        if destination != failure_destination(ctx, spec).as_deref() {
            drift.push("on-failure destination");
        }
        // Compared only where the service reports it: some emulators do not store it.
        if let Some(window) = current.tumbling_window_in_seconds()
            && window != spec.tumbling_window_seconds.unwrap_or(0)
        {
            drift.push("tumbling window");
        }
    }
    // A mapping without filters has no `FilterCriteria` in the answer.
    if !same_patterns(current.filter_criteria().map_or(&[], |f| f.filters()), &spec.filter_criteria) {
        drift.push("filter criteria");
    }
    drift
}

fn settings(spec: &EventSourceMapping) -> String {
    let mut settings = match (&spec.starting_position, spec.starting_position_timestamp) {
        (Some(position), Some(seconds)) => format!("from {position} {seconds}, batch {}", spec.batch_size),
        (Some(position), None) => format!("from {position}, batch {}", spec.batch_size),
        (None, _) => format!("batch {}", spec.batch_size),
    };
    if spec.bisect_batch_on_function_error {
        settings.push_str(", bisect on error");
    }
    if let Some(retries) = spec.maximum_retry_attempts {
        settings.push_str(&format!(", {retries} retries"));
    }
    if spec.report_batch_item_failures {
        settings.push_str(", partial batch responses");
    }
    if let Some(factor) = spec.parallelization_factor {
        settings.push_str(&format!(", {factor} batches per shard at once"));
    }
    if let Some(age) = spec.maximum_record_age_seconds {
        settings.push_str(&format!(", records older than {age} s skipped"));
    }
    if let Some(window) = spec.tumbling_window_seconds {
        settings.push_str(&format!(", {window} s tumbling window"));
    }
    if !spec.filter_criteria.is_empty() {
        settings.push_str(&format!(", {} filter patterns", spec.filter_criteria.len()));
    }
    if let Some(destination) = &spec.on_failure {
        let (FailureDestination::SqsQueue(name) | FailureDestination::SnsTopic(name)) = destination;
        settings.push_str(&format!(", failed batches to {name}"));
    }
    if !spec.enabled {
        settings.push_str(", disabled");
    }
    settings
}

async fn plan(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> Result<Change> {
    let name = mapping_name(ctx, spec);
    let mut action = Action::Create;
    if let Some(current) = find_mapping(ctx, spec).await?
        && let Some(tags) = tags(ctx, &name, &mapping_arn(ctx, &current)).await?
    {
        action = ctx.conflict_unless_owned(&tags).unwrap_or_else(|| {
            let drift = drift(ctx, spec, &current);
            if drift.is_empty() { Action::Unchanged } else { Action::Update(drift.join(", ")) }
        });
    }
    Ok(Change { kind: Kind::EventSourceMapping, name, action, settings: settings(spec) })
}

async fn apply(ctx: &Ctx<'_>, spec: &EventSourceMapping, action: &Action) -> Result<()> {
    let name = mapping_name(ctx, spec);
    let uuid = match action {
        Action::Create => create(ctx, spec, &name).await?,
        Action::Update(_) => {
            let current = find_mapping(ctx, spec).await?.context("the mapping vanished while updating it")?;
            let uuid = current.uuid().unwrap_or_default().to_owned();
            update(ctx, spec, &name, &uuid).await?;
            uuid
        }
        Action::Unchanged | Action::Conflict(_) => return Ok(()),
    };
    wait_state(ctx, &uuid, settled_state(spec)).await
}

async fn create(ctx: &Ctx<'_>, spec: &EventSourceMapping, name: &str) -> Result<String> {
    let lambda = &ctx.clients.lambda;
    let Some(arn) = source_arn(ctx, &spec.source).await? else {
        bail!("the source of {name} does not exist");
    };
    let stream = spec.reads_a_stream();
    let created = lambda
        .create_event_source_mapping()
        .function_name(ctx.vars.name(&spec.function))
        .event_source_arn(arn)
        .set_starting_position(spec.starting_position.as_deref().map(EventSourcePosition::from))
        .set_starting_position_timestamp(spec.starting_position_timestamp.map(DateTime::from_secs_f64))
        .set_filter_criteria((!spec.filter_criteria.is_empty()).then(|| filter_criteria(spec)))
        .batch_size(spec.batch_size)
        .maximum_batching_window_in_seconds(spec.maximum_batching_window_seconds)
        .set_bisect_batch_on_function_error(stream.then_some(spec.bisect_batch_on_function_error))
        .set_function_response_types(Some(response_types(spec)))
        .set_maximum_retry_attempts(spec.maximum_retry_attempts.filter(|_| stream))
        .set_parallelization_factor(spec.parallelization_factor.filter(|_| stream))
        .set_maximum_record_age_in_seconds(spec.maximum_record_age_seconds.filter(|_| stream))
        .set_tumbling_window_in_seconds(spec.tumbling_window_seconds.filter(|_| stream))
        .set_destination_config(spec.on_failure.as_ref().map(|_| destination_config(ctx, spec)))
        .enabled(spec.enabled)
        .set_tags(Some(ctx.tags().into_iter().collect()))
        .send()
        .await
        .tolerating(&[ErrorClass::AlreadyExists], format!("creating event source mapping {name}"))?;
    let current = find_mapping(ctx, spec).await?.context("the mapping vanished while creating it")?;
    let uuid = current.uuid().unwrap_or_default().to_owned();
    let arn = mapping_arn(ctx, &current);
    let tags = tags(ctx, name, &arn).await?.unwrap_or_default();
    if created.is_err() {
        // Created since the plan was made: ours only if its tags say so.
        if let Err(reason) = ctx.owns(&tags) {
            bail!("event source mapping {name} appeared while applying and is not ours: {reason}");
        }
        update(ctx, spec, name, &uuid).await?;
        return Ok(uuid);
    }
    let missing = ctx.missing_tags(&tags);
    if !missing.is_empty() {
        lambda
            .tag_resource()
            .resource(&arn)
            .set_tags(Some(missing.into_iter().collect()))
            .send()
            .await
            .doing(format!("tagging event source mapping {name}"))?;
    }
    Ok(uuid)
}

async fn update(ctx: &Ctx<'_>, spec: &EventSourceMapping, name: &str, uuid: &str) -> Result<()> {
    let stream = spec.reads_a_stream();
    ctx.clients
        .lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .batch_size(spec.batch_size)
        .maximum_batching_window_in_seconds(spec.maximum_batching_window_seconds)
        .set_bisect_batch_on_function_error(stream.then_some(spec.bisect_batch_on_function_error))
        .set_function_response_types(Some(response_types(spec)))
        .set_maximum_retry_attempts(stream.then(|| spec.maximum_retry_attempts.unwrap_or(-1)))
        .set_parallelization_factor(stream.then(|| spec.parallelization_factor.unwrap_or(1)))
        .set_maximum_record_age_in_seconds(stream.then(|| spec.maximum_record_age_seconds.unwrap_or(-1)))
        .set_tumbling_window_in_seconds(stream.then(|| spec.tumbling_window_seconds.unwrap_or(0)))
        .filter_criteria(filter_criteria(spec))
        .set_destination_config(stream.then(|| destination_config(ctx, spec)))
        .enabled(spec.enabled)
        .send()
        .await
        .doing(format!("updating event source mapping {name}"))?;
    Ok(())
}

/// The mapping's state ("Creating", "Enabled", "Deleting", ...), or `None` once it is gone.
async fn state(ctx: &Ctx<'_>, uuid: &str) -> Result<Option<String>> {
    let out = ctx
        .clients
        .lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .or_absent(format!("reading event source mapping {uuid}"))?;
    Ok(out.map(|out| out.state().unwrap_or("Enabled").to_owned()))
}

/// Lambda has no waiter for mappings: ask until it settles in `wanted`.
async fn wait_state(ctx: &Ctx<'_>, uuid: &str, wanted: &str) -> Result<()> {
    let what = format!("waiting for event source mapping {uuid} to be {wanted}");
    poll::until(what, poll::LIMIT, || async { Ok(state(ctx, uuid).await?.as_deref() == Some(wanted)) }).await
}

async fn destroy(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> Result<Removal> {
    let name = mapping_name(ctx, spec);
    let Some(current) = find_mapping(ctx, spec).await? else {
        return Ok(Removal::Absent);
    };
    let Some(tags) = tags(ctx, &name, &mapping_arn(ctx, &current)).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(&tags) {
        return Ok(Removal::LeftAlone(reason));
    }
    let uuid = current.uuid().unwrap_or_default().to_owned();
    let deleted = ctx
        .clients
        .lambda
        .delete_event_source_mapping()
        .uuid(&uuid)
        .send()
        .await
        // In use: already deleting (an interrupted earlier run); wait for it below.
        .tolerating(&[ErrorClass::NotFound, ErrorClass::InUse], format!("deleting event source mapping {name}"))?;
    if matches!(deleted, Err(ErrorClass::NotFound)) {
        return Ok(Removal::Absent);
    }
    poll::until(format!("waiting for event source mapping {name} to go"), poll::LIMIT, || async {
        Ok(state(ctx, &uuid).await?.is_none())
    })
    .await?;
    Ok(Removal::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pattern: &str) -> Filter {
        Filter::builder().pattern(pattern).build()
    }

    #[test]
    fn filter_patterns_compare_as_json_in_any_order() {
        let declared = vec![r#"{"data": {"kind": ["reading"]}}"#.to_owned(), r#"{"data": {"v": [1]}}"#.to_owned()];
        let reformatted = [filter(r#"{"data":{"v":[1]}}"#), filter(r#"{ "data" : { "kind" : [ "reading" ] } }"#)];
        assert!(same_patterns(&reformatted, &declared));
        assert!(!same_patterns(&reformatted[..1], &declared), "one pattern missing");
        assert!(!same_patterns(&[filter(r#"{"data":{"v":[2]}}"#), reformatted[1].clone()], &declared));
        assert!(same_patterns(&[], &[]));
    }
}
