//! Example 4: a Kinesis stream processor that counts every purchase exactly once, per user,
//! through redeliveries, crashes and partial failures, and beside it a naive counter that shows
//! what at-least-once delivery does to an effect that is not idempotent.
//!
//! For each batch (one shard, in sequence order):
//!
//! 1. [`read_batch`] decodes the records; an unreadable one fails the batch before anything is
//!    written.
//! 2. The invocations table says how often each faulty record was delivered before (Kinesis
//!    events carry no attempt number, and memory does not survive a cold start), and
//!    [`decide`] turns the fault markers into what the function does.
//! 3. The invocation is recorded (`started`) before any effect.
//! 4. Naive effect: a plain ADD of `naive_total`/`naive_count` per user, on every delivery.
//! 5. Exactly-once effect: per event a conditional put of a dedup row (`event_id`) in the same
//!    TransactWriteItems as the ADD of `total`/`count`, cut to DynamoDB's limits
//!    ([`plan_transactions`]). A transaction cancelled because some events were counted already
//!    is sent again without them, so the others are not lost.
//! 6. The invocation's outcome is recorded, and the function answers: success, a batch item
//!    failure (`batchItemFailures`, read by the mapping when `ReportBatchItemFailures` is on), an
//!    error, or, for a crash marker on its first delivery, no answer at all (the process aborts).
//!
//! Environment of the deployed function: `TOTALS_TABLE`, `APPLIED_TABLE`, `INVOCATIONS_TABLE`.

pub mod batch;
pub mod dynamo;
pub mod plan;
pub mod store;

pub use aws_lambda_events::event::kinesis::KinesisEvent;
pub use aws_lambda_events::event::streams::KinesisEventResponse;
pub use batch::{Batch, BatchError, DeliveredRecord, read_batch};
pub use dynamo::{DynamoStore, Tables};
pub use plan::{AppliedEvent, Decision, TransactionPlan, UserIncrement, decide, plan_transactions};
pub use store::{
    CounterStore, Invocation, MemoryStore, Outcome, StoreError, TotalsRow, TransactionResult, sequence_key,
};

use std::collections::BTreeMap;

use lambda_runtime::{Error, LambdaEvent};

/// Environment variable naming the totals table.
pub const TOTALS_TABLE_ENV: &str = "TOTALS_TABLE";
/// Environment variable naming the dedup table.
pub const APPLIED_TABLE_ENV: &str = "APPLIED_TABLE";
/// Environment variable naming the invocations table.
pub const INVOCATIONS_TABLE_ENV: &str = "INVOCATIONS_TABLE";

/// What the handler does with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Answer Lambda with this (empty `batchItemFailures` is complete success).
    Respond(KinesisEventResponse),
    /// Kill the process without answering, as a crash would; the effects of the first
    /// `after_records` records were written.
    Abort { after_records: usize },
}

