//! Scenario reshard: splitting and merging shards while orders flow, and what a consumer sees.

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use labs_core::orders::{self, OrderEvent, OrderingReport, ShardLoad, check_order, steps_per_order};
use labs_core::partition::hash_key;
use serde::Serialize;

use super::{
    EXAMPLES, Read, Reshard, Run, Scenario, capitalized, decode, decode_run, encode, produce_in_key_order, record_run,
    short_shard, steps_text, what_the_target_is,
};
use crate::driver::kinesis::{self, Incoming, Position, ProduceStats};
use crate::output::{self, Output};
use crate::target::{Target, TargetKind};

/// A polling consumer that keeps, per shard, what it has read; the last record is its
/// checkpoint. It catches up shard by shard, parents before children, as a log consumer should.
#[derive(Default)]
struct CheckpointingConsumer {
    shards: Vec<SeenShard>,
}

struct SeenShard {
    shard: kinesis::Shard,
    /// Whether the target listed it at the last catch-up.
    listed: bool,
    records: Vec<Incoming>,
}

impl CheckpointingConsumer {
    async fn catch_up(&mut self, client: &Client, stream: &str) -> Result<()> {
        let listed = kinesis::list_shards(client, stream).await?;
        for seen in &mut self.shards {
            seen.listed = false;
        }
        for shard in listed {
            let index = match self.shards.iter().position(|s| s.shard.shard_id == shard.shard_id) {
                Some(index) => index,
                None => {
                    self.shards.push(SeenShard { shard: shard.clone(), listed: true, records: Vec::new() });
                    self.shards.len() - 1
                }
            };
            let seen = &mut self.shards[index];
            seen.shard = shard;
            seen.listed = true;
            let position = seen
                .records
                .last()
                .map_or(Position::TrimHorizon, |r| Position::AfterSequence(r.sequence_number.clone()));
            let more = kinesis::read_shard_to_tip(client, stream, &seen.shard.shard_id, &position).await?;
            seen.records.extend(more);
        }
        Ok(())
    }

    fn get(&self, shard_id: &str) -> Option<&SeenShard> {
        self.shards.iter().find(|s| s.shard.shard_id == shard_id)
    }
}

fn count_run(records: &[Incoming], id_prefix: &str) -> usize {
    records.iter().filter(|r| decode(r).is_some_and(|e| e.order_id.starts_with(id_prefix))).count()
}

#[derive(Serialize)]
struct ReshardStep {
    operation: &'static str,
    parents: Vec<String>,
    children: Vec<String>,
    /// Records (of every run) the consumer had read from the parents before the reshard.
    parent_records: usize,
    /// Whether the target still lists the parents afterwards.
    parents_kept: bool,
    /// Records read from the parents again, from TRIM_HORIZON, after the reshard (when kept).
    parent_records_readable: Option<usize>,
    /// Where this run's next records into the parents' hash range went, as the consumer read
    /// them; `None` when the run produced nothing after this step.
    new_records: Option<Routing>,
}

/// Where records produced after a split or merge, into the parents' hash range, were read from.
#[derive(Debug, Default, Serialize)]
struct Routing {
    in_range: usize,
    to_children: usize,
    to_parents: usize,
    elsewhere: usize,
}

/// Counts, from what the consumer read, where this run's events `emitted` in `from..to` whose key
/// is in `reshard`'s range landed: the claim "new records go to the children" checked in the data.
fn observe_routing(
    consumer: &CheckpointingConsumer,
    prefix: &str,
    step: &ReshardStep,
    reshard: &Reshard,
    emitted: std::ops::Range<u64>,
) -> Routing {
    let mut routing = Routing::default();
    for seen in &consumer.shards {
        for record in &seen.records {
            let Some(event) = decode(record) else { continue };
            let key = hash_key(&event.order_id);
            if !event.order_id.starts_with(prefix)
                || !emitted.contains(&event.emitted)
                || !(reshard.starting_hash_key..=reshard.ending_hash_key).contains(&key)
            {
                continue;
            }
            routing.in_range += 1;
            if step.children.contains(&record.shard_id) {
                routing.to_children += 1;
            } else if step.parents.contains(&record.shard_id) {
                routing.to_parents += 1;
            } else {
                routing.elsewhere += 1;
            }
        }
    }
    routing
}

