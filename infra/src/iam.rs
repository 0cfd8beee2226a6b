//! IAM execution roles: trust in Lambda, and one inline least-privilege policy.

use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_iam::types::Tag;
use serde_json::{Value, json};

use crate::model::{Action, Change, Ctx, Kind, Removal, resource};
use crate::poll;
use crate::sdk_error::{ErrorClass, SdkContext, SdkOutcome};
use crate::stack::Role;

resource!(
    Role,
    Kind::IamRole,
    name = |ctx, spec| ctx.vars.name(&spec.name),
    plan = plan,
    apply = apply,
    destroy = destroy
);

const INLINE_POLICY: &str = "labs-least-privilege";

const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The role's whole inline policy: its own log group, plus exactly the declared statements.
pub(crate) fn policy_document(ctx: &Ctx<'_>, role: &Role) -> Value {
    let vars = ctx.vars;
    let mut statements = vec![json!({
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": vars.expand("arn:${partition}:logs:${region}:${account}:log-group:/aws/lambda/${prefix}-*"),
    })];
    for statement in &role.statements {
        statements.push(json!({
            "Effect": "Allow",
            "Action": statement.actions,
            "Resource": statement.resources.iter().map(|r| vars.expand(r)).collect::<Vec<_>>(),
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The role's ARN; needed by the functions that run as it.
pub(crate) fn role_arn(ctx: &Ctx<'_>, role_suffix: &str) -> String {
    ctx.vars.expand(&format!("arn:${{partition}}:iam::${{account}}:role/{}", ctx.vars.name(role_suffix)))
}

/// IAM returns policy documents URL-encoded; some emulators return them as they were sent.
fn parse_policy(document: &str) -> Option<Value> {
    serde_json::from_str(document).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(document).decode_utf8().ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

async fn get_role(ctx: &Ctx<'_>, name: &str) -> Result<Option<aws_sdk_iam::types::Role>> {
    let out = ctx.clients.iam.get_role().role_name(name).send().await.or_absent(format!("reading IAM role {name}"))?;
    Ok(out.and_then(|out| out.role))
}

/// The role's tags, or `None` when it does not exist. GetRole carries tags on AWS; where an
/// emulator leaves them out, ListRoleTags is asked.
async fn role_tags(ctx: &Ctx<'_>, name: &str) -> Result<Option<Vec<(String, String)>>> {
    let Some(role) = get_role(ctx, name).await? else {
        return Ok(None);
    };
    let mut tags: Vec<(String, String)> = role.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect();
    if tags.is_empty() {
        let mut pages = ctx.clients.iam.list_role_tags().role_name(name).into_paginator().items().send();
        while let Some(tag) = pages.next().await {
            let Some(tag) = tag.or_absent(format!("reading tags of IAM role {name}"))? else {
                return Ok(None);
            };
            tags.push((tag.key, tag.value));
        }
    }
    Ok(Some(tags))
}

async fn plan(ctx: &Ctx<'_>, role: &Role) -> Result<Change> {
    let name = ctx.vars.name(&role.name);
    let wanted = policy_document(ctx, role);
    let action = match role_tags(ctx, &name).await? {
        None => Action::Create,
        Some(tags) => match ctx.conflict_unless_owned(&tags) {
            Some(conflict) => conflict,
            None => {
                let current = ctx
                    .clients
                    .iam
                    .get_role_policy()
                    .role_name(&name)
                    .policy_name(INLINE_POLICY)
                    .send()
                    .await
                    .or_absent(format!("reading the policy of IAM role {name}"))?;
                match current {
                    Some(out) if parse_policy(out.policy_document()).as_ref() == Some(&wanted) => Action::Unchanged,
                    Some(_) => Action::Update("inline policy changed".to_owned()),
                    None => Action::Update("inline policy missing".to_owned()),
                }
            }
        },
    };
    let actions: Vec<&str> = role.statements.iter().flat_map(|s| s.actions.iter().map(String::as_str)).collect();
    let settings = if actions.is_empty() { "logs only".to_owned() } else { format!("logs + {}", actions.join(", ")) };
    Ok(Change { kind: Kind::IamRole, name, action, settings })
}

async fn apply(ctx: &Ctx<'_>, role: &Role, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&role.name);
    let iam = &ctx.clients.iam;
    match action {
        Action::Create => {
            let mut create = iam.create_role().role_name(&name).assume_role_policy_document(TRUST_POLICY);
            for (key, value) in ctx.tags() {
                create = create.tags(Tag::builder().key(key).value(value).build()?);
            }
            let created =
                create.send().await.tolerating(&[ErrorClass::AlreadyExists], format!("creating IAM role {name}"))?;
            let current = role_tags(ctx, &name).await?.unwrap_or_default();
            if created.is_err() {
                // Created since the plan was made: ours only if its tags say so.
                if let Err(reason) = ctx.owns(&current) {
                    bail!("IAM role {name} appeared while applying and is not ours: {reason}");
                }
            } else {
                let missing = ctx.missing_tags(&current);
                if !missing.is_empty() {
                    let mut tagging = iam.tag_role().role_name(&name);
                    for (key, value) in missing {
                        tagging = tagging.tags(Tag::builder().key(key).value(value).build()?);
                    }
                    tagging.send().await.doing(format!("tagging IAM role {name}"))?;
                }
            }
        }
        Action::Update(_) => {}
        Action::Unchanged | Action::Conflict(_) => return Ok(()),
    }
    iam.put_role_policy()
        .role_name(&name)
        .policy_name(INLINE_POLICY)
        .policy_document(policy_document(ctx, role).to_string())
        .send()
        .await
        .doing(format!("writing the policy of IAM role {name}"))?;
    Ok(())
}

async fn destroy(ctx: &Ctx<'_>, role: &Role) -> Result<Removal> {
    let name = ctx.vars.name(&role.name);
    let iam = &ctx.clients.iam;
    let Some(tags) = role_tags(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    if let Err(reason) = ctx.owns(&tags) {
        return Ok(Removal::LeftAlone(reason));
    }
    // IAM deletes a role only once it has no inline policies.
    let mut policies = Vec::new();
    let mut pages = iam.list_role_policies().role_name(&name).into_paginator().items().send();
    while let Some(policy) = pages.next().await {
        policies.push(policy.doing(format!("listing policies of IAM role {name}"))?);
    }
    for policy in policies {
        iam.delete_role_policy()
            .role_name(&name)
            .policy_name(&policy)
            .send()
            .await
            .or_absent(format!("deleting policy {policy} of IAM role {name}"))?;
    }
    if iam.delete_role().role_name(&name).send().await.or_absent(format!("deleting IAM role {name}"))?.is_none() {
        return Ok(Removal::Absent);
    }
    poll::until(format!("waiting for IAM role {name} to go"), poll::LIMIT, || async {
        Ok(get_role(ctx, &name).await?.is_none())
    })
    .await?;
    Ok(Removal::Deleted)
}

/// IAM is eventually consistent: a role just created may not yet be assumable by Lambda for
/// this long.
pub(crate) const PROPAGATION_WAIT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_url_encoded_policies() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(parse_policy(encoded), Some(json!({"Version": "2012-10-17"})));
        assert_eq!(parse_policy(r#"{"a":1}"#), Some(json!({"a": 1})));
        assert_eq!(parse_policy("%7Bnot json"), None);
    }
}
