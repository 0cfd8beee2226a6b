//! Scenario backfill: products written before the stream existed are not in the change log;
//! a scan backfills them while writes continue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_dynamodb::types::StreamSpecification;
use cdc_indexer::{DynamoStore, backfill_products};
use labs_core::search_index::{self, Product, ProductOp};
use labs_infra::{SdkContext, WaitContext};

use super::{
    CATCH_UP, LEGACY_PRODUCTS, RunReport, Settings, Snapshot, Tables, apply_op, show_searches, wait_for_index,
    write_ops,
};
use crate::driver::dynamodb as db;
use crate::output::{self, Output};
use crate::provision;
use crate::target::Target;

/// Turns the products table's stream off or on (a new stream, with a new ARN, each time).
async fn set_stream(target: &Target, table: &str, enabled: bool) -> Result<()> {
    let spec = if enabled {
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
            .build()?
    } else {
        StreamSpecification::builder().stream_enabled(false).build()?
    };
    let client = &target.clients.dynamodb;
    client
        .update_table()
        .table_name(table)
        .stream_specification(spec)
        .send()
        .await
        .doing(format!("turning the stream of {table} {}", if enabled { "on" } else { "off" }))?;
    use aws_sdk_dynamodb::client::Waiters;
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(Duration::from_secs(300))
        .await
        .waiting(format!("waiting for {table}"))?;
    Ok(())
}

