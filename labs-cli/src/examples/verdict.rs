//! The last `labs verify` result of an example, kept on the target itself so any process (the
//! dashboard, another terminal) can read it: a `labs:last-verify` tag, `passed|failed|error
//! <unix seconds>`, on the example's first declared table, or its first stream when it has no
//! table (stream tags are budgeted for recorded runs; a table's are free).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use labs_infra::stack::{self, Stack};
use serde::Serialize;

use crate::driver::{dynamodb, kinesis};
use crate::target::Target;

const TAG: &str = "labs:last-verify";

/// How a verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    Failed,
    /// It could not check (a missing resource, an unreachable target).
    Error,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
        }
    }
}

/// A recorded result: what it was and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub at_unix_seconds: u64,
}

impl Verdict {
    /// The tag value: words and digits only, which every service's tag rules accept.
    fn to_tag(&self) -> String {
        format!("{} {}", self.outcome.word(), self.at_unix_seconds)
    }

    fn parse(value: &str) -> Option<Self> {
        let (word, seconds) = value.split_once(' ')?;
        let outcome = [Outcome::Passed, Outcome::Failed, Outcome::Error].into_iter().find(|o| o.word() == word)?;
        Some(Self { outcome, at_unix_seconds: seconds.parse().ok()? })
    }
}

/// Where an example's verdict lives.
enum Carrier {
    Table(String),
    Stream(String),
}

fn carrier(target: &Target, stack: &Stack) -> Option<Carrier> {
    let full = |name: &str| stack::full_name(&target.prefix, name);
    stack
        .dynamodb_tables
        .first()
        .map(|t| Carrier::Table(full(&t.name)))
        .or_else(|| stack.kinesis_streams.first().map(|s| Carrier::Stream(full(&s.name))))
}

/// Records `outcome` as the example's last verification.
pub async fn record(target: &Target, stack: &Stack, outcome: Outcome) -> Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let value = Verdict { outcome, at_unix_seconds: now }.to_tag();
    // A Kafka lab with no AWS resource has nothing to carry a tag (Kafka topics have none).
    if carrier(target, stack).is_none() && !stack.kafka_topics.is_empty() {
        return Ok(());
    }
    match carrier(target, stack).with_context(|| format!("{} declares no table or stream", stack.example))? {
        Carrier::Table(table) => dynamodb::tag_table(&target.clients.dynamodb, &table, TAG, &value).await,
        Carrier::Stream(stream) => kinesis::tag_stream(&target.clients.kinesis, &stream, TAG, &value).await,
    }
}

/// The example's last recorded verification, if any.
pub async fn read(target: &Target, stack: &Stack) -> Result<Option<Verdict>> {
    let tags = match carrier(target, stack) {
        None => Vec::new(),
        Some(Carrier::Table(table)) => dynamodb::table_tags(&target.clients.dynamodb, &table).await?,
        Some(Carrier::Stream(stream)) => kinesis::stream_tags(&target.clients.kinesis, &stream).await?,
    };
    Ok(tags.into_iter().find(|(key, _)| key == TAG).and_then(|(_, value)| Verdict::parse(&value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_survives_its_tag_and_odd_values_are_none() {
        for outcome in [Outcome::Passed, Outcome::Failed, Outcome::Error] {
            let verdict = Verdict { outcome, at_unix_seconds: 1_764_572_741 };
            assert_eq!(Verdict::parse(&verdict.to_tag()), Some(verdict));
        }
        assert_eq!(Verdict::parse("passed"), None);
        assert_eq!(Verdict::parse("won 12"), None);
        assert_eq!(Verdict::parse("passed soon"), None);
    }
}
