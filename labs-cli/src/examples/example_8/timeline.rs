//! `labs run example-8 --scenario timeline`: posts and follows written to two tables (puts, then
//! some unfollows and deleted posts); the timeline function joins their change streams.

use anyhow::Result;
use labs_core::join::timeline::{SocialSpec, TableChange, generate};
use serde_json::{Value, json};

use super::data::SocialTables;
use super::{Ctx, wait_for};
use crate::driver::dynamodb as db;

/// When the generated posts are dated from (2026-01-01T00:00:00Z).
const POSTED_FROM: i64 = 1_767_225_600_000;

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Value> {
    let seed = ctx.options.seed.unwrap_or(1);
    // Fixed times: the same seed writes the same posts again, so a rerun changes nothing.
    let data = generate(&SocialSpec::standard("t", seed, POSTED_FROM));
    let client = &ctx.target.clients.dynamodb;
    ctx.out.say(format!(
        "{} changes to {} and {} (seed {seed}): posts and follows, then some unfollows and deleted posts.",
        data.changes.len(),
        ctx.names.posts,
        ctx.names.follows
    ));
    for change in &data.changes {
        match change {
            TableChange::PostPut(post) => db::put(client, &ctx.names.posts, post).await?,
            TableChange::FollowPut(follow) => db::put(client, &ctx.names.follows, follow).await?,
            TableChange::PostDeleted(post) => db::delete(client, &ctx.names.posts, ("post_id", &post.post_id)).await?,
            TableChange::FollowDeleted(follow) => {
                let key = [("follower", follow.follower.as_str()), ("followee", follow.followee.as_str())];
                db::delete_by_key(client, &ctx.names.follows, &key).await?
            }
        }
    }
    let waited = wait_for("waiting for the timelines to equal the join of both tables", || async {
        let tables = SocialTables::read(ctx.target, &ctx.names).await?;
        let (missing, extra) = tables.diff();
        Ok(missing.len() + extra.len())
    })
    .await?;
    let tables = SocialTables::read(ctx.target, &ctx.names).await?;
    let user = data.reference().into_iter().next().map(|e| e.user);
    if let Some(user) = &user {
        ctx.out.table(
            &format!("{user}'s timeline (ex8-timelines), newest first:"),
            &["post", "by"],
            tables
                .timelines
                .iter()
                .rev()
                .filter(|e| &e.user == user)
                .map(|e| vec![e.post_id.clone(), e.author.clone()]),
        );
    }
    ctx.out.say(format!(
        "{} timeline rows for {} posts and {} follows, equal to their batch join after {:.1} s.",
        tables.timelines.len(),
        tables.posts.len(),
        tables.follows.len(),
        waited.as_secs_f64()
    ));
    Ok(
        json!({ "scenario": "timeline", "seed": seed, "entries": tables.timelines.len(), "seconds": waited.as_secs_f64() }),
    )
}
