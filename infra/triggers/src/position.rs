//! Where reading a shard starts (spec P5, P6).

use crate::settings::{MappingSettings, StartingPosition};

/// The `GetShardIterator` request a shard starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorStart {
    /// Resume after the checkpoint: what was checkpointed is finished, so nothing is skipped and
    /// at most the unfinished batch is delivered again.
    AfterSequenceNumber(String),
    TrimHorizon,
    Latest,
}

/// The iterator for a shard. A checkpoint always wins (re-enabling resumes, spec P6). A shard
/// that opened after the mapping started (a child after resharding) is read from its start
/// even under `LATEST`: its records were written after the mapping began, so `LATEST` would
/// skip them.
pub fn iterator_start(settings: &MappingSettings, checkpoint: Option<&str>, opened_after_start: bool) -> IteratorStart {
    match (checkpoint, settings.starting_position) {
        (Some(sequence_number), _) => IteratorStart::AfterSequenceNumber(sequence_number.to_owned()),
        (None, StartingPosition::TrimHorizon) => IteratorStart::TrimHorizon,
        (None, StartingPosition::Latest) if opened_after_start => IteratorStart::TrimHorizon,
        (None, StartingPosition::Latest) => IteratorStart::Latest,
    }
}
