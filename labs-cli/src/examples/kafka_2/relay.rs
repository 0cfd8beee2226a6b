//! The relay: the products table's change stream into Kafka, as a source connector (Kafka
//! Connect running a DynamoDB source, or Debezium on a database's log) does it. Each stream record
//! goes to the change topic keyed by product id, the item after the change to the state topic (a
//! tombstone for a delete), and once the broker has acknowledged both, the relay's position in
//! that stream shard goes to the offsets topic. A re-run starts after those positions, so each
//! change is relayed once; a crash between the acknowledgement and the position write would
//! relay a few changes again (at least once), which the indexer's per-product guard absorbs.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use labs_core::compaction;
use labs_triggers::event::{DynamoDbInput, EventSource, dynamodb_record};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Names;
use crate::driver::kafka;
use crate::driver::table_stream::{self, Tips};
use crate::target::Target;

/// Records relayed between two position writes: the most a crash could relay twice.
const CHUNK: usize = 100;

/// What one stream record becomes in Kafka.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Relayed {
    /// The item's key (the product id): the key of both records.
    pub key: String,
    pub sequence_number: String,
    /// The change topic's value: the stream record as a Lambda function receives it.
    pub change: Vec<u8>,
    /// The state topic's value: the item after the change as plain JSON; `None` (a tombstone)
    /// for a delete.
    pub state: Option<Vec<u8>>,
}

/// The relay's position in one shard of one stream: the offsets topic's value, keyed by shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Position {
    pub stream_arn: String,
    pub shard_id: String,
    pub sequence_number: String,
}

/// What a run of the relay did.
#[derive(Debug, Default, Serialize)]
pub(super) struct RelayReport {
    /// Per shard: where the relay resumed (`None`: from the start of the stream).
    pub resumed_after: BTreeMap<String, Option<String>>,
    pub relayed: usize,
    pub inserts: usize,
    pub modifies: usize,
    pub removes: usize,
    /// Positions written to the offsets topic.
    pub positions_written: usize,
}

/// What `input` (read from the stream behind `source`) becomes: the change record, the state
/// record, both keyed by the item's `key_attribute` (a string key).
pub(super) fn relayed(source: &EventSource, input: &DynamoDbInput, key_attribute: &str) -> Result<Relayed> {
    let sequence_number = &input.sequence_number;
    let key = match input.keys.get(key_attribute) {
        Some(Value::Object(typed)) => typed.get("S").and_then(Value::as_str),
        _ => None,
    }
    .with_context(|| format!("stream record {sequence_number} has no string key attribute \"{key_attribute}\""))?
    .to_owned();
    let change = dynamodb_record(source, input).with_context(|| format!("stream record {sequence_number}"))?;
    let state = match (&input.new_image, input.event_name.as_str()) {
        (_, "REMOVE") => None,
        (Some(image), _) => Some(plain_json(image).with_context(|| format!("NewImage of {sequence_number}"))?),
        (None, name) => bail!("{name} record {sequence_number} has no NewImage (the view must include new images)"),
    };
    Ok(Relayed {
        key,
        sequence_number: sequence_number.clone(),
        change: serde_json::to_vec(&change)?,
        state: state.map(|value| serde_json::to_vec(&value)).transpose()?,
    })
}

/// DynamoDB's typed JSON (`{"price": {"N": "9.5"}}`) as plain JSON (`{"price": 9.5}`), as
/// `labs verify` reads the table's items.
fn plain_json(typed: &serde_json::Map<String, Value>) -> Result<Value> {
    let item: serde_dynamo::Item = serde_json::from_value(Value::Object(typed.clone()))?;
    Ok(serde_dynamo::from_item(item)?)
}

/// The positions the offsets topic holds for `stream_arn`: its last record per shard. Positions
/// of an older stream of the table (before a `down` and `up`) are ignored.
pub(super) async fn positions(names: &Names, stream_arn: &str) -> Result<Tips> {
    let log: Vec<_> = kafka::read_topic(&names.broker.bootstrap, &names.relay_offsets)
        .await?
        .into_iter()
        .map(kafka::Incoming::into_log_record)
        .collect();
    Ok(compaction::latest(&log)
        .into_values()
        .filter_map(|value| serde_json::from_slice::<Position>(&value).ok())
        .filter(|p| p.stream_arn == stream_arn)
        .map(|p| (p.shard_id, p.sequence_number))
        .collect())
}

