//! Everything in an account and region that carries labs' tags, under any prefix: what
//! `labs down --all` removes and `labs status` dates. Found by listing each kind and reading
//! each resource's tags; a name alone never makes a resource ours.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::Kind;
use crate::sdk_error::{SdkContext, SdkOutcome};
use crate::{Clients, TAG_CREATED_AT, TAG_EXAMPLE, TAG_PREFIX};

/// A resource whose tags say labs made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    pub kind: Kind,
    pub name: String,
    pub prefix: String,
    pub example: String,
    /// The `labs:created-at` tag; absent on what an older labs created.
    pub created_at: Option<String>,
}

impl Found {
    /// How long ago it was created, when its tag says (and is not in the future).
    pub fn age(&self, now: OffsetDateTime) -> Option<Duration> {
        age(self.created_at.as_deref()?, now)
    }
}

/// The `labs:created-at` value for now: RFC 3339, UTC, whole seconds.
pub fn now_tag() -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::now_utc().format(&format).unwrap_or_default()
}

/// How long before `now` a `labs:created-at` value was; `None` if it is not a time or is later.
pub fn age(created_at: &str, now: OffsetDateTime) -> Option<Duration> {
    let created = OffsetDateTime::parse(created_at, &Rfc3339).ok()?;
    (now - created).try_into().ok()
}

/// `1 h 05 min`, `3 days 2 h`, `12 min`: an age for people.
pub fn describe_age(age: Duration) -> String {
    let minutes = age.as_secs() / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min"),
        (0, h) => format!("{h} h {minutes:02} min"),
        (1, h) => format!("1 day {h} h"),
        (d, h) => format!("{d} days {h} h"),
    }
}

/// The labs resource a set of tags describes, if they say labs made it.
fn labs_tags(kind: Kind, name: String, tags: &[(String, String)]) -> Option<Found> {
    let tag = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    Some(Found { kind, name, prefix: tag(TAG_PREFIX)?, example: tag(TAG_EXAMPLE)?, created_at: tag(TAG_CREATED_AT) })
}

/// The last part of an ARN or URL, after `separator`.
fn last(text: &str, separator: char) -> String {
    text.rsplit(separator).next().unwrap_or(text).to_owned()
}

/// Every resource of every kind labs creates whose tags say labs made it, in the target's
/// region. Reads only. Resources that go while it looks are skipped.
pub async fn scan(clients: &Clients) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    found.extend(streams(clients).await?);
    found.extend(tables(clients).await?);
    found.extend(topics(clients).await?);
    found.extend(queues(clients).await?);
    found.extend(roles(clients).await?);
    found.extend(functions(clients).await?);
    found.extend(mappings(clients).await?);
    Ok(found)
}

async fn streams(clients: &Clients) -> Result<Vec<Found>> {
    let mut names = Vec::new();
    let mut pages = clients.kinesis.list_streams().into_paginator().send();
    while let Some(page) = pages.next().await {
        names.extend(page.doing("listing Kinesis streams")?.stream_names);
    }
    let mut found = Vec::new();
    for name in names {
        let tags = clients.kinesis.list_tags_for_stream().stream_name(&name).send().await;
        let Some(out) = tags.or_absent(format!("reading tags of Kinesis stream {name}"))? else { continue };
        let tags: Vec<_> = out.tags.into_iter().map(|t| (t.key, t.value.unwrap_or_default())).collect();
        found.extend(labs_tags(Kind::KinesisStream, name, &tags));
    }
    Ok(found)
}

async fn tables(clients: &Clients) -> Result<Vec<Found>> {
    let mut names = Vec::new();
    let mut pages = clients.dynamodb.list_tables().into_paginator().items().send();
    while let Some(name) = pages.next().await {
        names.push(name.doing("listing DynamoDB tables")?);
    }
    let mut found = Vec::new();
    for name in names {
        let described = clients.dynamodb.describe_table().table_name(&name).send().await;
        let Some(arn) = described
            .or_absent(format!("describing DynamoDB table {name}"))?
            .and_then(|out| out.table.and_then(|t| t.table_arn))
        else {
            continue;
        };
        let tags = clients.dynamodb.list_tags_of_resource().resource_arn(&arn).send().await;
        let Some(out) = tags.or_absent(format!("reading tags of DynamoDB table {name}"))? else { continue };
        let tags: Vec<_> = out.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect();
        found.extend(labs_tags(Kind::DynamodbTable, name, &tags));
    }
    Ok(found)
}

