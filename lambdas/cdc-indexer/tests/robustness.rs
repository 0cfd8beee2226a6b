//! Arbitrary input never crashes the indexer: bytes that are not an event fail to parse, and an
//! event whose records are not products (wrong types, another table's keys, missing images) fails
//! the batch with an error before anything is written.

use cdc_indexer::{Event, MemoryStore, process_event};
use proptest::prelude::*;
use serde_json::{Value, json};

fn run<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
}

/// Any DynamoDB attribute value, nested a little: what a table of someone else might hold.
fn attribute() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<String>().prop_map(|s| json!({ "S": s })),
        any::<f64>().prop_map(|n| json!({ "N": n.to_string() })),
        "[0-9eE.+-]{0,12}".prop_map(|n| json!({ "N": n })),
        any::<bool>().prop_map(|b| json!({ "BOOL": b })),
        Just(json!({ "NULL": true })),
        prop::collection::vec(any::<String>(), 0..3).prop_map(|v| json!({ "SS": v })),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({ "L": v })),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3).prop_map(|m| json!({ "M": m })),
        ]
    })
}

fn image() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop_oneof![Just("id".to_owned()), Just("name".to_owned()), Just("price".to_owned()), "[a-z]{1,8}"],
        attribute(),
        0..6,
    )
    .prop_map(|m| json!(m))
}

fn record() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("INSERT"), Just("MODIFY"), Just("REMOVE"), Just("SOMETHING")],
        image(),
        prop::option::of(image()),
        prop::option::of(image()),
        prop::option::of("[0-9]{1,30}"),
        prop_oneof![Just("labs-products"), Just("someone-elses-table")],
    )
        .prop_map(|(name, keys, new_image, old_image, sequence, table)| {
            let mut change = json!({ "Keys": keys, "StreamViewType": "NEW_AND_OLD_IMAGES", "SizeBytes": 1 });
            if let Some(image) = new_image {
                change["NewImage"] = image;
            }
            if let Some(image) = old_image {
                change["OldImage"] = image;
            }
            if let Some(sequence) = sequence {
                change["SequenceNumber"] = json!(sequence);
            }
            json!({
                "eventID": "1", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1", "dynamodb": change,
                "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/2026-01-01T00:00:00.000"),
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(event) = serde_json::from_slice::<Event>(&bytes) {
            let store = MemoryStore::new();
            let _ = run(process_event(&store, &event));
        }
    }

    #[test]
    fn foreign_shaped_records_are_an_error_or_indexed_never_a_crash(records in prop::collection::vec(record(), 1..5)) {
        // Every generated record is a valid stream record in shape, so this reaches the handler.
        let event = serde_json::from_value::<Event>(json!({ "Records": records }));
        prop_assume!(event.is_ok());
        let event = event.unwrap();
        let store = MemoryStore::new();
        if run(process_event(&store, &event)).is_err() {
            prop_assert!(store.index().is_empty(), "a rejected batch wrote index rows");
        }
    }
}
