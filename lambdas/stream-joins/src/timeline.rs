//! The table-table join in a Lambda: the posts and follows tables' change streams (two mappings,
//! one function) keep the timelines table equal to the join of the two tables.
//!
//! State is one row per author in the function's state table (`author#<id>`: the author's posts
//! and followers, [`AuthorState`], and per source item the stream sequence number last applied,
//! so a redelivered or older change is skipped, as in example 3). Each change is applied to its
//! author's row and the timeline rows it adds or removes are written in the same transaction,
//! on the row's version: a post and a follow of one author handled at once by two pollers
//! cannot miss each other.

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::Event as DynamoEvent;
use labs_core::join::timeline::{AuthorState, Follow, Post, TableChange, TimelineDelta};
use labs_core::sequence;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::records::{Change, changes};
use crate::state::{self, Loaded, row_of};
use crate::store::{JoinStore, KeySchema, StoreError, Write};
use crate::{BatchFailure, MAX_CONFLICT_RETRIES};

/// Which table a batch comes from: the end of its `eventSourceARN` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Posts,
    Follows,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorRow {
    pub state: AuthorState,
    /// Source item (`post#<id>`, `follow#<follower>`) to the sequence number last applied.
    pub applied: BTreeMap<String, String>,
}

pub fn timelines_schema(table: &str) -> KeySchema {
    KeySchema { table: table.to_owned(), partition: "user", sort: Some("post_id") }
}

pub const AUTHOR_PREFIX: &str = "author#";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineSummary {
    pub changes: usize,
    pub stale: usize,
    pub added: usize,
    pub removed: usize,
}

fn table_changes<T: DeserializeOwned>(
    event: &DynamoEvent,
    put: fn(T) -> TableChange,
    deleted: fn(T) -> TableChange,
) -> Result<Vec<(String, TableChange)>, BatchFailure> {
    let decoded: Vec<Change<T>> = changes(event)?;
    Ok(decoded
        .into_iter()
        .filter_map(|c| match (c.new, c.old) {
            (Some(new), _) => Some((c.sequence_number, put(new))),
            (None, Some(old)) => Some((c.sequence_number, deleted(old))),
            (None, None) => None,
        })
        .collect())
}

fn item_key(change: &TableChange) -> String {
    match change {
        TableChange::PostPut(p) | TableChange::PostDeleted(p) => format!("post#{}", p.post_id),
        TableChange::FollowPut(f) | TableChange::FollowDeleted(f) => format!("follow#{}", f.follower),
    }
}

async fn apply_change<S: JoinStore>(
    store: &S,
    tables: &TimelineTables,
    sequence_number: &str,
    change: &TableChange,
    summary: &mut TimelineSummary,
) -> Result<(), StoreError> {
    let key = format!("{AUTHOR_PREFIX}{}", change.author());
    for _ in 0..MAX_CONFLICT_RETRIES {
        let loaded: Loaded<AuthorRow> = state::load(store, &tables.state, &key).await?;
        let mut row = loaded
            .value
            .clone()
            .unwrap_or_else(|| AuthorRow { state: AuthorState::new(change.author()), ..AuthorRow::default() });
        let item = item_key(change);
        if row.applied.get(&item).is_some_and(|done| sequence::compare(sequence_number, done).is_le()) {
            summary.stale += 1;
            return Ok(());
        }
        let deltas = row.state.apply(change);
        row.applied.insert(item, sequence_number.to_owned());
        let mut writes = vec![state::put(&tables.state, &loaded, &row, None)?];
        let schema = timelines_schema(&tables.timelines);
        for delta in &deltas {
            match delta {
                TimelineDelta::Add(entry) => writes.push(Write::put(&schema, row_of(entry)?)),
                TimelineDelta::Remove(entry) => writes.push(Write::Delete {
                    schema: schema.clone(),
                    key: schema.key_of(&row_of(entry)?)?,
                    expected: None,
                }),
            }
        }
        match store.transact(&writes).await {
            Ok(()) => {
                summary.changes += 1;
                for delta in deltas {
                    match delta {
                        TimelineDelta::Add(_) => summary.added += 1,
                        TimelineDelta::Remove(_) => summary.removed += 1,
                    }
                }
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Other(format!("{key}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineTables {
    pub state: String,
    pub timelines: String,
    /// The source tables' names, to tell a batch's side by its `eventSourceARN`.
    pub posts: String,
    pub follows: String,
}

impl TimelineTables {
    pub fn side_of(&self, event: &DynamoEvent) -> Option<Side> {
        let arn = event.records.first()?.event_source_arn.as_deref()?;
        // arn:...:table/<name>/stream/<label>
        let table = arn.split("table/").nth(1)?.split('/').next()?;
        match table {
            t if t == self.posts => Some(Side::Posts),
            t if t == self.follows => Some(Side::Follows),
            _ => None,
        }
    }
}

pub async fn process_batch<S: JoinStore>(
    store: &S,
    tables: &TimelineTables,
    event: &DynamoEvent,
) -> Result<TimelineSummary, BatchFailure> {
    let mut summary = TimelineSummary::default();
    if event.records.is_empty() {
        return Ok(summary);
    }
    let side = tables.side_of(event).ok_or_else(|| {
        BatchFailure::Other(format!("the batch comes from neither {} nor {}", tables.posts, tables.follows))
    })?;
    let decoded = match side {
        Side::Posts => table_changes::<Post>(event, TableChange::PostPut, TableChange::PostDeleted)?,
        Side::Follows => table_changes::<Follow>(event, TableChange::FollowPut, TableChange::FollowDeleted)?,
    };
    for (sequence_number, change) in &decoded {
        apply_change(store, tables, sequence_number, change, &mut summary).await?;
    }
    tracing::info!(
        changes = summary.changes,
        stale = summary.stale,
        added = summary.added,
        removed = summary.removed,
        "timeline batch applied"
    );
    Ok(summary)
}
