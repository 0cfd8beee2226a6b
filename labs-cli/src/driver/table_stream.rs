//! A DynamoDB table's change log read back from the CLI: every change it holds, per shard in
//! order, with the item's old image. Example 3 rebuilds the table as of a past position from it;
//! kafka-2's relay forwards its records into Kafka from where it stopped.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use labs_core::lineage;
use labs_infra::SdkContext;
use serde::de::DeserializeOwned;

/// One change of one item, as the table's stream (NEW_AND_OLD_IMAGES) carries it.
#[derive(Debug, Clone)]
pub struct Change<T> {
    pub shard_id: String,
    pub sequence_number: String,
    /// The value of the item's partition key (a string key).
    pub key: String,
    /// The item before the change: `None` for an insert, `Some(Err)` when it does not decode.
    pub old: Option<Result<T, String>>,
}

/// Where a stream ends now: per shard, the sequence number of its last record.
pub type Tips = BTreeMap<String, String>;

/// The ARN of the table's current stream.
pub async fn stream_arn(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<String> {
    let described = dynamodb.describe_table().table_name(table).send().await.doing(format!("describing {table}"))?;
    described
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned)
        .with_context(|| format!("{table} has no stream"))
}

/// Every change the stream holds, shard by shard (parents before children), each shard in order.
pub async fn read_changes<T: DeserializeOwned>(client: &Client, arn: &str, key: &str) -> Result<Vec<Change<T>>> {
    let records = read_records(client, arn, &Tips::new()).await?;
    Ok(records
        .into_iter()
        .filter_map(|(shard_id, record)| {
            let change = record.dynamodb()?;
            let key_value = match change.keys().and_then(|k| k.get(key)) {
                Some(AttributeValue::S(value)) => value.clone(),
                other => format!("{other:?}"),
            };
            Some(Change {
                shard_id,
                sequence_number: change.sequence_number().unwrap_or_default().to_owned(),
                key: key_value,
                old: change.old_image().map(|image| serde_dynamo::from_item(image.clone()).map_err(|e| e.to_string())),
            })
        })
        .collect())
}

/// The stream's records as the API returns them, with their shard: shard by shard (parents
/// before children), each in order; on a shard `after` names, only those past its sequence
/// number (a relay resuming where it stopped), on any other shard all of them.
pub async fn read_records(client: &Client, arn: &str, after: &Tips) -> Result<Vec<(String, Record)>> {
    let mut records = Vec::new();
    for shard_id in shards(client, arn).await? {
        let request = client.get_shard_iterator().stream_arn(arn).shard_id(&shard_id);
        let request = match after.get(&shard_id) {
            Some(sequence_number) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(sequence_number)
            }
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator =
            request.send().await.doing(format!("getting a shard iterator for {shard_id}"))?.shard_iterator;
        // An open shard never ends, and a table stream says nothing like MillisBehindLatest:
        // a few empty pages in a row are taken as its tip.
        let mut empty_pages = 0;
        while let Some(current) = iterator.take() {
            let page =
                client.get_records().shard_iterator(current).send().await.doing(format!("reading {shard_id}"))?;
            records.extend(page.records().iter().map(|record| (shard_id.clone(), record.clone())));
            empty_pages = if page.records().is_empty() { empty_pages + 1 } else { 0 };
            if empty_pages < 3 {
                iterator = page.next_shard_iterator;
            }
        }
    }
    Ok(records)
}

/// The last sequence number of each shard among `changes`.
pub fn tips<T>(changes: &[Change<T>]) -> Tips {
    changes.iter().map(|c| (c.shard_id.clone(), c.sequence_number.clone())).collect()
}

/// The changes made after `tips`: on a shard the tips name, those past its sequence number; on
/// any other shard (born later, or empty then), all of them.
pub fn after<'a, T>(changes: &'a [Change<T>], tips: &Tips) -> impl Iterator<Item = &'a Change<T>> {
    changes.iter().filter(|c| match tips.get(&c.shard_id) {
        Some(tip) => labs_core::sequence::compare(&c.sequence_number, tip).is_gt(),
        None => true,
    })
}

/// The stream's shard ids, parents before children, every page of them.
async fn shards(client: &Client, arn: &str) -> Result<Vec<String>> {
    let mut shards = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let out = client
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(after.clone())
            .send()
            .await
            .doing(format!("describing the stream {arn}"))?;
        let Some(description) = out.stream_description() else { break };
        for shard in description.shards() {
            shards.push((shard.shard_id().unwrap_or_default().to_owned(), shard.parent_shard_id().map(str::to_owned)));
        }
        after = description.last_evaluated_shard_id().map(str::to_owned);
        if after.is_none() {
            break;
        }
    }
    let ordered = lineage::parents_first(shards, |(id, parent)| (id.clone(), [parent.clone(), None]));
    Ok(ordered.into_iter().map(|(id, _)| id).collect())
}
