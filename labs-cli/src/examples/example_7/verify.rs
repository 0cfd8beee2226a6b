//! Example 7's verifier: reads the whole stream and checks each order's steps against the
//! regenerated runs that promise per-order order.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Result, bail};
use labs_core::orders::{self, OrderEvent, OrderingReport, Verdict, check_order, steps_per_order};
use labs_core::partition::hash_key;
use serde::Serialize;

use super::{
    ORDERS, Reshard, Run, Scenario, VerifyOptions, capitalized, decode, recorded_runs, short_shard, steps_text,
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
    /// Parents a recorded split or merge closed and the target no longer lists.
    missing_parent_shards: Vec<String>,
    /// Orders all of whose steps were produced into a deleted parent before its reshard, and of
    /// which nothing remains: not checkable, so not counted in `ordering`.
    vanished_with_deleted_parents: usize,
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
    let shards = kinesis::list_shards(client, &stream).await?;
    let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let deletions = deleted_parents(&runs, &listed);
    let mut missing_parents: Vec<String> = deletions.iter().flat_map(|d| d.reshard.parents.clone()).collect();
    missing_parents.sort();
    missing_parents.dedup();

    // Which run each order-id prefix belongs to, what the checked orders should hold, and how
    // many first steps of each were provably in a parent the target deleted.
    let mut prefixes: HashMap<String, (Scenario, bool)> = HashMap::new();
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    let mut excusable: BTreeMap<String, u32> = BTreeMap::new();
    for run in &runs {
        for part in run.scenario.parts(run.seed, run.orders) {
            prefixes.insert(part.spec.id_prefix(), (run.scenario, part.keeps_order));
            if part.keeps_order {
                let events = orders::generate(&part.spec);
                expected.extend(steps_per_order(&events));
                excusable
                    .extend(orders::proved_lost_first_steps(&events, |e| deletions.iter().any(|d| d.held(run, e))));
            }
        }
    }

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
    // An order every step of which was provably in a deleted parent, and of which nothing
    // arrived, cannot be checked at all: it is counted apart, never as in order.
    let arrived: HashSet<&str> = checked.iter().map(|(id, _, _)| id.as_str()).collect();
    let vanished: Vec<String> = expected
        .iter()
        .filter(|(id, steps)| !arrived.contains(id.as_str()) && excusable.get(*id) == Some(steps))
        .map(|(id, _)| id.clone())
        .collect();
    for id in &vanished {
        expected.remove(id);
    }
    let excused = |order_id: &str| excusable.get(order_id).copied().unwrap_or(0);
    let report = check_order(&expected, checked.iter().map(|(id, step, _)| (id.as_str(), *step)), excused);
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
                "{} first steps of {} orders, and all steps of {} orders, produced into {} before the reshard \
                 that deleted them (see below)",
                report.lost_steps,
                report.in_order_after_loss,
                vanished.len(),
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
        vanished_with_deleted_parents: vanished.len(),
        ordering: report,
        passed,
    })?;
    Ok(passed)
}

/// A recorded split or merge whose parents the target no longer lists, with the run that made it.
struct Deletion<'a> {
    run: &'a Run,
    reshard: &'a Reshard,
}

impl Deletion<'_> {
    /// Whether `event` of `run` was provably in the deleted parents: its key is in their hash
    /// range, and it was produced before the reshard (by an earlier run, or earlier in this run).
    fn held(&self, run: &Run, event: &OrderEvent) -> bool {
        let in_range =
            (self.reshard.starting_hash_key..=self.reshard.ending_hash_key).contains(&hash_key(&event.order_id));
        let same_run = run.scenario == self.run.scenario && run.seed == self.run.seed;
        let before = if same_run {
            event.emitted < self.reshard.events_before as u64
        } else {
            matches!((run.ordinal, self.run.ordinal), (Some(a), Some(b)) if a < b)
        };
        in_range && before
    }
}

