//! The stream-stream window join: each search with the clicks of its session at most `window`
//! after it (`search.t <= click.t <= search.t + window`, Flink's interval join with bounds 0 and
//! `window`), outer on the search side.
//!
//! State is kept per session ([`SessionState`]), so a processor that stores one row per
//! session (the Lambda, in DynamoDB) and one that keeps a map ([`WindowJoin`]) run the same
//! rules:
//!
//! - A search or click whose event time is below the watermark is late and dropped (Flink's
//!   rule for interval joins): what it could have matched may already be evicted.
//! - A search is joined with every buffered click it matches and buffered itself; a click with
//!   every buffered search it matches and buffered itself. Whichever side comes first waits.
//! - Once the watermark passes a search's window end (`search.t + window < watermark`) no click
//!   can come for it: it is evicted, and emitted as "no click" if it matched nothing. A click is
//!   evicted once it is below the watermark, since a later search would be later still.
//!
//! So nothing is kept past its window, and the state's size rises and falls with the input.
//! Events are keyed by id: the same search or click delivered twice joins once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::clicks::{Click, Clickstream, Search};
use crate::time::windows::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferedSearch {
    pub search_id: String,
    pub event_time: Millis,
    /// Joined with at least one click: not a "no click" when it expires.
    pub matched: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferedClick {
    pub click_id: String,
    pub event_time: Millis,
}

/// One session's join state: the searches and clicks that may still match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionState {
    pub session_id: String,
    pub searches: Vec<BufferedSearch>,
    pub clicks: Vec<BufferedClick>,
}

/// One row of the join's output, keyed by (`search_id`, `click_id`), "no click" by `None`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JoinRow {
    pub search_id: String,
    pub click_id: Option<String>,
    pub session_id: String,
    pub search_time: Millis,
    pub click_time: Option<Millis>,
}

/// What one step of the join produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinOutput {
    /// A search and a click of its session within the window.
    Matched(JoinRow),
    /// A search whose window ended without a click.
    NoClick(JoinRow),
    /// An event below the watermark, dropped.
    Late { id: String, event_time: Millis, watermark: Millis },
}

impl JoinOutput {
    pub fn row(&self) -> Option<&JoinRow> {
        match self {
            JoinOutput::Matched(row) | JoinOutput::NoClick(row) => Some(row),
            JoinOutput::Late { .. } => None,
        }
    }
}

fn matches(search_time: Millis, click_time: Millis, window: Millis) -> bool {
    search_time <= click_time && click_time <= search_time + window
}

impl SessionState {
    pub fn new(session_id: &str) -> Self {
        Self { session_id: session_id.to_owned(), ..Self::default() }
    }

