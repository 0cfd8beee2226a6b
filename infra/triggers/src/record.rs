//! What the decisions need to know about a stream, a shard and its records. The runner's own
//! record types (with the payload) implement [`Record`], so a batch carries them whole.

/// Milliseconds since the Unix epoch: the unit of every instant the decisions compare.
pub type Millis = i64;

/// Which kind of stream a mapping reads. It names the failure record's batch-info block and sets
/// the precision of its timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Kinesis,
    DynamoDbStreams,
}

/// The shard a state machine serves, and the names the failure records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardContext {
    pub kind: SourceKind,
    /// `shardId-000000000000` (Kinesis) or `shardId-00000001573689847184-864758bb` (DynamoDB).
    pub shard_id: String,
    /// The stream ARN (for DynamoDB the table's stream ARN).
    pub stream_arn: String,
    /// The function ARN, with its qualifier when the mapping targets an alias or version.
    pub function_arn: String,
}

/// One stream record, as the decisions see it.
pub trait Record: Clone {
    /// Decimal sequence number, compared numerically.
    fn sequence_number(&self) -> &str;
    /// Kinesis `approximateArrivalTimestamp` or DynamoDB `ApproximateCreationDateTime`.
    fn arrival_millis(&self) -> Millis;
    /// Kinesis partition key, or the DynamoDB item key (partition and sort key) in one string:
    /// the unit whose order `ParallelizationFactor` keeps.
    fn ordering_key(&self) -> &str;
    /// Bytes the record adds to the invocation payload (before base64).
    fn size_bytes(&self) -> u64;
    /// The record as `FilterCriteria` patterns see it (spec F3). By default its metadata only:
    /// `sequenceNumber`, `partitionKey` (the ordering key) and `approximateArrivalTimestamp`.
    fn filter_view(&self) -> serde_json::Value {
        serde_json::json!({
            "sequenceNumber": self.sequence_number(),
            "partitionKey": self.ordering_key(),
            "approximateArrivalTimestamp": self.arrival_millis() as f64 / 1000.0,
        })
    }
}

/// A record reduced to what the decisions read; handy for tests and for callers that keep the
/// payload elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    pub sequence_number: String,
    pub arrival_millis: Millis,
    pub ordering_key: String,
    pub size_bytes: u64,
}

impl Record for RecordMeta {
    fn sequence_number(&self) -> &str {
        &self.sequence_number
    }
    fn arrival_millis(&self) -> Millis {
        self.arrival_millis
    }
    fn ordering_key(&self) -> &str {
        &self.ordering_key
    }
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}
