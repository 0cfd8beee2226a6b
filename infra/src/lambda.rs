//! Lambda functions: a cargo-lambda build run as `provided.al2023`, its environment, its role.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::operation::get_function::GetFunctionOutput;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, FunctionConfiguration, Runtime};
use backon::Retryable;

use crate::model::{Action, Change, Ctx, Kind, Removal, resource};
use crate::sdk_error::{ErrorClass, SdkContext, SdkOutcome, WaitContext};
use crate::stack::Function;
use crate::{iam, poll};

const WAIT: Duration = poll::LIMIT;

resource!(
    Function,
    Kind::LambdaFunction,
    name = |ctx, spec| ctx.vars.name(&spec.name),
    plan = plan_function,
    apply = apply_function,
    destroy = destroy_function,
);
/// The environment variable that records which build a function runs.
pub const CODE_HASH_VAR: &str = "LABS_CODE_SHA256";

/// The declared environment, without the code hash.
fn declared_environment(ctx: &Ctx<'_>, spec: &Function) -> BTreeMap<String, String> {
    spec.deployed_environment(ctx.vars, ctx.example)
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

async fn get_function(ctx: &Ctx<'_>, name: &str) -> Result<Option<GetFunctionOutput>> {
    ctx.clients
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
        .or_absent(format!("reading Lambda function {name}"))
}

fn tags_of(function: &GetFunctionOutput) -> Vec<(String, String)> {
    function.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
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

async fn plan_function(ctx: &Ctx<'_>, spec: &Function) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = match get_function(ctx, &name).await? {
        None => Action::Create,
        Some(function) => match ctx.conflict_unless_owned(&tags_of(&function)) {
            Some(conflict) => conflict,
            None => {
                let current = function.configuration.unwrap_or_else(|| FunctionConfiguration::builder().build());
                let drift = function_drift(ctx, spec, &current)?;
                if drift.is_empty() { Action::Unchanged } else { Action::Update(drift.join(", ")) }
            }
        },
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

async fn apply_function(ctx: &Ctx<'_>, spec: &Function, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&spec.name);
    let lambda = &ctx.clients.lambda;
    let artifact = ctx
        .artifacts
        .get(&spec.package)
        .with_context(|| format!("no build of lambdas/{} was supplied", spec.package))?;
    let env = Environment::builder().set_variables(Some(environment(ctx, spec)?.into_iter().collect())).build();
    let role = iam::role_arn(ctx, &spec.role);
    match action {
        Action::Create => {
            let create = || {
                lambda
                    .create_function()
                    .function_name(&name)
                    .runtime(Runtime::Providedal2023)
                    .architectures(Architecture::X8664)
                    .handler("bootstrap")
                    .role(&role)
                    .timeout(spec.timeout_seconds)
                    .memory_size(spec.memory_mb)
                    .environment(env.clone())
                    .code(FunctionCode::builder().zip_file(Blob::new(artifact.zip.clone())).build())
                    .set_tags(Some(ctx.tags().into_iter().collect()))
                    .send()
            };
            let created = create
                .retry(poll::schedule(iam::PROPAGATION_WAIT))
                // A role created moments ago may not be assumable yet (IAM is eventually consistent).
                .when(|err| err.as_service_error().is_some_and(|e| e.is_invalid_parameter_value_exception()))
                .await
                .tolerating(&[ErrorClass::AlreadyExists], format!("creating Lambda function {name}"))?;
            let existing = get_function(ctx, &name).await?.context("the function vanished while creating it")?;
            let current = tags_of(&existing);
            if created.is_err() {
                // Created since the plan was made: ours only if its tags say so.
                if let Err(reason) = ctx.owns(&current) {
                    bail!("Lambda function {name} appeared while applying and is not ours: {reason}");
                }
            } else {
                tag_missing(ctx, &name, &existing, &current).await?;
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
        Action::Unchanged | Action::Conflict(_) => return Ok(()),
    }
    lambda
        .wait_until_function_active_v2()
        .function_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for Lambda function {name} to become active"))?;
    wait_updated(ctx, &name).await
}

/// Adds the tags an emulator dropped from CreateFunction.
async fn tag_missing(
    ctx: &Ctx<'_>,
    name: &str,
    function: &GetFunctionOutput,
    current: &[(String, String)],
) -> Result<()> {
    let missing = ctx.missing_tags(current);
    let Some(arn) = function.configuration().and_then(|c| c.function_arn()) else {
        return Ok(());
    };
    if !missing.is_empty() {
        ctx.clients
            .lambda
            .tag_resource()
            .resource(arn)
            .set_tags(Some(missing.into_iter().collect()))
            .send()
            .await
            .doing(format!("tagging Lambda function {name}"))?;
    }
    Ok(())
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

async fn destroy_function(ctx: &Ctx<'_>, spec: &Function) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let Some(existing) = get_function(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(&tags_of(&existing)) {
        return Ok(Removal::LeftAlone(reason));
    }
    let lambda = &ctx.clients.lambda;
    if lambda
        .delete_function()
        .function_name(&name)
        .send()
        .await
        .or_absent(format!("deleting Lambda function {name}"))?
        .is_none()
    {
        return Ok(Removal::Absent);
    }
    poll::until(format!("waiting for Lambda function {name} to go"), WAIT, || async {
        Ok(get_function(ctx, &name).await?.is_none())
    })
    .await?;
    Ok(Removal::Deleted)
}
