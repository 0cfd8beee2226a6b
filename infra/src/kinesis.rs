//! Kinesis data streams: provisioned shards, tagged at creation.

use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_kinesis::client::Waiters;

use crate::model::{Action, Change, Ctx, Kind, Removal, Tag, resource};
use crate::sdk_error::{ErrorClass, SdkContext, SdkOutcome, WaitContext};
use crate::stack::KinesisStream;

const WAIT: Duration = crate::poll::LIMIT;

resource!(
    KinesisStream,
    Kind::KinesisStream,
    name = |ctx, spec| ctx.vars.name(&spec.name),
    plan = plan,
    apply = apply,
    destroy = destroy
);

/// The stream's tags, or `None` when it does not exist.
async fn tags(ctx: &Ctx<'_>, name: &str) -> Result<Option<Vec<Tag>>> {
    let out = ctx
        .clients
        .kinesis
        .list_tags_for_stream()
        .stream_name(name)
        .send()
        .await
        .or_absent(format!("reading tags of Kinesis stream {name}"))?;
    Ok(out.map(|out| out.tags.into_iter().map(|t| (t.key, t.value.unwrap_or_default())).collect()))
}

async fn plan(ctx: &Ctx<'_>, spec: &KinesisStream) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = match tags(ctx, &name).await? {
        None => Action::Create,
        // A different shard count is a learner's resharding (example 7), not drift to undo.
        Some(tags) => ctx.conflict_unless_owned(&tags).unwrap_or(Action::Unchanged),
    };
    Ok(Change { kind: Kind::KinesisStream, name, action, settings: format!("{} shards, provisioned", spec.shards) })
}

async fn apply(ctx: &Ctx<'_>, spec: &KinesisStream, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&spec.name);
    let kinesis = &ctx.clients.kinesis;
    if *action != Action::Create {
        return Ok(());
    }
    let created = kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(spec.shards)
        .set_tags(Some(ctx.tags().into_iter().collect()))
        .send()
        .await
        .tolerating(&[ErrorClass::InUse, ErrorClass::AlreadyExists], format!("creating Kinesis stream {name}"))?;
    kinesis
        .wait_until_stream_exists()
        .stream_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for Kinesis stream {name} to become active"))?;
    let current = tags(ctx, &name).await?.unwrap_or_default();
    if created.is_err() {
        // Created since the plan was made: ours only if its tags say so.
        if let Err(reason) = ctx.owns(&current) {
            bail!("Kinesis stream {name} appeared while applying and is not ours: {reason}");
        }
        return Ok(());
    }
    // Some emulators drop tags given to CreateStream: add what is missing.
    let missing = ctx.missing_tags(&current);
    if !missing.is_empty() {
        kinesis
            .add_tags_to_stream()
            .stream_name(&name)
            .set_tags(Some(missing.into_iter().collect()))
            .send()
            .await
            .doing(format!("tagging Kinesis stream {name}"))?;
    }
    Ok(())
}

async fn destroy(ctx: &Ctx<'_>, spec: &KinesisStream) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let kinesis = &ctx.clients.kinesis;
    let Some(tags) = tags(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(&tags) {
        return Ok(Removal::LeftAlone(reason));
    }
    let deleted = kinesis
        .delete_stream()
        .stream_name(&name)
        .enforce_consumer_deletion(true)
        .send()
        .await
        // In use: already deleting (an interrupted earlier run); wait for it below.
        .tolerating(&[ErrorClass::NotFound, ErrorClass::InUse], format!("deleting Kinesis stream {name}"))?;
    if matches!(deleted, Err(ErrorClass::NotFound)) {
        return Ok(Removal::Absent);
    }
    kinesis
        .wait_until_stream_not_exists()
        .stream_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for Kinesis stream {name} to go"))?;
    Ok(Removal::Deleted)
}
