//! SNS and SQS operations the examples share: publish to a topic, send to a queue, receive,
//! acknowledge (delete) or release (visibility 0) a message, look into a queue without consuming
//! it, and redrive a dead-letter queue by receive, send and delete (which works on every target;
//! MiniStack has no StartMessageMoveTask).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use indicatif::ProgressBar;
use labs_infra::SdkContext;

/// PublishBatch and SendMessageBatch take at most 10 entries.
const BATCH: usize = 10;
/// How long `peek` keeps the messages it looked at hidden, before it releases them.
const PEEK_VISIBILITY: i32 = 20;

/// One message to publish or send, with `Number` message attributes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: String,
    pub number_attributes: Vec<(String, String)>,
}

impl Outgoing {
    pub fn plain(body: impl Into<String>) -> Self {
        Self { body: body.into(), number_attributes: vec![] }
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS has handed this message out, this time included.
    pub receive_count: u32,
    pub attributes: HashMap<String, MessageAttributeValue>,
}

impl Received {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(|a| a.string_value())
    }
}

fn not_up(kind: &str, name: &str, example: &str) -> anyhow::Error {
    anyhow::anyhow!("{kind} {name} does not exist: run `labs up {example}` (with the same --prefix) first")
}

/// The ARN of the topic called `name`.
pub async fn topic_arn(sns: &aws_sdk_sns::Client, name: &str, example: &str) -> Result<String> {
    let suffix = format!(":{name}");
    let mut pages = sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.doing("listing SNS topics")?;
        if let Some(arn) = page.topics().iter().filter_map(|t| t.topic_arn()).find(|arn| arn.ends_with(&suffix)) {
            return Ok(arn.to_owned());
        }
    }
    Err(not_up("SNS topic", name, example))
}

pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str, example: &str) -> Result<String> {
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url.unwrap_or_default()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_queue_does_not_exist()) => {
            Err(not_up("SQS queue", name, example))
        }
        Err(err) => Err(err).doing(format!("looking up SQS queue {name}")),
    }
}

/// Publishes `messages` in PublishBatch calls; any entry SNS refuses is an error.
pub async fn publish(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    messages: &[Outgoing],
    bar: &ProgressBar,
) -> Result<()> {
    use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
    for chunk in messages.chunks(BATCH) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, message) in chunk.iter().enumerate() {
            let mut entry = PublishBatchRequestEntry::builder().id(format!("m{i}")).message(&message.body);
            for (name, value) in &message.number_attributes {
                let attribute = MessageAttributeValue::builder().data_type("Number").string_value(value).build()?;
                entry = entry.message_attributes(name, attribute);
            }
            entries.push(entry.build()?);
        }
        let out = sns
            .publish_batch()
            .topic_arn(topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .doing(format!("publishing to {topic_arn}"))?;
        if let Some(failed) = out.failed().first() {
            bail!("SNS refused a message: {} {}", failed.code(), failed.message().unwrap_or_default());
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(())
}

fn sqs_attribute(value: &str) -> Result<MessageAttributeValue> {
    Ok(MessageAttributeValue::builder().data_type("Number").string_value(value).build()?)
}

/// Sends `messages` to a queue in SendMessageBatch calls, in order; a refused entry is an error.
/// With `delay_seconds`, they stay invisible that long (a message timer).
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    messages: &[Outgoing],
    delay_seconds: Option<i32>,
) -> Result<()> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for chunk in messages.chunks(BATCH) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, message) in chunk.iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(&message.body)
                .set_delay_seconds(delay_seconds);
            for (name, value) in &message.number_attributes {
                entry = entry.message_attributes(name, sqs_attribute(value)?);
            }
            entries.push(entry.build()?);
        }
        let out = sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .doing(format!("sending to {url}"))?;
        if let Some(failed) = out.failed().first() {
            bail!("SQS refused a message: {} {}", failed.code(), failed.message().unwrap_or_default());
        }
    }
    Ok(())
}

/// Receives up to `max` messages, waiting up to `wait_seconds` for the first (long polling).
/// `visibility` overrides the queue's visibility timeout for these messages.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: i32,
    wait_seconds: i32,
    visibility: Option<i32>,
) -> Result<Vec<Received>> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .wait_time_seconds(wait_seconds)
        .set_visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_attribute_names("All")
        .send()
        .await
        .doing(format!("receiving from {url}"))?;
    Ok(out
        .messages()
        .iter()
        .map(|m| Received {
            message_id: m.message_id().unwrap_or_default().to_owned(),
            receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
            body: m.body().unwrap_or_default().to_owned(),
            receive_count: m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
            attributes: m.message_attributes().cloned().unwrap_or_default(),
        })
        .collect())
}

