use std::time::Duration;

use anyhow::Result;
use aws_sdk_kinesis::client::Waiters;

use crate::engine::{Action, Change, Ctx, Kind, Removal};
use crate::stack::KinesisStream;
use crate::{SdkContext, WaitContext};

const WAIT: Duration = Duration::from_secs(300);

/// Open shards of an existing stream, or `None` when it does not exist.
async fn open_shards(ctx: &Ctx<'_>, name: &str) -> Result<Option<i32>> {
    match ctx.clients.kinesis.describe_stream_summary().stream_name(name).send().await {
        Ok(out) => Ok(out.stream_description_summary().map(|s| s.open_shard_count())),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
        Err(err) => Err(err).doing(format!("describing Kinesis stream {name}")),
    }
}

pub(crate) async fn plan(ctx: &Ctx<'_>, spec: &KinesisStream) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = match open_shards(ctx, &name).await? {
        None => Action::Create,
        // A different shard count is a learner's resharding (example 7), not drift to undo.
        Some(_) => Action::Unchanged,
    };
    Ok(Change { kind: Kind::KinesisStream, name, action, settings: format!("{} shards, provisioned", spec.shards) })
}

pub(crate) async fn apply(ctx: &Ctx<'_>, spec: &KinesisStream, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&spec.name);
    let kinesis = &ctx.clients.kinesis;
    if *action == Action::Create {
        let created = kinesis.create_stream().stream_name(&name).shard_count(spec.shards).send().await;
        match created {
            Ok(_) => {}
            // Created by an interrupted earlier run: carry on.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(err) => return Err(err).doing(format!("creating Kinesis stream {name}")),
        }
    }
    kinesis
        .wait_until_stream_exists()
        .stream_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for Kinesis stream {name} to become active"))?;
    let mut tagging = kinesis.add_tags_to_stream().stream_name(&name);
    for (key, value) in ctx.tags() {
        tagging = tagging.tags(key, value);
    }
    tagging.send().await.doing(format!("tagging Kinesis stream {name}"))?;
    Ok(())
}

pub(crate) async fn destroy(ctx: &Ctx<'_>, spec: &KinesisStream) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let kinesis = &ctx.clients.kinesis;
    let tags = match kinesis.list_tags_for_stream().stream_name(&name).send().await {
        Ok(out) => out.tags,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            return Ok(Removal::Absent);
        }
        Err(err) => return Err(err).doing(format!("reading tags of Kinesis stream {name}")),
    };
    if let Err(reason) = ctx.owns(tags.iter().map(|t| (t.key(), t.value().unwrap_or_default()))) {
        return Ok(Removal::LeftAlone(reason));
    }
    match kinesis.delete_stream().stream_name(&name).enforce_consumer_deletion(true).send().await {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            return Ok(Removal::Absent);
        }
        // Already deleting (an interrupted earlier run): wait for it below.
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(err).doing(format!("deleting Kinesis stream {name}")),
    }
    kinesis
        .wait_until_stream_not_exists()
        .stream_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for Kinesis stream {name} to go"))?;
    Ok(Removal::Deleted)
}
