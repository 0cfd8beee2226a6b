//! The per-shard state machine. It never reads a clock or does I/O: every call takes `now`, the
//! runner feeds it records and outcomes, and it answers with [`Step`]s. See the crate docs for the
//! loop that drives it.

use std::collections::VecDeque;

use labs_core::{partition, sequence};
use thiserror::Error;

use crate::failure::{self, Condition, FailureRecord, LastAnswer};
use crate::lane::{Lane, Phase, Slot, Work};
use crate::ledger::Ledger;
use crate::outcome::{ItemFailures, ItemIdentifier, Outcome};
use crate::record::{Millis, Record, ShardContext};
use crate::settings::{MappingSettings, Pacing};

/// Identifies one invocation so its outcome can be matched to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InvocationId(pub u64);

/// A batch to send to the function now.
#[derive(Debug, Clone)]
pub struct Invocation<R> {
    pub id: InvocationId,
    /// The lane (0..ParallelizationFactor) the batch belongs to.
    pub lane: usize,
    /// The records, in shard order, all from this shard.
    pub records: Vec<R>,
    /// 1 for the first invocation of this exact batch, then 2, 3, ...
    pub attempt: u32,
}

/// A batch the machine gave up on. Send `record` to `destination` when there is one; either way
/// the records are skipped (spec E5), and the following [`Step::Checkpoint`] moves past them.
#[derive(Debug, Clone, PartialEq)]
pub struct Discard {
    pub record: FailureRecord,
    pub destination: Option<String>,
}

/// What the runner should do next.
#[derive(Debug, Clone)]
pub enum Step<R> {
    /// Invoke the function with this batch, then call [`ShardMachine::complete`].
    Invoke(Invocation<R>),
    /// Send a failure record (before the checkpoint that follows it).
    Discard(Box<Discard>),
    /// Store this sequence number as the shard's checkpoint: every record up to it is finished.
    Checkpoint(String),
    /// Nothing to do before this instant, unless records arrive or an invocation completes.
    WaitUntil(Millis),
    /// Nothing to do until records arrive or an invocation completes.
    Idle,
}

/// A completion the machine cannot place.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CompletionError {
    #[error("invocation {0} is not in flight on this shard")]
    UnknownInvocation(u64),
}

/// Counters for `labs status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStatus {
    /// Records read and not yet behind the checkpoint.
    pub pending_records: usize,
    pub in_flight: usize,
    /// The highest retry count among the lanes' current batches.
    pub retries_in_progress: u32,
    /// Batches given up on (sent to the destination, or skipped without one).
    pub discarded_batches: u64,
}

/// One shard of one mapping.
#[derive(Debug)]
pub struct ShardMachine<R> {
    settings: MappingSettings,
    pacing: Pacing,
    shard: ShardContext,
    executed_version: String,
    lanes: Vec<Lane<R>>,
    ledger: Ledger,
    effects: VecDeque<Step<R>>,
    /// The newest sequence number offered (or the checkpoint resumed from).
    last_offered: Option<String>,
    next_invocation: u64,
    last_served_lane: usize,
    shard_ended: bool,
    discarded_batches: u64,
}

impl<R: Record> ShardMachine<R> {
    /// A machine for `shard`, resuming after `checkpoint` if there is one.
    pub fn new(
        settings: MappingSettings,
        pacing: Pacing,
        shard: ShardContext,
        checkpoint: Option<String>,
        now: Millis,
    ) -> Self {
        let lanes = (0..settings.parallelization_factor.max(1)).map(|_| Lane::new(now)).collect();
        Self {
            settings,
            pacing,
            shard,
            executed_version: "$LATEST".to_owned(),
            lanes,
            ledger: Ledger::default(),
            effects: VecDeque::new(),
            last_offered: checkpoint,
            next_invocation: 0,
            last_served_lane: 0,
            shard_ended: false,
            discarded_batches: 0,
        }
    }

    /// The version failure records name in `executedVersion` (the Invoke response's
    /// `ExecutedVersion`; `$LATEST` until told otherwise).
    pub fn set_executed_version(&mut self, version: &str) {
        version.clone_into(&mut self.executed_version);
    }

    /// Adds records read from the shard, in shard order. Records at or before the newest one
    /// already offered (or the checkpoint) are ignored, so re-reading is harmless.
    pub fn offer(&mut self, records: impl IntoIterator<Item = R>) {
        for record in records {
            let newer = self
                .last_offered
                .as_deref()
                .is_none_or(|last| sequence::compare(record.sequence_number(), last).is_gt());
            if !newer {
                continue;
            }
            self.last_offered = Some(record.sequence_number().to_owned());
            let position = self.ledger.push(record.sequence_number());
            let lane = self.lane_of(record.ordering_key());
            self.lanes[lane].queue.push_back(Slot { position, record });
        }
    }