/// The recorded splits and merges whose parents are all gone from the listing.
fn deleted_parents<'a>(runs: &'a [Run], listed: &HashSet<&str>) -> Vec<Deletion<'a>> {
    runs.iter()
        .flat_map(|run| run.reshards.iter().map(move |reshard| Deletion { run, reshard }))
        .filter(|d| d.reshard.parents.iter().all(|p| !listed.contains(p.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: Scenario, seed: u64, ordinal: Option<usize>, reshards: Vec<Reshard>) -> Run {
        Run { scenario, seed, orders: 40, ordinal, reshards }
    }

    fn split(parent: &str, events_before: usize) -> Reshard {
        Reshard {
            operation: "split".to_owned(),
            parents: vec![parent.to_owned()],
            starting_hash_key: 0,
            ending_hash_key: u128::MAX / 2,
            events_before,
        }
    }

    #[test]
    fn a_run_tag_reads_back_as_written_and_fits_a_tag_value() {
        let merge = Reshard {
            operation: "merge".to_owned(),
            parents: vec!["shardId-000000000002".to_owned(), "shardId-000000000003".to_owned()],
            starting_hash_key: u128::MAX / 2 + 1,
            ending_hash_key: u128::MAX,
            events_before: 19_999,
        };
        let written = Run {
            orders: 20_000,
            ..run(Scenario::Reshard, u64::MAX, Some(47), vec![split("shardId-000000000001", 9_999), merge])
        };
        let value = written.tag_value();
        assert!(value.len() <= 256, "{} characters: {value}", value.len());
        let read = Run::parse(&format!("reshard:{}", u64::MAX), &value).unwrap();
        assert_eq!((read.orders, read.ordinal, &read.reshards), (20_000, Some(47), &written.reshards));
        assert!(Run::parse("key-order:1", "40").unwrap().ordinal.is_none(), "older tags still read");
        assert!(Run::parse("key-order:1", "40 #x").is_none());
        assert!(Run::parse("sideways:1", "40").is_none());
    }

    #[test]
    fn only_what_was_produced_into_a_deleted_parent_before_the_reshard_is_held() {
        let earlier = run(Scenario::KeyOrder, 1, Some(0), vec![]);
        let resharding = run(Scenario::Reshard, 1, Some(1), vec![split("shardId-000000000001", 30)]);
        let later = run(Scenario::KeyOrder, 2, Some(2), vec![]);
        let unordered = run(Scenario::KeyOrder, 3, None, vec![]);
        let runs = [earlier, resharding, later, unordered];
        let deletions = deleted_parents(&runs, &HashSet::from(["shardId-000000000004"]));
        assert_eq!(deletions.len(), 1);
        assert!(deleted_parents(&runs, &HashSet::from(["shardId-000000000001"])).is_empty(), "parent still listed");

        // An order id whose key falls in the lower half, and one in the upper half.
        let low = (0..).map(|i| format!("x-{i}")).find(|id| hash_key(id) <= u128::MAX / 2).unwrap();
        let high = (0..).map(|i| format!("x-{i}")).find(|id| hash_key(id) > u128::MAX / 2).unwrap();
        let event = |id: &str, emitted| OrderEvent {
            order_id: id.to_owned(),
            customer_id: "cust-000".to_owned(),
            step: 1,
            status: "created".to_owned(),
            emitted,
        };
        let d = &deletions[0];
        assert!(d.held(&runs[0], &event(&low, 500)), "an earlier run, in range");
        assert!(!d.held(&runs[0], &event(&high, 0)), "an earlier run, out of range");
        assert!(d.held(&runs[1], &event(&low, 29)), "this run, before the split");
        assert!(!d.held(&runs[1], &event(&low, 30)), "this run, after the split");
        assert!(!d.held(&runs[2], &event(&low, 0)), "a later run");
        assert!(!d.held(&runs[3], &event(&low, 0)), "a run of unknown time is never excused");
    }
}
