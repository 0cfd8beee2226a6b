//! SNS topics, and their subscriptions that deliver to SQS queues (raw delivery, filter policy).

use anyhow::{Result, bail};
use aws_sdk_sns::types::Tag;
use serde_json::Value;

use crate::engine::{Action, Change, Ctx, Kind, Removal};
use crate::stack::{SnsTopic, Subscription};
use crate::{SdkContext, sqs};

const RAW_DELIVERY: &str = "RawMessageDelivery";
const FILTER_POLICY: &str = "FilterPolicy";

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
    match ctx.clients.sns.get_topic_attributes().topic_arn(&arn).send().await {
        Ok(_) => Ok(true),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found_exception()) => Ok(false),
        Err(err) => Err(err).doing(format!("reading SNS topic {full_name}")),
    }
}

pub(crate) async fn plan_topic(ctx: &Ctx<'_>, spec: &SnsTopic) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let action = if topic_exists(ctx, &name).await? { Action::Unchanged } else { Action::Create };
    Ok(Change { kind: Kind::SnsTopic, name, action, settings: "standard".to_owned() })
}

pub(crate) async fn apply_topic(ctx: &Ctx<'_>, spec: &SnsTopic, action: &Action) -> Result<()> {
    if *action == Action::Unchanged {
        return Ok(());
    }
    let name = ctx.vars.name(&spec.name);
    // CreateTopic returns the existing topic when there is one (an interrupted earlier run).
    let mut create = ctx.clients.sns.create_topic().name(&name);
    for (key, value) in ctx.tags() {
        create = create.tags(Tag::builder().key(key).value(value).build()?);
    }
    create.send().await.doing(format!("creating SNS topic {name}"))?;
    Ok(())
}

pub(crate) async fn destroy_topic(ctx: &Ctx<'_>, spec: &SnsTopic) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let Some(tags) = topic_tags(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return Ok(Removal::LeftAlone(reason));
    }
    // Deleting a topic also deletes every subscription it still has.
    let arn = topic_arn(ctx, &name);
    ctx.clients.sns.delete_topic().topic_arn(&arn).send().await.doing(format!("deleting SNS topic {name}"))?;
    Ok(Removal::Deleted)
}

/// How a subscription is named in plans and reports: it has no name of its own, only an ARN.
pub(crate) fn subscription_name(ctx: &Ctx<'_>, spec: &Subscription) -> String {
    format!("{} -> {}", ctx.vars.name(&spec.topic), ctx.vars.name(&spec.queue))
}

/// The ARN of the topic's subscription to the queue, if there is one.
async fn find_subscription(ctx: &Ctx<'_>, spec: &Subscription) -> Result<Option<String>> {
    let topic = topic_arn(ctx, &ctx.vars.name(&spec.topic));
    let queue = sqs::arn_of(ctx, &ctx.vars.name(&spec.queue));
    let mut next_token: Option<String> = None;
    loop {
        let page = ctx
            .clients
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(&topic)
            .set_next_token(next_token.take())
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found_exception()) => return Ok(None),
            Err(err) => return Err(err).doing(format!("listing subscriptions of {topic}")),
        };
        let found = page
            .subscriptions()
            .iter()
            .find(|s| s.protocol() == Some("sqs") && s.endpoint() == Some(queue.as_str()))
            .and_then(|s| s.subscription_arn())
            // Not yet confirmed: there is nothing to read or delete yet.
            .filter(|arn| arn.starts_with("arn:"));
        if let Some(arn) = found {
            return Ok(Some(arn.to_owned()));
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
            _ => return Ok(None),
        }
    }
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

pub(crate) async fn plan_subscription(ctx: &Ctx<'_>, spec: &Subscription) -> Result<Change> {
    let name = subscription_name(ctx, spec);
    let action = match find_subscription(ctx, spec).await? {
        None => Action::Create,
        Some(arn) => {
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

pub(crate) async fn apply_subscription(ctx: &Ctx<'_>, spec: &Subscription, action: &Action) -> Result<()> {
    let name = subscription_name(ctx, spec);
    let sns = &ctx.clients.sns;
    match action {
        Action::Unchanged => {}
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

/// A subscription belongs to its topic: if the topic is ours, so is the subscription. It is
/// removed explicitly even though deleting the topic would take it along, because deleting only
/// the queue would not: SNS would keep delivering to a queue that is gone.
pub(crate) async fn destroy_subscription(ctx: &Ctx<'_>, spec: &Subscription) -> Result<Removal> {
    let name = subscription_name(ctx, spec);
    let Some(tags) = topic_tags(ctx, &ctx.vars.name(&spec.topic)).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return Ok(Removal::LeftAlone(format!("the topic is not ours: {reason}")));
    }
    let Some(arn) = find_subscription(ctx, spec).await? else {
        return Ok(Removal::Absent);
    };
    match ctx.clients.sns.unsubscribe().subscription_arn(&arn).send().await {
        Ok(_) => Ok(Removal::Deleted),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found_exception()) => Ok(Removal::Absent),
        Err(err) => Err(err).doing(format!("unsubscribing {name}")),
    }
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
