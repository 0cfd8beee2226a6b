//! The event-time window operator: keyed windows that are emitted once the watermark passes
//! their end, revised by late events within the allowed lateness, and dropped to a side output
//! for events later than that.
//!
//! It follows Flink's `WindowOperator` with an event-time trigger:
//!
//! - An element is added to each of its windows that is not closed yet. A window is *closed*
//!   (final) once `end + allowed_lateness <= watermark`; its state is cleared then, so nothing
//!   leaks. For each closed window an element belongs to, it goes to the side output with the
//!   watermark it met. (Flink side-outputs an element only when all its windows are closed and
//!   drops it silently from the closed ones; reporting each one keeps the books balanced for
//!   hopping windows: every (element, window) pair is in that window or in the side output.)
//! - When the watermark reaches a window's end, the window is emitted (revision 1). An element
//!   that lands in an already emitted window emits it again at once (revision + 1).
//! - Session windows merge per key when they touch; a merge that moves a session's start
//!   retracts the rows of the sessions it swallowed. A session event is too late once
//!   `event_time + allowed_lateness < watermark` (Flink judges by the end of the window the
//!   event alone would open, `event_time + gap`): otherwise an event could touch a session that
//!   is final and forgotten, and open a second, overlapping one. Sessions touch end to start, so
//!   a session is final only once `end + allowed_lateness < watermark`: an on-time event at the
//!   watermark may still join one that ends there.
//!
//! The state is plain data ([`OpenWindow`]) so a Lambda can store it between invocations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::watermark::NO_WATERMARK;
use super::windows::{Millis, Window, WindowKind};

/// One window's state while it may still change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWindow {
    pub key: String,
    pub window: Window,
    pub count: u64,
    pub sum: i64,
    /// How often it was emitted; 0 while the watermark has not reached its end.
    pub revision: u32,
    /// Changed since it was last emitted (a session that grew past the watermark).
    pub pending: bool,
}

/// A window as the operator reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowResult {
    pub kind: WindowKind,
    pub key: String,
    pub window: Window,
    pub count: u64,
    pub sum: i64,
    /// 0: open, not emitted yet; 1: the first answer; 2, 3, ...: revised by late events.
    pub revision: u32,
    /// No event can change it any more; its state is gone from the operator.
    pub is_final: bool,
    /// The watermark when this result was produced.
    pub watermark: Millis,
}

/// An event that came after one of its windows had closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateEvent {
    pub kind: WindowKind,
    pub key: String,
    /// The closed window it missed (for sessions: the window the event alone would open).
    pub window: Window,
    pub event_time: Millis,
    pub value: i64,
    /// The watermark it met.
    pub watermark: Millis,
}

/// What one step of the operator produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// A window was created or changed but is not due yet (revision unchanged).
    Updated(WindowResult),
    /// A window was emitted: first time, a revision by a late event, or made final.
    Emitted(WindowResult),
    /// The side output.
    Late(LateEvent),
    /// A session merged into another one that starts elsewhere: its row is gone.
    Retracted { kind: WindowKind, key: String, window: Window },
}

impl Output {
    pub fn result(&self) -> Option<&WindowResult> {
        match self {
            Output::Updated(result) | Output::Emitted(result) => Some(result),
            _ => None,
        }
    }
}

/// Windows of one kind, for every key of one operator instance (in the Lambda: one shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowOperator {
    kind: WindowKind,
    allowed_lateness: Millis,
    watermark: Millis,
    /// By key, then window start.
    open: BTreeMap<(String, Millis), OpenWindow>,
}

impl WindowOperator {
    pub fn new(kind: WindowKind, allowed_lateness: Millis) -> Self {
        Self { kind, allowed_lateness: allowed_lateness.max(0), watermark: NO_WATERMARK, open: BTreeMap::new() }
    }

