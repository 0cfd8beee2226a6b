//! The runner's table, `<prefix>-triggers-checkpoints`, as the CLI reads and writes it. Beside
//! the runner's own rows (one per mapping and shard: checkpoint and status, written by
//! `labs_triggers::runner::CheckpointTable`), each mapping the runner executes has a settings
//! row (`shard_id` = [`SETTINGS_ROW`]) that the CLI writes (`labs up`, `labs triggers set`) and
//! the runner polls.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use labs_infra::SdkContext;
use labs_triggers::runner::StreamMapping;
use labs_triggers::{MappingSettings, Pacing, StartingPosition};
use serde::{Deserialize, Serialize};

/// The `shard_id` of a mapping's settings row: no shard id starts with `#`.
pub const SETTINGS_ROW: &str = "#settings";

/// Everything the runner needs to execute one mapping, as the declaration (or `labs triggers
/// set`) says. Stored as JSON in the settings row's `mapping` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl MappingRow {
    /// The settings, validated as AWS validates them.
    pub fn settings(&self) -> Result<MappingSettings> {
        let mut settings = MappingSettings::new(StartingPosition::parse(&self.starting_position)?)
            .with_batch_size(self.batch_size)?
            .with_batching_window(self.batching_window_seconds)?
            .with_parallelization_factor(self.parallelization_factor)?
            .with_maximum_retry_attempts(self.maximum_retry_attempts)?
            .with_maximum_record_age(self.maximum_record_age_seconds)?
            .with_bisect(self.bisect_batch_on_function_error)
            .with_report_batch_item_failures(self.report_batch_item_failures);
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
        let mut text = format!(
            "from {}, batch {}, retries {}, max age {}, bisect {}, parallel {}",
            self.starting_position,
            self.batch_size,
            limit(self.maximum_retry_attempts, ""),
            limit(self.maximum_record_age_seconds, " s"),
            if self.bisect_batch_on_function_error { "on" } else { "off" },
            self.parallelization_factor,
        );
        if self.report_batch_item_failures {
            text.push_str(", partial batch responses");
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
            let number = |key: &str| item.get(key).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
            let (Some(mapping_id), Some(shard_id)) = (text("mapping_id"), text("shard_id")) else { continue };
            if shard_id == SETTINGS_ROW {
                let json = text("mapping").unwrap_or_default();
                let row = serde_json::from_str(&json)
                    .with_context(|| format!("the settings of {mapping_id} in {table} are not readable"))?;
                settings.push((mapping_id, row));
            } else {
                shards.entry(mapping_id).or_default().push(ShardRow {
                    checkpoint: text("checkpoint"),
                    finished: item.get("finished").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
                    millis_behind_latest: number("millis_behind_latest"),
                    retries_in_progress: number("retries_in_progress").map(|n| n as u64),
                    last_result: text("last_result"),
                    discarded_batches: number("discarded_batches").map(|n| n as u64),
                    shard_id,
                });
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

/// Writes a mapping's settings row; the runner picks it up within a second or so.
pub async fn write(client: &aws_sdk_dynamodb::Client, table: &str, id: &str, row: &MappingRow) -> Result<()> {
    client
        .put_item()
        .table_name(table)
        .item("mapping_id", AttributeValue::S(id.to_owned()))
        .item("shard_id", AttributeValue::S(SETTINGS_ROW.to_owned()))
        .item("mapping", AttributeValue::S(serde_json::to_string(row)?))
        .send()
        .await
        .doing(format!("writing the settings of {id} to {table}"))?;
    Ok(())
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
