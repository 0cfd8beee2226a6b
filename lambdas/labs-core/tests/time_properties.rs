//! Properties of the event-time window operator (`labs_core::time`), fed readings in arbitrary
//! orders with the bounded out-of-orderness watermark of one shard:
//!
//! - any arrival order within the bound gives the final windows of the ground truth, and no
//!   side output;
//! - in any arrival order at all, every (reading, window) pair is counted once: in its final
//!   window or in the side output.

use std::collections::{BTreeMap, BTreeSet};

use labs_core::time::{
    Aggregate, Millis, Output, Reading, WatermarkConfig, WatermarkTracker, Window, WindowKind, WindowOperator,
    ground_truth, ground_truth_where,
};
use proptest::prelude::*;

const SHARD: &str = "shardId-000000000000";

/// Times on a grid of a quarter second, so that events often fall exactly on a window's edge or
/// on the watermark.
const TICK: Millis = 250;

fn ticks(range: std::ops::Range<i64>) -> impl Strategy<Value = Millis> {
    range.prop_map(|n| n * TICK)
}

/// Readings of up to three devices within two minutes. Values are distinct, so a side-output
/// entry names its reading.
fn readings() -> impl Strategy<Value = Vec<Reading>> {
    prop::collection::vec((0..3u32, ticks(0..480)), 0..60).prop_map(|drawn| {
        drawn
            .into_iter()
            .enumerate()
            .map(|(i, (device, event_time))| Reading {
                device_id: format!("d{device}"),
                reading_id: format!("r{i}"),
                value: i as i64 + 1,
                event_time,
                sent_at: event_time,
            })
            .collect()
    })
}

fn kinds() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        prop::sample::select(vec![1_000, 5_000, 10_000]).prop_map(|size| WindowKind::Tumbling { size }),
        prop::sample::select(vec![2_500, 5_000]).prop_map(|hop| WindowKind::Hopping { size: 10_000, hop }),
        ticks(1..20).prop_map(|gap| WindowKind::Session { gap }),
    ]
}

/// What the operator made of one arrival order.
struct Run {
    /// Each (key, window) emitted final, once.
    finals: BTreeMap<(String, Window), Aggregate>,
    /// The side output: (key, window, value).
    late: Vec<(String, Window, i64)>,
}

/// Feeds `arrivals` in order, the watermark (largest event time seen minus `bound`) moving after
/// each batch of `batch` readings, then the end of input.
fn run(kind: WindowKind, bound: Millis, lateness: Millis, arrivals: &[&Reading], batch: usize) -> Run {
    let config = WatermarkConfig { max_out_of_orderness: bound, idle_timeout: Millis::MAX, expected_shards: 1 };
    let mut tracker = WatermarkTracker::new(config);
    let mut operator = WindowOperator::new(kind, lateness);
    let mut outputs = Vec::new();
    for chunk in arrivals.chunks(batch.max(1)) {
        for reading in chunk {
            tracker.on_event(SHARD, reading.event_time, reading.sent_at);
            outputs.extend(operator.process_element(&reading.device_id, reading.event_time, reading.value));
        }
        outputs.extend(operator.process_watermark(tracker.watermark(0).watermark));
    }
    outputs.extend(operator.process_watermark(Millis::MAX));
    assert_eq!(operator.open_windows().count(), 0, "the end of input leaves no state");
    let mut finals = BTreeMap::new();
    let mut late = Vec::new();
    for output in outputs {
        match output {
            Output::Emitted(result) if result.is_final => {
                let aggregate = Aggregate { count: result.count, sum: result.sum };
                let again = finals.insert((result.key.clone(), result.window), aggregate);
                assert!(again.is_none(), "{} {:?} was made final twice", result.key, result.window);
            }
            Output::Late(event) => late.push((event.key, event.window, event.value)),
            _ => {}
        }
    }
    Run { finals, late }
}

/// The readings in an order where each arrives at most `bound` behind any earlier one: sorted
/// by event time plus a delay of at most `bound` each (none, all of it, or a share).
fn within_bound<'a>(readings: &'a [Reading], delays: &[u8], bound: Millis) -> Vec<&'a Reading> {
    let delay = |drawn: u8| match drawn {
        0..=84 => 0,
        85..=169 => bound,
        share => bound * Millis::from(share - 170) / 85,
    };
    let mut order: Vec<(Millis, usize)> =
        readings.iter().enumerate().map(|(i, r)| (r.event_time + delay(delays[i]), i)).collect();
    order.sort();
    order.into_iter().map(|(_, i)| &readings[i]).collect()
}

/// Often none, the edge case.
fn lateness() -> impl Strategy<Value = Millis> {
    prop_oneof![Just(0), ticks(1..12)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_order_within_the_bound_gives_the_ground_truth_and_no_side_output(
        readings in readings(),
        kind in kinds(),
        bound in ticks(0..20),
        lateness in lateness(),
        delays in prop::collection::vec(any::<u8>(), 60),
        batch in 1..8usize,
    ) {
        let arrivals = within_bound(&readings, &delays, bound);
        let outcome = run(kind, bound, lateness, &arrivals, batch);
        prop_assert!(outcome.late.is_empty(), "late within the bound: {:?}", outcome.late);
        prop_assert_eq!(outcome.finals, ground_truth(&readings, &kind));
    }

    #[test]
    fn in_any_order_each_reading_is_counted_once_in_a_final_window_or_the_side_output(
        (readings, order) in readings().prop_flat_map(|readings| {
            let positions: Vec<usize> = (0..readings.len()).collect();
            (Just(readings), Just(positions).prop_shuffle())
        }),
        kind in kinds(),
        bound in ticks(0..20),
        lateness in lateness(),
        batch in 1..8usize,
    ) {
        let arrivals: Vec<&Reading> = order.iter().map(|&i| &readings[i]).collect();
        let outcome = run(kind, bound, lateness, &arrivals, batch);
        let late: BTreeSet<(String, Window, i64)> = outcome.late.iter().cloned().collect();
        prop_assert_eq!(late.len(), outcome.late.len(), "a reading went to the side output twice for one window");
        let truth = ground_truth_where(&readings, &kind, |r, w| !late.contains(&(r.device_id.clone(), *w, r.value)));
        prop_assert_eq!(outcome.finals, truth);
        // Every side-output entry is a pair of a real reading and one of its windows.
        for (key, window, value) in &late {
            let reading = readings.iter().find(|r| r.value == *value).unwrap();
            prop_assert_eq!(&reading.device_id, key);
            prop_assert!(kind.windows_of(reading.event_time).contains(window), "{:?} is not a window of {:?}", window, reading);
        }
    }
}

/// The boundary the random cases rarely hit: an on-time event (event time equal to the
/// watermark) that touches a session ending exactly there.
#[test]
fn an_event_at_the_watermark_still_joins_the_session_it_touches() {
    let reading = |device: &str, i: i64, event_time: Millis| Reading {
        device_id: device.into(),
        reading_id: format!("r{i}"),
        value: i,
        event_time,
        sent_at: event_time,
    };
    let readings = [reading("d0", 1, 0), reading("d1", 2, 1_000), reading("d0", 3, 1_000)];
    let kind = WindowKind::Session { gap: 1_000 };
    let outcome = run(kind, 0, 0, &readings.iter().collect::<Vec<_>>(), 1);
    assert_eq!(outcome.late, [], "the last reading is not behind the watermark");
    assert_eq!(outcome.finals, ground_truth(&readings, &kind));
}
