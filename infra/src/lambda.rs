use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, EventSourceMappingConfiguration, EventSourcePosition, FunctionCode,
    FunctionConfiguration, FunctionResponseType, Runtime,
};

use crate::engine::{Action, Change, Ctx, Kind, Removal};
use crate::iam;
use crate::stack::{EventSourceMapping, Function, MappingSource};
use crate::{SdkContext, WaitContext};

const WAIT: Duration = Duration::from_secs(300);
/// The environment variable that records which build a function runs.
pub const CODE_HASH_VAR: &str = "LABS_CODE_SHA256";

/// The declared environment, without the code hash.
fn declared_environment(ctx: &Ctx<'_>, spec: &Function) -> BTreeMap<String, String> {
    let mut variables: BTreeMap<String, String> =
        spec.environment.iter().map(|(k, v)| (k.clone(), ctx.vars.expand(v))).collect();
    variables.insert("LABS_EXAMPLE".to_owned(), ctx.example.to_owned());
    variables
}

fn environment(ctx: &Ctx<'_>, spec: &Function) -> Result<BTreeMap<String, String>> {
    let artifact = ctx
        .artifacts
        .get(&spec.package)
        .with_context(|| format!("no build of lambdas/{} was supplied", spec.package))?;
    let mut variables = declared_environment(ctx, spec);
    variables.insert(CODE_HASH_VAR.to_owned(), artifact.code_sha256.clone());
    Ok(variables)
}

async fn get_function(
    ctx: &Ctx<'_>,
    name: &str,
) -> Result<Option<aws_sdk_lambda::operation::get_function::GetFunctionOutput>> {
    match ctx.clients.lambda.get_function().function_name(name).send().await {
        Ok(out) => Ok(Some(out)),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
        Err(err) => Err(err).doing(format!("reading Lambda function {name}")),
    }
}

/// What differs between a deployed function and its declaration, if anything.
/// Without a build to compare with (`labs status` only asks what exists), the code is left out.
fn function_drift(ctx: &Ctx<'_>, spec: &Function, current: &FunctionConfiguration) -> Result<Vec<&'static str>> {
    let mut deployed: BTreeMap<String, String> = current
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut drift = Vec::new();
    let wanted = if ctx.artifacts.contains_key(&spec.package) {
        let wanted = environment(ctx, spec)?;
        if deployed.get(CODE_HASH_VAR) != wanted.get(CODE_HASH_VAR) {
            drift.push("code");
        }
        wanted
    } else {
        deployed.remove(CODE_HASH_VAR);
        declared_environment(ctx, spec)
    };
    if deployed != wanted {
        drift.push("environment");
    }
    if current.timeout() != Some(spec.timeout_seconds) {
        drift.push("timeout");
    }
    if current.memory_size() != Some(spec.memory_mb) {
        drift.push("memory");
    }
    if current.role() != Some(iam::role_arn(ctx, &spec.role).as_str()) {
        drift.push("role");
    }
    Ok(drift)
}

pub(crate) async fn plan_function(ctx: &Ctx<'_>, spec: &Function) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = match get_function(ctx, &name).await?.and_then(|f| f.configuration) {
        None => Action::Create,
        Some(current) => {
            let drift = function_drift(ctx, spec, &current)?;
            if drift.is_empty() { Action::Unchanged } else { Action::Update(drift.join(", ")) }
        }
    };
    let settings = format!(
        "provided.al2023, lambdas/{}, {} MB, {} s, role {}",
        spec.package,
        spec.memory_mb,
        spec.timeout_seconds,
        ctx.vars.name(&spec.role)
    );
    Ok(Change { kind: Kind::LambdaFunction, name, action, settings })
}

