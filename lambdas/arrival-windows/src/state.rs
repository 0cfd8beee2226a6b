//! The window's running totals, carried by Lambda from one invocation's response to the next as
//! a map of strings (the shape `aws_lambda_events` gives it, as AWS's own libraries do).

use std::collections::HashMap;

use thiserror::Error;

/// What a window (or the part of it since the state was last fresh) has added up so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowState {
    pub count: u64,
    pub sum: i64,
    /// Heartbeats and end-of-input records: in the window by arrival, but not readings.
    pub control: u64,
    pub unreadable: u64,
    /// The first and last records of this part of the window; the first names the part.
    pub first_sequence_number: String,
    pub last_sequence_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    #[error("the window state's {key:?} is {value:?}, not a number")]
    NotANumber { key: &'static str, value: String },
}

const COUNT: &str = "count";
const SUM: &str = "sum";
const CONTROL: &str = "control";
const UNREADABLE: &str = "unreadable";
const FIRST: &str = "first_sequence_number";
const LAST: &str = "last_sequence_number";

fn number<T: std::str::FromStr + Default>(map: &HashMap<String, String>, key: &'static str) -> Result<T, StateError> {
    match map.get(key) {
        None => Ok(T::default()),
        Some(value) => value.parse().map_err(|_| StateError::NotANumber { key, value: value.clone() }),
    }
}

impl WindowState {
    /// Reads the state Lambda passed in; `{}` (a fresh window) is all zeros.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, StateError> {
        Ok(Self {
            count: number(map, COUNT)?,
            sum: number(map, SUM)?,
            control: number(map, CONTROL)?,
            unreadable: number(map, UNREADABLE)?,
            first_sequence_number: map.get(FIRST).cloned().unwrap_or_default(),
            last_sequence_number: map.get(LAST).cloned().unwrap_or_default(),
        })
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (COUNT.to_owned(), self.count.to_string()),
            (SUM.to_owned(), self.sum.to_string()),
            (CONTROL.to_owned(), self.control.to_string()),
            (UNREADABLE.to_owned(), self.unreadable.to_string()),
            (FIRST.to_owned(), self.first_sequence_number.clone()),
            (LAST.to_owned(), self.last_sequence_number.clone()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_fresh_window_is_zero() {
        assert_eq!(WindowState::from_map(&HashMap::new()).unwrap(), WindowState::default());
        let state = WindowState {
            count: 3,
            sum: -40,
            control: 1,
            unreadable: 2,
            first_sequence_number: "7".into(),
            last_sequence_number: "12".into(),
        };
        assert_eq!(WindowState::from_map(&state.to_map()).unwrap(), state);
    }

    #[test]
    fn a_state_that_is_not_ours_is_refused_with_its_key() {
        let map = HashMap::from([("count".to_owned(), "many".to_owned())]);
        let reason = WindowState::from_map(&map).unwrap_err().to_string();
        assert!(reason.contains("\"count\"") && reason.contains("many"), "{reason}");
        let map = HashMap::from([("sum".to_owned(), "1.5".to_owned())]);
        assert!(WindowState::from_map(&map).unwrap_err().to_string().contains("\"sum\""));
    }
}
