//! One shard: read records, drive the [`ShardMachine`], do what it says.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::event::EventSource;
use crate::outcome::Outcome;
use crate::position::{IteratorStart, ShardHistory, iterator_start};
use crate::record::{Millis, Record, ShardContext, SourceKind};
use crate::runner::checkpoints::{ShardProgress, ShardReport, WindowReport};
use crate::runner::source::StreamSource;
use crate::runner::{RunnerClients, StreamMapping, invoke, now_millis};
use crate::shard::{InvocationId, ShardMachine, Step};
use crate::window::WindowState;

/// How often a caught-up shard is polled. Lambda polls Kinesis once a second and DynamoDB four
/// times (spec P3), because a Kinesis shard allows 5 GetRecords calls a second across all its
/// consumers. The runner only runs against emulators, which have no such limit, so it polls both
/// every 200 ms: a record reaches the function in a few hundred milliseconds instead of up to a
/// second later. Only latency differs; what is delivered, and in which order, does not.
fn caught_up_poll_millis(kind: SourceKind) -> Millis {
    match kind {
        SourceKind::Kinesis | SourceKind::DynamoDbStreams => 200,
    }
}
/// Stop reading while this many batches per lane wait: the function sets the pace.
const BUFFERED_BATCHES_PER_LANE: usize = 4;
/// How often a shard's status is written for `labs status`, at most.
const REPORT_EVERY_MILLIS: Millis = 2_000;

pub(crate) struct ShardLoop<S> {
    pub clients: RunnerClients,
    pub source: S,
    pub mapping: Arc<StreamMapping>,
    pub shard_id: String,
    pub history: ShardHistory,
}

impl<S: StreamSource> ShardLoop<S> {
    /// Returns `Ok` when the shard is drained (closed and every record finished) or on stop.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let settings = &self.mapping.settings;
        let poll_every = caught_up_poll_millis(S::KIND);
        let context = ShardContext {
            kind: S::KIND,
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
        let mut machine: ShardMachine<S::Record> =
            ShardMachine::new(settings.clone(), self.mapping.pacing, context, checkpoint.clone(), now_millis());
        let buffer_bound =
            settings.batch_size as usize * settings.parallelization_factor as usize * BUFFERED_BATCHES_PER_LANE;
        let start = iterator_start(settings, &self.history);
        let mut progress = ShardProgress { checkpoint, finished: false, latest_since: self.history.latest_since };
        if start == IteratorStart::Latest && S::KIND == SourceKind::Kinesis {
            // Remember when reading began, so a restart before the first checkpoint skips nothing.
            progress.latest_since = Some(now_millis());
            self.save(&progress).await?;
        }
        let mut iterator = Some(self.source.shard_iterator(&self.shard_id, &start).await?);
        let mut last_read: Option<String> = progress.checkpoint.clone();
        let mut next_read: Millis = 0;
        let mut in_flight: JoinSet<(InvocationId, Outcome, Option<String>, Option<WindowState>)> = JoinSet::new();
        let mut millis_behind_latest: Option<i64> = None;
        let mut last_result = "No records processed";
        let mut reported: Option<(Millis, (ShardReport, Option<WindowReport>))> = None;
        let windowed = settings.tumbling_window_seconds > 0;

        loop {
            let now = now_millis();
            if let Some(current) = iterator.clone()
                && now >= next_read
                && machine.buffered_records() < buffer_bound
            {
                match self.source.get_records(&current).await {
                    Ok(page) => {
                        if let Some(last) = page.records.last() {
                            last_read = Some(last.sequence_number().to_owned());
                        }
                        millis_behind_latest = page.millis_behind_latest;
                        let caught_up = page.records.is_empty() || millis_behind_latest == Some(0);
                        machine.offer(page.records);
                        iterator = page.next_iterator;
                        if iterator.is_none() {
                            machine.end_of_shard();
                        }
                        next_read = if caught_up { now + poll_every } else { now };
                    }
                    Err(error) => {
                        // Expired iterators and transient errors: start again after what was read.
                        tracing::warn!(shard_id = self.shard_id, "{error}");
                        let restart = last_read.clone().map_or(start.clone(), IteratorStart::AfterSequenceNumber);
                        iterator = Some(self.source.shard_iterator(&self.shard_id, &restart).await?);
                        next_read = now + poll_every;
                    }
                }
            }

            let mut wake: Option<Millis> = None;
            loop {
                match machine.poll(now_millis()) {
                    Step::Invoke(invocation) => {
                        let event = S::event(&source, &invocation.records, invocation.window.as_ref())?;
                        let lambda = self.clients.lambda.clone();
                        let function = self.mapping.function_arn.clone();
                        let id = invocation.id;
                        in_flight.spawn(async move {
                            let (outcome, version, state) = invoke::invoke(&lambda, &function, event).await;
                            (id, outcome, version, state)
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
            let window = status.open_window.as_ref().map(WindowReport::from);
            let report = ShardReport {
                millis_behind_latest,
                retries_in_progress: status.retries_in_progress,
                pending_records: status.pending_records,
                in_flight: status.in_flight,
                discarded_batches: status.discarded_batches,
                last_result: last_result.to_owned(),
            };
            let due = reported.as_ref().is_none_or(|(at, last)| {
                *last != (report.clone(), window.clone()) && now_millis() >= at + REPORT_EVERY_MILLIS
            });
            if due {
                // Status is best effort: a failed write must not stop the shard.
                let table = &self.clients.checkpoints;
                if let Err(error) = table
                    .report_with_window(&self.mapping.id, &self.shard_id, &report, window.as_ref(), now_millis())
                    .await
                {
                    tracing::warn!(shard_id = self.shard_id, "{error}");
                }
                reported = Some((now_millis(), (report, window)));
            }
            if machine.is_drained() && in_flight.is_empty() {
                progress.finished = true;
                self.save(&progress).await?;
                return Ok(());
            }

            let now = now_millis();
            let read_at = iterator.is_some().then_some(next_read);
            let until = [wake, read_at].into_iter().flatten().min().unwrap_or(now + poll_every);
            let sleep = Duration::from_millis(until.saturating_sub(now).max(0) as u64);
            tokio::select! {
                done = in_flight.join_next(), if !in_flight.is_empty() => {
                    // A lost invocation task would block its lane: restart the shard instead
                    // (from its checkpoint, so the batch is redelivered).
                    let (id, outcome, version, state) = match done {
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
                    if windowed && state.is_none() && matches!(outcome, Outcome::Returned { .. }) {
                        last_result = "PROBLEM: Window response without state";
                    }
                    machine.complete_with_state(id, outcome, state, now_millis()).map_err(|e| e.to_string())?;
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

    async fn save(&self, progress: &ShardProgress) -> Result<(), String> {
        self.clients.checkpoints.save(&self.mapping.id, &self.shard_id, progress, now_millis()).await
    }
}
