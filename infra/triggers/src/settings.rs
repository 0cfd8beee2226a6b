//! A mapping's settings, named and bounded as `CreateEventSourceMapping` names and bounds them
//! (spec section 1), plus the runner's own pacing, which AWS does not document.

use thiserror::Error;

use crate::filter::FilterCriteria;
use crate::record::{Millis, SourceKind};

/// Where a shard without a checkpoint starts reading (spec P5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest untrimmed record.
    TrimHorizon,
    /// Just after the newest record: only records written afterwards are delivered.
    Latest,
    /// `AT_TIMESTAMP` with `StartingPositionTimestamp` (here in epoch milliseconds): the first
    /// record that arrived at or after it. Kinesis only; table streams reject it.
    AtTimestamp(Millis),
}

impl StartingPosition {
    /// Parses the API's spelling. `AT_TIMESTAMP` needs its timestamp: use
    /// [`StartingPosition::parse_with_timestamp`].
    pub fn parse(value: &str) -> Result<Self, SettingsError> {
        Self::parse_with_timestamp(value, None)
    }

    /// Parses `StartingPosition` with `StartingPositionTimestamp` (Unix seconds, fractions
    /// allowed), which is valid only with `AT_TIMESTAMP`.
    pub fn parse_with_timestamp(value: &str, timestamp_seconds: Option<f64>) -> Result<Self, SettingsError> {
        match (value, timestamp_seconds) {
            ("TRIM_HORIZON", None) => Ok(Self::TrimHorizon),
            ("LATEST", None) => Ok(Self::Latest),
            ("AT_TIMESTAMP", Some(seconds)) if seconds.is_finite() && seconds >= 0.0 => {
                Ok(Self::AtTimestamp((seconds * 1000.0).round() as Millis))
            }
            ("AT_TIMESTAMP", _) | ("TRIM_HORIZON" | "LATEST", Some(_)) => {
                Err(SettingsError::StartingPositionTimestamp(format!("{timestamp_seconds:?}")))
            }
            (other, _) => Err(SettingsError::StartingPosition(other.to_owned())),
        }
    }
}

/// `MaximumRetryAttempts`: how many times a batch that failed in the function is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryLimit {
    /// -1: retry until the records expire or pass `MaximumRecordAgeInSeconds`.
    Unlimited,
    /// 0..=10000 retries after the first attempt.
    Retries(u32),
}

impl RetryLimit {
    /// Reads the API's number (-1 or 0..=10000).
    pub fn from_api(value: i64) -> Result<Self, SettingsError> {
        match value {
            -1 => Ok(Self::Unlimited),
            0..=10_000 => Ok(Self::Retries(value as u32)),
            other => Err(SettingsError::MaximumRetryAttempts(other)),
        }
    }

    /// Whether a batch that has already been retried `retries` times may be retried again.
    pub fn allows_another(self, retries: u32) -> bool {
        match self {
            Self::Unlimited => true,
            Self::Retries(limit) => retries < limit,
        }
    }
}

/// `MaximumRecordAgeInSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAgeLimit {
    /// -1: only the stream's retention bounds a record's life.
    Unlimited,
    /// 60..=604800 seconds.
    Seconds(u32),
}

impl RecordAgeLimit {
    /// Reads the API's number: -1, or 60..=604800 (0..=59 are rejected, as AWS rejects them).
    pub fn from_api(value: i64) -> Result<Self, SettingsError> {
        match value {
            -1 => Ok(Self::Unlimited),
            60..=604_800 => Ok(Self::Seconds(value as u32)),
            other => Err(SettingsError::MaximumRecordAgeInSeconds(other)),
        }
    }

    /// Whether a record that arrived at `arrival_millis` is too old at `now_millis`.
    pub fn is_expired(self, arrival_millis: i64, now_millis: i64) -> bool {
        match self {
            Self::Unlimited => false,
            Self::Seconds(limit) => now_millis.saturating_sub(arrival_millis) > i64::from(limit) * 1000,
        }
    }
}

/// The settings of one mapping that decide what is invoked and when. Build with
/// [`MappingSettings::new`] (AWS's defaults) and the `with_*` methods, which validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingSettings {
    pub batch_size: u32,
    pub batching_window_seconds: u32,
    pub starting_position: StartingPosition,
    pub parallelization_factor: u32,
    pub retry_limit: RetryLimit,
    pub record_age_limit: RecordAgeLimit,
    pub bisect_on_function_error: bool,
    pub report_batch_item_failures: bool,
    /// `DestinationConfig.OnFailure.Destination`: an SQS queue or SNS topic ARN.
    pub on_failure_destination: Option<String>,
    /// `TumblingWindowInSeconds`: 0 (no window) or 1..=900.
    pub tumbling_window_seconds: u32,
    /// `FilterCriteria`: empty lets every record through.
    pub filter_criteria: FilterCriteria,
}

impl MappingSettings {
    /// AWS's defaults (spec section 1) with the one required setting.
    pub fn new(starting_position: StartingPosition) -> Self {
        Self {
            batch_size: 100,
            batching_window_seconds: 0,
            starting_position,
            parallelization_factor: 1,
            retry_limit: RetryLimit::Unlimited,
            record_age_limit: RecordAgeLimit::Unlimited,
            bisect_on_function_error: false,
            report_batch_item_failures: false,
            on_failure_destination: None,
            tumbling_window_seconds: 0,
            filter_criteria: FilterCriteria::default(),
        }
    }

