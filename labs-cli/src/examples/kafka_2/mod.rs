//! Lab kafka-2: change data capture into Kafka (the plan's project 3; DDIA 11, "Change Data
//! Capture" and "Log compaction").
//!
//! Example 3's products table and its change stream, relayed into Kafka by a source connector
//! that runs in the labs process (`relay`): every change to a change topic keyed by product id,
//! the latest state per product to a compacted topic (a tombstone for a delete), the relay's
//! position per stream shard to an offsets topic. A consumer group (`indexer`) keeps the search
//! index from the change topic with example 3's indexer library. Scenarios show what compaction
//! keeps (and whether the broker compacts at all), and a new consumer group rebuilding the index
//! from the compacted topic.

mod compaction;
mod indexer;
mod rebuild;
mod relay;
mod verify;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use labs_core::search_index::{self, IndexDiff, IndexEntry, Product, ProductOp};
use labs_infra::stack::{KafkaTopic, Table};
use serde::{Deserialize, Serialize};

use super::{About, RunOptions};
use crate::driver::dynamodb as db;
use crate::driver::kafka;
use crate::output::{self, Output};
use crate::target::Target;

// The resources `infra/stacks/kafka-2.toml` declares.
const PRODUCTS: Table = Table::new("k2-products");
const SEARCH_INDEX: Table = Table::new("k2-search-index");
const CHECKPOINTS: Table = Table::new("k2-indexer-checkpoints");
const REBUILT_INDEX: Table = Table::new("k2-rebuilt-index");
const CHANGES: KafkaTopic = KafkaTopic::new("k2-product-changes");
const STATE: KafkaTopic = KafkaTopic::new("k2-product-state");
const RELAY_OFFSETS: KafkaTopic = KafkaTopic::new("k2-relay-offsets");

pub const ABOUT: About = About::kafka(
    2,
    "CDC into Kafka",
    "a table's change stream relayed into Kafka topics; a consumer group keeps the index; compaction",
    "DynamoDB + Streams, Kafka",
);

const DEFAULT_OPERATIONS: usize = 300;
const SCENARIOS: [&str; 4] = ["cdc", "relay", "compaction", "rebuild"];

example!(Kafka2 {
    scenarios: &SCENARIOS,
    resources: [PRODUCTS, SEARCH_INDEX, CHECKPOINTS, REBUILT_INDEX, CHANGES, STATE, RELAY_OFFSETS],
    run: run,
    verify: verify::verify,
});

/// The full names of this lab's resources, under the target's prefix.
struct Names {
    products: String,
    index: String,
    checkpoints: String,
    rebuilt: String,
    changes: String,
    state: String,
    relay_offsets: String,
    /// The consumer group that keeps the index.
    indexer_group: String,
    /// The Kafka broker.
    broker: kafka::Broker,
}

impl Names {
    /// The names, and the broker (the embedded one is started if it is not up).
    async fn resolve(target: &Target) -> Result<Self> {
        Ok(Self {
            products: target.name(PRODUCTS),
            index: target.name(SEARCH_INDEX),
            checkpoints: target.name(CHECKPOINTS),
            rebuilt: target.name(REBUILT_INDEX),
            changes: target.name(CHANGES),
            state: target.name(STATE),
            relay_offsets: target.name(RELAY_OFFSETS),
            indexer_group: format!("{}-k2-indexer", target.prefix),
            broker: target.kafka().await?,
        })
    }
}

/// An index row as this lab reads it (the indexer also stores the sequence number).
#[derive(Serialize, Deserialize)]
struct IndexRow {
    term: String,
    product_id: String,
}

/// The rows of an index table.
async fn read_index(target: &Target, table: &str) -> Result<BTreeSet<IndexEntry>> {
    let (rows, _) = db::scan_typed::<IndexRow>(&target.clients.dynamodb, table).await?;
    Ok(rows.into_iter().map(|r| (r.term, r.product_id)).collect())
}

/// The products table by id.
async fn read_products(target: &Target, names: &Names) -> Result<BTreeMap<String, Product>> {
    let (products, _) = db::scan_typed::<Product>(&target.clients.dynamodb, &names.products).await?;
    Ok(products.into_iter().map(|p| (p.id.clone(), p)).collect())
}

