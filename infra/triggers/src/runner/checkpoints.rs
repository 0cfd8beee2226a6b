//! Checkpoints in a DynamoDB table, as the Kinesis Client Library keeps leases: one item per
//! mapping and shard. Schema: `mapping_id` (HASH, S), `shard_id` (RANGE, S); attributes
//! `checkpoint` (S, the last finished sequence number), `finished` (BOOL, the shard is closed and
//! drained), `latest_since` (N, epoch ms of the first read from `LATEST`) and `updated_at` (N,
//! epoch ms); and the shard's status for `labs status` ([`ShardReport`]): `millis_behind_latest`,
//! `retries_in_progress`, `pending_records`, `in_flight`, `discarded_batches` (N),
//! `last_result` (S), `reported_at` (N); and, while a tumbling window is open ([`WindowReport`]),
//! `window_start`, `window_end` (N, epoch ms), `window_records`, `window_state_bytes` (N) and
//! `window_closing` (BOOL), removed when no window is open.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::record::Millis;
use crate::window::OpenWindowStatus;

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

    /// Stores progress. An update, not a put, so the status attributes stay.
    pub async fn save(
        &self,
        mapping_id: &str,
        shard_id: &str,
        progress: &ShardProgress,
        now: Millis,
    ) -> Result<(), String> {
        let mut set = vec!["finished = :finished", "updated_at = :now"];
        let mut update = self
            .update(mapping_id, shard_id)
            .expression_attribute_values(":finished", AttributeValue::Bool(progress.finished))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        if let Some(checkpoint) = &progress.checkpoint {
            set.push("checkpoint = :checkpoint");
            update = update.expression_attribute_values(":checkpoint", AttributeValue::S(checkpoint.clone()));
        }
        if let Some(since) = progress.latest_since {
            set.push("latest_since = :since");
            update = update.expression_attribute_values(":since", AttributeValue::N(since.to_string()));
        }
        update
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
            .map(drop)
            .map_err(|e| format!("writing checkpoint of {shard_id} to {}: {}", self.table, error_text(&e)))
    }

    /// Stores what `labs status` shows about a shard, beside its checkpoint (window attributes
    /// are left as they are).
    pub async fn report(
        &self,
        mapping_id: &str,
        shard_id: &str,
        report: &ShardReport,
        now: Millis,
    ) -> Result<(), String> {
        self.write_report(mapping_id, shard_id, report, None, now).await
    }

    /// Like [`CheckpointTable::report`], and the shard's open tumbling window: set, or removed
    /// when `window` is `None`.
    pub async fn report_with_window(
        &self,
        mapping_id: &str,
        shard_id: &str,
        report: &ShardReport,
        window: Option<&WindowReport>,
        now: Millis,
    ) -> Result<(), String> {
        self.write_report(mapping_id, shard_id, report, Some(window), now).await
    }

    /// The shard's open tumbling window as last reported, if one is open.
    pub async fn load_window(&self, mapping_id: &str, shard_id: &str) -> Result<Option<WindowReport>, String> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("mapping_id", AttributeValue::S(mapping_id.to_owned()))
            .key("shard_id", AttributeValue::S(shard_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("reading the window of {shard_id} from {}: {}", self.table, error_text(&e)))?;
        Ok(item.item.as_ref().and_then(WindowReport::from_item))
    }

    /// `window`: `None` leaves the window attributes alone, `Some(None)` removes them.
    async fn write_report(
        &self,
        mapping_id: &str,
        shard_id: &str,
        report: &ShardReport,
        window: Option<Option<&WindowReport>>,
        now: Millis,
    ) -> Result<(), String> {
        let number = |n: u64| AttributeValue::N(n.to_string());
        let mut set = vec![
            "retries_in_progress = :retries",
            "pending_records = :pending",
            "in_flight = :in_flight",
            "discarded_batches = :discarded",
            "last_result = :result",
            "reported_at = :now",
        ];
        let mut update = self
            .update(mapping_id, shard_id)
            .expression_attribute_values(":retries", number(u64::from(report.retries_in_progress)))
            .expression_attribute_values(":pending", number(report.pending_records as u64))
            .expression_attribute_values(":in_flight", number(report.in_flight as u64))
            .expression_attribute_values(":discarded", number(report.discarded_batches))
            .expression_attribute_values(":result", AttributeValue::S(report.last_result.clone()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        if let Some(behind) = report.millis_behind_latest {
            set.push("millis_behind_latest = :behind");
            update = update.expression_attribute_values(":behind", AttributeValue::N(behind.to_string()));
        }
        let mut expression = String::new();
        match window {
            None => {}
            Some(Some(window)) => {
                set.extend([
                    "window_start = :wstart",
                    "window_end = :wend",
                    "window_records = :wrecords",
                    "window_state_bytes = :wbytes",
                    "window_closing = :wclosing",
                ]);
                update = update
                    .expression_attribute_values(":wstart", AttributeValue::N(window.start_millis.to_string()))
                    .expression_attribute_values(":wend", AttributeValue::N(window.end_millis.to_string()))
                    .expression_attribute_values(":wrecords", number(window.records))
                    .expression_attribute_values(":wbytes", number(window.state_bytes))
                    .expression_attribute_values(":wclosing", AttributeValue::Bool(window.closing));
            }
            Some(None) => {
                expression =
                    " REMOVE window_start, window_end, window_records, window_state_bytes, window_closing".to_owned();
            }
        }
        update
            .update_expression(format!("SET {}{expression}", set.join(", ")))
            .send()
            .await
            .map(drop)
            .map_err(|e| format!("writing the status of {shard_id} to {}: {}", self.table, error_text(&e)))
    }

    /// Reads a shard's status back (for `labs status` and tests).
    pub async fn load_report(&self, mapping_id: &str, shard_id: &str) -> Result<Option<ShardReport>, String> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("mapping_id", AttributeValue::S(mapping_id.to_owned()))
            .key("shard_id", AttributeValue::S(shard_id.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("reading the status of {shard_id} from {}: {}", self.table, error_text(&e)))?;
        let Some(item) = item.item else { return Ok(None) };
        let Some(last_result) = item.get("last_result").and_then(|v| v.as_s().ok()).cloned() else {
            return Ok(None);
        };
        let number = |key: &str| item.get(key).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
        Ok(Some(ShardReport {
            millis_behind_latest: item
                .get("millis_behind_latest")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok()),
            retries_in_progress: number("retries_in_progress").unwrap_or_default() as u32,
            pending_records: number("pending_records").unwrap_or_default() as usize,
            in_flight: number("in_flight").unwrap_or_default() as usize,
            discarded_batches: number("discarded_batches").unwrap_or_default(),
            last_result,
        }))
    }

    fn update(
        &self,
        mapping_id: &str,
        shard_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("mapping_id", AttributeValue::S(mapping_id.to_owned()))
            .key("shard_id", AttributeValue::S(shard_id.to_owned()))
    }
}