/// Says where the new records went, from the data; where the target does not route them to the
/// children as Kinesis does, says so.
fn say_routing(out: Output, kind: &TargetKind, step: &ReshardStep) {
    let children = step.children.iter().map(|s| short_shard(s)).collect::<Vec<_>>().join(" and ");
    let parents = step.parents.iter().map(|s| short_shard(s)).collect::<Vec<_>>().join(" and ");
    match &step.new_records {
        None => out.say(format!("   No records of this run were produced after the {}.", step.operation)),
        Some(r) if r.in_range > 0 && r.to_children == r.in_range => out.say(format!(
            "   Read back: all {} records produced since the {} into {parents}'s hash range are in {children}.",
            r.in_range, step.operation
        )),
        Some(r) if r.in_range == 0 => out.say(format!(
            "   Read back: none of this run's later records keyed into {parents}'s hash range could be read."
        )),
        Some(r) => out.say(format!(
            "   Read back: of {} records produced since the {} into {parents}'s hash range, {} are in {children},\n   \
             {} in the closed {parents} and {} elsewhere. {} does not route as Kinesis does: on Kinesis\n   \
             every new record goes to the children once the parent is closed.",
            r.in_range,
            step.operation,
            r.to_children,
            r.to_parents,
            r.elsewhere,
            capitalized(&what_the_target_is(kind))
        )),
    }
}

/// Finds out what the target did with the parents of a split or merge: still listed and
/// readable (AWS), or gone (MiniStack).
async fn observe_reshard(
    client: &Client,
    stream: &str,
    operation: &'static str,
    parents: Vec<String>,
    consumer: &CheckpointingConsumer,
) -> Result<ReshardStep> {
    let listed = kinesis::list_shards(client, stream).await?;
    let is_parent = |p: &Option<String>| p.as_ref().is_some_and(|p| parents.contains(p));
    let children = listed
        .iter()
        .filter(|s| is_parent(&s.parent_shard_id) || is_parent(&s.adjacent_parent_shard_id))
        .map(|s| s.shard_id.clone())
        .collect();
    let parents_kept = parents.iter().all(|p| listed.iter().any(|s| &s.shard_id == p));
    let mut parent_records_readable = None;
    if parents_kept {
        let mut readable = 0;
        for parent in &parents {
            readable += kinesis::read_shard_to_tip(client, stream, parent, &Position::TrimHorizon).await?.len();
        }
        parent_records_readable = Some(readable);
    }
    Ok(ReshardStep {
        operation,
        parent_records: parents.iter().filter_map(|id| consumer.get(id)).map(|s| s.records.len()).sum(),
        parents,
        children,
        parents_kept,
        parent_records_readable,
        new_records: None,
    })
}

#[derive(Serialize)]
struct LineageRow {
    shard_id: String,
    parents: Vec<String>,
    state: &'static str,
    records: usize,
    source: &'static str,
}

#[derive(Serialize)]
struct ConsumerView {
    consumer: &'static str,
    shard_order: Vec<String>,
    ordering: OrderingReport,
}

#[derive(Serialize)]
pub(super) struct ReshardReport {
    seed: u64,
    orders: usize,
    produced: Vec<ProduceStats>,
    steps: Vec<ReshardStep>,
    /// The target's behaviour: true where closed parents stay listed and readable (AWS).
    target_keeps_parents: bool,
    shards: Vec<LineageRow>,
    lineage_aware: ConsumerView,
    lineage_ignoring: ConsumerView,
}

