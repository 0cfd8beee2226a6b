//! Plan, apply and destroy a [`Stack`] against one target. Each resource kind lives in a module
//! of its own (`kinesis`, `dynamodb`, `iam`, `lambda`); this file only orders the work.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::Result;
use serde::Serialize;

use crate::stack::{Stack, Vars};
use crate::{Clients, TAG_EXAMPLE, TAG_PREFIX, dynamodb, iam, kinesis, lambda};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    IamRole,
    KinesisStream,
    DynamodbTable,
    LambdaFunction,
    EventSourceMapping,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::IamRole => "IAM role",
            Kind::KinesisStream => "Kinesis stream",
            Kind::DynamodbTable => "DynamoDB table",
            Kind::LambdaFunction => "Lambda function",
            Kind::EventSourceMapping => "event source mapping",
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
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create => f.write_str("create"),
            Action::Update(reason) => write!(f, "update ({reason})"),
            Action::Unchanged => f.write_str("unchanged"),
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "reason")]
pub enum Removal {
    Deleted,
    Absent,
    /// It exists but its tags do not say this prefix made it, so it was left alone.
    LeftAlone(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub kind: Kind,
    pub name: String,
    pub removal: Removal,
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

/// Everything a resource module needs to do its work.
pub(crate) struct Ctx<'a> {
    pub clients: &'a Clients,
    pub vars: &'a Vars,
    pub example: &'a str,
    pub artifacts: &'a HashMap<String, Artifact>,
}

impl Ctx<'_> {
    pub fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_EXAMPLE.to_owned(), self.example.to_owned()),
            (TAG_PREFIX.to_owned(), self.vars.prefix.clone()),
        ])
    }

    /// Whether tags read back from a resource say this prefix made it for this example.
    pub fn owns<'t>(&self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> Result<(), String> {
        let tags: BTreeMap<&str, &str> = tags.into_iter().collect();
        match (tags.get(TAG_PREFIX), tags.get(TAG_EXAMPLE)) {
            (Some(p), Some(e)) if *p == self.vars.prefix && *e == self.example => Ok(()),
            (None, _) | (_, None) => Err("it has no labs tags".to_owned()),
            (Some(p), Some(e)) => Err(format!("its tags say {e}, prefix {p}")),
        }
    }
}

pub struct Engine<'a> {
    clients: &'a Clients,
    vars: Vars,
}

