//! Arbitrary message bodies never crash the worker: each message is either shipped or named as a
//! batch item failure, and nothing is lost in between.

use std::collections::BTreeSet;

use labs_core::order_messages::parse_order;
use lambda_runtime::Error;
use proptest::prelude::*;
use serde_json::{Value, json};
use shipping_worker::{MemoryEffects, SqsBatchResponse, SqsEvent, process_batch};

fn run(future: impl Future<Output = Result<SqsBatchResponse, Error>>) -> Result<SqsBatchResponse, Error> {
    tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
}

/// Bodies from anywhere: arbitrary text, arbitrary JSON, and order-shaped JSON with odd values.
fn body() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<f64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    let order_like = (scalar.clone(), scalar.clone(), scalar.clone()).prop_map(|(id, customer, total)| {
        json!({ "order_id": id, "customer_id": customer, "total": total, "items": [] }).to_string()
    });
    prop_oneof![any::<String>(), order_like, scalar.prop_map(|v| v.to_string())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_is_shipped_or_reported(bodies in prop::collection::vec(body(), 1..10)) {
        let records: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| json!({
                "messageId": format!("m{i}"), "receiptHandle": "h", "body": body,
                "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:somewhere-else", "awsRegion": "us-east-1",
            }))
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
        let store = MemoryEffects::default();
        let response = run(process_batch(&store, &event, "worker")).expect("a per-message answer, not a batch error");
        let failed: BTreeSet<String> =
            response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        let mut orders = BTreeSet::new();
        for (i, body) in bodies.iter().enumerate() {
            let id = format!("m{i}");
            match parse_order(body) {
                Ok(order) => {
                    prop_assert!(!failed.contains(&id), "{id} is an order but was reported as failed");
                    orders.insert(order.order_id);
                }
                Err(_) => {
                    prop_assert!(failed.contains(&id), "{id} is not an order but was not reported");
                    prop_assert!(store.rejections().iter().any(|r| r.id == id), "{id}'s rejection was not noted");
                }
            }
        }
        let shipped: BTreeSet<String> = store.effects().into_iter().map(|e| e.id).collect();
        prop_assert_eq!(shipped, orders, "every order shipped once, nothing else");
    }
}
