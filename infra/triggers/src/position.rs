//! Where reading a shard starts (spec P5, P6).

use crate::record::Millis;
use crate::settings::{MappingSettings, StartingPosition};

/// The `GetShardIterator` request a shard starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorStart {
    /// Resume after the checkpoint: what was checkpointed is finished, so nothing is skipped and
    /// at most the unfinished batches are delivered again.
    AfterSequenceNumber(String),
    TrimHorizon,
    Latest,
    /// The first record that arrived at or after this instant (Kinesis only).
    AtTimestamp(Millis),
}

/// What the checkpoint table knows about a shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardHistory {
    /// The last finished sequence number.
    pub checkpoint: Option<String>,
    /// When the runner first read the shard from `LATEST` (stored before reading).
    pub latest_since: Option<Millis>,
    /// The shard opened after the mapping started (a child after resharding).
    pub opened_after_start: bool,
}

/// The iterator for a shard.
///
/// - A checkpoint always wins: re-enabling resumes, it does not go back to the starting
///   position (P6).
/// - A child shard that opened after the mapping started is read from its start even under
///   `LATEST`: its records were written after the mapping began.
/// - `LATEST` without a checkpoint, read before: from the instant of that first read. Plain
///   `LATEST` again would skip what was written while the runner was down, before the first
///   checkpoint; `AT_TIMESTAMP` may redeliver, never skips. (DynamoDB streams have no
///   `AT_TIMESTAMP`; their runner must checkpoint before it reads, or accept the gap.)
pub fn iterator_start(settings: &MappingSettings, history: &ShardHistory) -> IteratorStart {
    match (&history.checkpoint, settings.starting_position) {
        (Some(sequence_number), _) => IteratorStart::AfterSequenceNumber(sequence_number.clone()),
        (None, StartingPosition::TrimHorizon) => IteratorStart::TrimHorizon,
        // Children too: what they hold before the instant is skipped as in any shard.
        (None, StartingPosition::AtTimestamp(at)) => IteratorStart::AtTimestamp(at),
        (None, StartingPosition::Latest) if history.opened_after_start => IteratorStart::TrimHorizon,
        (None, StartingPosition::Latest) => match history.latest_since {
            Some(since) => IteratorStart::AtTimestamp(since),
            None => IteratorStart::Latest,
        },
    }
}
