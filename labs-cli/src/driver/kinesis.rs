use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry, ShardIteratorType, StreamStatus};
use indicatif::ProgressBar;
use labs_core::partition::{ShardRange, shard_for_key};
use labs_infra::SdkContext;
use serde::Serialize;
use tokio::task::JoinSet;

/// PutRecords takes at most 500 records and 5 MiB per call.
pub const MAX_BATCH_RECORDS: usize = 500;
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
pub(crate) const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, Serialize)]
pub struct Shard {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub adjacent_parent_shard_id: Option<String>,
    pub starting_hash_key: String,
    pub ending_hash_key: String,
    /// Closed shards (after a split or merge) have an ending sequence number.
    pub open: bool,
}

impl Shard {
    pub fn range(&self) -> Result<ShardRange> {
        Ok(ShardRange::parse(&self.shard_id, &self.starting_hash_key, &self.ending_hash_key)?)
    }
}

/// Every shard of a stream, parents before their children.
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<Shard>> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let out = request.send().await.map_err(|err| {
            if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) {
                anyhow::anyhow!(
                    "stream {stream} does not exist (did you run `labs up` for its example, with the same --prefix?)"
                )
            } else {
                anyhow::anyhow!(
                    "listing shards of {stream}: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                )
            }
        })?;
        for shard in out.shards() {
            let range = shard.hash_key_range();
            shards.push(Shard {
                shard_id: shard.shard_id().to_owned(),
                parent_shard_id: shard.parent_shard_id().map(str::to_owned),
                adjacent_parent_shard_id: shard.adjacent_parent_shard_id().map(str::to_owned),
                starting_hash_key: range.map(|r| r.starting_hash_key().to_owned()).unwrap_or_default(),
                ending_hash_key: range.map(|r| r.ending_hash_key().to_owned()).unwrap_or_default(),
                open: shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_none(),
            });
        }
        next_token = out.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    Ok(labs_core::lineage::parents_first(shards, |s| {
        (s.shard_id.clone(), [s.parent_shard_id.clone(), s.adjacent_parent_shard_id.clone()])
    }))
}

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

/// Where a consumer starts reading a shard.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp(DateTime),
    AfterSequence(String),
}

/// One record as a consumer read it.
#[derive(Debug, Clone, Serialize)]
pub struct Incoming {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    #[serde(skip)]
    pub data: Vec<u8>,
    /// Milliseconds since the epoch when Kinesis accepted the record.
    pub arrival_millis: i64,
    /// How far this read was behind the tip of the shard (MillisBehindLatest).
    pub millis_behind_latest: i64,
}

async fn shard_iterator(client: &Client, stream: &str, shard_id: &str, position: &Position) -> Result<Option<String>> {
    let request = client.get_shard_iterator().stream_name(stream).shard_id(shard_id);
    let request = match position {
        Position::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
        Position::AtTimestamp(at) => request.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(*at),
        Position::AfterSequence(seq) => {
            request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq)
        }
    };
    let out = request.send().await.doing(format!("getting a shard iterator for {stream}/{shard_id}"))?;
    Ok(out.shard_iterator().map(str::to_owned))
}

/// How long a reader keeps polling.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Until it has caught up with the tip (MillisBehindLatest = 0 and nothing returned).
    CaughtUp,
    /// Until interrupted (or `limit`).
    Forever,
}

/// A polling consumer's place in one shard: every `next_page` is one GetRecords call, and the
/// iterator it gets back is its offset.
pub struct ShardReader {
    stream: String,
    shard_id: String,
    iterator: Option<String>,
}

/// What one GetRecords call (or one pushed event) returned.
#[derive(Default)]
pub struct Page {
    pub records: Vec<Incoming>,
    /// How far the read was behind the tip of the shard.
    pub millis_behind_latest: i64,
    /// The shard refused the read: its polling consumers share 5 GetRecords calls a second.
    pub throttled: bool,
}