/// Acknowledges a message: deletes it, so SQS never hands it out again.
pub async fn ack(sqs: &aws_sdk_sqs::Client, url: &str, message: &Received) -> Result<()> {
    sqs.delete_message()
        .queue_url(url)
        .receipt_handle(&message.receipt_handle)
        .send()
        .await
        .doing(format!("deleting message {} from {url}", message.message_id))?;
    Ok(())
}

/// A negative acknowledgement: makes the message visible again at once, for another try.
pub async fn release(sqs: &aws_sdk_sqs::Client, url: &str, message: &Received) -> Result<()> {
    sqs.change_message_visibility()
        .queue_url(url)
        .receipt_handle(&message.receipt_handle)
        .visibility_timeout(0)
        .send()
        .await
        .doing(format!("releasing message {} on {url}", message.message_id))?;
    Ok(())
}

/// What a queue holds right now, from its attributes (approximate on AWS).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Depth {
    /// Visible messages, waiting for a consumer.
    pub waiting: u64,
    /// Received and neither deleted nor back yet.
    pub in_flight: u64,
}

impl Depth {
    pub fn total(&self) -> u64 {
        self.waiting + self.in_flight
    }
}

pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Depth> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .doing(format!("reading attributes of {url}"))?;
    let attributes = out.attributes.unwrap_or_default();
    let number = |name: QueueAttributeName| attributes.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Depth {
        waiting: number(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// The settings of a queue that the examples explain.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub arn: String,
    pub visibility_timeout: Duration,
    /// Receives after which the redrive policy moves a message to the dead-letter queue.
    pub max_receive_count: Option<u32>,
}

pub async fn settings(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<QueueSettings> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .doing(format!("reading attributes of {url}"))?;
    let attributes = out.attributes.unwrap_or_default();
    let seconds = attributes.get(&QueueAttributeName::VisibilityTimeout).and_then(|v| v.parse().ok()).unwrap_or(30);
    let max_receive_count = attributes
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|policy| serde_json::from_str::<serde_json::Value>(policy).ok())
        .and_then(|policy| match &policy["maxReceiveCount"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .and_then(|n| u32::try_from(n).ok());
    Ok(QueueSettings {
        arn: attributes.get(&QueueAttributeName::QueueArn).cloned().unwrap_or_default(),
        visibility_timeout: Duration::from_secs(seconds),
        max_receive_count,
    })
}

/// Every message in a queue, without consuming any: receives until nothing more comes, then
/// makes them all visible again. Each look counts as a receive, so use it on queues without a
/// redrive policy (dead-letter queues), where receive counts decide nothing.
pub async fn peek(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<Received>> {
    let mut seen: Vec<Received> = Vec::new();
    loop {
        // Long polling (1 s) asks every SQS server, so an empty answer means empty.
        let batch = receive(sqs, url, 10, 1, Some(PEEK_VISIBILITY)).await?;
        if batch.is_empty() {
            break;
        }
        seen.extend(batch);
    }
    for message in &seen {
        release(sqs, url, message).await?;
    }
    Ok(seen)
}

/// Moves every message of a dead-letter queue back to its source queue, attributes included:
/// send a copy, then delete the original, so a failure in between duplicates rather than loses.
pub async fn redrive(sqs: &aws_sdk_sqs::Client, dead_letter_url: &str, source_url: &str) -> Result<usize> {
    let mut moved = 0;
    loop {
        let batch = receive(sqs, dead_letter_url, 10, 1, Some(30)).await?;
        if batch.is_empty() {
            return Ok(moved);
        }
        for message in &batch {
            sqs.send_message()
                .queue_url(source_url)
                .message_body(&message.body)
                .set_message_attributes(Some(message.attributes.clone()).filter(|a| !a.is_empty()))
                .send()
                .await
                .doing(format!("redriving message {} to {source_url}", message.message_id))?;
            ack(sqs, dead_letter_url, message).await?;
            moved += 1;
        }
    }
}
