//! Pure stream logic shared by the `labs` CLI and the Lambda functions.
//!
//! Nothing here talks to AWS or does I/O: event schemas, deterministic generators, and the checks
//! that `labs verify` runs on data it has already read. That keeps every rule unit-testable and
//! lets producer and consumer agree on one definition of each event.
//!
//! The generators and the partition-key hash need the `generators` feature (rand, ChaCha, MD5):
//! the CLI turns it on, the Lambda functions' builds leave it off.

pub mod change_topic;
pub mod clickstream;
pub mod compaction;
pub mod join;
pub mod ledger;
pub mod lineage;
pub mod log_check;
pub mod order_messages;
pub mod orders;
pub mod partition;
pub mod purchases;
pub mod search_index;
pub mod sequence;
pub mod time;
