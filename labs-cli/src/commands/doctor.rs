//! `labs doctor`: proves the pipeline every Lambda example relies on, with a probe function.

use anyhow::{Result, bail};
use labs_infra::{SdkContext, stack};
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::output::{self, Output};
use crate::provision;
use crate::target::Target;

/// The stack `labs doctor` deploys (`infra/stacks/probe.toml`), and its one function.
pub(super) const PROBE_STACK: &str = "probe";
const PROBE: stack::Lambda = stack::Lambda::new("probe");

#[derive(Serialize)]
struct DoctorStep {
    step: String,
    /// `None` when it went as expected, else what happened.
    problem: Option<String>,
}

#[derive(Serialize)]
struct DoctorReport {
    target: crate::target::TargetKind,
    function: String,
    steps: Vec<DoctorStep>,
    /// What the function answered, when it was invoked.
    reply: Option<serde_json::Value>,
    passed: bool,
}

/// Invokes the probe and checks that it answers as built: it echoes the payload and names itself.
async fn invoke_probe(target: &Target, function: &str, reply_seen: &mut Option<serde_json::Value>) -> Result<()> {
    let payload = serde_json::json!({ "nonce": format!("{:016x}", rand::random::<u64>()) });
    let spinner = output::spinner(&format!("invoking {function}"));
    let invoked = target
        .clients
        .lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .doing(format!("invoking {function}"));
    spinner.finish_and_clear();
    let invoked = invoked?;
    let body = invoked.payload().map(|p| p.as_ref().to_vec()).unwrap_or_default();
    let reply: serde_json::Value =
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    *reply_seen = Some(reply.clone());
    if let Some(error) = invoked.function_error() {
        bail!("the function failed ({error}): {reply}");
    }
    if reply["echo"] != payload || reply["function_name"] != function || reply["labs_example"] != PROBE_STACK {
        bail!("it did not answer as built: {reply}");
    }
    Ok(())
}

/// Proves the pipeline every Lambda example relies on: cargo-lambda builds the probe, the engine
/// deploys it like any example's function, the target runs it, and `down` removes it. Each row
/// is what happened; the probe is removed whatever failed before. `--remove` only removes a
/// probe left behind (by an interrupted run or an older labs).
pub async fn doctor(global: &GlobalArgs, remove_only: bool, out: Output) -> Result<()> {
    let target = Target::resolve(&global.target(), true).await?;
    let stack = stack::load(PROBE_STACK)?;
    let function = target.name(PROBE);
    let mut steps = Vec::new();
    let mut reply = None;
    let mut record = |step: String, outcome: &Result<()>| {
        steps.push(DoctorStep { step, problem: outcome.as_ref().err().map(|e| format!("{e:#}")) });
    };
    if !remove_only {
        let deployed = provision::up_stack(&target, &stack, false, Output::quiet()).await;
        record(format!("build with cargo-lambda and deploy {function}"), &deployed);
        if deployed.is_ok() {
            let invoked = invoke_probe(&target, &function, &mut reply).await;
            record("invoke it and check the reply".to_owned(), &invoked);
        }
    }
    let removed = match provision::destroy_stack(&target, &stack).await {
        Ok((_, None)) => Ok(()),
        Ok((_, Some(failure))) => Err(failure),
        Err(err) => Err(err),
    };
    record(format!("remove {function}"), &removed);
    let passed = steps.iter().all(|s| s.problem.is_none());
    out.table(
        "Pipeline check",
        &["step", "result"],
        steps
            .iter()
            .map(|s| vec![s.step.clone(), s.problem.as_ref().map_or("ok".to_owned(), |p| format!("FAILED: {p}"))]),
    );
    let first_problem = steps.iter().find_map(|s| s.problem.as_ref().map(|p| format!("{}: {p}", s.step)));
    out.json(&DoctorReport { target: target.kind.clone(), function, steps, reply, passed })?;
    match first_problem {
        Some(problem) => bail!("the pipeline check failed at {problem}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_function_is_declared_in_the_probe_stack() {
        let stack = stack::load(PROBE_STACK).unwrap();
        assert_eq!(stack.check(&PROBE.any()), Ok(()));
    }
}
