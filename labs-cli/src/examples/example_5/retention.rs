//! Scenario retention: Kinesis keeps records for a while (24 h by default) and never compacts.
//! Compacting outside it: the latest state per account with the version it covers, from which
//! (plus the log's tail) the projection rebuilds; beside it, what Kafka's compaction would keep.

use std::collections::BTreeMap;

use anyhow::Result;
use labs_core::ledger::Account;
use labs_core::ledger::snapshot::{compact, latest_event_per_key, rebuild};
use labs_core::ledger::workload::Step;
use labs_infra::SdkContext;
use ledger_projector::{DynamoStateTable, ExecuteOptions, StateTable};
use serde::Serialize;

use super::{
    CATCH_UP, EXAMPLES, Lab, RunSpec, ScenarioReport, distinct, execute_steps, money, report, tally, tally_line,
};

#[derive(Serialize)]
struct RetentionReport {
    retention_hours: Option<i32>,
    log_records: usize,
    log_bytes: usize,
    compacted_rows: usize,
    compacted_bytes: usize,
    events_compacted: usize,
    tail_events: usize,
    rebuilt_equals_projection: bool,
    differing_accounts: Vec<String>,
}

pub(super) async fn retention(lab: &Lab<'_>, run: &RunSpec) -> Result<ScenarioReport> {
    let out = lab.out;
    let summary = lab
        .target
        .clients
        .kinesis
        .describe_stream_summary()
        .stream_name(&lab.stream)
        .send()
        .await
        .doing(format!("describing {}", lab.stream))?;
    let retention_hours = summary.stream_description_summary().map(|s| s.retention_period_hours());
    out.say(format!(
        "1. {} keeps records for {} hours (the default is 24, the most 8760 = 365 days); then they are gone,\n   \
         whatever they were. Kinesis never compacts: a key written a million times is a million records.",
        lab.stream,
        retention_hours.map_or("?".to_owned(), |h| h.to_string())
    ));
    let workload = run.workload();
    let (before, after) = workload.steps.split_at(workload.steps.len() * 2 / 3);
    let ran = execute_steps(lab, before, |_| ExecuteOptions::default(), "executing commands").await?;
    out.say(tally_line(&tally(&ran)));
    let caught_up_before = lab.wait_for_projection(CATCH_UP).await?;

    out.say(format!(
        "2. Compacting the log into {}: per account, the state after its last event, with that version.",
        lab.compacted
    ));
    let log = lab.read_log().await?;
    let events = distinct(&log.events);
    let compaction = compact(&events)?;
    let table = DynamoStateTable::new(lab.dynamodb().clone(), &lab.compacted);
    for row in compaction.rows.values() {
        table.put_if_newer(row).await?;
    }
    let compacted_bytes: usize = compaction.rows.values().map(|r| serde_json::to_vec(r).map_or(0, |v| v.len())).sum();
    out.table(
        "",
        &["", "records", "bytes"],
        [
            vec![
                "the Kinesis log (redeliveries included)".to_owned(),
                log.events.len().to_string(),
                log.bytes.to_string(),
            ],
            vec![
                format!("compacted ({} events folded)", compaction.events_compacted),
                compaction.rows.len().to_string(),
                compacted_bytes.to_string(),
            ],
        ],
    );
    let kafka = latest_event_per_key(&events);
    out.table(
        "   What Kafka's log compaction would keep of a topic keyed by account: the latest record per key. Here a\n   \
         record is a change, not a state, so the last one is not the balance; compacting needs a fold first.",
        &["account", "Kafka keeps (last event)", "compacted here (state, version)"],
        workload.accounts.iter().take(EXAMPLES).filter_map(|id| {
            let last = kafka.get(id)?;
            let state = compaction.rows.get(id)?;
            Some(vec![
                id.clone(),
                format!("v{} {} ({})", last.version, last.kind.type_name(), signed(last.kind.balance_delta())),
                format!("{} at v{}", money(state.balance), state.version),
            ])
        }),
    );

    out.say(format!(
        "3. {} more commands (the log's tail), then the projection rebuilt from the compacted rows plus the tail alone",
        after.iter().map(|step| if matches!(step, Step::Race { .. }) { 2 } else { 1 }).sum::<usize>()
    ));
    let ran_after = execute_steps(lab, after, |_| ExecuteOptions::default(), "executing commands").await?;
    out.say(tally_line(&tally(&ran_after)));
    let caught_up = lab.wait_for_projection(CATCH_UP).await?;
    let log = lab.read_log().await?;
    let now = distinct(&log.events);
    let covered = |id: &str| compaction.rows.get(id).map_or(0, |r| r.version);
    let tail: Vec<_> = now.iter().filter(|e| e.version > covered(&e.account_id)).cloned().collect();
    let rebuilt = rebuild(&compaction.rows, &tail)?;
    let (live, _) = lab.states(&lab.balances).await?;
    let live: BTreeMap<String, Account> = live.into_iter().map(|r| (r.account_id.clone(), r)).collect();
    let differing: Vec<String> =
        rebuilt.iter().filter(|(id, state)| live.get(*id) != Some(state)).map(|(id, _)| id.clone()).collect();
    out.say(format!(
        "   {} compacted rows + {} tail events rebuilt {} accounts: {}.",
        compaction.rows.len(),
        tail.len(),
        rebuilt.len(),
        if differing.is_empty() {
            "identical to the live projection".to_owned()
        } else {
            format!("{} differ from the live projection", differing.len())
        }
    ));
    out.say(
        "   Kafka compacts inside the broker, per key, keeping the latest record (a null value deletes the key):\n   \
         right for a topic of states (a changelog), wrong for a topic of changes. Here the fold is ours to run.",
    );
    let mut problems = Vec::new();
    if caught_up_before.is_none() || caught_up.is_none() {
        problems.push(format!("the projection did not catch up within {} s", CATCH_UP.as_secs()));
    } else if !differing.is_empty() {
        problems.push(format!("compacted + tail differs from the projection for {}", differing.join(", ")));
    }
    report(
        "retention",
        run.seed,
        problems,
        RetentionReport {
            retention_hours,
            log_records: log.events.len(),
            log_bytes: log.bytes,
            compacted_rows: compaction.rows.len(),
            compacted_bytes,
            events_compacted: compaction.events_compacted,
            tail_events: tail.len(),
            rebuilt_equals_projection: differing.is_empty(),
            differing_accounts: differing,
        },
    )
}

/// A change of balance in cents, with its sign: `+12.00`, `-0.50`.
fn signed(delta: i128) -> String {
    let cents = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
    if cents > 0 { format!("+{}", money(cents)) } else { money(cents) }
}