pub(crate) async fn apply_function(ctx: &Ctx<'_>, spec: &Function, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&spec.name);
    let lambda = &ctx.clients.lambda;
    let artifact = &ctx.artifacts[&spec.package];
    let env = Environment::builder().set_variables(Some(environment(ctx, spec)?.into_iter().collect())).build();
    let role = iam::role_arn(ctx, &spec.role);
    match action {
        Action::Create => {
            let mut attempt = 0;
            loop {
                let mut create = lambda
                    .create_function()
                    .function_name(&name)
                    .runtime(Runtime::Providedal2023)
                    .architectures(Architecture::X8664)
                    .handler("bootstrap")
                    .role(&role)
                    .timeout(spec.timeout_seconds)
                    .memory_size(spec.memory_mb)
                    .environment(env.clone())
                    .code(FunctionCode::builder().zip_file(Blob::new(artifact.zip.clone())).build());
                for (key, value) in ctx.tags() {
                    create = create.tags(key, value);
                }
                match create.send().await {
                    Ok(_) => break,
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_conflict_exception()) => break,
                    // A role created moments ago may not be assumable yet (IAM is eventually consistent).
                    Err(err)
                        if attempt < iam::PROPAGATION_RETRIES
                            && err.as_service_error().is_some_and(|e| e.is_invalid_parameter_value_exception()) =>
                    {
                        attempt += 1;
                        tokio::time::sleep(iam::PROPAGATION_PAUSE).await;
                    }
                    Err(err) => return Err(err).doing(format!("creating Lambda function {name}")),
                }
            }
        }
        Action::Update(_) => {
            lambda
                .update_function_code()
                .function_name(&name)
                .zip_file(Blob::new(artifact.zip.clone()))
                .send()
                .await
                .doing(format!("updating the code of Lambda function {name}"))?;
            wait_updated(ctx, &name).await?;
            lambda
                .update_function_configuration()
                .function_name(&name)
                .role(&role)
                .timeout(spec.timeout_seconds)
                .memory_size(spec.memory_mb)
                .environment(env)
                .send()
                .await
                .doing(format!("updating the configuration of Lambda function {name}"))?;
        }
        Action::Unchanged => return Ok(()),
    }
    lambda
        .wait_until_function_active_v2()
        .function_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for Lambda function {name} to become active"))?;
    wait_updated(ctx, &name).await
}

async fn wait_updated(ctx: &Ctx<'_>, name: &str) -> Result<()> {
    ctx.clients
        .lambda
        .wait_until_function_updated_v2()
        .function_name(name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for Lambda function {name} to finish updating"))?;
    Ok(())
}

pub(crate) async fn destroy_function(ctx: &Ctx<'_>, spec: &Function) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let Some(existing) = get_function(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    let tags = existing.tags().cloned().unwrap_or_default();
    if let Err(reason) = ctx.owns(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return Ok(Removal::LeftAlone(reason));
    }
    match ctx.clients.lambda.delete_function().function_name(&name).send().await {
        Ok(_) => Ok(Removal::Deleted),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(Removal::Absent),
        Err(err) => Err(err).doing(format!("deleting Lambda function {name}")),
    }
}

/// How a mapping is named in plans and reports: it has no name of its own on AWS, only a UUID.
pub(crate) fn mapping_name(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> String {
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
            match ctx.clients.kinesis.describe_stream_summary().stream_name(&name).send().await {
                Ok(out) => Ok(out.stream_description_summary().map(|s| s.stream_arn().to_owned())),
                Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
                Err(err) => Err(err).doing(format!("describing Kinesis stream {name}")),
            }
        }
        MappingSource::DynamodbTableStream(table) => {
            let name = ctx.vars.name(table);
            Ok(crate::dynamodb::describe(ctx, &name).await?.and_then(|t| t.latest_stream_arn().map(str::to_owned)))
        }
        MappingSource::SqsQueue(queue) => crate::sqs::queue_arn(ctx, &ctx.vars.name(queue)).await,
    }
}

/// Streams have positions, retry limits and bisection; queues have none of these (SQS retries
/// through the queue's visibility timeout and redrive policy), and AWS refuses them there.
fn reads_a_stream(spec: &EventSourceMapping) -> bool {
    !matches!(spec.source, MappingSource::SqsQueue(_))
}

async fn find_mapping(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> Result<Option<EventSourceMappingConfiguration>> {
    let Some(arn) = source_arn(ctx, &spec.source).await? else {
        return Ok(None);
    };
    let function = ctx.vars.name(&spec.function);
    let listed = ctx.clients.lambda.list_event_source_mappings().function_name(&function).send().await;
    let listed = match listed {
        Ok(out) => out,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => return Ok(None),
        Err(err) => return Err(err).doing(format!("listing event source mappings of {function}")),
    };
    // Some emulators ignore the function filter: check both ends ourselves.
    Ok(listed
        .event_source_mappings()
        .iter()
        .find(|m| {
            m.event_source_arn() == Some(arn.as_str())
                && m.function_arn().is_some_and(|f| f.ends_with(&format!(":function:{function}")))
        })
        .cloned())
}

fn response_types(spec: &EventSourceMapping) -> Vec<FunctionResponseType> {
    if spec.report_batch_item_failures { vec![FunctionResponseType::ReportBatchItemFailures] } else { vec![] }
}

fn mapping_drift(spec: &EventSourceMapping, current: &EventSourceMappingConfiguration) -> Vec<&'static str> {
    let mut drift = Vec::new();
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
    drift
}

