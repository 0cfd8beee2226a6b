//! A part: one seeded set of readings a run produces, recorded as a stream tag
//! (`labs:run:<namespace>:<seed>` = `<start millis>:<readings per device>`) before it is sent, so
//! `verify` regenerates exactly what went out. Pure code: no I/O.

use event_time_windows::Settings;
use labs_core::partition;
use labs_core::time::readings::{self, GeneratedReading, Outage};
use labs_core::time::{Millis, Reading, ReadingSpec, WindowKind};
use serde::Serialize;

/// The readings most scenarios share: six devices, one offline for 90 s, then its backlog.
pub(super) const READINGS: &str = "readings";
/// The idle-shard scenario's: the devices of one shard fall silent after [`IDLE_SILENT_AFTER`].
pub(super) const IDLE: &str = "idle";
/// `labs bench`'s: no outage, played as fast as the stream takes it.
pub(super) const BENCH: &str = "bench";
const NAMESPACES: [&str; 3] = [READINGS, IDLE, BENCH];

/// The shard whose devices fall silent in the idle part.
pub(super) const IDLE_SHARD: usize = 1;
/// True time into the idle part after which that shard's devices send nothing.
pub(super) const IDLE_SILENT_AFTER: Millis = 10_000;
/// Readings per device of the idle part: 54 s, so the silent shard is quiet for 44 s, longer
/// than the 30 s idleness timeout.
const IDLE_READINGS_PER_DEVICE: u32 = 27;

const MINUTE: Millis = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Part {
    pub namespace: String,
    pub seed: u64,
    /// True time of the first readings (a whole minute, after every earlier part's end).
    pub start: Millis,
    pub per_device: u32,
}

impl Part {
    pub fn new(namespace: &str, seed: u64, start: Millis, per_device: u32) -> Self {
        let per_device = if namespace == IDLE { IDLE_READINGS_PER_DEVICE } else { per_device };
        Self { namespace: namespace.to_owned(), seed, start, per_device }
    }

    pub fn tag_name(&self) -> String {
        format!("{}:{}", self.namespace, self.seed)
    }

    pub fn tag_value(&self) -> String {
        format!("{}:{}", self.start, self.per_device)
    }

    /// Reads a recorded tag back; `None` for tags this example did not write.
    pub fn parse(name: &str, value: &str) -> Option<Self> {
        let (namespace, seed) = name.rsplit_once(':')?;
        let namespace = NAMESPACES.into_iter().find(|n| *n == namespace)?;
        let (start, per_device) = value.split_once(':')?;
        Some(Self::new(namespace, seed.parse().ok()?, start.parse().ok()?, per_device.parse().ok()?))
    }

    pub fn spec(&self) -> ReadingSpec {
        let standard = ReadingSpec::standard(&self.namespace, self.seed, self.start);
        let outages = if self.namespace == READINGS { standard.outages.clone() } else { Vec::<Outage>::new() };
        ReadingSpec { readings_per_device: self.per_device, outages, ..standard }
    }

    /// What the part sends, in production order, with the generator's true times.
    pub fn generated(&self) -> Vec<GeneratedReading> {
        let all = readings::generate_with_true_times(&self.spec());
        if self.namespace != IDLE {
            return all;
        }
        let ranges = partition::even_ranges(2);
        all.into_iter()
            .filter(|g| {
                partition::shard_for_key(&ranges, &g.reading.device_id) != Some(IDLE_SHARD)
                    || g.true_event_time < self.start + IDLE_SILENT_AFTER
            })
            .collect()
    }

    pub fn readings(&self) -> Vec<Reading> {
        self.generated().into_iter().map(|g| g.reading).collect()
    }

    /// How much faster than true time the part is played: the readings part's four minutes
    /// take 12 s; the idle part plays in true time, since idleness is judged by arrival time.
    pub fn speed(&self) -> f64 {
        match self.namespace.as_str() {
            IDLE => 1.0,
            BENCH => 1_000.0,
            _ => 20.0,
        }
    }