/// How the index table differs from what the products table implies.
async fn index_diff(target: &Target, names: &Names, index_table: &str) -> Result<(usize, IndexDiff)> {
    let products = read_products(target, names).await?;
    let expected = search_index::expected_index(products.values());
    Ok((products.len(), search_index::diff_index(&expected, &read_index(target, index_table).await?)))
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    let names = Names::resolve(target).await?;
    db::describe_table(&target.clients.dynamodb, &names.products, "kafka-2").await?;
    let scenario = args.scenario.as_deref().unwrap_or("cdc");
    let seed = args.seed.unwrap_or(1);
    match scenario {
        "relay" => run_pipeline(target, &names, None, seed, out).await,
        "compaction" => compaction::run_compaction(target, &names, out).await,
        "rebuild" => rebuild::run_rebuild(target, &names, out).await,
        _ => {
            let operations = args.count.unwrap_or(DEFAULT_OPERATIONS);
            if operations == 0 {
                bail!("--count must be at least 1");
            }
            target.confirm(&format!("Write {operations} changes to {}?", names.products))?;
            run_pipeline(target, &names, Some(operations), seed, out).await
        }
    }
}

#[derive(Serialize)]
struct PipelineReport {
    scenario: &'static str,
    seed: u64,
    written: usize,
    relay: relay::RelayReport,
    indexer: indexer::IndexerReport,
    products: usize,
    index_missing: usize,
    index_extra: usize,
    in_sync: bool,
}

/// Scenarios `cdc` (with `operations` writes first) and `relay` (without): relay what the stream
/// holds beyond the relay's offsets, let the group apply it, compare the index with the table.
async fn run_pipeline(target: &Target, names: &Names, operations: Option<usize>, seed: u64, out: Output) -> Result<()> {
    let mut written = 0;
    if let Some(operations) = operations {
        let ops = search_index::workload(seed, operations, (operations / 3).max(1));
        let deletes = ops.iter().filter(|op| matches!(op, ProductOp::Delete { .. })).count();
        out.say(format!(
            "1. Writing {operations} changes to {} (seed {seed}): {} puts, {deletes} deletes. Its stream records each one.",
            names.products,
            operations - deletes
        ));
        write_ops(target, names, &ops).await?;
        written = ops.len();
    } else {
        out.say("1. No writes: relaying whatever the table's stream holds that the relay has not relayed yet.");
    }

    out.say(format!(
        "2. The relay (a source connector, running in this process) reads the stream from its offsets in {}\n   \
         and writes each change to {} keyed by product id, the item to {} (a tombstone for a delete).",
        names.relay_offsets, names.changes, names.state
    ));
    let relayed = relay::relay(target, names).await?;
    out.table(
        "   Relayed",
        &["stream shard", "resumed after sequence number"],
        relayed
            .resumed_after
            .iter()
            .map(|(shard, after)| vec![shard.clone(), after.clone().unwrap_or_else(|| "(start of the stream)".into())]),
    );
    out.say(format!(
        "   {} changes relayed ({} inserts, {} modifies, {} removes), {} positions written to {}.",
        relayed.relayed,
        relayed.inserts,
        relayed.modifies,
        relayed.removes,
        relayed.positions_written,
        names.relay_offsets
    ));

    out.say(format!(
        "3. The consumer group {} reads {} from its committed offsets and applies each batch with example 3's indexer.",
        names.indexer_group, names.changes
    ));
    let applied = indexer::apply_changes(target, names, &names.indexer_group).await?;
    out.table(
        "   What the group's indexer saw",
        &["counter", "count"],
        applied.saw.counters().iter().map(|(name, value)| vec![name.replace('_', " "), value.to_string()]),
    );

    let (products, diff) = index_diff(target, names, &names.index).await?;
    let in_sync = diff.is_empty();
    out.say(format!(
        "4. {}: {products} products; the index {}.\n   Next: labs run kafka-2 --scenario compaction{}, then labs verify kafka-2",
        names.index,
        if in_sync {
            "equals what the table implies".to_owned()
        } else {
            format!("differs: {} rows missing, {} extra", diff.missing.len(), diff.extra.len())
        },
        prefix_flag(target)
    ));
    out.json(&PipelineReport {
        scenario: if operations.is_some() { "cdc" } else { "relay" },
        seed,
        written,
        relay: relayed,
        indexer: applied,
        products,
        index_missing: diff.missing.len(),
        index_extra: diff.extra.len(),
        in_sync,
    })?;
    if !in_sync {
        bail!("the index does not equal what {} implies after the group caught up", names.products);
    }
    Ok(())
}

async fn write_ops(target: &Target, names: &Names, ops: &[ProductOp]) -> Result<()> {
    let client = &target.clients.dynamodb;
    let bar = output::progress(ops.len() as u64, "writing products");
    for op in ops {
        match op {
            ProductOp::Put(product) => db::put(client, &names.products, product).await?,
            ProductOp::Delete { id } => db::delete(client, &names.products, ("id", id)).await?,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn prefix_flag(target: &Target) -> String {
    if target.prefix == "labs" { String::new() } else { format!(" --prefix {}", target.prefix) }
}
