//! Example 2: the shipping worker. Lambda polls the shipping queue and invokes this function with
//! batches of up to 10 messages; the function ships each order (records its effect) and answers
//! with the messages it could not handle (`batchItemFailures`, allowed by the mapping's
//! `ReportBatchItemFailures`). Lambda deletes the rest; the failed ones become visible again after
//! the queue's visibility timeout, and after 3 receives SQS moves them to the dead-letter queue.
//!
//! Without a partial batch response, one bad message would fail the whole batch and every good
//! order in it would be retried with it. Delivery is at least once either way, so shipping is
//! idempotent: an order delivered again finds its row in the effects table and is not shipped twice.
//!
//! Environment of the deployed function: `EFFECTS_TABLE`.

pub mod effects;

pub use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
pub use effects::{DynamoEffects, EffectStore, MemoryEffects, Recorded, StoreError};

use labs_core::order_messages::{Subscriber, parse_order};
use lambda_runtime::{Error, LambdaEvent};

/// Environment variable naming the effects table.
pub const EFFECTS_TABLE_ENV: &str = "EFFECTS_TABLE";

/// Ships every order in `event` that it can, and names the messages it cannot handle: bodies that
/// are not orders, and orders whose shipment could not be recorded (those may succeed on a retry).
/// Only a record without a message id fails the whole batch: it cannot be named alone.
pub async fn process_batch<S: EffectStore>(
    store: &S,
    event: &SqsEvent,
    worker: &str,
) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    let (mut shipped, mut redelivered) = (0, 0);
    for record in &event.records {
        let Some(message_id) = record.message_id.as_deref() else {
            return Err("a record has no messageId, so it cannot be reported alone: failing the whole batch".into());
        };
        let body = record.body.as_deref().unwrap_or_default();
        match parse_order(body) {
            Ok(order) => match store.record(Subscriber::Shipping, &order, worker).await {
                Ok(recorded) if recorded.first_delivery => shipped += 1,
                Ok(_) => redelivered += 1,
                Err(err) => {
                    tracing::error!(message_id, order_id = order.order_id, "not shipped, will be retried: {err}");
                    response.add_failure(message_id);
                }
            },
            Err(problem) => {
                tracing::warn!(message_id, "rejecting the message: {problem}");
                // Best effort: the failure report below is what makes SQS retry it.
                let noted = store.reject(message_id, &problem.to_string(), body, event.records.len()).await;
                if let Err(err) = noted {
                    tracing::error!(message_id, "could not note the rejection: {err}");
                }
                response.add_failure(message_id);
            }
        }
    }
    tracing::info!(
        records = event.records.len(),
        shipped,
        redelivered,
        failed = response.batch_item_failures.len(),
        "batch handled"
    );
    Ok(response)
}

