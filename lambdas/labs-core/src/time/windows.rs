//! Window assignment by event time: tumbling, hopping (sliding by a hop) and session windows.
//!
//! A window is the half-open interval `[start, end)` in milliseconds since the Unix epoch.
//! Tumbling and hopping windows are aligned to the epoch (a 60 s window starts on whole
//! minutes), as Flink's and Kafka Streams' are. A session window cannot be assigned on its own:
//! each event opens `[t, t + gap)` and the operator merges the ones that touch (see
//! [`Window::touches`]), so two events share a session when they are at most `gap` apart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Milliseconds since the Unix epoch (event time or processing time, as the name says).
pub type Millis = i64;

/// The interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: Millis,
    pub end: Millis,
}

impl Window {
    pub fn contains(&self, time: Millis) -> bool {
        self.start <= time && time < self.end
    }

    /// Whether two session windows merge: they overlap or one ends where the other starts
    /// (Flink's `TimeWindow.intersects`).
    pub fn touches(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    pub fn cover(&self, other: &Window) -> Window {
        Window { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// How events are grouped into windows. Durations are positive milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling { size: Millis },
    /// Windows of `size` starting every `hop`; an event is in `size / hop` of them (rounded up).
    Hopping { size: Millis, hop: Millis },
    /// Per key, events at most `gap` apart, and the `gap` after the last one.
    Session { gap: Millis },
}

impl WindowKind {
    /// The windows an event at `time` belongs to, earliest first. Empty for sessions, which the
    /// operator builds by merging (see [`WindowKind::session_of`]).
    pub fn assign(&self, time: Millis) -> Vec<Window> {
        match *self {
            WindowKind::Tumbling { size } => {
                let start = time - time.rem_euclid(size);
                vec![Window { start, end: start + size }]
            }
            WindowKind::Hopping { size, hop } => {
                let last_start = time - time.rem_euclid(hop);
                let mut windows = Vec::new();
                let mut start = last_start;
                while start > time - size {
                    windows.push(Window { start, end: start + size });
                    start -= hop;
                }
                windows.reverse();
                windows
            }
            WindowKind::Session { .. } => Vec::new(),
        }
    }

    /// The proto-window a single event opens under a session kind.
    pub fn session_of(&self, time: Millis) -> Option<Window> {
        match *self {
            WindowKind::Session { gap } => Some(Window { start: time, end: time + gap }),
            _ => None,
        }
    }

    pub fn is_session(&self) -> bool {
        matches!(self, WindowKind::Session { .. })
    }

    /// The windows of an event whatever the kind: for sessions, its proto-window.
    pub fn windows_of(&self, time: Millis) -> Vec<Window> {
        match self.session_of(time) {
            Some(window) => vec![window],
            None => self.assign(time),
        }
    }
}

/// `60s`, `1500ms`, `2m`.
fn format_duration(millis: Millis) -> String {
    if millis % 60_000 == 0 {
        format!("{}m", millis / 60_000)
    } else if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

fn parse_duration(text: &str) -> Result<Millis, WindowKindError> {
    let bad = || WindowKindError::Duration(text.to_owned());
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let value: Millis = digits.parse().map_err(|_| bad())?;
    let millis = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    if millis <= 0 {
        return Err(bad());
    }
    Ok(millis)
}

/// The kind's name, used in table keys and configuration: `tumbling-1m`, `hopping-1m-20s`,
/// `session-30s`. [`FromStr`] reads it back.
impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WindowKind::Tumbling { size } => write!(f, "tumbling-{}", format_duration(size)),
            WindowKind::Hopping { size, hop } => {
                write!(f, "hopping-{}-{}", format_duration(size), format_duration(hop))
            }
            WindowKind::Session { gap } => write!(f, "session-{}", format_duration(gap)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WindowKindError {
    #[error("{0:?} is not a duration such as 500ms, 30s or 2m")]
    Duration(String),
    #[error("{0:?} is not a window kind: tumbling-SIZE, hopping-SIZE-HOP or session-GAP (e.g. hopping-1m-20s)")]
    Kind(String),
    #[error("hopping window {0:?}: the hop must be at most the size, and divide it")]
    Hop(String),
}

impl FromStr for WindowKind {
    type Err = WindowKindError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.trim().split('-').collect();
        match parts.as_slice() {
            ["tumbling", size] => Ok(WindowKind::Tumbling { size: parse_duration(size)? }),
            ["hopping", size, hop] => {
                let (size, hop) = (parse_duration(size)?, parse_duration(hop)?);
                if hop > size || size % hop != 0 {
                    return Err(WindowKindError::Hop(text.to_owned()));
                }
                Ok(WindowKind::Hopping { size, hop })
            }
            ["session", gap] => Ok(WindowKind::Session { gap: parse_duration(gap)? }),
            _ => Err(WindowKindError::Kind(text.to_owned())),
        }
    }
}

/// Reads a comma-separated list of kinds (`tumbling-1m,hopping-1m-20s,session-30s`).
pub fn parse_kinds(text: &str) -> Result<Vec<WindowKind>, WindowKindError> {
    text.split(',').filter(|part| !part.trim().is_empty()).map(str::parse).collect()
}

impl Serialize for WindowKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WindowKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn tumbling_windows_are_aligned_and_half_open() {
        let kind = WindowKind::Tumbling { size: MIN };
        assert_eq!(kind.assign(0), [Window { start: 0, end: MIN }]);
        assert_eq!(kind.assign(MIN - 1), [Window { start: 0, end: MIN }]);
        assert_eq!(kind.assign(MIN), [Window { start: MIN, end: 2 * MIN }]);
        assert_eq!(kind.assign(-1), [Window { start: -MIN, end: 0 }], "before the epoch too");
    }

    #[test]
    fn hopping_windows_hold_an_event_size_over_hop_times() {
        let kind = WindowKind::Hopping { size: MIN, hop: 20_000 };
        let windows = kind.assign(65_000);
        assert_eq!(
            windows,
            [
                Window { start: 20_000, end: 80_000 },
                Window { start: 40_000, end: 100_000 },
                Window { start: 60_000, end: 120_000 }
            ]
        );
        assert!(windows.iter().all(|w| w.contains(65_000)));
        // On a boundary the window ending there no longer holds it.
        assert_eq!(kind.assign(60_000).first(), Some(&Window { start: 20_000, end: 80_000 }));
        // A hop equal to the size is a tumbling window.
        let same = WindowKind::Hopping { size: MIN, hop: MIN };
        assert_eq!(same.assign(65_000), WindowKind::Tumbling { size: MIN }.assign(65_000));
    }

    #[test]
    fn sessions_open_a_gap_long_proto_window_that_merges_when_touching() {
        let kind = WindowKind::Session { gap: 30_000 };
        assert!(kind.assign(5).is_empty());
        let a = kind.session_of(0).unwrap();
        let b = kind.session_of(30_000).unwrap();
        let c = kind.session_of(60_001).unwrap();
        assert!(a.touches(&b) && b.touches(&a), "exactly gap apart: one session");
        assert!(!b.touches(&c));
        assert_eq!(a.cover(&b), Window { start: 0, end: 60_000 });
        assert_eq!(kind.windows_of(7), [Window { start: 7, end: 30_007 }]);
    }

    #[test]
    fn kinds_have_names_that_read_back() {
        let kinds = [
            WindowKind::Tumbling { size: MIN },
            WindowKind::Hopping { size: MIN, hop: 20_000 },
            WindowKind::Session { gap: 1500 },
        ];
        let names: Vec<String> = kinds.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["tumbling-1m", "hopping-1m-20s", "session-1500ms"]);
        for (kind, name) in kinds.iter().zip(&names) {
            assert_eq!(&name.parse::<WindowKind>().unwrap(), kind);
        }
        assert_eq!(parse_kinds("tumbling-60s, session-30s,").unwrap().len(), 2);
        assert_eq!("tumbling-60s".parse::<WindowKind>().unwrap(), kinds[0]);
        let json = serde_json::to_string(&kinds[1]).unwrap();
        assert_eq!(json, "\"hopping-1m-20s\"");
        assert_eq!(serde_json::from_str::<WindowKind>(&json).unwrap(), kinds[1]);
    }

    #[test]
    fn bad_kinds_are_refused_with_one_line_reasons() {
        for (text, wanted) in [
            ("tumbling", "not a window kind"),
            ("tumbling-0s", "not a duration"),
            ("tumbling-5h", "not a duration"),
            ("tumbling--5s", "not a window kind"),
            ("hopping-1m-40s", "divide"),
            ("hopping-20s-1m", "at most the size"),
            ("sliding-1m", "not a window kind"),
            ("session-99999999999999999m", "not a duration"),
        ] {
            let reason = text.parse::<WindowKind>().unwrap_err().to_string();
            assert!(reason.contains(wanted) && !reason.contains('\n'), "{text}: {reason}");
        }
    }
}
