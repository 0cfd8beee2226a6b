//! The driver toolkit every example shares: producing to and reading from Kinesis, DynamoDB
//! scans and waits, SNS and SQS messaging. Examples compose these; they never call PutRecords or
//! GetRecords themselves.

pub mod clickstream;
pub mod dynamodb;
pub mod fan_out;
pub mod kinesis;
pub mod messaging;
pub mod refusals;
pub mod seeds;
pub mod table_stream;
