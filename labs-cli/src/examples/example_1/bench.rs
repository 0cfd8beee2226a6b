//! Example 1's benchmark: `labs produce` against the best boto3 producer measured in the same run
//! (a sequential loop of 500-record PutRecords calls, and the same loop on 4 threads), on the
//! same kind of stream and data, with the emulator's ceiling as the baseline: pre-encoded
//! PutRecords bodies posted from 4 connections (`ceiling`), the most the server takes when the
//! client costs next to nothing.
//!
//! Every turn starts on the same empty stream: example 1's stack under a prefix of its own
//! ([`ScratchStream`]), removed and made again before each turn. MiniStack scans every record of
//! a stream on each PutRecords, so a call costs it more the more the stream holds: measured one
//! after another on one growing stream, the producers were timed on different stream sizes, and
//! whichever the turn order put on the fuller stream lost (the same boto3 producer measured 0.72x
//! of itself that way).

use anyhow::{Result, bail};
use labs_core::clickstream::{self, ClickstreamSpec};
use labs_infra::stack::Stack;
use serde::Serialize;

use super::{BenchOptions, CLICKS, boto3_anchor, ceiling};
use crate::driver::clickstream::encode;
use crate::driver::kinesis::{self, Outgoing};
use crate::figures::{Figure, Goal};
use crate::output::{self, Output};
use crate::provision;
use crate::target::Target;

/// The producers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Producer {
    Labs,
    Boto3Sequential,
    Boto3Threads,
    /// Not a producer anyone would write: the server's ceiling.
    PreEncoded,
}

const PRODUCERS: [Producer; 4] =
    [Producer::Labs, Producer::Boto3Sequential, Producer::Boto3Threads, Producer::PreEncoded];
const BOTO3_THREADS: usize = 4;
/// Every producer takes every turn (first, second, ...) once.
const ROUNDS: usize = PRODUCERS.len();

impl Producer {
    fn label(self) -> &'static str {
        match self {
            Producer::Labs => "labs produce",
            Producer::Boto3Sequential => "boto3 sequential 500-record loop",
            Producer::Boto3Threads => "boto3 500-record loop on 4 threads",
            Producer::PreEncoded => "pre-encoded 500-record bodies, 4 connections, no SDK",
        }
    }
}

