//! The provisioning API commands and examples share: build a stack's functions, plan and apply
//! it, remove it. Output goes through `Output`, so callers choose
//! whether the learner sees the plan.

use std::collections::HashMap;

use anyhow::Result;
use labs_infra::{Action, Artifact, DestroyIncomplete, Engine, Removed, stack};
use serde::Serialize;

use crate::cost;
use crate::kafka::topics;
use crate::output::{self, Output};
use crate::target::Target;
use crate::toolchain;
use crate::triggers;

/// Builds the functions a stack deploys: small optimized zips for AWS, debug builds (half the
/// first build's CPU) for an emulator.
fn build_for(target: &Target, stack: &stack::Stack) -> Result<HashMap<String, Artifact>> {
    // One package may be deployed as several functions (example 8): build it once.
    let packages: Vec<String> = stack
        .functions
        .iter()
        .map(|f| f.package.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    toolchain::build(
        &packages,
        toolchain::Profile::for_aws(target.kind.is_aws()),
        toolchain::RunsOn::for_embedded_emulator(target.kind.is_embedded()),
    )
}

/// A dry run's JSON: the plan, and what it costs on AWS.
#[derive(Serialize)]
struct PlanWithCost<'a> {
    #[serde(flatten)]
    plan: &'a labs_infra::Plan,
    estimate: &'a labs_infra::cost::Estimate,
}

/// Plans `stack` and, unless `dry_run`, applies it after the learner's confirmation (real AWS).
/// Stream mappings the runner executes are created disabled, and the runner gets their settings
/// from `declared` (a changed declaration changes them) and is started if it is not running.
pub async fn up_stack(target: &Target, declared: &stack::Stack, dry_run: bool, out: Output) -> Result<()> {
    triggers::check(declared)?;
    let stack = &triggers::for_engine(target, declared);
    let artifacts = build_for(target, stack)?;
    let engine = Engine::connect(&target.clients, &target.prefix).await?;
    let mut plan = engine.plan(stack, &artifacts).await?;
    let kafka = kafka_admin(target, declared).await?;
    if let Some(admin) = &kafka {
        plan.changes.extend(topics::plan(admin, &target.prefix, &declared.kafka_topics).await?);
    }
    out.table(
        &format!("Plan for {} (prefix {}):", stack.example, target.prefix),
        &["resource", "name", "action", "settings"],
        plan.changes.iter().map(|c| vec![c.kind.to_string(), c.name.clone(), c.action.to_string(), c.settings.clone()]),
    );
    // What it costs on AWS: before the learner confirms there, and in every dry run.
    let estimate = cost::estimate(target, declared)?;
    if dry_run || target.kind.is_aws() {
        cost::show(target, &estimate, out);
        if !declared.kafka_topics.is_empty() {
            out.say(
                "Its Kafka topics live on the Kafka broker labs talks to (the embedded one, or --kafka-bootstrap's), \
                 not in this AWS estimate; on Amazon MSK the brokers cost by the hour whatever the topics hold.",
            );
        }
    }
    if dry_run {
        out.json(&PlanWithCost { plan: &plan, estimate: &estimate })?;
        plan.refuse_conflicts()?;
        out.say("Dry run: nothing was changed.");
        return Ok(());
    }
    plan.refuse_conflicts()?;
    if plan.is_noop() {
        triggers::publish(target, declared).await?;
        out.say(format!("{} is up to date.", stack.example));
        return out.json(&plan);
    }
    target.confirm(&format!(
        "Apply this plan to {}? It costs {} while it stays up.",
        target.kind.describe(),
        cost::per_hour_phrase(&estimate)
    ))?;
    let spinner = output::spinner("applying");
    let progress = |message: &str| spinner.set_message(message.to_owned());
    // Topics first: they hold data, like streams and tables, and nothing of AWS's needs them made after.
    if let Some(admin) = &kafka {
        progress("creating Kafka topics");
        topics::apply(admin, &target.prefix, &declared.kafka_topics, &plan.changes).await?;
    }
    engine.apply(stack, &plan, &artifacts, &progress).await?;
    spinner.finish_and_clear();
    triggers::publish(target, declared).await?;
    let changed = plan.changes.iter().filter(|c| c.action != Action::Unchanged).count();
    out.say(format!(
        "{} is up: {changed} resources created or updated. Next: labs run {}",
        stack.example, stack.example
    ));
    out.json(&plan)
}

