//! The runner's table, `<prefix>-triggers-checkpoints`, as the CLI reads and writes it. Beside
//! the runner's own rows (one per mapping and shard: checkpoint and status, written by
//! `labs_triggers::runner::CheckpointTable`), each mapping the runner executes has a settings
//! row (`shard_id` = [`SETTINGS_ROW`]) that the CLI writes (`labs up`, `labs triggers set`) and
//! the runner polls.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use labs_infra::SdkContext;
use labs_infra::stack::EventSourceMapping;
use labs_triggers::runner::StreamMapping;
use labs_triggers::runner::WindowReport;
use labs_triggers::{FilterCriteria, MappingSettings, Pacing, StartingPosition, iso_millis};
use serde::{Deserialize, Serialize};

/// The `shard_id` of a mapping's settings row: no shard id starts with `#`.
pub const SETTINGS_ROW: &str = "#settings";

/// Everything the runner needs to execute one mapping, as the declaration (or `labs triggers
/// set`) says. Stored as JSON in the settings row's `mapping` attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingRow {
    pub stream_arn: String,
    pub function_arn: String,
    pub role_arn: String,
    pub region: String,
    pub starting_position: String,
    pub batch_size: u32,
    pub batching_window_seconds: u32,
    pub parallelization_factor: u32,
    /// -1: until the record expires.
    pub maximum_retry_attempts: i64,
    /// -1: no limit.
    pub maximum_record_age_seconds: i64,
    pub bisect_batch_on_function_error: bool,
    pub report_batch_item_failures: bool,
    pub on_failure_destination: Option<String>,
    /// 0: no window. (Rows written before windows existed have none.)
    #[serde(default)]
    pub tumbling_window_seconds: u32,
    /// `FilterCriteria` patterns, JSON text each.
    #[serde(default)]
    pub filter_criteria: Vec<String>,
    /// With `AT_TIMESTAMP`: Unix time in seconds.
    #[serde(default)]
    pub starting_position_timestamp: Option<f64>,
}

impl MappingRow {
    /// What the declaration says, without the ARNs and destination (which name provisioned
    /// resources: empty here).
    pub fn declared(mapping: &EventSourceMapping) -> Result<Self> {
        let whole = |value: Option<i32>, default: i32, what: &str| {
            u32::try_from(value.unwrap_or(default)).with_context(|| format!("a negative {what}"))
        };
        Ok(Self {
            stream_arn: String::new(),
            function_arn: String::new(),
            role_arn: String::new(),
            region: String::new(),
            starting_position: mapping.starting_position.clone().unwrap_or_else(|| "TRIM_HORIZON".to_owned()),
            batch_size: whole(Some(mapping.batch_size), 0, "batch size")?,
            batching_window_seconds: whole(Some(mapping.maximum_batching_window_seconds), 0, "batching window")?,
            parallelization_factor: whole(mapping.parallelization_factor, 1, "parallelization factor")?,
            maximum_retry_attempts: i64::from(mapping.maximum_retry_attempts.unwrap_or(-1)),
            maximum_record_age_seconds: i64::from(mapping.maximum_record_age_seconds.unwrap_or(-1)),
            bisect_batch_on_function_error: mapping.bisect_batch_on_function_error,
            report_batch_item_failures: mapping.report_batch_item_failures,
            on_failure_destination: None,
            tumbling_window_seconds: whole(mapping.tumbling_window_seconds, 0, "tumbling window")?,
            filter_criteria: mapping.filter_criteria.clone(),
            starting_position_timestamp: mapping.starting_position_timestamp,
        })
    }

    /// The settings, validated as AWS validates them.
    pub fn settings(&self) -> Result<MappingSettings> {
        let position =
            StartingPosition::parse_with_timestamp(&self.starting_position, self.starting_position_timestamp)?;
        let filters = FilterCriteria::parse(self.filter_criteria.iter().map(String::as_str))?;
        let mut settings = MappingSettings::new(position)
            .with_batch_size(self.batch_size)?
            .with_batching_window(self.batching_window_seconds)?
            .with_parallelization_factor(self.parallelization_factor)?
            .with_maximum_retry_attempts(self.maximum_retry_attempts)?
            .with_maximum_record_age(self.maximum_record_age_seconds)?
            .with_bisect(self.bisect_batch_on_function_error)
            .with_report_batch_item_failures(self.report_batch_item_failures)
            .with_tumbling_window(self.tumbling_window_seconds)?
            .with_filter_criteria(filters);
        if let Some(destination) = &self.on_failure_destination {
            settings = settings.with_on_failure_destination(destination)?;
        }
        Ok(settings)
    }

