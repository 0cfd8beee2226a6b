//! The driver toolkit every example shares: producing to and reading from Kinesis, DynamoDB
//! scans and waits, SNS and SQS messaging, Kafka topics, producers and consumer groups. Examples
//! compose these; they never call PutRecords, GetRecords or the Kafka client themselves.

pub mod clickstream;
pub mod dynamodb;
pub mod fan_out;
pub mod kafka;
pub mod kinesis;
pub mod messaging;
pub mod refusals;
pub mod seeds;
pub mod table_stream;