/// The admin client of the stack's Kafka broker, when it declares topics (the embedded broker is
/// started for it).
async fn kafka_admin(target: &Target, stack: &stack::Stack) -> Result<Option<topics::Admin>> {
    if stack.kafka_topics.is_empty() {
        return Ok(None);
    }
    Ok(Some(topics::admin(&target.kafka().await?.bootstrap)?))
}

/// How much of a stack exists for the target's prefix: `(present, declared)` resources. Its Kafka
/// topics count as absent while the broker is down (the embedded one keeps them in memory).
pub async fn presence(target: &Target, stack: &stack::Stack) -> Result<(usize, usize)> {
    let engine = Engine::connect(&target.clients, &target.prefix).await?;
    let mut changes = engine.plan(stack, &HashMap::new()).await?.changes;
    let declared = changes.len() + stack.kafka_topics.len();
    if !stack.kafka_topics.is_empty()
        && let Some(bootstrap) = target.kafka_if_running()?
    {
        changes.extend(topics::plan(&topics::admin(&bootstrap)?, &target.prefix, &stack.kafka_topics).await?);
    }
    let present = changes.iter().filter(|c| c.action != Action::Create).count();
    Ok((present, declared))
}

/// Removes what `stack` declares for the target's prefix, with a spinner while it waits. Every
/// row comes back, with the error that some could not be removed (the engine goes on past one).
/// The runner stops the stack's mappings first, and stops altogether once the prefix has none left.
pub async fn destroy_stack(target: &Target, stack: &stack::Stack) -> Result<(Vec<Removed>, Option<anyhow::Error>)> {
    triggers::forget(target, stack).await?;
    let engine = Engine::connect(&target.clients, &target.prefix).await?;
    let spinner = output::spinner("removing");
    let progress = |message: &str| spinner.set_message(message.to_owned());
    let removed = engine.destroy(stack, &progress).await;
    // Topics last, after whatever wrote to them; a stopped embedded broker holds none.
    let mut topic_rows = Vec::new();
    if !stack.kafka_topics.is_empty()
        && let Some(bootstrap) = target.kafka_if_running()?
    {
        progress("removing Kafka topics");
        topic_rows = topics::destroy(&topics::admin(&bootstrap)?, &target.prefix, &stack.kafka_topics).await;
    }
    spinner.finish_and_clear();
    triggers::stop_if_idle(target).await?;
    let (mut rows, failure) = match removed {
        Ok(rows) => (rows, None),
        Err(err) => match err.downcast::<DestroyIncomplete>() {
            Ok(incomplete) => (incomplete.removed.clone(), Some(incomplete.into())),
            Err(other) => return Err(other),
        },
    };
    rows.extend(topic_rows);
    let failure = failure.or_else(|| {
        let failed = rows.iter().any(|r| matches!(r.removal, labs_infra::Removal::Failed(_)));
        failed.then(|| DestroyIncomplete { removed: rows.clone() }.into())
    });
    Ok((rows, failure))
}

/// Removes only the event source mappings `stack` declares, leaving its functions and sources
/// up: the function stops receiving events until `up_stack` connects it again.
pub async fn disconnect_sources(target: &Target, stack: &stack::Stack) -> Result<()> {
    let mappings_only = stack::Stack {
        example: stack.example.clone(),
        event_source_mappings: stack.event_source_mappings.clone(),
        ..Default::default()
    };
    triggers::forget(target, stack).await?;
    let engine = Engine::connect(&target.clients, &target.prefix).await?;
    engine.destroy(&mappings_only, &|_: &str| {}).await?;
    Ok(())
}
