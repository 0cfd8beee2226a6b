//! Example 4's events: seeded purchases, some carrying a fault marker that tells the processor how
//! to misbehave, and the "truth" the verifier compares the processor's counters with.
//!
//! One definition for the producer in `labs`, the `exactly-once-counter` Lambda and the verifier:
//! the same [`PurchaseSpec`] always gives the same events, so `labs verify example-4` regenerates
//! what a run produced from the seeds recorded on the resources.
//!
//! A fault marker is data, not chance: whether it fires depends only on how often its record was
//! delivered before ([`Fault::fires`]), which the processor counts in its invocations table. So a
//! scenario fails the same way on every run and every target.

use std::collections::{BTreeMap, BTreeSet};

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A purchase is about 150 bytes; anything far larger is refused before it is parsed.
pub const MAX_PURCHASE_BYTES: usize = 4096;

/// One purchase, the record's data (JSON) in the stream. Its partition key is `user_id`, so one
/// user's purchases stay in order on one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    /// Unique across runs: namespace, seed and index (`transient7-e000042`).
    pub event_id: String,
    pub user_id: String,
    /// Integer cents, so totals add up exactly.
    pub amount: u64,
    /// Milliseconds since the Unix epoch, when the user paid (event time, not arrival time).
    pub event_time: i64,
    /// 1, 2, 3, ... within the user, in production order: lets the data show whether one user's
    /// purchases were handled in order.
    pub user_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

impl Purchase {
    /// The record's data as produced into the stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("purchases serialize")
    }
}

/// How the processor misbehaves on the record carrying it. `deliveries before` counts the earlier
/// invocations whose batch held this record, whatever their outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// A record the processor can never handle: every batch holding it fails with an error.
    Poison,
    /// The batch holding it fails with an error on the record's first `failures` deliveries
    /// (after the batch's naive increments were written), then succeeds.
    Transient { failures: u32 },
    /// On the record's first delivery the process aborts (not a returned error) after writing the
    /// effects of the first half of its batch.
    Crash,
    /// The processor reports this record as a batch item failure on its first `failures`
    /// deliveries: earlier records of the batch are done, it and the later ones are not.
    ItemFailure { failures: u32 },
}

impl Fault {
    /// Whether the fault acts on a delivery of its record that had `deliveries_before` earlier ones.
    pub fn fires(&self, deliveries_before: u32) -> bool {
        match *self {
            Fault::Poison => true,
            Fault::Transient { failures } | Fault::ItemFailure { failures } => deliveries_before < failures,
            Fault::Crash => deliveries_before == 0,
        }
    }

    /// Whether, when it fires, it fails the whole batch with a returned error.
    pub fn fails_batch(&self) -> bool {
        matches!(self, Fault::Poison | Fault::Transient { .. })
    }
}

/// The scenarios of example 4 and the fault each one plants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Happy,
    Transient,
    Poison,
    PartialBatch,
    Crash,
    SlowConsumer,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Happy,
        Scenario::Transient,
        Scenario::Poison,
        Scenario::PartialBatch,
        Scenario::Crash,
        Scenario::SlowConsumer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Happy => "happy",
            Scenario::Transient => "transient",
            Scenario::Poison => "poison",
            Scenario::PartialBatch => "partial-batch",
            Scenario::Crash => "crash",
            Scenario::SlowConsumer => "slow-consumer",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The fault one of the scenario's events carries, if any.
    pub fn fault(self) -> Option<Fault> {
        match self {
            Scenario::Happy | Scenario::SlowConsumer => None,
            Scenario::Transient => Some(Fault::Transient { failures: 2 }),
            Scenario::Poison => Some(Fault::Poison),
            Scenario::PartialBatch => Some(Fault::ItemFailure { failures: 1 }),
            Scenario::Crash => Some(Fault::Crash),
        }
    }
}

/// Settings that fully determine a generated set of purchases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseSpec {
    /// Starts every event id, so runs of different scenarios can share a stream and be told apart.
    pub namespace: String,
    pub seed: u64,
    pub count: usize,
    pub users: u32,
    /// Event time of the first purchase; later ones follow a few hundred milliseconds apart.
    pub start_millis: i64,
    /// Planted on one event in the middle third (see [`fault_index`]), so batches without it come
    /// before and after the one with it.
    pub fault: Option<Fault>,
}

