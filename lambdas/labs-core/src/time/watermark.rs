//! Watermarks: how far event time has got, so a window can be declared complete.
//!
//! A watermark `W` asserts "no more events with `event_time < W` are expected". Each shard
//! tracks its own with bounded out-of-orderness: the largest event time it has seen minus the
//! bound. The overall watermark is the minimum across shards, since a window may hold events of
//! every shard. A shard that has sent no data for the idleness timeout stops holding the
//! minimum back (Flink's `withIdleness`); when every shard is idle the watermark is the largest
//! of theirs (Flink's valve flushes the maximum then). An end-of-input record raises a shard's
//! watermark to the time it names, so the last windows can close without waiting.
//!
//! Time only moves with records: `now` is processing time, which the caller takes from the
//! records themselves (Kinesis' arrival timestamp), so replaying the same records gives the
//! same watermarks. Heartbeats advance `now` without counting as data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::windows::Millis;

/// The watermark before anything is known: every event is on time.
pub const NO_WATERMARK: Millis = Millis::MIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkConfig {
    /// How far behind the largest event time seen an event may still arrive on time.
    pub max_out_of_orderness: Millis,
    /// Processing time without data after which a shard no longer holds the watermark back.
    pub idle_timeout: Millis,
    /// Shards the stream has. One not heard from yet holds the watermark at its start until the
    /// idleness timeout has passed since the first shard was heard from.
    pub expected_shards: usize,
}

/// What one shard has told the tracker. This is the per-shard watermark row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardClock {
    pub shard_id: String,
    /// The largest event time among the shard's readings.
    pub max_event_time: Option<Millis>,
    /// The largest time an end-of-input record of this shard named.
    pub declared_watermark: Option<Millis>,
    /// Processing time of the shard's first record of any kind.
    pub first_seen_at: Millis,
    /// Processing time of its latest record of any kind (heartbeats included).
    pub last_seen_at: Millis,
    /// Processing time of its latest reading or end-of-input record: what idleness is judged by.
    pub last_data_at: Option<Millis>,
}

impl ShardClock {
    pub fn new(shard_id: &str, now: Millis) -> Self {
        Self {
            shard_id: shard_id.to_owned(),
            max_event_time: None,
            declared_watermark: None,
            first_seen_at: now,
            last_seen_at: now,
            last_data_at: None,
        }
    }

    /// This shard's own watermark under `config`.
    pub fn watermark(&self, config: &WatermarkConfig) -> Millis {
        let bounded = self.max_event_time.map_or(NO_WATERMARK, |t| t.saturating_sub(config.max_out_of_orderness));
        bounded.max(self.declared_watermark.unwrap_or(NO_WATERMARK))
    }

    /// Whether the shard has sent no data for the idleness timeout at processing time `now`.
    pub fn is_idle(&self, config: &WatermarkConfig, now: Millis) -> bool {
        now.saturating_sub(self.last_data_at.unwrap_or(self.first_seen_at)) >= config.idle_timeout
    }

    fn seen(&mut self, now: Millis) {
        self.last_seen_at = self.last_seen_at.max(now);
    }
}

/// The overall watermark at a moment, and why it is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkReading {
    pub watermark: Millis,
    /// The active shard with the smallest watermark (the one holding it back), if any.
    pub held_by: Option<String>,
    /// Shards left out as idle.
    pub idle: Vec<String>,
    /// Expected shards not heard from yet.
    pub unseen: usize,
}

/// Per-shard clocks and the overall watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkTracker {
    config: WatermarkConfig,
    shards: BTreeMap<String, ShardClock>,
}

impl WatermarkTracker {
    pub fn new(config: WatermarkConfig) -> Self {
        Self { config, shards: BTreeMap::new() }
    }

    /// A tracker that continues from stored clocks (one per shard).
    pub fn from_clocks(config: WatermarkConfig, clocks: impl IntoIterator<Item = ShardClock>) -> Self {
        Self { config, shards: clocks.into_iter().map(|c| (c.shard_id.clone(), c)).collect() }
    }

    pub fn config(&self) -> &WatermarkConfig {
        &self.config
    }

    pub fn clock(&self, shard_id: &str) -> Option<&ShardClock> {
        self.shards.get(shard_id)
    }

