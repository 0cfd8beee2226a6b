//! The Kafka toolkit the Kafka labs share, in the style of `driver::kinesis`: topics, keyed
//! produce with its statistics, group consumers that report what they were assigned and what was
//! revoked, commits, resetting a group's offsets, reading a partition from an offset, watermarks
//! and a group's committed offsets. Labs never call the client (rdkafka) directly.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

pub use crate::kafka::client::Broker;
use crate::kafka::client::{REQUEST_TIMEOUT, config};
pub use crate::kafka::topics::{admin, partitions};

/// A record to produce: its key decides its partition (the same hash as Java's clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Where the broker put a produced record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivered {
    pub key: String,
    pub partition: i32,
    pub offset: i64,
}

/// What one `produce` call did.
#[derive(Debug, Clone, Serialize)]
pub struct ProduceStats {
    pub records: usize,
    pub seconds: f64,
    /// Records per partition.
    pub per_partition: BTreeMap<i32, usize>,
}

impl ProduceStats {
    pub fn records_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.records as f64 / self.seconds } else { 0.0 }
    }
}

/// The producer settings: every record acknowledged by the broker, the key hashed as Java's
/// clients hash it (murmur2), and idempotence, so a retried batch is neither duplicated nor
/// reordered within its partition.
fn producer(broker: &Broker) -> Result<FutureProducer> {
    let mut config = config(&broker.bootstrap);
    if broker.one_record_per_batch {
        config.set("batch.num.messages", "1").set("linger.ms", "0");
    } else {
        config.set("linger.ms", "5");
    }
    config
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .context("cannot create a Kafka producer")
}

/// Produces `records` to `topic`, keyed, and waits until the broker has acknowledged each one.
/// Returns where each landed (in the order given) and the run's statistics.
pub async fn produce(
    broker: &Broker,
    topic: &str,
    records: impl IntoIterator<Item = Outgoing>,
) -> Result<(Vec<Delivered>, ProduceStats)> {
    send(broker, topic, records.into_iter().map(|r| (r.key, Some(r.payload), r.headers))).await
}

/// Produces `records` to `topic` in the order given, each keyed, a `None` value as a tombstone
/// (a record with no value: on a compacted topic, the key's deletion), and waits until the broker
/// has acknowledged each one. Returns where each landed, in the order given.
pub async fn produce_nullable(
    broker: &Broker,
    topic: &str,
    records: impl IntoIterator<Item = (String, Option<Vec<u8>>)>,
) -> Result<Vec<Delivered>> {
    let (delivered, _) = send(broker, topic, records.into_iter().map(|(key, value)| (key, value, Vec::new()))).await?;
    Ok(delivered)
}

