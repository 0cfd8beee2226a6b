//! Example 3's benchmark: write-to-index latency, and the handler's in-process throughput.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use labs_core::search_index::Product;
use serde::Serialize;

use super::{BenchOptions, CATCH_UP, Tables};
use crate::driver::dynamodb as db;
use crate::figures::{Figure, Goal};
use crate::output::{self, Output};
use crate::target::Target;

#[derive(Serialize)]
struct BenchReport {
    writes: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    handler_records: usize,
    handler_records_per_second: f64,
    optimized_build: bool,
}

/// Time from a write to the products table until the index shows it (p50, p99), and the
/// handler's in-process throughput on a large synthetic batch.
pub(super) async fn bench(target: &Target, args: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let tables = Tables::of(target);
    db::describe_table(&target.clients.dynamodb, &tables.products, "example-3").await?;
    let writes = args.count.unwrap_or(100).max(1);
    target.confirm(&format!("Write {writes} benchmark products to {}?", tables.products))?;
    let nonce = format!("{:08x}", rand::random::<u32>());
    let bar = output::progress(writes as u64, "write -> index latency");
    let mut latencies = Vec::with_capacity(writes);
    // A few writes in flight at once, so a hundred of them take seconds, not minutes.
    for chunk in (0..writes).collect::<Vec<_>>().chunks(8) {
        let probes = chunk.iter().map(|i| {
            let id = format!("bench-{nonce}-{i:04}");
            let term = format!("benchmark{nonce}n{i}");
            let tables = &tables;
            async move {
                let product =
                    Product { id: id.clone(), name: term.clone(), description: None, price: None, version: Some(1) };
                let started = Instant::now();
                db::put(&target.clients.dynamodb, &tables.products, &product).await?;
                loop {
                    let row: Option<serde::de::IgnoredAny> =
                        db::get(&target.clients.dynamodb, &tables.index, &[("term", &term), ("product_id", &id)])
                            .await?;
                    if row.is_some() {
                        return anyhow::Ok(started.elapsed());
                    }
                    if started.elapsed() > CATCH_UP {
                        bail!("{id} never reached the index");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        for latency in futures::future::join_all(probes).await {
            latencies.push(latency?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let cleanup = output::spinner("removing the benchmark products");
    for i in 0..writes {
        db::delete(&target.clients.dynamodb, &tables.products, ("id", &format!("bench-{nonce}-{i:04}"))).await?;
    }
    cleanup.finish_and_clear();
    latencies.sort();

    // Handler only: plan and apply a large batch against the in-memory store, on one core.
    let records = 50_000;
    let event = cdc_indexer::synthetic_batch(records, 7);
    let store = cdc_indexer::MemoryStore::default();
    let started = Instant::now();
    cdc_indexer::process_event(&store, &event).await.map_err(|e| anyhow::anyhow!("handler failed: {e}"))?;
    let handler_rate = records as f64 / started.elapsed().as_secs_f64();

    let report = BenchReport {
        writes,
        p50_ms: output::percentile_ms(&latencies, 0.50),
        p99_ms: output::percentile_ms(&latencies, 0.99),
        max_ms: output::percentile_ms(&latencies, 1.0),
        handler_records: records,
        handler_records_per_second: handler_rate,
        optimized_build: !cfg!(debug_assertions),
    };
    out.table(
        &format!(
            "Example 3 on {} ({} build)",
            target.kind.describe(),
            if report.optimized_build { "release" } else { "debug" }
        ),
        &["measure", "value", "goal"],
        [
            vec![
                format!("write -> index, p50 over {writes} writes"),
                format!("{:.0} ms", report.p50_ms),
                "< 1000 ms".into(),
            ],
            vec![
                format!("write -> index, p99 over {writes} writes"),
                format!("{:.0} ms", report.p99_ms),
                String::new(),
            ],
            vec![
                format!("indexer handler alone, {records}-record batch"),
                format!("{:.0} records/s", report.handler_records_per_second),
                ">= 100,000 records/s".into(),
            ],
        ],
    );
    out.json(&report)?;
    Ok(vec![
        Figure::new("example-3", format!("write -> index p50 ({writes} writes)"), report.p50_ms, "ms")
            .goal(Goal::AtMost(1000.0)),
        Figure::new("example-3", "write -> index p99", report.p99_ms, "ms"),
        Figure::new("example-3", format!("CDC indexer handler, {records}-record batch"), handler_rate, "records/s")
            .goal(Goal::AtLeast(100_000.0)),
    ])
}
