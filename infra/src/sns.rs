//! SNS topics, and their subscriptions that deliver to SQS queues (raw delivery, filter policy).

use anyhow::{Result, bail};
use aws_sdk_sns::types::Tag;
use serde_json::Value;

use crate::model::{Action, Change, Ctx, Kind, Removal, resource};
use crate::sdk_error::{SdkContext, SdkOutcome};
use crate::stack::{SnsTopic, Subscription};
use crate::{poll, sqs};

const RAW_DELIVERY: &str = "RawMessageDelivery";
const FILTER_POLICY: &str = "FilterPolicy";

resource!(
    SnsTopic,
    Kind::SnsTopic,
    name = |ctx, spec| ctx.vars.name(&spec.name),
    plan = plan_topic,
    apply = apply_topic,
    destroy = destroy_topic
);
resource!(
    Subscription,
    Kind::SnsSubscription,
    name = subscription_name,
    plan = plan_subscription,
    apply = apply_subscription,
    destroy = destroy_subscription,
);

/// A topic's ARN is fixed by its name, so plans and queue policies can name it before it exists.
pub(crate) fn topic_arn(ctx: &Ctx<'_>, full_name: &str) -> String {
    ctx.vars.expand(&format!("arn:${{partition}}:sns:${{region}}:${{account}}:{full_name}"))
}

/// The topic's tags, or `None` when it does not exist. Existence is asked first: emulators
/// spell ListTagsForResource's not-found error differently from AWS.
async fn topic_tags(ctx: &Ctx<'_>, full_name: &str) -> Result<Option<Vec<(String, String)>>> {
    if !topic_exists(ctx, full_name).await? {
        return Ok(None);
    }
    let arn = topic_arn(ctx, full_name);
    let out = ctx
        .clients
        .sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .doing(format!("reading tags of SNS topic {full_name}"))?;
    Ok(Some(out.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()))
}

async fn topic_exists(ctx: &Ctx<'_>, full_name: &str) -> Result<bool> {
    let arn = topic_arn(ctx, full_name);
    let out = ctx
        .clients
        .sns
        .get_topic_attributes()
        .topic_arn(&arn)
        .send()
        .await
        .or_absent(format!("reading SNS topic {full_name}"))?;
    Ok(out.is_some())
}

async fn plan_topic(ctx: &Ctx<'_>, spec: &SnsTopic) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = match topic_tags(ctx, &name).await? {
        None => Action::Create,
        Some(tags) => ctx.conflict_unless_owned(&tags).unwrap_or(Action::Unchanged),
    };
    Ok(Change { kind: Kind::SnsTopic, name, action, settings: "standard".to_owned() })
}

async fn apply_topic(ctx: &Ctx<'_>, spec: &SnsTopic, action: &Action) -> Result<()> {
    if *action != Action::Create {
        return Ok(());
    }
    let name = ctx.vars.name(&spec.name);
    // CreateTopic answers with the existing topic when there is one, so ask first: a topic that
    // appeared since the plan was made is ours only if its tags say so.
    if let Some(tags) = topic_tags(ctx, &name).await? {
        if let Err(reason) = ctx.owns(&tags) {
            bail!("SNS topic {name} appeared while applying and is not ours: {reason}");
        }
        return Ok(());
    }
    let mut create = ctx.clients.sns.create_topic().name(&name);
    for (key, value) in ctx.tags() {
        create = create.tags(Tag::builder().key(key).value(value).build()?);
    }
    create.send().await.doing(format!("creating SNS topic {name}"))?;
    let missing = ctx.missing_tags(&topic_tags(ctx, &name).await?.unwrap_or_default());
    if !missing.is_empty() {
        let mut tagging = ctx.clients.sns.tag_resource().resource_arn(topic_arn(ctx, &name));
        for (key, value) in missing {
            tagging = tagging.tags(Tag::builder().key(key).value(value).build()?);
        }
        tagging.send().await.doing(format!("tagging SNS topic {name}"))?;
    }
    Ok(())
}