impl PurchaseSpec {
    /// The spec a scenario's run uses.
    pub fn for_scenario(scenario: Scenario, seed: u64, count: usize) -> Self {
        Self {
            namespace: scenario.name().to_owned(),
            seed,
            count,
            users: 20,
            start_millis: 1_767_225_600_000,
            fault: scenario.fault(),
        }
    }

    pub fn event_id(&self, index: usize) -> String {
        format!("{}{}-e{index:06}", self.namespace, self.seed)
    }
}

/// The seed the generator really uses: mixing in the namespace makes two scenarios run with the
/// same seed produce different purchases.
#[cfg(feature = "generators")]
fn mixed_seed(spec: &PurchaseSpec) -> u64 {
    spec.namespace
        .bytes()
        .fold(spec.seed ^ 0x5851_f42d_4c95_7f2d, |acc, b| (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

pub fn user_id(index: u32) -> String {
    format!("user-{index:03}")
}

/// Which event carries the spec's fault: a seeded index in the middle third.
#[cfg(feature = "generators")]
pub fn fault_index(spec: &PurchaseSpec) -> Option<usize> {
    spec.fault?;
    if spec.count == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mixed_seed(spec) ^ 0xfa01);
    let (low, high) = (spec.count / 3, (spec.count * 2 / 3).max(spec.count / 3 + 1));
    Some(rng.random_range(low..high).min(spec.count - 1))
}

/// Generates the purchases `spec` describes, in production order.
#[cfg(feature = "generators")]
pub fn generate(spec: &PurchaseSpec) -> Vec<Purchase> {
    let mut rng = ChaCha8Rng::seed_from_u64(mixed_seed(spec));
    let faulty = fault_index(spec);
    let mut per_user: BTreeMap<u32, u64> = BTreeMap::new();
    let mut event_time = spec.start_millis;
    (0..spec.count)
        .map(|i| {
            event_time += rng.random_range(10..500);
            let user = rng.random_range(0..spec.users.max(1));
            let user_seq = per_user.entry(user).or_insert(0);
            *user_seq += 1;
            // Mostly small purchases, a few large ones.
            let amount =
                if rng.random_bool(0.1) { rng.random_range(10_000..=50_000) } else { rng.random_range(99..5_000) };
            Purchase {
                event_id: spec.event_id(i),
                user_id: user_id(user),
                amount,
                event_time,
                user_seq: *user_seq,
                fault: if faulty == Some(i) { spec.fault } else { None },
            }
        })
        .collect()
}

/// Why a record's data is not a purchase. One line each.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PurchaseError {
    #[error("the record's data is empty")]
    Empty,
    #[error("the record's data is {bytes} bytes; a purchase is at most {MAX_PURCHASE_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the record's data is not a purchase: {0}")]
    NotAPurchase(String),
}

/// Reads a record's data.
pub fn parse_purchase(data: &[u8]) -> Result<Purchase, PurchaseError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(PurchaseError::Empty);
    }
    if data.len() > MAX_PURCHASE_BYTES {
        return Err(PurchaseError::TooLarge { bytes: data.len() });
    }
    let purchase: Purchase = serde_json::from_slice(data).map_err(|e| PurchaseError::NotAPurchase(e.to_string()))?;
    if purchase.event_id.is_empty() || purchase.user_id.is_empty() {
        return Err(PurchaseError::NotAPurchase("empty event_id or user_id".to_owned()));
    }
    Ok(purchase)
}

/// A user's row: what `total`/`count` (or `naive_total`/`naive_count`) should hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserTotal {
    pub total: u64,
    pub count: u64,
}

impl UserTotal {
    pub fn add(&mut self, amount: u64) {
        self.total += amount;
        self.count += 1;
    }
}

/// Per user, the total and count that counting every event exactly once gives: each distinct
/// `event_id` once (a duplicate produced twice is one purchase), except those in `discarded` (sent
/// to the failure destination instead). Users with nothing counted are absent.
pub fn expected_totals<'a>(
    events: impl IntoIterator<Item = &'a Purchase>,
    discarded: &BTreeSet<String>,
) -> BTreeMap<String, UserTotal> {
    let mut seen = BTreeSet::new();
    let mut totals: BTreeMap<String, UserTotal> = BTreeMap::new();
    for event in events {
        if discarded.contains(&event.event_id) || !seen.insert(event.event_id.as_str()) {
            continue;
        }
        totals.entry(event.user_id.clone()).or_default().add(event.amount);
    }
    totals
}

