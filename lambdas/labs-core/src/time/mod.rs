//! Example 6: reasoning about time. Event time vs processing time, windows, watermarks and
//! stragglers, as pure code the Lambdas, `labs run` and `labs verify` share.
//!
//! - [`readings`]: the seeded sensor readings (skewed clocks, out-of-order arrivals, offline
//!   devices sending a backlog), the control records, and the ground truth per window.
//! - [`windows`]: tumbling, hopping and session windows by event time.
//! - [`watermark`]: per-shard bounded out-of-orderness, the minimum across shards, idleness.
//! - [`operator`]: the event-time window operator: emit at the watermark, revise within the
//!   allowed lateness, side output beyond it, state cleared once a window is final.

pub mod operator;
pub mod readings;
pub mod watermark;
pub mod windows;

pub use operator::{LateEvent, OpenWindow, Output, WindowOperator, WindowResult};
pub use readings::{Aggregate, Reading, ReadingSpec, StreamRecord, ground_truth, ground_truth_where, parse_record};
pub use watermark::{NO_WATERMARK, ShardClock, WatermarkConfig, WatermarkReading, WatermarkTracker};
pub use windows::{Millis, Window, WindowKind};
