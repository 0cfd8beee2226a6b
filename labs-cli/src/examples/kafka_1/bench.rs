//! Kafka 1's benchmark: the same records produced and consumed through Kafka (the broker labs
//! runs, or `--kafka-bootstrap`) and through Kinesis (the target: the emulator by default), in
//! one run on one machine, so the two read side by side.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use aws_sdk_kinesis::primitives::DateTime;
use labs_core::clickstream::{self, ClickstreamSpec};
use serde::Serialize;

use super::{BENCH_SEEDS, BENCH_STREAM, BenchOptions, CLICKS, encode};
use crate::driver::clickstream::encode as encode_for_kinesis;
use crate::driver::kafka;
use crate::driver::kinesis::{self, Position};
use crate::figures::Figure;
use crate::output::{self, Output};
use crate::target::Target;

#[derive(Serialize)]
struct BenchReport {
    records: usize,
    kafka_produce_per_second: f64,
    kafka_consume_per_second: f64,
    kinesis_produce_per_second: f64,
    kinesis_consume_per_second: f64,
}

pub(super) async fn bench(target: &Target, args: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    let count = args.count.unwrap_or(20_000);
    let broker = target.kafka().await?;
    let bootstrap = broker.bootstrap.clone();
    let (topic, stream) = (target.name(CLICKS), target.name(BENCH_STREAM));
    let kinesis_client = &target.clients.kinesis;
    kinesis::list_shards(kinesis_client, &stream).await?;
    target.confirm(&format!("Produce {count} benchmark records into {topic} and into {stream}?"))?;
    // A seed from the bench's range that no earlier bench used, so verify passes over these.
    let seed = BENCH_SEEDS + time::OffsetDateTime::now_utc().unix_timestamp().unsigned_abs();
    let events = clickstream::generate(&ClickstreamSpec { seed, count, ..Default::default() });
    let bar = output::spinner("bench: Kafka produce and consume, then Kinesis");

    let partitions = kafka::partitions(&kafka::admin(&bootstrap)?, &topic).await?.unwrap_or(0);
    let mut start = BTreeMap::new();
    for partition in 0..partitions {
        start.insert(partition, kafka::watermarks(&bootstrap, &topic, partition).await?.1);
    }
    let (_, produced) = kafka::produce(&broker, &topic, events.iter().map(|e| encode(seed, e))).await?;
    let kafka_produce = produced.records_per_second();
    let started = Instant::now();
    let mut read = 0;
    for (partition, from) in &start {
        read += kafka::read_partition(&bootstrap, &topic, *partition, *from).await?.len();
    }
    let kafka_consume = read as f64 / started.elapsed().as_secs_f64();

    let before = DateTime::from_millis(time::OffsetDateTime::now_utc().unix_timestamp() * 1000 - 1000);
    let stats = kinesis::produce(
        kinesis_client,
        &stream,
        events.iter().map(encode_for_kinesis),
        None,
        &indicatif::ProgressBar::hidden(),
    )
    .await?;
    let kinesis_produce = stats.records_per_second();
    let started = Instant::now();
    let records = kinesis::read_stream(kinesis_client, &stream, &Position::AtTimestamp(before)).await?;
    let kinesis_consume = records.len() as f64 / started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    out.table(
        &format!("{count} clickstream records, keyed by user, through Kafka ({topic}) and Kinesis ({stream})"),
        &["step", "Kafka records/s", "Kinesis records/s"],
        [
            vec![
                "produce (Kafka acks=all; Kinesis PutRecords, a sender per shard)".to_owned(),
                format!("{kafka_produce:.0}"),
                format!("{kinesis_produce:.0}"),
            ],
            vec![
                "consume every partition / shard from the run's start".to_owned(),
                format!("{kafka_consume:.0}"),
                format!("{kinesis_consume:.0}"),
            ],
        ],
    );
    out.say(format!(
        "Kafka: {}; Kinesis: {}. Both on this machine, in this run.",
        target.kafka_description(),
        target.kind.describe()
    ));
    out.json(&BenchReport {
        records: count,
        kafka_produce_per_second: kafka_produce,
        kafka_consume_per_second: kafka_consume,
        kinesis_produce_per_second: kinesis_produce,
        kinesis_consume_per_second: kinesis_consume,
    })?;
    Ok(vec![
        Figure::new("kafka-1", "Kafka produce, keyed, acks=all", kafka_produce, "records/s")
            .anchored("Kinesis PutRecords, same records", kinesis_produce),
        Figure::new("kafka-1", "Kafka consume (Fetch), every partition", kafka_consume, "records/s")
            .anchored("Kinesis GetRecords, same records", kinesis_consume),
    ])
}
