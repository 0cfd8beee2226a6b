//! The last `labs verify` result of an example, kept on the target itself so any process (the
//! dashboard, another terminal) can read it: a `labs:last-verify` tag, `passed|failed|error
//! <unix seconds>`, on the example's first declared table, or its first stream when it has no
//! table (stream tags are budgeted for recorded runs; a table's are free).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::Tag as TableTag;
use labs_infra::SdkContext;
use labs_infra::stack::{self, Stack};
use serde::Serialize;

use crate::driver::kinesis;
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
    match carrier(target, stack).with_context(|| format!("{} declares no table or stream", stack.example))? {
        Carrier::Table(table) => {
            let arn = table_arn(target, &table).await?;
            let tag = TableTag::builder().key(TAG).value(value).build()?;
            target
                .clients
                .dynamodb
                .tag_resource()
                .resource_arn(arn)
                .tags(tag)
                .send()
                .await
                .doing(format!("tagging {table}"))?;
        }
        Carrier::Stream(stream) => {
            target
                .clients
                .kinesis
                .add_tags_to_stream()
                .stream_name(&stream)
                .tags(TAG, value)
                .send()
                .await
                .doing(format!("tagging {stream}"))?;
        }
    }
    Ok(())
}

/// The example's last recorded verification, if any.
pub async fn read(target: &Target, stack: &Stack) -> Result<Option<Verdict>> {
    let value = match carrier(target, stack) {
        None => None,
        Some(Carrier::Table(table)) => {
            let arn = table_arn(target, &table).await?;
            let tags = target
                .clients
                .dynamodb
                .list_tags_of_resource()
                .resource_arn(arn)
                .send()
                .await
                .doing(format!("reading tags of {table}"))?;
            tags.tags().iter().find(|t| t.key() == TAG).map(|t| t.value().to_owned())
        }
        Some(Carrier::Stream(stream)) => {
            let tags = kinesis::stream_tags(&target.clients.kinesis, &stream).await?;
            tags.into_iter().find(|(key, _)| key == TAG).map(|(_, value)| value)
        }
    };
    Ok(value.as_deref().and_then(Verdict::parse))
}

async fn table_arn(target: &Target, table: &str) -> Result<String> {
    let described =
        target.clients.dynamodb.describe_table().table_name(table).send().await.doing(format!("describing {table}"))?;
    described.table().and_then(|t| t.table_arn()).map(str::to_owned).with_context(|| format!("{table} has no ARN"))
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
