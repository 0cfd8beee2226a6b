//! Scenario `rebuild`: a consumer group that has never read anything starts at offset 0 of the
//! compacted state topic, folds it into the latest state per product, and builds the search index
//! into a table of its own; the result must equal the live index. A Kinesis stream or a
//! DynamoDB stream (24 hours) cannot do this after a day: a compacted topic keeps the latest
//! record of every key for as long as the topic exists.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use labs_core::compaction;
use labs_core::search_index::{self, Product};
use serde::Serialize;

use super::{IndexRow, Names, read_index, read_products};
use crate::driver::dynamodb as db;
use crate::driver::kafka::{self, Incoming};
use crate::output::Output;
use crate::target::Target;

#[derive(Serialize)]
struct RebuildReport {
    scenario: &'static str,
    group: String,
    records_read: usize,
    products: usize,
    rows: usize,
    equals_live_index: bool,
    equals_table: bool,
}

pub(super) async fn run_rebuild(target: &Target, names: &Names, out: Output) -> Result<()> {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let group = format!("{}-k2-rebuild-{millis}", target.prefix);
    let cleared = db::clear(&target.clients.dynamodb, &names.rebuilt).await?;
    out.say(format!(
        "1. A new consumer group, {group}, reads {} from offset 0 (it has no committed offsets);\n   \
         {} emptied first ({cleared} rows).",
        names.state, names.rebuilt
    ));
    let mut read: Vec<Incoming> = Vec::new();
    kafka::drain_group(&names.broker.bootstrap, &group, &names.state, 500, async |messages: Vec<Incoming>| {
        read.extend(messages);
        Ok(())
    })
    .await?;
    let records_read = read.len();
    let log: Vec<_> = read.into_iter().map(Incoming::into_log_record).collect();
    let products = compaction::latest(&log)
        .into_iter()
        .map(|(key, value)| {
            serde_json::from_slice::<Product>(&value).with_context(|| format!("the state of {key} is not a product"))
        })
        .collect::<Result<Vec<Product>>>()?;
    let rows: Vec<IndexRow> = search_index::expected_index(&products)
        .into_iter()
        .map(|(term, product_id)| IndexRow { term, product_id })
        .collect();
    let row_count = rows.len();
    db::put_all(&target.clients.dynamodb, &names.rebuilt, rows).await?;

    let rebuilt = read_index(target, &names.rebuilt).await?;
    let live = read_index(target, &names.index).await?;
    let table = search_index::expected_index(read_products(target, names).await?.values());
    let (equals_live_index, equals_table) = (rebuilt == live, rebuilt == table);
    out.table(
        "2. The index rebuilt from the compacted topic",
        &["", "value"],
        [
            vec!["records the new group read".into(), records_read.to_string()],
            vec!["products after folding (last record per key, tombstones remove)".into(), products.len().to_string()],
            vec![format!("rows written to {}", names.rebuilt), row_count.to_string()],
            vec![format!("equals the live index {}", names.index), yes_no(equals_live_index)],
            vec![format!("equals what {} implies", names.products), yes_no(equals_table)],
        ],
    );
    out.say(format!(
        "   It read {records_read} records for {} products: a compacted log would hand it about one record per key.",
        products.len()
    ));
    out.json(&RebuildReport {
        scenario: "rebuild",
        group,
        records_read,
        products: products.len(),
        rows: row_count,
        equals_live_index,
        equals_table,
    })?;
    if !equals_table {
        bail!("the index rebuilt from {} does not equal what {} implies", names.state, names.products);
    }
    Ok(())
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "NO" }.to_owned()
}
