//! Example 8: stream joins (DDIA 11, "Stream Joins"), as pure code the Lambdas, `labs run` and
//! `labs verify` share.
//!
//! - [`clicks`]: seeded searches and clicks by session (some clicks arrive before their search,
//!   some searches get no click) and the records of the two Kinesis streams.
//! - [`window`]: the stream-stream join: each search with the clicks of its session within a
//!   window, outer on the search side ("no click" once the watermark passes the window's end),
//!   its per-session state evicted once nothing can match it; and the batch reference join.
//! - [`profiles`]: orders and customer profile versions (an address change between an order and
//!   its join); the stream-table join as of the order's event time (versioned, `valid_from`)
//!   beside the naive lookup of the latest profile.
//! - [`timeline`]: the table-table join: posts by author and follows, maintained incrementally
//!   per author, equal to the batch join of both tables.

pub mod clicks;
pub mod profiles;
pub mod timeline;
pub mod window;

/// Mixes a name into a seed, so two generators with one seed differ.
#[cfg(feature = "generators")]
pub(crate) fn mixed_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |acc, b| (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