    /// An operator continuing from stored state.
    pub fn restore(
        kind: WindowKind,
        allowed_lateness: Millis,
        watermark: Millis,
        open: impl IntoIterator<Item = OpenWindow>,
    ) -> Self {
        let open = open.into_iter().map(|w| ((w.key.clone(), w.window.start), w)).collect();
        Self { kind, allowed_lateness: allowed_lateness.max(0), watermark, open }
    }

    pub fn kind(&self) -> WindowKind {
        self.kind
    }

    pub fn watermark(&self) -> Millis {
        self.watermark
    }

    /// The state: windows that may still change, by key and start.
    pub fn open_windows(&self) -> impl Iterator<Item = &OpenWindow> {
        self.open.values()
    }

    fn is_closed(&self, window: &Window) -> bool {
        let last_moment = window.end.saturating_add(self.allowed_lateness);
        if self.kind.is_session() {
            // An on-time event at the session's very end (event time = watermark) still
            // touches it, so a session stays open until the watermark has passed its end.
            last_moment < self.watermark
        } else {
            last_moment <= self.watermark
        }
    }

    fn result(&self, open: &OpenWindow, is_final: bool) -> WindowResult {
        WindowResult {
            kind: self.kind,
            key: open.key.clone(),
            window: open.window,
            count: open.count,
            sum: open.sum,
            revision: open.revision,
            is_final,
            watermark: self.watermark,
        }
    }

    /// Adds an event of `key` at `event_time` carrying `value`.
    pub fn process_element(&mut self, key: &str, event_time: Millis, value: i64) -> Vec<Output> {
        let (closed, open): (Vec<Window>, Vec<Window>) = if self.kind.is_session() {
            // Judged by the event's own time: anything it could merge with ended `gap` before
            // it, so a session that is closed already can never be asked to grow.
            let too_late = event_time.saturating_add(self.allowed_lateness) < self.watermark;
            self.kind.windows_of(event_time).into_iter().partition(|_| too_late)
        } else {
            self.kind.windows_of(event_time).into_iter().partition(|w| self.is_closed(w))
        };
        let mut outputs: Vec<Output> = closed
            .into_iter()
            .map(|window| {
                Output::Late(LateEvent {
                    kind: self.kind,
                    key: key.to_owned(),
                    window,
                    event_time,
                    value,
                    watermark: self.watermark,
                })
            })
            .collect();
        for window in open {
            let start = if self.kind.is_session() {
                self.merge_sessions(key, window, &mut outputs)
            } else {
                self.open.entry((key.to_owned(), window.start)).or_insert_with(|| OpenWindow {
                    key: key.to_owned(),
                    window,
                    count: 0,
                    sum: 0,
                    revision: 0,
                    pending: false,
                });
                window.start
            };
            let watermark = self.watermark;
            let Some(open) = self.open.get_mut(&(key.to_owned(), start)) else { continue };
            open.count += 1;
            open.sum += value;
            if open.window.end <= watermark {
                // Late but within the allowed lateness: the window answers again.
                open.revision += 1;
                open.pending = false;
                let open = open.clone();
                outputs.push(Output::Emitted(self.result(&open, false)));
            } else {
                open.pending = true;
                let open = open.clone();
                outputs.push(Output::Updated(self.result(&open, false)));
            }
        }
        outputs
    }

    /// Merges `proto` with the key's sessions it touches; returns the merged session's start.
    /// The event itself is not counted yet.
    fn merge_sessions(&mut self, key: &str, proto: Window, outputs: &mut Vec<Output>) -> Millis {
        let touching: Vec<Millis> = self
            .open
            .range((key.to_owned(), Millis::MIN)..=(key.to_owned(), Millis::MAX))
            .filter(|(_, open)| open.window.touches(&proto))
            .map(|((_, start), _)| *start)
            .collect();
        let mut merged =
            OpenWindow { key: key.to_owned(), window: proto, count: 0, sum: 0, revision: 0, pending: false };
        let mut swallowed = Vec::new();
        for start in touching {
            if let Some(old) = self.open.remove(&(key.to_owned(), start)) {
                merged.window = merged.window.cover(&old.window);
                merged.count += old.count;
                merged.sum += old.sum;
                merged.revision = merged.revision.max(old.revision);
                merged.pending |= old.pending;
                swallowed.push(old.window);
            }
        }
        for window in swallowed {
            if window.start != merged.window.start {
                outputs.push(Output::Retracted { kind: self.kind, key: key.to_owned(), window });
            }
        }
        let start = merged.window.start;
        self.open.insert((key.to_owned(), start), merged);
        start
    }

