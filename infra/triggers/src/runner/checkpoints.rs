//! Checkpoints in a DynamoDB table, as the Kinesis Client Library keeps leases: one item per
//! mapping and shard. Schema: `mapping_id` (HASH, S), `shard_id` (RANGE, S); attributes
//! `checkpoint` (S, the last finished sequence number), `finished` (BOOL, the shard is closed and
//! drained), `latest_since` (N, epoch ms of the first read from `LATEST`) and `updated_at` (N,
//! epoch ms).

use aws_sdk_dynamodb::types::AttributeValue;

use crate::record::Millis;

/// What the table says about one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardProgress {
    pub checkpoint: Option<String>,
    pub finished: bool,
    pub latest_since: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct CheckpointTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl CheckpointTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Self { client, table: table.to_owned() }
    }

    pub async fn load(&self, mapping_id: &str, shard_id: &str) -> Result<ShardProgress, String> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("mapping_id", AttributeValue::S(mapping_id.to_owned()))
            .key("shard_id", AttributeValue::S(shard_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("reading checkpoint of {shard_id} from {}: {}", self.table, error_text(&e)))?;
        let Some(item) = item.item else { return Ok(ShardProgress::default()) };
        Ok(ShardProgress {
            checkpoint: item.get("checkpoint").and_then(|v| v.as_s().ok()).cloned(),
            finished: item.get("finished").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
            latest_since: item.get("latest_since").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()),
        })
    }

    pub async fn save(
        &self,
        mapping_id: &str,
        shard_id: &str,
        progress: &ShardProgress,
        now: Millis,
    ) -> Result<(), String> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("mapping_id", AttributeValue::S(mapping_id.to_owned()))
            .item("shard_id", AttributeValue::S(shard_id.to_owned()))
            .item("finished", AttributeValue::Bool(progress.finished))
            .item("updated_at", AttributeValue::N(now.to_string()));
        if let Some(checkpoint) = &progress.checkpoint {
            put = put.item("checkpoint", AttributeValue::S(checkpoint.clone()));
        }
        if let Some(since) = progress.latest_since {
            put = put.item("latest_since", AttributeValue::N(since.to_string()));
        }
        put.send()
            .await
            .map(drop)
            .map_err(|e| format!("writing checkpoint of {shard_id} to {}: {}", self.table, error_text(&e)))
    }
}

/// The service's message, not the SDK's generic "service error".
pub(crate) fn error_text<E: std::error::Error + 'static>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
