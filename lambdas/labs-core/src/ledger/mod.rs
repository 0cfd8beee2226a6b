//! Example 5's event-sourced bank ledger, as pure code.
//!
//! - [`command`]: what clients ask (`open`, `deposit`, `withdraw`, `transfer`, `close`) and why
//!   it may be refused.
//! - [`event`]: what happened, in two wire shapes (v1, v2) and the upcaster that reads both.
//! - [`account`]: `decide` (state + command → events or rejection), `evolve` (state + event →
//!   state) and `fold`.
//! - [`projection`]: read models folded from the log (balances; largest withdrawal per month).
//! - [`snapshot`]: load = snapshot + tail; compaction to the latest state per account.
//! - [`check`]: what `labs verify example-5` checks on what it read.
//! - [`workload`]: seeded command workloads with invalid commands and racing pairs.

pub mod account;
pub mod check;
pub mod command;
pub mod event;
pub mod projection;
pub mod snapshot;
#[cfg(feature = "generators")]
pub mod workload;

pub use account::{Account, FoldError, Status, decide, evolve, fold, fold_from};
pub use command::{Action, Command, RejectReason, Rejection};
pub use event::{DecodeError, Event, EventKind, Schema, StoredEvent, decode_event, encode_event};
