//! Example 6's data: seeded sensor readings whose devices have skewed clocks, whose readings
//! arrive out of order, and some of which go offline and then send their backlog minutes late
//! (DDIA's mobile-app example); and the control records `labs run` sends to each shard.
//!
//! One definition for the producer in `labs`, both Lambdas and the verifier: the same
//! [`ReadingSpec`] always gives the same readings in the same production order, so the ground
//! truth of every window ([`ground_truth`]) follows from the seed alone.

use std::collections::BTreeMap;

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::windows::{Millis, Window, WindowKind};

/// A reading or control record is about 200 bytes; anything far larger is refused unparsed.
pub const MAX_RECORD_BYTES: usize = 4096;

/// Backlogged readings leave a device this far apart once it is back online.
#[cfg(feature = "generators")]
const BACKLOG_SPACING_MILLIS: Millis = 20;

/// One sensor reading, a record's data (JSON, `"kind": "reading"`). Its partition key is
/// `device_id`, so one device's readings stay on one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub device_id: String,
    /// Unique across runs: namespace, seed, device and index (`tumbling7-d03-r00042`).
    pub reading_id: String,
    /// Integer hundredths of a degree, so sums add up exactly.
    pub value: i64,
    /// When the reading was taken, by the device's clock (which may be skewed): event time.
    pub event_time: Millis,
    /// When the device sent it, by the same clock. `sent_at - event_time` is how long it waited
    /// (minutes for a backlog); the arrival time is the stream's clock.
    pub sent_at: Millis,
}

/// A record's data on the example-6 stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StreamRecord {
    Reading(Reading),
    /// Sent to one shard (with an `ExplicitHashKey`) so its processor runs even when no
    /// readings come: Lambda has no timers, and processing time only moves with records.
    /// Not data: it does not keep a shard from becoming idle.
    Heartbeat {
        sent_at: Millis,
    },
    /// No more readings before `watermark` will come on this shard, so the last windows can
    /// close without waiting for the idleness timeout. A run ends with one on every shard and,
    /// once every shard's row in the watermarks table shows it (`declared_watermark`), one
    /// heartbeat on every shard: each shard's processor only learns of the others' end when it
    /// runs again. Later runs must use later event times: a shard's watermark never goes back.
    EndOfInput {
        watermark: Millis,
        sent_at: Millis,
    },
}

impl StreamRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("stream records serialize")
    }
}

impl Reading {
    /// The record's data as produced into the stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        StreamRecord::Reading(self.clone()).to_bytes()
    }
}

/// Why a record's data is not an example-6 record. One line each.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("the record's data is empty")]
    Empty,
    #[error("the record's data is {bytes} bytes; an example-6 record is at most {MAX_RECORD_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the record's data is not a reading, heartbeat or end-of-input record: {0}")]
    NotARecord(String),
}

/// Reads a record's data.
pub fn parse_record(data: &[u8]) -> Result<StreamRecord, RecordError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(RecordError::Empty);
    }
    if data.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge { bytes: data.len() });
    }
    let record: StreamRecord = serde_json::from_slice(data).map_err(|e| RecordError::NotARecord(e.to_string()))?;
    if let StreamRecord::Reading(reading) = &record
        && (reading.device_id.is_empty() || reading.reading_id.is_empty())
    {
        return Err(RecordError::NotARecord("empty device_id or reading_id".to_owned()));
    }
    Ok(record)
}

/// A device that sends nothing for a while, then everything it measured meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub device: u32,
    /// From `start_millis + from`, for `length`, in true time.
    pub from: Millis,
    pub length: Millis,
}

/// Settings that fully determine a generated set of readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingSpec {
    /// Starts every reading id, so runs of different scenarios can share a stream.
    pub namespace: String,
    pub seed: u64,
    pub devices: u32,
    pub readings_per_device: u32,
    /// True time of the first readings.
    pub start_millis: Millis,
    /// A device measures about this often (each reading jittered by up to half of it).
    pub period_millis: Millis,
    /// Network delay between measuring and sending is 0 up to this, per reading: out of order.
    pub max_delay_millis: Millis,
    /// Each device's clock is off by a seeded amount in `-max_skew..=max_skew`.
    pub max_skew_millis: Millis,
    pub outages: Vec<Outage>,
}