    pub fn stream_mapping(&self, id: &str) -> Result<StreamMapping> {
        Ok(StreamMapping {
            id: id.to_owned(),
            stream_arn: self.stream_arn.clone(),
            function_arn: self.function_arn.clone(),
            execution_role_arn: self.role_arn.clone(),
            region: self.region.clone(),
            settings: self.settings()?,
            pacing: Pacing::default(),
        })
    }

    /// The settings in a line, for `labs status`.
    pub fn describe(&self) -> String {
        let limit = |n: i64, unit: &str| if n < 0 { "unlimited".to_owned() } else { format!("{n}{unit}") };
        let from = match self.starting_position_timestamp {
            Some(seconds) => format!("{} {}", self.starting_position, iso_millis((seconds * 1000.0).round() as i64)),
            None => self.starting_position.clone(),
        };
        let mut text = format!(
            "from {from}, batch {}, retries {}, max age {}, bisect {}, parallel {}",
            self.batch_size,
            limit(self.maximum_retry_attempts, ""),
            limit(self.maximum_record_age_seconds, " s"),
            if self.bisect_batch_on_function_error { "on" } else { "off" },
            self.parallelization_factor,
        );
        if self.report_batch_item_failures {
            text.push_str(", partial batch responses");
        }
        if self.tumbling_window_seconds > 0 {
            text.push_str(&format!(", {} s tumbling windows", self.tumbling_window_seconds));
        }
        if !self.filter_criteria.is_empty() {
            text.push_str(&format!(", filters {}", self.filter_criteria.join(" or ")));
        }
        if let Some(destination) = &self.on_failure_destination {
            text.push_str(&format!(", failures to {}", destination.rsplit(':').next().unwrap_or(destination)));
        }
        text
    }
}

/// One shard's row, as `labs status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardRow {
    pub shard_id: String,
    pub checkpoint: Option<String>,
    pub finished: bool,
    pub millis_behind_latest: Option<i64>,
    pub retries_in_progress: Option<u64>,
    pub last_result: Option<String>,
    pub discarded_batches: Option<u64>,
    /// The shard's open tumbling window, as the runner last reported it.
    pub open_window: Option<OpenWindow>,
}

/// A shard's open tumbling window, for `labs status`.
#[derive(Debug, Clone, Serialize)]
pub struct OpenWindow {
    /// ISO-8601 UTC, and the same instants in epoch milliseconds.
    pub start: String,
    pub end: String,
    pub start_millis: i64,
    pub end_millis: i64,
    /// Records delivered in it so far (checkpointed once it closes).
    pub records: u64,
    pub state_bytes: u64,
    /// Its final invocation is under way or being retried.
    pub closing: bool,
}

impl From<WindowReport> for OpenWindow {
    fn from(window: WindowReport) -> Self {
        Self {
            start: iso_millis(window.start_millis),
            end: iso_millis(window.end_millis),
            start_millis: window.start_millis,
            end_millis: window.end_millis,
            records: window.records,
            state_bytes: window.state_bytes,
            closing: window.closing,
        }
    }
}

impl OpenWindow {
    /// `[12:00:00.000Z, 12:01:00.000Z) 42 records, 120 B of state` and `closing` when it is.
    pub fn describe(&self) -> String {
        let time = |iso: &str| iso.split_once('T').map_or(iso.to_owned(), |(_, time)| time.to_owned());
        let closing = if self.closing { ", closing" } else { "" };
        format!(
            "[{}, {}) {} records, {} B of state{closing}",
            time(&self.start),
            time(&self.end),
            self.records,
            self.state_bytes
        )
    }
}

