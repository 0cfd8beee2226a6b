//! Example 1's benchmark: how much a producer gains from one sender per shard.

use anyhow::Result;
use labs_core::clickstream::{self, ClickstreamSpec};
use serde::Serialize;

use super::{BenchOptions, CLICKS};
use crate::driver::clickstream::encode;
use crate::driver::kinesis::{self, Outgoing};
use crate::figures::{Figure, Goal};
use crate::output::{self, Output};
use crate::target::Target;

#[derive(Serialize)]
struct BenchReport {
    stream: String,
    records: usize,
    sequential_records_per_second: f64,
    concurrent_records_per_second: f64,
    ratio: f64,
}

const ROUNDS: u64 = 4;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `labs produce` (one sender per shard) against a plain loop of 500-record PutRecords calls,
/// on the same stream and data, each round taking turns at going first, median of the rounds.
pub(super) async fn bench(target: &Target, args: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let client = &target.clients.kinesis;
    let stream = target.name(CLICKS);
    let count = args.count.unwrap_or(20_000);
    kinesis::list_shards(client, &stream).await?;
    target.confirm(&format!("Produce {} benchmark records into {stream}?", count as u64 * 2 * ROUNDS))?;
    // Bench events carry a seed no run uses, so `verify` passes over them.
    let records = |round: u64| -> Vec<Outgoing> {
        clickstream::generate(&ClickstreamSpec { seed: 1_000_000 + round, count, ..Default::default() })
            .iter()
            .map(encode)
            .collect()
    };
    // The emulator gets slower as the stream grows, so the two producers take turns going first.
    let (mut sequential, mut concurrent) = (Vec::new(), Vec::new());
    let bar = output::progress(2 * ROUNDS, "benchmark rounds");
    for round in 0..ROUNDS {
        for concurrent_turn in if round % 2 == 0 { [false, true] } else { [true, false] } {
            let batch = records(round * 2 + u64::from(concurrent_turn));
            if concurrent_turn {
                let stats = kinesis::produce(client, &stream, batch, None, &indicatif::ProgressBar::hidden()).await?;
                concurrent.push(stats.records_per_second());
            } else {
                sequential.push(kinesis::produce_sequentially(client, &stream, batch).await?.records_per_second());
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let (sequential, concurrent) = (median(&mut sequential), median(&mut concurrent));
    let ratio = if sequential > 0.0 { concurrent / sequential } else { 0.0 };
    out.table(
        &format!("PutRecords throughput into {stream} ({count} records a round, median of {ROUNDS} rounds)"),
        &["producer", "records/s"],
        [
            vec!["sequential loop of 500-record PutRecords".to_owned(), format!("{sequential:.0}")],
            vec!["labs produce (one sender per shard)".to_owned(), format!("{concurrent:.0}")],
            vec!["ratio".to_owned(), format!("{ratio:.2}x")],
        ],
    );
    out.json(&BenchReport {
        stream,
        records: count,
        sequential_records_per_second: sequential,
        concurrent_records_per_second: concurrent,
        ratio,
    })?;
    Ok(vec![
        Figure::new("example-1", "labs produce (one sender per shard), PutRecords", concurrent, "records/s")
            .anchored("sequential 500-record loop", sequential)
            .goal(Goal::RatioAtLeast(1.0)),
    ])
}