/// Products that exist before the stream does are not in the change log. Show them missing, then
/// backfill them from a scan while writes continue, and end in sync.
pub(super) async fn run_backfill(target: &Target, tables: &Tables, settings: &Settings<'_>, out: Output) -> Result<()> {
    let Settings { operations, seed, query } = *settings;
    let stack = super::ABOUT.id.stack()?;

    // Destructive on purpose: on real AWS, say exactly what goes before anything does.
    target.confirm(&format!(
        "The backfill scenario removes the indexer's event source mapping, turns off the stream of {}, \
         deletes every item of {}, {} and {}, then writes {} product changes with the stream back on part of the time. Go ahead?",
        tables.products,
        tables.products,
        tables.index,
        tables.checkpoints,
        2 * LEGACY_PRODUCTS + operations,
    ))?;
    // 1. A database that predates change data capture: no stream, no indexer.
    out.say(format!(
        "1. Starting over without CDC: the stream of {} off, all three tables emptied, then products written\n   \
         the way a database did before change data capture existed",
        tables.products
    ));
    provision::disconnect_sources(target, &stack).await?;
    set_stream(target, &tables.products, false).await?;
    // Emptied with the stream off, so no REMOVE events reach the indexer's new stream.
    for table in [&tables.products, &tables.index, &tables.checkpoints] {
        db::clear(&target.clients.dynamodb, table).await?;
    }
    let legacy_ops = search_index::workload(seed.wrapping_add(7_919), 2 * LEGACY_PRODUCTS, LEGACY_PRODUCTS);
    write_ops(target, tables, &legacy_ops, "writing pre-CDC products").await?;
    let legacy: BTreeMap<String, Product> = search_index::apply_ops(&legacy_ops);

    // 2. Turn CDC on: a new stream, and the mapping recreated on it (the engine's ordinary `up`).
    out.say("2. Turning the stream back on and connecting the indexer to it (labs up example-3)");
    provision::up_stack(target, &stack, false, Output::quiet()).await?;
    // Later writes start at the last quarter of the legacy ids: those race with the backfill,
    // the rest of the legacy products never appear in the log.
    let ops = shift_ids(search_index::workload(seed, operations, operations.max(60) / 4), LEGACY_PRODUCTS * 3 / 4);
    let (during_gap, during_backfill) = ops.split_at(ops.len() / 2);
    write_ops(target, tables, during_gap, "writing changes through the stream").await?;
    let spinner = output::spinner("waiting for the indexer to apply the logged changes");
    wait_logged_changes_applied(target, tables, during_gap).await?;
    spinner.finish_and_clear();
    let snapshot = Snapshot::read(target, tables).await?;
    let gap = snapshot.diff();
    let missing_products: BTreeSet<&String> = gap.missing.iter().map(|(_, id)| id).collect();
    out.say(format!(
        "   The indexer applied every logged change, yet {} of the {} products in the table are missing\n   \
         from the index: they were written before the stream existed, so no change event will ever mention them.",
        missing_products.len(),
        snapshot.products.len()
    ));

    // 3. Backfill from a scan while writes go on.
    out.say("3. Backfilling from a scan of the table while writes continue");
    let store = DynamoStore::new(target.clients.dynamodb.clone(), tables.index.clone(), tables.checkpoints.clone());
    let writer = async {
        for op in during_backfill {
            apply_op(target, tables, op).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(())
    };
    let backfill = async {
        let (scanned, _) = db::scan_typed::<Product>(&target.clients.dynamodb, &tables.products).await?;
        Ok::<_, anyhow::Error>(backfill_products(&store, &scanned).await?)
    };
    let spinner = output::spinner(&format!("backfilling while {} more changes are written", during_backfill.len()));
    let (written, report) = tokio::join!(writer, backfill);
    spinner.finish_and_clear();
    written?;
    let report = report?;
    out.table(
        "   Backfill: each scanned product is written only if no logged change has reached it yet",
        &["scanned", "written from the scan", "skipped: the log already covers it"],
        [vec![report.scanned.to_string(), report.written.to_string(), report.already_covered.to_string()]],
    );

    // 4. In sync, nothing lost, nothing resurrected.
    let caught_up = wait_for_index(target, tables, CATCH_UP, "index catching up").await?;
    let snapshot = Snapshot::read(target, tables).await?;
    let diff = snapshot.diff();
    let final_ids: BTreeSet<&String> = snapshot.products.keys().collect();
    let indexed_ids: BTreeSet<&String> = snapshot.index.iter().map(|(_, id)| id).collect();
    let legacy_still_there = legacy.keys().filter(|id| final_ids.contains(id)).count();
    let resurrected = indexed_ids.difference(&final_ids).count();
    let lost = final_ids
        .iter()
        .filter(|id| !search_index::product_terms(&snapshot.products[**id]).is_empty() && !indexed_ids.contains(*id))
        .count();
    out.table(
        "4. After the backfill",
        &["check", "result"],
        [
            vec!["pre-CDC products still in the table".into(), legacy_still_there.to_string()],
            vec!["products missing from the index (lost)".into(), lost.to_string()],
            vec!["deleted products still in the index (resurrected)".into(), resurrected.to_string()],
            vec!["index rows that differ from the table".into(), (diff.missing.len() + diff.extra.len()).to_string()],
        ],
    );
    let searches = show_searches(target, tables, &snapshot, query, out).await?;
    out.json(&RunReport {
        scenario: "backfill".into(),
        operations,
        products: snapshot.products.len(),
        index_rows: snapshot.index.len(),
        caught_up_seconds: caught_up.map(|d| d.as_secs_f64()),
        indexer_saw: BTreeMap::new(),
        backfill: Some(report),
        searches,
    })?;
    if !diff.is_empty() || caught_up.is_none() {
        bail!("after the backfill the index still differs from the table: run `labs verify example-3` for the rows");
    }
    out.say("   In sync: every product is searchable, and no deleted product came back.");
    Ok(())
}

/// Moves generated product ids (`p-0001`, ...) up by `offset`, so two workloads overlap only partly.
fn shift_ids(ops: Vec<ProductOp>, offset: usize) -> Vec<ProductOp> {
    let shift = |id: &str| -> String {
        let n: usize = id.trim_start_matches("p-").parse().unwrap_or(0);
        search_index::product_id(n.saturating_sub(1) + offset)
    };
    ops.into_iter()
        .map(|op| match op {
            ProductOp::Put(mut product) => {
                product.id = shift(&product.id);
                ProductOp::Put(product)
            }
            ProductOp::Delete { id } => ProductOp::Delete { id: shift(&id) },
        })
        .collect()
}

/// Waits until the indexer has applied every change in `logged`: each product they touch has a
/// checkpoint, and the index agrees with the table for those products.
async fn wait_logged_changes_applied(target: &Target, tables: &Tables, logged: &[ProductOp]) -> Result<()> {
    let touched: BTreeSet<&str> = logged.iter().map(ProductOp::id).collect();
    let client = &target.clients.dynamodb;
    let converged = db::wait_until_converged(
        CATCH_UP,
        || async {
            let (checkpoints, _) = db::scan_typed::<cdc_indexer::Checkpoint>(client, &tables.checkpoints).await?;
            let applied: BTreeSet<String> = checkpoints.into_iter().map(|c| c.product_id).collect();
            let unapplied = touched.iter().filter(|id| !applied.contains(**id)).count();
            let diff = Snapshot::read(target, tables).await?.diff();
            let behind = diff.missing.iter().chain(&diff.extra).filter(|(_, id)| touched.contains(id.as_str())).count();
            Ok(unapplied + behind)
        },
        |_| {},
    )
    .await?;
    if converged.is_none() {
        bail!("the indexer did not apply the logged changes within {} s", CATCH_UP.as_secs());
    }
    Ok(())
}
