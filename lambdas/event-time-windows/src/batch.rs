//! Reading a Kinesis batch: its shard, and each record's sequence number, arrival time and data.

use aws_lambda_events::event::kinesis::KinesisEvent;
use labs_core::time::readings::{RecordError, StreamRecord, parse_record};
use labs_core::time::windows::Millis;
use thiserror::Error;

/// One record of the batch. `record` is an error for data that is not an example-6 record: the
/// function skips it (and counts it) rather than stop the shard's time for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRecord {
    pub sequence_number: String,
    /// `approximateArrivalTimestamp`: the stream's clock, the function's processing time.
    pub arrival_millis: Millis,
    pub record: Result<StreamRecord, RecordError>,
}

/// A batch as the function sees it: Lambda sends records of one shard, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub shard_id: String,
    pub records: Vec<DeliveredRecord>,
}

/// Why a batch cannot be read at all. One line each.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("record {index} has no eventID, so its shard is unknown")]
    NoShard { index: usize },
    #[error("record {index} has no sequence number")]
    NoSequenceNumber { index: usize },
    #[error("record {index} comes from {found}, the batch from {shard_id}: a batch holds one shard")]
    MixedShards { index: usize, shard_id: String, found: String },
}

/// The shard of a record, from its `eventID` (`shardId-000000000001:<sequence number>`).
fn shard_of(event_id: Option<&str>) -> Option<&str> {
    let (shard, _) = event_id?.split_once(':')?;
    (!shard.is_empty()).then_some(shard)
}

/// Reads `event`. An empty batch has an empty shard id.
pub fn read_batch(event: &KinesisEvent) -> Result<Batch, BatchError> {
    let mut shard_id: Option<&str> = None;
    let mut records = Vec::with_capacity(event.records.len());
    for (index, record) in event.records.iter().enumerate() {
        let shard = shard_of(record.event_id.as_deref()).ok_or(BatchError::NoShard { index })?;
        match shard_id {
            None => shard_id = Some(shard),
            Some(expected) if expected != shard => {
                return Err(BatchError::MixedShards { index, shard_id: expected.to_owned(), found: shard.to_owned() });
            }
            Some(_) => {}
        }
        if record.kinesis.sequence_number.is_empty() {
            return Err(BatchError::NoSequenceNumber { index });
        }
        records.push(DeliveredRecord {
            sequence_number: record.kinesis.sequence_number.clone(),
            arrival_millis: record.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
            record: parse_record(&record.kinesis.data.0),
        });
    }
    Ok(Batch { shard_id: shard_id.unwrap_or_default().to_owned(), records })
}
