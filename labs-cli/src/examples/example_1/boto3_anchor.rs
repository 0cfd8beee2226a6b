//! The anchor `labs produce` is benchmarked against: boto3's Kinesis client in the emulator's
//! own Python (`boto3_producer.py`), on the same stream and the same records.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::driver::kinesis::{Outgoing, ProduceStats};
use crate::emulator;
use crate::target::Target;

const SCRIPT: &str = include_str!("boto3_producer.py");

#[derive(Serialize)]
struct Job<'a> {
    endpoint: &'a str,
    region: String,
    stream: &'a str,
    threads: usize,
    /// (partition key, data) pairs; clickstream data is JSON, so text.
    records: Vec<(&'a str, std::borrow::Cow<'a, str>)>,
}

#[derive(Deserialize)]
struct Answer {
    records: usize,
    calls: usize,
    seconds: f64,
}

/// Sends `records` with boto3 in 500-record PutRecords calls: one after another with `threads`
/// = 1, else from that many threads sharing one client. Only the calls are timed.
pub(super) async fn produce(
    target: &Target,
    stream: &str,
    records: &[Outgoing],
    threads: usize,
) -> Result<ProduceStats> {
    let endpoint = target.endpoint().context("the boto3 producer runs against an emulator, not AWS")?;
    let python = emulator::venv()?.join("bin/python");
    if !python.exists() {
        bail!(
            "the boto3 producer runs in the emulator's virtualenv, which is not installed: run `labs emulator up` once"
        );
    }
    let job = serde_json::to_vec(&Job {
        endpoint,
        region: target.clients.region(),
        stream,
        threads,
        records: records.iter().map(|r| (r.partition_key.as_str(), String::from_utf8_lossy(&r.data))).collect(),
    })?;
    let output = tokio::task::spawn_blocking(move || -> Result<std::process::Output> {
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not run {}", python.display()))?;
        // The script reads its whole job before it writes anything, so this cannot block on it.
        child.stdin.take().context("no stdin")?.write_all(&job)?;
        Ok(child.wait_with_output()?)
    })
    .await??;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("the boto3 producer failed: {}", stderr.lines().last().unwrap_or("no output").trim());
    }
    let answer: Answer = serde_json::from_slice(&output.stdout).context("the boto3 producer printed no result")?;
    Ok(ProduceStats { records: answer.records, calls: answer.calls, retried_entries: 0, seconds: answer.seconds })
}
