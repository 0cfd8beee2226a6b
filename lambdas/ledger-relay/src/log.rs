//! Where the relay publishes: the trait it needs, the Kinesis implementation, and an in-memory
//! one with fault injection for tests.

use std::future::Future;
use std::sync::Mutex;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use thiserror::Error;

use crate::plan::LogRecord;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct LogError(pub String);

/// PutRecords takes at most 500 entries.
pub const MAX_PUT: usize = 500;

pub trait EventLog {
    /// Appends `records` (at most [`MAX_PUT`]), keyed by account. Returns, per record and in
    /// order, `None` if it was appended or the error code if it was not (it may be sent again).
    fn put(&self, records: &[LogRecord]) -> impl Future<Output = Result<Vec<Option<String>>, LogError>> + Send;
}

#[derive(Debug, Clone)]
pub struct KinesisLog {
    client: Client,
    stream: String,
}

impl KinesisLog {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        Self { client, stream: stream.into() }
    }
}

impl EventLog for KinesisLog {
    async fn put(&self, records: &[LogRecord]) -> Result<Vec<Option<String>>, LogError> {
        let entries = records
            .iter()
            .map(|record| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&record.account_id)
                    .data(Blob::new(record.data.as_bytes()))
                    .build()
                    .map_err(|e| LogError(format!("PutRecords entry: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| LogError(format!("PutRecords on {}: {}", self.stream, DisplayErrorContext(&e))))?;
        if output.records.len() != records.len() {
            return Err(LogError(format!(
                "PutRecords on {} answered for {} of {} records",
                self.stream,
                output.records.len(),
                records.len()
            )));
        }
        Ok(output.records.iter().map(|entry| entry.error_code.clone()).collect())
    }
}

/// An in-memory log: one sequence of records (enough to check order per account).
#[derive(Debug, Default)]
pub struct MemoryLog {
    records: Mutex<Vec<LogRecord>>,
    /// Event ids whose next put is refused (as a throttled entry would be).
    refuse_once: Mutex<Vec<String>>,
    /// Number of upcoming put calls that fail as a whole.
    failing_calls: Mutex<usize>,
    calls: Mutex<usize>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn records(&self) -> Vec<LogRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn calls(&self) -> usize {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses the entry of `event_id` the next time it is put.
    pub fn refuse_once(&self, event_id: &str) {
        self.refuse_once.lock().unwrap_or_else(|p| p.into_inner()).push(event_id.to_owned());
    }

    pub fn fail_next_calls(&self, n: usize) {
        *self.failing_calls.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }
}

impl EventLog for MemoryLog {
    async fn put(&self, records: &[LogRecord]) -> Result<Vec<Option<String>>, LogError> {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        {
            let mut failing = self.failing_calls.lock().unwrap_or_else(|p| p.into_inner());
            if *failing > 0 {
                *failing -= 1;
                return Err(LogError("injected failure of the whole call".into()));
            }
        }
        let mut refuse = self.refuse_once.lock().unwrap_or_else(|p| p.into_inner());
        let mut log = self.records.lock().unwrap_or_else(|p| p.into_inner());
        Ok(records
            .iter()
            .map(|record| match refuse.iter().position(|id| *id == record.event_id) {
                Some(at) => {
                    refuse.remove(at);
                    Some("ProvisionedThroughputExceededException".to_owned())
                }
                None => {
                    log.push(record.clone());
                    None
                }
            })
            .collect())
    }
}
