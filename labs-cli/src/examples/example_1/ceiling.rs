//! The emulator's own PutRecords ceiling: what it sustains when the client costs next to nothing.
//! Every request body is encoded before the clock starts, then posted as is (no SDK, no signing:
//! emulators check no signature) from a few keep-alive connections at once, so the server never
//! waits for the client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;

use crate::driver::kinesis::{self, MAX_BATCH_RECORDS, Outgoing, ProduceStats};
use crate::target::Target;

/// Requests in flight: enough that one is always waiting at the server.
const CONNECTIONS: usize = 4;

/// One PutRecords body per 500 records, in the SDK's JSON encoding.
pub(super) fn bodies(stream: &str, records: Vec<Outgoing>) -> Vec<Vec<u8>> {
    let base64 = base64::engine::general_purpose::STANDARD;
    kinesis::batches(records, MAX_BATCH_RECORDS)
        .into_iter()
        .map(|batch| {
            let entries: Vec<serde_json::Value> = batch
                .iter()
                .map(|r| serde_json::json!({ "PartitionKey": r.partition_key, "Data": base64.encode(&r.data) }))
                .collect();
            serde_json::to_vec(&serde_json::json!({ "StreamName": stream, "Records": entries }))
                .expect("JSON values serialize")
        })
        .collect()
}

/// Posts `records` (pre-encoded) from [`CONNECTIONS`] threads; only the posting is timed.
pub(super) async fn produce(target: &Target, stream: &str, records: Vec<Outgoing>) -> Result<ProduceStats> {
    let endpoint = target.endpoint().context("the ceiling is measured on an emulator, not AWS")?.to_owned();
    let count = records.len();
    let bodies = bodies(stream, records);
    let region = target.clients.region();
    tokio::task::spawn_blocking(move || -> Result<ProduceStats> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            // ureq keeps 3 idle connections a host by default: a fourth poster would connect anew.
            .max_idle_connections_per_host(CONNECTIONS)
            .build()
            .into();
        let credential = format!(
            "AWS4-HMAC-SHA256 Credential=test/20260101/{region}/kinesis/aws4_request, SignedHeaders=host, Signature=0"
        );
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..CONNECTIONS)
                .map(|_| {
                    scope.spawn(|| -> Result<()> {
                        while let Some(body) = bodies.get(next.fetch_add(1, Ordering::SeqCst)) {
                            let mut response = agent
                                .post(&endpoint)
                                .header("Content-Type", "application/x-amz-json-1.1")
                                .header("X-Amz-Target", "Kinesis_20131202.PutRecords")
                                .header("Authorization", &credential)
                                .send(&body[..])?;
                            // Read to the end, so the connection is reused.
                            let answer = response.body_mut().read_to_string()?;
                            let failed = serde_json::from_str::<serde_json::Value>(&answer)
                                .ok()
                                .and_then(|a| a["FailedRecordCount"].as_u64());
                            if !response.status().is_success() || failed != Some(0) {
                                let start: String = answer.chars().take(200).collect();
                                bail!("PutRecords answered {}: {start}", response.status());
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a poster panicked"))?)
        })?;
        Ok(ProduceStats {
            records: count,
            calls: bodies.len(),
            retried_entries: 0,
            seconds: started.elapsed().as_secs_f64(),
        })
    })
    .await?
}