/// The one send loop behind [`produce`] and [`produce_nullable`]: key, value (`None`: a
/// tombstone) and headers of each record.
async fn send(
    broker: &Broker,
    topic: &str,
    records: impl Iterator<Item = (String, Option<Vec<u8>>, Vec<(String, String)>)>,
) -> Result<(Vec<Delivered>, ProduceStats)> {
    let producer = producer(broker)?;
    let started = Instant::now();
    // A bounded window of records awaiting their acknowledgement: each record's delivery timeout
    // runs from when it is handed over, so a slow broker slows the producer instead of expiring
    // a long queue, and memory stays flat whatever the count.
    let mut pending = std::collections::VecDeque::new();
    let mut delivered = Vec::new();
    for (key, value, record_headers) in records {
        if pending.len() >= IN_FLIGHT
            && let Some((key, delivery)) = pending.pop_front()
        {
            delivered.push(acknowledged(key, delivery).await?);
        }
        let mut headers = OwnedHeaders::new();
        for (name, text) in &record_headers {
            headers = headers.insert(Header { key: name, value: Some(text.as_bytes()) });
        }
        let mut future_record = FutureRecord::<[u8], [u8]>::to(topic).key(key.as_bytes()).headers(headers);
        if let Some(value) = &value {
            future_record = future_record.payload(value.as_slice());
        }
        // A full local queue is back pressure: wait for deliveries, then try the same record again.
        let delivery = loop {
            match producer.send_result(future_record) {
                Ok(delivery) => break delivery,
                Err((err, returned)) if is_queue_full(&err) => {
                    future_record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((err, _)) => bail!("cannot produce to Kafka topic {topic}: {err}"),
            }
        };
        pending.push_back((key, delivery));
    }
    for (key, delivery) in pending {
        delivered.push(acknowledged(key, delivery).await?);
    }
    let mut per_partition = BTreeMap::new();
    for d in &delivered {
        *per_partition.entry(d.partition).or_default() += 1;
    }
    let stats = ProduceStats { records: delivered.len(), seconds: started.elapsed().as_secs_f64(), per_partition };
    Ok((delivered, stats))
}

/// Records handed to the client and not yet acknowledged, at most.
const IN_FLIGHT: usize = 2000;

async fn acknowledged(key: String, delivery: rdkafka::producer::DeliveryFuture) -> Result<Delivered> {
    let outcome = delivery.await.context("the producer went away before a delivery report")?;
    let delivery = outcome.map_err(|(err, _)| anyhow::anyhow!("Kafka refused a record: {err}"))?;
    Ok(Delivered { key, partition: delivery.partition, offset: delivery.offset })
}

fn is_queue_full(err: &rdkafka::error::KafkaError) -> bool {
    err.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
}

/// A record as a consumer read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The value; `None` for a record without one (a tombstone).
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
    /// The record's timestamp (the producer's create time), in Unix milliseconds.
    pub timestamp_millis: Option<i64>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn incoming<M: Message>(message: &M) -> Incoming {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|header| {
                    (header.key.to_owned(), String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    Incoming {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_millis: message.timestamp().to_millis(),
    }
}

/// A change of a member's partitions, as the group coordinator handed it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "event", content = "partitions")]
pub enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// The member's side of the group protocol, run by librdkafka inside `poll`: it records each
/// assignment and revocation, and before partitions are taken away it commits what the member
/// processed of them (the Java client's `onPartitionsRevoked`), so their next owner neither
/// skips nor repeats those records. A killed member runs no callback (`kill`).
#[derive(Default)]
pub struct Recorder {
    topic: String,
    events: Mutex<Vec<RebalanceEvent>>,
    /// Per partition, the offset after the last record `poll` handed out.
    processed: Mutex<BTreeMap<i32, i64>>,
    killed: AtomicBool,
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else { return };
        if self.killed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut processed) = self.processed.lock() else { return };
        let mut commit = TopicPartitionList::new();
        for element in list.elements() {
            if let Some(next) = processed.remove(&element.partition()) {
                // A partition it cannot commit is read again by its next owner: at-least-once.
                let _ = commit.add_partition_offset(&self.topic, element.partition(), Offset::Offset(next));
            }
        }
        if commit.count() > 0 {
            let _ = consumer.commit(&commit, CommitMode::Sync);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| list.elements().iter().map(|e| e.partition()).collect();
        let event = match rebalance {
            Rebalance::Assign(list) => RebalanceEvent::Assigned(partitions(list)),
            Rebalance::Revoke(list) => RebalanceEvent::Revoked(partitions(list)),
            Rebalance::Error(_) => return,
        };
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// At most this many records are read while waiting for an assignment, so a member that
/// settles first does not read everything before the others have their partitions.
const SETTLE_BATCH: usize = 50;

/// One member of a consumer group, subscribed to a topic. Its partitions come from the group
/// coordinator; it commits when told to (`commit`) and when a partition is revoked, never on a
/// timer, so what a killed member processed and what it committed differ: the lesson of a crash.
pub struct GroupMember {
    pub name: String,
    pub group: String,
    topic: String,
    consumer: StreamConsumer<Recorder>,
}

impl GroupMember {
    /// Joins `group` as a member reading `topic`. The join completes while it polls. Where the
    /// group has no committed offset, it starts at the oldest record.
    pub fn join(bootstrap: &str, group: &str, name: &str, topic: &str) -> Result<Self> {
        let consumer: StreamConsumer<Recorder> = config(bootstrap)
            .set("group.id", group)
            .set("client.id", name)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // The classic range assignor: what Kafka's Java clients used for years, and what the
            // lab's table of owners reads most plainly (contiguous partitions per member).
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(Recorder { topic: topic.to_owned(), ..Recorder::default() })
            .context("cannot create a Kafka consumer")?;
        consumer.subscribe(&[topic]).with_context(|| format!("cannot subscribe to {topic}"))?;
        Ok(Self { name: name.to_owned(), group: group.to_owned(), topic: topic.to_owned(), consumer })
    }

    /// Reads until `max` records arrived or nothing arrived for `idle`, running the group's
    /// protocol (joins, heartbeats, rebalance callbacks) meanwhile.
    pub async fn poll(&self, max: usize, idle: Duration) -> Result<Vec<Incoming>> {
        let mut read = Vec::new();
        while read.len() < max {
            match tokio::time::timeout(idle, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(message)) => read.push(incoming(&message)),
                Ok(Err(err)) => bail!("{} could not read {}: {err}", self.name, self.topic),
            }
        }
        if let Ok(mut processed) = self.consumer.context().processed.lock() {
            for (partition, next) in next_positions(&read) {
                let position = processed.entry(partition).or_insert(next);
                *position = (*position).max(next);
            }
        }
        Ok(read)
    }

    /// Ends this member as a crash would: no revocation callback runs, so nothing it processed
    /// since its last `commit` is committed, and its partitions go to the others.
    pub fn kill(self) {
        self.consumer.context().killed.store(true, Ordering::SeqCst);
        drop(self);
    }

    /// The partitions this member owns now, in order.
    pub fn assignment(&self) -> Result<Vec<i32>> {
        let list = self.consumer.assignment().context("cannot read the assignment")?;
        let mut partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// Every assignment and revocation so far, oldest first.
    pub fn events(&self) -> Vec<RebalanceEvent> {
        self.consumer.context().events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Commits, synchronously, the position after the last of `records` in each partition: the
    /// group resumes there. Returns the committed positions.
    pub fn commit(&self, records: &[Incoming]) -> Result<BTreeMap<i32, i64>> {
        let positions = next_positions(records);
        if positions.is_empty() {
            return Ok(positions);
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in &positions {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))?;
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .with_context(|| format!("{} could not commit in group {}", self.name, self.group))?;
        Ok(positions)
    }

    /// Leaves the group cleanly, so the others get its partitions at once rather than after
    /// its session times out.
    pub async fn leave(self) -> Result<()> {
        self.consumer.unsubscribe();
        // The revocation is delivered by a poll; then dropping the client closes it.
        let _ = self.poll(usize::MAX, Duration::from_millis(300)).await;
        Ok(())
    }
}

/// Polls `members` side by side until every one of them has joined, and in every group among
/// them the members' partitions cover the topic's `partitions` once each, the same for two rounds
/// (or `timeout` passed).
/// Returns what each member read meanwhile (a few records each: see `SETTLE_BATCH`).
pub async fn settle_groups(members: &[&GroupMember], partitions: i32, timeout: Duration) -> Result<Vec<Vec<Incoming>>> {
    let deadline = Instant::now() + timeout;
    let mut read: Vec<Vec<Incoming>> = vec![Vec::new(); members.len()];
    let mut stable_rounds = 0;
    let mut last: Vec<Vec<i32>> = Vec::new();
    while Instant::now() < deadline && stable_rounds < 2 {
        let polls = members.iter().map(|m| m.poll(SETTLE_BATCH, Duration::from_millis(200)));
        for (slot, records) in read.iter_mut().zip(futures::future::try_join_all(polls).await?) {
            slot.extend(records);
        }
        let owned: Vec<Vec<i32>> = members.iter().map(|m| m.assignment()).collect::<Result<_>>()?;
        let groups: std::collections::BTreeSet<&str> = members.iter().map(|m| m.group.as_str()).collect();
        let settled = groups.iter().all(|group| {
            let mut all: Vec<i32> =
                members.iter().zip(&owned).filter(|(m, _)| m.group == *group).flat_map(|(_, p)| p.clone()).collect();
            all.sort_unstable();
            all == (0..partitions).collect::<Vec<_>>()
        });
        // A member that has not joined yet, or is between a revocation and its next assignment,
        // is not settled whatever the others own.
        let joined = members.iter().all(|m| matches!(m.events().last(), Some(RebalanceEvent::Assigned(_))));
        stable_rounds = if settled && joined && owned == last { stable_rounds + 1 } else { 0 };
        last = owned;
    }
    Ok(read)
}

/// Per partition, the offset after the last of `records`: where a group resumes once committed.
pub fn next_positions(records: &[Incoming]) -> BTreeMap<i32, i64> {
    let mut positions = BTreeMap::new();
    for record in records {
        let next = positions.entry(record.partition).or_insert(record.offset + 1);
        *next = (*next).max(record.offset + 1);
    }
    positions
}

/// A plain client of `group`, joined to nothing: reads and writes the group's committed offsets.
fn group_client(bootstrap: &str, group: &str) -> Result<BaseConsumer> {
    config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create a Kafka client for the group's offsets")
}

/// The offsets `group` has committed on each of `topic`'s `partitions` (`None`: nothing yet).
pub async fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let client = group_client(bootstrap, group)?;
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let found = tokio::task::block_in_place(|| client.committed_offsets(list, REQUEST_TIMEOUT))
        .with_context(|| format!("cannot read group {group}'s committed offsets"))?;
    Ok(found
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            };
            (e.partition(), offset)
        })
        .collect())
}

/// Where a reset moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "to", content = "value")]
pub enum ResetTo {
    /// The oldest record each partition still holds.
    Earliest,
    /// The same offset on every partition.
    Offset(i64),
    /// The first record of each partition at or after this time (Unix milliseconds).
    Timestamp(i64),
}

/// Commits new positions for `group` on every partition of `topic`, as
/// `kafka-consumer-groups --reset-offsets` does. The group must have no live member (a live
/// member would commit its own positions over these). Returns the positions set.
pub async fn reset_group(bootstrap: &str, group: &str, topic: &str, to: ResetTo) -> Result<BTreeMap<i32, i64>> {
    let admin = admin(bootstrap)?;
    let count = partitions(&admin, topic).await?.with_context(|| format!("Kafka topic {topic} does not exist"))?;
    let client = group_client(bootstrap, group)?;
    let mut positions = BTreeMap::new();
    for partition in 0..count {
        let (low, high) = watermarks(bootstrap, topic, partition).await?;
        let offset = match to {
            ResetTo::Earliest => low,
            ResetTo::Offset(offset) => offset.clamp(low, high),
            ResetTo::Timestamp(millis) => offset_at(&client, topic, partition, millis)?.unwrap_or(high),
        };
        positions.insert(partition, offset);
    }
    commit_with(&client, group, topic, &positions)?;
    Ok(positions)
}

/// Commits `positions` (partition -> the next offset to read) for `group`, which must have no
/// live member: where its next member starts.
pub async fn commit_positions(bootstrap: &str, group: &str, topic: &str, positions: &BTreeMap<i32, i64>) -> Result<()> {
    commit_with(&group_client(bootstrap, group)?, group, topic, positions)
}

fn commit_with(client: &BaseConsumer, group: &str, topic: &str, positions: &BTreeMap<i32, i64>) -> Result<()> {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in positions {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    tokio::task::block_in_place(|| client.commit(&list, CommitMode::Sync))
        .with_context(|| format!("cannot commit offsets for group {group}"))
}

/// Per partition of `topic`, the first offset whose record is at or after `millis` (`None`: no
/// such record).
pub async fn offsets_at_time(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    millis: i64,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let client: BaseConsumer = config(bootstrap).create().context("cannot create a Kafka client")?;
    (0..partitions).map(|partition| Ok((partition, offset_at(&client, topic, partition, millis)?))).collect()
}

/// The first offset of `partition` whose record is at or after `millis` (ListOffsets by time).
fn offset_at(client: &BaseConsumer, topic: &str, partition: i32, millis: i64) -> Result<Option<i64>> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(millis))?;
    let found = tokio::task::block_in_place(|| client.offsets_for_times(list, REQUEST_TIMEOUT))
        .context("cannot look up an offset by time")?;
    Ok(found.elements().first().and_then(|e| match e.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }))
}