/// A shard's state as `labs status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardReport {
    /// `MillisBehindLatest` of the last `GetRecords`: the iterator age.
    pub millis_behind_latest: Option<i64>,
    pub retries_in_progress: u32,
    pub pending_records: usize,
    pub in_flight: usize,
    /// Batches given up on since this runner started the shard.
    pub discarded_batches: u64,
    /// Lambda's `LastProcessingResult` wording: `No records processed`, `OK`,
    /// `PROBLEM: Function call failed`, plus the runner's own `PROBLEM: Batch item failures
    /// reported` and `PROBLEM: Invoke failed before the function ran`.
    pub last_result: String,
}

/// A shard's open tumbling window as `labs status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowReport {
    pub start_millis: Millis,
    pub end_millis: Millis,
    /// Records of the window delivered (or discarded) so far, not yet checkpointed.
    pub records: u64,
    /// JSON size of the window's state so far.
    pub state_bytes: u64,
    /// Its final (or early-termination) invocation is under way or being retried.
    pub closing: bool,
}

impl WindowReport {
    /// The open window a shard's item holds, if any (for readers that scan the table).
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Option<Self> {
        let number = |key: &str| item.get(key).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
        let (Some(start), Some(end)) = (number("window_start"), number("window_end")) else { return None };
        Some(Self {
            start_millis: start,
            end_millis: end,
            records: number("window_records").unwrap_or_default().max(0) as u64,
            state_bytes: number("window_state_bytes").unwrap_or_default().max(0) as u64,
            closing: item.get("window_closing").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        })
    }
}

impl From<&OpenWindowStatus> for WindowReport {
    fn from(status: &OpenWindowStatus) -> Self {
        Self {
            start_millis: status.start,
            end_millis: status.end,
            records: status.records as u64,
            state_bytes: status.state_bytes as u64,
            closing: status.closing,
        }
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
