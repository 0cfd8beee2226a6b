//! `labs run example-8 --scenario enrichment` and `--scenario replay`: orders joined with their
//! customer's profile through the join's replica, as of the order's time and with the latest.
//!
//! The run writes the customers, waits until the replica (fed by the customers table's stream)
//! has them, sends the first orders, changes some addresses, then sends the later orders. The
//! replay sends every order of that run again (the next pass) after all the changes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use labs_core::join::profiles::{self, Order, OrderRecord, Profile, ProfileData, ProfileSpec};
use serde_json::{Value, json};
use stream_joins::enrich::{EnrichedRow, ReplicaRow};

use super::data::enriched_rows;
use super::{Ctx, EnrichRun, MAX_RUNS, enrich_runs, now_millis, wait_for};
use crate::driver::dynamodb as db;
use crate::driver::kinesis::{self, Outgoing};
use crate::driver::seeds;
use crate::output;

pub fn data_of(run: &EnrichRun) -> ProfileData {
    profiles::generate(&ProfileSpec::standard("e", run.seed, run.start))
}

async fn write_profiles(ctx: &Ctx<'_>, profiles: &[Profile]) -> Result<()> {
    for profile in profiles {
        db::put(&ctx.target.clients.dynamodb, &ctx.names.customers, profile).await?;
    }
    let wanted: BTreeSet<(String, i64)> = profiles.iter().map(|p| (p.customer_id.clone(), p.valid_from)).collect();
    wait_for("waiting for the replica to receive the changes (customers' stream)", || async {
        let (rows, _) = db::scan_typed::<ReplicaRow>(&ctx.target.clients.dynamodb, &ctx.names.replica).await?;
        let have: BTreeSet<(String, i64)> =
            rows.into_iter().map(|r| (r.profile.customer_id, r.profile.valid_from)).collect();
        Ok(wanted.difference(&have).count())
    })
    .await?;
    Ok(())
}

/// Sends `orders` with `pass` and waits until each is enriched.
async fn send_orders(ctx: &Ctx<'_>, orders: &[Order], pass: u32) -> Result<()> {
    let records: Vec<Outgoing> = orders
        .iter()
        .map(|o| Outgoing {
            partition_key: o.customer_id.clone(),
            data: OrderRecord { order: o.clone(), pass }.to_bytes(),
        })
        .collect();
    let bar = output::progress(records.len() as u64, "producing orders");
    let produced = kinesis::produce(&ctx.target.clients.kinesis, &ctx.names.orders, records, None, &bar).await;
    bar.finish_and_clear();
    produced?;
    let wanted: BTreeSet<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
    wait_for("waiting for the orders to be enriched", || async {
        let (rows, _) = enriched_rows(ctx.target, &ctx.names).await?;
        let done = rows.iter().filter(|r| r.pass == pass && wanted.contains(r.order_id.as_str())).count();
        Ok(wanted.len().saturating_sub(done))
    })
    .await?;
    Ok(())
}

fn show(ctx: &Ctx<'_>, title: &str, rows: &[&EnrichedRow], data: &ProfileData) {
    let moved: BTreeMap<&str, i64> = data.changes.iter().map(|p| (p.customer_id.as_str(), p.valid_from)).collect();
    ctx.out.table(
        title,
        &["order", "customer", "ordered", "as of the order (versioned)", "latest (naive)"],
        rows.iter().map(|r| {
            let when = match moved.get(r.customer_id.as_str()) {
                Some(at) if r.order_time < *at => "before the move",
                Some(_) => "after the move",
                None => "",
            };
            vec![
                r.order_id.clone(),
                r.customer_id.clone(),
                when.to_owned(),
                r.versioned_address.clone().unwrap_or_else(|| "-".into()),
                r.latest_address.clone().unwrap_or_else(|| "-".into()),
            ]
        }),
    );
}

