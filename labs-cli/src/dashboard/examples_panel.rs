//! Per example: whether it is up and its last `labs verify` result; and the figures that say
//! what an example's lesson looks like right now: example 3's index drift, example 4's
//! exactly-once against naive totals, example 6's windows and watermarks.

use labs_infra::stack;
use serde::Serialize;

use super::present::{Declared, State};
use crate::driver::dynamodb as db;
use crate::examples::verdict::{self, Verdict};
use crate::examples::{ExampleId, example_3, example_4};
use crate::target::Target;

#[derive(Debug, Serialize)]
pub struct ExamplePanel {
    pub example: String,
    pub title: &'static str,
    pub state: State,
    pub present: usize,
    pub declared: usize,
    pub last_verify: Option<Verdict>,
}

/// Example 3: index rows that disagree with the products table.
#[derive(Debug, Serialize)]
pub struct DriftPanel {
    pub rows_disagreeing: usize,
}

/// Example 4: per user, the total counted exactly once beside the naive one.
#[derive(Debug, Serialize)]
pub struct TotalsPanel {
    pub users: Vec<UserTotals>,
    pub exactly_once: u64,
    pub naive: u64,
}

#[derive(Debug, Serialize)]
pub struct UserTotals {
    pub user: String,
    pub exactly_once: u64,
    pub naive: u64,
}

/// Example 6: what its tables hold (windows, per-shard watermarks, late readings), as rows.
#[derive(Debug, Serialize)]
pub struct TimePanel {
    pub tables: Vec<TableRows>,
}

#[derive(Debug, Serialize)]
pub struct TableRows {
    pub name: String,
    /// The declared name without the prefix (`ex6-windows`), for the page to pick its chart.
    pub declared: String,
    pub total: usize,
    /// At most [`MAX_ROWS`] of them.
    pub rows: Vec<serde_json::Value>,
}

/// Rows of one table sent to the page; a lab's windows fit.
const MAX_ROWS: usize = 500;

/// Figures of every example, each read only when its resources exist.
#[derive(Debug, Serialize, Default)]
pub struct Lessons {
    pub index_drift: Option<DriftPanel>,
    pub exactly_once: Option<TotalsPanel>,
    pub time: Option<TimePanel>,
}

pub async fn examples(target: &Target, examples: &[Declared], errors: &mut Vec<String>) -> Vec<ExamplePanel> {
    let mut panels = Vec::new();
    for example in examples {
        let state = example.state();
        let last_verify = if matches!(state, State::Up | State::PartlyUp) {
            verdict::read(target, &example.stack).await.unwrap_or_else(|err| {
                errors.push(format!("{}: last verify result: {err:#}", example.id));
                None
            })
        } else {
            None
        };
        panels.push(ExamplePanel {
            example: example.id.to_string(),
            title: example.title,
            state,
            present: example.present_count,
            declared: example.declared,
            last_verify,
        });
    }
    panels
}

pub async fn lessons(target: &Target, examples: &[Declared], errors: &mut Vec<String>) -> Lessons {
    let mut lessons = Lessons::default();
    for example in examples.iter().filter(|e| e.state() == State::Up) {
        match example.id {
            id if id == ExampleId::aws(3) => match example_3::index_drift(target).await {
                Ok(rows_disagreeing) => lessons.index_drift = Some(DriftPanel { rows_disagreeing }),
                Err(err) => errors.push(format!("example-3 drift: {err:#}")),
            },
            id if id == ExampleId::aws(4) => match example_4::user_totals(target).await {
                Ok(rows) => {
                    let users: Vec<UserTotals> = rows
                        .into_iter()
                        .map(|r| UserTotals { user: r.user_id, exactly_once: r.total, naive: r.naive_total })
                        .collect();
                    lessons.exactly_once = Some(TotalsPanel {
                        exactly_once: users.iter().map(|u| u.exactly_once).sum(),
                        naive: users.iter().map(|u| u.naive).sum(),
                        users,
                    });
                }
                Err(err) => errors.push(format!("example-4 totals: {err:#}")),
            },
            _ => {}
        }
    }
    // Example 6 is read from its declared tables, whether or not the registry calls it built.
    if let Some(example) = examples.iter().find(|e| e.id == ExampleId::aws(6) && !e.present.is_empty()) {
        let mut tables = Vec::new();
        for table in example.stack.dynamodb_tables.iter().filter(|t| example.has(target, &t.name)) {
            let name = stack::full_name(&target.prefix, &table.name);
            match db::scan_all(&target.clients.dynamodb, &name).await {
                Ok(items) => tables.push(TableRows {
                    total: items.len(),
                    rows: items.into_iter().take(MAX_ROWS).filter_map(|i| serde_dynamo::from_item(i).ok()).collect(),
                    declared: table.name.clone(),
                    name,
                }),
                Err(err) => errors.push(format!("{name}: {err:#}")),
            }
        }
        lessons.time = Some(TimePanel { tables });
    }
    lessons
}
