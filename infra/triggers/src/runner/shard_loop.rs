//! One shard: read records, drive the [`ShardMachine`], do what it says.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::types::{EncryptionType, ShardIteratorType};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::event::{EventSource, KinesisInput, kinesis_event};
use crate::outcome::Outcome;
use crate::position::{IteratorStart, ShardHistory, iterator_start};
use crate::record::{Millis, ShardContext, SourceKind};
use crate::runner::checkpoints::{ShardProgress, ShardReport, error_text};
use crate::runner::{KinesisMapping, RunnerClients, invoke, now_millis};
use crate::shard::{InvocationId, ShardMachine, Step};

/// Kinesis standard consumers poll each shard once a second when caught up (spec P3).
const CAUGHT_UP_POLL_MILLIS: Millis = 1_000;
/// Stop reading while this many batches per lane wait: the function sets the pace.
const BUFFERED_BATCHES_PER_LANE: usize = 4;
/// How often a shard's status is written for `labs status`, at most.
const REPORT_EVERY_MILLIS: Millis = 2_000;

pub(crate) struct ShardLoop {
    pub clients: RunnerClients,
    pub mapping: Arc<KinesisMapping>,
    pub stream_name: String,
    pub shard_id: String,
    pub history: ShardHistory,
}

impl ShardLoop {
    /// Returns `Ok` when the shard is drained (closed and every record finished) or on stop.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let settings = &self.mapping.settings;
        let context = ShardContext {
            kind: SourceKind::Kinesis,
            shard_id: self.shard_id.clone(),
            stream_arn: self.mapping.stream_arn.clone(),
            function_arn: self.mapping.function_arn.clone(),
        };
        let source = EventSource {
            shard_id: self.shard_id.clone(),
            stream_arn: self.mapping.stream_arn.clone(),
            region: self.mapping.region.clone(),
            execution_role_arn: self.mapping.execution_role_arn.clone(),
        };
        let checkpoint = self.history.checkpoint.clone();
        let mut machine: ShardMachine<KinesisInput> =
            ShardMachine::new(settings.clone(), self.mapping.pacing, context, checkpoint.clone(), now_millis());
        let buffer_bound =
            settings.batch_size as usize * settings.parallelization_factor as usize * BUFFERED_BATCHES_PER_LANE;
        let start = iterator_start(settings, &self.history);
        let mut progress = ShardProgress { checkpoint, finished: false, latest_since: self.history.latest_since };
        if start == IteratorStart::Latest {
            // Remember when reading began, so a restart before the first checkpoint skips nothing.
            progress.latest_since = Some(now_millis());
            self.save(&progress).await?;
        }
        let mut iterator = Some(self.shard_iterator(&start).await?);
        let mut last_read: Option<String> = progress.checkpoint.clone();
        let mut next_read: Millis = 0;
        let mut in_flight: JoinSet<(InvocationId, Outcome, Option<String>)> = JoinSet::new();
        let mut millis_behind_latest: Option<i64> = None;
        let mut last_result = "No records processed";
        let mut reported: Option<(Millis, ShardReport)> = None;

