//! The check behind a change topic (a database's change log relayed into Kafka, keyed by the
//! row's key): every change of the source log is in the topic exactly once, under its row's key,
//! every key in one partition, and each key's changes in the source's order. Per-key order is all
//! a consumer needs to end at the right state; the order across keys does not matter.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::sequence;

/// A change as the source log holds it: the row's key and the change's sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceChange {
    pub key: String,
    pub sequence_number: String,
}

/// A record of the change topic as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka key (`None`: a record without a key).
    pub message_key: Option<String>,
    /// The change its value carries, or `None` when the value does not decode as one.
    pub change: Option<SourceChange>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TopicReport {
    /// Changes of the source log checked for.
    pub expected: usize,
    pub records_read: usize,
    /// Source changes the topic lacks: `key@sequence`.
    pub missing: Vec<String>,
    /// Source changes the topic holds more than once, with how many times.
    pub duplicated: Vec<(String, usize)>,
    /// Where a key's changes went backwards in its partition: (key, previous, next sequence).
    pub out_of_order: Vec<(String, String, String)>,
    /// Keys found in more than one partition (their order is then lost), with the partitions.
    pub split_keys: Vec<(String, Vec<i32>)>,
    /// Records whose Kafka key is not the key of the change they carry: `offset`s as `p/o`.
    pub misrouted: Vec<String>,
    /// Records whose value is not a change.
    pub undecodable: usize,
    /// Changes in the topic that the source log does not hold (it may have trimmed them).
    pub unknown: usize,
}

impl TopicReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.out_of_order.is_empty()
            && self.split_keys.is_empty()
            && self.misrouted.is_empty()
            && self.undecodable == 0
    }
}

fn label(change: &SourceChange) -> String {
    format!("{}@{}", change.key, change.sequence_number)
}

/// Checks `topic` (any reading order: offsets decide) against the changes of the source log.
pub fn check_change_topic(source: &[SourceChange], topic: &[TopicRecord]) -> TopicReport {
    let mut report = TopicReport { expected: source.len(), records_read: topic.len(), ..TopicReport::default() };
    let mut records: Vec<&TopicRecord> = topic.iter().collect();
    records.sort_by_key(|r| (r.partition, r.offset));

    let mut seen: HashMap<&SourceChange, usize> = source.iter().map(|c| (c, 0)).collect();
    let mut last_of_key: HashMap<(i32, &str), &str> = HashMap::new();
    let mut partitions_of_key: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for record in records {
        let Some(change) = &record.change else {
            report.undecodable += 1;
            continue;
        };
        if record.message_key.as_deref() != Some(change.key.as_str()) {
            report.misrouted.push(format!("{}/{}", record.partition, record.offset));
        }
        match seen.get_mut(change) {
            Some(count) => *count += 1,
            None => report.unknown += 1,
        }
        partitions_of_key.entry(&change.key).or_default().insert(record.partition);
        if let Some(previous) = last_of_key.insert((record.partition, &change.key), &change.sequence_number)
            && sequence::compare(previous, &change.sequence_number).is_ge()
        {
            report.out_of_order.push((change.key.clone(), previous.to_owned(), change.sequence_number.clone()));
        }
    }
    for change in source {
        match seen[change] {
            0 => report.missing.push(label(change)),
            1 => {}
            n => report.duplicated.push((label(change), n)),
        }
    }
    report.split_keys = partitions_of_key
        .into_iter()
        .filter(|(_, partitions)| partitions.len() > 1)
        .map(|(key, partitions)| (key.to_owned(), partitions.into_iter().collect()))
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, seq: &str) -> SourceChange {
        SourceChange { key: key.into(), sequence_number: seq.into() }
    }

    fn record(partition: i32, offset: i64, key: &str, seq: &str) -> TopicRecord {
        TopicRecord { partition, offset, message_key: Some(key.into()), change: Some(change(key, seq)) }
    }

    fn source() -> Vec<SourceChange> {
        vec![change("a", "9"), change("b", "10"), change("a", "11"), change("b", "12")]
    }

    #[test]
    fn every_change_once_in_order_per_key_passes() {
        // Keys interleave differently from the source across partitions: only per-key order counts.
        let topic = [record(1, 0, "b", "10"), record(0, 0, "a", "9"), record(1, 1, "b", "12"), record(0, 1, "a", "11")];
        let report = check_change_topic(&source(), &topic);
        assert!(report.is_ok(), "{report:?}");
        assert_eq!((report.expected, report.records_read, report.unknown), (4, 4, 0));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        let topic = [record(0, 0, "a", "9"), record(0, 1, "a", "11"), record(0, 2, "b", "10"), record(0, 3, "b", "12")];
        assert!(check_change_topic(&source(), &topic).is_ok());
    }

    #[test]
    fn finds_missing_duplicated_and_reordered_changes() {
        let topic = [record(0, 0, "a", "11"), record(0, 1, "a", "9"), record(0, 2, "b", "10"), record(0, 3, "b", "10")];
        let report = check_change_topic(&source(), &topic);
        assert!(!report.is_ok());
        assert_eq!(report.missing, vec!["b@12".to_owned()]);
        assert_eq!(report.duplicated, vec![("b@10".to_owned(), 2)]);
        assert_eq!(
            report.out_of_order,
            vec![("a".into(), "11".into(), "9".into()), ("b".into(), "10".into(), "10".into())]
        );
    }

    #[test]
    fn a_key_in_two_partitions_or_under_another_key_fails() {
        let mut topic = vec![record(0, 0, "a", "9"), record(1, 0, "a", "11"), record(0, 1, "b", "10")];
        topic.push(TopicRecord { message_key: Some("a".into()), ..record(0, 2, "b", "12") });
        let report = check_change_topic(&source(), &topic);
        assert_eq!(report.split_keys, vec![("a".to_owned(), vec![0, 1])]);
        assert_eq!(report.misrouted, vec!["0/2".to_owned()]);
        assert!(report.out_of_order.is_empty(), "{report:?}");
        assert!(!report.is_ok());
    }

    #[test]
    fn undecodable_records_fail_and_unknown_changes_are_counted() {
        let mut topic: Vec<TopicRecord> =
            source().iter().enumerate().map(|(i, c)| record(0, i as i64, &c.key, &c.sequence_number)).collect();
        topic.push(record(0, 10, "z", "1"));
        let report = check_change_topic(&source(), &topic);
        assert!(report.is_ok(), "a change the source trimmed is not an error: {report:?}");
        assert_eq!(report.unknown, 1);
        topic.push(TopicRecord { partition: 0, offset: 11, message_key: None, change: None });
        assert_eq!(check_change_topic(&source(), &topic).undecodable, 1);
        assert!(!check_change_topic(&source(), &topic).is_ok());
    }
}
