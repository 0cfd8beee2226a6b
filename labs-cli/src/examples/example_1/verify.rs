//! Example 1's verifier: regenerates every recorded run from its seed and checks the log holds
//! each event once, decodable, in sequence-number order per shard.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use labs_core::clickstream::{self, ClickstreamSpec};
use labs_core::log_check::{self, ReadRecord};
use serde::Serialize;

use super::{CLICKS, VerifyOptions, recorded_runs};
use crate::driver::clickstream::decode;
use crate::driver::kinesis::{self, Position};
use crate::output::Output;
use crate::target::Target;

#[derive(Serialize)]
struct VerifyReport {
    stream: String,
    runs: BTreeMap<u64, usize>,
    report: log_check::LogReport,
    passed: bool,
}

pub(super) async fn verify(target: &Target, _options: &VerifyOptions, out: Output) -> Result<bool> {
    let stream = target.name(CLICKS);
    let runs = recorded_runs(target, &stream).await?;
    if runs.is_empty() {
        bail!("nothing to verify: {stream} has no recorded runs (run `labs run example-1` first)");
    }
    let expected: Vec<String> = runs
        .iter()
        .flat_map(|(seed, count)| {
            clickstream::generate(&ClickstreamSpec { seed: *seed, count: *count, ..Default::default() })
        })
        .map(|e| e.event_id)
        .collect();
    let records = kinesis::read_stream(&target.clients.kinesis, &stream, &Position::TrimHorizon).await?;
    let read: Vec<ReadRecord> = records
        .iter()
        .map(|r| ReadRecord {
            shard_id: r.shard_id.clone(),
            sequence_number: r.sequence_number.clone(),
            event_id: decode(r).map(|e| e.event_id),
        })
        .collect();
    let report = log_check::check_log(expected.iter().map(String::as_str), &read);
    let passed = report.is_ok();
    let mark = |ok: bool| if ok { "ok" } else { "FAILED" }.to_owned();
    out.table(
        &format!(
            "Verifying {stream}: {} runs, {} events expected, {} records read from {} shards",
            runs.len(),
            report.expected,
            report.records_read,
            report.shards
        ),
        &["check", "result", "details"],
        [
            vec![
                "every event is in the log".into(),
                mark(report.missing.is_empty()),
                format!("{} missing {}", report.missing.len(), preview(&report.missing)),
            ],
            vec![
                "no event is there twice".into(),
                mark(report.duplicated.is_empty()),
                format!(
                    "{} duplicated {}",
                    report.duplicated.len(),
                    preview(&report.duplicated.iter().map(|(id, n)| format!("{id} x{n}")).collect::<Vec<_>>())
                ),
            ],
            vec![
                "every record decodes".into(),
                mark(report.undecodable == 0),
                format!("{} undecodable", report.undecodable),
            ],
            vec![
                "sequence numbers rise within each shard".into(),
                mark(report.out_of_order.is_empty()),
                format!("{} inversions", report.out_of_order.len()),
            ],
        ],
    );
    out.json(&VerifyReport { stream, runs, report, passed })?;
    Ok(passed)
}

fn preview(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    format!("({}{})", shown.join(", "), if items.len() > 5 { ", ..." } else { "" })
}
