//! `FilterCriteria` (spec section 7): EventBridge pattern syntax over a record's filter view
//! ([`crate::Record::filter_view`]: Kinesis `data` decoded as JSON beside the record's metadata;
//! DynamoDB the record as sent). A record matching no pattern is never delivered and is
//! checkpointed past (F2).
//!
//! Supported, as Lambda documents them: exact values (string, number, boolean, null, `""`),
//! `prefix`, `suffix`, `equals-ignore-case`, `numeric` ranges, `exists`, `anything-but` (values,
//! or a `prefix`/`suffix`), nested objects (AND over keys), a list of matchers (OR), and up to 5
//! patterns (OR). A pattern outside this is rejected as AWS rejects it.

use serde_json::{Map, Value};
use thiserror::Error;

/// Up to 5 filters per mapping (AWS's default quota, spec F1).
pub const MAX_FILTERS: usize = 5;

/// The mapping's filters, validated. Empty: every record passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterCriteria {
    patterns: Vec<Map<String, Value>>,
}

/// A pattern AWS would refuse at `CreateEventSourceMapping`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    /// AWS's own wording, with what is wrong.
    #[error("Invalid filter pattern definition. ({0})")]
    Invalid(String),
    #[error("{0} filters: at most {MAX_FILTERS} are allowed")]
    TooMany(usize),
}

