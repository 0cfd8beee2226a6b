//! Kinesis and DynamoDB Streams sequence numbers are decimal strings of up to 128 digits. They must
//! be compared as numbers: "9" < "10" even though it sorts after it as text.

use std::cmp::Ordering;

/// Compares two decimal sequence numbers numerically.
pub fn compare(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_numerically_not_lexically() {
        assert_eq!(compare("9", "10"), Ordering::Less);
        assert_eq!(compare("10", "9"), Ordering::Greater);
        assert_eq!(compare("0042", "42"), Ordering::Equal);
        let long_a = "49590338271490256608559692538361571095921575989136588898";
        let long_b = "49590338271490256608559692538361571095921575989136588899";
        assert_eq!(compare(long_a, long_b), Ordering::Less);
    }
}
