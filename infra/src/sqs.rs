//! SQS queues: visibility timeout, dead-letter queue (RedrivePolicy) and queue policy.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use backon::Retryable;
use serde_json::{Value, json};

use crate::model::{Action, Change, Ctx, Kind, Removal, Tag, resource};
use crate::sdk_error::{ErrorClass, SdkContext, SdkOutcome};
use crate::stack::SqsQueue;
use crate::{poll, sns};

/// AWS refuses to create a queue under a name deleted less than 60 seconds ago.
const RECREATE_WAIT: Duration = Duration::from_secs(90);
/// How long a deleted queue may stay visible, or a new one stay unlisted.
const LISTED_WAIT: Duration = Duration::from_secs(90);

resource!(
    SqsQueue,
    Kind::SqsQueue,
    name = |ctx, spec| ctx.vars.name(&spec.name),
    plan = plan,
    apply = apply,
    destroy = destroy
);

/// Queues in the order they can be created: a dead-letter queue before the queues that use it.
pub(crate) fn creation_order(queues: &[SqsQueue]) -> Vec<&SqsQueue> {
    let mut ordered: Vec<&SqsQueue> = Vec::with_capacity(queues.len());
    let mut waiting: Vec<&SqsQueue> = queues.iter().collect();
    while !waiting.is_empty() {
        let before = waiting.len();
        waiting.retain(|queue| {
            let ready = queue.dead_letter.as_ref().is_none_or(|d| ordered.iter().any(|q| q.name == d.queue));
            if ready {
                ordered.push(queue);
            }
            !ready
        });
        if waiting.len() == before {
            // A dead-letter queue that is not declared (or a cycle): creating will say which.
            ordered.append(&mut waiting);
        }
    }
    ordered
}

/// A queue's ARN is fixed by its name, so plans can name queues that do not exist yet.
pub(crate) fn arn_of(ctx: &Ctx<'_>, full_name: &str) -> String {
    ctx.vars.expand(&format!("arn:${{partition}}:sqs:${{region}}:${{account}}:{full_name}"))
}

pub(crate) async fn queue_url(ctx: &Ctx<'_>, full_name: &str) -> Result<Option<String>> {
    let out = ctx
        .clients
        .sqs
        .get_queue_url()
        .queue_name(full_name)
        .send()
        .await
        .or_absent(format!("looking up SQS queue {full_name}"))?;
    Ok(out.and_then(|out| out.queue_url))
}

/// The ARN the service reports for an existing queue, or `None` when it does not exist.
pub(crate) async fn queue_arn(ctx: &Ctx<'_>, full_name: &str) -> Result<Option<String>> {
    let Some(url) = queue_url(ctx, full_name).await? else {
        return Ok(None);
    };
    Ok(attributes(ctx, full_name, &url).await?.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)))
}

async fn attributes(ctx: &Ctx<'_>, full_name: &str, url: &str) -> Result<Option<HashMap<QueueAttributeName, String>>> {
    let out = ctx
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .or_absent(format!("reading attributes of SQS queue {full_name}"))?;
    Ok(out.map(|out| out.attributes.unwrap_or_default()))
}

/// The queue's tags, or `None` when it went while we asked.
async fn tags(ctx: &Ctx<'_>, full_name: &str, url: &str) -> Result<Option<Vec<Tag>>> {
    let out = ctx
        .clients
        .sqs
        .list_queue_tags()
        .queue_url(url)
        .send()
        .await
        .or_absent(format!("reading tags of SQS queue {full_name}"))?;
    Ok(out.map(|out| out.tags.unwrap_or_default().into_iter().collect()))
}

/// The attributes the declaration asks for. An absent policy is an empty string, which is how
/// SQS is told to remove one.
fn wanted(ctx: &Ctx<'_>, spec: &SqsQueue) -> Vec<(QueueAttributeName, String)> {
    let name = ctx.vars.name(&spec.name);
    let redrive = spec.dead_letter.as_ref().map(|d| {
        json!({ "deadLetterTargetArn": arn_of(ctx, &ctx.vars.name(&d.queue)), "maxReceiveCount": d.max_receive_count })
    });
    // Only the listed topics may send, and only as SNS deliveries.
    let policy = (!spec.allow_topics.is_empty()).then(|| {
        let topics: Vec<String> = spec.allow_topics.iter().map(|t| sns::topic_arn(ctx, &ctx.vars.name(t))).collect();
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "labs-topic-deliveries",
                "Effect": "Allow",
                "Principal": { "Service": "sns.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": arn_of(ctx, &name),
                "Condition": { "ArnEquals": { "aws:SourceArn": topics } },
            }],
        })
    });
    vec![
        (QueueAttributeName::VisibilityTimeout, spec.visibility_timeout_seconds.to_string()),
        (QueueAttributeName::RedrivePolicy, redrive.map(|v| v.to_string()).unwrap_or_default()),
        (QueueAttributeName::Policy, policy.map(|v| v.to_string()).unwrap_or_default()),
    ]
}

