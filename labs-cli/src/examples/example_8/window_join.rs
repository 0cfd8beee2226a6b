//! `labs run example-8 --scenario window-join`: searches and clicks into two streams, the join's
//! state sampled while they flow, then end-of-input and a heartbeat on every shard so the last
//! windows close without more data.

use std::collections::BTreeSet;

use anyhow::Result;
use labs_core::join::clicks::{ClickSpec, Clickstream, ClickstreamRecord, generate};
use labs_core::join::window::{JoinRow, reference_of};
use serde::Serialize;
use serde_json::{Value, json};

use super::data::{WindowState, window_rows};
use super::{Ctx, DEFAULT_SESSIONS, MAX_RUNS, WINDOW_MS, WindowRun, now_millis, wait_for, window_runs};
use crate::driver::kinesis::{self, Outgoing, PutOptions};
use crate::driver::seeds;

/// The spec a recorded run was produced from.
pub fn spec_of(run: &WindowRun) -> ClickSpec {
    ClickSpec { sessions: run.sessions, ..ClickSpec::standard("w", run.seed, run.start) }
}

/// The watermark an end-of-input record of this run names: past every window of it.
pub fn end_of(stream: &Clickstream) -> i64 {
    stream.last_event_time() + WINDOW_MS + 1
}

/// Rows of the output that belong to `stream`'s searches.
pub fn rows_of(rows: &BTreeSet<JoinRow>, stream: &Clickstream) -> BTreeSet<JoinRow> {
    let ids: BTreeSet<&str> = stream.searches.iter().map(|s| s.search_id.as_str()).collect();
    rows.iter().filter(|r| ids.contains(r.search_id.as_str())).cloned().collect()
}

#[derive(Debug, Clone, Serialize)]
struct Sample {
    sent: usize,
    buffered: usize,
    sessions: usize,
    watermark: Option<i64>,
}

async fn sample(ctx: &Ctx<'_>, sent: usize, samples: &mut Vec<Sample>) -> Result<()> {
    let state = WindowState::read(ctx.target, &ctx.names).await?;
    samples.push(Sample {
        sent,
        buffered: state.buffered(),
        sessions: state.sessions.len(),
        watermark: state.watermark(),
    });
    Ok(())
}

/// How much faster than event time a paced run sends its records.
const SPEEDUP: u64 = 2;

fn event_time(record: &ClickstreamRecord) -> Option<i64> {
    match record {
        ClickstreamRecord::Search(s) => Some(s.event_time),
        ClickstreamRecord::Click(c) => Some(c.event_time),
        _ => None,
    }
}