impl ReadingSpec {
    /// A small default: 6 devices, a reading every 2 s each for 4 minutes, up to 3 s of delay,
    /// up to 1.5 s of clock skew, and device 2 offline for 90 s from the first minute on.
    pub fn standard(namespace: &str, seed: u64, start_millis: Millis) -> Self {
        Self {
            namespace: namespace.to_owned(),
            seed,
            devices: 6,
            readings_per_device: 120,
            start_millis,
            period_millis: 2_000,
            max_delay_millis: 3_000,
            max_skew_millis: 1_500,
            outages: vec![Outage { device: 2, from: 60_000, length: 90_000 }],
        }
    }

    pub fn reading_id(&self, device: u32, index: u32) -> String {
        format!("{}{}-d{device:02}-r{index:05}", self.namespace, self.seed)
    }

    /// True time after which nothing of this spec is sent.
    #[cfg(feature = "generators")]
    pub fn last_send_millis(&self) -> Millis {
        generate_with_true_times(self).iter().map(|g| g.true_sent_at).max().unwrap_or(self.start_millis)
    }
}

pub fn device_id(index: u32) -> String {
    format!("device-{index:02}")
}

/// The generator's seed: mixing in the namespace makes two scenarios with one seed differ.
#[cfg(feature = "generators")]
fn mixed_seed(spec: &ReadingSpec) -> u64 {
    spec.namespace
        .bytes()
        .fold(spec.seed ^ 0x2545_f491_4f6c_dd1d, |acc, b| (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// How far device `device`'s clock is ahead of true time (negative: behind).
#[cfg(feature = "generators")]
pub fn clock_skew(spec: &ReadingSpec, device: u32) -> Millis {
    if spec.max_skew_millis <= 0 {
        return 0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mixed_seed(spec) ^ 0x5e3 ^ (u64::from(device) << 32));
    rng.random_range(-spec.max_skew_millis..=spec.max_skew_millis)
}

/// A reading with the true times the generator knows and the stream never sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedReading {
    pub reading: Reading,
    pub true_event_time: Millis,
    /// When it leaves the device in true time: production order.
    pub true_sent_at: Millis,
}

/// The readings `spec` describes, in production order (by true send time), with true times.
#[cfg(feature = "generators")]
pub fn generate_with_true_times(spec: &ReadingSpec) -> Vec<GeneratedReading> {
    let mut rng = ChaCha8Rng::seed_from_u64(mixed_seed(spec));
    let period = spec.period_millis.max(1);
    let mut readings = Vec::new();
    for device in 0..spec.devices {
        let skew = clock_skew(spec, device);
        let phase = rng.random_range(0..period);
        let mut value: i64 = rng.random_range(1_500..2_500);
        let mut backlog = 0;
        for index in 0..spec.readings_per_device {
            let true_event_time =
                spec.start_millis + phase + Millis::from(index) * period + rng.random_range(0..=period / 2);
            let delay = if spec.max_delay_millis > 0 { rng.random_range(0..=spec.max_delay_millis) } else { 0 };
            value = (value + rng.random_range(-40..=40)).clamp(-4_000, 6_000);
            let outage = spec.outages.iter().find(|o| {
                o.device == device
                    && (spec.start_millis + o.from..spec.start_millis + o.from + o.length).contains(&true_event_time)
            });
            let true_sent_at = match outage {
                Some(o) => {
                    backlog += 1;
                    spec.start_millis + o.from + o.length + backlog * BACKLOG_SPACING_MILLIS
                }
                None => true_event_time + delay,
            };
            readings.push(GeneratedReading {
                reading: Reading {
                    device_id: device_id(device),
                    reading_id: spec.reading_id(device, index),
                    value,
                    event_time: true_event_time + skew,
                    sent_at: true_sent_at + skew,
                },
                true_event_time,
                true_sent_at,
            });
        }
    }
    readings.sort_by(|a, b| (a.true_sent_at, &a.reading.reading_id).cmp(&(b.true_sent_at, &b.reading.reading_id)));
    readings
}

/// The readings `spec` describes, in production order.
#[cfg(feature = "generators")]
pub fn generate(spec: &ReadingSpec) -> Vec<Reading> {
    generate_with_true_times(spec).into_iter().map(|g| g.reading).collect()
}

/// A window's count and sum of values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    pub count: u64,
    pub sum: i64,
}

impl Aggregate {
    pub fn add(&mut self, value: i64) {
        self.count += 1;
        self.sum += value;
    }
}

/// Per device and window of `kind`, the count and sum of `readings` by event time: what the
/// event-time windows hold when no reading is too late. Each reading counts once, whatever its
/// position, so the order does not matter.
pub fn ground_truth<'a>(
    readings: impl IntoIterator<Item = &'a Reading>,
    kind: &WindowKind,
) -> BTreeMap<(String, Window), Aggregate> {
    ground_truth_where(readings, kind, |_, _| true)
}

