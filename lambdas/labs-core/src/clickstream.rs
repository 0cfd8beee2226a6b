//! Example 1's events: a seeded, deterministic clickstream. The same seed and count always give
//! the same events, so `labs verify` can regenerate what `labs run` produced and compare.

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub const PAGES: [&str; 8] = ["/", "/search", "/product", "/cart", "/checkout", "/account", "/help", "/deals"];
pub const ACTIONS: [&str; 4] = ["view", "click", "scroll", "purchase"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    pub event_id: String,
    pub user_id: String,
    pub page: String,
    pub action: String,
    /// Milliseconds since the Unix epoch, when the user acted (event time, not arrival time).
    pub event_time: i64,
}

/// Settings that fully determine a generated clickstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickstreamSpec {
    pub seed: u64,
    pub count: usize,
    pub users: u32,
    /// Event time of the first event; later ones follow a few hundred milliseconds apart.
    pub start_millis: i64,
}

impl Default for ClickstreamSpec {
    fn default() -> Self {
        Self { seed: 1, count: 1000, users: 50, start_millis: 1_767_225_600_000 }
    }
}

/// Generates the clickstream `spec` describes. Event ids embed the seed, so two runs with
/// different seeds can share a stream and still be told apart.
#[cfg(feature = "generators")]
pub fn generate(spec: &ClickstreamSpec) -> Vec<ClickEvent> {
    events(spec).collect()
}

/// The same events as [`generate`], one at a time, so a producer of millions holds none of
/// them longer than it takes to send them.
#[cfg(feature = "generators")]
pub fn events(spec: &ClickstreamSpec) -> impl Iterator<Item = ClickEvent> + Send + 'static {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut event_time = spec.start_millis;
    let (seed, users) = (spec.seed, spec.users.max(1));
    (0..spec.count).map(move |i| {
        event_time += rng.random_range(10..500);
        ClickEvent {
            event_id: format!("s{seed}-e{i:07}"),
            user_id: format!("user-{:04}", rng.random_range(0..users)),
            page: PAGES[rng.random_range(0..PAGES.len())].to_owned(),
            action: ACTIONS[rng.random_range(0..ACTIONS.len())].to_owned(),
            event_time,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_gives_the_same_events() {
        let spec = ClickstreamSpec { seed: 9, count: 300, ..Default::default() };
        let streamed: Vec<ClickEvent> = events(&spec).collect();
        assert_eq!(streamed, generate(&spec));
        let longer = ClickstreamSpec { count: 1_000, ..spec };
        assert_eq!(events(&longer).take(300).collect::<Vec<_>>(), streamed, "a longer run starts the same");
    }

    #[test]
    fn same_seed_same_events() {
        let spec = ClickstreamSpec { count: 200, ..Default::default() };
        assert_eq!(generate(&spec), generate(&spec));
    }

    #[test]
    fn different_seeds_differ_and_ids_are_unique() {
        let a = generate(&ClickstreamSpec { seed: 1, count: 100, ..Default::default() });
        let b = generate(&ClickstreamSpec { seed: 2, count: 100, ..Default::default() });
        assert_ne!(a, b);
        let mut ids: Vec<_> = a.iter().chain(&b).map(|e| e.event_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
    }

    #[test]
    fn event_time_rises() {
        let events = generate(&ClickstreamSpec { count: 50, ..Default::default() });
        assert!(events.windows(2).all(|w| w[0].event_time < w[1].event_time));
    }
}