        loop {
            let now = now_millis();
            if let Some(current) = iterator.clone()
                && now >= next_read
                && machine.pending_records() < buffer_bound
            {
                match self.clients.kinesis.get_records().shard_iterator(current).limit(10_000).send().await {
                    Ok(page) => {
                        let records: Vec<KinesisInput> = page.records().iter().map(kinesis_input).collect();
                        if let Some(last) = records.last() {
                            last_read = Some(last.sequence_number.clone());
                        }
                        millis_behind_latest = page.millis_behind_latest();
                        let caught_up = records.is_empty() || millis_behind_latest == Some(0);
                        machine.offer(records);
                        iterator = page.next_shard_iterator().map(str::to_owned);
                        if iterator.is_none() {
                            machine.end_of_shard();
                        }
                        next_read = if caught_up { now + CAUGHT_UP_POLL_MILLIS } else { now };
                    }
                    Err(error) => {
                        // Expired iterators and transient errors: start again after what was read.
                        tracing::warn!(shard_id = self.shard_id, "GetRecords failed: {}", error_text(&error));
                        let restart = last_read.clone().map_or(start.clone(), IteratorStart::AfterSequenceNumber);
                        iterator = Some(self.shard_iterator(&restart).await?);
                        next_read = now + CAUGHT_UP_POLL_MILLIS;
                    }
                }
            }

            let mut wake: Option<Millis> = None;
            loop {
                match machine.poll(now_millis()) {
                    Step::Invoke(invocation) => {
                        let event = kinesis_event(&source, &invocation.records)
                            .map_err(|e| format!("building the event: {e}"))
                            .and_then(|event| serde_json::to_vec(&event).map_err(|e| e.to_string()))?;
                        let lambda = self.clients.lambda.clone();
                        let function = self.mapping.function_arn.clone();
                        let id = invocation.id;
                        in_flight.spawn(async move {
                            let (outcome, version) = invoke::invoke(&lambda, &function, event).await;
                            (id, outcome, version)
                        });
                    }
                    Step::Discard(discard) => {
                        let range = discard.record.batch.range();
                        tracing::warn!(
                            shard_id = self.shard_id,
                            start = range.start_sequence_number,
                            end = range.end_sequence_number,
                            condition = ?discard.record.request_context.condition,
                            "discarding a batch"
                        );
                        if let Some(arn) = &discard.destination
                            && let Err(error) = self.clients.destinations.send(arn, &discard.record).await
                        {
                            // A destination that cannot be reached does not stall the shard.
                            tracing::error!(shard_id = self.shard_id, "failure record lost: {error}");
                        }
                    }
                    Step::Checkpoint(sequence_number) => {
                        progress.checkpoint = Some(sequence_number);
                        self.save(&progress).await?;
                    }
                    Step::WaitUntil(at) => {
                        wake = Some(at);
                        break;
                    }
                    Step::Idle => break,
                }
            }
            let status = machine.status();
            let report = ShardReport {
                millis_behind_latest,
                retries_in_progress: status.retries_in_progress,
                pending_records: status.pending_records,
                in_flight: status.in_flight,
                discarded_batches: status.discarded_batches,
                last_result: last_result.to_owned(),
            };
            let due =
                reported.as_ref().is_none_or(|(at, last)| *last != report && now_millis() >= at + REPORT_EVERY_MILLIS);
            if due {
                // Status is best effort: a failed write must not stop the shard.
                if let Err(error) =
                    self.clients.checkpoints.report(&self.mapping.id, &self.shard_id, &report, now_millis()).await
                {
                    tracing::warn!(shard_id = self.shard_id, "{error}");
                }
                reported = Some((now_millis(), report));
            }
            if machine.is_drained() && in_flight.is_empty() {
                progress.finished = true;
                self.save(&progress).await?;
                return Ok(());
            }

            let now = now_millis();
            let read_at = iterator.is_some().then_some(next_read);
            let until = [wake, read_at].into_iter().flatten().min().unwrap_or(now + CAUGHT_UP_POLL_MILLIS);
            let sleep = Duration::from_millis(until.saturating_sub(now).max(0) as u64);
            tokio::select! {
                done = in_flight.join_next(), if !in_flight.is_empty() => {
                    // A lost invocation task would block its lane: restart the shard instead
                    // (from its checkpoint, so the batch is redelivered).
                    let (id, outcome, version) = match done {
                        Some(Ok(completed)) => completed,
                        Some(Err(error)) => return Err(format!("an invocation task failed: {error}")),
                        None => continue,
                    };
                    if let Some(version) = version {
                        machine.set_executed_version(&version);
                    }
                    last_result = match &outcome {
                        Outcome::Returned { reported } if reported.is_empty() || !settings.report_batch_item_failures => {
                            "OK"
                        }
                        Outcome::Returned { .. } => "PROBLEM: Batch item failures reported",
                        Outcome::FunctionError(_) => "PROBLEM: Function call failed",
                        Outcome::NotInvoked(_) => "PROBLEM: Invoke failed before the function ran",
                    };
                    machine.complete(id, outcome, now_millis()).map_err(|e| e.to_string())?;
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                in_flight.abort_all();
                return Ok(());
            }
        }
    }

    async fn shard_iterator(&self, start: &IteratorStart) -> Result<String, String> {
        let request = self.clients.kinesis.get_shard_iterator().stream_name(&self.stream_name).shard_id(&self.shard_id);
        let request = match start {
            IteratorStart::AfterSequenceNumber(sequence_number) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence_number),
            IteratorStart::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            IteratorStart::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            IteratorStart::AtTimestamp(millis) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_smithy_types::DateTime::from_millis(*millis)),
        };
        request
            .send()
            .await
            .map_err(|e| format!("GetShardIterator for {}: {}", self.shard_id, error_text(&e)))?
            .shard_iterator
            .ok_or_else(|| format!("GetShardIterator for {} returned no iterator", self.shard_id))
    }

    async fn save(&self, progress: &ShardProgress) -> Result<(), String> {
        self.clients.checkpoints.save(&self.mapping.id, &self.shard_id, progress, now_millis()).await
    }
}

fn kinesis_input(record: &aws_sdk_kinesis::types::Record) -> KinesisInput {
    KinesisInput {
        sequence_number: record.sequence_number().to_owned(),
        partition_key: record.partition_key().to_owned(),
        data: record.data().as_ref().to_vec(),
        arrival_millis: record.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or_default(),
        kms_encrypted: record.encryption_type() == Some(&EncryptionType::Kms),
    }
}
