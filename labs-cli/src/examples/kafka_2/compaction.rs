//! Scenario `compaction`: the state topic (`cleanup.policy=compact`) as the broker holds it,
//! beside what compaction would keep of it (per key its last record; tombstones dropped), and
//! whether the broker compacted at all: offsets never move, so a compacted log has gaps, and a
//! log without gaps still holds every record it was ever given.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use labs_core::compaction::{self, LogRecord};
use serde::Serialize;

use super::{Names, prefix_flag, read_products};
use crate::driver::kafka;
use crate::output::Output;
use crate::target::Target;

/// How long a compacting broker is given (the topic rolls a segment every second and cleans at a
/// dirty ratio of 1 %; Kafka's log cleaner also waits `log.cleaner.backoff.ms`, 15 s, between
/// passes).
const COMPACTION_WAIT: Duration = Duration::from_secs(20);
/// Keys shown with their records.
const SHOWN_KEYS: usize = 5;

/// The state topic as read back, with the offsets it spans.
pub(super) struct StateLog {
    pub records: Vec<LogRecord<String, Vec<u8>>>,
    /// Offsets between each partition's low and high watermark: the records it would hold had
    /// nothing been removed.
    pub spanned: i64,
}

impl StateLog {
    pub async fn read(bootstrap: &str, topic: &str) -> Result<Self> {
        let spanned = kafka::topic_watermarks(bootstrap, topic).await?.iter().map(|(_, low, high)| high - low).sum();
        let records =
            kafka::read_topic(bootstrap, topic).await?.into_iter().map(kafka::Incoming::into_log_record).collect();
        Ok(Self { records, spanned })
    }

    /// Records the broker removed: offsets it spans that hold no record any more.
    pub fn removed(&self) -> i64 {
        self.spanned - self.records.len() as i64
    }
}

#[derive(Serialize)]
struct CompactionReport {
    scenario: &'static str,
    cleanup_policy: Option<String>,
    records: usize,
    keys: usize,
    keys_with_history: usize,
    tombstones: usize,
    /// Records the broker removed (gaps in the offsets): 0 if it did not compact.
    broker_removed: i64,
    broker_compacted: bool,
    waited_seconds: f64,
    would_keep: usize,
    would_drop_superseded: usize,
    would_drop_tombstones: usize,
    /// Keys the folded log holds: equals the products the table holds, compacted or not.
    folded_keys: usize,
    products: usize,
}

