//! Log compaction (Kafka's `cleanup.policy=compact`) as pure code: what a compacted topic keeps
//! of a log, and the latest value per key a reader folds out of any log, compacted or not.
//!
//! Compaction keeps, per partition, the last record of every key and drops the records it
//! supersedes; a tombstone (a record with a key and no value) marks a key deleted, and is itself
//! dropped once `delete.retention.ms` has passed. Offsets never change: a compacted log has gaps.
//! A reader that folds the whole log (later records win, a tombstone removes its key) gets the
//! same state from the log before and after compaction: that is what makes compaction safe.

use std::collections::BTreeMap;

use serde::Serialize;

/// One record of a topic as read back: where it is, its key, and its value (`None`: a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord<K, V> {
    pub partition: i32,
    pub offset: i64,
    pub key: K,
    pub value: Option<V>,
}

/// What compaction would keep of a log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compaction {
    /// `(partition, offset)` of every record kept, ascending.
    pub kept: Vec<(i32, i64)>,
    /// Records dropped because a later record of the same key supersedes them.
    pub superseded: usize,
    /// Tombstones dropped (each the last record of its key, past `delete.retention.ms`).
    pub tombstones_dropped: usize,
}

/// The records compaction keeps of `log` (in any order): per partition and key, the record with
/// the highest offset; a tombstone is kept only while `keep_tombstones` (before
/// `delete.retention.ms` has passed), else dropped with the key.
pub fn compact<K: Ord, V>(log: &[LogRecord<K, V>], keep_tombstones: bool) -> Compaction {
    let mut last: BTreeMap<(i32, &K), &LogRecord<K, V>> = BTreeMap::new();
    for record in log {
        let slot = last.entry((record.partition, &record.key)).or_insert(record);
        if record.offset > slot.offset {
            *slot = record;
        }
    }
    let mut compaction = Compaction { superseded: log.len() - last.len(), ..Compaction::default() };
    for record in last.values() {
        if record.value.is_some() || keep_tombstones {
            compaction.kept.push((record.partition, record.offset));
        } else {
            compaction.tombstones_dropped += 1;
        }
    }
    compaction.kept.sort_unstable();
    compaction
}

/// The state a reader folds out of `log`: per key the value of its record with the highest
/// offset, and no entry for a key whose last record is a tombstone. A key lives in one partition,
/// so offsets of different partitions are never compared for one key.
pub fn latest<K: Ord + Clone, V: Clone>(log: &[LogRecord<K, V>]) -> BTreeMap<K, V> {
    let mut last: BTreeMap<&K, &LogRecord<K, V>> = BTreeMap::new();
    for record in log {
        let slot = last.entry(&record.key).or_insert(record);
        if (record.partition, record.offset) > (slot.partition, slot.offset) {
            *slot = record;
        }
    }
    last.into_iter().filter_map(|(key, record)| Some((key.clone(), record.value.clone()?))).collect()
}

/// Keys that have more than one record in `log`: none once a compaction has run over all of it.
/// (Kafka never compacts the active segment, so a real compacted topic shows some.)
pub fn keys_with_history<K: Ord + Clone, V>(log: &[LogRecord<K, V>]) -> Vec<K> {
    let mut counts: BTreeMap<&K, usize> = BTreeMap::new();
    for record in log {
        *counts.entry(&record.key).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).map(|(key, _)| key.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(offset: i64, key: &str, value: &str) -> LogRecord<String, String> {
        LogRecord { partition: 0, offset, key: key.into(), value: Some(value.into()) }
    }

    fn tombstone(offset: i64, key: &str) -> LogRecord<String, String> {
        LogRecord { partition: 0, offset, key: key.into(), value: None }
    }

    fn log() -> Vec<LogRecord<String, String>> {
        vec![put(0, "a", "a1"), put(1, "b", "b1"), put(2, "a", "a2"), tombstone(3, "b"), put(4, "c", "c1")]
    }

    #[test]
    fn keeps_the_last_record_per_key_and_drops_tombstones() {
        let compaction = compact(&log(), false);
        assert_eq!(compaction.kept, vec![(0, 2), (0, 4)]);
        assert_eq!((compaction.superseded, compaction.tombstones_dropped), (2, 1));
        let before_retention = compact(&log(), true);
        assert_eq!(before_retention.kept, vec![(0, 2), (0, 3), (0, 4)]);
        assert_eq!(before_retention.tombstones_dropped, 0);
    }

    #[test]
    fn the_folded_state_is_the_same_before_and_after_compaction() {
        let log = log();
        let state = latest(&log);
        assert_eq!(state, BTreeMap::from([("a".to_owned(), "a2".to_owned()), ("c".to_owned(), "c1".to_owned())]));
        for keep_tombstones in [false, true] {
            let kept = compact(&log, keep_tombstones).kept;
            let compacted: Vec<_> = log.iter().filter(|r| kept.contains(&(r.partition, r.offset))).cloned().collect();
            assert_eq!(latest(&compacted), state);
            assert!(keys_with_history(&compacted).is_empty());
        }
        assert_eq!(keys_with_history(&log), vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn offsets_decide_not_reading_order() {
        let mut shuffled = log();
        shuffled.reverse();
        assert_eq!(latest(&shuffled), latest(&log()));
        assert_eq!(compact(&shuffled, false), compact(&log(), false));
    }

    #[test]
    fn partitions_are_compacted_apart() {
        let mut log = log();
        log.push(LogRecord { partition: 1, offset: 0, key: "a".into(), value: Some("elsewhere".into()) });
        let compaction = compact(&log, false);
        assert_eq!(compaction.kept, vec![(0, 2), (0, 4), (1, 0)]);
    }

    #[test]
    fn an_empty_log_keeps_nothing() {
        let empty: Vec<LogRecord<String, String>> = Vec::new();
        assert_eq!(compact(&empty, false), Compaction::default());
        assert!(latest(&empty).is_empty());
    }
}
