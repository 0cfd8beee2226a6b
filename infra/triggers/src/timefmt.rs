//! The two timestamp spellings of failure records: ISO-8601 UTC with milliseconds (Kinesis and
//! the record's own `timestamp`) and with whole seconds (DynamoDB arrival times).

use time::OffsetDateTime;
use time::format_description::well_known::iso8601::{Config, EncodedConfig, Iso8601, TimePrecision};

use crate::record::Millis;

const MILLIS: EncodedConfig =
    Config::DEFAULT.set_time_precision(TimePrecision::Second { decimal_digits: std::num::NonZeroU8::new(3) }).encode();
const SECONDS: EncodedConfig =
    Config::DEFAULT.set_time_precision(TimePrecision::Second { decimal_digits: None }).encode();

/// `2019-11-14T00:38:06.021Z`.
pub fn iso_millis(millis: Millis) -> String {
    format(millis, |at| at.format(&Iso8601::<MILLIS>))
}

/// `2019-11-14T00:38:06Z` (truncated, as DynamoDB's whole-second times are).
pub fn iso_seconds(millis: Millis) -> String {
    format(millis.div_euclid(1000) * 1000, |at| at.format(&Iso8601::<SECONDS>))
}

fn format(millis: Millis, with: impl Fn(OffsetDateTime) -> Result<String, time::error::Format>) -> String {
    // Out-of-range instants (beyond year 9999) cannot come from a stream; show the raw number.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|at| with(at).ok())
        .unwrap_or_else(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_and_without_milliseconds() {
        assert_eq!(iso_millis(1_573_691_886_021), "2019-11-14T00:38:06.021Z");
        assert_eq!(iso_millis(1_573_691_886_000), "2019-11-14T00:38:06.000Z");
        assert_eq!(iso_seconds(1_573_691_886_999), "2019-11-14T00:38:06Z");
    }
}