/// JSON attributes compared by meaning, not spelling; `maxReceiveCount` may come back as text.
fn normalized(text: &str) -> Option<Value> {
    let mut value: Value = serde_json::from_str(text).ok()?;
    if let Some(count) = value.get_mut("maxReceiveCount")
        && let Some(number) = count.as_str().and_then(|s| s.parse::<i64>().ok())
    {
        *count = json!(number);
    }
    Some(value)
}

fn drift(wanted: &[(QueueAttributeName, String)], current: &HashMap<QueueAttributeName, String>) -> Vec<&'static str> {
    let current_of = |name: &QueueAttributeName| current.get(name).map(String::as_str).unwrap_or_default();
    let mut drift = Vec::new();
    for (name, value) in wanted {
        let differs = match name {
            QueueAttributeName::VisibilityTimeout => current_of(name).trim() != value,
            _ => normalized(current_of(name)) != normalized(value),
        };
        if differs {
            drift.push(match name {
                QueueAttributeName::VisibilityTimeout => "visibility timeout",
                QueueAttributeName::RedrivePolicy => "dead-letter queue",
                _ => "queue policy",
            });
        }
    }
    drift
}

fn settings(ctx: &Ctx<'_>, spec: &SqsQueue) -> String {
    let mut text = format!("standard, visibility timeout {} s", spec.visibility_timeout_seconds);
    if let Some(dead_letter) = &spec.dead_letter {
        text.push_str(&format!(
            ", dead letters to {} after {} receives",
            ctx.vars.name(&dead_letter.queue),
            dead_letter.max_receive_count
        ));
    }
    if !spec.allow_topics.is_empty() {
        let topics: Vec<String> = spec.allow_topics.iter().map(|t| ctx.vars.name(t)).collect();
        text.push_str(&format!(", only {} may send", topics.join(", ")));
    }
    text
}

async fn plan(ctx: &Ctx<'_>, spec: &SqsQueue) -> Result<Change> {
    let name = ctx.vars.name(&spec.name);
    let settings = settings(ctx, spec);
    let Some(url) = queue_url(ctx, &name).await? else {
        return Ok(Change { kind: Kind::SqsQueue, name, action: Action::Create, settings });
    };
    let (Some(tags), Some(current)) = (tags(ctx, &name, &url).await?, attributes(ctx, &name, &url).await?) else {
        return Ok(Change { kind: Kind::SqsQueue, name, action: Action::Create, settings });
    };
    let action = ctx.conflict_unless_owned(&tags).unwrap_or_else(|| {
        let drift = drift(&wanted(ctx, spec), &current);
        if drift.is_empty() { Action::Unchanged } else { Action::Update(drift.join(", ")) }
    });
    Ok(Change { kind: Kind::SqsQueue, name, action, settings })
}

async fn apply(ctx: &Ctx<'_>, spec: &SqsQueue, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&spec.name);
    let sqs = &ctx.clients.sqs;
    let wanted = wanted(ctx, spec);
    match action {
        Action::Create => return create(ctx, &name, &wanted).await,
        Action::Update(_) => {}
        Action::Unchanged | Action::Conflict(_) => return Ok(()),
    }
    let Some(url) = queue_url(ctx, &name).await? else {
        bail!("SQS queue {name} vanished while it was being updated");
    };
    sqs.set_queue_attributes()
        .queue_url(&url)
        .set_attributes(Some(wanted.into_iter().collect()))
        .send()
        .await
        .doing(format!("setting attributes of SQS queue {name}"))?;
    Ok(())
}

