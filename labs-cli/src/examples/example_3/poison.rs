//! Scenario poison: a product written by hand with `price` as a string, which the indexer cannot
//! decode. The mapping's retry limit, bisect and on-failure queue (AWS's semantics; labs' runner
//! on the emulator) isolate it: its metadata goes to the failures queue, the shard moves on, and
//! later good writes still reach the index.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use labs_core::search_index;
use labs_infra::SdkContext;
use serde::Serialize;
use serde_json::Value;

use super::{CATCH_UP, FAILURES, Settings, Tables, prefix_flag, wait_for_index, write_ops};
use crate::driver::messaging;
use crate::output::{self, Output};
use crate::target::Target;

/// One failure record from the queue, as the report shows it.
#[derive(Debug, Serialize)]
pub(super) struct FailureSummary {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub batch_size: u64,
    pub condition: String,
    pub approximate_invoke_count: u64,
}

impl FailureSummary {
    fn read(body: &str) -> Option<Self> {
        let record: Value = serde_json::from_str(body).ok()?;
        let info = record.get("DDBStreamBatchInfo").or_else(|| record.get("KinesisBatchInfo"))?;
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_owned();
        Some(Self {
            shard_id: text(info, "shardId"),
            start_sequence_number: text(info, "startSequenceNumber"),
            end_sequence_number: text(info, "endSequenceNumber"),
            batch_size: info["batchSize"].as_u64().unwrap_or_default(),
            condition: text(&record["requestContext"], "condition"),
            approximate_invoke_count: record["requestContext"]["approximateInvokeCount"].as_u64().unwrap_or_default(),
        })
    }
}

#[derive(Serialize)]
struct PoisonReport {
    scenario: &'static str,
    poison_id: String,
    operations: usize,
    caught_up_seconds: Option<f64>,
    failure_queue: String,
    failures: Vec<FailureSummary>,
}

/// The poison: a product whose `price` is a string, as a hand-written item (console, CLI) can be.
fn poison_item(id: &str) -> HashMap<String, AttributeValue> {
    [
        ("id", AttributeValue::S(id.to_owned())),
        ("name", AttributeValue::S("Hand written teapot".to_owned())),
        ("price", AttributeValue::S("cheap".to_owned())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub(super) async fn run_poison(target: &Target, tables: &Tables, settings: &Settings<'_>, out: Output) -> Result<()> {
    let Settings { operations, seed, .. } = *settings;
    let ops = search_index::workload(seed, operations, (operations / 3).max(1));
    let (before, after) = ops.split_at(ops.len() / 2);
    let poison_id = format!("poison-{seed}");
    let queue = target.name(FAILURES);
    let queue_url = messaging::queue_url(&target.clients.sqs, &queue, "example-3").await?;
    let already = messaging::peek(&target.clients.sqs, &queue_url).await?.len();

    out.say(format!(
        "1. Writing {} good changes, then product {poison_id} by hand with \"price\": \"cheap\" (a string, not a\n   \
         number), then {} more good changes, to {}.",
        before.len(),
        after.len(),
        tables.products
    ));
    write_ops(target, tables, before, "writing products").await?;
    target
        .clients
        .dynamodb
        .put_item()
        .table_name(&tables.products)
        .set_item(Some(poison_item(&poison_id)))
        .send()
        .await
        .doing(format!("writing {poison_id} to {}", tables.products))?;
    write_ops(target, tables, after, "writing products").await?;
    let wrote_at = Instant::now();

    out.say(format!(
        "2. The indexer cannot decode {poison_id} and fails its whole batch. The mapping bisects the batch until\n   \
         the record is alone, retries it twice, then sends its metadata to {queue} and moves on.\n   \
         Waiting for the index to catch up with every decodable product"
    ));
    let caught_up = wait_for_index(target, tables, CATCH_UP, "index catching up").await?;
    let lag = wrote_at.elapsed();
    match caught_up {
        Some(_) => out.say(format!(
            "   In sync {:.1} s after the last write: the poison did not block the shard.",
            lag.as_secs_f64()
        )),
        None => out.say("   The index did NOT catch up in time: is the shard blocked? (`labs status`)"),
    }

    out.say(format!("3. The on-failure destination, {queue}:"));
    let failures = wait_for_failures(target, &queue_url, already).await?;
    out.table(
        &format!("   Failure records in {queue} (metadata only: read the records from the stream by their range)"),
        &["shard", "start sequence", "end sequence", "records", "condition", "invocations"],
        failures.iter().map(|f| {
            vec![
                f.shard_id.clone(),
                f.start_sequence_number.clone(),
                f.end_sequence_number.clone(),
                f.batch_size.to_string(),
                f.condition.clone(),
                f.approximate_invoke_count.to_string(),
            ]
        }),
    );
    out.say(format!(
        "   See the shard's checkpoint and the count sent to the queue with `labs status{p}`, the runner's\n   \
         decisions with `labs triggers logs{p}`, and the message itself with\n   \
         `aws --endpoint-url <endpoint> sqs receive-message --queue-url {queue_url}`.",
        p = prefix_flag(target)
    ));
    out.json(&PoisonReport {
        scenario: "poison",
        poison_id,
        operations: ops.len(),
        caught_up_seconds: caught_up.map(|_| lag.as_secs_f64()),
        failure_queue: queue,
        failures,
    })
}

/// Waits until the queue holds more failure records than `already`; returns all of them.
async fn wait_for_failures(target: &Target, queue_url: &str, already: usize) -> Result<Vec<FailureSummary>> {
    let spinner = output::spinner("waiting for the failure record");
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let seen = messaging::peek(&target.clients.sqs, queue_url).await?;
        if seen.len() > already {
            spinner.finish_and_clear();
            return Ok(seen.iter().filter_map(|m| FailureSummary::read(&m.body)).collect());
        }
        if Instant::now() > deadline {
            spinner.finish_and_clear();
            bail!("no failure record reached the queue within {} s (see `labs triggers logs`)", CATCH_UP.as_secs());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
