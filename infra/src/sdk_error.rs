//! SDK errors: sorted into the few classes the resource kinds act on, and turned into one line.

use std::fmt::Display;

use anyhow::Result;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

/// What a failed call means to a resource kind, whatever the service spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// The resource does not exist (or no longer does).
    NotFound,
    /// The resource is busy: being created, updated or deleted (Kinesis and DynamoDB also say
    /// this when creating a name that exists).
    InUse,
    /// Something already exists under that name.
    AlreadyExists,
    /// The service asks us to slow down.
    Throttled,
    Other,
}

/// The class of a service error code. Codes differ per service (and per protocol: SQS answers
/// JSON clients with its query-era codes too), so the known spellings are listed together here.
pub(crate) fn class_of_code(code: Option<&str>) -> ErrorClass {
    let Some(code) = code else {
        return ErrorClass::Other;
    };
    // JSON protocols may qualify the code with its namespace ("com.amazonaws.sqs#QueueDoesNotExist").
    let code = code.rsplit('#').next().unwrap_or(code);
    match code {
        "ResourceNotFoundException"
        | "ResourceNotFound"
        | "NotFound"
        | "NotFoundException"
        | "NoSuchEntity"
        | "NoSuchEntityException"
        | "QueueDoesNotExist"
        | "AWS.SimpleQueueService.NonExistentQueue"
        | "TableNotFoundException" => ErrorClass::NotFound,
        "ResourceInUseException" => ErrorClass::InUse,
        "EntityAlreadyExists"
        | "EntityAlreadyExistsException"
        | "ResourceConflictException"
        | "ResourceAlreadyExistsException"
        | "QueueNameExists"
        | "QueueAlreadyExists"
        | "AWS.SimpleQueueService.QueueNameExists"
        | "TableAlreadyExistsException" => ErrorClass::AlreadyExists,
        "Throttling"
        | "ThrottlingException"
        | "ThrottledException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "SlowDown" => ErrorClass::Throttled,
        _ => ErrorClass::Other,
    }
}

/// The class of any SDK error; failures before an answer (connection, timeout) are `Other`.
pub(crate) fn classify<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> ErrorClass {
    match err.as_service_error() {
        Some(service) => class_of_code(service.code()),
        None => ErrorClass::Other,
    }
}

/// The outcomes of an SDK call that resource kinds expect, with every other error turned into
/// one line saying what we were doing.
pub(crate) trait SdkOutcome<T> {
    /// The answer, or `None` when the service says the resource does not exist.
    fn or_absent(self, what: impl Display) -> Result<Option<T>>;

    /// The answer, or the class of an error among `expected`.
    fn tolerating(self, expected: &[ErrorClass], what: impl Display) -> Result<Result<T, ErrorClass>>;
}

impl<T, E, R> SdkOutcome<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    fn or_absent(self, what: impl Display) -> Result<Option<T>> {
        Ok(self.tolerating(&[ErrorClass::NotFound], what)?.ok())
    }

    fn tolerating(self, expected: &[ErrorClass], what: impl Display) -> Result<Result<T, ErrorClass>> {
        match self {
            Ok(value) => Ok(Ok(value)),
            Err(err) => {
                let class = classify(&err);
                if expected.contains(&class) { Ok(Err(class)) } else { Err(err).doing(what) }
            }
        }
    }
}

/// Turns an SDK error into one line: what we were doing, then the service's error code and
/// message, or for a failure before any answer (connection, timeout) its innermost cause. The
/// SDK's own `Display` says only "service error".
pub trait SdkContext<T> {
    fn doing(self, what: impl Display) -> Result<T>;
}

impl<T, E, R> SdkContext<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    fn doing(self, what: impl Display) -> Result<T> {
        self.map_err(|err| {
            let detail = match err.as_service_error() {
                Some(service) => format!(
                    "{}: {}",
                    service.code().unwrap_or("service error"),
                    service.message().unwrap_or("no message")
                ),
                None => innermost_cause(&err),
            };
            anyhow::anyhow!("{what}: {detail}")
        })
    }
}

/// The same for waiters, whose errors wrap the SDK's.
pub trait WaitContext<T> {
    fn waiting(self, what: impl Display) -> Result<T>;
}

impl<T, E: std::error::Error + 'static> WaitContext<T> for Result<T, E> {
    fn waiting(self, what: impl Display) -> Result<T> {
        self.map_err(|err| anyhow::anyhow!("{what}: {}", innermost_cause(&err)))
    }
}

/// The last error in a chain of causes: the one that says what actually went wrong.
pub fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::config::http::HttpResponse;
    use aws_sdk_sqs::error::ErrorMetadata;
    use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
    use aws_smithy_types::body::SdkBody;

    #[test]
    fn codes_of_every_service_sort_into_classes() {
        for code in ["ResourceNotFoundException", "NotFound", "NoSuchEntity", "AWS.SimpleQueueService.NonExistentQueue"]
        {
            assert_eq!(class_of_code(Some(code)), ErrorClass::NotFound, "{code}");
        }
        assert_eq!(class_of_code(Some("com.amazonaws.sqs#QueueDoesNotExist")), ErrorClass::NotFound);
        assert_eq!(class_of_code(Some("ResourceInUseException")), ErrorClass::InUse);
        for code in ["EntityAlreadyExists", "ResourceConflictException", "QueueNameExists"] {
            assert_eq!(class_of_code(Some(code)), ErrorClass::AlreadyExists, "{code}");
        }
        for code in ["ThrottlingException", "Throttling", "TooManyRequestsException", "LimitExceededException"] {
            assert_eq!(class_of_code(Some(code)), ErrorClass::Throttled, "{code}");
        }
        assert_eq!(class_of_code(Some("AccessDeniedException")), ErrorClass::Other);
        assert_eq!(class_of_code(None), ErrorClass::Other);
    }

    /// A failed call whose service answered `code`.
    fn failed(code: &str) -> Result<(), Box<SdkError<GetQueueUrlError, HttpResponse>>> {
        let metadata = ErrorMetadata::builder().code(code).message("said the service").build();
        let raw = HttpResponse::new(400.try_into().unwrap(), SdkBody::empty());
        Err(Box::new(SdkError::service_error(GetQueueUrlError::generic(metadata), raw)))
    }

    #[test]
    fn expected_classes_pass_and_the_rest_become_one_line() {
        assert_eq!(failed("QueueDoesNotExist").map_err(|e| *e).or_absent("looking up q").unwrap(), None);
        assert_eq!(
            failed("ResourceInUseException").map_err(|e| *e).tolerating(&[ErrorClass::InUse], "x").unwrap(),
            Err(ErrorClass::InUse)
        );
        let err = failed("AccessDenied").map_err(|e| *e).or_absent("looking up SQS queue q").unwrap_err();
        assert_eq!(err.to_string(), "looking up SQS queue q: AccessDenied: said the service");
    }
}
