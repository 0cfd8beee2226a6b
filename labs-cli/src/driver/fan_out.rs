//! Kinesis enhanced fan-out: a consumer registered on a stream, to which Kinesis pushes each
//! shard's records over `SubscribeToShard` (an HTTP event stream) instead of being polled.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput;
use aws_sdk_kinesis::types::{ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use labs_infra::SdkContext;

use super::kinesis::{Page, incoming};

/// Registers `name` on the stream (or finds it registered) and waits until it is ACTIVE;
/// returns its ARN. On AWS a registered consumer costs per shard-hour: deregister it after use.
pub async fn register_consumer(client: &Client, stream: &str, name: &str) -> Result<String> {
    let summary =
        client.describe_stream_summary().stream_name(stream).send().await.doing(format!("describing {stream}"))?;
    let stream_arn = summary.stream_description_summary().map(|s| s.stream_arn().to_owned()).unwrap_or_default();
    let registered = client.register_stream_consumer().stream_arn(&stream_arn).consumer_name(name).send().await;
    if let Err(err) = registered
        && !err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception())
    {
        return Err(err).doing(format!("registering the consumer {name} on {stream}"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let described = client
            .describe_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send()
            .await
            .doing(format!("describing the consumer {name} of {stream}"))?;
        if let Some(consumer) = described.consumer_description()
            && *consumer.consumer_status() == ConsumerStatus::Active
        {
            return Ok(consumer.consumer_arn().to_owned());
        }
        if Instant::now() > deadline {
            bail!("the consumer {name} of {stream} was not ACTIVE after 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn deregister_consumer(client: &Client, consumer_arn: &str) -> Result<()> {
    client
        .deregister_stream_consumer()
        .consumer_arn(consumer_arn)
        .send()
        .await
        .doing(format!("deregistering the consumer {consumer_arn}"))?;
    Ok(())
}

/// One shard's push subscription, from the shard's tip when it was made.
pub struct Subscription {
    shard_id: String,
    output: SubscribeToShardOutput,
}

impl Subscription {
    pub async fn latest(client: &Client, consumer_arn: &str, shard_id: &str) -> Result<Self> {
        let position = StartingPosition::builder().r#type(ShardIteratorType::Latest).build()?;
        let output = client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard_id)
            .starting_position(position)
            .send()
            .await
            .doing(format!("subscribing to {shard_id}"))?;
        Ok(Self { shard_id: shard_id.to_owned(), output })
    }

    /// The next event Kinesis pushes (records, or none as a heartbeat); `None` when the
    /// subscription ends (after 5 minutes on AWS).
    pub async fn next_event(&mut self) -> Result<Option<Page>> {
        let event =
            self.output.event_stream.recv().await.doing(format!("reading the subscription to {}", self.shard_id))?;
        Ok(event.map(|event| match event {
            SubscribeToShardEventStream::SubscribeToShardEvent(event) => Page {
                records: event
                    .records()
                    .iter()
                    .map(|r| incoming(&self.shard_id, r, event.millis_behind_latest()))
                    .collect(),
                millis_behind_latest: event.millis_behind_latest(),
                throttled: false,
            },
            _ => Page::default(),
        }))
    }
}
