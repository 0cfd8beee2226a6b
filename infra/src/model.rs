//! The vocabulary the engine and the resource kinds share: what a plan and a removal say, the
//! context a kind works in, and the [`Resource`] trait the engine dispatches through. It imports
//! neither the engine nor any kind, so neither side imports the other.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::Result;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::stack::Vars;
use crate::{Clients, TAG_CREATED_AT, TAG_EXAMPLE, TAG_PREFIX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    IamRole,
    KinesisStream,
    DynamodbTable,
    SnsTopic,
    SqsQueue,
    SnsSubscription,
    LambdaFunction,
    EventSourceMapping,
    /// On the Kafka broker; applied by the CLI (infra holds no Kafka client), listed here so its
    /// plan and removal rows read like every other resource's.
    KafkaTopic,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::IamRole => "IAM role",
            Kind::KinesisStream => "Kinesis stream",
            Kind::DynamodbTable => "DynamoDB table",
            Kind::SnsTopic => "SNS topic",
            Kind::SqsQueue => "SQS queue",
            Kind::SnsSubscription => "SNS subscription",
            Kind::LambdaFunction => "Lambda function",
            Kind::EventSourceMapping => "event source mapping",
            Kind::KafkaTopic => "Kafka topic",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "reason")]
pub enum Action {
    Create,
    /// What drifted, in words.
    Update(String),
    Unchanged,
    /// Something exists under the declared name but its tags do not say this prefix made it: it is
    /// never adopted, and `apply` refuses the whole plan. The reason says what its tags say.
    Conflict(String),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create => f.write_str("create"),
            Action::Update(reason) => write!(f, "update ({reason})"),
            Action::Unchanged => f.write_str("unchanged"),
            Action::Conflict(reason) => write!(f, "CONFLICT: not ours ({reason})"),
        }
    }
}

/// One resource in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    /// The settings it will have, for the learner to read before confirming.
    pub settings: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub example: String,
    pub prefix: String,
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.changes.iter().all(|c| c.action == Action::Unchanged)
    }

    /// The resources that exist under our names without our tags.
    pub fn conflicts(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| matches!(c.action, Action::Conflict(_)))
    }

    /// A one-line error naming the first resource under our name that labs did not create.
    pub fn refuse_conflicts(&self) -> anyhow::Result<()> {
        let Some(conflict) = self.conflicts().next() else { return Ok(()) };
        let Action::Conflict(reason) = &conflict.action else { unreachable!("conflicts() yields conflicts") };
        let others = self.conflicts().count() - 1;
        let more = if others > 0 { format!(" (and {others} more)") } else { String::new() };
        anyhow::bail!(
            "{} {} exists but labs did not create it ({reason}){more}: nothing was changed; remove it or \
             choose another prefix",
            conflict.kind,
            conflict.name
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "reason")]
pub enum Removal {
    Deleted,
    Absent,
    /// It exists but its tags do not say this prefix made it, so it was left alone.
    LeftAlone(String),
    /// Removing it failed; the other rows were still attempted.
    Failed(String),
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Removal::Deleted => f.write_str("deleted"),
            Removal::Absent => f.write_str("already gone"),
            Removal::LeftAlone(reason) => write!(f, "left alone: {reason}"),
            Removal::Failed(reason) => write!(f, "FAILED: {reason}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub kind: Kind,
    pub name: String,
    pub removal: Removal,
}

/// What `destroy` returns when some rows failed: every row, so the caller can still show them all.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", incomplete_summary(.removed))]
pub struct DestroyIncomplete {
    pub removed: Vec<Removed>,
}

fn incomplete_summary(removed: &[Removed]) -> String {
    let failed: Vec<String> = removed
        .iter()
        .filter_map(|r| match &r.removal {
            Removal::Failed(reason) => Some(format!("{} {} ({reason})", r.kind, r.name)),
            _ => None,
        })
        .collect();
    format!("{} of {} resources could not be removed: {}", failed.len(), removed.len(), failed.join("; "))
}

/// A built function: the zip to upload and the hash that says whether it changed.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub zip: Vec<u8>,
    /// Hex SHA-256 of the `bootstrap` binary (zips carry timestamps, binaries do not).
    pub code_sha256: String,
}

/// Told about each step as it starts, so the CLI can show progress.
pub trait Progress: Sync {
    fn step(&self, message: &str);
}

impl<F: Fn(&str) + Sync> Progress for F {
    fn step(&self, message: &str) {
        self(message)
    }
}

/// Everything a resource kind needs to do its work.
pub(crate) struct Ctx<'a> {
    pub clients: &'a Clients,
    pub vars: &'a Vars,
    pub example: &'a str,
    pub artifacts: &'a HashMap<String, Artifact>,
    /// The creation time this run tags what it creates with (one value for the whole run).
    pub created_at: &'a str,
}

