//! The shard's checkpoint under `ParallelizationFactor` > 1: records finish out of shard order
//! (one lane may run ahead of another), so the checkpoint is the last record of the longest
//! finished prefix. A restart from it redelivers what later lanes finished, and skips nothing.

use std::collections::VecDeque;

/// Positions of offered records in shard order, and whether each is finished (succeeded or
/// discarded).
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Position of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    sequence_number: String,
    finished: bool,
}

impl Ledger {
    /// Appends a record; returns its position.
    pub(crate) fn push(&mut self, sequence_number: &str) -> u64 {
        self.entries.push_back(Entry { sequence_number: sequence_number.to_owned(), finished: false });
        self.base + self.entries.len() as u64 - 1
    }

    /// Marks a record finished. Positions already checkpointed are ignored.
    pub(crate) fn finish(&mut self, position: u64) {
        if let Some(index) = position.checked_sub(self.base)
            && let Some(entry) = self.entries.get_mut(index as usize)
        {
            entry.finished = true;
        }
    }

    /// Drops the finished prefix; returns the new checkpoint if it moved.
    pub(crate) fn advance(&mut self) -> Option<String> {
        let mut checkpoint = None;
        while self.entries.front().is_some_and(|entry| entry.finished) {
            checkpoint = self.entries.pop_front().map(|entry| entry.sequence_number);
            self.base += 1;
        }
        checkpoint
    }

    /// Records offered and not yet behind the checkpoint.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_waits_for_the_oldest_unfinished_record() {
        let mut ledger = Ledger::default();
        let positions: Vec<u64> = ["1", "2", "3"].iter().map(|s| ledger.push(s)).collect();
        ledger.finish(positions[1]);
        assert_eq!(ledger.advance(), None, "record 1 is still running");
        ledger.finish(positions[0]);
        assert_eq!(ledger.advance().as_deref(), Some("2"));
        ledger.finish(positions[2]);
        ledger.finish(positions[0]);
        assert_eq!(ledger.advance().as_deref(), Some("3"));
        assert_eq!(ledger.len(), 0);
    }
}