async fn topics(clients: &Clients) -> Result<Vec<Found>> {
    let mut arns = Vec::new();
    let mut pages = clients.sns.list_topics().into_paginator().items().send();
    while let Some(topic) = pages.next().await {
        arns.extend(topic.doing("listing SNS topics")?.topic_arn);
    }
    let mut found = Vec::new();
    for arn in arns {
        let name = last(&arn, ':');
        let out = match clients.sns.list_tags_for_resource().resource_arn(&arn).send().await {
            Ok(out) => out,
            // Emulators spell this call's not-found error differently from AWS: a topic deleted
            // while we looked is skipped, any other failure reported.
            Err(_) if topic_gone(clients, &arn, &name).await? => continue,
            Err(err) => return Err(err).doing(format!("reading tags of SNS topic {name}")),
        };
        let tags: Vec<_> = out.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        let Some(topic) = labs_tags(Kind::SnsTopic, name, &tags) else { continue };
        found.extend(subscriptions(clients, &arn, &topic).await?);
        found.push(topic);
    }
    Ok(found)
}

/// Whether a topic no longer exists: emulators answer calls on a deleted topic with errors
/// that are not all classed as not found.
async fn topic_gone(clients: &Clients, arn: &str, name: &str) -> Result<bool> {
    let topic = clients.sns.get_topic_attributes().topic_arn(arn).send().await;
    Ok(topic.or_absent(format!("reading SNS topic {name}"))?.is_none())
}

/// A subscription has no tags of its own: it is labs' when its topic is.
async fn subscriptions(clients: &Clients, topic_arn: &str, topic: &Found) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut pages = clients.sns.list_subscriptions_by_topic().topic_arn(topic_arn).into_paginator().items().send();
    while let Some(subscription) = pages.next().await {
        let subscription = match subscription {
            Ok(subscription) => subscription,
            // As for its tags: a topic deleted while we looked has no subscriptions left.
            Err(_) if topic_gone(clients, topic_arn, &topic.name).await? => break,
            Err(err) => return Err(err).doing(format!("listing subscriptions of SNS topic {}", topic.name)),
        };
        let endpoint = last(subscription.endpoint().unwrap_or_default(), ':');
        found.push(Found {
            kind: Kind::SnsSubscription,
            name: format!("{} -> {endpoint}", topic.name),
            ..topic.clone()
        });
    }
    Ok(found)
}

async fn queues(clients: &Clients) -> Result<Vec<Found>> {
    let mut urls = Vec::new();
    let mut pages = clients.sqs.list_queues().into_paginator().items().send();
    while let Some(url) = pages.next().await {
        urls.push(url.doing("listing SQS queues")?);
    }
    let mut found = Vec::new();
    for url in urls {
        let name = last(&url, '/');
        let tags = clients.sqs.list_queue_tags().queue_url(&url).send().await;
        let Some(out) = tags.or_absent(format!("reading tags of SQS queue {name}"))? else { continue };
        let tags: Vec<_> = out.tags.unwrap_or_default().into_iter().collect();
        found.extend(labs_tags(Kind::SqsQueue, name, &tags));
    }
    Ok(found)
}

async fn roles(clients: &Clients) -> Result<Vec<Found>> {
    let mut names = Vec::new();
    let mut pages = clients.iam.list_roles().into_paginator().items().send();
    while let Some(role) = pages.next().await {
        names.push(role.doing("listing IAM roles")?.role_name);
    }
    let mut found = Vec::new();
    for name in names {
        let mut tags = Vec::new();
        let mut pages = clients.iam.list_role_tags().role_name(&name).into_paginator().items().send();
        let mut gone = false;
        while let Some(tag) = pages.next().await {
            match tag.or_absent(format!("reading tags of IAM role {name}"))? {
                Some(tag) => tags.push((tag.key, tag.value)),
                None => gone = true,
            }
        }
        if !gone {
            found.extend(labs_tags(Kind::IamRole, name, &tags));
        }
    }
    Ok(found)
}

async fn functions(clients: &Clients) -> Result<Vec<Found>> {
    let mut functions = Vec::new();
    let mut pages = clients.lambda.list_functions().into_paginator().items().send();
    while let Some(function) = pages.next().await {
        let function = function.doing("listing Lambda functions")?;
        if let (Some(name), Some(arn)) = (function.function_name, function.function_arn) {
            functions.push((name, arn));
        }
    }
    let mut found = Vec::new();
    for (name, arn) in functions {
        let tags = clients.lambda.list_tags().resource(&arn).send().await;
        let Some(out) = tags.or_absent(format!("reading tags of Lambda function {name}"))? else { continue };
        let tags: Vec<_> = out.tags.unwrap_or_default().into_iter().collect();
        found.extend(labs_tags(Kind::LambdaFunction, name, &tags));
    }
    Ok(found)
}

