//! Reading what the function answered (Lambda `Invoke`'s payload), spec R1–R5.

use serde::Deserialize;
use serde_json::Value;

use crate::outcome::{ItemFailures, ItemIdentifier};
use crate::window::WindowState;

/// Reads `batchItemFailures` from a function's response payload.
///
/// Success (nothing failed): an empty payload, `null`, `{}`, `[]`, `{"batchItemFailures": []}` or
/// `null`, and any object without the key (spec R4; the last is the documented "probably"). A
/// payload that is not JSON, or a `batchItemFailures` that is not a list, fails the whole batch:
/// the function meant to report something and it cannot be read.
pub fn item_failures(payload: &[u8]) -> ItemFailures {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return ItemFailures::default();
    }
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return ItemFailures::unreadable();
    };
    let failures = match value.get("batchItemFailures") {
        None | Some(Value::Null) => return ItemFailures::default(),
        Some(Value::Array(items)) => items,
        Some(_) => return ItemFailures::unreadable(),
    };
    ItemFailures(failures.iter().map(item_identifier).collect())
}

/// The `state` of a tumbling-window response (spec W4): `None` when the payload is not a JSON
/// object with a `state` object (missing, `null` or another type), which fails the invocation.
/// `batchItemFailures` beside it is read by [`item_failures`] as usual (the response type of
/// `aws_lambda_events` 1.2.1 lacks it, so the raw JSON is read).
pub fn window_state(payload: &[u8]) -> Option<WindowState> {
    match serde_json::from_slice::<Value>(payload).ok()?.get_mut("state")?.take() {
        Value::Object(state) => Some(state),
        _ => None,
    }
}

fn item_identifier(item: &Value) -> ItemIdentifier {
    match item.get("itemIdentifier") {
        Some(Value::String(id)) if !id.is_empty() => ItemIdentifier::SequenceNumber(id.clone()),
        _ => ItemIdentifier::Malformed,
    }
}

/// A function error payload as Lambda returns it with the `X-Amz-Function-Error` header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionErrorPayload {
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
}

impl FunctionErrorPayload {
    /// Reads the payload; anything unreadable becomes an empty description rather than an error,
    /// since the header alone already says the function failed.
    pub fn parse(payload: &[u8]) -> Self {
        serde_json::from_slice(payload).unwrap_or_default()
    }

    /// Whether Lambda stopped the function at its timeout.
    pub fn is_timeout(&self) -> bool {
        self.error_type.as_deref().is_some_and(|t| t.contains("Timedout") || t.contains("Timeout"))
            || self.error_message.as_deref().is_some_and(|m| m.contains("Task timed out"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> ItemFailures {
        item_failures(json.as_bytes())
    }

    #[test]
    fn r4_shapes_mean_complete_success() {
        for success in
            ["", "null", "{}", "[]", r#"{"batchItemFailures":[]}"#, r#"{"batchItemFailures":null}"#, r#"{"foo":1}"#]
        {
            assert!(read(success).is_empty(), "{success}");
        }
    }

    #[test]
    fn r5_shapes_are_malformed_identifiers() {
        for failure in [
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"foo":123}]}"#,
            r#"{"batchItemFailures":[{"foo":null}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":123}]}"#,
            r#"{"batchItemFailures":"all"}"#,
            "not json",
        ] {
            assert_eq!(read(failure), ItemFailures(vec![ItemIdentifier::Malformed]), "{failure}");
        }
    }

    #[test]
    fn reads_sequence_numbers() {
        let json = r#"{"batchItemFailures":[{"itemIdentifier":"49"},{"itemIdentifier":"7"}]}"#;
        assert_eq!(read(json), ItemFailures::of(["49", "7"]));
    }

    #[test]
    fn a_window_response_needs_a_state_object() {
        let state = window_state(br#"{"state":{"count":"2"},"batchItemFailures":[]}"#).unwrap();
        assert_eq!(state.get("count"), Some(&Value::String("2".to_owned())));
        assert_eq!(window_state(br#"{"state":{}}"#), Some(WindowState::new()));
        for failure in ["", "null", "{}", r#"{"state":null}"#, r#"{"state":"x"}"#, r#"{"batchItemFailures":[]}"#, "x"] {
            assert_eq!(window_state(failure.as_bytes()), None, "{failure}");
        }
    }

    #[test]
    fn recognises_a_timeout() {
        let timeout = FunctionErrorPayload::parse(
            br#"{"errorType":"Sandbox.Timedout","errorMessage":"Task timed out after 3.00 seconds"}"#,
        );
        assert!(timeout.is_timeout());
        let returned = FunctionErrorPayload::parse(
            br#"{"errorType":"&alloc::boxed::Box<dyn core::error::Error>","errorMessage":"bad price"}"#,
        );
        assert!(!returned.is_timeout());
        assert_eq!(FunctionErrorPayload::parse(b"garbage"), FunctionErrorPayload::default());
    }
}