/// Everything in the table: each mapping's settings and shards, by mapping id. `None` when the
/// table does not exist.
pub async fn read_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Option<Vec<(String, MappingRow, Vec<ShardRow>)>>> {
    let mut settings: Vec<(String, MappingRow)> = Vec::new();
    let mut shards: HashMap<String, Vec<ShardRow>> = HashMap::new();
    let mut start = None;
    loop {
        let scan = client.scan().table_name(table).consistent_read(true).set_exclusive_start_key(start).send().await;
        let scan = match scan {
            Ok(scan) => scan,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
                return Ok(None);
            }
            Err(err) => return Err(err).doing(format!("reading {table}")),
        };
        for item in scan.items() {
            let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
            let (Some(mapping_id), Some(shard_id)) = (text("mapping_id"), text("shard_id")) else { continue };
            if shard_id == SETTINGS_ROW {
                let json = text("mapping").unwrap_or_default();
                let row = serde_json::from_str(&json)
                    .with_context(|| format!("the settings of {mapping_id} in {table} are not readable"))?;
                settings.push((mapping_id, row));
            } else {
                shards.entry(mapping_id).or_default().push(shard_row(shard_id, item));
            }
        }
        start = scan.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    settings.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(
        settings
            .into_iter()
            .map(|(id, row)| {
                let mut shard_rows = shards.remove(&id).unwrap_or_default();
                shard_rows.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
                (id, row, shard_rows)
            })
            .collect(),
    ))
}

/// A shard's row of the runner's table as `labs status` shows it.
fn shard_row(shard_id: String, item: &HashMap<String, AttributeValue>) -> ShardRow {
    let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
    let number = |key: &str| item.get(key).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    ShardRow {
        checkpoint: text("checkpoint"),
        finished: item.get("finished").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        millis_behind_latest: number("millis_behind_latest"),
        retries_in_progress: number("retries_in_progress").map(|n| n as u64),
        last_result: text("last_result"),
        discarded_batches: number("discarded_batches").map(|n| n as u64),
        open_window: WindowReport::from_item(item).map(OpenWindow::from),
        shard_id,
    }
}

/// Writes a mapping's settings row; the runner picks it up within a second or so. Only the
/// settings are set: what the runner marked as applied stays, so unchanged settings need no new
/// acknowledgement ([`wait_applied`]).
pub async fn write(client: &aws_sdk_dynamodb::Client, table: &str, id: &str, row: &MappingRow) -> Result<()> {
    set_attribute(client, table, id, "mapping", row).await.doing(format!("writing the settings of {id} to {table}"))
}

/// The runner's acknowledgement: it runs `id` with `row` now. Like a mapping's state going from
/// `Updating` back to `Enabled` on AWS.
pub async fn mark_applied(client: &aws_sdk_dynamodb::Client, table: &str, id: &str, row: &MappingRow) -> Result<()> {
    set_attribute(client, table, id, "applied", row).await.doing(format!("marking the settings of {id} applied"))
}

async fn set_attribute(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
    attribute: &str,
    row: &MappingRow,
) -> Result<(), aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError>> {
    let json = serde_json::to_string(row).expect("a MappingRow always serializes");
    client
        .update_item()
        .table_name(table)
        .key("mapping_id", AttributeValue::S(id.to_owned()))
        .key("shard_id", AttributeValue::S(SETTINGS_ROW.to_owned()))
        .update_expression("SET #attribute = :row")
        .expression_attribute_names("#attribute", attribute)
        .expression_attribute_values(":row", AttributeValue::S(json))
        .send()
        .await
        .map(|_| ())
}

/// Waits until the runner runs every mapping of `ids` with the settings its row holds, so work
/// produced next is read under them (a mapping restarted later would redeliver it). Returns the
/// ids still not applied when `limit` passes.
pub async fn wait_applied(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    ids: &[String],
    limit: std::time::Duration,
) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut pending = Vec::new();
        for id in ids {
            let item = client
                .get_item()
                .table_name(table)
                .key("mapping_id", AttributeValue::S(id.clone()))
                .key("shard_id", AttributeValue::S(SETTINGS_ROW.to_owned()))
                .consistent_read(true)
                .send()
                .await
                .doing(format!("reading the settings of {id}"))?;
            let parsed = |key: &str| -> Option<MappingRow> {
                let text = item.item()?.get(key)?.as_s().ok()?;
                serde_json::from_str(text).ok()
            };
            if parsed("applied").is_none() || parsed("applied") != parsed("mapping") {
                pending.push(id.clone());
            }
        }
        if pending.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(pending);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Deletes every row of a mapping (settings, checkpoints, status): the runner stops it, and a
/// mapping created again starts from its starting position, as a new mapping on AWS does.
pub async fn forget(client: &aws_sdk_dynamodb::Client, table: &str, id: &str) -> Result<()> {
    delete_rows(client, table, id, true).await
}

/// Deletes a mapping's checkpoint and status rows, keeping its settings: the runner does this
/// once it has stopped a mapping that was removed or now reads another stream, so no checkpoint
/// of the old stream survives the last write of the stopped task.
pub async fn forget_shards(client: &aws_sdk_dynamodb::Client, table: &str, id: &str) -> Result<()> {
    delete_rows(client, table, id, false).await
}

