//! Clickstream events as Kinesis records: the producer (`labs produce`, example 1) and the
//! readers agree on one encoding, keyed by user so one user's events stay in order on one shard.

use labs_core::clickstream::ClickEvent;

use crate::driver::kinesis::{Incoming, Outgoing};

pub fn encode(event: &ClickEvent) -> Outgoing {
    Outgoing { partition_key: event.user_id.clone(), data: serde_json::to_vec(event).expect("events serialize") }
}

pub fn decode(record: &Incoming) -> Option<ClickEvent> {
    serde_json::from_slice(&record.data).ok()
}
