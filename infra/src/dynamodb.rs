//! DynamoDB tables: on-demand, keys, and their change stream.

use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TableDescription, Tag,
};

use crate::model::{Action, Change, Ctx, Kind, Removal, resource};
use crate::sdk_error::{ErrorClass, SdkContext, SdkOutcome, WaitContext};
use crate::stack::{DynamoTable, KeyAttribute};

const WAIT: Duration = crate::poll::LIMIT;

resource!(
    DynamoTable,
    Kind::DynamodbTable,
    name = |ctx, spec| ctx.vars.name(&spec.name),
    plan = plan,
    apply = apply,
    destroy = destroy
);

pub(crate) async fn describe(ctx: &Ctx<'_>, name: &str) -> Result<Option<TableDescription>> {
    let out = ctx
        .clients
        .dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .or_absent(format!("describing DynamoDB table {name}"))?;
    Ok(out.and_then(|out| out.table))
}

/// The table's tags (it exists: `arn` came from describing it).
async fn tags(ctx: &Ctx<'_>, name: &str, arn: &str) -> Result<Vec<(String, String)>> {
    let out = ctx
        .clients
        .dynamodb
        .list_tags_of_resource()
        .resource_arn(arn)
        .send()
        .await
        .doing(format!("reading tags of DynamoDB table {name}"))?;
    Ok(out.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect())
}

fn settings(spec: &DynamoTable) -> String {
    let mut text = format!("key {} ({})", spec.partition_key.name, spec.partition_key.attribute_type);
    if let Some(sort) = &spec.sort_key {
        text.push_str(&format!(", sort key {} ({})", sort.name, sort.attribute_type));
    }
    text.push_str(", on demand");
    if let Some(view) = &spec.stream_view_type {
        text.push_str(&format!(", stream {view}"));
    }
    text
}

fn stream_drift(spec: &DynamoTable, table: &TableDescription) -> Option<String> {
    let current = table
        .stream_specification()
        .filter(|s| s.stream_enabled())
        .and_then(|s| s.stream_view_type())
        .map(|v| v.as_str().to_owned());
    (current != spec.stream_view_type).then(|| {
        format!(
            "stream {} -> {}",
            current.as_deref().unwrap_or("off"),
            spec.stream_view_type.as_deref().unwrap_or("off")
        )
    })
}

async fn plan(ctx: &Ctx<'_>, spec: &DynamoTable) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = match describe(ctx, &name).await? {
        None => Action::Create,
        Some(table) => {
            let tags = tags(ctx, &name, table.table_arn().unwrap_or_default()).await?;
            match ctx.conflict_unless_owned(&tags) {
                Some(conflict) => conflict,
                None => stream_drift(spec, &table).map_or(Action::Unchanged, Action::Update),
            }
        }
    };
    Ok(Change { kind: Kind::DynamodbTable, name, action, settings: settings(spec) })
}

fn key(attribute: &KeyAttribute, key_type: KeyType) -> Result<(AttributeDefinition, KeySchemaElement)> {
    let definition = AttributeDefinition::builder()
        .attribute_name(&attribute.name)
        .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
        .build()?;
    let element = KeySchemaElement::builder().attribute_name(&attribute.name).key_type(key_type).build()?;
    Ok((definition, element))
}

fn stream_specification(spec: &DynamoTable) -> Result<StreamSpecification> {
    Ok(match &spec.stream_view_type {
        Some(view) => StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::from(view.as_str()))
            .build()?,
        None => StreamSpecification::builder().stream_enabled(false).build()?,
    })
}

async fn apply(ctx: &Ctx<'_>, spec: &DynamoTable, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&spec.name);
    let dynamodb = &ctx.clients.dynamodb;
    let mut created_elsewhere = false;
    match action {
        Action::Create => {
            let mut keys = vec![key(&spec.partition_key, KeyType::Hash)?];
            if let Some(sort) = &spec.sort_key {
                keys.push(key(sort, KeyType::Range)?);
            }
            let mut create = dynamodb
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .stream_specification(stream_specification(spec)?);
            for (definition, element) in keys {
                create = create.attribute_definitions(definition).key_schema(element);
            }
            for (key, value) in ctx.tags() {
                create = create.tags(Tag::builder().key(key).value(value).build()?);
            }
            created_elsewhere = create
                .send()
                .await
                .tolerating(&[ErrorClass::InUse, ErrorClass::AlreadyExists], format!("creating DynamoDB table {name}"))?
                .is_err();
        }
        Action::Update(_) => {
            dynamodb
                .update_table()
                .table_name(&name)
                .stream_specification(stream_specification(spec)?)
                .send()
                .await
                .doing(format!("updating the stream of DynamoDB table {name}"))?;
        }
        Action::Unchanged | Action::Conflict(_) => return Ok(()),
    }
    dynamodb
        .wait_until_table_exists()
        .table_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for DynamoDB table {name} to become active"))?;
    if *action == Action::Create {
        let arn = describe(ctx, &name).await?.and_then(|t| t.table_arn).unwrap_or_default();
        let current = tags(ctx, &name, &arn).await?;
        if created_elsewhere {
            if let Err(reason) = ctx.owns(&current) {
                bail!("DynamoDB table {name} appeared while applying and is not ours: {reason}");
            }
            return Ok(());
        }
        let missing = ctx.missing_tags(&current);
        if !missing.is_empty() {
            let mut tagging = dynamodb.tag_resource().resource_arn(&arn);
            for (key, value) in missing {
                tagging = tagging.tags(Tag::builder().key(key).value(value).build()?);
            }
            tagging.send().await.doing(format!("tagging DynamoDB table {name}"))?;
        }
    }
    Ok(())
}

async fn destroy(ctx: &Ctx<'_>, spec: &DynamoTable) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let dynamodb = &ctx.clients.dynamodb;
    let Some(table) = describe(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    let tags = tags(ctx, &name, table.table_arn().unwrap_or_default()).await?;
    if let Err(reason) = ctx.owns(&tags) {
        return Ok(Removal::LeftAlone(reason));
    }
    let deleted = dynamodb
        .delete_table()
        .table_name(&name)
        .send()
        .await
        // In use: already deleting; wait for it below.
        .tolerating(&[ErrorClass::NotFound, ErrorClass::InUse], format!("deleting DynamoDB table {name}"))?;
    if matches!(deleted, Err(ErrorClass::NotFound)) {
        return Ok(Removal::Absent);
    }
    dynamodb
        .wait_until_table_not_exists()
        .table_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for DynamoDB table {name} to go"))?;
    Ok(Removal::Deleted)
}
