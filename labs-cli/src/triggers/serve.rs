//! `labs triggers serve`: the runner process. Every second it reads the settings rows of its
//! prefix's table and makes the running mappings match: a new row starts a mapping, a changed row
//! restarts it from its stored checkpoint (in-flight work is redelivered, never skipped), a row
//! gone stops it. `labs down` stops the process once its prefix has no mapping left; should
//! that be missed (the table deleted by hand), the runner exits when its table is gone.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use labs_triggers::runner::{CheckpointTable, Destinations, Runner, RunnerClients, stop_signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::CHECKPOINTS;
use super::rows::{self, MappingRow};
use crate::target::Target;

const POLL: Duration = Duration::from_secs(1);
/// Polls in a row that find no table before the runner exits. A runner with a table but no
/// mapping waits (`up` may be about to publish one: example 3's backfill reconnects its source).
const TABLE_GONE_POLLS: u32 = 5;
/// Polls in a row that fail (the endpoint is gone) before the runner exits.
const FAILED_POLLS: u32 = 60;

struct Running {
    row: MappingRow,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub async fn serve(target: &Target) -> Result<()> {
    let table = target.name(CHECKPOINTS);
    let clients = &target.clients;
    let runner = Runner::new(RunnerClients {
        kinesis: clients.kinesis.clone(),
        dynamodb_streams: clients.dynamodb_streams.clone(),
        lambda: clients.lambda.clone(),
        destinations: Destinations { sqs: clients.sqs.clone(), sns: clients.sns.clone() },
        checkpoints: CheckpointTable::new(clients.dynamodb.clone(), &table),
    });
    tracing::info!(table, "runner started");
    let mut running: HashMap<String, Running> = HashMap::new();
    let (mut gone, mut failed) = (0, 0);
    loop {
        let wanted: Vec<(String, MappingRow)> = match rows::read_all(&clients.dynamodb, &table).await {
            Ok(found) => {
                failed = 0;
                gone = if found.is_none() { gone + 1 } else { 0 };
                found.unwrap_or_default().into_iter().map(|(id, row, _)| (id, row)).collect()
            }
            Err(err) => {
                failed += 1;
                tracing::warn!("reading the settings: {err:#}");
                if failed >= FAILED_POLLS {
                    tracing::error!("the endpoint has not answered for a minute: stopping");
                    break;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if gone >= TABLE_GONE_POLLS {
            tracing::info!("the table is gone (the prefix's stacks are down): stopping");
            break;
        }
        reconcile(&runner, &clients.dynamodb, &table, &mut running, wanted).await;
        tokio::time::sleep(POLL).await;
    }
    for (id, mapping) in running.drain() {
        stop(&id, mapping).await;
    }
    Ok(())
}

async fn reconcile(
    runner: &Runner,
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    running: &mut HashMap<String, Running>,
    wanted: Vec<(String, MappingRow)>,
) {
    let stale: Vec<String> = running
        .iter()
        .filter(|(id, mapping)| {
            mapping.task.is_finished() || !wanted.iter().any(|(wanted_id, row)| wanted_id == *id && *row == mapping.row)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in stale {
        let Some(mapping) = running.remove(&id) else { continue };
        let stream_arn = mapping.row.stream_arn.clone();
        stop(&id, mapping).await;
        // Removed, or reading another stream (the source was recreated): its checkpoints are
        // of no use now, and a new mapping starts from its starting position.
        let same_stream = wanted.iter().any(|(wanted_id, row)| *wanted_id == id && row.stream_arn == stream_arn);
        if !same_stream && let Err(err) = rows::forget_shards(dynamodb, table, &id).await {
            tracing::warn!(mapping = id, "forgetting its checkpoints: {err:#}");
        }
    }
    for (id, row) in wanted {
        if running.contains_key(&id) {
            continue;
        }
        let mapping = match row.stream_mapping(&id) {
            Ok(mapping) => mapping,
            Err(err) => {
                tracing::error!(mapping = id, "not started: {err:#}");
                continue;
            }
        };
        tracing::info!(mapping = id, settings = row.describe(), "starting");
        let (stop, signal) = stop_signal();
        let runner = runner.clone();
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = runner.run(mapping, signal).await {
                tracing::error!(mapping = task_id, "stopped: {err}");
            }
        });
        if let Err(err) = rows::mark_applied(dynamodb, table, &id, &row).await {
            tracing::warn!(mapping = id, "acknowledging its settings: {err:#}");
        }
        running.insert(id, Running { row, stop, task });
    }
}

async fn stop(id: &str, mapping: Running) {
    tracing::info!(mapping = id, "stopping");
    mapping.stop.send(true).ok();
    // A mapping that does not stop within a few seconds is aborted: its work was not
    // checkpointed, so the next start redelivers it.
    let mut task = mapping.task;
    if tokio::time::timeout(Duration::from_secs(10), &mut task).await.is_err() {
        tracing::warn!(mapping = id, "did not stop in time: aborted");
        task.abort();
    }
}