impl Ctx<'_> {
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = crate::tags(self.example, &self.vars.prefix);
        tags.insert(TAG_CREATED_AT.to_owned(), self.created_at.to_owned());
        tags
    }

    /// Whether tags read back from a resource say this prefix made it for this example.
    pub fn owns(&self, tags: &[Tag]) -> Result<(), String> {
        let tag = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        match (tag(TAG_PREFIX), tag(TAG_EXAMPLE)) {
            (Some(p), Some(e)) if p == self.vars.prefix && e == self.example => Ok(()),
            (None, _) | (_, None) => Err("it has no labs tags".to_owned()),
            (Some(p), Some(e)) => Err(format!("its tags say {e}, prefix {p}")),
        }
    }

    /// The plan's verdict on a resource that exists: `Conflict` unless its tags say it is ours.
    pub fn conflict_unless_owned(&self, tags: &[Tag]) -> Option<Action> {
        self.owns(tags).err().map(Action::Conflict)
    }

    /// Our tags that `current` lacks or holds with another value: what to add after a create
    /// whose tags an emulator dropped.
    /// A creation time already there is kept: it says when the resource was first made.
    pub fn missing_tags(&self, current: &[Tag]) -> Vec<Tag> {
        let has_key = |key: &str| current.iter().any(|(k, _)| k == key);
        self.tags()
            .into_iter()
            .filter(|wanted| !current.contains(wanted))
            .filter(|(key, _)| key != TAG_CREATED_AT || !has_key(key))
            .collect()
    }
}

/// A tag read back from a resource: key and value.
pub(crate) type Tag = (String, String);

/// One kind of resource, declared once in a stack: the engine plans, applies and destroys every
/// declaration through this, in the order the stack gives.
pub(crate) trait Resource: Sync {
    fn kind(&self) -> Kind;

    /// How plans and reports name it (prefix applied).
    fn display_name(&self, ctx: &Ctx<'_>) -> String;

    /// Reads the target and says what `apply` would do. Changes nothing.
    fn plan<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Change>>;

    /// Carries out `action` (never `Unchanged` or `Conflict`) and waits until it is usable.
    fn apply<'a>(&'a self, ctx: &'a Ctx<'a>, action: &'a Action) -> BoxFuture<'a, Result<()>>;

    /// Removes it if its tags say it is ours, and waits until it is gone.
    fn destroy<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Removal>>;
}

/// Implements [`Resource`] for a declaration type by naming its kind, how it is named, and the
/// kind module's `plan`, `apply` and `destroy` functions.
macro_rules! resource {
    ($spec:ty, $kind:expr, name = $name:expr, plan = $plan:path, apply = $apply:path, destroy = $destroy:path $(,)?) => {
        impl $crate::model::Resource for $spec {
            fn kind(&self) -> $crate::model::Kind {
                $kind
            }

            fn display_name(&self, ctx: &$crate::model::Ctx<'_>) -> String {
                let name: fn(&$crate::model::Ctx<'_>, &$spec) -> String = $name;
                name(ctx, self)
            }

            fn plan<'a>(
                &'a self,
                ctx: &'a $crate::model::Ctx<'a>,
            ) -> futures::future::BoxFuture<'a, anyhow::Result<$crate::model::Change>> {
                Box::pin($plan(ctx, self))
            }

            fn apply<'a>(
                &'a self,
                ctx: &'a $crate::model::Ctx<'a>,
                action: &'a $crate::model::Action,
            ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
                Box::pin($apply(ctx, self, action))
            }

            fn destroy<'a>(
                &'a self,
                ctx: &'a $crate::model::Ctx<'a>,
            ) -> futures::future::BoxFuture<'a, anyhow::Result<$crate::model::Removal>> {
                Box::pin($destroy(ctx, self))
            }
        }
    };
}
pub(crate) use resource;

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(name: &str, removal: Removal) -> Removed {
        Removed { kind: Kind::SqsQueue, name: name.into(), removal }
    }

    #[test]
    fn incomplete_destroy_names_every_failure() {
        let error = DestroyIncomplete {
            removed: vec![
                removed("p-a", Removal::Deleted),
                removed("p-b", Removal::Failed("AccessDenied: no".into())),
                removed("p-c", Removal::LeftAlone("it has no labs tags".into())),
                removed("p-d", Removal::Failed("timed out".into())),
            ],
        };
        assert_eq!(
            error.to_string(),
            "2 of 4 resources could not be removed: SQS queue p-b (AccessDenied: no); SQS queue p-d (timed out)"
        );
    }

    #[test]
    fn plans_with_a_conflict_are_not_noops() {
        let change = |action| Change { kind: Kind::SnsTopic, name: "p-t".into(), action, settings: String::new() };
        let mut plan = Plan { example: "e".into(), prefix: "p".into(), changes: vec![change(Action::Unchanged)] };
        assert!(plan.is_noop() && plan.conflicts().next().is_none());
        plan.changes.push(change(Action::Conflict("it has no labs tags".into())));
        assert!(!plan.is_noop());
        assert_eq!(plan.conflicts().count(), 1);
    }
}