/// A record as the SDK returns it, as labs reads it.
pub(crate) fn incoming(shard_id: &str, record: &aws_sdk_kinesis::types::Record, millis_behind_latest: i64) -> Incoming {
    Incoming {
        shard_id: shard_id.to_owned(),
        sequence_number: record.sequence_number().to_owned(),
        partition_key: record.partition_key().to_owned(),
        data: record.data().as_ref().to_vec(),
        arrival_millis: record.approximate_arrival_timestamp().map_or(0, |t| t.to_millis().unwrap_or(0)),
        millis_behind_latest,
    }
}

impl ShardReader {
    pub async fn open(client: &Client, stream: &str, shard_id: &str, position: &Position) -> Result<Self> {
        let iterator = shard_iterator(client, stream, shard_id, position).await?;
        Ok(Self { stream: stream.to_owned(), shard_id: shard_id.to_owned(), iterator })
    }

    /// Whether the shard is closed and read to its end.
    pub fn finished(&self) -> bool {
        self.iterator.is_none()
    }

    /// One GetRecords call of at most `limit` records (an empty page once the shard is finished,
    /// a throttled one when the shard refused the read; the position stays where it was).
    pub async fn next_page(&mut self, client: &Client, limit: i32) -> Result<Page> {
        let Some(current) = self.iterator.take() else { return Ok(Page::default()) };
        let out = match client.get_records().shard_iterator(&current).limit(limit).send().await {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_provisioned_throughput_exceeded_exception()) => {
                self.iterator = Some(current);
                return Ok(Page { throttled: true, ..Page::default() });
            }
            Err(err) => return Err(err).doing(format!("GetRecords on {}/{}", self.stream, self.shard_id)),
        };
        let millis_behind_latest = out.millis_behind_latest().unwrap_or(0);
        let records = out.records().iter().map(|r| incoming(&self.shard_id, r, millis_behind_latest)).collect();
        self.iterator = out.next_shard_iterator().map(str::to_owned);
        Ok(Page { records, millis_behind_latest, throttled: false })
    }
}

