//! Producing into a stream: batching into PutRecords calls, re-sending what the stream refuses,
//! one sender per shard through bounded queues, pacing to a rate, and single PutRecord calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use indicatif::ProgressBar;
use labs_core::partition::{ShardRange, shard_for_key};
use labs_infra::SdkContext;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{Shard, list_shards};

/// PutRecords takes at most 500 records and 5 MiB per call.
pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// One record to produce.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub partition_key: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProduceStats {
    pub records: usize,
    pub calls: usize,
    /// Entries PutRecords refused (throttled or failed) and that were sent again.
    pub retried_entries: usize,
    pub seconds: f64,
}

impl ProduceStats {
    pub fn records_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.records as f64 / self.seconds } else { 0.0 }
    }
}

/// Keeps a producer under `rate` records per second, shared across concurrent senders.
struct Pacer {
    start: Instant,
    sent: AtomicU64,
    rate: Option<u32>,
}

impl Pacer {
    async fn admit(&self, records: usize) {
        let sent = self.sent.fetch_add(records as u64, Ordering::SeqCst);
        if let Some(rate) = self.rate {
            let due = self.start + Duration::from_secs_f64(sent as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// Cuts `records` into PutRecords calls: at most 500 records and 5 MiB each.
pub fn batches(records: Vec<Outgoing>, max_records: usize) -> Vec<Vec<Outgoing>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for record in records {
        let size = record.data.len() + record.partition_key.len();
        if !current.is_empty() && (current.len() == max_records || bytes + size > MAX_BATCH_BYTES) {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(record);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Where Kinesis put one record.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub shard_id: String,
    pub sequence_number: String,
}

/// The error code a throttled shard gives, per entry (PutRecords) or per call (PutRecord).
pub const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// Refusals made on the client, standing in for throttling on targets that never throttle (the
/// emulators): per entry of a call, whether to refuse it before it is sent. Refused entries are
/// reported failed with [`THROTTLED`] and, like real refusals, never written.
pub trait Refuser: Send + Sync {
    fn pick(&self, entries: usize) -> Vec<bool>;
}

/// One PutRecords call: per entry, where it landed or the error code it was refused with.
/// Entries `refusals` picks are not sent at all.
pub(crate) async fn put_entries(
    client: &Client,
    stream: &str,
    records: &[&Outgoing],
    refusals: Option<&dyn Refuser>,
    stats: &mut ProduceStats,
) -> Result<Vec<Result<Placement, String>>> {
    let refused = refusals.map_or_else(|| vec![false; records.len()], |r| r.pick(records.len()));
    let entries = records
        .iter()
        .zip(&refused)
        .filter(|(_, refused)| !**refused)
        .map(|(r, _)| {
            PutRecordsRequestEntry::builder()
                .partition_key(&r.partition_key)
                .data(Blob::new(r.data.clone()))
                .build()
                .map_err(anyhow::Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut answers: std::vec::IntoIter<PutRecordsResultEntry> = Vec::new().into_iter();
    if !entries.is_empty() {
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .doing(format!("PutRecords to {stream}"))?;
        stats.calls += 1;
        answers = out.records().to_vec().into_iter();
    }
    refused
        .iter()
        .map(|refused| {
            if *refused {
                return Ok(Err(THROTTLED.to_owned()));
            }
            let answer = answers
                .next()
                .ok_or_else(|| anyhow::anyhow!("PutRecords to {stream} answered fewer entries than it was sent"))?;
            Ok(match (answer.error_code(), answer.shard_id(), answer.sequence_number()) {
                (Some(code), _, _) => Err(code.to_owned()),
                (None, Some(shard_id), Some(sequence_number)) => {
                    Ok(Placement { shard_id: shard_id.to_owned(), sequence_number: sequence_number.to_owned() })
                }
                _ => Err("no shard or sequence number in the answer".to_owned()),
            })
        })
        .collect()
}

pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.min(6))
}

/// Sends one batch, re-sending the entries PutRecords refuses (throttling shows up here as
/// `ProvisionedThroughputExceededException` per entry) with exponential backoff. The refused
/// entries go again in a call of their own, after entries that followed them were written: a
/// key's records can change order (example 7 shows it, and producers that avoid it).
async fn put_batch(
    client: &Client,
    stream: &str,
    batch: Vec<Outgoing>,
    refusals: Option<&dyn Refuser>,
    stats: &mut ProduceStats,
) -> Result<()> {
    let mut pending = batch;
    for attempt in 0..MAX_ATTEMPTS {
        let refs: Vec<&Outgoing> = pending.iter().collect();
        let results = put_entries(client, stream, &refs, refusals, stats).await?;
        let failed: Vec<Outgoing> =
            pending.into_iter().zip(results).filter(|(_, result)| result.is_err()).map(|(record, _)| record).collect();
        if failed.is_empty() {
            return Ok(());
        }
        stats.retried_entries += failed.len();
        pending = failed;
        tokio::time::sleep(backoff(attempt)).await;
    }
    bail!("{} records to {stream} were still refused after {MAX_ATTEMPTS} attempts", pending.len())
}

/// Records waiting for each shard's sender: two full PutRecords calls, so the producer's memory
/// stays flat however many records it sends.
const SENDER_QUEUE: usize = 2 * MAX_BATCH_RECORDS;

/// How long a sender waits for its batch to fill before sending what it has. Longer than one
/// PutRecords call takes on a loaded emulator: the loop that fills the queues stops whenever one
/// of them is full, until that shard's call returns, and a sender that gave up sooner sent short
/// batches (50 ms gave 44-46 calls for 20,000 records over two shards instead of 40-42). A source
/// that ends, or a stop, sends what is queued at once; only a slow source waits this long.
const LINGER: Duration = Duration::from_secs(1);

/// Takes the next batch (at most `max` records) from a sender's queue into `batch`: waits for the
/// first record, then for more until the batch is full, the queue is closed, or [`LINGER`] has
/// passed. Full batches matter: each PutRecords costs the server a round of work whatever its
/// size, so a producer that sends what happens to be queued makes more calls for the same records.
/// Returns the batch's size; 0 once the queue is closed and empty.
async fn next_batch(queue: &mut tokio::sync::mpsc::Receiver<Outgoing>, batch: &mut Vec<Outgoing>, max: usize) -> usize {
    if queue.recv_many(batch, max).await == 0 {
        return 0;
    }
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, queue.recv_many(batch, max - batch.len())).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    batch.len()
}

/// Produces `records` as fast as the stream takes them (or at `rate`), one sender per shard so
/// the shards fill in parallel while each shard's records keep their order.
pub async fn produce(
    client: &Client,
    stream: &str,
    records: impl IntoIterator<Item = Outgoing>,
    rate: Option<u32>,
    progress: &ProgressBar,
) -> Result<ProduceStats> {
    produce_until(client, stream, records, rate, progress, std::future::pending()).await
}

/// [`produce`], taking records from the iterator only as the senders' bounded queues have room,
/// and stopping early (after sending what is queued) when `stop` completes, e.g. on Ctrl-C.
pub async fn produce_until(
    client: &Client,
    stream: &str,
    records: impl IntoIterator<Item = Outgoing>,
    rate: Option<u32>,
    progress: &ProgressBar,
    stop: impl std::future::Future<Output = ()>,
) -> Result<ProduceStats> {
    let started = Instant::now();
    let shards = list_shards(client, stream).await?;
    let ranges: Vec<ShardRange> = shards.iter().filter(|s| s.open).map(Shard::range).collect::<Result<_>>()?;
    let pacer = Arc::new(Pacer { start: Instant::now(), sent: AtomicU64::new(0), rate });
    let max_records = rate.map_or(MAX_BATCH_RECORDS, |r| (r as usize).clamp(1, MAX_BATCH_RECORDS));
    let mut senders = JoinSet::new();
    let mut queues = Vec::new();
    for _ in 0..ranges.len().max(1) {
        let (queue, mut waiting) = tokio::sync::mpsc::channel::<Outgoing>(SENDER_QUEUE);
        queues.push(queue);
        let (client, stream, pacer, progress) = (client.clone(), stream.to_owned(), pacer.clone(), progress.clone());
        senders.spawn(async move {
            let mut stats = ProduceStats::default();
            let mut taken = Vec::with_capacity(max_records);
            while next_batch(&mut waiting, &mut taken, max_records).await > 0 {
                for batch in batches(std::mem::take(&mut taken), max_records) {
                    let len = batch.len();
                    pacer.admit(len).await;
                    put_batch(&client, &stream, batch, None, &mut stats).await?;
                    progress.inc(len as u64);
                }
            }
            anyhow::Ok(stats)
        });
    }
    let mut total = 0;
    tokio::pin!(stop);
    for record in records {
        let queue = &queues[shard_for_key(&ranges, &record.partition_key).unwrap_or(0)];
        tokio::select! {
            biased;
            () = &mut stop => break,
            sent = queue.send(record) => {
                // A sender that failed has dropped its queue: stop, and `gather` reports why.
                if sent.is_err() {
                    break;
                }
            }
        }
        total += 1;
    }
    drop(queues);
    gather(senders, total, started).await
}

/// Adds up what concurrent senders report, once every one has finished (or the first has failed).
pub(crate) async fn gather(
    mut senders: JoinSet<Result<ProduceStats>>,
    total: usize,
    started: Instant,
) -> Result<ProduceStats> {
    let mut stats = ProduceStats { records: total, ..Default::default() };
    while let Some(joined) = senders.join_next().await {
        let sender = joined??;
        stats.calls += sender.calls;
        stats.retried_entries += sender.retried_entries;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// The producer most code starts with, with refusals to make its flaw visible: PutRecords
/// batches of 500 in order, one after another, each re-sending what it had refused.
pub async fn produce_resending_refused(
    client: &Client,
    stream: &str,
    records: Vec<Outgoing>,
    refusals: Option<&dyn Refuser>,
    progress: &ProgressBar,
) -> Result<ProduceStats> {
    produce_acknowledged(client, stream, records, MAX_BATCH_RECORDS, refusals, progress).await
}

/// A producer that waits for every call's answer and re-sends the entries it refused (with
/// backoff) before the next call: nothing acknowledged is lost, at the cost of a round trip per
/// call and the retries' waits.
pub async fn produce_acknowledged(
    client: &Client,
    stream: &str,
    records: Vec<Outgoing>,
    max_records: usize,
    refusals: Option<&dyn Refuser>,
    progress: &ProgressBar,
) -> Result<ProduceStats> {
    let started = Instant::now();
    let mut stats = ProduceStats { records: records.len(), ..Default::default() };
    for batch in batches(records, max_records) {
        let len = batch.len() as u64;
        put_batch(client, stream, batch, refusals, &mut stats).await?;
        progress.inc(len);
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Options of a single PutRecord.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Place the record by this hash key instead of the MD5 of its partition key.
    pub explicit_hash_key: Option<u128>,
    /// The sequence number of the previous record of this key: Kinesis then gives this record
    /// a strictly greater one.
    pub sequence_number_for_ordering: Option<String>,
}

/// One PutRecord call; `Ok(None)` when the shard (or `refusals`) throttled it.
pub(crate) async fn try_put_record(
    client: &Client,
    stream: &str,
    record: &Outgoing,
    options: &PutOptions,
    refusals: Option<&dyn Refuser>,
) -> Result<Option<Placement>> {
    if refusals.is_some_and(|r| r.pick(1)[0]) {
        return Ok(None);
    }
    let sent = client
        .put_record()
        .stream_name(stream)
        .partition_key(&record.partition_key)
        .data(Blob::new(record.data.clone()))
        .set_explicit_hash_key(options.explicit_hash_key.map(|key| key.to_string()))
        .set_sequence_number_for_ordering(options.sequence_number_for_ordering.clone())
        .send()
        .await;
    match sent {
        Ok(out) => Ok(Some(Placement {
            shard_id: out.shard_id().to_owned(),
            sequence_number: out.sequence_number().to_owned(),
        })),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()) => {
            Ok(None)
        }
        Err(err) => Err(err).doing(format!("PutRecord to {stream}")),
    }
}

/// One PutRecord, retried with backoff while throttled.
pub async fn put_record(client: &Client, stream: &str, record: &Outgoing, options: &PutOptions) -> Result<Placement> {
    for attempt in 0..MAX_ATTEMPTS {
        if let Some(placement) = try_put_record(client, stream, record, options, None).await? {
            return Ok(placement);
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    bail!("PutRecord to {stream} was still throttled after {MAX_ATTEMPTS} attempts")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Outgoing {
        Outgoing { partition_key: format!("key-{n}"), data: vec![b'x'; 10] }
    }

    #[tokio::test]
    async fn a_batch_waits_for_records_still_coming_until_it_is_full() {
        let (queue, mut waiting) = tokio::sync::mpsc::channel(SENDER_QUEUE);
        queue.send(record(0)).await.unwrap();
        let late = tokio::spawn(async move {
            // The rest arrives a little later, well within the linger, and more than fits.
            tokio::time::sleep(LINGER / 5).await;
            for n in 1..=MAX_BATCH_RECORDS {
                queue.send(record(n)).await.unwrap();
            }
        });
        let mut batch = Vec::new();
        assert_eq!(next_batch(&mut waiting, &mut batch, MAX_BATCH_RECORDS).await, MAX_BATCH_RECORDS);
        assert_eq!(batch.first().map(|r| r.partition_key.as_str()), Some("key-0"));
        assert_eq!(batch.last().map(|r| r.partition_key.as_str()), Some("key-499"));
        late.await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_goes_out_short_when_the_queue_closes_or_nothing_more_comes() {
        let (queue, mut waiting) = tokio::sync::mpsc::channel(SENDER_QUEUE);
        for n in 0..3 {
            queue.send(record(n)).await.unwrap();
        }
        let mut batch = Vec::new();
        let started = Instant::now();
        assert_eq!(next_batch(&mut waiting, &mut batch, MAX_BATCH_RECORDS).await, 3, "lingered, then sent");
        assert!(started.elapsed() >= LINGER);
        queue.send(record(3)).await.unwrap();
        drop(queue);
        batch.clear();
        assert_eq!(next_batch(&mut waiting, &mut batch, MAX_BATCH_RECORDS).await, 1, "closed: sent at once");
        batch.clear();
        assert_eq!(next_batch(&mut waiting, &mut batch, MAX_BATCH_RECORDS).await, 0, "closed and empty");
    }

    #[test]
    fn batches_hold_at_most_500_records_and_5_mib() {
        let small: Vec<Outgoing> = (0..1001).map(record).collect();
        let sizes: Vec<usize> = batches(small, MAX_BATCH_RECORDS).iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 1]);
        let big = |n| Outgoing { partition_key: format!("k{n}"), data: vec![0; 1024 * 1024] };
        let sizes: Vec<usize> = batches((0..6).map(big).collect(), MAX_BATCH_RECORDS).iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 2], "five 1 MiB records and their keys are over 5 MiB");
    }
}