/// [`ground_truth`] over the (reading, window) pairs `accepted` keeps: the windows' truth once
/// the side output is taken out. For sessions `window` is the one the reading alone would open.
pub fn ground_truth_where<'a>(
    readings: impl IntoIterator<Item = &'a Reading>,
    kind: &WindowKind,
    accepted: impl Fn(&Reading, &Window) -> bool,
) -> BTreeMap<(String, Window), Aggregate> {
    let mut truth: BTreeMap<(String, Window), Aggregate> = BTreeMap::new();
    match *kind {
        WindowKind::Session { gap } => {
            let mut per_device: BTreeMap<&str, Vec<(Millis, i64)>> = BTreeMap::new();
            for reading in readings {
                if !accepted(reading, &Window { start: reading.event_time, end: reading.event_time + gap }) {
                    continue;
                }
                per_device.entry(&reading.device_id).or_default().push((reading.event_time, reading.value));
            }
            for (device, mut events) in per_device {
                events.sort();
                let mut session: Option<(Window, Aggregate)> = None;
                for (time, value) in events {
                    session = match session {
                        Some((window, mut aggregate)) if time <= window.end => {
                            aggregate.add(value);
                            Some((Window { start: window.start, end: window.end.max(time + gap) }, aggregate))
                        }
                        finished => {
                            if let Some((window, aggregate)) = finished {
                                truth.insert((device.to_owned(), window), aggregate);
                            }
                            let mut aggregate = Aggregate::default();
                            aggregate.add(value);
                            Some((Window { start: time, end: time + gap }, aggregate))
                        }
                    };
                }
                if let Some((window, aggregate)) = session {
                    truth.insert((device.to_owned(), window), aggregate);
                }
            }
        }
        _ => {
            for reading in readings {
                for window in kind.assign(reading.event_time).into_iter().filter(|w| accepted(reading, w)) {
                    truth.entry((reading.device_id.clone(), window)).or_default().add(reading.value);
                }
            }
        }
    }
    truth
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Millis = 1_767_225_600_000;

    fn spec() -> ReadingSpec {
        ReadingSpec::standard("tumbling", 7, START)
    }

    #[test]
    fn same_spec_same_readings_and_namespaces_differ() {
        let readings = generate(&spec());
        assert_eq!(readings, generate(&spec()));
        assert_eq!(readings.len(), 6 * 120);
        let other = generate(&ReadingSpec { namespace: "session".into(), ..spec() });
        let values = |r: &[Reading]| r.iter().map(|r| r.value).collect::<Vec<_>>();
        assert_ne!(values(&readings), values(&other));
        let mut ids: Vec<&str> = readings.iter().map(|r| r.reading_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), readings.len(), "reading ids are unique");
        assert!(readings.iter().any(|r| r.reading_id == "tumbling7-d03-r00042"));
    }

    #[test]
    fn production_order_is_not_event_time_order() {
        let generated = generate_with_true_times(&spec());
        assert!(generated.windows(2).all(|w| w[0].true_sent_at <= w[1].true_sent_at));
        let out_of_order = generated.windows(2).filter(|w| w[1].reading.event_time < w[0].reading.event_time).count();
        assert!(out_of_order > 50, "readings overtake each other: {out_of_order}");
        // Within one device, the clock skew is constant: event time minus true time.
        let mut skews: BTreeMap<&str, Millis> = BTreeMap::new();
        for g in &generated {
            let skew = g.reading.event_time - g.true_event_time;
            assert_eq!(*skews.entry(&g.reading.device_id).or_insert(skew), skew);
            assert_eq!(g.reading.sent_at - g.true_sent_at, skew);
            assert!(g.reading.sent_at >= g.reading.event_time, "sent after it was measured");
        }
        assert!(skews.values().any(|&s| s != 0) && skews.values().all(|s| s.abs() <= 1_500));
        assert_eq!(skews[device_id(3).as_str()], clock_skew(&spec(), 3));
    }

    #[test]
    fn an_offline_device_sends_its_backlog_when_it_is_back() {
        let spec = spec();
        let generated = generate_with_true_times(&spec);
        let back = START + 60_000 + 90_000;
        let backlog: Vec<&GeneratedReading> = generated
            .iter()
            .filter(|g| g.reading.device_id == device_id(2) && g.reading.sent_at - g.reading.event_time > 10_000)
            .collect();
        assert!(backlog.len() >= 35, "about 45 readings measured during 90 s offline: {}", backlog.len());
        assert!(backlog.iter().all(|g| g.true_sent_at > back && g.true_sent_at < back + 5_000));
        assert!(backlog.iter().all(|g| (START + 60_000..back).contains(&g.true_event_time)));
        // The oldest of them is minutes late.
        let worst = backlog.iter().map(|g| g.true_sent_at - g.true_event_time).max().unwrap();
        assert!(worst > 80_000, "{worst}");
        // Other devices keep sending within the delay bound.
        let others = generated.iter().filter(|g| g.reading.device_id != device_id(2));
        assert!(others.into_iter().all(|g| g.true_sent_at - g.true_event_time <= 3_000));
        assert!(spec.last_send_millis() >= back);
    }

    #[test]
    fn records_round_trip_and_bad_data_is_refused() {
        let reading = generate(&spec()).remove(0);
        let bytes = reading.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"kind":"reading","device_id":"#), "{text}");
        assert_eq!(parse_record(&bytes).unwrap(), StreamRecord::Reading(reading));
        let heartbeat = StreamRecord::Heartbeat { sent_at: 5 };
        assert_eq!(String::from_utf8(heartbeat.to_bytes()).unwrap(), r#"{"kind":"heartbeat","sent_at":5}"#);
        let end = StreamRecord::EndOfInput { watermark: 9, sent_at: 5 };
        assert_eq!(parse_record(&end.to_bytes()).unwrap(), end);
        assert!(String::from_utf8(end.to_bytes()).unwrap().contains(r#""kind":"end-of-input""#));

        let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_RECORD_BYTES));
        let cases: [(&[u8], &str); 6] = [
            (b"", "empty"),
            (b" \n", "empty"),
            (oversized.as_bytes(), "bytes"),
            (b"Hello, this is a test.", "not a reading"),
            (
                br#"{"kind":"reading","device_id":"d","reading_id":"r","value":1,"event_time":"soon","sent_at":1}"#,
                "not a reading",
            ),
            (
                br#"{"kind":"reading","device_id":"","reading_id":"r","value":1,"event_time":1,"sent_at":1}"#,
                "empty device_id",
            ),
        ];
        for (data, wanted) in cases {
            let reason = parse_record(data).unwrap_err().to_string();
            assert!(reason.contains(wanted) && !reason.contains('\n'), "{reason}");
        }
        assert!(parse_record(br#"{"kind":"gremlin"}"#).is_err());
    }

    fn reading(device: &str, time: Millis, value: i64) -> Reading {
        Reading {
            device_id: device.into(),
            reading_id: format!("{device}-{time}"),
            value,
            event_time: time,
            sent_at: time,
        }
    }

    #[test]
    fn ground_truth_per_device_and_window() {
        let readings = [reading("a", 0, 1), reading("a", 59_999, 2), reading("a", 60_000, 4), reading("b", 10, 8)];
        let tumbling = ground_truth(&readings, &WindowKind::Tumbling { size: 60_000 });
        assert_eq!(
            tumbling,
            BTreeMap::from([
                (("a".into(), Window { start: 0, end: 60_000 }), Aggregate { count: 2, sum: 3 }),
                (("a".into(), Window { start: 60_000, end: 120_000 }), Aggregate { count: 1, sum: 4 }),
                (("b".into(), Window { start: 0, end: 60_000 }), Aggregate { count: 1, sum: 8 }),
            ])
        );
        let hopping = ground_truth(&readings, &WindowKind::Hopping { size: 60_000, hop: 30_000 });
        assert_eq!(hopping.values().map(|a| a.count).sum::<u64>(), 8, "each reading in two windows");
        assert_eq!(hopping[&("a".to_owned(), Window { start: 30_000, end: 90_000 })], Aggregate { count: 2, sum: 6 });

        let sessions = ground_truth(
            &[reading("a", 0, 1), reading("a", 30_000, 2), reading("a", 60_001, 4), reading("a", 45_000, 8)],
            &WindowKind::Session { gap: 15_000 },
        );
        assert_eq!(
            sessions.into_iter().collect::<Vec<_>>(),
            [
                (("a".into(), Window { start: 0, end: 15_000 }), Aggregate { count: 1, sum: 1 }),
                (("a".into(), Window { start: 30_000, end: 60_000 }), Aggregate { count: 2, sum: 10 }),
                (("a".into(), Window { start: 60_001, end: 75_001 }), Aggregate { count: 1, sum: 4 }),
            ],
            "exactly gap apart is one session, one millisecond more is two"
        );
    }
}