impl<'a> Engine<'a> {
    /// Reads the account id from the target (STS), which ARNs in declarations need.
    pub async fn connect(clients: &'a Clients, prefix: &str) -> Result<Self> {
        use crate::SdkContext;
        let identity = clients.sts.get_caller_identity().send().await.doing("asking STS who we are")?;
        let account = identity.account().unwrap_or("000000000000").to_owned();
        let partition = identity.arn().and_then(|arn| arn.split(':').nth(1)).unwrap_or("aws").to_owned();
        let vars = Vars { prefix: prefix.to_owned(), region: clients.region(), account, partition };
        Ok(Self { clients, vars })
    }

    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    fn ctx<'c>(&'c self, stack: &'c Stack, artifacts: &'c HashMap<String, Artifact>) -> Ctx<'c> {
        Ctx { clients: self.clients, vars: &self.vars, example: &stack.example, artifacts }
    }

    /// Reads the target and says what `apply` would do. Changes nothing.
    pub async fn plan(&self, stack: &Stack, artifacts: &HashMap<String, Artifact>) -> Result<Plan> {
        let ctx = self.ctx(stack, artifacts);
        let mut changes = Vec::new();
        for role in &stack.roles {
            changes.push(iam::plan(&ctx, role).await?);
        }
        for stream in &stack.kinesis_streams {
            changes.push(kinesis::plan(&ctx, stream).await?);
        }
        for table in &stack.dynamodb_tables {
            changes.push(dynamodb::plan(&ctx, table).await?);
        }
        for function in &stack.functions {
            changes.push(lambda::plan_function(&ctx, function).await?);
        }
        for mapping in &stack.event_source_mappings {
            changes.push(lambda::plan_mapping(&ctx, mapping).await?);
        }
        Ok(Plan { example: stack.example.clone(), prefix: self.vars.prefix.clone(), changes })
    }

    /// Carries out `plan`, in dependency order: roles and data stores, then functions, then the
    /// mappings that connect them. Waits until each resource is usable.
    pub async fn apply(
        &self,
        stack: &Stack,
        plan: &Plan,
        artifacts: &HashMap<String, Artifact>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let ctx = self.ctx(stack, artifacts);
        let action = |kind: Kind, name: &str| {
            plan.changes
                .iter()
                .find(|c| c.kind == kind && c.name == name)
                .map(|c| c.action.clone())
                .unwrap_or(Action::Create)
        };
        for role in &stack.roles {
            let name = self.vars.name(&role.name);
            let act = action(Kind::IamRole, &name);
            if act != Action::Unchanged {
                progress.step(&format!("{act} IAM role {name}"));
                iam::apply(&ctx, role, &act).await?;
            }
        }
        for stream in &stack.kinesis_streams {
            let name = self.vars.name(&stream.name);
            let act = action(Kind::KinesisStream, &name);
            if act != Action::Unchanged {
                progress.step(&format!("{act} Kinesis stream {name}"));
                kinesis::apply(&ctx, stream, &act).await?;
            }
        }
        for table in &stack.dynamodb_tables {
            let name = self.vars.name(&table.name);
            let act = action(Kind::DynamodbTable, &name);
            if act != Action::Unchanged {
                progress.step(&format!("{act} DynamoDB table {name}"));
                dynamodb::apply(&ctx, table, &act).await?;
            }
        }
        for function in &stack.functions {
            let name = self.vars.name(&function.name);
            let act = action(Kind::LambdaFunction, &name);
            if act != Action::Unchanged {
                progress.step(&format!("{act} Lambda function {name}"));
                lambda::apply_function(&ctx, function, &act).await?;
            }
        }
        for mapping in &stack.event_source_mappings {
            let name = lambda::mapping_name(&ctx, mapping);
            let act = action(Kind::EventSourceMapping, &name);
            if act != Action::Unchanged {
                progress.step(&format!("{act} event source mapping {name}"));
                lambda::apply_mapping(&ctx, mapping, &act).await?;
            }
        }
        Ok(())
    }

    /// Removes what `stack` declares for this prefix, in reverse dependency order, and waits until
    /// it is gone, so a following `up` can create it again.
    pub async fn destroy(&self, stack: &Stack, progress: &dyn Progress) -> Result<Vec<Removed>> {
        let no_artifacts = HashMap::new();
        let ctx = self.ctx(stack, &no_artifacts);
        let mut removed = Vec::new();
        for mapping in &stack.event_source_mappings {
            let name = lambda::mapping_name(&ctx, mapping);
            progress.step(&format!("removing event source mapping {name}"));
            let removal = lambda::destroy_mapping(&ctx, mapping).await?;
            removed.push(Removed { kind: Kind::EventSourceMapping, name, removal });
        }
        for function in &stack.functions {
            let name = self.vars.name(&function.name);
            progress.step(&format!("removing Lambda function {name}"));
            let removal = lambda::destroy_function(&ctx, function).await?;
            removed.push(Removed { kind: Kind::LambdaFunction, name, removal });
        }
        for table in &stack.dynamodb_tables {
            let name = self.vars.name(&table.name);
            progress.step(&format!("removing DynamoDB table {name}"));
            let removal = dynamodb::destroy(&ctx, table).await?;
            removed.push(Removed { kind: Kind::DynamodbTable, name, removal });
        }
        for stream in &stack.kinesis_streams {
            let name = self.vars.name(&stream.name);
            progress.step(&format!("removing Kinesis stream {name}"));
            let removal = kinesis::destroy(&ctx, stream).await?;
            removed.push(Removed { kind: Kind::KinesisStream, name, removal });
        }
        for role in &stack.roles {
            let name = self.vars.name(&role.name);
            progress.step(&format!("removing IAM role {name}"));
            let removal = iam::destroy(&ctx, role).await?;
            removed.push(Removed { kind: Kind::IamRole, name, removal });
        }
        Ok(removed)
    }
}
