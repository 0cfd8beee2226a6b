//! A faithful local stand-in for Lambda's stream event source mappings (Kinesis and DynamoDB
//! Streams), for targets whose own mappings lack AWS's error semantics.
//!
//! The specification is `aws-stream-trigger-semantics.md` (the project's shared notes); rule
//! names below (E1, R3, ...) are its. This crate holds the decisions as pure code, with no I/O
//! and no clock of its own, and the JSON AWS exchanges with the function:
//!
//! - [`ShardMachine`] (`shard.rs`, with `lane.rs` and `ledger.rs`): per shard, what to invoke
//!   next, what to checkpoint, when to retry, bisect or give up, what to discard.
//! - [`MappingSettings`] (`settings.rs`): the mapping's settings, validated as AWS validates them
//!   (`TumblingWindowInSeconds`, `FilterCriteria` and `AT_TIMESTAMP` included;
//!   [`MappingSettings::check_source`] refuses `AT_TIMESTAMP` on a table stream).
//! - [`FilterCriteria`] (`filter.rs`): the filter patterns, matched against
//!   [`Record::filter_view`]; tumbling windows (`window.rs`): [`WindowInvocation`],
//!   [`OpenWindowStatus`].
//! - [`Outcome`] (`outcome.rs`): how an invocation ended; [`response`] reads the function's answer.
//! - [`FailureRecord`] (`failure.rs`): the on-failure destination message, in AWS's shape.
//! - [`event`]: the invocation event JSON; [`iterator_start`]: where a shard starts.
//! - [`runner`]: the I/O loop for Kinesis streams and DynamoDB table streams
//!   ([`runner::Runner`]; what differs per source is in `runner/source.rs`), checkpoints and
//!   shard status in a DynamoDB table ([`runner::CheckpointTable`]), failure records to SQS or
//!   SNS.
//!
//! # How a runner drives it
//!
//! The I/O loop ([`runner`], `runner/shard_loop.rs`) owns the SDK clients and, per shard:
//!
//! 1. reads the shard's checkpoint from the checkpoint table and asks [`iterator_start`] for the
//!    `GetShardIterator` request; shards are started parents first
//!    (`labs_core::lineage::parents_first`), a child only once its parents are drained;
//! 2. builds a [`ShardMachine`] with the checkpoint, and feeds it every `GetRecords` page with
//!    [`ShardMachine::offer`], pausing reads while [`ShardMachine::pending_records`] is above a
//!    bound (a few batches per lane); at the shard's end it calls
//!    [`ShardMachine::end_of_shard`], and once [`ShardMachine::is_drained`] it records the shard
//!    as finished;
//! 3. calls [`ShardMachine::poll`] with the current time until it answers `WaitUntil` or `Idle`,
//!    doing each step in order:
//!    - `Invoke`: build the event ([`event::kinesis_event`] / [`event::dynamodb_event`], plus
//!      [`event::window_event`] when the invocation has a window), call Lambda `Invoke`
//!      (`RequestResponse`) in a task, and when it returns map it to an [`Outcome`] (a
//!      `FunctionError` header: [`Outcome::FunctionError`]; a 429 or 5xx:
//!      [`Outcome::NotInvoked`]; otherwise [`Outcome::Returned`] with
//!      [`response::item_failures`] of the payload) and call
//!      [`ShardMachine::complete_with_state`] with [`response::window_state`] of the payload;
//!    - `Discard`: send the [`FailureRecord`] as JSON to the SQS queue or SNS topic if a
//!      destination is given (a failed send is logged and does not stall the shard);
//!    - `Checkpoint`: write it to the checkpoint table (after the `Discard` that precedes it);
//! 4. waits for the first of: an invocation completing, the `WaitUntil` instant, the next poll of
//!    the stream (every 200 ms once caught up: faster than Lambda's 1/s for Kinesis, since
//!    emulators have no per-shard read limit; see `runner::shard_loop`), or cancellation; and every 2 s at most writes the
//!    shard's [`runner::ShardReport`] and open tumbling window ([`runner::WindowReport`], read
//!    back with [`runner::CheckpointTable::load_window`]) beside its checkpoint for
//!    `labs status`. Reading pauses while [`ShardMachine::buffered_records`] (records not yet
//!    delivered) is above the bound.
//!
//! Settings changed at run time (`labs triggers set`) rebuild the machine from the stored
//! checkpoint: in-flight work is redelivered, never skipped.
//!
//! # Choices where AWS's behaviour is not documented
//!
//! Each is marked "could not confirm" in the spec; the runner does this:
//!
//! - **Bisect** (E6, section 9 item 2): on a function error with bisect on and more than one
//!   record, the batch splits at `len / 2`; the left half runs (recursively) to the end before
//!   the right half. Splitting consumes no retry, and each half starts with a fresh retry count,
//!   so `MaximumRetryAttempts` applies to the single record (or the half) that keeps failing.
//!   A response that fails the batch (malformed identifiers) is not a function error and does
//!   not bisect; a valid partial response cuts the batch at the lowest failure (R7 = R3).
//! - **Retry count after a partial response** (R6): a partial response that moves past at least
//!   one record starts the remainder as a new batch with a fresh retry count; one that names the
//!   first record counts as a retry of the same batch. This reproduces the observed counts.
//! - **Retry spacing** (section 9 item 3): [`Pacing`], 1 s doubling up to 15 s by default.
//!   Bisected halves and the remainder after a partial response are invoked at once.
//! - **Record age** (E4, section 9 item 8): measured from `approximateArrivalTimestamp` (Kinesis)
//!   or `ApproximateCreationDateTime` (DynamoDB), checked before every invocation, retries
//!   included. The expired prefix of the batch is discarded as `RecordAgeExceeded` (no
//!   `responseContext`, `approximateInvokeCount` = invocations so far, at least 1); the rest of
//!   the batch continues as a new batch.
//! - **Invoke failures before the function ran** (E2): retried with the same pacing, without
//!   counting as retries or invocations; with no age limit they retry until the stream trims.
//! - **`ParallelizationFactor`** (P7, section 9 item 4): records go to one of N lanes by the MD5
//!   of their partition key (DynamoDB: the item key); each lane follows the serial rules above.
//!   The shard checkpoint is the last record of the longest fully finished prefix, so a restart
//!   redelivers what other lanes finished beyond it and skips nothing.
//! - **Parent shards before children** (section 9 item 10): yes, as the Kinesis Client Library
//!   does; a child that opened after the mapping started is read from its start even under
//!   `LATEST`.
//! - **`LATEST` across restarts**: the instant of the first read is stored; a restart before the
//!   first checkpoint reads `AT_TIMESTAMP` from it, so records written while the runner was
//!   down are not skipped. Table streams have no `AT_TIMESTAMP`: there a restart before the
//!   first checkpoint reads `LATEST` again (a known gap).
//! - **Response shapes** (section 9 item 12): an object without `batchItemFailures` is success;
//!   a `batchItemFailures` that is not a list, or a payload that is not JSON, fails the batch.
//! - **A string identifier naming no record of the batch** (R5): fails the whole batch.
//! - **6 MB payload** (section 9 item 1): estimated as base64 data plus 600 bytes per record; a
//!   record too large on its own is sent alone, and Lambda's answer decides.
//! - **Failure record `requestId`**: UUID-shaped, derived from shard, sequence range and time, so
//!   the decisions stay repeatable.
//!
//! - **Filters** (F2, F4): applied in [`ShardMachine::offer`]. A record no filter matches is
//!   finished at once (the checkpoint moves past it, even when a whole batch's worth is
//!   filtered and nothing is invoked) and never enters a lane, so `BatchSize` counts matching
//!   records. Kinesis filters see `data` decoded as JSON beside the record's metadata
//!   (`partitionKey`, `sequenceNumber`, `approximateArrivalTimestamp`, ...); data that is not
//!   JSON has no `data` key, so only metadata patterns can match it. DynamoDB filters see the
//!   record as sent (typed JSON images, `eventName`).
//! - **Tumbling windows** (W1-W7, section 9 item 7; details in `window.rs`): windows by
//!   `approximateArrivalTimestamp` (DynamoDB: `ApproximateCreationDateTime`), aligned to the
//!   epoch, per shard; a batch never spans two windows; a shard with windows runs one batch at a
//!   time whatever the `ParallelizationFactor` (the state is carried serially). A window is over
//!   when a record of a later window is read, when the shard ends, or [`WINDOW_QUIET_MILLIS`]
//!   (3 s; AWS waits up to about 2 minutes) after its end with nothing new. Its final invocation
//!   is separate, with `"Records": []`, and is retried until it succeeds, blocking the shard.
//!   A response without a `state` object fails the invocation (as a response, `functionError`
//!   null); a partial response's state is taken with the records before its lowest failure; a
//!   failed batch keeps the state it was given. A returned state over 1 MB ends the window early
//!   (an invocation with no records and `isWindowTerminatedEarly`), then the window continues
//!   with `{}`. A window's records are checkpointed when its final invocation succeeds, so a
//!   restart redelivers an open window whole, with fresh state.
//! - **`AT_TIMESTAMP`**: `GetShardIterator` `AT_TIMESTAMP` for every shard without a checkpoint,
//!   children included; a checkpoint still wins.

pub mod event;
mod failure;
mod filter;
mod lane;
mod ledger;
mod outcome;
mod position;
mod record;
pub mod response;
pub mod runner;
mod settings;
mod shard;
mod timefmt;
mod window;

pub use failure::{BatchInfo, BatchRange, Condition, FailureRecord, RequestContext, ResponseContext};
pub use filter::{FilterCriteria, FilterError, MAX_FILTERS};
pub use outcome::{FunctionErrorKind, InvokeFailure, ItemFailures, ItemIdentifier, Outcome};
pub use position::{IteratorStart, ShardHistory, iterator_start};
pub use record::{Millis, Record, RecordMeta, ShardContext, SourceKind};
pub use settings::{MappingSettings, Pacing, RecordAgeLimit, RetryLimit, SettingsError, StartingPosition};
pub use shard::{CompletionError, Discard, Invocation, InvocationId, ShardMachine, ShardStatus, Step};
pub use timefmt::iso_millis;
pub use window::{
    MAX_WINDOW_STATE_BYTES, OpenWindowStatus, WINDOW_QUIET_MILLIS, WindowInvocation, WindowState, state_bytes,
};
