//! How Kinesis maps a record to a shard: the MD5 of the partition key, read as a 128-bit unsigned
//! big-endian number, falls inside exactly one open shard's hash key range. An `ExplicitHashKey`
//! replaces the MD5 with a number the producer chooses.

#[cfg(feature = "generators")]
use md5::{Digest, Md5};

/// The 128-bit hash key Kinesis derives from a partition key.
#[cfg(feature = "generators")]
pub fn hash_key(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// A shard's inclusive hash key range, as `ListShards` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub shard_id: String,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
}

impl ShardRange {
    /// Parses the decimal strings the Kinesis API returns.
    pub fn parse(shard_id: &str, start: &str, end: &str) -> Result<Self, std::num::ParseIntError> {
        Ok(Self { shard_id: shard_id.to_owned(), starting_hash_key: start.parse()?, ending_hash_key: end.parse()? })
    }

    pub fn contains(&self, hash_key: u128) -> bool {
        (self.starting_hash_key..=self.ending_hash_key).contains(&hash_key)
    }
}

/// The shard (index into `ranges`) that owns a hash key, if the ranges cover it.
pub fn shard_for_hash(ranges: &[ShardRange], hash_key: u128) -> Option<usize> {
    ranges.iter().position(|range| range.contains(hash_key))
}

/// The shard (index into `ranges`) a partition key lands on.
#[cfg(feature = "generators")]
pub fn shard_for_key(ranges: &[ShardRange], partition_key: &str) -> Option<usize> {
    shard_for_hash(ranges, hash_key(partition_key))
}

/// Splits the full 128-bit key space into `count` even ranges, the way `CreateStream` does.
pub fn even_ranges(count: u32) -> Vec<ShardRange> {
    assert!(count > 0, "a stream has at least one shard");
    // floor(2^128 / count), as CreateStream splits it (2^128 itself does not fit in a u128).
    let count_wide = u128::from(count);
    let width = (u128::MAX / count_wide).saturating_add((u128::MAX % count_wide + 1) / count_wide);
    (0..count)
        .map(|i| {
            let start = width * u128::from(i);
            let end = if i + 1 == count { u128::MAX } else { start + width - 1 };
            ShardRange { shard_id: format!("shardId-{i:012}"), starting_hash_key: start, ending_hash_key: end }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_md5_big_endian() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn even_ranges_start_where_create_stream_starts_its_shards() {
        // What ListShards reports for a stream created with 2 and with 4 shards.
        assert_eq!(even_ranges(2)[1].starting_hash_key, 170_141_183_460_469_231_731_687_303_715_884_105_728);
        assert_eq!(even_ranges(4)[1].starting_hash_key, 85_070_591_730_234_615_865_843_651_857_942_052_864);
        assert_eq!(even_ranges(1)[0].ending_hash_key, u128::MAX);
    }

    #[test]
    fn even_ranges_cover_the_key_space_without_overlap() {
        for count in [1, 2, 3, 4, 7] {
            let ranges = even_ranges(count);
            assert_eq!(ranges[0].starting_hash_key, 0);
            assert_eq!(ranges.last().unwrap().ending_hash_key, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].ending_hash_key + 1, pair[1].starting_hash_key);
            }
        }
    }

    #[test]
    fn every_key_lands_on_exactly_one_shard() {
        let ranges = even_ranges(4);
        for i in 0..1000 {
            let key = format!("user-{i}");
            let owners = ranges.iter().filter(|r| r.contains(hash_key(&key))).count();
            assert_eq!(owners, 1, "{key}");
        }
    }

    #[test]
    fn parses_api_strings() {
        let range = ShardRange::parse("shardId-000000000000", "0", "170141183460469231731687303715884105727").unwrap();
        assert!(range.contains(0));
        assert!(!range.contains(u128::MAX));
        assert!(ShardRange::parse("s", "x", "1").is_err());
    }
}