    /// Buffered events: what "state size" counts.
    pub fn len(&self) -> usize {
        self.searches.len() + self.clicks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest watermark at which [`SessionState::on_watermark`] evicts something.
    pub fn next_expiry(&self, window: Millis) -> Option<Millis> {
        let searches = self.searches.iter().map(|s| s.event_time + window + 1);
        searches.chain(self.clicks.iter().map(|c| c.event_time + 1)).min()
    }

    fn row(&self, search: &BufferedSearch, click: Option<&BufferedClick>) -> JoinRow {
        JoinRow {
            search_id: search.search_id.clone(),
            click_id: click.map(|c| c.click_id.clone()),
            session_id: self.session_id.clone(),
            search_time: search.event_time,
            click_time: click.map(|c| c.event_time),
        }
    }

    pub fn on_search(&mut self, search: &Search, window: Millis, watermark: Millis) -> Vec<JoinOutput> {
        if search.event_time < watermark {
            return vec![JoinOutput::Late { id: search.search_id.clone(), event_time: search.event_time, watermark }];
        }
        if self.searches.iter().any(|s| s.search_id == search.search_id) {
            return Vec::new();
        }
        let mut buffered =
            BufferedSearch { search_id: search.search_id.clone(), event_time: search.event_time, matched: false };
        let outputs: Vec<JoinOutput> = self
            .clicks
            .iter()
            .filter(|c| matches(search.event_time, c.event_time, window))
            .map(|c| JoinOutput::Matched(self.row(&buffered, Some(c))))
            .collect();
        buffered.matched = !outputs.is_empty();
        self.searches.push(buffered);
        outputs
    }

    pub fn on_click(&mut self, click: &Click, window: Millis, watermark: Millis) -> Vec<JoinOutput> {
        if click.event_time < watermark {
            return vec![JoinOutput::Late { id: click.click_id.clone(), event_time: click.event_time, watermark }];
        }
        if self.clicks.iter().any(|c| c.click_id == click.click_id) {
            return Vec::new();
        }
        let buffered = BufferedClick { click_id: click.click_id.clone(), event_time: click.event_time };
        let mut outputs = Vec::new();
        for index in 0..self.searches.len() {
            if matches(self.searches[index].event_time, click.event_time, window) {
                outputs.push(JoinOutput::Matched(self.row(&self.searches[index], Some(&buffered))));
                self.searches[index].matched = true;
            }
        }
        self.clicks.push(buffered);
        outputs
    }

    /// Evicts what can no longer match at `watermark`; unmatched searches leave as "no click".
    pub fn on_watermark(&mut self, window: Millis, watermark: Millis) -> Vec<JoinOutput> {
        let (expired, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.searches).into_iter().partition(|s| s.event_time + window < watermark);
        self.searches = kept;
        self.clicks.retain(|c| c.event_time >= watermark);
        expired.iter().filter(|s| !s.matched).map(|s| JoinOutput::NoClick(self.row(s, None))).collect()
    }
}

/// The join over every session, as one operator instance holding its state in memory (what a
/// Flink or Kafka Streams task would do). The Lambda keeps the same [`SessionState`] rows in
/// DynamoDB instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowJoin {
    window: Millis,
    watermark: Millis,
    sessions: BTreeMap<String, SessionState>,
}

impl WindowJoin {
    pub fn new(window: Millis) -> Self {
        Self { window, watermark: Millis::MIN, sessions: BTreeMap::new() }
    }

    pub fn watermark(&self) -> Millis {
        self.watermark
    }

    /// Buffered searches and clicks across sessions.
    pub fn state_size(&self) -> usize {
        self.sessions.values().map(SessionState::len).sum()
    }

    pub fn session(&self, session_id: &str) -> Option<&SessionState> {
        self.sessions.get(session_id)
    }

    fn state(&mut self, session_id: &str) -> &mut SessionState {
        self.sessions.entry(session_id.to_owned()).or_insert_with(|| SessionState::new(session_id))
    }

    pub fn process_search(&mut self, search: &Search) -> Vec<JoinOutput> {
        let (window, watermark) = (self.window, self.watermark);
        self.state(&search.session_id).on_search(search, window, watermark)
    }

    pub fn process_click(&mut self, click: &Click) -> Vec<JoinOutput> {
        let (window, watermark) = (self.window, self.watermark);
        self.state(&click.session_id).on_click(click, window, watermark)
    }

    /// Moves the watermark (never back), emits "no click" rows and drops empty sessions.
    pub fn process_watermark(&mut self, watermark: Millis) -> Vec<JoinOutput> {
        self.watermark = self.watermark.max(watermark);
        let (window, watermark) = (self.window, self.watermark);
        let mut outputs = Vec::new();
        for state in self.sessions.values_mut() {
            outputs.extend(state.on_watermark(window, watermark));
        }
        self.sessions.retain(|_, state| !state.is_empty());
        outputs
    }
}

/// The batch join over complete inputs: what the streaming join must produce when nothing is
/// late. Every (search, click) pair within the window, and every search without one.
pub fn reference_join(searches: &[Search], clicks: &[Click], window: Millis) -> BTreeSet<JoinRow> {
    let mut rows = BTreeSet::new();
    for search in searches {
        let mut any = false;
        for click in clicks.iter().filter(|c| c.session_id == search.session_id) {
            if matches(search.event_time, click.event_time, window) {
                any = true;
                rows.insert(JoinRow {
                    search_id: search.search_id.clone(),
                    click_id: Some(click.click_id.clone()),
                    session_id: search.session_id.clone(),
                    search_time: search.event_time,
                    click_time: Some(click.event_time),
                });
            }
        }
        if !any {
            rows.insert(JoinRow {
                search_id: search.search_id.clone(),
                click_id: None,
                session_id: search.session_id.clone(),
                search_time: search.event_time,
                click_time: None,
            });
        }
    }
    rows
}

