//! Plan, apply and destroy a [`Stack`] against one target. Each resource kind implements
//! [`Resource`] in a module of its own; this file only orders the work.

use std::collections::HashMap;

use anyhow::Result;

use crate::model::{Action, Artifact, Ctx, DestroyIncomplete, Plan, Progress, Removal, Removed, Resource};
use crate::sdk_error::SdkContext;
use crate::stack::{Stack, Vars};
use crate::{Clients, innermost_cause, sqs};

pub struct Engine<'a> {
    clients: &'a Clients,
    vars: Vars,
    /// What this run tags the resources it creates with, as `labs:created-at`.
    created_at: String,
}

impl<'a> Engine<'a> {
    /// Reads the account id from the target (STS), which ARNs in declarations need.
    pub async fn connect(clients: &'a Clients, prefix: &str) -> Result<Self> {
        let identity = clients.sts.get_caller_identity().send().await.doing("asking STS who we are")?;
        let account = identity.account().unwrap_or("000000000000").to_owned();
        let partition = identity.arn().and_then(|arn| arn.split(':').nth(1)).unwrap_or("aws").to_owned();
        let vars = Vars { prefix: prefix.to_owned(), region: clients.region(), account, partition };
        Ok(Self { clients, vars, created_at: crate::inventory::now_tag() })
    }

    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    fn ctx<'c>(&'c self, stack: &'c Stack, artifacts: &'c HashMap<String, Artifact>) -> Ctx<'c> {
        Ctx {
            clients: self.clients,
            vars: &self.vars,
            example: &stack.example,
            artifacts,
            created_at: &self.created_at,
        }
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
    /// each resource is usable. Refuses, before changing anything, a plan in which something
    /// that is not ours holds one of our names.
    pub async fn apply(
        &self,
        stack: &Stack,
        plan: &Plan,
        artifacts: &HashMap<String, Artifact>,
        progress: &dyn Progress,
    ) -> Result<()> {
        plan.refuse_conflicts()?;
        let ctx = self.ctx(stack, artifacts);
        for resource in creation_order(stack) {
            let (kind, name) = (resource.kind(), resource.display_name(&ctx));
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
    /// each resource is gone, so a following `up` can create it again. A failure does not stop
    /// the rest: every row is tried and reported, and if any failed the error is a
    /// [`DestroyIncomplete`] holding all of them.
    pub async fn destroy(&self, stack: &Stack, progress: &dyn Progress) -> Result<Vec<Removed>> {
        let no_artifacts = HashMap::new();
        let ctx = self.ctx(stack, &no_artifacts);
        let mut reversed = creation_order(stack);
        reversed.reverse();
        remove_all(&ctx, &reversed, progress).await
    }
}

/// Removes each resource in turn, going on past failures.
async fn remove_all(ctx: &Ctx<'_>, resources: &[&dyn Resource], progress: &dyn Progress) -> Result<Vec<Removed>> {
    let mut removed = Vec::new();
    for resource in resources {
        let (kind, name) = (resource.kind(), resource.display_name(ctx));
        progress.step(&format!("removing {kind} {name}"));
        let removal = resource.destroy(ctx).await.unwrap_or_else(|err| Removal::Failed(one_line(&err)));
        removed.push(Removed { kind, name, removal });
    }
    if removed.iter().any(|r| matches!(r.removal, Removal::Failed(_))) {
        return Err(DestroyIncomplete { removed }.into());
    }
    Ok(removed)
}

/// An error and its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
    let cause = innermost_cause(err.as_ref());
    let top = err.to_string();
    if top.ends_with(&cause) { top } else { format!("{top}: {cause}") }
}

