//! One lane of a shard: the serial rules of a shard (one batch at a time, in order, blocked while
//! it fails) applied to the records whose ordering key hashes to this lane. With
//! `ParallelizationFactor` 1 the shard has one lane.

use std::collections::VecDeque;

use crate::record::{Millis, Record};
use crate::settings::MappingSettings;

/// Lambda's synchronous invoke payload limit (spec P4).
const MAX_PAYLOAD_BYTES: u64 = 6 * 1024 * 1024;
/// What a record adds around its base64 data: keys, ARNs, ids. An estimate, generous on purpose.
const RECORD_ENVELOPE_BYTES: u64 = 600;

/// A record and its place in the shard.
#[derive(Debug, Clone)]
pub(crate) struct Slot<R> {
    pub position: u64,
    pub record: R,
    /// Start of the tumbling window the record belongs to, when the mapping has windows.
    pub window: Option<Millis>,
}

#[derive(Debug)]
pub(crate) struct Lane<R> {
    /// Records not yet taken into a batch, in shard order.
    pub queue: VecDeque<Slot<R>>,
    pub work: Option<Work<R>>,
    /// When the lane last finished a batch: the batching window runs from here (spec P4).
    pub free_since: Millis,
}

/// The batch a lane is working on, and what is left of a bisected one.
#[derive(Debug)]
pub(crate) struct Work<R> {
    pub batch: Vec<Slot<R>>,
    /// Right halves still to do, the next one on top.
    pub halves: Vec<Vec<Slot<R>>>,
    /// Retries of this exact batch after a failure in or from the function.
    pub retries: u32,
    /// Times this exact batch reached the function (`approximateInvokeCount`).
    pub invocations: u32,
    /// Attempts that never reached the function (throttles, 5xx), paced but not counted.
    pub not_invoked: u32,
    pub phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Ready { not_before: Millis },
    InFlight { invocation: u64 },
}

impl<R: Record> Lane<R> {
    pub(crate) fn new(now: Millis) -> Self {
        Self { queue: VecDeque::new(), work: None, free_since: now }
    }

    /// Takes the next batch from the queue if one is due: `BatchSize` records gathered, the
    /// payload limit reached, or the batching window over. Otherwise says when it will be. A
    /// batch never spans two tumbling windows.
    pub(crate) fn form_batch(&mut self, settings: &MappingSettings, now: Millis) -> Result<(), Option<Millis>> {
        let Some(window) = self.queue.front().map(|slot| slot.window) else {
            return Err(None);
        };
        let mut count = 0;
        let mut payload = 0;
        let same_window = self.queue.iter().take_while(|slot| slot.window == window);
        for slot in same_window.take(settings.batch_size as usize) {
            let size = slot.record.size_bytes().div_ceil(3) * 4 + RECORD_ENVELOPE_BYTES;
            // A record too large on its own still goes alone; Lambda's answer then decides.
            if count > 0 && payload + size > MAX_PAYLOAD_BYTES {
                break;
            }
            payload += size;
            count += 1;
        }
        let full = count == settings.batch_size as usize || count < self.queue.len();
        let window_end = self.free_since + i64::from(settings.batching_window_seconds) * 1000;
        if !full && settings.batching_window_seconds > 0 && now < window_end {
            return Err(Some(window_end));
        }
        let batch = self.queue.drain(..count).collect();
        self.work = Some(Work::fresh(batch, now));
        Ok(())
    }
}

impl<R> Work<R> {
    pub(crate) fn fresh(batch: Vec<Slot<R>>, now: Millis) -> Self {
        Self {
            batch,
            halves: Vec::new(),
            retries: 0,
            invocations: 0,
            not_invoked: 0,
            phase: Phase::Ready { not_before: now },
        }
    }

    /// Makes `batch` the current batch with fresh counters: a different batch from the one the
    /// counters described (a half, a remainder after a partial response, the unexpired rest).
    pub(crate) fn restart_with(&mut self, batch: Vec<Slot<R>>, now: Millis) {
        self.batch = batch;
        self.retries = 0;
        self.invocations = 0;
        self.not_invoked = 0;
        self.phase = Phase::Ready { not_before: now };
    }
}
