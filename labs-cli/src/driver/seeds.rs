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
    fn seeds_near_the_maximum_are_an_error_not_an_overflow() {
        let error = after_highest([3, u64::MAX]).unwrap_err().to_string();
        assert!(error.contains(&u64::MAX.to_string()), "{error}");
        assert_eq!(consecutive(u64::MAX - 1, 2).unwrap(), vec![u64::MAX - 1, u64::MAX]);
        let error = consecutive(u64::MAX - 1, 3).unwrap_err().to_string();
        assert!(error.contains(&u64::MAX.to_string()), "{error}");
        assert_eq!(consecutive(7, 0).unwrap(), Vec::<u64>::new());
    }
}
