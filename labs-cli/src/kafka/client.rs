//! The settings every Kafka client of labs starts from, so the producer, consumers and admin
//! client of one command agree on the broker and on how long to wait.

use std::time::Duration;

use rdkafka::ClientConfig;

/// A Kafka broker (or cluster) the labs talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `host:port[,host:port]`.
    pub bootstrap: String,
    /// The embedded tansu, whose fetches start at the first *batch* at or after the requested
    /// offset (0.6.0): a consumer resuming in the middle of a batch would skip the batch's rest.
    /// Producers send one record per batch to it, so every offset starts a batch.
    pub one_record_per_batch: bool,
}

/// How long one admin or metadata request may take before labs reports the broker unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the broker at `bootstrap` (`host:port[,host:port]`).
pub fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "labs")
        // librdkafka logs to stderr by itself; errors reach labs as results instead.
        .set("log_level", "3")
        .set("socket.timeout.ms", "10000");
    config
}