    /// Moves the watermark to `watermark` (never backwards): emits the windows it passes the end
    /// of, and emits as final and forgets the ones it passes the allowed lateness of.
    pub fn process_watermark(&mut self, watermark: Millis) -> Vec<Output> {
        if watermark <= self.watermark {
            return Vec::new();
        }
        self.watermark = watermark;
        let mut due: Vec<(Millis, (String, Millis))> = self
            .open
            .iter()
            .filter(|(_, open)| open.window.end <= watermark)
            .map(|(id, open)| (open.window.end, id.clone()))
            .collect();
        due.sort();
        let mut outputs = Vec::new();
        for (_, id) in due {
            let closed = self.open.get(&id).is_some_and(|open| self.is_closed(&open.window));
            let Some(open) = self.open.get_mut(&id) else { continue };
            let emit = open.pending;
            if emit {
                open.revision += 1;
                open.pending = false;
            }
            let open = open.clone();
            if closed {
                self.open.remove(&id);
            }
            if emit || closed {
                outputs.push(Output::Emitted(self.result(&open, closed)));
            }
        }
        outputs
    }
}

#[cfg(test)]
mod tests {
    //! In the style of Flink's `WindowOperatorTest`: feed elements and watermarks through the
    //! operator, then assert what it emitted and what state it still holds.

    use super::*;

    const SEC: Millis = 1000;

    /// The operator and everything it has output, like Flink's one-input test harness.
    struct Harness {
        operator: WindowOperator,
        output: Vec<Output>,
    }

    impl Harness {
        fn new(kind: WindowKind, allowed_lateness: Millis) -> Self {
            Self { operator: WindowOperator::new(kind, allowed_lateness), output: Vec::new() }
        }

        fn element(&mut self, key: &str, time: Millis, value: i64) -> &mut Self {
            let out = self.operator.process_element(key, time, value);
            self.output.extend(out);
            self
        }

        fn watermark(&mut self, watermark: Millis) -> &mut Self {
            let out = self.operator.process_watermark(watermark);
            self.output.extend(out);
            self
        }

        /// Emitted windows as (key, start, end, count, sum, revision, final), taken out of the
        /// output.
        fn take_emitted(&mut self) -> Vec<(String, Millis, Millis, u64, i64, u32, bool)> {
            let emitted = self
                .output
                .iter()
                .filter_map(|o| match o {
                    Output::Emitted(r) => {
                        Some((r.key.clone(), r.window.start, r.window.end, r.count, r.sum, r.revision, r.is_final))
                    }
                    _ => None,
                })
                .collect();
            self.output.retain(|o| !matches!(o, Output::Emitted(_)));
            emitted
        }

        fn take_late(&mut self) -> Vec<(String, Millis, Millis)> {
            let late = self
                .output
                .iter()
                .filter_map(|o| match o {
                    Output::Late(e) => Some((e.key.clone(), e.event_time, e.watermark)),
                    _ => None,
                })
                .collect();
            self.output.retain(|o| !matches!(o, Output::Late(_)));
            late
        }

        fn state(&self) -> Vec<(String, Millis, Millis, u64)> {
            self.operator.open_windows().map(|w| (w.key.clone(), w.window.start, w.window.end, w.count)).collect()
        }
    }

    fn s(key: &str) -> String {
        key.to_owned()
    }