    /// The watermark the part's end-of-input records declare: past the end of every window of
    /// every kind plus the allowed lateness, on a whole minute, so every window is final.
    pub fn end_watermark(&self, settings: &Settings) -> Millis {
        let last = self.generated().iter().map(|g| g.reading.event_time).max().unwrap_or(self.start);
        let reach = settings
            .kinds
            .iter()
            .map(|kind| match *kind {
                WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => size,
                WindowKind::Session { gap } => gap,
            })
            .max()
            .unwrap_or(MINUTE);
        ceil_minute(last + reach + settings.allowed_lateness)
    }

    /// Whether `reading_id` is one of this part's (`<namespace><seed>-d..`).
    pub fn owns(&self, reading_id: &str) -> bool {
        reading_id.strip_prefix(&format!("{}{}-", self.namespace, self.seed)).is_some()
    }
}

pub(super) fn ceil_minute(time: Millis) -> Millis {
    time + (MINUTE - time.rem_euclid(MINUTE)) % MINUTE
}

/// Where the next part starts: a whole minute at least a minute after every watermark seen so
/// far (a shard's watermark never goes back, so earlier event times would all be late).
pub(super) fn next_start(now: Millis, highest_watermark: Option<Millis>) -> Millis {
    let after_last = highest_watermark.map_or(now, |w| w + MINUTE);
    ceil_minute(now.max(after_last))
}

/// `+m:ss` from `origin`; `none` before any watermark.
pub(super) fn relative(time: Millis, origin: Millis) -> String {
    if time == labs_core::time::NO_WATERMARK {
        return "none".to_owned();
    }
    let offset = time - origin;
    let sign = if offset < 0 { "-" } else { "+" };
    let seconds = offset.abs() as f64 / 1000.0;
    let minutes = (seconds / 60.0).floor();
    format!("{sign}{}:{:04.1}", minutes as i64, seconds - minutes * 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_foreign_tags_are_skipped() {
        let part = Part::new(READINGS, 7, 1_800_000_000_000, 120);
        assert_eq!(Part::parse(&part.tag_name(), &part.tag_value()), Some(part.clone()));
        assert_eq!(Part::parse("other:7", "1:2"), None);
        assert_eq!(Part::parse("readings:x", "1:2"), None);
        assert!(part.owns("readings7-d01-r00003") && !part.owns("readings70-d01-r00003"));
    }

    #[test]
    fn the_idle_part_silences_one_shard_after_ten_seconds() {
        let part = Part::new(IDLE, 3, 1_800_000_000_000, 999);
        assert_eq!(part.per_device, IDLE_READINGS_PER_DEVICE, "the idle part's length is fixed");
        let ranges = partition::even_ranges(2);
        let on = |shard| {
            part.generated()
                .into_iter()
                .filter(|g| partition::shard_for_key(&ranges, &g.reading.device_id) == Some(shard))
                .collect::<Vec<_>>()
        };
        let silent = on(IDLE_SHARD);
        assert!(!silent.is_empty() && silent.iter().all(|g| g.true_event_time < part.start + IDLE_SILENT_AFTER));
        let busy = on(1 - IDLE_SHARD);
        let last = busy.iter().map(|g| g.true_event_time).max().unwrap();
        assert!(last > part.start + IDLE_SILENT_AFTER + 40_000, "the other shard keeps sending: {last}");
    }

    #[test]
    fn parts_follow_each_other_on_whole_minutes() {
        assert_eq!(ceil_minute(120_000), 120_000);
        assert_eq!(ceil_minute(120_001), 180_000);
        assert_eq!(next_start(61_000, None), 120_000);
        assert_eq!(next_start(61_000, Some(600_000)), 660_000);
        let settings = Settings::default();
        let part = Part::new(READINGS, 1, 1_800_000_000_000 - 1_800_000_000_000 % MINUTE, 120);
        let end = part.end_watermark(&settings);
        let last = part.readings().iter().map(|r| r.event_time).max().unwrap();
        assert!(end >= last + 60_000 + 30_000 && end % MINUTE == 0, "{end} {last}");
        assert_eq!(relative(part.start + 95_500, part.start), "+1:35.5");
    }
}
