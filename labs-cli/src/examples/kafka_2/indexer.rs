//! The consumer group that keeps the search index: it reads the change topic in batches, hands
//! each batch to example 3's indexer library (`cdc_indexer::process_event`, the code the
//! `cdc-indexer` Lambda runs) unchanged, and commits the group's offsets after the batch is in the
//! index. A batch read again after a crash before the commit is absorbed by the indexer's
//! per-product guard (a change whose sequence number is not newer than the product's checkpoint
//! is skipped), so the index is exact although delivery is at least once.

use anyhow::{Context, Result, anyhow, bail};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use cdc_indexer::{BatchStats, DynamoStore};
use serde::Serialize;

use super::Names;
use crate::driver::kafka::{self, Incoming};
use crate::target::Target;

/// Records per batch handed to the indexer (a Lambda mapping's `batch_size` in example 3).
const BATCH: usize = 100;

/// What the group did in one run.
#[derive(Debug, Default, Serialize)]
pub(super) struct IndexerReport {
    pub group: String,
    /// The indexer's counters over this run's batches.
    pub saw: BatchStats,
    pub index_puts: u64,
    pub index_deletes: u64,
}

/// The change topic's records as the event a Lambda would get for them.
pub(super) fn event_of(messages: &[Incoming]) -> Result<Event> {
    let mut event = Event::default();
    for message in messages {
        let Some(payload) = &message.payload else {
            bail!("record {}/{} of the change topic has no value", message.partition, message.offset);
        };
        let record: EventRecord = serde_json::from_slice(payload).with_context(|| {
            format!("record {}/{} of the change topic is not a stream record", message.partition, message.offset)
        })?;
        event.records.push(record);
    }
    Ok(event)
}

/// Reads the change topic as `group` from its committed offsets to the end, applying each batch
/// to the index and committing after it.
pub(super) async fn apply_changes(target: &Target, names: &Names, group: &str) -> Result<IndexerReport> {
    let store = DynamoStore::new(target.clients.dynamodb.clone(), &names.index, &names.checkpoints);
    let mut report = IndexerReport { group: group.to_owned(), ..IndexerReport::default() };
    kafka::drain_group(&names.broker.bootstrap, group, &names.changes, BATCH, async |messages: Vec<Incoming>| {
        let event = event_of(&messages)?;
        let batch = cdc_indexer::process_event(&store, &event).await.map_err(|e| anyhow!("indexing a batch: {e}"))?;
        report.saw.add(&batch.stats());
        report.index_puts += batch.index_puts;
        report.index_deletes += batch.index_deletes;
        Ok(())
    })
    .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_are_not_stream_records_name_their_place() {
        let record = cdc_indexer::synthetic::synthetic_batch(3, 1).records.remove(0);
        let good = Incoming {
            partition: 0,
            offset: 4,
            key: Some("p-0001".into()),
            payload: Some(serde_json::to_vec(&record).unwrap()),
            headers: Vec::new(),
            timestamp_millis: None,
        };
        assert_eq!(event_of(std::slice::from_ref(&good)).unwrap().records, vec![record]);
        let bad = Incoming { offset: 5, payload: Some(b"{".to_vec()), ..good.clone() };
        let error = event_of(&[good.clone(), bad]).unwrap_err().to_string();
        assert_eq!(error, "record 0/5 of the change topic is not a stream record");
        let tombstone = Incoming { partition: 2, offset: 7, payload: None, ..good };
        assert_eq!(event_of(&[tombstone]).unwrap_err().to_string(), "record 2/7 of the change topic has no value");
    }
}