    #[test]
    fn tumbling_windows_fire_when_the_watermark_passes_their_end_and_leave_no_state() {
        let mut h = Harness::new(WindowKind::Tumbling { size: 3 * SEC }, 0);
        h.element("a", 0, 1).element("a", 1_000, 2).element("b", 2_999, 5).element("a", 3_000, 7);
        assert!(h.take_emitted().is_empty(), "nothing before a watermark");
        assert_eq!(h.state().len(), 3);
        h.watermark(2_999);
        assert!(h.take_emitted().is_empty(), "the window [0, 3000) still expects events at 2999");
        h.watermark(3_000);
        assert_eq!(
            h.take_emitted(),
            [(s("a"), 0, 3_000, 2, 3, 1, true), (s("b"), 0, 3_000, 1, 5, 1, true)],
            "one answer per key, final at once without allowed lateness"
        );
        assert_eq!(h.state(), [(s("a"), 3_000, 6_000, 1)], "the emitted windows' state is gone");
        h.watermark(10_000);
        assert_eq!(h.take_emitted(), [(s("a"), 3_000, 6_000, 1, 7, 1, true)]);
        assert!(h.state().is_empty(), "no state leaks once every window is final");
        h.watermark(9_000);
        assert!(h.output.iter().all(|o| matches!(o, Output::Updated(_))), "a lower watermark does nothing");
    }

    #[test]
    fn a_late_event_within_allowed_lateness_revises_the_window_then_it_closes() {
        let mut h = Harness::new(WindowKind::Tumbling { size: 3 * SEC }, 2 * SEC);
        h.element("a", 500, 10).element("a", 1_500, 20);
        h.watermark(3_000);
        assert_eq!(h.take_emitted(), [(s("a"), 0, 3_000, 2, 30, 1, false)]);
        assert_eq!(h.state().len(), 1, "kept for late events until end + lateness");

        h.element("a", 2_000, 5); // late, within lateness: revision 2 at once
        assert_eq!(h.take_emitted(), [(s("a"), 0, 3_000, 3, 35, 2, false)]);
        h.watermark(4_999);
        assert!(h.take_emitted().is_empty(), "nothing changed: no new revision");
        h.watermark(5_000);
        assert_eq!(h.take_emitted(), [(s("a"), 0, 3_000, 3, 35, 2, true)], "made final, same revision");
        assert!(h.state().is_empty());

        h.element("a", 2_500, 99); // beyond the lateness: side output with the watermark it met
        assert_eq!(h.take_late(), [(s("a"), 2_500, 5_000)]);
        assert!(h.take_emitted().is_empty() && h.state().is_empty(), "a too-late event leaves no state");
    }

    #[test]
    fn hopping_windows_take_an_event_in_every_window_still_open() {
        let mut h = Harness::new(WindowKind::Hopping { size: 3 * SEC, hop: SEC }, 0);
        h.element("a", 2_500, 1);
        assert_eq!(h.state(), [(s("a"), 0, 3_000, 1), (s("a"), 1_000, 4_000, 1), (s("a"), 2_000, 5_000, 1)]);
        h.watermark(3_000);
        assert_eq!(h.take_emitted(), [(s("a"), 0, 3_000, 1, 1, 1, true)]);
        // Late for [0, 3000) (closed) but on time for the other two: added there, and the side
        // output says which window it missed.
        h.element("a", 2_000, 4);
        assert_eq!(h.take_late(), [(s("a"), 2_000, 3_000)]);
        assert!(matches!(&h.output[h.output.len() - 2..], [Output::Updated(_), Output::Updated(_)]));
        assert_eq!(h.state(), [(s("a"), 1_000, 4_000, 2), (s("a"), 2_000, 5_000, 2)]);
        h.watermark(5_000);
        assert_eq!(h.take_emitted(), [(s("a"), 1_000, 4_000, 2, 5, 1, true), (s("a"), 2_000, 5_000, 2, 5, 1, true)]);
        assert!(h.state().is_empty());
        h.element("a", 1_999, 1);
        assert_eq!(h.take_late(), vec![(s("a"), 1_999, 5_000); 3], "each of its three windows is closed");
    }