/// Why a batch fails as a whole (a returned error). One line each.
#[derive(Debug, thiserror::Error)]
pub enum BatchFailure {
    #[error(transparent)]
    Unreadable(#[from] BatchError),
    #[error("record {sequence_number} is a poison record: this function can never handle it")]
    Poison { sequence_number: String },
    #[error("record {sequence_number} failed (transient fault, delivery {delivery}); the batch will be retried")]
    Transient { sequence_number: String, delivery: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Exactly-once effects of a run of records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counted {
    applied: u32,
    already_applied: u32,
}

/// Counts `records` exactly once: transaction by transaction, each re-sent without the events
/// it found counted already.
async fn count_exactly_once<S: CounterStore>(
    store: &S,
    shard_id: &str,
    request_id: &str,
    records: &[DeliveredRecord],
) -> Result<Counted, StoreError> {
    let (plans, duplicates) = plan_transactions(shard_id, request_id, records);
    let mut counted = Counted { applied: 0, already_applied: duplicates as u32 };
    for mut plan in plans {
        while !plan.is_empty() {
            match store.apply(&plan).await? {
                TransactionResult::Committed => {
                    counted.applied += plan.events.len() as u32;
                    break;
                }
                TransactionResult::AlreadyApplied(ids) => {
                    let remaining = plan.without(&ids);
                    if ids.is_empty() || remaining.events.len() == plan.events.len() {
                        return Err(StoreError::Other(format!(
                            "a transaction was cancelled for events {ids:?} it does not hold"
                        )));
                    }
                    counted.already_applied += (plan.events.len() - remaining.events.len()) as u32;
                    plan = remaining;
                }
            }
        }
    }
    Ok(counted)
}

/// Handles one batch. `request_id` names the invocation in the tables.
pub async fn process_batch<S: CounterStore>(
    store: &S,
    event: &KinesisEvent,
    request_id: &str,
) -> Result<BatchOutcome, BatchFailure> {
    if event.records.is_empty() {
        return Ok(BatchOutcome::Respond(KinesisEventResponse::default()));
    }
    let (shard_id, sequence_numbers) = batch::batch_position(event)?;
    let (first, last) = (&sequence_numbers[0], &sequence_numbers[sequence_numbers.len() - 1]);
    let attempt = store.invocations_starting_at(&shard_id, first).await? + 1;
    let mut invocation = Invocation::new(&shard_id, request_id, first, last, sequence_numbers.len() as u32, attempt);

    let batch = match read_batch(event) {
        Ok(batch) => batch,
        Err(problem) => {
            tracing::error!(shard_id = %shard_id, attempt, "rejecting the batch: {problem}");
            invocation.outcome = Outcome::Rejected;
            invocation.detail = problem.to_string();
            store.record_invocation(&invocation).await?;
            return Err(problem.into());
        }
    };

    let mut deliveries_before = BTreeMap::new();
    for record in batch.records.iter().filter(|r| r.purchase.fault.is_some()) {
        let before = store.deliveries_of(&shard_id, &record.sequence_number).await?;
        deliveries_before.insert(record.sequence_number.clone(), before);
    }
    let decision = decide(&batch.records, &deliveries_before);
    store.record_invocation(&invocation).await?;

    let result = apply_decision(store, &batch, request_id, &decision, &deliveries_before, &mut invocation).await;
    if let Err(err) = &result {
        invocation.outcome = Outcome::Failed;
        invocation.detail = err.to_string();
    }
    // Best effort once the effects are written: failing here would only make Lambda redeliver a
    // batch that is done. A row left `started` tells the learner the outcome was not recorded.
    if let Err(err) = store.record_invocation(&invocation).await {
        tracing::error!(shard_id = %shard_id, request_id, "could not record the invocation's outcome: {err}");
    }
    tracing::info!(
        shard_id = %shard_id,
        first = %first,
        last = %last,
        attempt,
        records = batch.records.len(),
        outcome = ?invocation.outcome,
        applied = invocation.applied,
        already_applied = invocation.already_applied,
        "batch handled"
    );
    result
}

async fn apply_decision<S: CounterStore>(
    store: &S,
    batch: &Batch,
    request_id: &str,
    decision: &Decision,
    deliveries_before: &BTreeMap<String, u32>,
    invocation: &mut Invocation,
) -> Result<BatchOutcome, BatchFailure> {
    let shard_id = batch.shard_id.as_str();
    let (naive_records, counted_records) = match decision {
        Decision::Complete => (batch.records.len(), batch.records.len()),
        Decision::FailBatch { .. } => (batch.records.len(), 0),
        Decision::Abort { after_records, .. } => (*after_records, *after_records),
        Decision::ReportItemFailure { index, .. } => (batch.records.len(), *index),
    };
    store.add_naive(&plan::naive_increments(&batch.records[..naive_records])).await?;
    invocation.naive_records = naive_records as u32;
    let counted = count_exactly_once(store, shard_id, request_id, &batch.records[..counted_records]).await?;
    invocation.applied = counted.applied;
    invocation.already_applied = counted.already_applied;

    match decision {
        Decision::Complete => {
            invocation.outcome = Outcome::Succeeded;
            Ok(BatchOutcome::Respond(KinesisEventResponse::default()))
        }
        Decision::FailBatch { sequence_number, fault } => {
            invocation.fault_sequence_number = Some(sequence_number.clone());
            let failure = if *fault == labs_core::purchases::Fault::Poison {
                BatchFailure::Poison { sequence_number: sequence_number.clone() }
            } else {
                let delivery = deliveries_before.get(sequence_number).copied().unwrap_or(0) + 1;
                BatchFailure::Transient { sequence_number: sequence_number.clone(), delivery }
            };
            // The caller records the outcome as failed, with this message.
            Err(failure)
        }
        Decision::Abort { sequence_number, after_records } => {
            invocation.outcome = Outcome::Aborted;
            invocation.fault_sequence_number = Some(sequence_number.clone());
            invocation.detail = format!("crash marker on {sequence_number}: aborted after {after_records} records");
            Ok(BatchOutcome::Abort { after_records: *after_records })
        }
        Decision::ReportItemFailure { sequence_number, .. } => {
            invocation.outcome = Outcome::PartialFailure;
            invocation.fault_sequence_number = Some(sequence_number.clone());
            let mut response = KinesisEventResponse::default();
            response.add_failure(sequence_number.clone());
            Ok(BatchOutcome::Respond(response))
        }
    }
}

/// The Lambda handler. A crash marker ends the process here, on purpose, without an answer.
pub async fn handle<S: CounterStore>(
    store: &S,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, Error> {
    match process_batch(store, &event.payload, &event.context.request_id).await {
        Ok(BatchOutcome::Respond(response)) => Ok(response),
        Ok(BatchOutcome::Abort { after_records }) => {
            tracing::error!(after_records, "crash marker: aborting the process mid-batch");
            std::process::abort()
        }
        Err(failure) => {
            tracing::error!("failing the batch: {failure}");
            Err(failure.into())
        }
    }
}
