use std::time::Duration;

use anyhow::Result;
use aws_sdk_iam::types::Tag;
use serde_json::{Value, json};

use crate::SdkContext;
use crate::engine::{Action, Change, Ctx, Kind, Removal};
use crate::stack::Role;

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

async fn role_exists(ctx: &Ctx<'_>, name: &str) -> Result<Option<aws_sdk_iam::types::Role>> {
    match ctx.clients.iam.get_role().role_name(name).send().await {
        Ok(out) => Ok(out.role),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(None),
        Err(err) => Err(err).doing(format!("reading IAM role {name}")),
    }
}

pub(crate) async fn plan(ctx: &Ctx<'_>, role: &Role) -> Result<Change> {
    let name = ctx.vars.name(&role.name);
    let wanted = policy_document(ctx, role);
    let action = if role_exists(ctx, &name).await?.is_none() {
        Action::Create
    } else {
        let current = ctx.clients.iam.get_role_policy().role_name(&name).policy_name(INLINE_POLICY).send().await;
        match current {
            Ok(out) if parse_policy(out.policy_document()).as_ref() == Some(&wanted) => Action::Unchanged,
            Ok(_) => Action::Update("inline policy changed".to_owned()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => {
                Action::Update("inline policy missing".to_owned())
            }
            Err(err) => return Err(err).doing(format!("reading the policy of IAM role {name}")),
        }
    };
    let actions: Vec<&str> = role.statements.iter().flat_map(|s| s.actions.iter().map(String::as_str)).collect();
    let settings = if actions.is_empty() { "logs only".to_owned() } else { format!("logs + {}", actions.join(", ")) };
    Ok(Change { kind: Kind::IamRole, name, action, settings })
}

pub(crate) async fn apply(ctx: &Ctx<'_>, role: &Role, action: &Action) -> Result<()> {
    let name = ctx.vars.name(&role.name);
    let iam = &ctx.clients.iam;
    if *action == Action::Create {
        let mut create = iam.create_role().role_name(&name).assume_role_policy_document(TRUST_POLICY);
        for (key, value) in ctx.tags() {
            create = create.tags(Tag::builder().key(key).value(value).build()?);
        }
        match create.send().await {
            Ok(_) => {}
            Err(err) if err.as_service_error().is_some_and(|e| e.is_entity_already_exists_exception()) => {}
            Err(err) => return Err(err).doing(format!("creating IAM role {name}")),
        }
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

pub(crate) async fn destroy(ctx: &Ctx<'_>, role: &Role) -> Result<Removal> {
    let name = ctx.vars.name(&role.name);
    let iam = &ctx.clients.iam;
    let Some(existing) = role_exists(ctx, &name).await? else {
        return Ok(Removal::Absent);
    };
    // GetRole carries tags on AWS; fall back to ListRoleTags where an emulator leaves them out.
    let mut tags: Vec<(String, String)> =
        existing.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
    if tags.is_empty() {
        let listed =
            iam.list_role_tags().role_name(&name).send().await.doing(format!("reading tags of IAM role {name}"))?;
        tags = listed.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
    }
    if let Err(reason) = ctx.owns(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        return Ok(Removal::LeftAlone(reason));
    }
    let policies =
        iam.list_role_policies().role_name(&name).send().await.doing(format!("listing policies of {name}"))?;
    for policy in policies.policy_names() {
        iam.delete_role_policy()
            .role_name(&name)
            .policy_name(policy)
            .send()
            .await
            .doing(format!("deleting policy {policy} of IAM role {name}"))?;
    }
    match iam.delete_role().role_name(&name).send().await {
        Ok(_) => Ok(Removal::Deleted),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_entity_exception()) => Ok(Removal::Absent),
        Err(err) => Err(err).doing(format!("deleting IAM role {name}")),
    }
}

/// IAM is eventually consistent: a role just created may not yet be assumable by Lambda.
pub(crate) const PROPAGATION_RETRIES: u32 = 10;
pub(crate) const PROPAGATION_PAUSE: Duration = Duration::from_secs(3);

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
