//! How an invocation ended, as the runner reports it to the state machine. The three families
//! are treated differently by AWS (spec E2): a function error consumes retries and may bisect; a
//! failure before the function ran consumes nothing and is retried until the records expire.

/// The result of one `Invoke` of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function ran and returned normally. `reported` is what its response says failed
    /// (read only when `ReportBatchItemFailures` is on; see [`crate::response`]).
    Returned { reported: ItemFailures },
    /// The function ran and failed: Lambda answered with a `FunctionError`.
    FunctionError(FunctionErrorKind),
    /// The batch never reached the function.
    NotInvoked(InvokeFailure),
}

impl Outcome {
    /// A normal return with nothing reported failed.
    pub fn success() -> Self {
        Self::Returned { reported: ItemFailures::default() }
    }
}

/// Ways a function fails while running. The decisions treat them alike; they differ in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionErrorKind {
    /// The handler returned an error (`FunctionError: Unhandled`).
    Returned,
    /// The function ran past its timeout.
    Timeout,
    /// The runtime crashed or exited.
    Crash,
}

/// Ways an invoke fails before the function runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeFailure {
    /// `TooManyRequestsException` (HTTP 429): throttled, reserved concurrency exhausted.
    Throttled,
    /// Any other 5xx from the Invoke API, or the endpoint unreachable.
    ServiceError,
}

/// The `batchItemFailures` a function reported, still unchecked against the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFailures(pub Vec<ItemIdentifier>);

impl ItemFailures {
    /// Failures named by sequence number, all well formed.
    pub fn of<'a>(sequence_numbers: impl IntoIterator<Item = &'a str>) -> Self {
        Self(sequence_numbers.into_iter().map(|s| ItemIdentifier::SequenceNumber(s.to_owned())).collect())
    }

    /// A response whose failure list cannot be read as a list: the whole batch failed (R5).
    pub fn unreadable() -> Self {
        Self(vec![ItemIdentifier::Malformed])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `batchItemFailures` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemIdentifier {
    /// A non-empty string `itemIdentifier`; it may still name no record of the batch.
    SequenceNumber(String),
    /// Null, empty, not a string, or no `itemIdentifier` key: fails the whole batch (R5).
    Malformed,
}
