//! The event-time function's own handler, in-process, over a part: records split over two
//! shards as Kinesis splits them, delivered in batches that alternate between the shards, into
//! the function's in-memory store. `labs bench` times it; the verifier's tests check it passes
//! and that tampering with its output fails.

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use event_time_windows::{KinesisEvent, MemoryStore, Settings, process_batch};
use labs_core::partition;
use labs_core::time::Millis;
use labs_core::time::readings::StreamRecord;

use super::lab::Tables;
use super::part::Part;
use crate::driver::kinesis::Incoming;

/// What the simulated stream and tables hold afterwards.
pub(super) struct Simulated {
    pub records: Vec<Incoming>,
    pub tables: Tables,
    pub readings: usize,
}

fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

/// The batch as Lambda hands it to the function (the fields the handler reads).
fn event(records: &[Incoming]) -> anyhow::Result<KinesisEvent> {
    let mut event = KinesisEvent::default();
    for r in records {
        let arrival = chrono::DateTime::from_timestamp_millis(r.arrival_millis)
            .ok_or_else(|| anyhow::anyhow!("arrival time {} is out of range", r.arrival_millis))?;
        let mut record = KinesisEventRecord::default();
        record.event_id = Some(format!("{}:{}", r.shard_id, r.sequence_number));
        record.kinesis.sequence_number.clone_from(&r.sequence_number);
        record.kinesis.partition_key.clone_from(&r.partition_key);
        *record.kinesis.data = r.data.clone();
        record.kinesis.approximate_arrival_timestamp.0 = arrival;
        event.records.push(record);
    }
    Ok(event)
}

fn push(per_shard: &mut [Vec<Incoming>], shard: usize, arrival: Millis, key: &str, data: Vec<u8>) {
    let records = &mut per_shard[shard];
    records.push(Incoming {
        shard_id: shard_id(shard),
        sequence_number: format!("49590338271490256608559692538361571095921575989{:09}", records.len()),
        partition_key: key.to_owned(),
        data,
        arrival_millis: arrival,
        millis_behind_latest: 0,
    });
}

/// Hands every shard's undelivered records to the handler, `batch` at a time, shards taking turns.
async fn deliver(
    store: &MemoryStore,
    settings: &Settings,
    per_shard: &[Vec<Incoming>],
    delivered: &mut [usize],
    batch: usize,
    wall_now: Millis,
) -> anyhow::Result<()> {
    while (0..per_shard.len()).any(|s| delivered[s] < per_shard[s].len()) {
        for (shard, records) in per_shard.iter().enumerate() {
            let (from, to) = (delivered[shard], (delivered[shard] + batch).min(records.len()));
            if from < to {
                process_batch(store, settings, &event(&records[from..to])?, wall_now).await?;
                delivered[shard] = to;
            }
        }
    }
    Ok(())
}

/// Plays `part` through the handler: batches of `batch` records, alternating shards.
pub(super) async fn simulate(part: &Part, settings: &Settings, batch: usize) -> anyhow::Result<Simulated> {
    let shards = settings.watermark.expected_shards;
    let ranges = partition::even_ranges(shards as u32);
    let mut per_shard: Vec<Vec<Incoming>> = vec![Vec::new(); shards];
    let generated = part.generated();
    let mut last = part.start;
    for g in &generated {
        let shard = partition::shard_for_key(&ranges, &g.reading.device_id).unwrap_or(0);
        push(&mut per_shard, shard, g.true_sent_at, &g.reading.device_id, g.reading.to_bytes());
        last = last.max(g.true_sent_at);
    }
    let end = part.end_watermark(settings);
    let store = MemoryStore::default();
    let mut delivered = vec![0; shards];
    deliver(&store, settings, &per_shard, &mut delivered, batch, last).await?;
    for shard in 0..shards {
        let data = StreamRecord::EndOfInput { watermark: end, sent_at: last }.to_bytes();
        push(&mut per_shard, shard, last + 1_000, "control", data);
    }
    deliver(&store, settings, &per_shard, &mut delivered, batch, last + 1_000).await?;
    for shard in 0..shards {
        push(&mut per_shard, shard, last + 2_000, "control", StreamRecord::Heartbeat { sent_at: last }.to_bytes());
    }
    deliver(&store, settings, &per_shard, &mut delivered, batch, last + 2_000).await?;
    let tables = Tables {
        shards: store.shards().into_values().collect(),
        windows: store.windows(),
        late: store.late(),
        ..Tables::default()
    };
    Ok(Simulated { records: per_shard.into_iter().flatten().collect(), tables, readings: generated.len() })
}
