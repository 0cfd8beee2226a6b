//! Reading a Kinesis batch: which shard it came from, each record's sequence number and purchase.

use aws_lambda_events::event::kinesis::KinesisEvent;
use labs_core::purchases::{Purchase, PurchaseError, parse_purchase};
use thiserror::Error;

/// One record of the batch, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRecord {
    pub sequence_number: String,
    pub purchase: Purchase,
}

/// A batch as the function sees it: Lambda sends records of one shard, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub shard_id: String,
    pub records: Vec<DeliveredRecord>,
}

impl Batch {
    pub fn first_sequence_number(&self) -> &str {
        self.records.first().map_or("", |r| r.sequence_number.as_str())
    }

    pub fn last_sequence_number(&self) -> &str {
        self.records.last().map_or("", |r| r.sequence_number.as_str())
    }
}

/// Why a batch cannot be read. One line each.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("record {index} has no eventID, so its shard is unknown")]
    NoShard { index: usize },
    #[error("record {index} has no sequence number")]
    NoSequenceNumber { index: usize },
    #[error("record {index} comes from {found}, the batch from {shard_id}: a batch holds one shard")]
    MixedShards { index: usize, shard_id: String, found: String },
    #[error("record {sequence_number} of {shard_id} cannot be read: {problem}")]
    Undecodable { shard_id: String, sequence_number: String, problem: PurchaseError },
}

/// The shard of a record, from its `eventID` (`shardId-000000000001:<sequence number>`).
fn shard_of(event_id: Option<&str>) -> Option<&str> {
    let (shard, _) = event_id?.split_once(':')?;
    (!shard.is_empty()).then_some(shard)
}

/// The shard and sequence numbers of a batch, before any record is decoded: enough to record
/// the invocation even when a record turns out to be unreadable.
pub fn batch_position(event: &KinesisEvent) -> Result<(String, Vec<String>), BatchError> {
    let mut shard_id: Option<&str> = None;
    let mut sequence_numbers = Vec::with_capacity(event.records.len());
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
        sequence_numbers.push(record.kinesis.sequence_number.clone());
    }
    Ok((shard_id.unwrap_or_default().to_owned(), sequence_numbers))
}

/// Decodes every record of `event`; the first unreadable one fails the batch.
pub fn read_batch(event: &KinesisEvent) -> Result<Batch, BatchError> {
    let (shard_id, sequence_numbers) = batch_position(event)?;
    let records = event
        .records
        .iter()
        .zip(sequence_numbers)
        .map(|(record, sequence_number)| match parse_purchase(&record.kinesis.data.0) {
            Ok(purchase) => Ok(DeliveredRecord { sequence_number, purchase }),
            Err(problem) => Err(BatchError::Undecodable { shard_id: shard_id.clone(), sequence_number, problem }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch { shard_id, records })
}