    /// The shard is closed (resharding) and every record has been offered.
    pub fn end_of_shard(&mut self) {
        self.shard_ended = true;
    }

    /// Closed and every record finished: the runner may mark it done and start its children.
    pub fn is_drained(&self) -> bool {
        self.shard_ended && self.ledger.len() == 0 && self.effects.is_empty()
    }

    /// Records offered and not yet behind the checkpoint: the runner stops reading above a bound.
    pub fn pending_records(&self) -> usize {
        self.ledger.len()
    }

    pub fn status(&self) -> ShardStatus {
        let works = self.lanes.iter().filter_map(|lane| lane.work.as_ref());
        ShardStatus {
            pending_records: self.ledger.len(),
            in_flight: works.clone().filter(|work| matches!(work.phase, Phase::InFlight { .. })).count(),
            retries_in_progress: works.map(|work| work.retries).max().unwrap_or(0),
            discarded_batches: self.discarded_batches,
        }
    }

    /// The next thing to do at `now`. Call it until it answers `WaitUntil` or `Idle`.
    pub fn poll(&mut self, now: Millis) -> Step<R> {
        loop {
            if let Some(step) = self.effects.pop_front() {
                return step;
            }
            let mut wake: Option<Millis> = None;
            let mut progressed = false;
            // Start after the lane served last, so a lane whose batches complete at once cannot
            // starve the others (and the checkpoint, which waits for the slowest lane).
            let (count, start) = (self.lanes.len(), self.last_served_lane);
            for lane in (1..=count).map(|offset| (start + offset) % count) {
                match self.step_lane(lane, now) {
                    LaneStep::Invoke(invocation) => {
                        self.last_served_lane = lane;
                        return Step::Invoke(invocation);
                    }
                    LaneStep::Progressed => progressed = true,
                    LaneStep::WaitUntil(at) => wake = Some(wake.map_or(at, |w| w.min(at))),
                    LaneStep::Idle => {}
                }
            }
            if !progressed {
                return wake.map_or(Step::Idle, Step::WaitUntil);
            }
        }
    }

    /// Applies the outcome of an invocation the machine asked for.
    pub fn complete(&mut self, id: InvocationId, outcome: Outcome, now: Millis) -> Result<(), CompletionError> {
        let lane = self
            .lanes
            .iter()
            .position(|lane| lane.work.as_ref().is_some_and(|work| work.phase == Phase::InFlight { invocation: id.0 }))
            .ok_or(CompletionError::UnknownInvocation(id.0))?;
        match outcome {
            Outcome::NotInvoked(_) => {
                // Spec E2: not a retry; only the records' age ends it.
                let pacing = self.pacing;
                let work = self.work_mut(lane);
                work.not_invoked += 1;
                work.phase = Phase::Ready { not_before: now + pacing.retry_delay(work.not_invoked) };
            }
            Outcome::FunctionError(_) => {
                let bisect = self.settings.bisect_on_function_error;
                let work = self.work_mut(lane);
                work.invocations += 1;
                if bisect && work.batch.len() > 1 {
                    // Spec E6: splitting consumes no retry; the left half goes first.
                    let right = work.batch.split_off(work.batch.len() / 2);
                    let left = std::mem::take(&mut work.batch);
                    work.halves.push(right);
                    work.restart_with(left, now);
                } else {
                    self.fail_batch(lane, LastAnswer::FunctionError, now);
                }
            }
            Outcome::Returned { reported } => {
                self.work_mut(lane).invocations += 1;
                if !self.settings.report_batch_item_failures || reported.is_empty() {
                    let batch = std::mem::take(&mut self.work_mut(lane).batch);
                    self.finish(batch.iter().map(|slot| slot.position));
                    self.next_half_or_free(lane, now);
                } else {
                    match first_failed_index(&self.work_mut(lane).batch, &reported) {
                        Some(index) if index > 0 => {
                            // Spec R3: everything before the lowest failure is done; the rest is
                            // a new batch (R6: its retry count starts again).
                            let work = self.work_mut(lane);
                            let rest = work.batch.split_off(index);
                            let done = std::mem::replace(&mut work.batch, rest);
                            let rest = std::mem::take(&mut work.batch);
                            work.restart_with(rest, now);
                            self.finish(done.iter().map(|slot| slot.position));
                        }
                        // The first record failed (no progress: a retry) or the response named
                        // something not in the batch (spec R5: the whole batch failed).
                        _ => self.fail_batch(lane, LastAnswer::FailingResponse, now),
                    }
                }
            }
        }
        Ok(())
    }

