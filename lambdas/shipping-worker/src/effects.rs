//! Where consumers record what they did: the effects table (partition key `consumer`, sort key
//! `id`; see [`labs_core::order_messages::Effect`]). The shipping worker writes through it, and so
//! do the billing and analytics consumers that run inside `labs`, so every consumer applies its
//! effect the same idempotent way.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use labs_core::order_messages::{Effect, Order, REJECTED, Rejection, Subscriber, preview};
use thiserror::Error;

/// How much of a rejected body is kept for the learner to look at.
const KEPT_BODY_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("recording in the effects table failed: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    /// One line: the service's error code and message, or for a failure before any answer
    /// (connection, timeout) its innermost cause.
    fn of<E, R>(table: &str, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let detail = match err.as_service_error() {
            Some(e) => format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message")),
            None => {
                let mut cause: &dyn std::error::Error = err;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                cause.to_string()
            }
        };
        StoreError(format!("UpdateItem on {table}: {detail}"))
    }
}

/// What recording an order's effect did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The first delivery of this order to this consumer: the effect happened now. Later
    /// deliveries (redeliveries) find the row and only count themselves.
    pub first_delivery: bool,
    pub deliveries: u64,
    /// Who applied the effect (on its first delivery).
    pub handled_by: String,
}

pub trait EffectStore {
    /// Applies `consumer`'s effect for `order` exactly once, however often it is delivered.
    fn record(
        &self,
        consumer: Subscriber,
        order: &Order,
        handled_by: &str,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    /// Notes that the shipping worker could not handle a message, and why.
    fn reject(
        &self,
        message_id: &str,
        reason: &str,
        body: &str,
        batch_size: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

#[derive(Debug, Clone)]
pub struct DynamoEffects {
    client: Client,
    table: String,
}

impl DynamoEffects {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

impl EffectStore for DynamoEffects {
    async fn record(&self, consumer: Subscriber, order: &Order, handled_by: &str) -> Result<Recorded, StoreError> {
        self.record_as(consumer.as_str(), order, handled_by).await
    }

    async fn reject(&self, message_id: &str, reason: &str, body: &str, batch_size: usize) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("consumer", s(REJECTED))
            .key("id", s(message_id))
            .update_expression("SET #reason = :reason, #body = :body, #sizes = list_append(if_not_exists(#sizes, :none), :size) ADD #attempts :one")
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_names("#body", "body")
            .expression_attribute_names("#sizes", "batch_sizes")
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":body", s(preview(body, KEPT_BODY_CHARS)))
            .expression_attribute_values(":none", AttributeValue::L(vec![]))
            .expression_attribute_values(":size", AttributeValue::L(vec![n(batch_size)]))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| StoreError::of(&self.table, &e))?;
        Ok(())
    }
}

impl DynamoEffects {
    /// [`EffectStore::record`] under any consumer name, for a consumer that is not a queue's
    /// subscriber (billing's webhook, [`labs_core::order_messages::WEBHOOK`]).
    pub async fn record_as(&self, consumer: &str, order: &Order, handled_by: &str) -> Result<Recorded, StoreError> {
        // One atomic update: the counter tells the first delivery from a redelivery, and
        // `if_not_exists` keeps whoever applied the effect first.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("consumer", s(consumer))
            .key("id", s(&order.order_id))
            .update_expression("SET #by = if_not_exists(#by, :who), #seq = :seq, #total = :total ADD #deliveries :one")
            .expression_attribute_names("#by", "handled_by")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#total", "total")
            .expression_attribute_names("#deliveries", "deliveries")
            .expression_attribute_values(":who", s(handled_by))
            .expression_attribute_values(":seq", n(order.seq))
            .expression_attribute_values(":total", n(order.total))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| StoreError::of(&self.table, &e))?;
        let attributes = out.attributes.unwrap_or_default();
        let deliveries = match attributes.get("deliveries") {
            Some(AttributeValue::N(text)) => text.parse().unwrap_or(1),
            _ => 1,
        };
        let handled_by = match attributes.get("handled_by") {
            Some(AttributeValue::S(who)) => who.clone(),
            _ => handled_by.to_owned(),
        };
        Ok(Recorded { first_delivery: deliveries == 1, deliveries, handled_by })
    }
}

/// The same behaviour in memory, for tests. `failing` names orders whose write fails, to stand
/// for a store that is down.
#[derive(Debug, Default)]
pub struct MemoryEffects {
    pub effects: Mutex<BTreeMap<(String, String), Effect>>,
    pub rejections: Mutex<BTreeMap<String, Rejection>>,
    pub failing: Vec<String>,
}

impl MemoryEffects {
    pub fn effects(&self) -> Vec<Effect> {
        self.effects.lock().expect("not poisoned").values().cloned().collect()
    }

    pub fn rejections(&self) -> Vec<Rejection> {
        self.rejections.lock().expect("not poisoned").values().cloned().collect()
    }
}

impl EffectStore for MemoryEffects {
    async fn record(&self, consumer: Subscriber, order: &Order, handled_by: &str) -> Result<Recorded, StoreError> {
        if self.failing.contains(&order.order_id) {
            return Err(StoreError(format!("the store is down for {}", order.order_id)));
        }
        let mut effects = self.effects.lock().expect("not poisoned");
        let effect = effects.entry((consumer.as_str().to_owned(), order.order_id.clone())).or_insert_with(|| Effect {
            consumer: consumer.as_str().to_owned(),
            id: order.order_id.clone(),
            seq: order.seq,
            handled_by: handled_by.to_owned(),
            deliveries: 0,
        });
        effect.deliveries += 1;
        Ok(Recorded {
            first_delivery: effect.deliveries == 1,
            deliveries: effect.deliveries,
            handled_by: effect.handled_by.clone(),
        })
    }

    async fn reject(&self, message_id: &str, reason: &str, body: &str, batch_size: usize) -> Result<(), StoreError> {
        let mut rejections = self.rejections.lock().expect("not poisoned");
        let rejection = rejections.entry(message_id.to_owned()).or_insert_with(|| Rejection {
            consumer: REJECTED.to_owned(),
            id: message_id.to_owned(),
            reason: String::new(),
            attempts: 0,
            batch_sizes: vec![],
            body: String::new(),
        });
        rejection.reason = reason.to_owned();
        rejection.body = preview(body, KEPT_BODY_CHARS);
        rejection.attempts += 1;
        rejection.batch_sizes.push(batch_size as u64);
        Ok(())
    }
}
