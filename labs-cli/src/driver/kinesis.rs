//! Kinesis as the labs use it: shards and their ranges, reading (iterators, pages, to the tip),
//! resharding, and the stream's tags that record runs; producing is in `produce`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use labs_core::partition::ShardRange;
use labs_infra::SdkContext;
use serde::Serialize;

mod produce;
pub use produce::*;

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
