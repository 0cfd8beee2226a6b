//! Example 7's teaching producers: two that keep each key's records in order despite refusals.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::driver::kinesis::{
    MAX_ATTEMPTS, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, Outgoing, ProduceStats, PutOptions, Refuser, backoff, gather,
    put_entries, try_put_record,
};
use crate::driver::refusals::Refusals;

/// Produces with PutRecords and keeps every partition key's records in order even when entries
/// are refused. Each call carries the longest run of the next records in which no key repeats,
/// so records go out in the order given and a key's next record only after the previous one was
/// written; a refused entry is simply first in line again. The cost: a call ends at the first
/// repeated key, so few keys mean small calls.
pub async fn produce_in_key_order(
    client: &Client,
    stream: &str,
    records: Vec<Outgoing>,
    refusals: Option<&dyn Refuser>,
    progress: &ProgressBar,
) -> Result<ProduceStats> {
    let started = Instant::now();
    let mut stats = ProduceStats { records: records.len(), ..Default::default() };
    let mut pending: VecDeque<(Outgoing, u32)> = records.into_iter().map(|record| (record, 0)).collect();
    while !pending.is_empty() {
        let mut keys: HashSet<&str> = HashSet::new();
        let mut bytes = 0;
        let mut len = 0;
        for (record, _) in &pending {
            let size = record.data.len() + record.partition_key.len();
            if len > 0 && (len == MAX_BATCH_RECORDS || bytes + size > MAX_BATCH_BYTES) {
                break;
            }
            if !keys.insert(&record.partition_key) {
                break;
            }
            bytes += size;
            len += 1;
        }
        let call: Vec<(Outgoing, u32)> = pending.drain(..len).collect();
        let refs: Vec<&Outgoing> = call.iter().map(|(record, _)| record).collect();
        let results = put_entries(client, stream, &refs, refusals, &mut stats).await?;
        let mut refused: Vec<(Outgoing, u32)> = Vec::new();
        for ((record, attempts), result) in call.into_iter().zip(results) {
            if result.is_ok() {
                progress.inc(1);
                continue;
            }
            if attempts + 1 >= MAX_ATTEMPTS {
                bail!("a record to {stream} was still refused after {MAX_ATTEMPTS} attempts");
            }
            refused.push((record, attempts + 1));
        }
        stats.retried_entries += refused.len();
        let worst = refused.iter().map(|(_, attempts)| *attempts).max();
        // Back at the head of the line, in their order: before any later record of their keys.
        for entry in refused.into_iter().rev() {
            pending.push_front(entry);
        }
        if let Some(attempts) = worst {
            tokio::time::sleep(backoff(attempts - 1)).await;
        }
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Produces with one PutRecord per record, each key's records one at a time: the next only
/// after the previous was acknowledged, passing its sequence number as
/// `SequenceNumberForOrdering`, so the key's sequence numbers strictly rise. A refused record
/// is retried before its key moves on. Keys go in parallel, `concurrency` at a time.
pub async fn produce_with_sequence_ordering(
    client: &Client,
    stream: &str,
    records: Vec<Outgoing>,
    refusals: Option<&Refusals>,
    concurrency: usize,
    progress: &ProgressBar,
) -> Result<ProduceStats> {
    let started = Instant::now();
    let total = records.len();
    let mut keys: Vec<Vec<Outgoing>> = Vec::new();
    let mut key_index: HashMap<String, usize> = HashMap::new();
    for record in records {
        let index = *key_index.entry(record.partition_key.clone()).or_insert_with(|| {
            keys.push(Vec::new());
            keys.len() - 1
        });
        keys[index].push(record);
    }
    let work = Arc::new(std::sync::Mutex::new(VecDeque::from(keys)));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, stream, work, refusals, progress) =
            (client.clone(), stream.to_owned(), work.clone(), refusals.cloned(), progress.clone());
        workers.spawn(async move {
            let mut stats = ProduceStats::default();
            loop {
                let Some(key_records) = work.lock().expect("no panics while held").pop_front() else { break };
                let mut previous: Option<String> = None;
                for record in key_records {
                    let options = PutOptions { explicit_hash_key: None, sequence_number_for_ordering: previous.take() };
                    let mut attempt = 0;
                    let placement = loop {
                        stats.calls += 1;
                        if let Some(placement) = try_put_record(
                            &client,
                            &stream,
                            &record,
                            &options,
                            refusals.as_ref().map(|r| r as &dyn Refuser),
                        )
                        .await?
                        {
                            break placement;
                        }
                        stats.retried_entries += 1;
                        attempt += 1;
                        if attempt >= MAX_ATTEMPTS {
                            bail!("a record to {stream} was still refused after {MAX_ATTEMPTS} attempts");
                        }
                        tokio::time::sleep(backoff(attempt - 1)).await;
                    };
                    previous = Some(placement.sequence_number);
                    progress.inc(1);
                }
            }
            anyhow::Ok(stats)
        });
    }
    gather(workers, total, started).await
}