    #[test]
    fn sessions_merge_when_events_touch_and_retract_the_swallowed_rows() {
        let mut h = Harness::new(WindowKind::Session { gap: 3 * SEC }, 0);
        h.element("a", 0, 1).element("a", 8_000, 2).element("b", 1_000, 7);
        assert_eq!(h.state(), [(s("a"), 0, 3_000, 1), (s("a"), 8_000, 11_000, 1), (s("b"), 1_000, 4_000, 1)]);
        // An event exactly gap after the first joins its session; one between two sessions
        // bridges them.
        h.element("a", 3_000, 3);
        assert_eq!(h.state()[0], (s("a"), 0, 6_000, 2));
        h.element("a", 5_000, 4);
        assert_eq!(h.state(), [(s("a"), 0, 11_000, 4), (s("b"), 1_000, 4_000, 1)]);
        let retracted: Vec<Window> = h
            .output
            .iter()
            .filter_map(|o| match o {
                Output::Retracted { window, .. } => Some(*window),
                _ => None,
            })
            .collect();
        assert_eq!(retracted, [Window { start: 8_000, end: 11_000 }], "the session starting at 0 absorbed it");
        // A session is final once the watermark is past its end: at the end an on-time event
        // could still touch it.
        h.watermark(4_000);
        assert_eq!(h.take_emitted(), [(s("b"), 1_000, 4_000, 1, 7, 1, false)]);
        h.watermark(4_001);
        assert_eq!(h.take_emitted(), [(s("b"), 1_000, 4_000, 1, 7, 1, true)]);
        h.watermark(11_001);
        assert_eq!(h.take_emitted(), [(s("a"), 0, 11_000, 4, 10, 1, true)]);
        assert!(h.state().is_empty());
    }

    #[test]
    fn a_late_event_changing_an_emitted_session_revises_it_now_or_when_due() {
        let mut h = Harness::new(WindowKind::Session { gap: 2 * SEC }, 10 * SEC);
        h.element("a", 1_000, 1);
        h.watermark(3_000);
        assert_eq!(h.take_emitted(), [(s("a"), 1_000, 3_000, 1, 1, 1, false)]);
        // Late, and inside what the watermark has passed: revision 2 at once, under its new start.
        h.element("a", 800, 1);
        assert_eq!(h.take_emitted(), [(s("a"), 800, 3_000, 2, 2, 2, false)]);
        assert!(h.output.contains(&Output::Retracted {
            kind: WindowKind::Session { gap: 2 * SEC },
            key: s("a"),
            window: Window { start: 1_000, end: 3_000 }
        }));
        // Extends it past the watermark: pending until the watermark reaches the new end.
        h.element("a", 2_900, 1);
        assert!(h.take_emitted().is_empty());
        assert_eq!(h.state(), [(s("a"), 800, 4_900, 3)]);
        h.watermark(4_900);
        assert_eq!(h.take_emitted(), [(s("a"), 800, 4_900, 3, 3, 3, false)]);
        h.watermark(14_901);
        assert_eq!(h.take_emitted(), [(s("a"), 800, 4_900, 3, 3, 3, true)]);
        assert!(h.state().is_empty());
    }

    #[test]
    fn a_session_event_is_too_late_once_the_watermark_passed_its_time_by_the_lateness() {
        let mut h = Harness::new(WindowKind::Session { gap: 3 * SEC }, SEC);
        h.element("a", 0, 1);
        h.watermark(4_001);
        assert_eq!(h.take_emitted(), [(s("a"), 0, 3_000, 1, 1, 1, true)], "3000 + 1000 < 4001: final");
        // Its own window [2900, 5900) would still be open, but it touches the final session:
        // counting it would make a second session overlapping the first.
        h.element("a", 2_900, 1);
        assert_eq!(h.take_late(), [(s("a"), 2_900, 4_001)]);
        h.element("a", 3_001, 1); // 3001 + 1000 = 4001: on time, and it cannot touch [0, 3000)
        assert!(h.take_late().is_empty());
        assert_eq!(h.state(), [(s("a"), 3_001, 6_001, 1)]);
    }

