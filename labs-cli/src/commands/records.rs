//! `labs produce` and `labs consume`: records into and out of any stream, by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cli::{ConsumeArgs, GlobalArgs, KeyStrategy, ProduceArgs, StartFrom};
use crate::driver::clickstream;
use crate::driver::kinesis::{self, Position, Until};
use crate::output::{self, Output, note};
use crate::target::Target;

pub async fn produce(global: &GlobalArgs, args: &ProduceArgs, out: Output) -> Result<()> {
    use labs_core::clickstream::{ClickstreamSpec, events};
    let target = Target::resolve(&global.target(), true).await?;
    if args.count == Some(0) {
        bail!("--count must be at least 1");
    }
    if args.rate == Some(0) {
        bail!("--rate must be at least 1 record per second");
    }
    // With a rate and no count, it runs until Ctrl-C.
    let count = match (args.count, args.rate) {
        (Some(count), _) => Some(count),
        (None, Some(_)) => None,
        (None, None) => Some(1000),
    };
    match count {
        Some(count) => target.confirm(&format!("Produce {count} records into {}?", args.stream))?,
        None => target.confirm(&format!("Produce records into {} until Ctrl-C?", args.stream))?,
    }
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>().into());
    // Generated one at a time as the senders take them: memory does not grow with the count.
    let records =
        events(&ClickstreamSpec { seed, count: count.unwrap_or(usize::MAX), ..Default::default() }).map(|event| {
            let mut record = clickstream::encode(&event);
            record.partition_key = match args.keys {
                KeyStrategy::User => event.user_id.clone(),
                KeyStrategy::Random => format!("{:032x}", rand::random::<u128>()),
                KeyStrategy::Single => "hot-key".to_owned(),
            };
            record
        });
    let bar = match count {
        Some(count) => output::progress(count as u64, "PutRecords"),
        None => output::rate_line("PutRecords until Ctrl-C"),
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let stats = kinesis::produce_until(&target.clients.kinesis, &args.stream, records, args.rate, &bar, ctrl_c).await?;
    bar.finish_and_clear();
    // Read last, so it covers the whole run: `labs bench` reports it.
    let peak_rss_mib = crate::figures::peak_rss_mib();
    out.table(
        &format!("Produced into {} (seed {seed})", args.stream),
        &["records", "seconds", "records/s", "PutRecords calls", "entries retried", "peak memory"],
        [vec![
            stats.records.to_string(),
            format!("{:.2}", stats.seconds),
            format!("{:.0}", stats.records_per_second()),
            stats.calls.to_string(),
            stats.retried_entries.to_string(),
            peak_rss_mib.map(|mib| format!("{mib:.0} MiB")).unwrap_or_else(|| "unknown".into()),
        ]],
    );
    out.json(&Produced { stats: &stats, peak_rss_mib })
}

#[derive(Serialize)]
struct Produced<'a> {
    #[serde(flatten)]
    stats: &'a kinesis::ProduceStats,
    peak_rss_mib: Option<f64>,
}

fn parse_timestamp(text: &str) -> Result<aws_sdk_kinesis::primitives::DateTime> {
    use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok(DateTime::from_secs_f64(seconds));
    }
    DateTime::from_str(text, DateTimeFormat::DateTime)
        .map_err(|_| anyhow::anyhow!("--timestamp {text} is neither RFC 3339 (2026-01-01T00:00:00Z) nor Unix seconds"))
}

pub async fn consume(global: &GlobalArgs, args: &ConsumeArgs, out: Output) -> Result<()> {
    let target = Target::resolve(&global.target(), true).await?;
    let client = &target.clients.kinesis;
    let position = match args.from {
        StartFrom::TrimHorizon => Position::TrimHorizon,
        StartFrom::Latest => Position::Latest,
        StartFrom::AtTimestamp => {
            Position::AtTimestamp(parse_timestamp(args.timestamp.as_deref().unwrap_or_default())?)
        }
        StartFrom::AfterSequence => Position::AfterSequence(args.sequence.clone().unwrap_or_default()),
    };
    let mut shards = kinesis::list_shards(client, &args.stream).await?;
    if let Some(only) = &args.shard {
        shards.retain(|s| &s.shard_id == only);
        if shards.is_empty() {
            bail!("{} has no shard {only}", args.stream);
        }
    }
    let until = if args.follow { Until::Forever } else { Until::CaughtUp };
    let json = out.json;
    // With --limit, N records in all, however many shards are read at once.
    let printed = Arc::new(AtomicUsize::new(0));
    let limit_reached = Arc::new(tokio::sync::Notify::new());
    let print = {
        let (printed, limit_reached, limit) = (printed.clone(), limit_reached.clone(), args.limit);
        move |record: &kinesis::Incoming| {
            let n = printed.fetch_add(1, Ordering::SeqCst) + 1;
            if limit.is_some_and(|limit| n > limit) {
                return;
            }
            if limit == Some(n) {
                limit_reached.notify_one();
            }
            let data = String::from_utf8_lossy(&record.data);
            if json {
                let value = serde_json::json!({
                    "shard_id": record.shard_id, "sequence_number": record.sequence_number,
                    "partition_key": record.partition_key, "millis_behind_latest": record.millis_behind_latest,
                    "data": serde_json::from_str::<serde_json::Value>(&data).unwrap_or(serde_json::Value::String(data.into_owned())),
                });
                output::line(value.to_string());
            } else {
                output::line(format!(
                    "{}  {}  key={}  lag={}ms  {}",
                    record.shard_id, record.sequence_number, record.partition_key, record.millis_behind_latest, data
                ));
            }
        }
    };
    if args.follow {
        // Every shard at once, until interrupted or the limit is reached.
        let mut readers = tokio::task::JoinSet::new();
        for shard in shards {
            let (client, stream, position, limit) = (client.clone(), args.stream.clone(), position.clone(), args.limit);
            let print = print.clone();
            readers.spawn(async move {
                kinesis::read_shard(&client, &stream, &shard.shard_id, &position, until, limit, print).await.map(|_| ())
            });
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => note("stopped"),
            _ = limit_reached.notified() => {}
            _ = async { while readers.join_next().await.is_some() {} } => {}
        }
    } else {
        for shard in shards {
            let remaining = args.limit.map(|l| l.saturating_sub(printed.load(Ordering::SeqCst)));
            if remaining == Some(0) {
                break;
            }
            kinesis::read_shard(client, &args.stream, &shard.shard_id, &position, until, remaining, print.clone())
                .await?;
        }
    }
    let total = args.limit.map_or(printed.load(Ordering::SeqCst), |l| printed.load(Ordering::SeqCst).min(l));
    note(format!("{total} records read from {}", args.stream));
    Ok(())
}