/// Every resource of `stack`, each before the ones that need it; `destroy` walks it backwards.
fn creation_order(stack: &Stack) -> Vec<&dyn Resource> {
    let mut order: Vec<&dyn Resource> = Vec::new();
    order.extend(stack.roles.iter().map(|r| r as &dyn Resource));
    order.extend(stack.kinesis_streams.iter().map(|r| r as &dyn Resource));
    order.extend(stack.dynamodb_tables.iter().map(|r| r as &dyn Resource));
    order.extend(stack.sns_topics.iter().map(|r| r as &dyn Resource));
    order.extend(sqs::creation_order(&stack.sqs_queues).into_iter().map(|r| r as &dyn Resource));
    order.extend(stack.subscriptions.iter().map(|r| r as &dyn Resource));
    order.extend(stack.functions.iter().map(|r| r as &dyn Resource));
    order.extend(stack.event_source_mappings.iter().map(|r| r as &dyn Resource));
    order
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::future::BoxFuture;

    use super::*;
    use crate::model::{Change, Kind};

    /// A resource whose removal answers `outcome`, and which notes that it was asked.
    struct Scripted {
        name: &'static str,
        outcome: Result<Removal, &'static str>,
        asked: Mutex<bool>,
    }

    impl Resource for Scripted {
        fn kind(&self) -> Kind {
            Kind::SqsQueue
        }

        fn display_name(&self, ctx: &Ctx<'_>) -> String {
            ctx.vars.name(self.name)
        }

        // Only `destroy` is scripted: these tests are about teardown going on past a failure.
        fn plan<'a>(&'a self, _: &'a Ctx<'a>) -> BoxFuture<'a, Result<Change>> {
            Box::pin(std::future::ready(Err(anyhow::anyhow!("a scripted resource is never planned"))))
        }

        fn apply<'a>(&'a self, _: &'a Ctx<'a>, _: &'a Action) -> BoxFuture<'a, Result<()>> {
            Box::pin(std::future::ready(Err(anyhow::anyhow!("a scripted resource is never applied"))))
        }

        fn destroy<'a>(&'a self, _: &'a Ctx<'a>) -> BoxFuture<'a, Result<Removal>> {
            *self.asked.lock().unwrap() = true;
            let outcome = self.outcome.clone().map_err(|message| anyhow::anyhow!(message).context("deleting it"));
            Box::pin(std::future::ready(outcome))
        }
    }

    fn scripted(name: &'static str, outcome: Result<Removal, &'static str>) -> Scripted {
        Scripted { name, outcome, asked: Mutex::new(false) }
    }

    #[tokio::test]
    async fn destroy_goes_on_past_a_failure_and_reports_every_row() {
        let config = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        let clients = Clients::new(&config);
        let vars = Vars { prefix: "p".into(), region: "r".into(), account: "1".into(), partition: "aws".into() };
        let artifacts = HashMap::new();
        let ctx = Ctx { clients: &clients, vars: &vars, example: "e", artifacts: &artifacts, created_at: "t" };
        let resources = [
            scripted("a", Ok(Removal::Deleted)),
            scripted("b", Err("AccessDenied: no")),
            scripted("c", Ok(Removal::Absent)),
        ];
        let order: Vec<&dyn Resource> = resources.iter().map(|r| r as &dyn Resource).collect();
        let steps = Mutex::new(Vec::new());
        let progress = |step: &str| steps.lock().unwrap().push(step.to_owned());

        let err = remove_all(&ctx, &order, &progress).await.unwrap_err();
        assert!(resources.iter().all(|r| *r.asked.lock().unwrap()), "every resource was asked");
        let incomplete = err.downcast_ref::<DestroyIncomplete>().expect("a DestroyIncomplete");
        let rows: Vec<(&str, &Removal)> = incomplete.removed.iter().map(|r| (r.name.as_str(), &r.removal)).collect();
        assert_eq!(
            rows,
            [
                ("p-a", &Removal::Deleted),
                ("p-b", &Removal::Failed("deleting it: AccessDenied: no".into())),
                ("p-c", &Removal::Absent)
            ]
        );
        assert_eq!(
            err.to_string(),
            "1 of 3 resources could not be removed: SQS queue p-b (deleting it: AccessDenied: no)"
        );
        assert_eq!(steps.lock().unwrap().len(), 3);

        let fine = [scripted("a", Ok(Removal::Deleted))];
        let order: Vec<&dyn Resource> = fine.iter().map(|r| r as &dyn Resource).collect();
        assert_eq!(remove_all(&ctx, &order, &progress).await.unwrap().len(), 1);
    }

    #[test]
    fn creation_order_puts_what_is_needed_first() {
        let stack = crate::stack::load("example-2").unwrap();
        let kinds: Vec<Kind> = creation_order(&stack).iter().map(|r| r.kind()).collect();
        let first = |kind| kinds.iter().position(|k| *k == kind).unwrap();
        let last = |kind| kinds.iter().rposition(|k| *k == kind).unwrap();
        assert!(last(Kind::IamRole) < first(Kind::LambdaFunction));
        assert!(last(Kind::SqsQueue) < first(Kind::SnsSubscription));
        assert!(last(Kind::SnsTopic) < first(Kind::SnsSubscription));
        assert!(last(Kind::LambdaFunction) < first(Kind::EventSourceMapping));
        let declared = stack.roles.len()
            + stack.sns_topics.len()
            + stack.sqs_queues.len()
            + stack.subscriptions.len()
            + stack.functions.len()
            + stack.event_source_mappings.len()
            + stack.kinesis_streams.len()
            + stack.dynamodb_tables.len();
        assert_eq!(kinds.len(), declared);
    }

    #[test]
    fn one_line_keeps_the_cause() {
        let err = anyhow::anyhow!("AccessDenied").context("deleting SQS queue p-q");
        assert_eq!(one_line(&err), "deleting SQS queue p-q: AccessDenied");
        assert_eq!(one_line(&anyhow::anyhow!("waiting: timed out")), "waiting: timed out");
    }
}
