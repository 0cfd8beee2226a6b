//! Plan, apply and destroy a [`Stack`] against one target. Each resource kind lives in a module
//! of its own (`kinesis`, `dynamodb`, `sns`, `sqs`, `iam`, `lambda`); this file only orders the work.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::Result;
use serde::Serialize;

use crate::stack::{
    DynamoTable, EventSourceMapping, Function, KinesisStream, Role, SnsTopic, SqsQueue, Stack, Subscription, Vars,
};
use crate::{Clients, TAG_EXAMPLE, TAG_PREFIX, dynamodb, iam, kinesis, lambda, sns, sqs};

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
        for resource in creation_order(stack) {
            changes.push(resource.plan(&ctx).await?);
        }
        Ok(Plan { example: stack.example.clone(), prefix: self.vars.prefix.clone(), changes })
    }

    /// Carries out `plan`, in dependency order: roles and data stores, topics and queues, the
    /// subscriptions between them, then functions and the mappings that feed them. Waits until
    /// each resource is usable.
    pub async fn apply(
        &self,
        stack: &Stack,
        plan: &Plan,
        artifacts: &HashMap<String, Artifact>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let ctx = self.ctx(stack, artifacts);
        for resource in creation_order(stack) {
            let (kind, name) = (resource.kind(), resource.name(&ctx));
            let action = plan
                .changes
                .iter()
                .find(|c| c.kind == kind && c.name == name)
                .map(|c| c.action.clone())
                .unwrap_or(Action::Create);
            if action != Action::Unchanged {
                progress.step(&format!("{action} {kind} {name}"));
                resource.apply(&ctx, &action).await?;
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
        for resource in creation_order(stack).into_iter().rev() {
            let (kind, name) = (resource.kind(), resource.name(&ctx));
            progress.step(&format!("removing {kind} {name}"));
            let removal = resource.destroy(&ctx).await?;
            removed.push(Removed { kind, name, removal });
        }
        Ok(removed)
    }
}

/// One declared resource, whatever its kind: the engine walks these and each kind's module does
/// the work.
#[derive(Clone, Copy)]
enum Resource<'s> {
    Role(&'s Role),
    KinesisStream(&'s KinesisStream),
    DynamodbTable(&'s DynamoTable),
    SnsTopic(&'s SnsTopic),
    SqsQueue(&'s SqsQueue),
    Subscription(&'s Subscription),
    Function(&'s Function),
    Mapping(&'s EventSourceMapping),
}

/// Every resource of `stack`, each before the ones that need it; `destroy` walks it backwards.
fn creation_order(stack: &Stack) -> Vec<Resource<'_>> {
    let mut order: Vec<Resource<'_>> = stack.roles.iter().map(Resource::Role).collect();
    order.extend(stack.kinesis_streams.iter().map(Resource::KinesisStream));
    order.extend(stack.dynamodb_tables.iter().map(Resource::DynamodbTable));
    order.extend(stack.sns_topics.iter().map(Resource::SnsTopic));
    order.extend(sqs::creation_order(&stack.sqs_queues).into_iter().map(Resource::SqsQueue));
    order.extend(stack.subscriptions.iter().map(Resource::Subscription));
    order.extend(stack.functions.iter().map(Resource::Function));
    order.extend(stack.event_source_mappings.iter().map(Resource::Mapping));
    order
}

impl Resource<'_> {
    fn kind(&self) -> Kind {
        match self {
            Resource::Role(_) => Kind::IamRole,
            Resource::KinesisStream(_) => Kind::KinesisStream,
            Resource::DynamodbTable(_) => Kind::DynamodbTable,
            Resource::SnsTopic(_) => Kind::SnsTopic,
            Resource::SqsQueue(_) => Kind::SqsQueue,
            Resource::Subscription(_) => Kind::SnsSubscription,
            Resource::Function(_) => Kind::LambdaFunction,
            Resource::Mapping(_) => Kind::EventSourceMapping,
        }
    }

    /// How plans and reports name it.
    fn name(&self, ctx: &Ctx<'_>) -> String {
        match self {
            Resource::Role(spec) => ctx.vars.name(&spec.name),
            Resource::KinesisStream(spec) => ctx.vars.name(&spec.name),
            Resource::DynamodbTable(spec) => ctx.vars.name(&spec.name),
            Resource::SnsTopic(spec) => ctx.vars.name(&spec.name),
            Resource::SqsQueue(spec) => ctx.vars.name(&spec.name),
            Resource::Subscription(spec) => sns::subscription_name(ctx, spec),
            Resource::Function(spec) => ctx.vars.name(&spec.name),
            Resource::Mapping(spec) => lambda::mapping_name(ctx, spec),
        }
    }

    async fn plan(&self, ctx: &Ctx<'_>) -> Result<Change> {
        match *self {
            Resource::Role(spec) => iam::plan(ctx, spec).await,
            Resource::KinesisStream(spec) => kinesis::plan(ctx, spec).await,
            Resource::DynamodbTable(spec) => dynamodb::plan(ctx, spec).await,
            Resource::SnsTopic(spec) => sns::plan_topic(ctx, spec).await,
            Resource::SqsQueue(spec) => sqs::plan(ctx, spec).await,
            Resource::Subscription(spec) => sns::plan_subscription(ctx, spec).await,
            Resource::Function(spec) => lambda::plan_function(ctx, spec).await,
            Resource::Mapping(spec) => lambda::plan_mapping(ctx, spec).await,
        }
    }

    async fn apply(&self, ctx: &Ctx<'_>, action: &Action) -> Result<()> {
        match *self {
            Resource::Role(spec) => iam::apply(ctx, spec, action).await,
            Resource::KinesisStream(spec) => kinesis::apply(ctx, spec, action).await,
            Resource::DynamodbTable(spec) => dynamodb::apply(ctx, spec, action).await,
            Resource::SnsTopic(spec) => sns::apply_topic(ctx, spec, action).await,
            Resource::SqsQueue(spec) => sqs::apply(ctx, spec, action).await,
            Resource::Subscription(spec) => sns::apply_subscription(ctx, spec, action).await,
            Resource::Function(spec) => lambda::apply_function(ctx, spec, action).await,
            Resource::Mapping(spec) => lambda::apply_mapping(ctx, spec, action).await,
        }
    }

    async fn destroy(&self, ctx: &Ctx<'_>) -> Result<Removal> {
        match *self {
            Resource::Role(spec) => iam::destroy(ctx, spec).await,
            Resource::KinesisStream(spec) => kinesis::destroy(ctx, spec).await,
            Resource::DynamodbTable(spec) => dynamodb::destroy(ctx, spec).await,
            Resource::SnsTopic(spec) => sns::destroy_topic(ctx, spec).await,
            Resource::SqsQueue(spec) => sqs::destroy(ctx, spec).await,
            Resource::Subscription(spec) => sns::destroy_subscription(ctx, spec).await,
            Resource::Function(spec) => lambda::destroy_function(ctx, spec).await,
            Resource::Mapping(spec) => lambda::destroy_mapping(ctx, spec).await,
        }
    }
}