pub(super) async fn run_compaction(target: &Target, names: &Names, out: Output) -> Result<()> {
    let config = kafka::topic_config(&names.broker.bootstrap, &names.state).await?;
    out.table(
        &format!("1. {} as the broker describes it", names.state),
        &["config", "value"],
        ["cleanup.policy", "segment.ms", "min.cleanable.dirty.ratio", "delete.retention.ms"].iter().map(|name| {
            vec![(*name).to_owned(), config.get(*name).cloned().unwrap_or_else(|| "(not reported)".into())]
        }),
    );

    out.say(format!(
        "2. Reading the whole log back, waiting up to {} s for the broker to compact it.",
        COMPACTION_WAIT.as_secs()
    ));
    let started = Instant::now();
    let mut log = StateLog::read(&names.broker.bootstrap, &names.state).await?;
    while log.removed() == 0
        && !compaction::keys_with_history(&log.records).is_empty()
        && started.elapsed() < COMPACTION_WAIT
    {
        tokio::time::sleep(Duration::from_secs(2)).await;
        log = StateLog::read(&names.broker.bootstrap, &names.state).await?;
    }
    let waited = started.elapsed();
    let would = compaction::compact(&log.records, false);
    let history = compaction::keys_with_history(&log.records);
    let tombstones = log.records.iter().filter(|r| r.value.is_none()).count();
    let folded = compaction::latest(&log.records);
    let keys: BTreeMap<&String, ()> = log.records.iter().map(|r| (&r.key, ())).collect();
    out.table(
        "   The log as the broker holds it, and what compaction would keep of it",
        &["", "in the log", "compaction keeps"],
        [
            vec!["records".into(), log.records.len().to_string(), would.kept.len().to_string()],
            vec!["keys (products ever written)".into(), keys.len().to_string(), would.kept.len().to_string()],
            vec!["keys with more than one record".into(), history.len().to_string(), "0".into()],
            vec![
                "tombstones (deleted products)".into(),
                tombstones.to_string(),
                format!("0 (after delete.retention.ms; {} dropped)", would.tombstones_dropped),
            ],
        ],
    );
    // A few products with history, and one deleted product if there is one.
    let deleted: Vec<&String> = history.iter().filter(|key| !folded.contains_key(*key)).take(1).collect();
    let shown = history.iter().filter(|key| folded.contains_key(*key)).take(SHOWN_KEYS - deleted.len()).chain(deleted);
    out.table(
        "   A few products with history: every record of theirs, and the one compaction keeps",
        &["product", "records (partition/offset: value)", "compaction keeps"],
        shown.map(|key| key_rows(&log.records, key, &would.kept)),
    );

    let broker_compacted = log.removed() > 0;
    if broker_compacted {
        out.say(format!(
            "3. The broker compacted: {} of the {} offsets the log spans hold no record any more (offsets never move;\n   \
             compaction leaves gaps). Kafka never compacts the active segment, so some keys may still show history.",
            log.removed(),
            log.spanned
        ));
    } else {
        out.say(format!(
            "3. The broker did NOT compact: after {:.0} s the log still holds all {} records it was given (no gaps in its offsets),\n   \
             although the topic says cleanup.policy={}. The broker accepts and reports the setting, but removed nothing:\n   \
             what compaction would keep is computed above, from the log read back.",
            waited.as_secs_f64(),
            log.records.len(),
            config.get("cleanup.policy").map(String::as_str).unwrap_or("?")
        ));
    }
    let products = read_products(target, names).await?;
    out.say(format!(
        "4. Folding the log (later records win, a tombstone removes its key) gives {} products; the table holds {}.\n   \
         A reader gets the same state from the log before and after compaction: that is why compaction is safe.\n   \
         Next: labs run kafka-2 --scenario rebuild{}",
        folded.len(),
        products.len(),
        prefix_flag(target)
    ));
    out.json(&CompactionReport {
        scenario: "compaction",
        cleanup_policy: config.get("cleanup.policy").cloned(),
        records: log.records.len(),
        keys: keys.len(),
        keys_with_history: history.len(),
        tombstones,
        broker_removed: log.removed(),
        broker_compacted,
        waited_seconds: waited.as_secs_f64(),
        would_keep: would.kept.len(),
        would_drop_superseded: would.superseded,
        would_drop_tombstones: would.tombstones_dropped,
        folded_keys: folded.len(),
        products: products.len(),
    })
}

/// One product's row: its records in offset order, and the one compaction keeps (none when its
/// last record is a tombstone).
fn key_rows(log: &[LogRecord<String, Vec<u8>>], key: &String, kept: &[(i32, i64)]) -> Vec<String> {
    let mut records: Vec<&LogRecord<String, Vec<u8>>> = log.iter().filter(|r| &r.key == key).collect();
    records.sort_by_key(|r| (r.partition, r.offset));
    let describe = |r: &LogRecord<String, Vec<u8>>| match &r.value {
        Some(value) => format!("{}/{}: {}", r.partition, r.offset, summary(value)),
        None => format!("{}/{}: tombstone", r.partition, r.offset),
    };
    let all: Vec<String> = records.iter().map(|r| describe(r)).collect();
    let keeps = records
        .iter()
        .find(|r| kept.contains(&(r.partition, r.offset)))
        .map_or_else(|| "nothing (deleted)".to_owned(), |r| describe(r));
    vec![key.clone(), all.join("\n"), keeps]
}

/// A state value, short: the product's version and name.
fn summary(value: &[u8]) -> String {
    match serde_json::from_slice::<labs_core::search_index::Product>(value) {
        Ok(p) => format!("v{} {}", p.version.unwrap_or(0), p.name),
        Err(_) => format!("{} bytes", value.len()),
    }
}