/// Round `round`'s order: the producers take turns at going first, so a shift in the machine's
/// load over the run (it is shared) falls on each of them alike.
fn turn_order(round: usize) -> [Producer; 4] {
    let mut order = PRODUCERS;
    order.rotate_left(round % PRODUCERS.len());
    order
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The faster of `candidates` (by records per second).
fn fastest(candidates: &[(Producer, f64)]) -> (Producer, f64) {
    candidates.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((Producer::Labs, 0.0))
}

/// Example 1's stream under a prefix of its own (`<prefix>-bench`), emptied for every turn by
/// removing and making it again; `labs down --all` finds it should a bench be interrupted.
struct ScratchStream {
    target: Target,
    stack: Stack,
}

impl ScratchStream {
    fn new(target: &Target) -> Result<Self> {
        let stack = super::ABOUT.id.stack()?;
        Ok(Self { target: target.with_prefix(&format!("{}-bench", target.prefix)), stack })
    }

    /// Removes the stream (with whatever a turn wrote into it).
    async fn remove(&self) -> Result<()> {
        if let (_, Some(failure)) = provision::destroy_stack(&self.target, &self.stack).await? {
            bail!("could not remove the bench's stream: {failure:#}");
        }
        Ok(())
    }

    /// The stream's name, after making it again, empty.
    async fn empty(&self) -> Result<String> {
        self.remove().await?;
        provision::up_stack(&self.target, &self.stack, false, Output::quiet()).await?;
        Ok(self.target.name(CLICKS))
    }
}

#[derive(Serialize)]
struct BenchReport {
    stream: String,
    records: usize,
    rounds: usize,
    /// Median records per second of each producer.
    producers: Vec<(Producer, f64)>,
    best_anchor: Producer,
    ratio: f64,
}

/// Records per second of every producer, per round, each turn on the emptied stream.
async fn measure(scratch: &ScratchStream, count: usize) -> Result<Vec<Vec<f64>>> {
    let target = &scratch.target;
    let client = &target.clients.kinesis;
    let records = |turn: usize| -> Vec<Outgoing> {
        clickstream::generate(&ClickstreamSpec { seed: 1_000_000 + turn as u64, count, ..Default::default() })
            .iter()
            .map(encode)
            .collect()
    };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); PRODUCERS.len()];
    let bar = output::progress((ROUNDS * PRODUCERS.len()) as u64, "benchmark rounds");
    for round in 0..ROUNDS {
        for producer in turn_order(round) {
            let slot = PRODUCERS.iter().position(|p| *p == producer).unwrap_or(0);
            let batch = records(round * PRODUCERS.len() + slot);
            let stream = scratch.empty().await?;
            let stats = match producer {
                Producer::Labs => {
                    kinesis::produce(client, &stream, batch, None, &indicatif::ProgressBar::hidden()).await?
                }
                Producer::Boto3Sequential => boto3_anchor::produce(target, &stream, &batch, 1).await?,
                Producer::Boto3Threads => boto3_anchor::produce(target, &stream, &batch, BOTO3_THREADS).await?,
                Producer::PreEncoded => ceiling::produce(target, &stream, batch).await?,
            };
            rates[slot].push(stats.records_per_second());
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(rates)
}

pub(super) async fn bench(target: &Target, args: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let count = args.count.unwrap_or(20_000);
    let scratch = ScratchStream::new(target)?;
    let stream = scratch.target.name(CLICKS);
    let total = (count * ROUNDS * PRODUCERS.len()) as u64;
    target.confirm(&format!("Produce {total} benchmark records into {stream}, emptied for every turn?"))?;
    let measured = measure(&scratch, count).await;
    scratch.remove().await?;
    let mut rates = measured?;
    let medians: Vec<(Producer, f64)> = PRODUCERS.iter().zip(&mut rates).map(|(p, r)| (*p, median(r))).collect();
    let labs = medians[0].1;
    let (anchor, anchor_rate) = fastest(&medians[1..3]);
    let ceiling = medians[3].1;
    let ratio = if anchor_rate > 0.0 { labs / anchor_rate } else { 0.0 };
    let mut rows: Vec<Vec<String>> =
        medians.iter().map(|(p, rate)| vec![p.label().to_owned(), format!("{rate:.0}")]).collect();
    rows.push(vec![format!("labs / {}", anchor.label()), format!("{ratio:.2}x")]);
    out.table(
        &format!("PutRecords throughput into {stream} ({count} records a producer a round, median of {ROUNDS} rounds)"),
        &["producer", "records/s"],
        rows,
    );
    out.json(&BenchReport {
        stream,
        records: count,
        rounds: ROUNDS,
        producers: medians.clone(),
        best_anchor: anchor,
        ratio,
    })?;
    Ok(vec![
        Figure::new("example-1", "labs produce (one sender per shard), PutRecords", labs, "records/s")
            .anchored(format!("better boto3 producer ({})", anchor.label()), anchor_rate)
            .goal(Goal::RatioAtLeast(1.0)),
        Figure::new(
            "example-1",
            "emulator's PutRecords ceiling (pre-encoded bodies, 4 in flight)",
            ceiling,
            "records/s",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_producer_takes_every_turn_equally_often() {
        for position in 0..PRODUCERS.len() {
            for producer in PRODUCERS {
                let firsts = (0..ROUNDS).filter(|round| turn_order(*round)[position] == producer).count();
                assert_eq!(firsts, ROUNDS / PRODUCERS.len(), "{producer:?} at position {position}");
            }
        }
    }

    #[test]
    fn the_faster_producer_is_the_anchor() {
        let pick = fastest(&[(Producer::Boto3Sequential, 900.0), (Producer::Boto3Threads, 1200.0)]);
        assert_eq!(pick, (Producer::Boto3Threads, 1200.0));
        assert_eq!(fastest(&[(Producer::Boto3Sequential, 900.0)]), (Producer::Boto3Sequential, 900.0));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
