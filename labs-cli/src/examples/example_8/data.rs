//! What example 8's tables hold, read back for the scenarios and the verifier.

use std::collections::BTreeSet;

use anyhow::Result;
use labs_core::join::timeline::{Follow, Post, TimelineEntry, batch_timeline};
use labs_core::join::window::{JoinRow, SessionState};
use serde::Deserialize;
use stream_joins::enrich::EnrichedRow;
use stream_joins::window::{CLOCK_PREFIX, ClockRow, OutputRow, SESSION_PREFIX};

use super::Names;
use crate::driver::dynamodb as db;
use crate::target::Target;

/// A state row as the function writes it (`lambdas/stream-joins/src/state.rs`).
#[derive(Debug, Deserialize)]
struct StateItem {
    key: String,
    body: String,
    expires_at: Option<i64>,
}

/// The window join's state table.
#[derive(Debug, Default)]
pub struct WindowState {
    pub sessions: Vec<(SessionState, Option<i64>)>,
    pub clocks: Vec<ClockRow>,
}

impl WindowState {
    pub async fn read(target: &Target, names: &Names) -> Result<Self> {
        let (items, _) = db::scan_typed::<StateItem>(&target.clients.dynamodb, &names.window_state).await?;
        let mut state = Self::default();
        for item in items {
            if item.key.starts_with(SESSION_PREFIX) {
                state.sessions.push((serde_json::from_str(&item.body)?, item.expires_at));
            } else if item.key.starts_with(CLOCK_PREFIX) {
                state.clocks.push(serde_json::from_str(&item.body)?);
            }
        }
        Ok(state)
    }

    /// Buffered searches and clicks across sessions.
    pub fn buffered(&self) -> usize {
        self.sessions.iter().map(|(s, _)| s.len()).sum()
    }

    /// The furthest any invocation moved the watermark (what eviction goes by).
    pub fn watermark(&self) -> Option<i64> {
        self.clocks.iter().map(|c| c.overall_watermark).max()
    }

    /// Sessions whose rows are still there although the watermark has passed their expiry.
    pub fn overdue(&self) -> Vec<&SessionState> {
        let Some(watermark) = self.watermark() else { return Vec::new() };
        self.sessions.iter().filter(|(_, at)| at.is_some_and(|at| at <= watermark)).map(|(s, _)| s).collect()
    }
}

pub async fn window_rows(target: &Target, names: &Names) -> Result<(BTreeSet<JoinRow>, Vec<String>)> {
    let (rows, odd) = db::scan_typed::<OutputRow>(&target.clients.dynamodb, &names.search_clicks).await?;
    Ok((rows.iter().map(OutputRow::join_row).collect(), odd))
}

pub async fn enriched_rows(target: &Target, names: &Names) -> Result<(Vec<EnrichedRow>, Vec<String>)> {
    db::scan_typed::<EnrichedRow>(&target.clients.dynamodb, &names.enriched).await
}

/// The two source tables and the timelines table.
#[derive(Debug, Default)]
pub struct SocialTables {
    pub posts: Vec<Post>,
    pub follows: Vec<Follow>,
    pub timelines: BTreeSet<TimelineEntry>,
    pub odd: Vec<String>,
}

impl SocialTables {
    pub async fn read(target: &Target, names: &Names) -> Result<Self> {
        let client = &target.clients.dynamodb;
        let (posts, mut odd) = db::scan_typed::<Post>(client, &names.posts).await?;
        let (follows, odd_follows) = db::scan_typed::<Follow>(client, &names.follows).await?;
        let (timelines, odd_timelines) = db::scan_typed::<TimelineEntry>(client, &names.timelines).await?;
        odd.extend(odd_follows.into_iter().chain(odd_timelines));
        Ok(Self { posts, follows, timelines: timelines.into_iter().collect(), odd })
    }

    /// What the timelines table should hold: the batch join of the two tables.
    pub fn expected(&self) -> BTreeSet<TimelineEntry> {
        batch_timeline(&self.posts, &self.follows)
    }

    /// Entries missing from the timelines, and entries it should not have.
    pub fn diff(&self) -> (Vec<TimelineEntry>, Vec<TimelineEntry>) {
        let expected = self.expected();
        (
            expected.difference(&self.timelines).cloned().collect(),
            self.timelines.difference(&expected).cloned().collect(),
        )
    }
}
