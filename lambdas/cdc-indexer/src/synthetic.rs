//! Stream records made up from a product workload, as DynamoDB Streams would deliver them with
//! `NEW_AND_OLD_IMAGES`: for tests, and for the CLI's handler-only benchmark.

use std::collections::{BTreeMap, HashMap};

use aws_lambda_events::event::dynamodb::{Event, EventRecord, StreamRecord, StreamViewType};
use labs_core::search_index::{Product, ProductOp, workload};
use serde_dynamo::{AttributeValue, Item};

/// First sequence number used by [`synthetic_batch`]: 21 digits, like DynamoDB's shortest.
pub const FIRST_SEQUENCE_NUMBER: u128 = 100_000_000_000_000_000_000;
/// Gap between consecutive synthetic sequence numbers (real ones are not contiguous either).
pub const SEQUENCE_STEP: u128 = 100;

const SOURCE_ARN: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/labs-products/stream/2026-01-01T00:00:00.000";

fn to_item(product: &Product) -> Item {
    serde_dynamo::to_item(product).expect("a Product always serializes to a map")
}

/// One stream record. `old` and `new` are the item before and after the change.
pub fn stream_record(sequence_number: &str, old: Option<&Product>, new: Option<&Product>) -> EventRecord {
    let (event_name, id) = match (old, new) {
        (None, Some(n)) => ("INSERT", &n.id),
        (Some(_), Some(n)) => ("MODIFY", &n.id),
        (Some(o), None) => ("REMOVE", &o.id),
        (None, None) => panic!("a stream record needs an old or a new image"),
    };
    let mut change = StreamRecord::default();
    change.keys = Item::from(HashMap::from([("id".to_owned(), AttributeValue::S(id.clone()))]));
    change.new_image = new.map(to_item).unwrap_or_default();
    change.old_image = old.map(to_item).unwrap_or_default();
    change.sequence_number = Some(sequence_number.to_owned());
    change.size_bytes = 100;
    change.stream_view_type = Some(StreamViewType::NewAndOldImages);
    let mut record = EventRecord::default();
    record.aws_region = "us-east-1".into();
    record.change = change;
    record.event_id = format!("synthetic-{sequence_number}");
    record.event_name = event_name.into();
    record.event_source = Some("aws:dynamodb".into());
    record.event_version = Some("1.1".into());
    record.event_source_arn = Some(SOURCE_ARN.into());
    record
}

/// The stream records that `ops`, applied in order to a table holding `table`, would produce,
/// numbered from `first_seq` in steps of [`SEQUENCE_STEP`]. Like DynamoDB, writes that change
/// nothing (deleting an absent item, putting an identical one) produce no record. `table` is left
/// holding the final state.
pub fn stream_records(table: &mut BTreeMap<String, Product>, ops: &[ProductOp], first_seq: u128) -> Vec<EventRecord> {
    let mut records = Vec::with_capacity(ops.len());
    let mut seq = first_seq;
    for op in ops {
        let (old, new) = match op {
            ProductOp::Put(p) => (table.insert(p.id.clone(), p.clone()), Some(p)),
            ProductOp::Delete { id } => (table.remove(id), None),
        };
        if (old.is_none() && new.is_none()) || old.as_ref() == new {
            continue;
        }
        records.push(stream_record(&seq.to_string(), old.as_ref(), new));
        seq += SEQUENCE_STEP;
    }
    records
}

/// Wraps records in a DynamoDB stream event.
pub fn event(records: Vec<EventRecord>) -> Event {
    let mut event = Event::default();
    event.records = records;
    event
}

/// Products the synthetic workload of `n` operations spreads over: few enough that a batch holds
/// several changes to many products (so collapsing is exercised), never 0.
pub fn synthetic_catalogue(n: usize) -> usize {
    (n / 4).max(1)
}

/// The workload behind [`synthetic_batch`].
pub fn synthetic_ops(n: usize, seed: u64) -> Vec<ProductOp> {
    workload(seed, n, synthetic_catalogue(n))
}

/// One event holding the stream records of [`synthetic_ops`]`(n, seed)` on an empty table (at
/// most `n` records), numbered from [`FIRST_SEQUENCE_NUMBER`]. Indexing it into an empty store
/// must give `expected_index(apply_ops(&synthetic_ops(n, seed)).values())`.
pub fn synthetic_batch(n: usize, seed: u64) -> Event {
    let ops = synthetic_ops(n, seed);
    event(stream_records(&mut BTreeMap::new(), &ops, FIRST_SEQUENCE_NUMBER))
}