/// [`reference_join`] of a generated clickstream.
pub fn reference_of(stream: &Clickstream, window: Millis) -> BTreeSet<JoinRow> {
    reference_join(&stream.searches, &stream.clicks, window)
}

#[cfg(test)]
mod tests {
    use super::super::clicks::{ClickSpec, ClickstreamRecord, generate};
    use super::*;
    use crate::time::watermark::{WatermarkConfig, WatermarkTracker};

    const W: Millis = 10_000;

    fn search(session: &str, id: &str, t: Millis) -> Search {
        Search { session_id: session.into(), search_id: id.into(), query: "q".into(), event_time: t }
    }

    fn click(session: &str, id: &str, t: Millis) -> Click {
        Click { session_id: session.into(), click_id: id.into(), url: "u".into(), event_time: t }
    }

    fn rows(outputs: &[JoinOutput]) -> Vec<(String, Option<String>)> {
        outputs.iter().filter_map(JoinOutput::row).map(|r| (r.search_id.clone(), r.click_id.clone())).collect()
    }

    #[test]
    fn a_click_that_arrives_before_its_search_waits_and_joins() {
        let mut join = WindowJoin::new(W);
        assert!(join.process_click(&click("s1", "c1", 5_000)).is_empty());
        assert_eq!(join.state_size(), 1, "the click is buffered");
        let out = join.process_search(&search("s1", "q1", 1_000));
        assert_eq!(rows(&out), [("q1".to_owned(), Some("c1".to_owned()))]);
        // Another session's search does not see it.
        assert!(join.process_search(&search("s2", "q2", 1_000)).is_empty());
    }

    #[test]
    fn a_search_without_a_click_is_emitted_once_the_watermark_passes_its_window_end() {
        let mut join = WindowJoin::new(W);
        join.process_search(&search("s1", "q1", 1_000));
        assert!(join.process_watermark(11_000).is_empty(), "the window end itself may still match");
        let out = join.process_watermark(11_001);
        assert!(matches!(&out[..], [JoinOutput::NoClick(row)] if row.search_id == "q1" && row.click_id.is_none()));
        assert_eq!(join.state_size(), 0);
        assert!(join.process_watermark(50_000).is_empty(), "emitted once");
    }

    #[test]
    fn a_click_after_the_window_does_not_match_and_a_matched_search_is_not_a_no_click() {
        let mut join = WindowJoin::new(W);
        join.process_search(&search("s1", "q1", 1_000));
        join.process_search(&search("s1", "q2", 30_000));
        assert!(join.process_click(&click("s1", "late-for-q1", 12_000)).is_empty());
        assert_eq!(rows(&join.process_click(&click("s1", "c2", 31_000))), [("q2".to_owned(), Some("c2".to_owned()))]);
        let out = join.process_watermark(100_000);
        assert_eq!(rows(&out), [("q1".to_owned(), None)]);
    }

    #[test]
    fn state_is_bounded_nothing_is_kept_past_its_window() {
        // Flink's harness tests assert state is empty once timers fired; here the watermark.
        let mut join = WindowJoin::new(W);
        join.process_search(&search("s1", "q1", 1_000));
        join.process_click(&click("s1", "c1", 2_000));
        join.process_click(&click("s2", "c9", 3_000));
        assert_eq!(join.state_size(), 3);
        join.process_watermark(3_001);
        assert_eq!(join.state_size(), 1, "clicks below the watermark go; the search's window is open");
        assert!(join.session("s2").is_none(), "an empty session is dropped");
        assert_eq!(join.session("s1").unwrap().next_expiry(W), Some(11_001));
        join.process_watermark(11_001);
        assert_eq!(join.state_size(), 0);
    }

    #[test]
    fn late_events_are_dropped_and_duplicates_join_once() {
        let mut join = WindowJoin::new(W);
        join.process_watermark(20_000);
        assert!(matches!(&join.process_search(&search("s1", "q1", 19_999))[..], [JoinOutput::Late { .. }]));
        join.process_search(&search("s1", "q2", 25_000));
        assert_eq!(join.process_click(&click("s1", "c2", 26_000)).len(), 1);
        assert!(join.process_click(&click("s1", "c2", 26_000)).is_empty(), "redelivered");
        assert!(join.process_search(&search("s1", "q2", 25_000)).is_empty(), "redelivered");
    }

