//! The four joins against the in-memory store, with batches in the shape Lambda delivers them.

use std::collections::BTreeSet;

use base64::Engine;
use labs_core::join::clicks::{ClickSpec, ClickstreamRecord, generate};
use labs_core::join::profiles::{self, OrderRecord, Profile, ProfileSpec};
use labs_core::join::timeline::{self, SocialSpec, TableChange, TimelineEntry};
use labs_core::join::window::reference_of;
use serde_json::{Value, json};
use stream_joins::enrich::EnrichedRow;
use stream_joins::window::{CLOCK_PREFIX, OutputRow, SESSION_PREFIX};
use stream_joins::{MemoryStore, Settings, process};

const START: i64 = 1_767_225_600_000;

fn settings(mode: &str) -> Settings {
    let env = [
        ("JOIN", mode),
        ("STATE_TABLE", "state"),
        ("OUTPUT_TABLE", "output"),
        ("REPLICA_TABLE", "replica"),
        ("POSTS_TABLE", "labs-ex8-posts"),
        ("FOLLOWS_TABLE", "labs-ex8-follows"),
    ];
    Settings::from_lookup(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())).unwrap()
}

/// A Kinesis batch of `(sequence, arrival, data)` from one shard of `stream`.
fn kinesis(stream: &str, records: &[(u64, i64, Vec<u8>)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(seq, arrival, data)| {
            let seq = format!("49590338271490256608559692538361571095921575989136{seq:06}");
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "k",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": *arrival as f64 / 1000.0
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/labs-{stream}")
            })
        })
        .collect();
    json!({ "Records": records })
}

fn attribute(value: &Value) -> Value {
    match value {
        Value::String(s) => json!({ "S": s }),
        Value::Number(n) => json!({ "N": n.to_string() }),
        other => panic!("no attribute for {other}"),
    }
}

fn image(value: &impl serde::Serialize) -> Value {
    let Value::Object(map) = serde_json::to_value(value).unwrap() else { panic!("not an object") };
    Value::Object(map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect())
}

