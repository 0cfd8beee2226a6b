//! Picking the next seed for a run. Seeds come from the learner (`--seed`) or follow the highest
//! one a target already records; both can sit at `u64::MAX`, so every step is checked.

use anyhow::{Result, anyhow};

/// The seed after the highest of `used`, or 1 when none is used.
pub fn after_highest(used: impl IntoIterator<Item = u64>) -> Result<u64> {
    match used.into_iter().max() {
        None => Ok(1),
        Some(highest) => highest.checked_add(1).ok_or_else(|| no_seed_after(highest)),
    }
}

/// `count` consecutive seeds starting at `first`, one per scenario of a run.
pub fn consecutive(first: u64, count: usize) -> Result<Vec<u64>> {
    (0..count as u64).map(|i| first.checked_add(i).ok_or_else(|| no_seed_after(u64::MAX))).collect()
}

/// The seed one scenario runs with: the learner's `--seed` unless a recorded run of that
/// scenario already used it, else the one after the highest it used. `place` is where runs are
/// recorded, `example` what to take down to start over.
pub fn for_scenario(requested: Option<u64>, used: &[u64], scenario: &str, place: &str, example: &str) -> Result<u64> {
    match requested {
        Some(seed) if used.contains(&seed) => Err(anyhow!(
            "seed {seed} was already used for {scenario} in {place}: pick another --seed, or `labs down {example}` to start over"
        )),
        Some(seed) => Ok(seed),
        None => after_highest(used.iter().copied()),
    }
}

/// Refuses a run that would record more than `max` runs on a stream: each run is one of the
/// stream's tags, and Kinesis keeps at most 50.
pub fn check_room(recorded: usize, adding: usize, max: usize, stream: &str, example: &str) -> Result<()> {
    if recorded + adding > max {
        return Err(anyhow!(
            "{stream} already records {recorded} runs and Kinesis allows 50 tags per stream (labs uses one per run): \
             `labs down {example}` and `labs up {example}` to start over"
        ));
    }
    Ok(())
}

fn no_seed_after(seed: u64) -> anyhow::Error {
    anyhow!("no seed follows {seed} (the largest a seed can be): pass a smaller --seed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_seed_follows_the_highest_used() {
        assert_eq!(after_highest([]).unwrap(), 1);
        assert_eq!(after_highest([4, 9, 2]).unwrap(), 10);
        assert_eq!(after_highest([u64::MAX - 1]).unwrap(), u64::MAX);
    }

    #[test]
    fn a_scenario_takes_the_asked_seed_unless_used_else_the_next() {
        assert_eq!(for_scenario(Some(5), &[1, 2], "s", "p", "example-9").unwrap(), 5);
        assert_eq!(for_scenario(None, &[1, 7], "s", "p", "example-9").unwrap(), 8);
        let error = for_scenario(Some(7), &[1, 7], "key-order", "p-stream", "example-9").unwrap_err().to_string();
        assert!(error.starts_with("seed 7 was already used for key-order in p-stream"), "{error}");
        assert!(for_scenario(None, &[u64::MAX], "s", "p", "example-9").is_err());
        assert!(check_room(47, 1, 48, "p", "example-9").is_ok());
        let error = check_room(48, 1, 48, "p", "example-9").unwrap_err().to_string();
        assert!(error.contains("already records 48 runs"), "{error}");
    }

    #[test]
    fn seeds_near_the_maximum_are_an_error_not_an_overflow() {
        let error = after_highest([3, u64::MAX]).unwrap_err().to_string();
        assert!(error.contains(&u64::MAX.to_string()), "{error}");
        assert_eq!(consecutive(u64::MAX - 1, 2).unwrap(), vec![u64::MAX - 1, u64::MAX]);
        let error = consecutive(u64::MAX - 1, 3).unwrap_err().to_string();
        assert!(error.contains(&u64::MAX.to_string()), "{error}");
        assert_eq!(consecutive(7, 0).unwrap(), Vec::<u64>::new());
    }
}