/// Relays every change of the table's stream that the offsets topic says is not relayed yet.
pub(super) async fn relay(target: &Target, names: &Names) -> Result<RelayReport> {
    let stream_arn = table_stream::stream_arn(&target.clients.dynamodb, &names.products).await?;
    let resume = positions(names, &stream_arn).await?;
    let records = table_stream::read_records(&target.clients.dynamodb_streams, &stream_arn, &resume).await?;
    let mut report = RelayReport::default();
    let mut by_shard: BTreeMap<String, Vec<DynamoDbInput>> = BTreeMap::new();
    let mut shard_order = Vec::new();
    for (shard_id, record) in &records {
        let Some(input) = labs_triggers::runner::dynamodb_input(record) else { continue };
        if !by_shard.contains_key(shard_id) {
            shard_order.push(shard_id.clone());
        }
        by_shard.entry(shard_id.clone()).or_default().push(input);
    }
    // Every shard the relay has a position in, and every shard it read records from.
    report.resumed_after = resume.iter().map(|(shard, seq)| (shard.clone(), Some(seq.clone()))).collect();
    for shard_id in &shard_order {
        report.resumed_after.entry(shard_id.clone()).or_insert(None);
    }
    // Shards in the order the stream lists them, parents before children: an item's changes
    // move to a child shard after a split, so this keeps every item's changes in order.
    for shard_id in shard_order {
        let source = EventSource {
            shard_id: shard_id.clone(),
            stream_arn: stream_arn.clone(),
            region: target.region(),
            execution_role_arn: String::new(),
        };
        for chunk in by_shard[&shard_id].chunks(CHUNK) {
            let relayed: Vec<Relayed> =
                chunk.iter().map(|input| relayed(&source, input, "id")).collect::<Result<_>>()?;
            let changes = relayed.iter().map(|r| (r.key.clone(), Some(r.change.clone())));
            let states = relayed.iter().map(|r| (r.key.clone(), r.state.clone()));
            kafka::produce_nullable(&names.broker, &names.changes, changes).await?;
            kafka::produce_nullable(&names.broker, &names.state, states).await?;
            let last = relayed.last().expect("chunks are never empty");
            let position = Position {
                stream_arn: stream_arn.clone(),
                shard_id: shard_id.clone(),
                sequence_number: last.sequence_number.clone(),
            };
            let value = serde_json::to_vec(&position)?;
            kafka::produce_nullable(&names.broker, &names.relay_offsets, [(shard_id.clone(), Some(value))]).await?;
            report.positions_written += 1;
            report.relayed += relayed.len();
            for input in chunk {
                match input.event_name.as_str() {
                    "INSERT" => report.inserts += 1,
                    "MODIFY" => report.modifies += 1,
                    _ => report.removes += 1,
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    fn typed(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn source() -> EventSource {
        EventSource {
            shard_id: "shard-1".into(),
            stream_arn: "arn:aws:dynamodb:us-east-1:0:table/t/stream/x".into(),
            region: "us-east-1".into(),
            execution_role_arn: String::new(),
        }
    }

    fn input(name: &str, seq: &str, new: Option<Value>, old: Option<Value>) -> DynamoDbInput {
        let keys = typed(json!({"id": {"S": "p-0001"}}));
        DynamoDbInput::new("e", name, seq, 10, "NEW_AND_OLD_IMAGES", 0, keys, new.map(typed), old.map(typed))
    }

    #[test]
    fn an_update_becomes_a_lambda_shaped_change_and_the_new_item_as_plain_json() {
        let old = json!({"id": {"S": "p-0001"}, "name": {"S": "red hat"}});
        let new = json!({"id": {"S": "p-0001"}, "name": {"S": "blue hat"}, "price": {"N": "9.5"}});
        let relayed = relayed(&source(), &input("MODIFY", "200", Some(new), Some(old)), "id").unwrap();
        assert_eq!((relayed.key.as_str(), relayed.sequence_number.as_str()), ("p-0001", "200"));
        let state: Value = serde_json::from_slice(relayed.state.as_deref().unwrap()).unwrap();
        assert_eq!(state, json!({"id": "p-0001", "name": "blue hat", "price": 9.5}));
        // The value is what example 3's indexer receives, so its decoder reads it unchanged.
        let record: aws_lambda_events::dynamodb::EventRecord = serde_json::from_slice(&relayed.change).unwrap();
        let change = cdc_indexer::plan::decode_record(0, &record).unwrap();
        assert_eq!((change.product_id, change.sequence_number), ("p-0001", "200"));
        assert_eq!(change.old_image.unwrap().name, "red hat");
        assert_eq!(change.new_image.unwrap().name, "blue hat");
    }

    #[test]
    fn a_delete_becomes_a_tombstone() {
        let old = json!({"id": {"S": "p-0001"}, "name": {"S": "red hat"}});
        let relayed = relayed(&source(), &input("REMOVE", "300", None, Some(old)), "id").unwrap();
        assert_eq!(relayed.state, None);
        let record: aws_lambda_events::dynamodb::EventRecord = serde_json::from_slice(&relayed.change).unwrap();
        assert_eq!(record.event_name, "REMOVE");
    }

    #[test]
    fn records_without_a_string_key_or_a_new_image_are_refused() {
        let mut odd = input("INSERT", "1", Some(json!({"id": {"N": "1"}})), None);
        odd.keys = typed(json!({"id": {"N": "1"}}));
        let error = relayed(&source(), &odd, "id").unwrap_err().to_string();
        assert_eq!(error, "stream record 1 has no string key attribute \"id\"");
        let error = relayed(&source(), &input("INSERT", "2", None, None), "id").unwrap_err().to_string();
        assert!(error.contains("INSERT record 2 has no NewImage"), "{error}");
    }
}