async fn delete_rows(client: &aws_sdk_dynamodb::Client, table: &str, id: &str, settings_too: bool) -> Result<()> {
    let query = client
        .query()
        .table_name(table)
        .key_condition_expression("mapping_id = :id")
        .expression_attribute_values(":id", AttributeValue::S(id.to_owned()))
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await;
    for item in query {
        let item = match item {
            Ok(item) => item,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => return Ok(()),
            Err(err) => return Err(err).doing(format!("reading the rows of {id} in {table}")),
        };
        let Some(shard_id) = item.get("shard_id").cloned() else { continue };
        if !settings_too && shard_id.as_s().is_ok_and(|s| s == SETTINGS_ROW) {
            continue;
        }
        client
            .delete_item()
            .table_name(table)
            .key("mapping_id", AttributeValue::S(id.to_owned()))
            .key("shard_id", shard_id)
            .send()
            .await
            .doing(format!("deleting a row of {id} from {table}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: i64) -> AttributeValue {
        AttributeValue::N(value.to_string())
    }

    #[test]
    fn a_shard_row_shows_its_open_window_and_none_once_it_closed() {
        let mut item = HashMap::from([
            ("checkpoint".to_owned(), AttributeValue::S("49".to_owned())),
            ("last_result".to_owned(), AttributeValue::S("OK".to_owned())),
            ("window_start".to_owned(), n(1_764_547_200_000)),
            ("window_end".to_owned(), n(1_764_547_260_000)),
            ("window_records".to_owned(), n(42)),
            ("window_state_bytes".to_owned(), n(120)),
            ("window_closing".to_owned(), AttributeValue::Bool(true)),
        ]);
        let row = shard_row("shardId-000000000000".to_owned(), &item);
        let window = row.open_window.expect("an open window");
        assert_eq!(window.start, "2025-12-01T00:00:00.000Z");
        assert_eq!(window.describe(), "[00:00:00.000Z, 00:01:00.000Z) 42 records, 120 B of state, closing");
        assert_eq!(serde_json::to_value(&window).unwrap()["records"], 42);
        item.remove("window_start");
        item.remove("window_end");
        assert!(shard_row("shardId-000000000000".to_owned(), &item).open_window.is_none());
    }

    #[test]
    fn rows_written_before_windows_existed_still_read() {
        let old = r#"{"stream_arn":"s","function_arn":"f","role_arn":"r","region":"us-east-1",
            "starting_position":"TRIM_HORIZON","batch_size":10,"batching_window_seconds":0,
            "parallelization_factor":1,"maximum_retry_attempts":-1,"maximum_record_age_seconds":-1,
            "bisect_batch_on_function_error":false,"report_batch_item_failures":false,
            "on_failure_destination":null}"#;
        let row: MappingRow = serde_json::from_str(old).unwrap();
        assert_eq!((row.tumbling_window_seconds, row.filter_criteria.len()), (0, 0));
        let settings = row.settings().unwrap();
        assert_eq!(settings.tumbling_window_seconds, 0);
        assert!(settings.filter_criteria.is_empty());
    }

    #[test]
    fn at_timestamp_and_a_bad_pattern_are_read_as_aws_reads_them() {
        let row = MappingRow {
            starting_position: "AT_TIMESTAMP".to_owned(),
            starting_position_timestamp: Some(1_764_547_200.25),
            ..serde_json::from_str(
                r#"{"stream_arn":"s","function_arn":"f","role_arn":"r","region":"r",
                "starting_position":"LATEST","batch_size":10,"batching_window_seconds":0,"parallelization_factor":1,
                "maximum_retry_attempts":-1,"maximum_record_age_seconds":-1,"bisect_batch_on_function_error":false,
                "report_batch_item_failures":false,"on_failure_destination":null}"#,
            )
            .unwrap()
        };
        assert_eq!(row.settings().unwrap().starting_position, StartingPosition::AtTimestamp(1_764_547_200_250));
        assert!(row.describe().contains("from AT_TIMESTAMP 2025-12-01T00:00:00.250Z"), "{}", row.describe());
        let bad = MappingRow { filter_criteria: vec![r#"{"data": {"kind": "reading"}}"#.to_owned()], ..row };
        let error = bad.settings().unwrap_err().to_string();
        assert!(error.starts_with("Invalid filter pattern definition."), "{error}");
    }
}