impl FilterCriteria {
    /// Reads `Filters[].Pattern` strings (JSON objects).
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, FilterError> {
        let patterns = patterns
            .into_iter()
            .map(|text| match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(pattern)) => {
                    check_object(&pattern)?;
                    Ok(pattern)
                }
                Ok(_) => Err(FilterError::Invalid(format!("{text} is not a JSON object"))),
                Err(error) => Err(FilterError::Invalid(format!("{text} is not JSON: {error}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.len() > MAX_FILTERS {
            return Err(FilterError::TooMany(patterns.len()));
        }
        Ok(Self { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as JSON text, for display.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns.iter().map(|pattern| Value::Object(pattern.clone()).to_string()).collect()
    }

    /// Whether a record with this view is delivered: no filters, or at least one matches.
    pub fn matches(&self, view: &Value) -> bool {
        self.is_empty() || self.patterns.iter().any(|pattern| object_matches(pattern, Some(view)))
    }
}

fn invalid(what: impl Into<String>) -> FilterError {
    FilterError::Invalid(what.into())
}

fn check_object(pattern: &Map<String, Value>) -> Result<(), FilterError> {
    for (key, rule) in pattern {
        match rule {
            Value::Object(nested) => check_object(nested)?,
            Value::Array(matchers) if !matchers.is_empty() => matchers.iter().try_for_each(check_matcher)?,
            _ => return Err(invalid(format!("{key:?} must hold an object or a non-empty list of matchers"))),
        }
    }
    Ok(())
}

fn check_matcher(matcher: &Value) -> Result<(), FilterError> {
    let Value::Object(operator) = matcher else {
        return match matcher {
            Value::Array(_) => Err(invalid("a matcher cannot be a list")),
            _ => Ok(()),
        };
    };
    let mut entries = operator.iter();
    let (Some((name, argument)), None) = (entries.next(), entries.next()) else {
        return Err(invalid(format!("{matcher} must have exactly one operator")));
    };
    let ok = match (name.as_str(), argument) {
        ("prefix" | "suffix" | "equals-ignore-case", Value::String(_)) => true,
        ("exists", Value::Bool(_)) => true,
        ("numeric", Value::Array(terms)) => numeric_terms(terms).is_some(),
        ("anything-but", Value::Array(values)) => !values.is_empty() && values.iter().all(is_scalar),
        ("anything-but", Value::Object(inner)) => {
            inner.len() == 1
                && matches!(inner.iter().next(), Some((op, Value::String(_))) if op == "prefix" || op == "suffix")
        }
        ("anything-but", value) => is_scalar(value),
        _ => false,
    };
    if ok { Ok(()) } else { Err(invalid(format!("unsupported matcher {matcher}"))) }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null)
}

/// `[">", 0, "<=", 5]` as (operator, bound) pairs; `None` if malformed.
fn numeric_terms(terms: &[Value]) -> Option<Vec<(&str, f64)>> {
    if terms.is_empty() || !terms.len().is_multiple_of(2) || terms.len() > 4 {
        return None;
    }
    terms
        .chunks(2)
        .map(|pair| match (&pair[0], pair[1].as_f64()) {
            (Value::String(op), Some(bound)) if matches!(op.as_str(), "=" | "<" | "<=" | ">" | ">=") => {
                Some((op.as_str(), bound))
            }
            _ => None,
        })
        .collect()
}

/// Every key of the pattern matches (AND); `view` is the value at this level, if present.
fn object_matches(pattern: &Map<String, Value>, view: Option<&Value>) -> bool {
    pattern.iter().all(|(key, rule)| {
        let field = view.and_then(Value::as_object).and_then(|object| object.get(key));
        match rule {
            Value::Object(nested) => object_matches(nested, field),
            Value::Array(matchers) => matchers.iter().any(|matcher| field_matches(matcher, field)),
            _ => false,
        }
    })
}

fn field_matches(matcher: &Value, field: Option<&Value>) -> bool {
    if let Some(exists) = matcher.get("exists").and_then(Value::as_bool) {
        return field.is_some() == exists;
    }
    match field {
        None => false,
        // A list in the record matches if any element does.
        Some(Value::Array(items)) => items.iter().any(|item| value_matches(matcher, item)),
        Some(value) => value_matches(matcher, value),
    }
}

fn value_matches(matcher: &Value, value: &Value) -> bool {
    let Value::Object(operator) = matcher else { return equal(matcher, value) };
    let Some((name, argument)) = operator.iter().next() else { return false };
    let text = value.as_str();
    match (name.as_str(), argument) {
        ("prefix", Value::String(prefix)) => text.is_some_and(|t| t.starts_with(prefix.as_str())),
        ("suffix", Value::String(suffix)) => text.is_some_and(|t| t.ends_with(suffix.as_str())),
        ("equals-ignore-case", Value::String(expected)) => {
            text.is_some_and(|t| t.to_lowercase() == expected.to_lowercase())
        }
        // Numbers only: DynamoDB's `{"N": "42"}` is a string and does not match (spec F3).
        ("numeric", Value::Array(terms)) => match (value, numeric_terms(terms)) {
            (Value::Number(number), Some(terms)) => number.as_f64().is_some_and(|n| {
                terms.iter().all(|(op, bound)| match *op {
                    "=" => n == *bound,
                    "<" => n < *bound,
                    "<=" => n <= *bound,
                    ">" => n > *bound,
                    _ => n >= *bound,
                })
            }),
            _ => false,
        },
        ("anything-but", Value::Array(excluded)) => !excluded.iter().any(|e| equal(e, value)),
        ("anything-but", Value::Object(inner)) => !inner.iter().next().is_some_and(|inner| {
            value_matches(&Value::Object(Map::from_iter([(inner.0.clone(), inner.1.clone())])), value)
        }),
        ("anything-but", excluded) => !equal(excluded, value),
        _ => false,
    }
}

/// Exact match; numbers compare by value (`5` matches `5.0`).
fn equal(expected: &Value, value: &Value) -> bool {
    match (expected, value) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => expected == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(patterns: &[&str]) -> FilterCriteria {
        FilterCriteria::parse(patterns.iter().copied()).unwrap()
    }

    #[test]
    fn rejects_what_aws_rejects() {
        for bad in [
            "not json",
            "[1]",
            r#"{"data": "x"}"#,
            r#"{"data": []}"#,
            r#"{"data": {"a": [{"numeric": [">"]}]}}"#,
            r#"{"data": {"a": [{"numeric": ["~", 1]}]}}"#,
            r#"{"data": {"a": [{"wildcard": "x*"}]}}"#,
            r#"{"data": {"a": [{"prefix": "x", "suffix": "y"}]}}"#,
            r#"{"data": {"a": [{"exists": "yes"}]}}"#,
        ] {
            assert!(matches!(FilterCriteria::parse([bad]), Err(FilterError::Invalid(_))), "{bad}");
        }
        let six = vec![r#"{"a": [1]}"#; 6];
        assert_eq!(FilterCriteria::parse(six), Err(FilterError::TooMany(6)));
    }

    #[test]
    fn matches_lists_nested_keys_and_numbers_by_value() {
        let f = filter(&[r#"{"data": {"kind": ["click", "view"], "n": [5]}}"#]);
        assert!(f.matches(&json!({"data": {"kind": "view", "n": 5.0}})));
        assert!(!f.matches(&json!({"data": {"kind": "buy", "n": 5}})));
        assert!(!f.matches(&json!({"data": {"kind": "view"}})), "every key must match");
        assert!(f.matches(&json!({"data": {"kind": ["buy", "click"], "n": 5}})), "any element of a list");
    }
}
