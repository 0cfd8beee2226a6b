//! What example 1's scenarios record on the stream beside the log runs: one tag per producer or
//! consumer, `labs:run:<seed>` = `<scenario> <role> key=value ...`. The seed names its events
//! (`s<seed>-e...`), so `verify` can count in the log what reached it and hold it against the
//! figures the run recorded.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::driver::kinesis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Observed {
    pub scenario: String,
    pub role: String,
    pub values: BTreeMap<String, u64>,
}

impl Observed {
    pub fn new(scenario: &str, role: &str, values: &[(&str, u64)]) -> Self {
        Self {
            scenario: scenario.to_owned(),
            role: role.to_owned(),
            values: values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    pub fn tag_value(&self) -> String {
        let mut words = vec![self.scenario.clone(), self.role.clone()];
        words.extend(self.values.iter().map(|(k, v)| format!("{k}={v}")));
        words.join(" ")
    }

    /// `None` unless the value names a scenario of `known` and every figure reads as a number.
    pub fn parse(value: &str, known: &[&str]) -> Option<Self> {
        let mut words = value.split(' ');
        let scenario = words.next().filter(|s| known.contains(s))?;
        let role = words.next()?;
        let mut values = BTreeMap::new();
        for word in words {
            let (key, number) = word.split_once('=')?;
            values.insert(key.to_owned(), number.parse().ok()?);
        }
        Some(Self { scenario: scenario.to_owned(), role: role.to_owned(), values })
    }

    /// A recorded figure; a figure the run did not record reads as zero.
    pub fn get(&self, key: &str) -> u64 {
        self.values.get(key).copied().unwrap_or(0)
    }
}

/// Records (or replaces) what the producer or consumer of `seed` observed, on the stream.
pub(super) async fn record(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    seed: u64,
    observed: &Observed,
) -> Result<()> {
    kinesis::record_run(client, stream, &seed.to_string(), &observed.tag_value()).await
}

/// What the log holds of one seed's events: how many distinct ones, and how many twice or more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(super) struct InLog {
    pub distinct: u64,
    pub duplicated: u64,
}

/// One check `verify` makes of a scenario's record.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ScenarioCheck {
    pub seed: u64,
    pub check: String,
    pub passed: bool,
    pub details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_others_are_refused() {
        let observed = Observed::new("durability", "fire-and-forget", &[("sent", 200), ("refused", 41)]);
        let value = observed.tag_value();
        assert_eq!(value, "durability fire-and-forget refused=41 sent=200");
        assert_eq!(Observed::parse(&value, &["durability"]), Some(observed.clone()));
        assert_eq!(Observed::parse(&value, &["overload"]), None, "not a scenario of this example");
        assert_eq!(Observed::parse("durability acked sent=many", &["durability"]), None);
        assert_eq!(Observed::parse("1000 after:s:1:2", &["durability"]), None, "a log run's value");
        assert_eq!(observed.get("lost"), 0);
    }
}
