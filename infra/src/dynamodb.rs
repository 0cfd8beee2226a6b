use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType, TableDescription, Tag,
};

use crate::engine::{Action, Change, Ctx, Kind, Removal};
use crate::stack::{DynamoTable, KeyAttribute};
use crate::{SdkContext, WaitContext};

const WAIT: Duration = Duration::from_secs(300);

pub(crate) async fn describe(ctx: &Ctx<'_>, name: &str) -> Result<Option<TableDescription>> {
    match ctx.clients.dynamodb.describe_table().table_name(name).send().await {
        Ok(out) => Ok(out.table),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
        Err(err) => Err(err).doing(format!("describing DynamoDB table {name}")),
    }
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

pub(crate) async fn plan(ctx: &Ctx<'_>, spec: &DynamoTable) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = match describe(ctx, &name).await? {
        None => Action::Create,
        Some(table) => stream_drift(spec, &table).map_or(Action::Unchanged, Action::Update),
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

pub(crate) async fn apply(ctx: &Ctx<'_>, spec: &DynamoTable, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&spec.name);
    let dynamodb = &ctx.clients.dynamodb;
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
            match create.send().await {
                Ok(_) => {}
                Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(err) => return Err(err).doing(format!("creating DynamoDB table {name}")),
            }
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
        Action::Unchanged => return Ok(()),
    }
    dynamodb
        .wait_until_table_exists()
        .table_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for DynamoDB table {name} to become active"))?;
    Ok(())
}

pub(crate) async fn destroy(ctx: &Ctx<'_>, spec: &DynamoTable) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let dynamodb = &ctx.clients.dynamodb;
    let Some(table) = describe(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    let arn = table.table_arn().unwrap_or_default();
    let tags = dynamodb
        .list_tags_of_resource()
        .resource_arn(arn)
        .send()
        .await
        .doing(format!("reading tags of DynamoDB table {name}"))?;
    if let Err(reason) = ctx.owns(tags.tags().iter().map(|t| (t.key(), t.value()))) {
        return Ok(Removal::LeftAlone(reason));
    }
    match dynamodb.delete_table().table_name(&name).send().await {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            return Ok(Removal::Absent);
        }
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
        Err(err) => return Err(err).doing(format!("deleting DynamoDB table {name}")),
    }
    dynamodb
        .wait_until_table_not_exists()
        .table_name(&name)
        .wait(WAIT)
        .await
        .waiting(format!("waiting for DynamoDB table {name} to go"))?;
    Ok(Removal::Deleted)
}
