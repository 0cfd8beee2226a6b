//! What every scenario of a multi-scenario example reports: the same shape for `--json`, and
//! one place that decides whether a run went as the lesson says.

use std::fmt::Display;

use anyhow::Result;
use serde::Serialize;

/// One scenario's outcome, for `--json` and for deciding whether the run succeeded.
#[derive(Serialize)]
pub(crate) struct ScenarioReport {
    pub scenario: &'static str,
    pub seed: u64,
    /// What went against the lesson, if anything.
    pub problem: Option<String>,
    #[serde(flatten)]
    pub details: serde_json::Value,
}

/// A scenario's report: `problems` empty means it went as the lesson says.
pub(crate) fn report(
    scenario: &'static str,
    seed: u64,
    problems: Vec<String>,
    details: impl Serialize,
) -> Result<ScenarioReport> {
    let problem = (!problems.is_empty()).then(|| format!("{scenario}: {}", problems.join("; ")));
    Ok(ScenarioReport { scenario, seed, problem, details: serde_json::to_value(details)? })
}

/// The first few items of a list, and how many there are: `gaps (2): a v3, b v7`.
pub(crate) fn few<T: Display>(what: &str, items: impl IntoIterator<Item = T>) -> Option<String> {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if items.is_empty() {
        return None;
    }
    let shown = items.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    let more = if items.len() > 4 { format!(" (+{} more)", items.len() - 4) } else { String::new() };
    Some(format!("{what} ({}): {shown}{more}", items.len()))
}
