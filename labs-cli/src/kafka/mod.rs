//! Kafka for the Kafka track: the embedded broker (`broker`), the client settings every Kafka
//! client of labs shares (`client`), and the topics a stack declares (`topics`), applied on
//! `labs up` and removed on `labs down`. The driver toolkit (`driver::kafka`) builds on these.

pub mod broker;
pub mod client;
pub mod topics;
