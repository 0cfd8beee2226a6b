//! Reading the two kinds of batch the joins get: Kinesis records (searches, clicks, orders) and
//! DynamoDB stream records (customers, posts, follows).

use aws_lambda_events::event::dynamodb::Event as DynamoEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use labs_core::time::windows::Millis;
use serde::de::DeserializeOwned;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("record {index} has no eventID or eventSourceARN, so its stream and shard are unknown")]
    NoSource { index: usize },
    #[error("record {index} has no sequence number")]
    NoSequenceNumber { index: usize },
    #[error("record {index} ({event_id}): {problem}")]
    BadChange { index: usize, event_id: String, problem: String },
}

/// One Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecord {
    /// The stream's name (the end of `eventSourceARN`).
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    /// `approximateArrivalTimestamp`: processing time.
    pub arrival_millis: Millis,
    pub data: Vec<u8>,
}

pub fn kinesis_records(event: &KinesisEvent) -> Result<Vec<KinesisRecord>, BatchError> {
    event
        .records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let shard = record.event_id.as_deref().and_then(|id| id.split_once(':')).map(|(shard, _)| shard);
            let stream = record.event_source_arn.as_deref().and_then(|arn| arn.rsplit_once('/')).map(|(_, name)| name);
            let (Some(shard_id), Some(stream)) = (shard, stream) else { return Err(BatchError::NoSource { index }) };
            if record.kinesis.sequence_number.is_empty() {
                return Err(BatchError::NoSequenceNumber { index });
            }
            Ok(KinesisRecord {
                stream: stream.to_owned(),
                shard_id: shard_id.to_owned(),
                sequence_number: record.kinesis.sequence_number.clone(),
                arrival_millis: record.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
                data: record.kinesis.data.0.clone(),
            })
        })
        .collect()
}

/// One DynamoDB stream record, its images decoded into `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<T> {
    pub sequence_number: String,
    /// The item after the change; `None` for REMOVE.
    pub new: Option<T>,
    /// The item before the change; `None` for INSERT (or a stream without old images).
    pub old: Option<T>,
}

pub fn changes<T: DeserializeOwned>(event: &DynamoEvent) -> Result<Vec<Change<T>>, BatchError> {
    let mut changes = Vec::with_capacity(event.records.len());
    for (index, record) in event.records.iter().enumerate() {
        let bad = |problem: String| BatchError::BadChange { index, event_id: record.event_id.clone(), problem };
        let sequence_number = record.change.sequence_number.clone().ok_or(BatchError::NoSequenceNumber { index })?;
        let image = |item: &serde_dynamo::Item| -> Result<Option<T>, BatchError> {
            if item.is_empty() {
                return Ok(None);
            }
            serde_dynamo::from_item(item.clone()).map(Some).map_err(|e| bad(format!("an image does not decode: {e}")))
        };
        let (new, old) = (image(&record.change.new_image)?, image(&record.change.old_image)?);
        match record.event_name.as_str() {
            "INSERT" | "MODIFY" if new.is_none() => {
                return Err(bad("no NewImage (the stream view type must include new images)".to_owned()));
            }
            "REMOVE" if old.is_none() => {
                return Err(bad("no OldImage (the stream view type must include old images)".to_owned()));
            }
            "INSERT" | "MODIFY" => changes.push(Change { sequence_number, new, old }),
            "REMOVE" => changes.push(Change { sequence_number, new: None, old }),
            other => return Err(bad(format!("unknown eventName {other:?}"))),
        }
    }
    Ok(changes)
}
