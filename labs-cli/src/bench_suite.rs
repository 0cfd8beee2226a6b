//! `labs bench` without a subject: every figure labs can measure, in one table. Each example
//! with a bench is brought up first (and taken down again when the suite brought it up), then
//! the stream-trigger runner, the Lambda zips and the producer's peak memory and speed.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use labs_infra::SdkContext;

use crate::examples::{self, BenchOptions};
use crate::figures::{self, Figure, Goal};
use crate::output::{self, Output};
use crate::target::Target;
use crate::{provision, toolchain, trigger_bench};

mod discarding_kinesis;
use discarding_kinesis::DiscardingKinesis;

/// Records `labs produce` sends for its peak-memory figure, and for that figure's anchor.
const PRODUCER_RECORDS: usize = 10_000_000;
const PRODUCER_ANCHOR_RECORDS: usize = 100_000;
/// A function's zip must stay under this to deploy quickly (and far under Lambda's 50 MB).
const ZIP_GOAL_MB: f64 = 4.0;
const PRODUCER_RSS_GOAL_MB: f64 = 100.0;
const UP_AGAIN_GOAL_SECONDS: f64 = 2.0;

pub async fn all(target: &Target, out: Output) -> Result<()> {
    if target.kind.is_aws() {
        bail!("`labs bench` without a subject runs every bench on an emulator; name one bench to run it on AWS");
    }
    let mut figures = zip_sizes()?;
    let options = BenchOptions::default();
    for (about, example) in examples::built() {
        let Some(bench) = example.bench(target, &options, Output::quiet()) else { continue };
        let stack = about.id.stack()?;
        let (present, declared) = provision::presence(target, &stack).await?;
        let spinner = output::spinner(&format!("bench {}", about.id));
        provision::up_stack(target, &stack, false, Output::quiet()).await?;
        // Only a stack this suite deployed has functions that were never invoked.
        if present == 0 {
            figures.extend(invocation_latency(target, &stack).await?);
        }
        let started = Instant::now();
        provision::up_stack(target, &stack, false, Output::quiet()).await?;
        figures.push(
            Figure::new(about.id.to_string(), "labs up again, nothing changed", started.elapsed().as_secs_f64(), "s")
                .goal(Goal::AtMost(UP_AGAIN_GOAL_SECONDS)),
        );
        let measured = bench.await;
        if present < declared {
            provision::destroy_stack(target, &stack).await?;
        }
        spinner.finish_and_clear();
        match measured {
            Ok(rows) => figures.extend(rows),
            Err(err) => output::note(format!("{}: bench failed, left out of the table: {err:#}", about.id)),
        }
    }
    let spinner = output::spinner("bench triggers");
    let triggers = trigger_bench::bench(target, None, Output::quiet()).await;
    spinner.finish_and_clear();
    match triggers {
        Ok(rows) => figures.extend(rows),
        Err(err) => output::note(format!("triggers: bench failed, left out of the table: {err:#}")),
    }
    figures.extend(producer_figures(PRODUCER_RECORDS).await?);
    figures::print(&format!("labs bench on {} ({})", target.kind.describe(), build_kind()), &figures, out)
}

/// `labs bench producer`: the producer's figures alone, `count` records (default ten million).
pub async fn producer(count: Option<usize>, out: Output) -> Result<()> {
    if count == Some(0) {
        bail!("--count must be at least 1");
    }
    let figures = producer_figures(count.unwrap_or(PRODUCER_RECORDS)).await?;
    figures::print(&format!("labs bench producer ({})", build_kind()), &figures, out)
}

fn build_kind() -> &'static str {
    if cfg!(debug_assertions) { "debug build: use a release build for real figures" } else { "release build" }
}

/// The size of each function's zip as labs builds and deploys it.
fn zip_sizes() -> Result<Vec<Figure>> {
    let mut packages = Vec::new();
    for (about, _) in examples::built() {
        for function in about.id.stack()?.functions {
            if !packages.contains(&function.package) {
                packages.push(function.package);
            }
        }
    }
    let mut artifacts: Vec<_> =
        toolchain::build(&packages, toolchain::Profile::Lambda, toolchain::RunsOn::LambdaPlatform)?
            .into_iter()
            .collect();
    artifacts.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(artifacts
        .into_iter()
        .map(|(package, artifact)| {
            let mb = artifact.zip.len() as f64 / (1024.0 * 1024.0);
            Figure::new("lambda", format!("{package}: zip size"), mb, "MB").goal(Goal::AtMost(ZIP_GOAL_MB))
        })
        .collect())
}