async fn destroy_topic(ctx: &Ctx<'_>, spec: &SnsTopic) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let Some(tags) = topic_tags(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(&tags) {
        return Ok(Removal::LeftAlone(reason));
    }
    // Deleting a topic also deletes every subscription it still has.
    let arn = topic_arn(ctx, &name);
    if ctx
        .clients
        .sns
        .delete_topic()
        .topic_arn(&arn)
        .send()
        .await
        .or_absent(format!("deleting SNS topic {name}"))?
        .is_none()
    {
        return Ok(Removal::Absent);
    }
    poll::until(format!("waiting for SNS topic {name} to go"), poll::LIMIT, || async {
        Ok(!topic_exists(ctx, &name).await?)
    })
    .await?;
    Ok(Removal::Deleted)
}

/// How a subscription is named in plans and reports: it has no name of its own, only an ARN.
fn subscription_name(ctx: &Ctx<'_>, spec: &Subscription) -> String {
    format!("{} -> {}", ctx.vars.name(&spec.topic), ctx.vars.name(&spec.queue))
}

/// The ARN of the topic's subscription to the queue, if there is one.
async fn find_subscription(ctx: &Ctx<'_>, spec: &Subscription) -> Result<Option<String>> {
    let topic = topic_arn(ctx, &ctx.vars.name(&spec.topic));
    let queue = sqs::arn_of(ctx, &ctx.vars.name(&spec.queue));
    let mut pages = ctx.clients.sns.list_subscriptions_by_topic().topic_arn(&topic).into_paginator().items().send();
    while let Some(subscription) = pages.next().await {
        let Some(subscription) = subscription.or_absent(format!("listing subscriptions of {topic}"))? else {
            return Ok(None);
        };
        let arn = subscription.subscription_arn().filter(|arn| {
            // Not yet confirmed ("PendingConfirmation"): there is nothing to read or delete yet.
            arn.starts_with("arn:")
        });
        if subscription.protocol() == Some("sqs")
            && subscription.endpoint() == Some(queue.as_str())
            && let Some(arn) = arn
        {
            return Ok(Some(arn.to_owned()));
        }
    }
    Ok(None)
}

/// The subscription attributes the declaration asks for. An empty filter policy removes one.
fn wanted(spec: &Subscription) -> [(&'static str, String); 2] {
    [
        (RAW_DELIVERY, spec.raw_message_delivery.to_string()),
        (FILTER_POLICY, spec.filter_policy.as_ref().map(Value::to_string).unwrap_or_default()),
    ]
}

fn drift(spec: &Subscription, current: &std::collections::HashMap<String, String>) -> Vec<&'static str> {
    let mut drift = Vec::new();
    let raw = current.get(RAW_DELIVERY).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if raw != spec.raw_message_delivery {
        drift.push("raw delivery");
    }
    let policy = current.get(FILTER_POLICY).and_then(|p| serde_json::from_str::<Value>(p).ok());
    if policy != spec.filter_policy {
        drift.push("filter policy");
    }
    drift
}

/// A subscription belongs to its topic: if the topic is ours, so is the subscription.
async fn topic_ownership(ctx: &Ctx<'_>, spec: &Subscription) -> Result<Option<Result<(), String>>> {
    let tags = topic_tags(ctx, &ctx.vars.name(&spec.topic)).await?;
    Ok(tags.map(|tags| ctx.owns(&tags).map_err(|reason| format!("the topic is not ours: {reason}"))))
}

