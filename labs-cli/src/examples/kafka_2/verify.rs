//! Lab kafka-2's verifier, from the data alone: the table's stream, the three topics, the index.
//!
//! - the index equals what the products table implies;
//! - the change topic holds every change of the table's stream exactly once, under its product
//!   id, each product in one partition and its changes in stream order;
//! - the state topic, folded (last record per key, a tombstone removes the key), equals the
//!   table item for item (so a deleted product's last record is a tombstone);
//! - the indexer group has committed the end of every partition of the change topic.

use std::collections::BTreeMap;

use anyhow::Result;
use labs_core::change_topic::{self, SourceChange, TopicRecord, TopicReport};
use labs_core::compaction;
use labs_core::search_index::IndexEntry;
use serde::Serialize;
use serde_json::Value;

use super::{Names, index_diff};
use crate::driver::dynamodb as db;
use crate::driver::kafka::{self, Incoming};
use crate::driver::table_stream;
use crate::examples::VerifyOptions;
use crate::examples::scenario::few;
use crate::output::Output;
use crate::target::Target;

#[derive(Serialize)]
struct VerifyReport {
    products: usize,
    index_missing: Vec<IndexEntry>,
    index_extra: Vec<IndexEntry>,
    change_topic: TopicReport,
    /// Products whose folded state differs from the table: absent, extra, or another value.
    state_differs: Vec<String>,
    state_keys: usize,
    /// Per partition of the change topic: (partition, committed by the group, end).
    group_lag: Vec<(i32, Option<i64>, i64)>,
    passed: bool,
}

pub(super) async fn verify(target: &Target, _options: &VerifyOptions, out: Output) -> Result<bool> {
    let names = Names::resolve(target).await?;
    db::describe_table(&target.clients.dynamodb, &names.products, "kafka-2").await?;
    let (products, diff) = index_diff(target, &names, &names.index).await?;

    let arn = table_stream::stream_arn(&target.clients.dynamodb, &names.products).await?;
    let stream = table_stream::read_changes::<Value>(&target.clients.dynamodb_streams, &arn, "id").await?;
    let source: Vec<SourceChange> = stream
        .iter()
        .map(|c| SourceChange { key: c.key.clone(), sequence_number: c.sequence_number.clone() })
        .collect();
    let topic: Vec<TopicRecord> =
        kafka::read_topic(&names.broker.bootstrap, &names.changes).await?.iter().map(topic_record).collect();
    let change_topic = change_topic::check_change_topic(&source, &topic);

    let (items, _) = db::scan_typed::<Value>(&target.clients.dynamodb, &names.products).await?;
    let table: BTreeMap<String, Value> =
        items.into_iter().filter_map(|item| Some((item.get("id")?.as_str()?.to_owned(), item))).collect();
    let state_log: Vec<_> = kafka::read_topic(&names.broker.bootstrap, &names.state)
        .await?
        .into_iter()
        .map(Incoming::into_log_record)
        .collect();
    let state: BTreeMap<String, Option<Value>> = compaction::latest(&state_log)
        .into_iter()
        .map(|(key, value)| (key, serde_json::from_slice(&value).ok()))
        .collect();
    let mut state_differs = state_differences(&table, &state);
    state_differs.extend(split_keys(&state_log));

    let ends = kafka::topic_watermarks(&names.broker.bootstrap, &names.changes).await?;
    let committed =
        kafka::committed(&names.broker.bootstrap, &names.indexer_group, &names.changes, ends.len() as i32).await?;
    let group_lag: Vec<(i32, Option<i64>, i64)> = ends
        .iter()
        .map(|(partition, _, high)| (*partition, committed.get(partition).copied().flatten(), *high))
        .collect();
    let lagging: Vec<String> = group_lag
        .iter()
        .filter(|(_, committed, high)| committed.unwrap_or(0) < *high)
        .map(|(p, c, h)| format!("partition {p}: {} of {h}", c.map_or("nothing".into(), |c| c.to_string())))
        .collect();

    let mark = |ok: bool| if ok { "ok" } else { "FAILED" }.to_owned();
    let entries = |entries: &[IndexEntry]| few("", entries.iter().map(|(t, id)| format!("{t}->{id}")));
    let topic_ok = change_topic.is_ok();
    let topic_problems: Vec<String> = [
        few("missing", &change_topic.missing),
        few("duplicated", change_topic.duplicated.iter().map(|(c, n)| format!("{c} x{n}"))),
        few("out of order", change_topic.out_of_order.iter().map(|(k, a, b)| format!("{k}: {a} then {b}"))),
        few("keys in several partitions", change_topic.split_keys.iter().map(|(k, _)| k)),
        few("under another key", &change_topic.misrouted),
        (change_topic.undecodable > 0).then(|| format!("{} records are not stream records", change_topic.undecodable)),
    ]
    .into_iter()
    .flatten()
    .collect();
    out.table(
        &format!(
            "Verifying kafka-2: {products} products, {} changes in the table's stream, {} records in {}",
            source.len(),
            topic.len(),
            names.changes
        ),
        &["check", "result", "details"],
        [
            vec![
                "every word of every product is indexed".into(),
                mark(diff.missing.is_empty()),
                format!("{} missing{}", diff.missing.len(), entries(&diff.missing).unwrap_or_default()),
            ],
            vec![
                "the index holds nothing the table does not".into(),
                mark(diff.extra.is_empty()),
                format!("{} extra{}", diff.extra.len(), entries(&diff.extra).unwrap_or_default()),
            ],
            vec![
                "every change once, under its product id, in stream order per product".into(),
                mark(topic_ok),
                if topic_ok {
                    format!(
                        "{} of {} changes; {} from an older stream",
                        source.len(),
                        source.len(),
                        change_topic.unknown
                    )
                } else {
                    topic_problems.join("; ")
                },
            ],
            vec![
                "the state topic's latest record per product equals the table item".into(),
                mark(state_differs.is_empty()),
                few("differ", &state_differs).unwrap_or_else(|| format!("{} keys, {} live", state.len(), table.len())),
            ],
            vec![
                format!("the group {} committed the end of every partition", names.indexer_group),
                mark(lagging.is_empty()),
                if lagging.is_empty() { format!("{} partitions", group_lag.len()) } else { lagging.join("; ") },
            ],
        ],
    );
    if !change_topic.missing.is_empty() {
        out.say(format!(
            "note: changes the topic lacks are relayed by `labs run kafka-2 --scenario relay{}`",
            super::prefix_flag(target)
        ));
    }
    let passed = diff.is_empty() && topic_ok && state_differs.is_empty() && lagging.is_empty();
    out.json(&VerifyReport {
        products,
        index_missing: diff.missing,
        index_extra: diff.extra,
        change_topic,
        state_keys: state.len(),
        state_differs,
        group_lag,
        passed,
    })?;
    Ok(passed)
}