/// The name of the stream, table or queue an event source ARN points at.
fn source_name(arn: &str) -> String {
    // Kinesis `...:stream/NAME`, DynamoDB `...:table/NAME/stream/LABEL` (a label with colons),
    // SQS `...:NAME`: the resource is what follows the fifth colon.
    let resource = arn.splitn(6, ':').nth(5).unwrap_or(arn).to_owned();
    let mut parts = resource.split('/');
    match (parts.next(), parts.next()) {
        (Some("stream" | "table"), Some(name)) => name.to_owned(),
        _ => resource,
    }
}

async fn mappings(clients: &Clients) -> Result<Vec<Found>> {
    let mut mappings = Vec::new();
    let mut pages = clients.lambda.list_event_source_mappings().into_paginator().items().send();
    while let Some(mapping) = pages.next().await {
        mappings.push(mapping.doing("listing event source mappings")?);
    }
    let mut found = Vec::new();
    for mapping in mappings {
        let function_arn = mapping.function_arn().unwrap_or_default();
        // Some emulators leave out the mapping's ARN; it follows from the function's.
        let arn = mapping.event_source_mapping_arn().map(str::to_owned).unwrap_or_else(|| {
            let base = function_arn.split(":function:").next().unwrap_or_default();
            format!("{base}:event-source-mapping:{}", mapping.uuid().unwrap_or_default())
        });
        let name =
            format!("{} -> {}", source_name(mapping.event_source_arn().unwrap_or_default()), last(function_arn, ':'));
        let tags = clients.lambda.list_tags().resource(&arn).send().await;
        let Some(out) = tags.or_absent(format!("reading tags of event source mapping {name}"))? else { continue };
        let tags: Vec<_> = out.tags.unwrap_or_default().into_iter().collect();
        found.extend(labs_tags(Kind::EventSourceMapping, name, &tags));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_tags_read_back_as_ages() {
        let now = OffsetDateTime::parse("2026-12-01T10:30:00Z", &Rfc3339).unwrap();
        assert_eq!(age("2026-12-01T07:00:00Z", now), Some(Duration::from_secs(3 * 3600 + 1800)));
        assert_eq!(age("2026-12-01T11:00:00Z", now), None, "a clock ahead of ours gives no age");
        assert_eq!(age("yesterday", now), None);
        let tag = now_tag();
        assert!(age(&tag, OffsetDateTime::now_utc()).is_some_and(|a| a < Duration::from_secs(60)), "{tag}");
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(describe_age(Duration::from_secs(12 * 60 + 59)), "12 min");
        assert_eq!(describe_age(Duration::from_secs(3600 + 5 * 60)), "1 h 05 min");
        assert_eq!(describe_age(Duration::from_secs(26 * 3600)), "1 day 2 h");
        assert_eq!(describe_age(Duration::from_secs(75 * 3600)), "3 days 3 h");
    }

    #[test]
    fn only_both_labs_tags_make_a_resource_ours() {
        let tags = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let ours = tags(&[(TAG_PREFIX, "p"), (TAG_EXAMPLE, "example-1"), (TAG_CREATED_AT, "2026-12-01T07:00:00Z")]);
        let found = labs_tags(Kind::SqsQueue, "p-q".into(), &ours).unwrap();
        assert_eq!((found.prefix.as_str(), found.example.as_str()), ("p", "example-1"));
        assert_eq!(found.created_at.as_deref(), Some("2026-12-01T07:00:00Z"));
        assert_eq!(labs_tags(Kind::SqsQueue, "p-q".into(), &tags(&[(TAG_PREFIX, "p")])), None);
        assert_eq!(labs_tags(Kind::SqsQueue, "labs-q".into(), &tags(&[("team", "x")])), None);
    }

    #[test]
    fn mapping_sources_are_named_by_their_arn() {
        assert_eq!(source_name("arn:aws:kinesis:us-east-1:1:stream/p-ex4-events"), "p-ex4-events");
        assert_eq!(
            source_name("arn:aws:dynamodb:us-east-1:1:table/p-ex3-products/stream/2026-12-01T00:00:00.000"),
            "p-ex3-products"
        );
        assert_eq!(source_name("arn:aws:sqs:us-east-1:1:p-ex2-shipping"), "p-ex2-shipping");
    }
}