/// Says what the target did with the parents of a split or merge, plainly.
fn say_behaviour(out: Output, kind: &TargetKind, step: &ReshardStep) {
    let parents = step.parents.join(" and ");
    let (it, they, its) = if step.parents.len() > 1 { ("them", "they", "their") } else { ("it", "it", "its") };
    let children = step.children.join(", ");
    match step.parent_records_readable {
        Some(readable) => out.say(format!(
            "   {parents}: still listed, now closed (an ending sequence number), and still readable:\n   \
             {readable} of the {} records the consumer had read from {it}; {children} {} {it} as parent.\n   \
             This is what Kinesis does: a closed shard stays readable until the retention period ends, so a\n   \
             consumer can always finish a parent before its children.",
            step.parent_records,
            if step.children.len() == 1 { "names" } else { "name" },
        )),
        None => out.say(format!(
            "   GONE: {} no longer lists {parents},\n   \
             although {children} {} {it} as parent.\n   \
             The {} records {they} held (from every run so far) cannot be read any more.\n   \
             This is the emulator, not Kinesis: {}\n   \
             This consumer lost nothing: it had read {its} records to the end before the {}.\n   \
             (`labs verify` excuses only what was produced into {it} before the {}, and says how much.)",
            what_the_target_is(kind),
            if step.children.len() == 1 { "names" } else { "name" },
            step.parent_records,
            if kind.is_aws() {
                "on AWS a closed parent stays readable\n   \
                 for the retention period, so this should not happen there."
            } else {
                "it deletes a split or merged parent with its records,\n   \
                 while AWS closes the parent and keeps it readable until the retention period ends (24 hours by default)."
            },
            step.operation,
            step.operation
        )),
    }
}