    pub fn clocks(&self) -> impl Iterator<Item = &ShardClock> {
        self.shards.values()
    }

    /// Replaces a shard's clock with a stored one (another invocation's progress).
    pub fn set_clock(&mut self, clock: ShardClock) {
        self.shards.insert(clock.shard_id.clone(), clock);
    }

    fn clock_mut(&mut self, shard_id: &str, now: Millis) -> &mut ShardClock {
        let clock = self.shards.entry(shard_id.to_owned()).or_insert_with(|| ShardClock::new(shard_id, now));
        clock.seen(now);
        clock
    }

    /// A reading with `event_time` arrived on `shard_id` at processing time `now`.
    pub fn on_event(&mut self, shard_id: &str, event_time: Millis, now: Millis) {
        let clock = self.clock_mut(shard_id, now);
        clock.max_event_time = Some(clock.max_event_time.map_or(event_time, |m| m.max(event_time)));
        clock.last_data_at = Some(clock.last_data_at.map_or(now, |t| t.max(now)));
    }

    /// A heartbeat: processing time moves on, the shard is known, but it sent no data.
    pub fn on_heartbeat(&mut self, shard_id: &str, now: Millis) {
        self.clock_mut(shard_id, now);
    }

    /// End of input on `shard_id` up to `watermark`: no more events before it will come.
    pub fn on_end_of_input(&mut self, shard_id: &str, watermark: Millis, now: Millis) {
        let clock = self.clock_mut(shard_id, now);
        clock.declared_watermark = Some(clock.declared_watermark.map_or(watermark, |w| w.max(watermark)));
        clock.last_data_at = Some(clock.last_data_at.map_or(now, |t| t.max(now)));
    }

