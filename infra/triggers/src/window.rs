//! Tumbling windows (`TumblingWindowInSeconds`, spec section 5): a shard's records grouped by
//! arrival time into windows aligned to the epoch, each with a `state` the function returns and
//! gets back on its next invocation in the window.
//!
//! The runner's choices where AWS documents none (spec section 9 item 7):
//!
//! - A record's window is the aligned window of its arrival time, but never one that is already
//!   closed or older than the previous record's: each record belongs to exactly one window (W7).
//! - A window is over when a record of a later window has been read, when the shard ends (W6), or
//!   after a quiet period: [`WINDOW_QUIET_MILLIS`] past its end with nothing new (AWS waits up to
//!   about 2 minutes; 3 s keeps a lab responsive while still covering a 1 s poll).
//! - Its end is a separate, final invocation with no records (`"Records": []`), the state so far
//!   and `isFinalInvokeForWindow: true`, sent once every batch of the window is finished. It is
//!   retried (paced) until it succeeds, and blocks the shard meanwhile (W5).
//! - A response whose `state` exceeds 1 MB ends the window early: an invocation with no records,
//!   that state and `isWindowTerminatedEarly: true`; the window then continues with `{}`.
//! - A window's records are checkpointed only after its final invocation succeeds (W5), so a
//!   restart redelivers the open window from its start with fresh state, never half of it.

use serde_json::{Map, Value};

use crate::lane::Phase;
use crate::record::Millis;

/// What the function carries from one invocation of a window to the next: a JSON object (the
/// AWS libraries type it as a string map; values are passed on as the function returned them).
pub type WindowState = Map<String, Value>;

/// Above this (the state's JSON size) the window ends early (W3).
pub const MAX_WINDOW_STATE_BYTES: usize = 1024 * 1024;

/// How long after its end a window with nothing new waits before its final invocation.
pub const WINDOW_QUIET_MILLIS: Millis = 3_000;

/// The window properties of an invocation: the event's `window`, `state`,
/// `isFinalInvokeForWindow` and `isWindowTerminatedEarly`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowInvocation {
    pub start: Millis,
    pub end: Millis,
    pub state: WindowState,
    pub is_final: bool,
    pub terminated_early: bool,
}

/// A shard's open window, for `labs status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenWindowStatus {
    pub start: Millis,
    pub end: Millis,
    /// Records of the window delivered (or discarded) so far, held back from the checkpoint.
    pub records: usize,
    /// JSON size of the state so far.
    pub state_bytes: usize,
    /// Its final (or early-termination) invocation is under way.
    pub closing: bool,
}

/// JSON size of a state.
pub fn state_bytes(state: &WindowState) -> usize {
    serde_json::to_vec(state).map_or(0, |bytes| bytes.len())
}

#[derive(Debug)]
pub(crate) struct Windows {
    pub length: Millis,
    pub quiet: Millis,
    /// No record goes to a window starting before this: the newest window assigned, or the end
    /// of the newest one closed.
    pub floor: Millis,
    pub open: Option<OpenWindow>,
    pub closing: Option<Closing>,
}

#[derive(Debug)]
pub(crate) struct OpenWindow {
    pub start: Millis,
    pub end: Millis,
    pub state: WindowState,
    /// Ledger positions of the window's finished records: checkpointed when it closes.
    pub held: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClosingKind {
    Final,
    Early,
}

/// A final or early-termination invocation, retried until it succeeds.
#[derive(Debug)]
pub(crate) struct Closing {
    pub kind: ClosingKind,
    pub state: WindowState,
    pub phase: Phase,
    pub invocations: u32,
    pub failures: u32,
}

impl Windows {
    pub(crate) fn new(length_seconds: u32) -> Self {
        Self {
            length: i64::from(length_seconds) * 1000,
            quiet: WINDOW_QUIET_MILLIS,
            floor: Millis::MIN,
            open: None,
            closing: None,
        }
    }

    /// The start of the window a record arriving at `arrival` joins.
    pub(crate) fn assign(&mut self, arrival: Millis) -> Millis {
        let start = (arrival.div_euclid(self.length) * self.length).max(self.floor);
        self.floor = start;
        start
    }

    pub(crate) fn open(&mut self, start: Millis) {
        self.open = Some(OpenWindow { start, end: start + self.length, state: WindowState::new(), held: Vec::new() });
    }

    /// Queues the window's final invocation; later records go to later windows.
    pub(crate) fn close(&mut self, now: Millis) {
        if let Some(open) = &self.open {
            self.floor = self.floor.max(open.end);
            self.closing = Some(Closing::new(ClosingKind::Final, open.state.clone(), now));
        }
    }

    /// Takes a state the function returned; over 1 MB it ends the window early.
    pub(crate) fn adopt(&mut self, state: WindowState, now: Millis) {
        let Some(open) = self.open.as_mut() else { return };
        if state_bytes(&state) > MAX_WINDOW_STATE_BYTES {
            open.state = WindowState::new();
            self.closing = Some(Closing::new(ClosingKind::Early, state, now));
        } else {
            open.state = state;
        }
    }

    pub(crate) fn status(&self) -> Option<OpenWindowStatus> {
        self.open.as_ref().map(|open| OpenWindowStatus {
            start: open.start,
            end: open.end,
            records: open.held.len(),
            state_bytes: state_bytes(&open.state),
            closing: self.closing.is_some(),
        })
    }
}

impl Closing {
    fn new(kind: ClosingKind, state: WindowState, now: Millis) -> Self {
        Self { kind, state, phase: Phase::Ready { not_before: now }, invocations: 0, failures: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch_and_never_go_back() {
        let mut windows = Windows::new(60);
        assert_eq!(windows.assign(125_000), 120_000);
        assert_eq!(windows.assign(119_000), 120_000, "an earlier arrival joins the current window");
        assert_eq!(windows.assign(181_000), 180_000);
        windows.open(180_000);
        windows.close(0);
        assert_eq!(windows.assign(185_000), 240_000, "a closed window takes no more records");
    }
}