pub(super) async fn reshard(target: &Target, stream: &str, run: &mut Run, out: Output) -> Result<ReshardReport> {
    let client = &target.clients.kinesis;
    let part = Scenario::Reshard.parts(run.seed, run.orders).remove(0);
    let events = orders::generate(&part.spec);
    let prefix = part.spec.id_prefix();
    let expected = steps_per_order(&events);
    let phases: Vec<&[OrderEvent]> = events.chunks(events.len().div_ceil(3).max(1)).collect();
    out.say(format!(
        "\n== reshard (seed {}) ==\n{} orders all under way at once ({} events, partition key = order_id), produced in three parts;\n\
         between them the busiest shard is split and two quiet ones merged. A consumer reads along, keeping a\n\
         checkpoint per shard.",
        run.seed,
        run.orders,
        events.len()
    ));
    let encode_phase = |phase: &[OrderEvent]| phase.iter().map(|e| encode(e, e.order_id.clone())).collect::<Vec<_>>();
    let mut consumer = CheckpointingConsumer::default();
    let mut produced = Vec::new();
    let mut steps = Vec::new();

    out.say(format!("1. Producing part 1 ({} records); the consumer reads every shard to its end.", phases[0].len()));
    produced.push(produce_in_key_order(target, stream, encode_phase(phases[0])).await?);
    consumer.catch_up(client, stream).await?;

    let loads: Vec<ShardLoad> = consumer
        .shards
        .iter()
        .filter(|s| s.listed && s.shard.open)
        .map(|s| Ok(ShardLoad { range: s.shard.range()?, records: count_run(&s.records, &prefix) }))
        .collect::<Result<_>>()?;
    let Some(plan) = orders::plan_reshard(&loads) else {
        bail!("reshard: {stream} has no open shard whose hash key range can be split");
    };
    let split_load = loads.iter().find(|l| l.range.shard_id == plan.split).map_or(0, |l| l.records);
    let range_of = |id: &str| loads.iter().find(|l| l.range.shard_id == id).map(|l| l.range.clone());
    let split_range = range_of(&plan.split).expect("the plan splits a listed shard");
    let after_part = |parts: usize| phases.iter().take(parts).map(|p| p.len()).sum::<usize>();
    out.say(format!(
        "2. Splitting {} (the busiest: {split_load} records of this run) at hash key {}.",
        plan.split, plan.new_starting_hash_key
    ));
    let spinner = output::spinner(&format!("splitting {}", plan.split));
    let split = kinesis::split_shard(client, stream, &plan.split, plan.new_starting_hash_key).await;
    spinner.finish_and_clear();
    split?;
    // Recorded as soon as it happened: verify excuses only what this proves was in a deleted parent.
    let split_reshard = Reshard {
        operation: "split".to_owned(),
        parents: vec![plan.split.clone()],
        starting_hash_key: split_range.starting_hash_key,
        ending_hash_key: split_range.ending_hash_key,
        events_before: after_part(1),
    };
    run.reshards.push(split_reshard.clone());
    record_run(client, stream, run).await?;
    let mut split_step = observe_reshard(client, stream, "split", vec![plan.split.clone()], &consumer).await?;
    say_behaviour(out, &target.kind, &split_step);

    if let Some(phase) = phases.get(1) {
        out.say(format!("3. Producing part 2 ({} records); the consumer catches up.", phase.len()));
        produced.push(produce_in_key_order(target, stream, encode_phase(phase)).await?);
        consumer.catch_up(client, stream).await?;
        let emitted = after_part(1) as u64..after_part(2) as u64;
        split_step.new_records = Some(observe_routing(&consumer, &prefix, &split_step, &split_reshard, emitted));
    }
    say_routing(out, &target.kind, &split_step);
    steps.push(split_step);

    let mut merging = None;
    match &plan.merge {
        Some((a, b)) => {
            out.say(format!("4. Merging {a} and {b}, the quietest pair of adjacent shards."));
            let spinner = output::spinner(&format!("merging {a} and {b}"));
            let merged = kinesis::merge_shards(client, stream, a, b).await;
            spinner.finish_and_clear();
            merged?;
            let (first, second) = (range_of(a), range_of(b));
            let (Some(first), Some(second)) = (first, second) else {
                bail!("reshard: {a} and {b} were not listed before the merge");
            };
            let merge_reshard = Reshard {
                operation: "merge".to_owned(),
                parents: vec![a.clone(), b.clone()],
                starting_hash_key: first.starting_hash_key,
                ending_hash_key: second.ending_hash_key,
                events_before: after_part(2),
            };
            run.reshards.push(merge_reshard.clone());
            record_run(client, stream, run).await?;
            let merge_step = observe_reshard(client, stream, "merge", vec![a.clone(), b.clone()], &consumer).await?;
            say_behaviour(out, &target.kind, &merge_step);
            merging = Some((merge_step, merge_reshard));
        }
        None => out.say("4. No two other shards have adjacent hash ranges: nothing to merge."),
    }

    if let Some(phase) = phases.get(2) {
        out.say(format!("5. Producing part 3 ({} records); the consumer catches up.", phase.len()));
        produced.push(produce_in_key_order(target, stream, encode_phase(phase)).await?);
        consumer.catch_up(client, stream).await?;
        if let Some((step, reshard)) = &mut merging {
            let emitted = after_part(2) as u64..after_part(3) as u64;
            step.new_records = Some(observe_routing(&consumer, &prefix, step, reshard, emitted));
        }
    }
    if let Some((step, _)) = merging {
        say_routing(out, &target.kind, &step);
        steps.push(step);
    }

    // Every shard the consumer has seen, with this run's records: read again from TRIM_HORIZON
    // where the target still has it, as drained before the reshard where it does not.
    let listed = kinesis::list_shards(client, stream).await?;
    struct Content {
        row: LineageRow,
        lineage: (String, [Option<String>; 2]),
        reads: Vec<Read>,
    }
    let mut contents = Vec::new();
    for seen in &consumer.shards {
        let now = listed.iter().find(|s| s.shard_id == seen.shard.shard_id);
        let (records, state, source) = match now {
            Some(shard) => {
                let records =
                    kinesis::read_shard_to_tip(client, stream, &shard.shard_id, &Position::TrimHorizon).await?;
                (records, if shard.open { "open" } else { "closed" }, "read again from TRIM_HORIZON")
            }
            None => (seen.records.clone(), "deleted by the target", "as drained before the reshard"),
        };
        let reads = decode_run(records, &prefix);
        let parents = [seen.shard.parent_shard_id.clone(), seen.shard.adjacent_parent_shard_id.clone()];
        contents.push(Content {
            row: LineageRow {
                shard_id: seen.shard.shard_id.clone(),
                parents: parents.iter().flatten().cloned().collect(),
                state,
                records: reads.len(),
                source,
            },
            lineage: (seen.shard.shard_id.clone(), parents),
            reads,
        });
    }
    let aware_order = labs_core::lineage::parents_first(contents, |c| c.lineage.clone());
    out.table(
        "   Shard lineage now, with this run's records",
        &["shard", "parents", "state", "records", "records shown from"],
        aware_order.iter().map(|c| {
            vec![
                c.row.shard_id.clone(),
                if c.row.parents.is_empty() { "-".to_owned() } else { c.row.parents.join(", ") },
                c.row.state.to_owned(),
                c.row.records.to_string(),
                c.row.source.to_owned(),
            ]
        }),
    );

    let view = |name: &'static str, order: &[&Content]| {
        let reads: Vec<&Read> = order.iter().flat_map(|c| &c.reads).collect();
        let ordering = check_order(&expected, reads.iter().map(|r| (r.event.order_id.as_str(), r.event.step)), |_| 0);
        ConsumerView { consumer: name, shard_order: order.iter().map(|c| c.row.shard_id.clone()).collect(), ordering }
    };
    let aware_refs: Vec<&Content> = aware_order.iter().collect();
    let ignoring_refs: Vec<&Content> = aware_order.iter().rev().collect();
    let aware = view("lineage-aware: finishes every parent before its children", &aware_refs);
    let ignoring = view("lineage-ignoring: reads the newest shards first", &ignoring_refs);
    out.table(
        "6. Two consumers read the whole run from the start, shard by shard; they differ only in which shard comes first",
        &["consumer", "shard order", "orders in order", "orders out of order"],
        [&aware, &ignoring].iter().map(|v| {
            vec![
                v.consumer.to_owned(),
                v.shard_order.iter().map(|s| short_shard(s)).collect::<Vec<_>>().join(", "),
                format!("{} of {}", v.ordering.in_order, v.ordering.orders),
                v.ordering.violations.len().to_string(),
            ]
        }),
    );
    let ignoring_reads: Vec<&Read> = ignoring_refs.iter().flat_map(|c| &c.reads).collect();
    let where_steps = |order_id: &str| {
        ignoring_reads
            .iter()
            .filter(|r| r.event.order_id == order_id)
            .map(|r| format!("{}@{}", r.event.step, short_shard(&r.record.shard_id)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    out.table(
        "   What the lineage-ignoring consumer saw (step@shard, in reading order)",
        &["order", "steps as read", "where each step was"],
        ignoring
            .ordering
            .violations
            .iter()
            .take(EXAMPLES)
            .map(|t| vec![t.order_id.clone(), steps_text(&t.arrival), where_steps(&t.order_id)]),
    );
    let target_keeps_parents = steps.iter().all(|s| s.parents_kept);
    out.say(format!(
        "   After a split or merge, a key's older records are in the parent and its newer ones in a child. A consumer\n   \
         that finishes each parent before reading its children (ListShards gives ParentShardId and\n   \
         AdjacentParentShardId for that) sees every order in order. One that ignores lineage, for example one\n   \
         worker per shard all started at once, can handle a child's records first: {} orders came out of order.\n   \
         The Kinesis Client Library and Lambda's Kinesis trigger follow the lineage rule for you.\n   \
         Kafka never splits a partition; adding partitions instead remaps keys (hash mod partitions) and breaks\n   \
         per-key order for keys that move, with no lineage to follow.{}",
        ignoring.ordering.violations.len(),
        if target_keeps_parents {
            String::new()
        } else {
            format!(
                "\n   On {}, deleted parents are shown as the consumer drained them before\n   \
                 the reshard; on AWS both consumers would read them from the stream itself.",
                what_the_target_is(&target.kind)
            )
        }
    ));
    if !aware.ordering.is_ok() {
        let trace = &aware.ordering.violations[0];
        bail!(
            "reshard: the lineage-aware consumer saw {} orders out of order or incomplete, e.g. {}: {}",
            aware.ordering.violations.len(),
            trace.order_id,
            trace.verdict.describe()
        );
    }
    Ok(ReshardReport {
        seed: run.seed,
        orders: run.orders,
        produced,
        steps,
        target_keeps_parents,
        shards: aware_order.into_iter().map(|c| c.row).collect(),
        lineage_aware: aware,
        lineage_ignoring: ignoring,
    })
}
