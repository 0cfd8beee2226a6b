//! One Lambda `Invoke` (`RequestResponse`), mapped to the [`Outcome`] the decisions take.

use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

use crate::outcome::{FunctionErrorKind, InvokeFailure, Outcome};
use crate::response::{self, FunctionErrorPayload};
use crate::runner::checkpoints::error_text;
use crate::window::WindowState;

/// The outcome, the version that ran (for failure records' `executedVersion`) and the `state`
/// the response carried (read by tumbling windows only).
pub async fn invoke(
    client: &aws_sdk_lambda::Client,
    function: &str,
    event: Vec<u8>,
) -> (Outcome, Option<String>, Option<WindowState>) {
    let result = client
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(event))
        .send()
        .await;
    match result {
        Ok(output) => {
            let payload = output.payload().map(|blob| blob.as_ref()).unwrap_or_default();
            let version = output.executed_version().map(str::to_owned);
            if output.function_error().is_some() {
                let error = FunctionErrorPayload::parse(payload);
                tracing::warn!(function, error_type = ?error.error_type, message = ?error.error_message, "function error");
                let kind = if error.is_timeout() { FunctionErrorKind::Timeout } else { FunctionErrorKind::Returned };
                (Outcome::FunctionError(kind), version, None)
            } else {
                let state = response::window_state(payload);
                (Outcome::Returned { reported: response::item_failures(payload) }, version, state)
            }
        }
        Err(error) => {
            let status = error.raw_response().map(|response| response.status().as_u16());
            let throttled = matches!(error.as_service_error(), Some(InvokeError::TooManyRequestsException(_)))
                || status == Some(429);
            tracing::warn!(function, ?status, "invoke failed before the function ran: {}", error_text(&error));
            let failure = if throttled { InvokeFailure::Throttled } else { InvokeFailure::ServiceError };
            (Outcome::NotInvoked(failure), None, None)
        }
    }
}
