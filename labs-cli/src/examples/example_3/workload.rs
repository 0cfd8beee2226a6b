//! Scenario workload: writes to the products table and watches the index follow.

use std::time::Instant;

use anyhow::{Result, bail};
use labs_core::search_index::{self};

use super::{
    CATCH_UP, RunReport, Settings, Snapshot, Tables, count_kinds, indexer_stats, prefix_flag, saw, settled_stats,
    show_searches, stats_rows, wait_for_index, write_ops,
};
use crate::output::Output;
use crate::target::Target;

pub(super) async fn run_workload(target: &Target, tables: &Tables, settings: &Settings<'_>, out: Output) -> Result<()> {
    let Settings { operations, seed, query } = *settings;
    let ops = search_index::workload(seed, operations, (operations / 3).max(1));
    let kinds = count_kinds(&ops);
    out.say(format!(
        "1. Writing {operations} changes to {} (seed {seed}): {} puts, {} deletes. Nothing writes the index directly:\n   \
         the table's stream carries every change to the {} Lambda, which derives the index from it.",
        tables.products,
        kinds.0,
        kinds.1,
        tables.indexer
    ));
    let before = indexer_stats(target, tables).await?;
    write_ops(target, tables, &ops, "writing products").await?;
    let wrote_at = Instant::now();

    out.say("2. Waiting for the index to catch up with the table (it is derived data: eventually consistent)");
    let caught_up = wait_for_index(target, tables, CATCH_UP, "index catching up").await?;
    let lag = wrote_at.elapsed();
    let after = settled_stats(target, tables, &before, ops.len() as u64).await?;
    out.table(
        "   Change events as the indexer saw them during this run (redeliveries included)",
        &["counter", "count"],
        stats_rows(&before, &after),
    );
    let snapshot = Snapshot::read(target, tables).await?;
    match caught_up {
        Some(_) => out.say(format!(
            "   In sync {:.1} s after the last write: {} products, {} index rows.",
            lag.as_secs_f64(),
            snapshot.products.len(),
            snapshot.index.len()
        )),
        None => out.say("   The index did NOT catch up in time (see `labs verify example-3`)."),
    }

    out.say("\n3. Searching the derived index");
    let searches = show_searches(target, tables, &snapshot, query, out).await?;
    out.say(format!(
        "\nTry your own: labs run example-3 --query \"red shoes\"{}; then labs verify example-3",
        prefix_flag(target)
    ));
    out.json(&RunReport {
        scenario: "workload".into(),
        operations,
        products: snapshot.products.len(),
        index_rows: snapshot.index.len(),
        caught_up_seconds: caught_up.map(|_| lag.as_secs_f64()),
        indexer_saw: saw(&before, &after),
        backfill: None,
        searches,
    })?;
    if caught_up.is_none() {
        bail!("the index did not catch up with the products table within {} s", CATCH_UP.as_secs());
    }
    Ok(())
}
