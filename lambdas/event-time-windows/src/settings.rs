//! The function's settings, from its environment (the stack sets them).

use labs_core::time::watermark::WatermarkConfig;
use labs_core::time::windows::{Millis, WindowKind, WindowKindError, parse_kinds};
use thiserror::Error;

/// Window kinds to compute, comma-separated (`tumbling-1m,hopping-1m-20s,session-30s`).
pub const WINDOW_KINDS_ENV: &str = "WINDOW_KINDS";
/// How long after a window's end a late reading still revises it, in milliseconds.
pub const ALLOWED_LATENESS_ENV: &str = "ALLOWED_LATENESS_MS";
/// How far behind a shard's largest event time a reading may arrive on time, in milliseconds.
pub const MAX_OUT_OF_ORDERNESS_ENV: &str = "MAX_OUT_OF_ORDERNESS_MS";
/// Processing time without data after which a shard no longer holds the watermark back.
pub const IDLE_TIMEOUT_ENV: &str = "IDLE_TIMEOUT_MS";
/// Shards of the stream, so one not heard from yet holds the watermark back (until idle).
pub const SHARD_COUNT_ENV: &str = "SHARD_COUNT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub kinds: Vec<WindowKind>,
    pub allowed_lateness: Millis,
    pub watermark: WatermarkConfig,
    /// A step's effects are written once they hold this many items, at the next record
    /// boundary: one write then stays within a DynamoDB transaction (100 items) unless a single
    /// record moves very many windows. Not read from the environment.
    pub commit_at_items: usize,
}

impl Default for Settings {
    /// What example 6 deploys: per-minute tumbling windows, one-minute windows every 20 s,
    /// 30 s sessions; 30 s of allowed lateness, 5 s of out-of-orderness, 30 s of idleness.
    fn default() -> Self {
        Self {
            kinds: vec![
                WindowKind::Tumbling { size: 60_000 },
                WindowKind::Hopping { size: 60_000, hop: 20_000 },
                WindowKind::Session { gap: 30_000 },
            ],
            allowed_lateness: 30_000,
            watermark: WatermarkConfig { max_out_of_orderness: 5_000, idle_timeout: 30_000, expected_shards: 2 },
            commit_at_items: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("{name}: {problem}")]
    Kinds { name: &'static str, problem: WindowKindError },
    #[error("{name} is {value:?}; expected a whole number of at least {min}")]
    Number { name: &'static str, value: String, min: i64 },
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: i64,
    min: i64,
) -> Result<i64, SettingsError> {
    match get(name) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<i64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(SettingsError::Number { name, value, min }),
        },
    }
}

impl Settings {
    /// Reads the settings through `get` (the environment in the function); absent ones default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let defaults = Settings::default();
        let kinds = match get(WINDOW_KINDS_ENV) {
            None => defaults.kinds,
            Some(text) => {
                parse_kinds(&text).map_err(|problem| SettingsError::Kinds { name: WINDOW_KINDS_ENV, problem })?
            }
        };
        Ok(Self {
            kinds,
            allowed_lateness: number(&get, ALLOWED_LATENESS_ENV, defaults.allowed_lateness, 0)?,
            watermark: WatermarkConfig {
                max_out_of_orderness: number(
                    &get,
                    MAX_OUT_OF_ORDERNESS_ENV,
                    defaults.watermark.max_out_of_orderness,
                    0,
                )?,
                idle_timeout: number(&get, IDLE_TIMEOUT_ENV, defaults.watermark.idle_timeout, 1)?,
                expected_shards: number(&get, SHARD_COUNT_ENV, defaults.watermark.expected_shards as i64, 1)? as usize,
            },
            commit_at_items: defaults.commit_at_items,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn absent_settings_default_and_present_ones_are_read() {
        assert_eq!(Settings::from_lookup(lookup(&[])).unwrap(), Settings::default());
        let settings = Settings::from_lookup(lookup(&[
            (WINDOW_KINDS_ENV, "tumbling-10s"),
            (ALLOWED_LATENESS_ENV, "0"),
            (MAX_OUT_OF_ORDERNESS_ENV, "2000"),
            (IDLE_TIMEOUT_ENV, "15000"),
            (SHARD_COUNT_ENV, "4"),
        ]))
        .unwrap();
        assert_eq!(settings.kinds, [WindowKind::Tumbling { size: 10_000 }]);
        assert_eq!(settings.allowed_lateness, 0);
        assert_eq!(
            settings.watermark,
            WatermarkConfig { max_out_of_orderness: 2_000, idle_timeout: 15_000, expected_shards: 4 }
        );
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (pairs, wanted) in [
            (vec![(WINDOW_KINDS_ENV, "sliding-1m")], "WINDOW_KINDS"),
            (vec![(ALLOWED_LATENESS_ENV, "-1")], "ALLOWED_LATENESS_MS"),
            (vec![(IDLE_TIMEOUT_ENV, "0")], "IDLE_TIMEOUT_MS"),
            (vec![(SHARD_COUNT_ENV, "two")], "SHARD_COUNT"),
        ] {
            let reason = Settings::from_lookup(lookup(&pairs)).unwrap_err().to_string();
            assert!(reason.starts_with(wanted) && !reason.contains('\n'), "{reason}");
        }
    }
}