/// The Lambda handler.
pub async fn handle<S: EffectStore>(store: &S, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let worker = event.context.env_config.function_name.clone();
    process_batch(store, &event.payload, &worker).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use labs_core::order_messages::{MAX_ORDER_BYTES, generate, poison_body, unshippable_body};
    use serde_json::{Value, json};

    /// An SQS event as Lambda delivers it, one record per (message id, body).
    fn event(messages: &[(&str, Option<&str>)]) -> SqsEvent {
        let records: Vec<Value> = messages
            .iter()
            .map(|(id, body)| {
                json!({
                    "messageId": id,
                    "receiptHandle": format!("handle-{id}"),
                    "body": body,
                    "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000"},
                    "messageAttributes": {"total": {"stringValue": "12.50", "dataType": "Number"}},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:labs-ex2-shipping",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        serde_json::from_value(json!({ "Records": records })).expect("a valid SQS event")
    }

    fn failed(response: &SqsBatchResponse) -> Vec<&str> {
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect()
    }

    #[tokio::test]
    async fn a_good_batch_ships_every_order_and_fails_nothing() {
        let orders = generate(1, 3);
        let bodies: Vec<String> = orders.iter().map(|o| o.body()).collect();
        let store = MemoryEffects::default();
        let batch = event(&[("m1", Some(&bodies[0])), ("m2", Some(&bodies[1])), ("m3", Some(&bodies[2]))]);
        let response = process_batch(&store, &batch, "worker").await.unwrap();
        assert!(failed(&response).is_empty());
        let shipped: Vec<String> = store.effects().iter().map(|e| e.id.clone()).collect();
        assert_eq!(shipped, ["s1-o0001", "s1-o0002", "s1-o0003"]);
        assert!(store.effects().iter().all(|e| e.consumer == "shipping" && e.deliveries == 1));
        assert_eq!(serde_json::to_value(&response).unwrap(), json!({"batchItemFailures": []}));
    }

    #[tokio::test]
    async fn only_the_bad_messages_fail_and_each_says_why() {
        let good = generate(2, 2);
        let (a, b) = (good[0].body(), good[1].body());
        let (poison, unshippable) = (poison_body(2), unshippable_body(2));
        let store = MemoryEffects::default();
        let batch = event(&[
            ("ok-1", Some(&a)),
            ("poison", Some(&poison)),
            ("ok-2", Some(&b)),
            ("no-customer", Some(&unshippable)),
        ]);
        let response = process_batch(&store, &batch, "worker").await.unwrap();
        assert_eq!(failed(&response), ["poison", "no-customer"]);
        assert_eq!(store.effects().len(), 2, "the good orders were shipped");
        let reasons: Vec<(String, String)> = store.rejections().into_iter().map(|r| (r.id, r.reason)).collect();
        assert!(reasons[0].0 == "no-customer" && reasons[0].1.contains("missing field `customer_id`"), "{reasons:?}");
        assert!(reasons[1].0 == "poison" && reasons[1].1.starts_with("the message body is not JSON"), "{reasons:?}");
        assert!(store.rejections().iter().all(|r| r.batch_sizes == [4] && r.attempts == 1));
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["batchItemFailures"][0], json!({"itemIdentifier": "poison"}));
    }

    #[tokio::test]
    async fn empty_missing_oversized_and_non_json_bodies_fail_clearly() {
        let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_ORDER_BYTES));
        let store = MemoryEffects::default();
        let batch = event(&[
            ("empty", Some("")),
            ("missing", None),
            ("oversized", Some(&oversized)),
            ("text", Some("ship it please")),
            ("array", Some("[1,2,3]")),
        ]);
        let response = process_batch(&store, &batch, "worker").await.unwrap();
        assert_eq!(failed(&response), ["empty", "missing", "oversized", "text", "array"]);
        assert!(store.effects().is_empty());
        let reasons: Vec<String> = store.rejections().into_iter().map(|r| format!("{}: {}", r.id, r.reason)).collect();
        assert_eq!(reasons.len(), 5);
        for (id, wanted) in [
            ("empty", "empty"),
            ("missing", "empty"),
            ("oversized", "bytes"),
            ("text", "not JSON"),
            ("array", "not an order"),
        ] {
            let reason = reasons.iter().find(|r| r.starts_with(&format!("{id}:"))).unwrap();
            assert!(reason.contains(wanted) && !reason.contains('\n'), "{reason}");
        }
        let kept = store.rejections().into_iter().find(|r| r.id == "oversized").unwrap().body;
        assert!(kept.len() < 300, "a rejected body is kept short");
    }

    #[tokio::test]
    async fn a_redelivered_order_is_not_shipped_twice() {
        let body = generate(3, 1)[0].body();
        let store = MemoryEffects::default();
        process_batch(&store, &event(&[("first", Some(&body))]), "worker-a").await.unwrap();
        let response = process_batch(&store, &event(&[("again", Some(&body))]), "worker-b").await.unwrap();
        assert!(failed(&response).is_empty(), "a duplicate is handled, not failed");
        let effects = store.effects();
        assert_eq!(effects.len(), 1);
        assert_eq!((effects[0].deliveries, effects[0].handled_by.as_str()), (2, "worker-a"));
    }

    #[tokio::test]
    async fn an_order_the_store_cannot_record_is_retried_alone() {
        let orders = generate(4, 2);
        let store = MemoryEffects { failing: vec![orders[1].order_id.clone()], ..Default::default() };
        let batch = event(&[("m1", Some(&orders[0].body())), ("m2", Some(&orders[1].body()))]);
        let response = process_batch(&store, &batch, "worker").await.unwrap();
        assert_eq!(failed(&response), ["m2"]);
        assert!(store.rejections().is_empty(), "it is a good order, not a rejected message");
    }

    #[tokio::test]
    async fn a_record_without_a_message_id_fails_the_whole_batch() {
        let mut batch = event(&[("m1", Some("{}"))]);
        batch.records[0].message_id = None;
        let err = process_batch(&MemoryEffects::default(), &batch, "worker").await.unwrap_err();
        assert!(err.to_string().contains("no messageId"), "{err}");
    }

    #[tokio::test]
    async fn the_aws_documentation_event_is_read() {
        let documented = r#"{"Records":[{"messageId":"MessageID_1","receiptHandle":"MessageReceiptHandle",
            "body":"Message Body","md5OfBody":"fce0ea8dd236ccb3ed9b37dae260836f",
            "eventSourceARN":"arn:aws:sqs:us-west-2:123456789012:SQSQueue","eventSource":"aws:sqs",
            "awsRegion":"us-west-2","attributes":{"ApproximateReceiveCount":"2"},"messageAttributes":{}}]}"#;
        let batch: SqsEvent = serde_json::from_str(documented).unwrap();
        let response = process_batch(&MemoryEffects::default(), &batch, "worker").await.unwrap();
        assert_eq!(failed(&response), ["MessageID_1"]);
    }
}