pub(crate) async fn plan_mapping(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> Result<Change> {
    let name = mapping_name(ctx, spec);
    let action = match find_mapping(ctx, spec).await? {
        None => Action::Create,
        Some(current) => {
            let drift = mapping_drift(spec, &current);
            if drift.is_empty() { Action::Unchanged } else { Action::Update(drift.join(", ")) }
        }
    };
    let mut settings = match &spec.starting_position {
        Some(position) => format!("from {position}, batch {}", spec.batch_size),
        None => format!("batch {}", spec.batch_size),
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
    Ok(Change { kind: Kind::EventSourceMapping, name, action, settings })
}

pub(crate) async fn apply_mapping(ctx: &Ctx<'_>, spec: &EventSourceMapping, action: &Action) -> Result<()> {
    let lambda = &ctx.clients.lambda;
    let function = ctx.vars.name(&spec.function);
    let uuid = match action {
        Action::Create => {
            let Some(arn) = source_arn(ctx, &spec.source).await? else {
                bail!("the source of {} does not exist", mapping_name(ctx, spec));
            };
            let stream = reads_a_stream(spec);
            let mut create = lambda
                .create_event_source_mapping()
                .function_name(&function)
                .event_source_arn(arn)
                .set_starting_position(spec.starting_position.as_deref().map(EventSourcePosition::from))
                .batch_size(spec.batch_size)
                .maximum_batching_window_in_seconds(spec.maximum_batching_window_seconds)
                .set_bisect_batch_on_function_error(stream.then_some(spec.bisect_batch_on_function_error))
                .set_function_response_types(Some(response_types(spec)))
                .set_maximum_retry_attempts(spec.maximum_retry_attempts.filter(|_| stream));
            for (key, value) in ctx.tags() {
                create = create.tags(key, value);
            }
            let created =
                create.send().await.doing(format!("creating event source mapping {}", mapping_name(ctx, spec)))?;
            created.uuid().unwrap_or_default().to_owned()
        }
        Action::Update(_) => {
            let current = find_mapping(ctx, spec).await?.context("the mapping vanished while updating it")?;
            let uuid = current.uuid().unwrap_or_default().to_owned();
            let stream = reads_a_stream(spec);
            lambda
                .update_event_source_mapping()
                .uuid(&uuid)
                .batch_size(spec.batch_size)
                .maximum_batching_window_in_seconds(spec.maximum_batching_window_seconds)
                .set_bisect_batch_on_function_error(stream.then_some(spec.bisect_batch_on_function_error))
                .set_function_response_types(Some(response_types(spec)))
                .set_maximum_retry_attempts(stream.then(|| spec.maximum_retry_attempts.unwrap_or(-1)))
                .send()
                .await
                .doing(format!("updating event source mapping {}", mapping_name(ctx, spec)))?;
            uuid
        }
        Action::Unchanged => return Ok(()),
    };
    wait_mapping(ctx, &uuid, |state| state == "Enabled").await
}

/// Polls a mapping until its state passes `done` (or it is gone, when `done` accepts "").
async fn wait_mapping(ctx: &Ctx<'_>, uuid: &str, done: impl Fn(&str) -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = match ctx.clients.lambda.get_event_source_mapping().uuid(uuid).send().await {
            Ok(out) => out.state().unwrap_or("Enabled").to_owned(),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => String::new(),
            Err(err) => return Err(err).doing(format!("reading event source mapping {uuid}")),
        };
        if done(&state) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("event source mapping {uuid} is still {state} after {} s", WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) async fn destroy_mapping(ctx: &Ctx<'_>, spec: &EventSourceMapping) -> Result<Removal> {
    // A mapping belongs to its function: if the function is ours, so is the mapping.
    let Some(current) = find_mapping(ctx, spec).await? else {
        return Ok(Removal::Absent);
    };
    let uuid = current.uuid().unwrap_or_default().to_owned();
    match ctx.clients.lambda.delete_event_source_mapping().uuid(&uuid).send().await {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            return Ok(Removal::Absent);
        }
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(err).doing(format!("deleting event source mapping {uuid}")),
    }
    wait_mapping(ctx, &uuid, str::is_empty).await?;
    Ok(Removal::Deleted)
}