    /// The overall watermark at processing time `now`.
    pub fn watermark(&self, now: Millis) -> WatermarkReading {
        let config = &self.config;
        let unseen = config.expected_shards.saturating_sub(self.shards.len());
        let started_at = self.shards.values().map(|c| c.first_seen_at).min();
        // Shards not heard from yet stay silent since the first one was: once that is longer
        // than the timeout they are idle; before, they hold the watermark where nothing started.
        let unseen_hold = unseen > 0 && started_at.is_none_or(|start| now.saturating_sub(start) < config.idle_timeout);
        let (idle, active): (Vec<&ShardClock>, Vec<&ShardClock>) =
            self.shards.values().partition(|c| c.is_idle(config, now));
        let idle_names = idle.iter().map(|c| c.shard_id.clone()).collect();
        let slowest = active.iter().min_by_key(|c| c.watermark(config));
        let watermark = if unseen_hold {
            NO_WATERMARK
        } else if let Some(slowest) = slowest {
            slowest.watermark(config)
        } else {
            idle.iter().map(|c| c.watermark(config)).max().unwrap_or(NO_WATERMARK)
        };
        let held_by = if unseen_hold { None } else { slowest.map(|c| c.shard_id.clone()) };
        WatermarkReading { watermark, held_by, idle: idle_names, unseen }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S0: &str = "shardId-000000000000";
    const S1: &str = "shardId-000000000001";

    fn config() -> WatermarkConfig {
        WatermarkConfig { max_out_of_orderness: 5_000, idle_timeout: 30_000, expected_shards: 2 }
    }

    #[test]
    fn a_shard_watermark_trails_its_largest_event_time_by_the_bound() {
        let mut tracker = WatermarkTracker::new(WatermarkConfig { expected_shards: 1, ..config() });
        assert_eq!(tracker.watermark(0).watermark, NO_WATERMARK);
        tracker.on_event(S0, 100_000, 1);
        assert_eq!(tracker.watermark(1).watermark, 95_000);
        tracker.on_event(S0, 90_000, 2); // out of order: does not pull it back
        assert_eq!(tracker.watermark(2).watermark, 95_000);
        tracker.on_event(S0, 120_000, 3);
        let reading = tracker.watermark(3);
        assert_eq!((reading.watermark, reading.held_by.as_deref()), (115_000, Some(S0)));
        assert_eq!(tracker.clock(S0).unwrap().max_event_time, Some(120_000));
    }

    #[test]
    fn the_overall_watermark_is_the_minimum_across_shards() {
        let mut tracker = WatermarkTracker::new(config());
        tracker.on_event(S0, 100_000, 0);
        assert_eq!(tracker.watermark(0).watermark, NO_WATERMARK, "the second shard has not been heard from");
        assert_eq!(tracker.watermark(0).unseen, 1);
        tracker.on_event(S1, 60_000, 10);
        let reading = tracker.watermark(10);
        assert_eq!((reading.watermark, reading.held_by.as_deref()), (55_000, Some(S1)));
        tracker.on_event(S1, 200_000, 20);
        assert_eq!(tracker.watermark(20).watermark, 95_000);
    }

    #[test]
    fn an_idle_shard_stops_holding_the_watermark_back_after_the_timeout() {
        let mut tracker = WatermarkTracker::new(config());
        tracker.on_event(S0, 10_000, 0);
        tracker.on_event(S1, 10_000, 0);
        // Only shard 0 keeps receiving; shard 1 only sees heartbeats, which are not data.
        for second in 1..=40 {
            tracker.on_event(S0, 10_000 + second * 1000, second * 1000);
            tracker.on_heartbeat(S1, second * 1000);
        }
        assert_eq!(tracker.watermark(29_999).watermark, 5_000, "stalled by shard 1");
        let reading = tracker.watermark(30_000);
        assert_eq!(reading.watermark, 45_000, "the idle shard is left out");
        assert_eq!(reading.idle, [S1]);
        // Shard 1 wakes up: it is active again and holds the minimum once more.
        tracker.on_event(S1, 20_000, 41_000);
        assert_eq!(tracker.watermark(41_000).watermark, 15_000);
        assert_eq!(tracker.clock(S1).unwrap().last_seen_at, 41_000);
    }

    #[test]
    fn a_shard_never_heard_from_holds_the_watermark_only_until_the_timeout() {
        let mut tracker = WatermarkTracker::new(config());
        tracker.on_event(S0, 100_000, 1_000);
        tracker.on_event(S0, 101_000, 30_999);
        assert_eq!(tracker.watermark(30_999).watermark, NO_WATERMARK);
        let reading = tracker.watermark(31_000);
        assert_eq!((reading.watermark, reading.unseen), (96_000, 1));
    }

    #[test]
    fn when_every_shard_is_idle_the_largest_watermark_wins() {
        let mut tracker = WatermarkTracker::new(config());
        tracker.on_event(S0, 100_000, 0);
        tracker.on_event(S1, 50_000, 0);
        assert_eq!(tracker.watermark(1_000).watermark, 45_000);
        let reading = tracker.watermark(60_000);
        assert_eq!((reading.watermark, reading.idle.len(), reading.held_by), (95_000, 2, None));
    }

    #[test]
    fn end_of_input_raises_a_shard_to_the_time_it_names_and_counts_as_data() {
        let mut tracker = WatermarkTracker::new(config());
        tracker.on_event(S0, 100_000, 0);
        tracker.on_event(S1, 100_000, 0);
        tracker.on_end_of_input(S0, 400_000, 10_000);
        tracker.on_end_of_input(S1, 300_000, 10_000);
        assert_eq!(tracker.watermark(10_000).watermark, 300_000);
        tracker.on_end_of_input(S1, 200_000, 11_000); // an older end marker does not lower it
        assert_eq!(tracker.watermark(11_000).watermark, 300_000);
        assert_eq!(tracker.clock(S1).unwrap().last_data_at, Some(11_000));
    }

    #[test]
    fn stored_clocks_give_the_same_watermark() {
        let mut tracker = WatermarkTracker::new(config());
        tracker.on_event(S0, 100_000, 0);
        tracker.on_event(S1, 80_000, 5);
        let stored: Vec<ShardClock> = tracker.clocks().cloned().collect();
        let json = serde_json::to_string(&stored).unwrap();
        let back: Vec<ShardClock> = serde_json::from_str(&json).unwrap();
        let restored = WatermarkTracker::from_clocks(config(), back);
        assert_eq!(restored.watermark(6), tracker.watermark(6));
        assert_eq!(restored.watermark(6).watermark, 75_000);
    }
}