/// The first and the second invocation of each function of a stack just deployed: the first
/// starts the function's process (cold start), the second finds it running (warm). The event is
/// an empty batch, which every handler here accepts and which writes nothing.
async fn invocation_latency(target: &Target, stack: &labs_infra::stack::Stack) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for function in &stack.functions {
        let name = labs_infra::stack::full_name(&target.prefix, &function.name);
        let windowed = stack
            .event_source_mappings
            .iter()
            .any(|mapping| mapping.function == function.name && mapping.tumbling_window_seconds.is_some());
        let payload = empty_batch(windowed, &target.region());
        let mut took = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let invoked = target
                .clients
                .lambda
                .invoke()
                .function_name(&name)
                .payload(aws_sdk_lambda::primitives::Blob::new(payload.as_bytes()))
                .send()
                .await
                .doing(format!("invoking {name}"))?;
            if let Some(error) = invoked.function_error() {
                output::note(format!("{name} answered an empty batch with an error ({error}): its figure includes it"));
            }
            took.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        figures.push(
            Figure::new("lambda", format!("{name}: first invoke after deploy (cold)"), took[0], "ms")
                .anchored("second invoke (warm)", took[1]),
        );
    }
    Ok(figures)
}

/// An empty batch, as the function's trigger would send it: a function behind a tumbling window
/// reads a time-window event (window, state, shard, final or not), which an empty window of one
/// minute is.
fn empty_batch(windowed: bool, region: &str) -> String {
    let batch = serde_json::json!({ "Records": [] });
    if !windowed {
        return batch.to_string();
    }
    let source = labs_triggers::event::EventSource {
        shard_id: "shardId-000000000000".to_owned(),
        stream_arn: format!("arn:aws:kinesis:{region}:000000000000:stream/labs-bench"),
        region: region.to_owned(),
        execution_role_arn: "arn:aws:iam::000000000000:role/labs-bench".to_owned(),
    };
    let window = labs_triggers::WindowInvocation {
        start: 0,
        end: 60_000,
        state: Default::default(),
        is_final: false,
        terminated_early: false,
    };
    labs_triggers::event::window_event(batch, &source, &window).to_string()
}

/// Runs `labs produce` as a child process twice, `--count` [`PRODUCER_ANCHOR_RECORDS`] then
/// `count`, into a Kinesis endpoint that acknowledges and discards, and reads the
/// peak resident memory each reports: the second beside the first shows whether memory grows with
/// the count. Also the producer's own speed, with a server that costs next to nothing.
async fn producer_figures(count: usize) -> Result<Vec<Figure>> {
    let endpoint = DiscardingKinesis::start().await?;
    let anchor = produce_into(&endpoint, PRODUCER_ANCHOR_RECORDS).await?;
    let measured = produce_into(&endpoint, count).await?;
    let sent = endpoint.acknowledged();
    let expected = (PRODUCER_ANCHOR_RECORDS + count) as u64;
    if sent != expected {
        bail!("the discarding endpoint acknowledged {sent} records, not the {expected} labs produce was asked for");
    }
    Ok(vec![
        Figure::new("producer", format!("labs produce --count {count}: peak RSS"), measured.peak_mib, "MB")
            .anchored(format!("--count {PRODUCER_ANCHOR_RECORDS}"), anchor.peak_mib)
            .goal(Goal::AtMost(PRODUCER_RSS_GOAL_MB)),
        Figure::new(
            "producer",
            format!("labs produce --count {count} into a discarding endpoint"),
            measured.records_per_second,
            "records/s",
        ),
    ])
}

struct Produced {
    peak_mib: f64,
    records_per_second: f64,
}

async fn produce_into(endpoint: &DiscardingKinesis, count: usize) -> Result<Produced> {
    let spinner = output::spinner(&format!("labs produce --count {count} into a discarding endpoint"));
    let url = endpoint.endpoint();
    let child = tokio::task::spawn_blocking(move || {
        Command::new(std::env::current_exe()?)
            .args(["produce", "--json", "--yes", "--endpoint-url", &url, "--stream", "discarded", "--count"])
            .arg(count.to_string())
            .output()
            .context("could not run labs produce")
    })
    .await??;
    spinner.finish_and_clear();
    if !child.status.success() {
        bail!("labs produce failed: {}", String::from_utf8_lossy(&child.stderr).trim());
    }
    let report: serde_json::Value = serde_json::from_slice(&child.stdout).context("labs produce printed no JSON")?;
    let peak_mib = report["peak_rss_mib"].as_f64().context("labs produce reported no peak memory (is /proc there?)")?;
    let records = report["records"].as_f64().context("labs produce reported no record count")?;
    let seconds = report["seconds"].as_f64().context("labs produce reported no duration")?;
    Ok(Produced { peak_mib, records_per_second: records / seconds.max(f64::EPSILON) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisTimeWindowEvent};

    #[test]
    fn the_empty_batch_reads_as_the_event_each_kind_of_function_takes() {
        let plain: KinesisEvent = serde_json::from_str(&empty_batch(false, "us-east-1")).unwrap();
        assert!(plain.records.is_empty());
        let windowed: KinesisTimeWindowEvent = serde_json::from_str(&empty_batch(true, "us-east-1")).unwrap();
        let window = &windowed.time_window_properties;
        assert!(windowed.kinesis_event.records.is_empty() && window.state.is_empty());
        assert!(!window.is_final_invoke_for_window && !window.is_window_terminated_early);
        assert_eq!(window.window.end - window.window.start, chrono::TimeDelta::minutes(1));
    }
}