/// Sends `record` to every open shard of both streams, placed by each shard's starting hash key.
async fn to_every_shard(ctx: &Ctx<'_>, record: &ClickstreamRecord) -> Result<usize> {
    let client = &ctx.target.clients.kinesis;
    let mut sent = 0;
    for stream in [&ctx.names.searches, &ctx.names.clicks] {
        for shard in kinesis::list_shards(client, stream).await?.into_iter().filter(|s| s.open) {
            let options =
                PutOptions { explicit_hash_key: Some(shard.range()?.starting_hash_key), ..PutOptions::default() };
            let outgoing = Outgoing { partition_key: "control".to_owned(), data: record.to_bytes() };
            kinesis::put_record(client, stream, &outgoing, &options).await?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// Produces `stream` in production order, then closes it; returns the state samples. With
/// `every` > 0 it samples the state every that many records and paces the records by event time
/// at [`SPEEDUP`] times real time, so the state can be seen rising and falling.
pub async fn produce_and_close(ctx: &Ctx<'_>, stream: &Clickstream, every: usize) -> Result<Vec<Value>> {
    let client = &ctx.target.clients.kinesis;
    let mut samples = Vec::new();
    let started = std::time::Instant::now();
    let first = stream.production.iter().filter_map(event_time).min().unwrap_or(0);
    for (i, record) in stream.production.iter().enumerate() {
        if every > 0 {
            let due = (event_time(record).unwrap_or(first) - first).max(0) as u64 / SPEEDUP;
            let due = std::time::Duration::from_millis(due);
            tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
        }
        let name = if matches!(record, ClickstreamRecord::Search(_)) { &ctx.names.searches } else { &ctx.names.clicks };
        let outgoing =
            Outgoing { partition_key: record.session_id().unwrap_or("none").to_owned(), data: record.to_bytes() };
        kinesis::put_record(client, name, &outgoing, &PutOptions::default()).await?;
        if every > 0 && i % every == every - 1 {
            sample(ctx, i + 1, &mut samples).await?;
        }
    }
    let end = end_of(stream);
    let shards = to_every_shard(ctx, &ClickstreamRecord::EndOfInput { watermark: end, sent_at: now_millis() }).await?;
    // Each shard's processor learns of the other stream's end only when it runs again.
    wait_for("waiting for every shard's end-of-input to reach the join", || async {
        let state = WindowState::read(ctx.target, &ctx.names).await?;
        let ended = state.clocks.iter().filter(|c| c.clock.declared_watermark.is_some_and(|w| w >= end)).count();
        Ok(shards.saturating_sub(ended))
    })
    .await?;
    to_every_shard(ctx, &ClickstreamRecord::Heartbeat { sent_at: now_millis() }).await?;
    let sessions: BTreeSet<&str> = stream.searches.iter().map(|s| s.session_id.as_str()).collect();
    let wanted = reference_of(stream, WINDOW_MS).len();
    wait_for("waiting for every search to be decided and its state evicted", || async {
        let (rows, _) = window_rows(ctx.target, &ctx.names).await?;
        let state = WindowState::read(ctx.target, &ctx.names).await?;
        let left = state.sessions.iter().filter(|(s, _)| sessions.contains(s.session_id.as_str())).count();
        Ok(wanted.saturating_sub(rows_of(&rows, stream).len()) + left)
    })
    .await?;
    sample(ctx, stream.production.len(), &mut samples).await?;
    Ok(samples.into_iter().map(|s| json!(s)).collect())
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Value> {
    let runs = window_runs(ctx.target, &ctx.names).await?;
    seeds::check_room(runs.len(), 1, MAX_RUNS, &ctx.names.searches, "example-8")?;
    let used: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    let seed = seeds::for_scenario(ctx.options.seed, &used, "window-join", &ctx.names.searches, "example-8")?;
    let after_previous = runs.iter().map(|r| end_of(&generate(&spec_of(r))) + 1_000).max().unwrap_or(0);
    let sessions = ctx.options.count.unwrap_or(DEFAULT_SESSIONS) as u32;
    let run = WindowRun { seed, start: now_millis().max(after_previous), sessions };
    let stream = generate(&spec_of(&run));
    let client = &ctx.target.clients.kinesis;
    kinesis::record_run(client, &ctx.names.searches, &format!("window:{seed}"), &format!("{}:{sessions}", run.start))
        .await?;
    ctx.out.say(format!(
        "{} searches and {} clicks of {sessions} sessions (seed {seed}) into {} and {}; window {} s.",
        stream.searches.len(),
        stream.clicks.len(),
        ctx.names.searches,
        ctx.names.clicks,
        WINDOW_MS / 1000
    ));
    let samples = produce_and_close(ctx, &stream, 6).await?;
    ctx.out.table(
        "The join's state while records flow (buffered searches and clicks; rows of ex8-window-state):",
        &["records sent", "buffered events", "session rows", "watermark (s after start)"],
        samples.iter().map(|s| {
            let watermark = s["watermark"]
                .as_i64()
                .filter(|w| *w > i64::MIN)
                .map_or("none".to_owned(), |w| format!("{:.1}", (w - run.start) as f64 / 1000.0));
            vec![s["sent"].to_string(), s["buffered"].to_string(), s["sessions"].to_string(), watermark]
        }),
    );
    let (rows, _) = window_rows(ctx.target, &ctx.names).await?;
    let rows = rows_of(&rows, &stream);
    let position = |id: &str| stream.position(id);
    let click_first =
        rows.iter().filter(|r| r.click_id.as_deref().is_some_and(|c| position(c) < position(&r.search_id))).count();
    let no_click = rows.iter().filter(|r| r.click_id.is_none()).count();
    ctx.out.table(
        "A few rows of the join (ex8-search-clicks):",
        &["search", "click", "click - search (s)", "note"],
        rows.iter().take(8).map(|r| {
            let note = match &r.click_id {
                None => "no click within the window: emitted when the watermark passed its end".to_owned(),
                Some(c) if position(c) < position(&r.search_id) => "the click arrived first and waited".to_owned(),
                Some(_) => String::new(),
            };
            let gap = r.click_time.map_or("-".to_owned(), |t| format!("{:.1}", (t - r.search_time) as f64 / 1000.0));
            vec![r.search_id.clone(), r.click_id.clone().unwrap_or_else(|| "-".into()), gap, note]
        }),
    );
    ctx.out.say(format!(
        "{} rows: {} matched ({click_first} of them with the click arriving first), {no_click} searches without a click.",
        rows.len(),
        rows.len() - no_click
    ));
    Ok(
        json!({ "scenario": "window-join", "seed": seed, "start": run.start, "rows": rows.len(), "no_click": no_click, "click_first": click_first, "state": samples }),
    )
}
