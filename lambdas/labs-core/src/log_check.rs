//! The check behind `labs verify example-1`: every expected event is in the log exactly once, and
//! within each shard the sequence numbers (the offsets) only rise.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::sequence;

/// One record as a consumer read it back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub shard_id: String,
    pub sequence_number: String,
    /// The id the record's payload carries, or `None` when the payload could not be decoded.
    pub event_id: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct LogReport {
    pub expected: usize,
    pub records_read: usize,
    pub shards: usize,
    pub missing: Vec<String>,
    /// Event ids that appear more than once, with how many times.
    pub duplicated: Vec<(String, usize)>,
    /// Records whose payload was not an event of this example.
    pub undecodable: usize,
    /// (shard, previous sequence number, next sequence number) where the order went backwards.
    pub out_of_order: Vec<(String, String, String)>,
}

impl LogReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.undecodable == 0 && self.out_of_order.is_empty()
    }
}

/// Checks `records` (in the order each shard returned them) against the ids that were produced.
/// Records carrying ids that are not in `expected` are ignored: the stream may hold other runs.
pub fn check_log<'a>(expected: impl IntoIterator<Item = &'a str>, records: &[ReadRecord]) -> LogReport {
    let expected: Vec<&str> = expected.into_iter().collect();
    let mut seen: HashMap<&str, usize> = expected.iter().map(|id| (*id, 0)).collect();
    let mut last_in_shard: BTreeMap<&str, &str> = BTreeMap::new();
    let mut report = LogReport { expected: expected.len(), records_read: records.len(), ..Default::default() };

    for record in records {
        if let Some(previous) = last_in_shard.insert(&record.shard_id, &record.sequence_number)
            && sequence::compare(previous, &record.sequence_number) != Ordering::Less
        {
            report.out_of_order.push((record.shard_id.clone(), previous.to_owned(), record.sequence_number.clone()));
        }
        match &record.event_id {
            Some(id) => {
                if let Some(count) = seen.get_mut(id.as_str()) {
                    *count += 1;
                }
            }
            None => report.undecodable += 1,
        }
    }
    report.shards = last_in_shard.len();
    for id in &expected {
        match seen[id] {
            0 => report.missing.push((*id).to_owned()),
            1 => {}
            n => report.duplicated.push(((*id).to_owned(), n)),
        }
    }
    report
}

/// A replay checked again: what a run said it read when it replayed from a position, against
/// what the log holds of the run after that position now.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Event ids of the run the full read holds after the position, in reading order.
    pub expected: usize,
    /// What reading from the position again returns of the run.
    pub read_again: usize,
    /// What the run recorded it read from there.
    pub recorded: usize,
    /// Whether the replay returned exactly the expected ids, in the same order.
    pub identical: bool,
}

impl ReplayReport {
    pub fn is_ok(&self) -> bool {
        self.identical && self.recorded == self.read_again
    }
}

/// Compares a replay read again (`replayed`) with the ids the full read holds after the same
/// position (`expected`), and with the count the run recorded when it replayed.
pub fn check_replay(expected: &[&str], replayed: &[&str], recorded: usize) -> ReplayReport {
    ReplayReport { expected: expected.len(), read_again: replayed.len(), recorded, identical: expected == replayed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(shard: &str, seq: &str, id: &str) -> ReadRecord {
        ReadRecord { shard_id: shard.into(), sequence_number: seq.into(), event_id: Some(id.into()) }
    }

    #[test]
    fn a_complete_ordered_log_passes() {
        let records = [rec("a", "1", "e1"), rec("b", "5", "e2"), rec("a", "10", "e3")];
        let report = check_log(["e1", "e2", "e3"], &records);
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.shards, 2);
    }

    #[test]
    fn finds_missing_duplicated_and_reordered() {
        let records = [rec("a", "10", "e1"), rec("a", "9", "e1"), rec("b", "1", "other-run")];
        let report = check_log(["e1", "e2"], &records);
        assert!(!report.is_ok());
        assert_eq!(report.missing, vec!["e2".to_owned()]);
        assert_eq!(report.duplicated, vec![("e1".to_owned(), 2)]);
        assert_eq!(report.out_of_order, vec![("a".to_owned(), "10".to_owned(), "9".to_owned())]);
    }

    #[test]
    fn a_replay_agrees_only_with_the_same_ids_in_order_and_the_recorded_count() {
        assert!(check_replay(&["e2", "e3"], &["e2", "e3"], 2).is_ok());
        assert!(!check_replay(&["e2", "e3"], &["e3", "e2"], 2).is_ok(), "reordered");
        assert!(!check_replay(&["e2", "e3"], &["e2"], 1).is_ok(), "lost");
        assert!(!check_replay(&["e2", "e3"], &["e2", "e3"], 3).is_ok(), "the run claimed more than is there");
    }

    #[test]
    fn undecodable_records_fail_the_check() {
        let records = [ReadRecord { shard_id: "a".into(), sequence_number: "1".into(), event_id: None }];
        assert!(!check_log([], &records).is_ok());
    }
}
