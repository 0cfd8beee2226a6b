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
use crate::window::{ClosingKind, OpenWindowStatus, WindowInvocation, WindowState, Windows};

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
    /// With tumbling windows: the window, its state so far, and whether this is its final (or
    /// early-termination) invocation, which carries no records.
    pub window: Option<WindowInvocation>,
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
    /// Records no filter matched: checkpointed past, never delivered (spec F2).
    pub filtered_records: u64,
    /// The tumbling window under way, if any.
    pub open_window: Option<OpenWindowStatus>,
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
    filtered_records: u64,
    /// Tumbling windows, when the mapping has them (then the shard has one lane).
    windows: Option<Windows>,
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
        // A window's state is carried from one invocation to the next, so a shard with windows
        // runs one batch at a time whatever the ParallelizationFactor.
        let windows = (settings.tumbling_window_seconds > 0).then(|| Windows::new(settings.tumbling_window_seconds));
        let lane_count = if windows.is_some() { 1 } else { settings.parallelization_factor.max(1) };
        let lanes = (0..lane_count).map(|_| Lane::new(now)).collect();
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
            filtered_records: 0,
            windows,
        }
    }

    /// How long a window with nothing new waits past its end before its final invocation
    /// (default [`crate::WINDOW_QUIET_MILLIS`]).
    pub fn set_window_quiet_millis(&mut self, millis: Millis) {
        if let Some(windows) = self.windows.as_mut() {
            windows.quiet = millis.max(0);
        }
    }

    /// The version failure records name in `executedVersion` (the Invoke response's
    /// `ExecutedVersion`; `$LATEST` until told otherwise).
    pub fn set_executed_version(&mut self, version: &str) {
        version.clone_into(&mut self.executed_version);
    }

    /// Adds records read from the shard, in shard order. Records at or before the newest one
    /// already offered (or the checkpoint) are ignored, so re-reading is harmless. A record no
    /// filter matches is finished at once: the checkpoint moves past it (spec F2).
    pub fn offer(&mut self, records: impl IntoIterator<Item = R>) {
        let mut filtered = Vec::new();
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
            let criteria = &self.settings.filter_criteria;
            if !criteria.is_empty() && !criteria.matches(&record.filter_view()) {
                filtered.push(position);
                continue;
            }
            let window = self.windows.as_mut().map(|windows| windows.assign(record.arrival_millis()));
            let lane = self.lane_of(record.ordering_key());
            self.lanes[lane].queue.push_back(Slot { position, record, window });
        }
        if !filtered.is_empty() {
            self.filtered_records += filtered.len() as u64;
            self.finish(filtered.into_iter());
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

    /// Records read and not yet delivered successfully or given up on: those waiting for a batch
    /// and those in the current batches. Unlike [`ShardMachine::pending_records`] it leaves out
    /// what an open tumbling window holds back from the checkpoint, so the runner's read bound
    /// cannot stall a long window.
    pub fn buffered_records(&self) -> usize {
        self.lanes
            .iter()
            .map(|lane| {
                let work = lane
                    .work
                    .as_ref()
                    .map_or(0, |work| work.batch.len() + work.halves.iter().map(Vec::len).sum::<usize>());
                lane.queue.len() + work
            })
            .sum()
    }

    pub fn status(&self) -> ShardStatus {
        let works = self.lanes.iter().filter_map(|lane| lane.work.as_ref());
        let closing_in_flight = self
            .windows
            .as_ref()
            .and_then(|windows| windows.closing.as_ref())
            .is_some_and(|closing| matches!(closing.phase, Phase::InFlight { .. }));
        ShardStatus {
            pending_records: self.ledger.len(),
            in_flight: works.clone().filter(|work| matches!(work.phase, Phase::InFlight { .. })).count()
                + usize::from(closing_in_flight),
            retries_in_progress: works.map(|work| work.retries).max().unwrap_or(0),
            discarded_batches: self.discarded_batches,
            filtered_records: self.filtered_records,
            open_window: self.windows.as_ref().and_then(Windows::status),
        }
    }

    /// The next thing to do at `now`. Call it until it answers `WaitUntil` or `Idle`.
    pub fn poll(&mut self, now: Millis) -> Step<R> {
        loop {
            if let Some(step) = self.effects.pop_front() {
                return step;
            }
            match self.step_window(now) {
                Some(LaneStep::Invoke(invocation)) => return Step::Invoke(invocation),
                Some(LaneStep::Progressed) => continue,
                Some(LaneStep::WaitUntil(at)) => return Step::WaitUntil(at),
                Some(LaneStep::Idle) => return Step::Idle,
                None => {}
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

    /// Applies the outcome of an invocation the machine asked for. With tumbling windows use
    /// [`ShardMachine::complete_with_state`]: here the response counts as one without `state`.
    pub fn complete(&mut self, id: InvocationId, outcome: Outcome, now: Millis) -> Result<(), CompletionError> {
        self.complete_with_state(id, outcome, None, now)
    }

    /// Applies the outcome of an invocation and the `state` its response carried
    /// ([`crate::response::window_state`]). Only tumbling windows read the state: there a
    /// response without one is a failed invocation (spec W4), and a partial response's state is
    /// taken with the records before its lowest failure.
    pub fn complete_with_state(
        &mut self,
        id: InvocationId,
        outcome: Outcome,
        state: Option<WindowState>,
        now: Millis,
    ) -> Result<(), CompletionError> {
        if let Some(windows) = self.windows.as_mut()
            && let Some(closing) = windows.closing.as_mut()
            && closing.phase == (Phase::InFlight { invocation: id.0 })
        {
            let reported_nothing =
                |reported: &ItemFailures| reported.is_empty() || !self.settings.report_batch_item_failures;
            let succeeded =
                state.is_some() && matches!(&outcome, Outcome::Returned { reported } if reported_nothing(reported));
            if !matches!(outcome, Outcome::NotInvoked(_)) {
                closing.invocations += 1;
            }
            if succeeded {
                let kind = closing.kind;
                windows.closing = None;
                if kind == ClosingKind::Final
                    && let Some(open) = windows.open.take()
                {
                    self.finish(open.held.into_iter());
                }
            } else {
                // Spec W5: a failed final invocation stops the shard until it succeeds.
                closing.failures += 1;
                closing.phase = Phase::Ready { not_before: now + self.pacing.retry_delay(closing.failures) };
            }
            return Ok(());
        }
        let windowed = self.windows.is_some();
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
            Outcome::Returned { .. } if windowed && state.is_none() => {
                // Spec W4: a window's response must carry `state`.
                self.work_mut(lane).invocations += 1;
                self.fail_batch(lane, LastAnswer::FailingResponse, now);
            }
            Outcome::Returned { reported } => {
                self.work_mut(lane).invocations += 1;
                if !self.settings.report_batch_item_failures || reported.is_empty() {
                    self.adopt_state(state, now);
                    let batch = std::mem::take(&mut self.work_mut(lane).batch);
                    self.settle(batch.iter().map(|slot| slot.position));
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
                            self.adopt_state(state, now);
                            self.settle(done.iter().map(|slot| slot.position));
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

    /// The tumbling window's own steps, before the lane's: a final or early-termination
    /// invocation under way or due, or the wait for the quiet period. `None`: the lane goes on.
    fn step_window(&mut self, now: Millis) -> Option<LaneStep<R>> {
        let ended = self.shard_ended;
        let windows = self.windows.as_mut()?;
        if let Some(closing) = windows.closing.as_mut() {
            return Some(match closing.phase {
                Phase::InFlight { .. } => LaneStep::Idle,
                Phase::Ready { not_before } if now < not_before => LaneStep::WaitUntil(not_before),
                Phase::Ready { .. } => {
                    let invocation = self.next_invocation;
                    self.next_invocation += 1;
                    closing.phase = Phase::InFlight { invocation };
                    let open = windows.open.as_ref().expect("a closing window is open");
                    LaneStep::Invoke(Invocation {
                        id: InvocationId(invocation),
                        lane: 0,
                        records: Vec::new(),
                        attempt: closing.invocations + 1,
                        window: Some(WindowInvocation {
                            start: open.start,
                            end: open.end,
                            state: closing.state.clone(),
                            is_final: closing.kind == ClosingKind::Final,
                            terminated_early: closing.kind == ClosingKind::Early,
                        }),
                    })
                }
            });
        }
        let open = windows.open.as_ref()?;
        let lane = &self.lanes[0];
        if lane.work.is_some() {
            return None;
        }
        let quiet_end = open.end + windows.quiet;
        let over = match lane.queue.front() {
            Some(slot) => slot.window != Some(open.start),
            None => ended || now >= quiet_end,
        };
        if over {
            windows.close(now);
            return Some(LaneStep::Progressed);
        }
        lane.queue.is_empty().then_some(LaneStep::WaitUntil(quiet_end))
    }

    fn step_lane(&mut self, lane: usize, now: Millis) -> LaneStep<R> {
        if self.lanes[lane].work.is_none() {
            match self.lanes[lane].form_batch(&self.settings, now) {
                Ok(()) => {}
                Err(Some(at)) => return LaneStep::WaitUntil(at),
                Err(None) => return LaneStep::Idle,
            }
            let first_window = self.work_mut(lane).batch.first().and_then(|slot| slot.window);
            if let (Some(windows), Some(start)) = (self.windows.as_mut(), first_window)
                && windows.open.is_none()
            {
                windows.open(start);
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
        let window = self.windows.as_ref().and_then(|windows| windows.open.as_ref()).map(|open| WindowInvocation {
            start: open.start,
            end: open.end,
            state: open.state.clone(),
            is_final: false,
            terminated_early: false,
        });
        let work = self.work_mut(lane);
        work.phase = Phase::InFlight { invocation };
        LaneStep::Invoke(Invocation {
            id: InvocationId(invocation),
            lane,
            records: work.batch.iter().map(|slot| slot.record.clone()).collect(),
            attempt: work.invocations + 1,
            window,
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
        self.settle(batch.iter().map(|slot| slot.position));
    }

    /// A batch's records are done: finished now, or, inside a tumbling window, once the
    /// window's final invocation succeeds (spec W5).
    fn settle(&mut self, positions: impl Iterator<Item = u64>) {
        match self.windows.as_mut().and_then(|windows| windows.open.as_mut()) {
            Some(open) => open.held.extend(positions),
            None => self.finish(positions),
        }
    }

    /// Takes the state a successful (or partly successful) window invocation returned.
    fn adopt_state(&mut self, state: Option<WindowState>, now: Millis) {
        if let (Some(windows), Some(state)) = (self.windows.as_mut(), state) {
            windows.adopt(state, now);
        }
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