    #[test]
    fn the_state_restores_and_continues_identically() {
        let mut original = Harness::new(WindowKind::Tumbling { size: 3 * SEC }, SEC);
        original.element("a", 100, 1).element("b", 4_000, 2).watermark(3_500);
        let stored = serde_json::to_string(&original.operator.open_windows().collect::<Vec<_>>()).unwrap();
        let open: Vec<OpenWindow> = serde_json::from_str(&stored).unwrap();
        let mut restored = Harness {
            operator: WindowOperator::restore(WindowKind::Tumbling { size: 3 * SEC }, SEC, 3_500, open),
            output: Vec::new(),
        };
        assert_eq!(restored.operator, original.operator);
        for h in [&mut original, &mut restored] {
            h.output.clear();
            h.element("a", 2_000, 5).watermark(9_000);
        }
        assert_eq!(original.output, restored.output);
        assert_eq!(
            restored.take_emitted(),
            [
                (s("a"), 0, 3_000, 2, 6, 2, false),
                (s("a"), 0, 3_000, 2, 6, 2, true),
                (s("b"), 3_000, 6_000, 1, 2, 1, true)
            ]
        );
    }

    /// Generated readings through the operator with a bounded-out-of-orderness watermark: every
    /// (reading, window) pair ends up in exactly one of (that final window, the side output), and
    /// the final windows equal the ground truth over the pairs they accepted. No state is left.
    #[test]
    fn generated_readings_end_in_final_windows_or_the_side_output_and_nothing_else() {
        use std::collections::BTreeSet;

        use super::super::readings::{ReadingSpec, generate, ground_truth_where};
        use super::super::watermark::{WatermarkConfig, WatermarkTracker};

        let readings = generate(&ReadingSpec::standard("operator", 3, 1_767_225_600_000));
        let config = WatermarkConfig { max_out_of_orderness: 2_000, idle_timeout: 60_000, expected_shards: 1 };
        for kind in [
            WindowKind::Tumbling { size: 10 * SEC },
            WindowKind::Hopping { size: 10 * SEC, hop: 5 * SEC },
            WindowKind::Session { gap: 3 * SEC },
        ] {
            let mut operator = WindowOperator::new(kind, 5 * SEC);
            let mut tracker = WatermarkTracker::new(config);
            let mut outputs = Vec::new();
            let mut missed: BTreeSet<(&str, Window)> = BTreeSet::new();
            for reading in &readings {
                let out = operator.process_element(&reading.device_id, reading.event_time, reading.value);
                for output in &out {
                    if let Output::Late(event) = output {
                        let closed_at = if kind.is_session() { event.event_time } else { event.window.end };
                        assert!(closed_at + 5 * SEC <= event.watermark, "{kind}: {event:?}");
                        assert!(missed.insert((reading.reading_id.as_str(), event.window)), "{kind}: twice");
                    }
                }
                outputs.extend(out);
                tracker.on_event("shard", reading.event_time, reading.sent_at);
                outputs.extend(operator.process_watermark(tracker.watermark(reading.sent_at).watermark));
            }
            outputs.extend(operator.process_watermark(Millis::MAX));
            assert_eq!(operator.open_windows().count(), 0, "{kind}: state left behind");
            assert!(!missed.is_empty(), "{kind}: the offline device's backlog is too late");

            let finals: BTreeMap<(String, Window), (u64, i64)> = outputs
                .iter()
                .filter_map(Output::result)
                .filter(|r| r.is_final)
                .map(|r| ((r.key.clone(), r.window), (r.count, r.sum)))
                .collect();
            let truth: BTreeMap<(String, Window), (u64, i64)> =
                ground_truth_where(&readings, &kind, |r, w| !missed.contains(&(r.reading_id.as_str(), *w)))
                    .into_iter()
                    .map(|(k, a)| (k, (a.count, a.sum)))
                    .collect();
            assert_eq!(finals, truth, "{kind}");
            let revised = outputs.iter().filter_map(Output::result).filter(|r| r.revision > 1).count();
            assert!(revised > 0, "{kind}: some late readings revised an emitted window");
        }
    }
}