    fn step_lane(&mut self, lane: usize, now: Millis) -> LaneStep<R> {
        if self.lanes[lane].work.is_none() {
            match self.lanes[lane].form_batch(&self.settings, now) {
                Ok(()) => {}
                Err(Some(at)) => return LaneStep::WaitUntil(at),
                Err(None) => return LaneStep::Idle,
            }
        }
        let age_limit = self.settings.record_age_limit;
        let work = self.work_mut(lane);
        let not_before = match work.phase {
            Phase::InFlight { .. } => return LaneStep::Idle,
            Phase::Ready { not_before } => not_before,
        };
        if now < not_before {
            return LaneStep::WaitUntil(not_before);
        }
        // Spec E4: expired records are discarded before invoking; the rest is still delivered.
        let expired =
            work.batch.iter().take_while(|slot| age_limit.is_expired(slot.record.arrival_millis(), now)).count();
        if expired > 0 {
            let invocations = work.invocations;
            let rest = work.batch.split_off(expired);
            let gone = std::mem::replace(&mut work.batch, rest);
            if work.batch.is_empty() {
                self.next_half_or_free(lane, now);
            } else {
                let rest = std::mem::take(&mut work.batch);
                work.restart_with(rest, now);
            }
            self.discard(&gone, Condition::RecordAgeExceeded, LastAnswer::None, invocations, now);
            return LaneStep::Progressed;
        }
        let invocation = self.next_invocation;
        self.next_invocation += 1;
        let work = self.work_mut(lane);
        work.phase = Phase::InFlight { invocation };
        LaneStep::Invoke(Invocation {
            id: InvocationId(invocation),
            lane,
            records: work.batch.iter().map(|slot| slot.record.clone()).collect(),
            attempt: work.invocations + 1,
        })
    }

    /// The batch failed in or because of the function: retry it if the limit allows, else give
    /// up on it (spec E1, E3).
    fn fail_batch(&mut self, lane: usize, answer: LastAnswer, now: Millis) {
        let (limit, pacing) = (self.settings.retry_limit, self.pacing);
        let work = self.work_mut(lane);
        if limit.allows_another(work.retries) {
            work.retries += 1;
            work.phase = Phase::Ready { not_before: now + pacing.retry_delay(work.retries) };
            return;
        }
        let invocations = work.invocations;
        let batch = std::mem::take(&mut work.batch);
        self.next_half_or_free(lane, now);
        self.discard(&batch, Condition::RetryAttemptsExhausted, answer, invocations, now);
    }

    fn discard(&mut self, batch: &[Slot<R>], condition: Condition, answer: LastAnswer, invocations: u32, now: Millis) {
        let records: Vec<R> = batch.iter().map(|slot| slot.record.clone()).collect();
        let record =
            failure::failure_record(&self.shard, &records, condition, answer, invocations, &self.executed_version, now);
        self.discarded_batches += 1;
        self.effects.push_back(Step::Discard(Box::new(Discard {
            record,
            destination: self.settings.on_failure_destination.clone(),
        })));
        self.finish(batch.iter().map(|slot| slot.position));
    }

    /// Marks records finished and queues a checkpoint if the finished prefix grew.
    fn finish(&mut self, positions: impl Iterator<Item = u64>) {
        for position in positions {
            self.ledger.finish(position);
        }
        if let Some(checkpoint) = self.ledger.advance() {
            self.effects.push_back(Step::Checkpoint(checkpoint));
        }
    }

    /// The current batch is finished: continue with the next bisected half, or free the lane.
    fn next_half_or_free(&mut self, lane: usize, now: Millis) {
        let state = &mut self.lanes[lane];
        match state.work.as_mut().and_then(|work| work.halves.pop().map(|half| (work, half))) {
            Some((work, half)) => work.restart_with(half, now),
            None => {
                state.work = None;
                state.free_since = now;
            }
        }
    }

    fn work_mut(&mut self, lane: usize) -> &mut Work<R> {
        self.lanes[lane].work.as_mut().expect("only called for a lane with a current batch")
    }

    fn lane_of(&self, ordering_key: &str) -> usize {
        let lanes = self.lanes.len() as u128;
        (partition::hash_key(ordering_key) % lanes) as usize
    }
}

enum LaneStep<R> {
    Invoke(Invocation<R>),
    Progressed,
    WaitUntil(Millis),
    Idle,
}

/// The index of the lowest reported failure, or `None` if any identifier is malformed or names a
/// record outside the batch (spec R5).
fn first_failed_index<R: Record>(batch: &[Slot<R>], reported: &ItemFailures) -> Option<usize> {
    let mut lowest: Option<usize> = None;
    for identifier in &reported.0 {
        let ItemIdentifier::SequenceNumber(sequence_number) = identifier else {
            return None;
        };
        let index =
            batch.iter().position(|slot| sequence::compare(slot.record.sequence_number(), sequence_number).is_eq())?;
        lowest = Some(lowest.map_or(index, |low| low.min(index)));
    }
    lowest
}