/// A DynamoDB stream batch from `table`: `(sequence, INSERT/MODIFY/REMOVE, image)`.
fn dynamodb(table: &str, records: &[(u64, &str, Value)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(seq, name, image)| {
            let images = if *name == "REMOVE" { json!({ "OldImage": image }) } else { json!({ "NewImage": image }) };
            let mut change = json!({ "SequenceNumber": format!("{seq:021}"), "StreamViewType": "NEW_AND_OLD_IMAGES", "Keys": {}, "SizeBytes": 100, "ApproximateCreationDateTime": 1767225602.0 });
            change.as_object_mut().unwrap().extend(images.as_object().unwrap().clone());
            json!({
                "eventID": format!("e{seq}"),
                "eventName": name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": change,
                "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/2026-01-01T00:00:00.000")
            })
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn the_window_join_equals_the_reference_and_leaves_no_state_behind() {
    let store = MemoryStore::default();
    let settings = settings("window");
    let stream = generate(&ClickSpec::standard("t", 3, START));
    let (mut searches, mut clicks) = (Vec::new(), Vec::new());
    for (i, record) in stream.production.iter().enumerate() {
        let entry = (i as u64 + 1, START + i as i64 * 200, record.to_bytes());
        match record {
            ClickstreamRecord::Search(_) => searches.push(entry),
            _ => clicks.push(entry),
        }
    }
    // Two pollers, batches of 4, alternating; one batch delivered twice.
    let (mut s, mut c) = (searches.chunks(4), clicks.chunks(4));
    let mut peak = 0;
    loop {
        let (a, b) = (s.next(), c.next());
        if a.is_none() && b.is_none() {
            break;
        }
        if let Some(batch) = a {
            process(&store, &settings, kinesis("ex8-searches", batch)).await.unwrap();
            process(&store, &settings, kinesis("ex8-searches", batch)).await.unwrap();
        }
        if let Some(batch) = b {
            process(&store, &settings, kinesis("ex8-clicks", batch)).await.unwrap();
        }
        peak = peak
            .max(store.rows("state").iter().filter(|r| r["key"].as_str().unwrap().starts_with(SESSION_PREFIX)).count());
    }
    let end = stream.last_event_time() + 10_001;
    let control = |record: ClickstreamRecord, seq| vec![(seq, START + 1_000_000, record.to_bytes())];
    let eoi = ClickstreamRecord::EndOfInput { watermark: end, sent_at: 0 };
    process(&store, &settings, kinesis("ex8-searches", &control(eoi.clone(), 900))).await.unwrap();
    process(&store, &settings, kinesis("ex8-clicks", &control(eoi, 900))).await.unwrap();
    // The searches' processor learns of the clicks' end only when it runs again.
    process(&store, &settings, kinesis("ex8-searches", &control(ClickstreamRecord::Heartbeat { sent_at: 0 }, 901)))
        .await
        .unwrap();

    let rows: BTreeSet<_> = store
        .rows("output")
        .into_iter()
        .map(|r| serde_json::from_value::<OutputRow>(Value::Object(r)).unwrap().join_row())
        .collect();
    assert_eq!(rows, reference_of(&stream, 10_000));
    let state = store.rows("state");
    assert!(peak > 0, "sessions were buffered");
    assert!(
        state.iter().all(|r| r["key"].as_str().unwrap().starts_with(CLOCK_PREFIX)),
        "session state left: {state:?}"
    );
    assert_eq!(state.len(), 2, "one clock per shard of each stream");
}

#[tokio::test]
async fn the_versioned_enrichment_survives_replay_and_the_naive_one_does_not() {
    let store = MemoryStore::default();
    let (replica, enrich) = (settings("replica"), settings("enrich"));
    let data = profiles::generate(&ProfileSpec::standard("t", 5, START));
    let changes = |profiles: &[Profile], from: u64| -> Value {
        let records: Vec<_> = profiles.iter().enumerate().map(|(i, p)| (from + i as u64, "MODIFY", image(p))).collect();
        dynamodb("labs-ex8-customers", &records)
    };
    let orders = |orders: &[profiles::Order], pass: u32, from: u64| -> Value {
        let records: Vec<_> = orders
            .iter()
            .enumerate()
            .map(|(i, o)| (from + i as u64, START, OrderRecord { order: o.clone(), pass }.to_bytes()))
            .collect();
        kinesis("ex8-orders", &records)
    };
    process(&store, &replica, changes(&data.initial, 1)).await.unwrap();
    process(&store, &enrich, orders(&data.orders_before, 1, 1)).await.unwrap();
    process(&store, &replica, changes(&data.changes, 100)).await.unwrap();
    // A stale redelivery of the first versions changes nothing.
    process(&store, &replica, changes(&data.initial, 1)).await.unwrap();
    process(&store, &enrich, orders(&data.orders_after, 1, 100)).await.unwrap();
    let all: Vec<_> = data.orders().cloned().collect();
    process(&store, &enrich, orders(&all, 2, 200)).await.unwrap();

    let rows: Vec<EnrichedRow> =
        store.rows("output").into_iter().map(|r| serde_json::from_value(Value::Object(r)).unwrap()).collect();
    assert_eq!(rows.len(), all.len() * 2);
    let reference = profiles::reference_enrichment(&all, data.versions());
    let pass = |n: u32| rows.iter().filter(move |r| r.pass == n);
    for n in [1, 2] {
        let versioned: Vec<_> = pass(n).map(|r| (r.order_id.clone(), r.versioned_address.clone())).collect();
        let mut wanted: Vec<_> = reference.iter().map(|e| (e.order_id.clone(), e.address.clone())).collect();
        wanted.sort();
        let mut versioned = versioned;
        versioned.sort();
        assert_eq!(versioned, wanted, "pass {n}");
    }
    let naive_moved = pass(1).zip(pass(2)).filter(|(a, b)| a.latest_address != b.latest_address).count();
    assert!(naive_moved > 0, "the naive join gave the same answer on replay");
}

#[tokio::test]
async fn the_timeline_equals_the_batch_join_whichever_stream_goes_first() {
    let store = MemoryStore::default();
    let settings = settings("timeline");
    let data = timeline::generate(&SocialSpec::standard("t", 9, START));
    let (mut posts, mut follows) = (Vec::new(), Vec::new());
    for (i, change) in data.changes.iter().enumerate() {
        let seq = i as u64 + 1;
        match change {
            TableChange::PostPut(p) => posts.push((seq, "INSERT", image(p))),
            TableChange::PostDeleted(p) => posts.push((seq, "REMOVE", image(p))),
            TableChange::FollowPut(f) => follows.push((seq, "INSERT", image(f))),
            TableChange::FollowDeleted(f) => follows.push((seq, "REMOVE", image(f))),
        }
    }
    process(&store, &settings, dynamodb("labs-ex8-follows", &follows)).await.unwrap();
    process(&store, &settings, dynamodb("labs-ex8-posts", &posts)).await.unwrap();
    // Redelivered: the sequence guard skips every change.
    process(&store, &settings, dynamodb("labs-ex8-follows", &follows[..3])).await.unwrap();
    let entries: BTreeSet<TimelineEntry> =
        store.rows("output").into_iter().map(|r| serde_json::from_value(Value::Object(r)).unwrap()).collect();
    assert_eq!(entries, data.reference());
    let unknown = process(&store, &settings, dynamodb("labs-ex8-other", &posts[..1])).await.unwrap_err();
    assert!(unknown.to_string().contains("neither"), "{unknown}");
}