/// Creates the queue with its attributes and tags in one call, then waits until it is listed.
async fn create(ctx: &Ctx<'_>, name: &str, wanted: &[(QueueAttributeName, String)]) -> Result<()> {
    let sqs = &ctx.clients.sqs;
    // CreateQueue refuses empty attribute values: leave out what is not wanted.
    let on_create: HashMap<QueueAttributeName, String> =
        wanted.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
    let create = || {
        sqs.create_queue()
            .queue_name(name)
            .set_attributes(Some(on_create.clone()))
            .set_tags(Some(ctx.tags().into_iter().collect()))
            .send()
    };
    let created = create
        .retry(poll::schedule(RECREATE_WAIT))
        .when(|err| err.as_service_error().is_some_and(|e| e.is_queue_deleted_recently()))
        .await
        .tolerating(&[ErrorClass::AlreadyExists], format!("creating SQS queue {name}"))?;
    wait_listed(ctx, name, true).await?;
    let Some(url) = queue_url(ctx, name).await? else {
        bail!("SQS queue {name} vanished while it was being created");
    };
    let current = tags(ctx, name, &url).await?.unwrap_or_default();
    if created.is_err() {
        // Created since the plan was made: ours only if its tags say so, and then given our attributes.
        if let Err(reason) = ctx.owns(&current) {
            bail!("SQS queue {name} appeared while applying and is not ours: {reason}");
        }
        sqs.set_queue_attributes()
            .queue_url(&url)
            .set_attributes(Some(wanted.iter().cloned().collect()))
            .send()
            .await
            .doing(format!("setting attributes of SQS queue {name}"))?;
        return Ok(());
    }
    let missing = ctx.missing_tags(&current);
    if !missing.is_empty() {
        sqs.tag_queue()
            .queue_url(&url)
            .set_tags(Some(missing.into_iter().collect()))
            .send()
            .await
            .doing(format!("tagging SQS queue {name}"))?;
    }
    Ok(())
}

/// Waits until GetQueueUrl finds the queue (`listed`) or stops finding it: a new queue can take
/// a moment to be found on AWS, and a deleted one a moment to go.
async fn wait_listed(ctx: &Ctx<'_>, name: &str, listed: bool) -> Result<()> {
    let what = format!("waiting for SQS queue {name} to {}", if listed { "appear" } else { "go" });
    poll::until(what, LISTED_WAIT, || async { Ok(queue_url(ctx, name).await?.is_some() == listed) }).await
}

async fn destroy(ctx: &Ctx<'_>, spec: &SqsQueue) -> Result<Removal> {
    let name = ctx.vars.name(&spec.name);
    let sqs = &ctx.clients.sqs;
    let Some(url) = queue_url(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    let Some(tags) = tags(ctx, &name, &url).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(&tags) {
        return Ok(Removal::LeftAlone(reason));
    }
    if sqs.delete_queue().queue_url(&url).send().await.or_absent(format!("deleting SQS queue {name}"))?.is_none() {
        return Ok(Removal::Absent);
    }
    wait_listed(ctx, &name, false).await?;
    Ok(Removal::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::DeadLetter;

    fn queue(name: &str, dead_letter: Option<&str>) -> SqsQueue {
        SqsQueue {
            name: name.into(),
            visibility_timeout_seconds: 5,
            dead_letter: dead_letter.map(|q| DeadLetter { queue: q.into(), max_receive_count: 3 }),
            allow_topics: vec![],
        }
    }

    #[test]
    fn dead_letter_queues_come_first() {
        let queues = [queue("a", Some("a-dlq")), queue("b", None), queue("a-dlq", Some("last")), queue("last", None)];
        let order: Vec<&str> = creation_order(&queues).iter().map(|q| q.name.as_str()).collect();
        assert_eq!(order, ["b", "last", "a-dlq", "a"]);
        let undeclared = [queue("x", Some("nowhere"))];
        assert_eq!(creation_order(&undeclared).len(), 1);
    }

    #[test]
    fn redrive_policies_compare_by_meaning() {
        let wanted = [
            (QueueAttributeName::VisibilityTimeout, "5".to_owned()),
            (QueueAttributeName::RedrivePolicy, r#"{"deadLetterTargetArn":"arn:d","maxReceiveCount":3}"#.to_owned()),
            (QueueAttributeName::Policy, String::new()),
        ];
        let mut current = HashMap::from([
            (QueueAttributeName::VisibilityTimeout, "5".to_owned()),
            (QueueAttributeName::RedrivePolicy, r#"{"maxReceiveCount":"3", "deadLetterTargetArn":"arn:d"}"#.to_owned()),
        ]);
        assert!(drift(&wanted, &current).is_empty());
        current.insert(QueueAttributeName::VisibilityTimeout, "30".to_owned());
        current.insert(QueueAttributeName::Policy, "{}".to_owned());
        assert_eq!(drift(&wanted, &current), ["visibility timeout", "queue policy"]);
    }
}