    /// `TumblingWindowInSeconds`, 0..=900 (0 turns windows off).
    pub fn with_tumbling_window(mut self, seconds: u32) -> Result<Self, SettingsError> {
        if seconds > 900 {
            return Err(SettingsError::TumblingWindow(seconds));
        }
        self.tumbling_window_seconds = seconds;
        Ok(self)
    }

    /// `FilterCriteria.Filters[].Pattern`: up to 5 patterns, OR-ed (spec F1).
    pub fn with_filter_criteria(mut self, filter_criteria: FilterCriteria) -> Self {
        self.filter_criteria = filter_criteria;
        self
    }

    /// What `CreateEventSourceMapping` checks against the source: a table stream rejects
    /// `AT_TIMESTAMP` (spec section 1: "Unsupported starting position for arn type").
    pub fn check_source(&self, kind: SourceKind, stream_arn: &str) -> Result<(), SettingsError> {
        match (kind, self.starting_position) {
            (SourceKind::DynamoDbStreams, StartingPosition::AtTimestamp(_)) => {
                Err(SettingsError::UnsupportedStartingPosition(stream_arn.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// `BatchSize`, 1..=10000.
    pub fn with_batch_size(mut self, value: u32) -> Result<Self, SettingsError> {
        if !(1..=10_000).contains(&value) {
            return Err(SettingsError::BatchSize(value));
        }
        self.batch_size = value;
        Ok(self)
    }

    /// `MaximumBatchingWindowInSeconds`, 0..=300.
    pub fn with_batching_window(mut self, seconds: u32) -> Result<Self, SettingsError> {
        if seconds > 300 {
            return Err(SettingsError::BatchingWindow(seconds));
        }
        self.batching_window_seconds = seconds;
        Ok(self)
    }

    /// `ParallelizationFactor`, 1..=10.
    pub fn with_parallelization_factor(mut self, value: u32) -> Result<Self, SettingsError> {
        if !(1..=10).contains(&value) {
            return Err(SettingsError::ParallelizationFactor(value));
        }
        self.parallelization_factor = value;
        Ok(self)
    }

    /// `MaximumRetryAttempts`, -1 or 0..=10000.
    pub fn with_maximum_retry_attempts(mut self, value: i64) -> Result<Self, SettingsError> {
        self.retry_limit = RetryLimit::from_api(value)?;
        Ok(self)
    }

    /// `MaximumRecordAgeInSeconds`, -1 or 60..=604800.
    pub fn with_maximum_record_age(mut self, value: i64) -> Result<Self, SettingsError> {
        self.record_age_limit = RecordAgeLimit::from_api(value)?;
        Ok(self)
    }

    /// `BisectBatchOnFunctionError`.
    pub fn with_bisect(mut self, on: bool) -> Self {
        self.bisect_on_function_error = on;
        self
    }

    /// `FunctionResponseTypes: ["ReportBatchItemFailures"]`.
    pub fn with_report_batch_item_failures(mut self, on: bool) -> Self {
        self.report_batch_item_failures = on;
        self
    }

    /// `DestinationConfig.OnFailure.Destination`: a standard SQS queue or SNS topic.
    pub fn with_on_failure_destination(mut self, arn: &str) -> Result<Self, SettingsError> {
        let service = arn.split(':').nth(2);
        let supported = arn.starts_with("arn:") && matches!(service, Some("sqs" | "sns"));
        if !supported || arn.ends_with(".fifo") {
            return Err(SettingsError::Destination(arn.to_owned()));
        }
        self.on_failure_destination = Some(arn.to_owned());
        Ok(self)
    }
}

/// How the runner paces retries. AWS documents no spacing (spec section 9, item 3; about 8
/// attempts in 60 s were observed): the default, 1 s doubling up to 15 s, gives 8 attempts in the
/// first 60 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub first_retry_delay_millis: i64,
    pub max_retry_delay_millis: i64,
}

impl Default for Pacing {
    fn default() -> Self {
        Self { first_retry_delay_millis: 1_000, max_retry_delay_millis: 15_000 }
    }
}

impl Pacing {
    /// Delay before the `attempt`-th retry (1-based): doubling from the first delay, capped.
    pub fn retry_delay(&self, attempt: u32) -> i64 {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first_retry_delay_millis.saturating_mul(1_i64 << doublings).min(self.max_retry_delay_millis)
    }
}

/// A setting outside the range AWS accepts. The messages name the API parameter.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("BatchSize {0} is outside 1..=10000")]
    BatchSize(u32),
    #[error("MaximumBatchingWindowInSeconds {0} is outside 0..=300")]
    BatchingWindow(u32),
    #[error("ParallelizationFactor {0} is outside 1..=10")]
    ParallelizationFactor(u32),
    #[error("MaximumRetryAttempts {0} must be -1 or within 0..=10000")]
    MaximumRetryAttempts(i64),
    #[error("MaximumRecordAgeInSeconds {0} must be -1 or within 60..=604800")]
    MaximumRecordAgeInSeconds(i64),
    #[error("StartingPosition {0:?} is not one of LATEST, AT_TIMESTAMP, TRIM_HORIZON")]
    StartingPosition(String),
    #[error(
        "StartingPositionTimestamp {0}: AT_TIMESTAMP needs a non-negative Unix time in seconds, and only AT_TIMESTAMP takes one"
    )]
    StartingPositionTimestamp(String),
    #[error("Unsupported starting position for arn type: {0}")]
    UnsupportedStartingPosition(String),
    #[error("TumblingWindowInSeconds {0} is outside 0..=900")]
    TumblingWindow(u32),
    #[error("on-failure destination {0:?} is not a standard SQS queue or SNS topic ARN")]
    Destination(String),
}