/// A partition's low and high watermarks: its oldest offset, and the offset the next record
/// will get. The high one is taken from a Fetch response, not from ListOffsets: tansu 0.6.0
/// answers ListOffsets "latest" with the last *batch's* first offset plus one, short of the end
/// whenever that batch holds more than one record, while its Fetch responses carry the true end.
pub async fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> Result<(i64, i64)> {
    let client: BaseConsumer = config(bootstrap).create().context("cannot create a Kafka client")?;
    let (low, listed_high) = tokio::task::block_in_place(|| client.fetch_watermarks(topic, partition, REQUEST_TIMEOUT))
        .with_context(|| format!("cannot read the watermarks of {topic}/{partition}"))?;
    // Reading from just below the listed end (one batch at most) to the end tells the true end.
    let tail = read_partition(bootstrap, topic, partition, (listed_high - 1).max(low)).await?;
    Ok((low, tail.last().map_or(listed_high, |last| last.offset + 1)))
}

/// A client outside any group that reports the end of each partition it reads (PartitionEOF).
fn reader<C: rdkafka::config::FromClientConfig>(bootstrap: &str) -> Result<C> {
    config(bootstrap)
        .set("group.id", "labs-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("cannot create a Kafka consumer")
}

/// Reads `partition` of `topic` from `from` up to its end at the time of the call, outside any
/// group (nothing is committed).
pub async fn read_partition(bootstrap: &str, topic: &str, partition: i32, from: i64) -> Result<Vec<Incoming>> {
    let consumer: StreamConsumer = reader(bootstrap)?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&list).context("cannot assign the partition")?;
    let mut read = Vec::new();
    loop {
        match tokio::time::timeout(REQUEST_TIMEOUT, consumer.recv()).await {
            Err(_) => bail!(
                "{topic}/{partition}: read up to offset {} and then neither a record nor the end came for {} s",
                read.last().map_or(from, |r: &Incoming| r.offset + 1),
                REQUEST_TIMEOUT.as_secs()
            ),
            Ok(Ok(message)) => read.push(incoming(&message)),
            Ok(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(read),
            Ok(Err(err)) => bail!("cannot read {topic}/{partition}: {err}"),
        }
    }
}

/// Every record every partition of `topic` holds now, partition by partition, each in offset order.
pub async fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<Incoming>> {
    let mut all = Vec::new();
    for (partition, low, _) in topic_watermarks(bootstrap, topic).await? {
        all.extend(read_partition(bootstrap, topic, partition, low).await?);
    }
    Ok(all)
}

impl Incoming {
    /// The record as log compaction sees it: key, and value or tombstone.
    pub fn into_log_record(self) -> labs_core::compaction::LogRecord<String, Vec<u8>> {
        labs_core::compaction::LogRecord {
            partition: self.partition,
            offset: self.offset,
            key: self.key.unwrap_or_default(),
            value: self.payload,
        }
    }
}

/// Every partition of `topic` with its low and high watermarks, in partition order.
pub async fn topic_watermarks(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64, i64)>> {
    let count =
        partitions(&admin(bootstrap)?, topic).await?.with_context(|| format!("Kafka topic {topic} does not exist"))?;
    let mut all = Vec::new();
    for partition in 0..count {
        let (low, high) = watermarks(bootstrap, topic, partition).await?;
        all.push((partition, low, high));
    }
    Ok(all)
}

/// How long `drain_group` may take to reach the end of a topic.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads `topic` as a member of `group`, from the group's committed offsets (the earliest record
/// where it has none), until the group has committed, on every partition, the end that partition
/// had when the call began. Hands the records over in batches of at most `batch` (each partition
/// in offset order) and commits after each batch `apply` accepted. Returns the records read.
pub async fn drain_group(
    bootstrap: &str,
    group: &str,
    topic: &str,
    batch: usize,
    mut apply: impl AsyncFnMut(Vec<Incoming>) -> Result<()>,
) -> Result<usize> {
    let ends = topic_watermarks(bootstrap, topic).await?;
    let committed = committed(bootstrap, group, topic, ends.len() as i32).await?;
    let mut behind: BTreeMap<i32, i64> = ends
        .iter()
        .filter(|(partition, low, high)| committed.get(partition).copied().flatten().unwrap_or(*low) < *high)
        .map(|(partition, _, high)| (*partition, *high))
        .collect();
    if behind.is_empty() {
        return Ok(0);
    }
    let member = GroupMember::join(bootstrap, group, &format!("{group}-member"), topic)?;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut read = 0;
    while !behind.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "group {group} did not reach the end of {topic} within {} s (partitions behind: {:?})",
                DRAIN_TIMEOUT.as_secs(),
                behind.keys().collect::<Vec<_>>()
            );
        }
        let records = member.poll(batch, Duration::from_millis(300)).await?;
        if records.is_empty() {
            continue;
        }
        read += records.len();
        apply(records.clone()).await?;
        for (partition, next) in member.commit(&records)? {
            if behind.get(&partition).is_some_and(|end| next >= *end) {
                behind.remove(&partition);
            }
        }
    }
    member.leave().await?;
    Ok(read)
}

/// The configs the broker reports for `topic` (`cleanup.policy`, ...).
pub async fn topic_config(bootstrap: &str, topic: &str) -> Result<BTreeMap<String, String>> {
    crate::kafka::topics::describe_config(&admin(bootstrap)?, topic).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> Incoming {
        Incoming { partition, offset, key: None, payload: None, headers: Vec::new(), timestamp_millis: None }
    }

    #[test]
    fn a_commit_names_the_offset_after_the_last_record_of_each_partition() {
        let records = [record(0, 4), record(1, 0), record(0, 9), record(0, 7)];
        assert_eq!(next_positions(&records), BTreeMap::from([(0, 10), (1, 1)]));
        assert!(next_positions(&[]).is_empty());
    }
}