/// Polls one shard from `position`, in order, the way a log consumer does: the iterator it gets
/// back is its offset. Stops at the tip (or a closed shard's end), or after `limit` records.
pub async fn read_shard(
    client: &Client,
    stream: &str,
    shard_id: &str,
    position: &Position,
    until: Until,
    limit: Option<usize>,
    mut on_record: impl FnMut(&Incoming),
) -> Result<Vec<Incoming>> {
    let mut records = Vec::new();
    let mut reader = ShardReader::open(client, stream, shard_id, position).await?;
    while !reader.finished() {
        let page = reader.next_page(client, 10_000).await?;
        if page.throttled {
            // The shard's 5 reads a second are shared with its other polling consumers.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let empty = page.records.is_empty();
        for incoming in page.records {
            on_record(&incoming);
            records.push(incoming);
            if limit.is_some_and(|limit| records.len() >= limit) {
                return Ok(records);
            }
        }
        if empty {
            match until {
                Until::CaughtUp if page.millis_behind_latest == 0 => break,
                // An empty page while behind: the shard has a gap; ask again right away.
                Until::CaughtUp => {}
                Until::Forever => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
    Ok(records)
}

/// Everything one shard holds from `position` up to its tip (or a closed shard's end).
pub async fn read_shard_to_tip(
    client: &Client,
    stream: &str,
    shard_id: &str,
    position: &Position,
) -> Result<Vec<Incoming>> {
    read_shard(client, stream, shard_id, position, Until::CaughtUp, None, |_| {}).await
}

/// Reads every shard from `position`, parents before children, and returns records per shard.
pub async fn read_stream(client: &Client, stream: &str, position: &Position) -> Result<Vec<Incoming>> {
    let mut all = Vec::new();
    for shard in list_shards(client, stream).await? {
        all.extend(read_shard_to_tip(client, stream, &shard.shard_id, position).await?);
    }
    Ok(all)
}

/// Groups records by shard, keeping each shard's order.
pub fn by_shard(records: &[Incoming]) -> HashMap<&str, Vec<&Incoming>> {
    let mut map: HashMap<&str, Vec<&Incoming>> = HashMap::new();
    for record in records {
        map.entry(record.shard_id.as_str()).or_default().push(record);
    }
    map
}

/// Splits an open shard at `new_starting_hash_key` (its second child starts there) and waits
/// until the parent is closed (or gone) and the stream is ACTIVE again.
pub async fn split_shard(client: &Client, stream: &str, shard_id: &str, new_starting_hash_key: u128) -> Result<()> {
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard_id)
        .new_starting_hash_key(new_starting_hash_key.to_string())
        .send()
        .await
        .doing(format!("splitting {stream}/{shard_id}"))?;
    wait_until_resharded(client, stream, &[shard_id]).await
}

/// Merges two open shards with adjacent hash ranges and waits until both are closed (or gone)
/// and the stream is ACTIVE again.
pub async fn merge_shards(client: &Client, stream: &str, shard_id: &str, adjacent_shard_id: &str) -> Result<()> {
    client
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(shard_id)
        .adjacent_shard_to_merge(adjacent_shard_id)
        .send()
        .await
        .doing(format!("merging {stream}/{shard_id} with {adjacent_shard_id}"))?;
    wait_until_resharded(client, stream, &[shard_id, adjacent_shard_id]).await
}

/// Resharding is asynchronous on AWS (seconds to a minute): the stream is UPDATING and the
/// parents stay open until the children take over.
async fn wait_until_resharded(client: &Client, stream: &str, parents: &[&str]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let summary =
            client.describe_stream_summary().stream_name(stream).send().await.doing(format!("describing {stream}"))?;
        let active = summary.stream_description_summary().is_some_and(|s| *s.stream_status() == StreamStatus::Active);
        let shards = list_shards(client, stream).await?;
        let parents_open = shards.iter().any(|s| s.open && parents.contains(&s.shard_id.as_str()));
        if active && !parents_open {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{stream} was still resharding after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Tag keys under which runs are recorded on a stream: `labs:run:<name>` = `<value>`. They are
/// the verifiers' ground truth for what was produced, kept with the data itself.
const RUN_TAG: &str = "labs:run:";

/// The runs recorded on `stream`, as (name, value) pairs in tag order, every page of them.
pub async fn recorded_runs(client: &Client, stream: &str, example: &str) -> Result<Vec<(String, String)>> {
    let tags = stream_tags(client, stream)
        .await
        .map_err(|err| anyhow::anyhow!("{err:#} (did you run `labs up {example}`?)"))?;
    Ok(tags.into_iter().filter_map(|(key, value)| Some((key.strip_prefix(RUN_TAG)?.to_owned(), value))).collect())
}

/// Every tag of `stream`, as (key, value) pairs in tag order, every page of them.
pub async fn stream_tags(client: &Client, stream: &str) -> Result<Vec<(String, String)>> {
    let mut tags = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let out = client
            .list_tags_for_stream()
            .stream_name(stream)
            .limit(50)
            .set_exclusive_start_tag_key(after.clone())
            .send()
            .await
            .doing(format!("reading tags of {stream}"))?;
        for tag in out.tags() {
            tags.push((tag.key().to_owned(), tag.value().unwrap_or_default().to_owned()));
        }
        after = out.tags().last().map(|t| t.key().to_owned());
        if !out.has_more_tags() || after.is_none() {
            return Ok(tags);
        }
    }
}

/// Records a run on `stream` before it produces, so a crash mid-run shows up as missing data.
pub async fn record_run(client: &Client, stream: &str, name: &str, value: &str) -> Result<()> {
    tag_stream(client, stream, &format!("{RUN_TAG}{name}"), value).await
}

/// Sets one tag of `stream` (added, or replaced when the key is there).
pub async fn tag_stream(client: &Client, stream: &str, key: &str, value: &str) -> Result<()> {
    client.add_tags_to_stream().stream_name(stream).tags(key, value).send().await.doing(format!("tagging {stream}"))?;
    Ok(())
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
