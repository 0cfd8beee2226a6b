//! A mapping's settings, named and bounded as `CreateEventSourceMapping` names and bounds them
//! (spec section 1), plus the runner's own pacing, which AWS does not document.

use thiserror::Error;

/// Where a shard without a checkpoint starts reading. `AT_TIMESTAMP` comes with issue 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest untrimmed record.
    TrimHorizon,
    /// Just after the newest record: only records written afterwards are delivered.
    Latest,
}

impl StartingPosition {
    /// Parses the API's spelling.
    pub fn parse(value: &str) -> Result<Self, SettingsError> {
        match value {
            "TRIM_HORIZON" => Ok(Self::TrimHorizon),
            "LATEST" => Ok(Self::Latest),
            other => Err(SettingsError::StartingPosition(other.to_owned())),
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
    #[error("StartingPosition {0:?} is not TRIM_HORIZON or LATEST (AT_TIMESTAMP is not supported yet)")]
    StartingPosition(String),
    #[error("on-failure destination {0:?} is not a standard SQS queue or SNS topic ARN")]
    Destination(String),
}