/// A record of the change topic as the check reads it: the product id and sequence number its
/// value (a stream record) carries.
fn topic_record(message: &Incoming) -> TopicRecord {
    let change = message.payload.as_deref().and_then(|p| serde_json::from_slice::<Value>(p).ok()).and_then(|record| {
        Some(SourceChange {
            key: record.pointer("/dynamodb/Keys/id/S")?.as_str()?.to_owned(),
            sequence_number: record.pointer("/dynamodb/SequenceNumber")?.as_str()?.to_owned(),
        })
    });
    TopicRecord { partition: message.partition, offset: message.offset, message_key: message.key.clone(), change }
}

/// Products whose folded state is not the table item: `id (why)`.
fn state_differences(table: &BTreeMap<String, Value>, state: &BTreeMap<String, Option<Value>>) -> Vec<String> {
    let mut differs = Vec::new();
    for (id, item) in table {
        match state.get(id) {
            None => differs.push(format!("{id} (not in the topic)")),
            Some(None) => differs.push(format!("{id} (its value is not JSON)")),
            Some(Some(value)) if value != item => differs.push(format!("{id} (another value)")),
            Some(Some(_)) => {}
        }
    }
    for id in state.keys().filter(|id| !table.contains_key(*id)) {
        differs.push(format!("{id} (deleted from the table, no tombstone)"));
    }
    differs
}

/// Keys whose records are in more than one partition: their latest record is then undefined (a
/// producer that hashes keys differently wrote them), `id (partitions 0, 2)`.
fn split_keys(log: &[compaction::LogRecord<String, Vec<u8>>]) -> Vec<String> {
    let mut partitions: BTreeMap<&str, std::collections::BTreeSet<i32>> = BTreeMap::new();
    for record in log {
        partitions.entry(&record.key).or_default().insert(record.partition);
    }
    partitions
        .into_iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(key, p)| format!("{key} (partitions {})", p.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_folded_state_must_match_the_table_item_for_item() {
        let table =
            BTreeMap::from([("a".to_owned(), json!({"id": "a", "v": 2})), ("b".to_owned(), json!({"id": "b"}))]);
        let mut state = BTreeMap::from([
            ("a".to_owned(), Some(json!({"id": "a", "v": 2}))),
            ("b".to_owned(), Some(json!({"id": "b"}))),
        ]);
        assert!(state_differences(&table, &state).is_empty());
        state.insert("a".into(), Some(json!({"id": "a", "v": 1})));
        state.insert("gone".into(), Some(json!({"id": "gone"})));
        state.remove("b");
        assert_eq!(
            state_differences(&table, &state),
            vec!["a (another value)", "b (not in the topic)", "gone (deleted from the table, no tombstone)"]
        );
    }

    #[test]
    fn a_key_in_two_partitions_is_reported() {
        let record = |partition, offset, key: &str| compaction::LogRecord {
            partition,
            offset,
            key: key.to_owned(),
            value: Some(b"{}".to_vec()),
        };
        assert!(split_keys(&[record(0, 0, "a"), record(0, 1, "a"), record(1, 0, "b")]).is_empty());
        assert_eq!(split_keys(&[record(0, 0, "a"), record(2, 0, "a")]), vec!["a (partitions 0, 2)"]);
    }

    #[test]
    fn topic_records_carry_the_key_and_sequence_number_of_their_value() {
        let value = json!({"eventName": "INSERT", "dynamodb": {"Keys": {"id": {"S": "p-1"}}, "SequenceNumber": "42"}});
        let message = Incoming {
            partition: 1,
            offset: 3,
            key: Some("p-1".into()),
            payload: Some(value.to_string().into_bytes()),
            headers: Vec::new(),
            timestamp_millis: None,
        };
        let record = topic_record(&message);
        assert_eq!(record.change, Some(SourceChange { key: "p-1".into(), sequence_number: "42".into() }));
        assert_eq!(record.message_key.as_deref(), Some("p-1"));
        let odd = topic_record(&Incoming { payload: Some(b"[]".to_vec()), ..message });
        assert_eq!(odd.change, None);
    }
}