pub(super) async fn run(ctx: &Ctx<'_>) -> Result<Value> {
    let runs = enrich_runs(ctx.target, &ctx.names).await?;
    seeds::check_room(runs.len() * 2, 2, MAX_RUNS, &ctx.names.orders, "example-8")?;
    let used: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    let seed = seeds::for_scenario(ctx.options.seed, &used, "enrichment", &ctx.names.orders, "example-8")?;
    let run = EnrichRun { seed, start: now_millis(), passes: 1 };
    let data = data_of(&run);
    kinesis::record_run(
        &ctx.target.clients.kinesis,
        &ctx.names.orders,
        &format!("enrich:{seed}"),
        &run.start.to_string(),
    )
    .await?;
    ctx.out.say(format!(
        "{} customers into {}; {} orders, then {} address changes, then {} more orders into {} (seed {seed}).",
        data.initial.len(),
        ctx.names.customers,
        data.orders_before.len(),
        data.changes.len(),
        data.orders_after.len(),
        ctx.names.orders
    ));
    write_profiles(ctx, &data.initial).await?;
    send_orders(ctx, &data.orders_before, 1).await?;
    write_profiles(ctx, &data.changes).await?;
    send_orders(ctx, &data.orders_after, 1).await?;
    let (rows, _) = enriched_rows(ctx.target, &ctx.names).await?;
    let ids: BTreeSet<&str> = data.orders().map(|o| o.order_id.as_str()).collect();
    let mine: Vec<&EnrichedRow> = rows.iter().filter(|r| r.pass == 1 && ids.contains(r.order_id.as_str())).collect();
    show(ctx, "Pass 1: each order joined when it arrived (ex8-enriched-orders):", &mine, &data);
    ctx.out.say(format!(
        "Next: labs run example-8 --scenario replay{} sends the same orders again.",
        super::prefix_flag(ctx.target)
    ));
    Ok(json!({ "scenario": "enrichment", "seed": seed, "orders": mine.len(), "changes": data.changes.len() }))
}

pub(super) async fn replay(ctx: &Ctx<'_>) -> Result<Value> {
    let runs = enrich_runs(ctx.target, &ctx.names).await?;
    let chosen = match ctx.options.seed {
        Some(seed) => runs.iter().find(|r| r.seed == seed),
        None => runs.iter().max_by_key(|r| r.seed),
    };
    let Some(run) = chosen.copied() else {
        bail!(
            "no enrichment run to replay{}: run `labs run example-8 --scenario enrichment` first",
            match ctx.options.seed {
                Some(seed) => format!(" with seed {seed}"),
                None => String::new(),
            }
        )
    };
    seeds::check_room(runs.len() * 2, 1, MAX_RUNS, &ctx.names.orders, "example-8")?;
    let pass = run.passes + 1;
    let data = data_of(&run);
    kinesis::record_run(
        &ctx.target.clients.kinesis,
        &ctx.names.orders,
        &format!("replay:{}", run.seed),
        &pass.to_string(),
    )
    .await?;
    let orders: Vec<Order> = data.orders().cloned().collect();
    ctx.out.say(format!(
        "Replaying the {} orders of seed {} as pass {pass}, after every address change.",
        orders.len(),
        run.seed
    ));
    send_orders(ctx, &orders, pass).await?;
    let (rows, _) = enriched_rows(ctx.target, &ctx.names).await?;
    let of_pass = |n: u32| -> BTreeMap<&str, &EnrichedRow> {
        rows.iter().filter(|r| r.pass == n).map(|r| (r.order_id.as_str(), r)).collect()
    };
    let (first, again) = (of_pass(1), of_pass(pass));
    let mut changed = Vec::new();
    let mut versioned_moved = 0;
    for order in &orders {
        let (Some(a), Some(b)) = (first.get(order.order_id.as_str()), again.get(order.order_id.as_str())) else {
            continue;
        };
        versioned_moved += usize::from(a.versioned_address != b.versioned_address);
        if a.latest_address != b.latest_address {
            changed.push(vec![
                order.order_id.clone(),
                a.latest_address.clone().unwrap_or_default(),
                b.latest_address.clone().unwrap_or_default(),
                b.versioned_address.clone().unwrap_or_default(),
            ]);
        }
    }
    let moved = changed.len();
    ctx.out.table(
        &format!("Orders whose naive join changed between pass 1 and pass {pass}:"),
        &["order", "naive, pass 1", &format!("naive, pass {pass}"), "versioned (every pass)"],
        changed,
    );
    ctx.out.say(format!(
        "The naive join changed {moved} of {} orders on replay; the versioned join changed {versioned_moved}.",
        orders.len()
    ));
    Ok(
        json!({ "scenario": "replay", "seed": run.seed, "pass": pass, "naive_changed": moved, "versioned_changed": versioned_moved }),
    )
}