    /// Feeds a generated clickstream the way the Lambda sees it: two streams, one shard each,
    /// each with its own clock; the watermark is their minimum; end-of-input on both at the end.
    fn run_streaming(stream: &Clickstream, arrival_order: &[ClickstreamRecord]) -> (BTreeSet<JoinRow>, Vec<usize>) {
        let config = WatermarkConfig { max_out_of_orderness: 5_000, idle_timeout: 600_000, expected_shards: 2 };
        let mut tracker = WatermarkTracker::new(config);
        let mut join = WindowJoin::new(W);
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for (now, record) in arrival_order.iter().enumerate() {
            let now = now as Millis;
            match record {
                ClickstreamRecord::Search(s) => {
                    out.extend(join.process_search(s));
                    tracker.on_event("searches", s.event_time, now);
                }
                ClickstreamRecord::Click(c) => {
                    out.extend(join.process_click(c));
                    tracker.on_event("clicks", c.event_time, now);
                }
                _ => {}
            }
            out.extend(join.process_watermark(tracker.watermark(now).watermark));
            sizes.push(join.state_size());
        }
        let end = stream.last_event_time() + W + 1;
        tracker.on_end_of_input("searches", end, 1_000_000);
        tracker.on_end_of_input("clicks", end, 1_000_000);
        out.extend(join.process_watermark(tracker.watermark(1_000_000).watermark));
        assert!(out.iter().all(|o| o.row().is_some()), "nothing is late: {out:?}");
        sizes.push(join.state_size());
        (out.iter().filter_map(JoinOutput::row).cloned().collect(), sizes)
    }

    #[test]
    fn the_streaming_join_equals_the_batch_join_and_its_state_rises_and_falls() {
        let stream = generate(&ClickSpec::standard("t", 3, 1_000_000));
        let (rows, sizes) = run_streaming(&stream, &stream.production);
        assert_eq!(rows, reference_of(&stream, W));
        assert!(rows.iter().any(|r| r.click_id.is_none()) && rows.iter().any(|r| r.click_id.is_some()));
        let all = stream.searches.len() + stream.clicks.len();
        let peak = sizes.iter().copied().max().unwrap_or(0);
        let at_peak = sizes.iter().position(|s| *s == peak).unwrap_or(0);
        assert!(peak > 0 && peak < all, "state holds only what may still match: peak {peak} of {all}");
        assert!(sizes[at_peak..sizes.len() - 1].iter().any(|s| *s < peak), "state falls while input still comes");
        assert_eq!(sizes.last(), Some(&0), "state is empty after the end of input");
    }

    #[test]
    fn the_join_does_not_depend_on_how_the_two_streams_interleave() {
        // The two streams are read by two pollers: either may run ahead. All clicks first, then
        // all searches, gives the same rows as long as each stream keeps its own order.
        let stream = generate(&ClickSpec::standard("t", 4, 1_000_000));
        let (clicks, searches): (Vec<_>, Vec<_>) =
            stream.production.iter().cloned().partition(|r| matches!(r, ClickstreamRecord::Click(_)));
        let clicks_first: Vec<_> = clicks.into_iter().chain(searches).collect();
        let (rows, sizes) = run_streaming(&stream, &clicks_first);
        assert_eq!(rows, reference_of(&stream, W));
        assert_eq!(sizes.last(), Some(&0));
    }

    #[test]
    fn the_reference_join_is_outer_on_searches() {
        let searches = [search("s1", "q1", 0), search("s1", "q2", 100_000)];
        let clicks = [click("s1", "c1", 10_000), click("s1", "c2", 10_001), click("s1", "c3", 100_000)];
        let rows: Vec<_> =
            reference_join(&searches, &clicks, W).into_iter().map(|r| (r.search_id, r.click_id)).collect();
        assert_eq!(
            rows,
            [("q1".to_owned(), Some("c1".to_owned())), ("q2".to_owned(), Some("c3".to_owned()))],
            "c2 is one millisecond past q1's window"
        );
        let rows = reference_join(&searches[..1], &[], W);
        assert_eq!(rows.into_iter().map(|r| r.click_id).collect::<Vec<_>>(), [None]);
    }
}
