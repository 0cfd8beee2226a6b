//! The on-failure destination record (spec E7): metadata of a discarded batch, in AWS's shape.
//! The records themselves stay in the stream; a reader finds them by shard and sequence range.

use md5::{Digest, Md5};
use serde::Serialize;

use crate::record::{Millis, Record, ShardContext, SourceKind};
use crate::timefmt;

/// Why a batch was discarded: the two conditions observed on AWS for stream mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Condition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

/// The message sent to the on-failure destination (the SQS body, or the SNS `Message`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureRecord {
    #[serde(rename = "requestContext")]
    pub request_context: RequestContext,
    /// Absent, not null, for `RecordAgeExceeded` (observed on AWS).
    #[serde(rename = "responseContext", skip_serializing_if = "Option::is_none")]
    pub response_context: Option<ResponseContext>,
    pub version: &'static str,
    /// When the record was made: ISO-8601 UTC with milliseconds.
    pub timestamp: String,
    #[serde(flatten)]
    pub batch: BatchInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub request_id: String,
    pub function_arn: String,
    pub condition: Condition,
    pub approximate_invoke_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    pub status_code: u16,
    pub executed_version: String,
    /// `"Unhandled"` when the function failed; null when it returned a response that failed the
    /// batch (a partial response naming the first record, or malformed identifiers).
    pub function_error: Option<String>,
}

/// The batch-info block, named after the source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum BatchInfo {
    #[serde(rename = "KinesisBatchInfo")]
    Kinesis(BatchRange),
    #[serde(rename = "DDBStreamBatchInfo")]
    DynamoDb(BatchRange),
}

impl BatchInfo {
    pub fn range(&self) -> &BatchRange {
        match self {
            Self::Kinesis(range) | Self::DynamoDb(range) => range,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRange {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    /// Kinesis: with milliseconds; DynamoDB: whole seconds.
    pub approximate_arrival_of_first_record: String,
    pub approximate_arrival_of_last_record: String,
    pub batch_size: usize,
    pub stream_arn: String,
}

/// How the function answered the last attempt of a discarded batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastAnswer {
    /// Nothing: the records expired before or between attempts.
    None,
    /// The function failed (`functionError: "Unhandled"`).
    FunctionError,
    /// The function returned a response that failed the batch (`functionError: null`).
    FailingResponse,
}

/// Builds the record for `batch` (non-empty, in shard order).
pub(crate) fn failure_record<R: Record>(
    shard: &ShardContext,
    batch: &[R],
    condition: Condition,
    answer: LastAnswer,
    invoke_count: u32,
    executed_version: &str,
    now: Millis,
) -> FailureRecord {
    let (first, last) = (&batch[0], &batch[batch.len() - 1]);
    let arrival = |millis| match shard.kind {
        SourceKind::Kinesis => timefmt::iso_millis(millis),
        SourceKind::DynamoDbStreams => timefmt::iso_seconds(millis),
    };
    let range = BatchRange {
        shard_id: shard.shard_id.clone(),
        start_sequence_number: first.sequence_number().to_owned(),
        end_sequence_number: last.sequence_number().to_owned(),
        approximate_arrival_of_first_record: arrival(first.arrival_millis()),
        approximate_arrival_of_last_record: arrival(last.arrival_millis()),
        batch_size: batch.len(),
        stream_arn: shard.stream_arn.clone(),
    };
    let response_context = match answer {
        LastAnswer::None => None,
        LastAnswer::FunctionError => Some(Some("Unhandled".to_owned())),
        LastAnswer::FailingResponse => Some(None),
    }
    .map(|function_error| ResponseContext {
        status_code: 200,
        executed_version: executed_version.to_owned(),
        function_error,
    });
    let request_id = request_id(&shard.shard_id, &range.start_sequence_number, &range.end_sequence_number, now);
    FailureRecord {
        request_context: RequestContext {
            request_id,
            function_arn: shard.function_arn.clone(),
            condition,
            approximate_invoke_count: invoke_count.max(1),
        },
        response_context,
        version: "1.0",
        timestamp: timefmt::iso_millis(now),
        batch: match shard.kind {
            SourceKind::Kinesis => BatchInfo::Kinesis(range),
            SourceKind::DynamoDbStreams => BatchInfo::DynamoDb(range),
        },
    }
}

/// A UUID-shaped id derived from what identifies the discard, so the decisions stay pure and
/// repeatable: the same batch discarded at the same instant gets the same id.
fn request_id(shard_id: &str, start: &str, end: &str, now: Millis) -> String {
    let digest = Md5::digest(format!("{shard_id}/{start}/{end}/{now}").as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}
