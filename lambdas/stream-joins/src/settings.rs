//! The function's settings, from its environment (the stack sets them).

use labs_core::time::watermark::WatermarkConfig;
use labs_core::time::windows::Millis;
use thiserror::Error;

use crate::timeline::TimelineTables;
use crate::window::WindowSettings;

/// Which join this function runs: `window`, `replica`, `enrich` or `timeline`.
pub const JOIN_ENV: &str = "JOIN";
/// The join's own state table (window and timeline).
pub const STATE_TABLE_ENV: &str = "STATE_TABLE";
/// Where the join writes its result (window, enrich, timeline).
pub const OUTPUT_TABLE_ENV: &str = "OUTPUT_TABLE";
/// The customer replica (replica writes it, enrich reads it).
pub const REPLICA_TABLE_ENV: &str = "REPLICA_TABLE";
/// The source tables of the timeline, to tell which stream a batch comes from.
pub const POSTS_TABLE_ENV: &str = "POSTS_TABLE";
pub const FOLLOWS_TABLE_ENV: &str = "FOLLOWS_TABLE";
/// The window join's window, its out-of-orderness bound, idleness and shard count (both
/// streams' shards together), in milliseconds.
pub const WINDOW_ENV: &str = "WINDOW_MS";
pub const MAX_OUT_OF_ORDERNESS_ENV: &str = "MAX_OUT_OF_ORDERNESS_MS";
pub const IDLE_TIMEOUT_ENV: &str = "IDLE_TIMEOUT_MS";
pub const SHARD_COUNT_ENV: &str = "SHARD_COUNT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Window,
    Replica,
    Enrich,
    Timeline,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnrichTables {
    pub replica: String,
    pub enriched: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub window: WindowSettings,
    pub tables: EnrichTables,
    pub timeline: TimelineTables,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("{JOIN_ENV} is {0:?}; expected window, replica, enrich or timeline")]
    Mode(String),
    #[error("{0} is not set; the {1} join needs it")]
    Missing(&'static str, &'static str),
    #[error("{name} is {value:?}; expected a whole number of at least 1")]
    Number { name: &'static str, value: String },
}

impl Settings {
    /// Reads the settings through `get` (the environment in the function).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mode_text = get(JOIN_ENV).unwrap_or_default();
        let (mode, name) = match mode_text.as_str() {
            "window" => (Mode::Window, "window"),
            "replica" => (Mode::Replica, "replica"),
            "enrich" => (Mode::Enrich, "enrich"),
            "timeline" => (Mode::Timeline, "timeline"),
            _ => return Err(SettingsError::Mode(mode_text)),
        };
        let table = |var: &'static str, needed: bool| match get(var) {
            Some(value) if !value.is_empty() => Ok(value),
            _ if needed => Err(SettingsError::Missing(var, name)),
            _ => Ok(String::new()),
        };
        let number = |var: &'static str, default: Millis| match get(var) {
            None => Ok(default),
            Some(value) => match value.trim().parse::<Millis>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(SettingsError::Number { name: var, value }),
            },
        };
        let is = |m: Mode| mode == m;
        Ok(Self {
            mode,
            window: WindowSettings {
                state_table: table(STATE_TABLE_ENV, is(Mode::Window))?,
                output_table: table(OUTPUT_TABLE_ENV, is(Mode::Window))?,
                window: number(WINDOW_ENV, 10_000)?,
                watermark: WatermarkConfig {
                    max_out_of_orderness: number(MAX_OUT_OF_ORDERNESS_ENV, 5_000)?,
                    idle_timeout: number(IDLE_TIMEOUT_ENV, 3_600_000)?,
                    expected_shards: number(SHARD_COUNT_ENV, 2)? as usize,
                },
            },
            tables: EnrichTables {
                replica: table(REPLICA_TABLE_ENV, is(Mode::Replica) || is(Mode::Enrich))?,
                enriched: table(OUTPUT_TABLE_ENV, is(Mode::Enrich))?,
            },
            timeline: TimelineTables {
                state: table(STATE_TABLE_ENV, is(Mode::Timeline))?,
                timelines: table(OUTPUT_TABLE_ENV, is(Mode::Timeline))?,
                posts: table(POSTS_TABLE_ENV, is(Mode::Timeline))?,
                follows: table(FOLLOWS_TABLE_ENV, is(Mode::Timeline))?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn each_mode_needs_its_tables_and_says_which_is_missing() {
        let settings =
            Settings::from_lookup(lookup(&[(JOIN_ENV, "window"), (STATE_TABLE_ENV, "s"), (OUTPUT_TABLE_ENV, "o")]))
                .unwrap();
        assert_eq!(
            (settings.mode, settings.window.window, settings.window.watermark.expected_shards),
            (Mode::Window, 10_000, 2)
        );
        let err = Settings::from_lookup(lookup(&[(JOIN_ENV, "enrich"), (OUTPUT_TABLE_ENV, "o")])).unwrap_err();
        assert_eq!(err, SettingsError::Missing(REPLICA_TABLE_ENV, "enrich"));
        assert!(matches!(Settings::from_lookup(lookup(&[(JOIN_ENV, "join")])), Err(SettingsError::Mode(_))));
        let bad = lookup(&[(JOIN_ENV, "replica"), (REPLICA_TABLE_ENV, "r"), (WINDOW_ENV, "0")]);
        assert!(Settings::from_lookup(bad).unwrap_err().to_string().starts_with(WINDOW_ENV));
    }
}
