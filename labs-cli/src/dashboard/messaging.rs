//! Per SQS queue: visible, in flight, and what its dead-letter queue holds; per SNS topic, what
//! each subscribed queue holds now. SNS itself keeps no count of what was published (CloudWatch's
//! NumberOfMessagesPublished does, on AWS), so the topic's own figure is "n/a".

use labs_infra::stack;
use serde::Serialize;

use super::present::Declared;
use crate::driver::messaging::{self, Depth};
use crate::target::Target;

#[derive(Debug, Serialize)]
pub struct QueuePanel {
    pub name: String,
    pub example: String,
    #[serde(flatten)]
    pub depth: Depth,
    /// The queue it dead-letters into, and what that one holds.
    pub dead_letter_queue: Option<String>,
    pub dead_lettered: Option<u64>,
    /// Another declared queue's dead-letter queue.
    pub is_dead_letter_queue: bool,
}

#[derive(Debug, Serialize)]
pub struct TopicPanel {
    pub name: String,
    pub example: String,
    pub published: &'static str,
    pub subscriptions: Vec<SubscriptionPanel>,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionPanel {
    pub queue: String,
    /// What the subscribed queue holds now (visible + in flight).
    pub holds: Option<u64>,
}

/// Every declared queue and topic that exists.
pub async fn read(
    target: &Target,
    examples: &[Declared],
    errors: &mut Vec<String>,
) -> (Vec<QueuePanel>, Vec<TopicPanel>) {
    let mut queues = Vec::new();
    let mut topics = Vec::new();
    for example in examples {
        let full = |name: &str| stack::full_name(&target.prefix, name);
        let depth_of = |name: &str| {
            let full = full(name);
            let present = example.has(target, name);
            async move {
                if !present {
                    return None;
                }
                let url = messaging::queue_url(&target.clients.sqs, &full, "").await.ok()?;
                messaging::depth(&target.clients.sqs, &url).await.ok()
            }
        };
        for queue in &example.stack.sqs_queues {
            if !example.has(target, &queue.name) {
                continue;
            }
            let Some(depth) = depth_of(&queue.name).await else {
                errors.push(format!("{}: its depth is not readable", full(&queue.name)));
                continue;
            };
            let dead_letter = queue.dead_letter.as_ref().map(|d| d.queue.as_str());
            let dead_lettered = match dead_letter {
                Some(name) => depth_of(name).await.map(|d| d.total()),
                None => None,
            };
            queues.push(QueuePanel {
                name: full(&queue.name),
                example: example.id.to_string(),
                depth,
                dead_letter_queue: dead_letter.map(full),
                dead_lettered,
                is_dead_letter_queue: example
                    .stack
                    .sqs_queues
                    .iter()
                    .any(|q| q.dead_letter.as_ref().is_some_and(|d| d.queue == queue.name)),
            });
        }
        for topic in &example.stack.sns_topics {
            if !example.has(target, &topic.name) {
                continue;
            }
            let mut subscriptions = Vec::new();
            for subscription in example.stack.subscriptions.iter().filter(|s| s.topic == topic.name) {
                let holds = depth_of(&subscription.queue).await.map(|d| d.total());
                subscriptions.push(SubscriptionPanel { queue: full(&subscription.queue), holds });
            }
            topics.push(TopicPanel {
                name: full(&topic.name),
                example: example.id.to_string(),
                published: "n/a: SNS keeps no count (CloudWatch's NumberOfMessagesPublished on AWS)",
                subscriptions,
            });
        }
    }
    (queues, topics)
}