/// Per user, what a plain increment per delivery gives: every event of `deliveries` counted as
/// often as it appears there (the naive counters' truth, given what was delivered).
pub fn delivered_totals<'a>(deliveries: impl IntoIterator<Item = &'a Purchase>) -> BTreeMap<String, UserTotal> {
    let mut totals: BTreeMap<String, UserTotal> = BTreeMap::new();
    for event in deliveries {
        totals.entry(event.user_id.clone()).or_default().add(event.amount);
    }
    totals
}

/// One user whose row differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TotalMismatch {
    pub user_id: String,
    pub expected: UserTotal,
    pub found: UserTotal,
}

/// Users whose `found` row differs from `expected` (a user missing on one side counts as zero).
pub fn compare_totals(
    expected: &BTreeMap<String, UserTotal>,
    found: &BTreeMap<String, UserTotal>,
) -> Vec<TotalMismatch> {
    let users: BTreeSet<&String> = expected.keys().chain(found.keys()).collect();
    users
        .into_iter()
        .filter_map(|user| {
            let (expected, found) =
                (expected.get(user).copied().unwrap_or_default(), found.get(user).copied().unwrap_or_default());
            (expected != found).then(|| TotalMismatch { user_id: user.clone(), expected, found })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scenario: Scenario, count: usize) -> PurchaseSpec {
        PurchaseSpec::for_scenario(scenario, 7, count)
    }

    #[test]
    fn same_spec_same_events_and_scenarios_differ() {
        let happy = generate(&spec(Scenario::Happy, 300));
        assert_eq!(happy, generate(&spec(Scenario::Happy, 300)));
        let slow = generate(&spec(Scenario::SlowConsumer, 300));
        let amounts = |events: &[Purchase]| events.iter().map(|e| e.amount).collect::<Vec<_>>();
        assert_ne!(amounts(&happy), amounts(&slow), "the namespace changes the draw");
        let mut ids: Vec<_> = happy.iter().chain(&slow).map(|e| e.event_id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 600);
        assert_eq!(happy[42].event_id, "happy7-e000042");
    }

    #[test]
    fn events_have_rising_time_per_user_sequence_and_positive_amounts() {
        let events = generate(&spec(Scenario::Happy, 500));
        assert!(events.windows(2).all(|w| w[0].event_time < w[1].event_time));
        assert!(events.iter().all(|e| e.amount > 0));
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for event in &events {
            let previous = last.insert(&event.user_id, event.user_seq).unwrap_or(0);
            assert_eq!(event.user_seq, previous + 1, "{event:?}");
        }
        assert!(last.len() > 10, "purchases spread over many users: {}", last.len());
    }

    #[test]
    fn each_faulty_scenario_plants_exactly_its_fault_in_the_middle_third() {
        for scenario in Scenario::ALL {
            let events = generate(&spec(scenario, 300));
            let faulty: Vec<(usize, Fault)> =
                events.iter().enumerate().filter_map(|(i, e)| e.fault.map(|f| (i, f))).collect();
            match scenario.fault() {
                None => assert!(faulty.is_empty(), "{scenario:?}"),
                Some(fault) => {
                    assert_eq!(faulty.len(), 1, "{scenario:?}");
                    let (index, planted) = faulty[0];
                    assert_eq!(planted, fault);
                    assert!((100..200).contains(&index), "{scenario:?} at {index}");
                    assert_eq!(fault_index(&spec(scenario, 300)), Some(index));
                }
            }
        }
        // Tiny runs still get their fault, on an event that exists.
        for count in 1..5 {
            let events = generate(&spec(Scenario::Poison, count));
            assert_eq!(events.iter().filter(|e| e.fault.is_some()).count(), 1, "{count}");
        }
        assert!(generate(&spec(Scenario::Poison, 0)).is_empty());
    }

    #[test]
    fn faults_fire_by_deliveries_before() {
        assert!((0..10).all(|d| Fault::Poison.fires(d)));
        let transient = Fault::Transient { failures: 2 };
        assert_eq!((0..4).map(|d| transient.fires(d)).collect::<Vec<_>>(), [true, true, false, false]);
        assert_eq!((0..3).map(|d| Fault::Crash.fires(d)).collect::<Vec<_>>(), [true, false, false]);
        let item = Fault::ItemFailure { failures: 1 };
        assert_eq!((0..3).map(|d| item.fires(d)).collect::<Vec<_>>(), [true, false, false]);
        assert!(Fault::Poison.fails_batch() && transient.fails_batch());
        assert!(!Fault::Crash.fails_batch() && !item.fails_batch());
    }

    #[test]
    fn purchases_round_trip_and_the_fault_marker_is_omitted_when_absent() {
        let events = generate(&spec(Scenario::Crash, 300));
        for event in &events {
            assert_eq!(&parse_purchase(&event.to_bytes()).unwrap(), event);
        }
        let plain = String::from_utf8(events[0].to_bytes()).unwrap();
        assert!(!plain.contains("fault"), "{plain}");
        let marked = events.iter().find(|e| e.fault.is_some()).unwrap();
        let text = String::from_utf8(marked.to_bytes()).unwrap();
        assert!(text.contains(r#""fault":{"kind":"crash"}"#), "{text}");
        let transient = Purchase { fault: Some(Fault::Transient { failures: 2 }), ..events[0].clone() };
        let text = String::from_utf8(transient.to_bytes()).unwrap();
        assert!(text.contains(r#""fault":{"kind":"transient","failures":2}"#), "{text}");
    }

    #[test]
    fn bad_data_is_refused_with_one_line_reasons() {
        let oversized = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_PURCHASE_BYTES));
        let cases: [(&[u8], &str); 6] = [
            (b"", "empty"),
            (b"  \n", "empty"),
            (oversized.as_bytes(), "bytes"),
            (b"not json", "not a purchase"),
            (br#"{"event_id":"e","user_id":"u","amount":-5,"event_time":1,"user_seq":1}"#, "not a purchase"),
            (br#"{"event_id":"","user_id":"u","amount":5,"event_time":1,"user_seq":1}"#, "empty event_id"),
        ];
        for (data, wanted) in cases {
            let reason = parse_purchase(data).unwrap_err().to_string();
            assert!(reason.contains(wanted) && !reason.contains('\n'), "{reason}");
        }
        let unknown_fault =
            br#"{"event_id":"e","user_id":"u","amount":5,"event_time":1,"user_seq":1,"fault":{"kind":"gremlin"}}"#;
        assert!(parse_purchase(unknown_fault).is_err());
    }

    fn purchase(id: &str, user: &str, amount: u64) -> Purchase {
        Purchase { event_id: id.into(), user_id: user.into(), amount, event_time: 0, user_seq: 1, fault: None }
    }

    #[test]
    fn expected_totals_count_each_event_once_and_skip_discarded_ones() {
        let events = [
            purchase("e1", "alice", 100),
            purchase("e2", "bob", 250),
            purchase("e1", "alice", 100), // produced twice: one purchase
            purchase("e3", "alice", 5),
            purchase("e4", "carol", 7), // discarded: carol has no row
        ];
        let discarded = BTreeSet::from(["e4".to_owned()]);
        let totals = expected_totals(&events, &discarded);
        assert_eq!(
            totals,
            BTreeMap::from([
                ("alice".to_owned(), UserTotal { total: 105, count: 2 }),
                ("bob".to_owned(), UserTotal { total: 250, count: 1 }),
            ])
        );
        let naive = delivered_totals(&events);
        assert_eq!(naive["alice"], UserTotal { total: 205, count: 3 });
        assert_eq!(naive["carol"], UserTotal { total: 7, count: 1 });
    }

    #[test]
    fn compare_totals_names_every_differing_user() {
        let expected = BTreeMap::from([
            ("alice".to_owned(), UserTotal { total: 105, count: 2 }),
            ("bob".to_owned(), UserTotal { total: 250, count: 1 }),
        ]);
        assert!(compare_totals(&expected, &expected).is_empty());
        let mut found = expected.clone();
        found.get_mut("alice").unwrap().add(100); // a double-applied event
        found.remove("bob");
        found.insert("dave".to_owned(), UserTotal { total: 1, count: 1 });
        let users: Vec<String> = compare_totals(&expected, &found).into_iter().map(|m| m.user_id).collect();
        assert_eq!(users, ["alice", "bob", "dave"]);
        let bob = &compare_totals(&expected, &found)[1];
        assert_eq!((bob.expected.count, bob.found), (1, UserTotal::default()));
    }
}
