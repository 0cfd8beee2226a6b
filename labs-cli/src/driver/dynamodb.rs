//! DynamoDB reads and writes the examples share: whole-table scans, typed items, and the wait
//! for a derived view to catch up with its source.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use labs_infra::SdkContext;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub type Item = HashMap<String, AttributeValue>;

/// Fails with a clear line when `table` does not exist (the example is not up).
pub async fn describe_table(client: &Client, table: &str, example: &str) -> Result<()> {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            anyhow::bail!("table {table} does not exist: run `labs up {example}` (with the same --prefix) first")
        }
        Err(err) => Err(err).doing(format!("describing {table}")),
    }
}

/// Every item of a table, read with strongly consistent scans, page by page.
pub async fn scan_all(client: &Client, table: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut pages = client.scan().table_name(table).consistent_read(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        items.extend(page.doing(format!("scanning {table}"))?.items().iter().cloned());
    }
    Ok(items)
}

/// Every item of a table as `T`; items that do not fit are returned apart, by key, so a
/// verifier can report them instead of failing to read.
pub async fn scan_typed<T: DeserializeOwned>(client: &Client, table: &str) -> Result<(Vec<T>, Vec<String>)> {
    let mut typed = Vec::new();
    let mut odd = Vec::new();
    for item in scan_all(client, table).await? {
        match serde_dynamo::from_item::<_, T>(item.clone()) {
            Ok(value) => typed.push(value),
            Err(err) => odd.push(format!("{:?}: {err}", item.keys().collect::<Vec<_>>())),
        }
    }
    Ok((typed, odd))
}

/// Deletes every item of a table (BatchWriteItem, 25 keys a call), keeping the table.
pub async fn clear(client: &Client, table: &str) -> Result<usize> {
    use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
    let described = client.describe_table().table_name(table).send().await.doing(format!("describing {table}"))?;
    let key_names: Vec<String> = described
        .table()
        .map(|t| t.key_schema().iter().map(|k| k.attribute_name().to_owned()).collect())
        .unwrap_or_default();
    let items = scan_all(client, table).await?;
    let mut requests = Vec::with_capacity(items.len());
    for item in &items {
        let key: Item = key_names.iter().filter_map(|k| Some((k.clone(), item.get(k)?.clone()))).collect();
        requests
            .push(WriteRequest::builder().delete_request(DeleteRequest::builder().set_key(Some(key)).build()?).build());
    }
    write_batches(client, table, requests, "clearing").await?;
    Ok(items.len())
}

/// Writes every value as an item (BatchWriteItem, 25 a call).
pub async fn put_all<T: Serialize>(client: &Client, table: &str, values: impl IntoIterator<Item = T>) -> Result<()> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let mut requests = Vec::new();
    for value in values {
        let item: Item = serde_dynamo::to_item(value)?;
        requests.push(WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build()?).build());
    }
    write_batches(client, table, requests, "writing to").await
}

/// Sends write requests 25 a call, sending again what DynamoDB left unprocessed.
async fn write_batches(
    client: &Client,
    table: &str,
    requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
    doing: &str,
) -> Result<()> {
    for chunk in requests.chunks(25) {
        let mut pending = Some(HashMap::from([(table.to_owned(), chunk.to_vec())]));
        while let Some(batch) = pending.take().filter(|b| b.values().any(|r| !r.is_empty())) {
            let out = client
                .batch_write_item()
                .set_request_items(Some(batch))
                .send()
                .await
                .doing(format!("{doing} {table}"))?;
            pending = out.unprocessed_items().cloned();
        }
    }
    Ok(())
}

pub async fn put<T: Serialize>(client: &Client, table: &str, value: &T) -> Result<()> {
    let item: Item = serde_dynamo::to_item(value)?;
    client.put_item().table_name(table).set_item(Some(item)).send().await.doing(format!("writing to {table}"))?;
    Ok(())
}

pub async fn delete(client: &Client, table: &str, key: (&str, &str)) -> Result<()> {
    client
        .delete_item()
        .table_name(table)
        .key(key.0, AttributeValue::S(key.1.to_owned()))
        .send()
        .await
        .doing(format!("deleting from {table}"))?;
    Ok(())
}

/// Deletes the item with this key (string attributes, partition key and sort key).
pub async fn delete_by_key(client: &Client, table: &str, key: &[(&str, &str)]) -> Result<()> {
    let key: Item = key.iter().map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned()))).collect();
    client.delete_item().table_name(table).set_key(Some(key)).send().await.doing(format!("deleting from {table}"))?;
    Ok(())
}

pub async fn get<T: DeserializeOwned>(client: &Client, table: &str, key: &[(&str, &str)]) -> Result<Option<T>> {
    let key: Item = key.iter().map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned()))).collect();
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .doing(format!("reading from {table}"))?;
    Ok(match out.item {
        Some(item) => Some(serde_dynamo::from_item(item)?),
        None => None,
    })
}

/// Polls `check` until it says there is nothing left to wait for (`Ok(0)`), or `timeout` passes.
/// `check` returns how many differences remain; `on_poll` sees each count, for a progress line.
/// Returns how long it took, or `None` on timeout.
pub async fn wait_until_converged<F, Fut>(
    timeout: Duration,
    mut check: F,
    mut on_poll: impl FnMut(usize),
) -> Result<Option<Duration>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize>>,
{
    let started = Instant::now();
    loop {
        let remaining = check().await?;
        on_poll(remaining);
        if remaining == 0 {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `table`'s ARN, which its tags are read and written by.
async fn table_arn(client: &Client, table: &str) -> Result<String> {
    let described = client.describe_table().table_name(table).send().await.doing(format!("describing {table}"))?;
    described
        .table()
        .and_then(|t| t.table_arn())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("{table} has no ARN"))
}

/// Every tag of `table`, as (key, value) pairs.
pub async fn table_tags(client: &Client, table: &str) -> Result<Vec<(String, String)>> {
    let arn = table_arn(client, table).await?;
    let out =
        client.list_tags_of_resource().resource_arn(arn).send().await.doing(format!("reading tags of {table}"))?;
    Ok(out.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
}

/// Sets one tag of `table` (added, or replaced when the key is there).
pub async fn tag_table(client: &Client, table: &str, key: &str, value: &str) -> Result<()> {
    let arn = table_arn(client, table).await?;
    let tag = aws_sdk_dynamodb::types::Tag::builder().key(key).value(value).build()?;
    client.tag_resource().resource_arn(arn).tags(tag).send().await.doing(format!("tagging {table}"))?;
    Ok(())
}
