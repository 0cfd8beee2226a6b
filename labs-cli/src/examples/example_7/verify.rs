//! Example 7's verifier: reads the whole stream and checks each order's steps against the
//! regenerated runs that promise per-order order.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};
use labs_core::orders::{self, OrderingReport, Verdict, check_order, steps_per_order};
use labs_core::partition::{ShardRange, hash_key};
use serde::Serialize;

use super::{
    ORDERS, Run, Scenario, VerifyOptions, capitalized, decode, recorded_runs, short_shard, steps_text,
    what_the_target_is,
};
use crate::driver::kinesis::{self, Position};
use crate::output::{self, Output};
use crate::target::Target;

#[derive(Serialize)]
pub(super) struct VerifyReport {
    stream: String,
    runs: Vec<Run>,
    records_read: usize,
    /// Records of orders whose producer promises per-order order: these are checked.
    checked_records: usize,
    /// Records of runs that promise no order (random-keys, hot-shard, the naive retry).
    unchecked_records: usize,
    undecodable: usize,
    /// Order events of no recorded run.
    foreign: usize,
    /// Parents that shards name but the target no longer lists.
    missing_parent_shards: Vec<String>,
    ordering: OrderingReport,
    passed: bool,
}

pub(super) async fn verify(target: &Target, _options: &VerifyOptions, out: Output) -> Result<bool> {
    let client = &target.clients.kinesis;
    let stream = target.name(ORDERS);
    let runs = recorded_runs(client, &stream).await?;
    if runs.is_empty() {
        bail!("nothing to verify: {stream} has no recorded runs (run `labs run example-7` first)");
    }
    // Which run each order-id prefix belongs to, and what the checked orders should hold.
    let mut prefixes: HashMap<String, (Scenario, bool)> = HashMap::new();
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    for run in &runs {
        for part in run.scenario.parts(run.seed, run.orders) {
            prefixes.insert(part.spec.id_prefix(), (run.scenario, part.keeps_order));
            if part.keeps_order {
                expected.extend(steps_per_order(&orders::generate(&part.spec)));
            }
        }
    }
    let shards = kinesis::list_shards(client, &stream).await?;
    let orphans = orders::orphans(&shards, |s| {
        (s.shard_id.clone(), [s.parent_shard_id.clone(), s.adjacent_parent_shard_id.clone()])
    });
    let orphan_ranges: Vec<ShardRange> = orphans.iter().map(|(i, _)| shards[*i].range()).collect::<Result<_>>()?;
    let mut missing_parents: Vec<String> = orphans.iter().flat_map(|(_, parents)| parents.clone()).collect();
    missing_parents.sort();
    missing_parents.dedup();

    let spinner = output::spinner("reading every shard from TRIM_HORIZON, parents before children");
    let records = kinesis::read_stream(client, &stream, &Position::TrimHorizon).await;
    spinner.finish_and_clear();
    let records = records?;
    let (mut undecodable, mut foreign, mut unchecked) = (0, 0, 0);
    let mut checked: Vec<(String, u32, String)> = Vec::new();
    for record in &records {
        let Some(event) = decode(record) else {
            undecodable += 1;
            continue;
        };
        let prefix = event.order_id.split_inclusive('-').next().unwrap_or_default();
        match prefixes.get(prefix) {
            Some((_, true)) => checked.push((event.order_id, event.step, record.shard_id.clone())),
            Some((_, false)) => unchecked += 1,
            None => foreign += 1,
        }
    }
    // A missing run of first steps is the target's doing only if the order's key maps into a
    // shard whose parent the target no longer has.
    let loss_excused = |order_id: &str| orphan_ranges.iter().any(|r| r.contains(hash_key(order_id)));
    let report = check_order(&expected, checked.iter().map(|(id, step, _)| (id.as_str(), *step)), loss_excused);
    let passed = report.is_ok() && undecodable == 0 && foreign == 0;

    let mark = |ok: bool| if ok { "ok" } else { "FAILED" }.to_owned();
    let reordered = report.reordered();
    let duplicated = report.count(|v| matches!(v, Verdict::Duplicated));
    let missing = report.count(|v| matches!(v, Verdict::Missing { .. } | Verdict::UnknownStep { .. }));
    let mut rows = vec![
        vec![
            "every record is an order event of a recorded run".to_owned(),
            mark(undecodable == 0 && foreign == 0),
            format!(
                "{} read: {} checked, {unchecked} from runs that promise no order, {undecodable} undecodable, {foreign} from no recorded run",
                records.len(),
                checked.len()
            ),
        ],
        vec![
            "each order's steps arrive strictly rising".to_owned(),
            mark(reordered == 0),
            format!("{reordered} of {} orders had a step after a later one", report.orders),
        ],
        vec!["no step arrives twice".to_owned(), mark(duplicated == 0), format!("{duplicated} orders")],
        vec!["no step is missing (no gap)".to_owned(), mark(missing == 0), format!("{missing} orders")],
    ];
    if !missing_parents.is_empty() {
        rows.push(vec![
            "steps gone with parent shards the target deleted".to_owned(),
            "not counted".to_owned(),
            format!(
                "{} first steps of {} orders, lost with deleted parent shards ({} and any before them; see below)",
                report.lost_steps,
                report.in_order_after_loss,
                missing_parents.iter().map(|s| short_shard(s)).collect::<Vec<_>>().join(", "),
            ),
        ]);
    }
    out.table(
        &format!(
            "Verifying {stream}: {} runs, {} orders checked (key-order, reshard, the fixed producers of retry-reorder)",
            runs.len(),
            report.orders
        ),
        &["check", "result", "details"],
        rows,
    );
    if !report.violations.is_empty() {
        let shards_of = |order_id: &str| {
            checked
                .iter()
                .filter(|(id, _, _)| id == order_id)
                .map(|(_, step, shard)| format!("{step}@{}", short_shard(shard)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.table(
            &format!(
                "Orders that broke the rule ({} in all, the first {} shown)",
                report.violations.len(),
                10.min(report.violations.len())
            ),
            &["order", "steps as read", "where each step was", "problem"],
            report.violations.iter().take(10).map(|t| {
                vec![t.order_id.clone(), steps_text(&t.arrival), shards_of(&t.order_id), t.verdict.describe()]
            }),
        );
    }
    if !missing_parents.is_empty() {
        out.say(if target.kind.is_aws() {
            "Shards past the retention period are gone on AWS too: orders whose first steps were in them are checked on what remains.".to_owned()
        } else {
            format!(
                "{} deletes a shard and its records when it is split or merged (the reshard scenario does that);\n\
                 AWS keeps a closed shard readable until the retention period ends. Those steps are the emulator's\n\
                 loss, not a fault of yours or of Kinesis.",
                capitalized(&what_the_target_is(&target.kind))
            )
        });
    }
    out.json(&VerifyReport {
        stream,
        runs,
        records_read: records.len(),
        checked_records: checked.len(),
        unchecked_records: unchecked,
        undecodable,
        foreign,
        missing_parent_shards: missing_parents,
        ordering: report,
        passed,
    })?;
    Ok(passed)
}