async fn plan_subscription(ctx: &Ctx<'_>, spec: &Subscription) -> Result<Change> {
    let name = subscription_name(ctx, spec);
    let existing = match topic_ownership(ctx, spec).await? {
        Some(Err(reason)) => Err(reason),
        Some(Ok(())) => Ok(find_subscription(ctx, spec).await?),
        None => Ok(None),
    };
    let action = match existing {
        Err(reason) => Action::Conflict(reason),
        Ok(None) => Action::Create,
        Ok(Some(arn)) => {
            let current = ctx
                .clients
                .sns
                .get_subscription_attributes()
                .subscription_arn(&arn)
                .send()
                .await
                .doing(format!("reading subscription {name}"))?;
            let drift = drift(spec, &current.attributes.unwrap_or_default());
            if drift.is_empty() { Action::Unchanged } else { Action::Update(drift.join(", ")) }
        }
    };
    let mut settings = format!("to SQS, {}", if spec.raw_message_delivery { "raw" } else { "in the SNS envelope" });
    if let Some(policy) = &spec.filter_policy {
        settings.push_str(&format!(", filter {policy}"));
    }
    Ok(Change { kind: Kind::SnsSubscription, name, action, settings })
}

async fn apply_subscription(ctx: &Ctx<'_>, spec: &Subscription, action: &Action) -> Result<()> {
    let name = subscription_name(ctx, spec);
    let sns = &ctx.clients.sns;
    match action {
        Action::Unchanged | Action::Conflict(_) => {}
        Action::Create => {
            let mut subscribe = sns
                .subscribe()
                .topic_arn(topic_arn(ctx, &ctx.vars.name(&spec.topic)))
                .protocol("sqs")
                .endpoint(sqs::arn_of(ctx, &ctx.vars.name(&spec.queue)))
                .return_subscription_arn(true);
            for (key, value) in wanted(spec) {
                if !value.is_empty() {
                    subscribe = subscribe.attributes(key, value);
                }
            }
            subscribe.send().await.doing(format!("subscribing {name}"))?;
        }
        Action::Update(_) => {
            let Some(arn) = find_subscription(ctx, spec).await? else {
                bail!("subscription {name} vanished while it was being updated");
            };
            for (key, value) in wanted(spec) {
                sns.set_subscription_attributes()
                    .subscription_arn(&arn)
                    .attribute_name(key)
                    .attribute_value(value)
                    .send()
                    .await
                    .doing(format!("setting {key} of subscription {name}"))?;
            }
        }
    }
    Ok(())
}

/// Removed explicitly even though deleting the topic would take it along, because deleting only
/// the queue would not: SNS would keep delivering to a queue that is gone.
async fn destroy_subscription(ctx: &Ctx<'_>, spec: &Subscription) -> Result<Removal> {
    let name = subscription_name(ctx, spec);
    match topic_ownership(ctx, spec).await? {
        None => return Ok(Removal::Absent),
        Some(Err(reason)) => return Ok(Removal::LeftAlone(reason)),
        Some(Ok(())) => {}
    }
    let Some(arn) = find_subscription(ctx, spec).await? else {
        return Ok(Removal::Absent);
    };
    let sns = &ctx.clients.sns;
    if sns.unsubscribe().subscription_arn(&arn).send().await.or_absent(format!("unsubscribing {name}"))?.is_none() {
        return Ok(Removal::Absent);
    }
    poll::until(format!("waiting for subscription {name} to go"), poll::LIMIT, || async {
        Ok(find_subscription(ctx, spec).await?.is_none())
    })
    .await?;
    Ok(Removal::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn subscription(filter: Option<Value>) -> Subscription {
        Subscription { topic: "t".into(), queue: "q".into(), raw_message_delivery: true, filter_policy: filter }
    }

    #[test]
    fn filter_policies_compare_as_json() {
        let spec = subscription(Some(json!({"total": [{"numeric": [">=", 100]}]})));
        let current = HashMap::from([
            (RAW_DELIVERY.to_owned(), "true".to_owned()),
            (FILTER_POLICY.to_owned(), r#"{ "total" : [ { "numeric" : [ ">=", 100 ] } ] }"#.to_owned()),
        ]);
        assert!(drift(&spec, &current).is_empty());
        let bare = HashMap::from([(RAW_DELIVERY.to_owned(), "false".to_owned())]);
        assert_eq!(drift(&spec, &bare), ["raw delivery", "filter policy"]);
        assert!(drift(&subscription(None), &HashMap::from([(RAW_DELIVERY.to_owned(), "true".to_owned())])).is_empty());
    }
}
