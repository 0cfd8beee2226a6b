//! The I/O loop around the decisions, for Kinesis streams and DynamoDB table streams: reads
//! shards (parents before children), invokes the function, stores checkpoints and sends failure
//! records, until told to stop.

mod checkpoints;
mod destination;
mod invoke;
mod shard_loop;
mod source;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use labs_core::lineage;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use checkpoints::{CheckpointTable, ShardProgress, ShardReport, WindowReport};
pub use destination::Destinations;
pub use source::dynamodb_input;

use crate::position::ShardHistory;
use crate::record::{Millis, SourceKind};
use crate::settings::{MappingSettings, Pacing};
use source::{DynamoDbStreamSource, KinesisSource, StreamSource};

/// One mapping the runner executes.
#[derive(Debug, Clone)]
pub struct StreamMapping {
    /// Names the mapping in the checkpoint table (the mapping's UUID, or its declared name).
    pub id: String,
    /// A Kinesis stream ARN or a DynamoDB table stream ARN: the source kind follows from it.
    pub stream_arn: String,
    /// Function name or ARN (with qualifier if any); failure records name it as given.
    pub function_arn: String,
    /// Kinesis records name it in `invokeIdentityArn`.
    pub execution_role_arn: String,
    pub region: String,
    pub settings: MappingSettings,
    pub pacing: Pacing,
}

/// The SDK clients the runner uses; built by `labs_infra::Clients`.
#[derive(Debug, Clone)]
pub struct RunnerClients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb_streams: aws_sdk_dynamodbstreams::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub destinations: Destinations,
    pub checkpoints: CheckpointTable,
}

/// Runs mappings until `stop` turns true.
#[derive(Debug, Clone)]
pub struct Runner {
    clients: RunnerClients,
}

/// Stop with `stop_sender.send(true)`; the runner returns after in-flight work is abandoned
/// (never checkpointed, so it is redelivered on the next start).
pub fn stop_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// How often shards are listed again to find children after resharding.
const RELIST_EVERY: Duration = Duration::from_secs(10);

impl Runner {
    pub fn new(clients: RunnerClients) -> Self {
        Self { clients }
    }

    /// Reads every shard of the mapping's stream, parents before children, until `stop`.
    pub async fn run(&self, mapping: StreamMapping, stop: watch::Receiver<bool>) -> Result<(), String> {
        let arn = mapping.stream_arn.clone();
        if let Some((_, name)) = arn.split_once(":stream/").filter(|_| arn.contains(":kinesis:")) {
            mapping.settings.check_source(SourceKind::Kinesis, &arn).map_err(|e| e.to_string())?;
            let source = KinesisSource { client: self.clients.kinesis.clone(), stream_name: name.to_owned() };
            self.run_source(source, mapping, stop).await
        } else if arn.contains(":dynamodb:") && arn.contains("/stream/") {
            mapping.settings.check_source(SourceKind::DynamoDbStreams, &arn).map_err(|e| e.to_string())?;
            let source = DynamoDbStreamSource { client: self.clients.dynamodb_streams.clone(), stream_arn: arn };
            self.run_source(source, mapping, stop).await
        } else {
            Err(format!("{arn} is neither a Kinesis stream nor a DynamoDB table stream ARN"))
        }
    }

    async fn run_source<S: StreamSource>(
        &self,
        source: S,
        mapping: StreamMapping,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mapping = Arc::new(mapping);
        let mut running: JoinSet<(String, Result<(), String>)> = JoinSet::new();
        let mut started: HashSet<String> = HashSet::new();
        let mut finished: HashSet<String> = HashSet::new();
        loop {
            let shards = source.list_shards().await?;
            let listed: HashSet<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
            for shard in lineage::parents_first(shards, |s| (s.shard_id.clone(), s.parents.clone())) {
                if started.contains(&shard.shard_id) || finished.contains(&shard.shard_id) {
                    continue;
                }
                let parents: Vec<&String> = shard.parents.iter().flatten().filter(|p| listed.contains(*p)).collect();
                if !parents.iter().all(|p| finished.contains(*p)) {
                    continue;
                }
                let progress = self.clients.checkpoints.load(&mapping.id, &shard.shard_id).await?;
                if progress.finished {
                    finished.insert(shard.shard_id.clone());
                    continue;
                }
                started.insert(shard.shard_id.clone());
                let task = shard_loop::ShardLoop {
                    clients: self.clients.clone(),
                    source: source.clone(),
                    mapping: Arc::clone(&mapping),
                    shard_id: shard.shard_id.clone(),
                    history: ShardHistory {
                        checkpoint: progress.checkpoint,
                        latest_since: progress.latest_since,
                        opened_after_start: !parents.is_empty(),
                    },
                };
                let stop = stop.clone();
                let shard_id = shard.shard_id.clone();
                running.spawn(async move { (shard_id, task.run(stop).await) });
            }
            tokio::select! {
                done = running.join_next(), if !running.is_empty() => {
                    match done {
                        Some(Ok((shard_id, Ok(())))) => {
                            started.remove(&shard_id);
                            if !*stop.borrow() {
                                finished.insert(shard_id);
                            }
                        }
                        Some(Ok((shard_id, Err(error)))) => {
                            tracing::error!(shard_id, "shard stopped: {error}; restarting it from its checkpoint");
                            started.remove(&shard_id);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Some(Err(join_error)) => return Err(format!("a shard task failed: {join_error}")),
                        None => {}
                    }
                }
                _ = tokio::time::sleep(RELIST_EVERY) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                while running.join_next().await.is_some() {}
                return Ok(());
            }
        }
    }
}

/// Wall-clock time: the only clock the runner reads; the decisions get it as an argument.
pub(crate) fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as Millis)
        .unwrap_or_default()
}
