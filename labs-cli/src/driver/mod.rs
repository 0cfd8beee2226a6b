//! The driver toolkit every example shares: producing to and reading from Kinesis, and the small
//! waits and pacing that go with them. Examples compose these; they never call PutRecords or
//! GetRecords themselves.

pub mod dynamodb;
pub mod kinesis;
pub mod messaging;
