//! The stream-table join: orders enriched with their customer's profile.
//!
//! The customers table is the source; its change stream keeps a replica, owned by the join,
//! that holds every version of a profile by `valid_from` (a slowly changing dimension). An
//! order is then joined with the profile *as of its event time* (Flink's temporal join,
//! `FOR SYSTEM_TIME AS OF`), which gives the same answer however late the join runs; the naive
//! join with the *latest* profile (Kafka Streams' KStream-KTable join) gives whatever the table
//! holds when the order happens to be processed, so a replay after an address change answers
//! differently.
//!
//! The generated data makes that visible: orders, then address changes for some customers
//! (valid after those orders), then more orders.

use std::collections::BTreeMap;

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::time::windows::Millis;

/// An item of the customers table, and a version of it in the replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub customer_id: String,
    pub name: String,
    pub address: String,
    /// From when this version holds (event time of the change).
    pub valid_from: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    pub event_time: Millis,
}

/// A record's data on the orders stream: an order, and which pass sends it (1: the run,
/// 2, 3, ...: replays of the same orders), so each pass's join is kept apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    #[serde(flatten)]
    pub order: Order,
    pub pass: u32,
}

impl OrderRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("order records serialize")
    }

    /// Reads a record's data; the message is one line.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let record: OrderRecord =
            serde_json::from_slice(data).map_err(|e| format!("the record's data is not an order: {e}"))?;
        if record.order.order_id.is_empty() || record.order.customer_id.is_empty() || record.pass == 0 {
            return Err("the order has an empty id or customer, or pass 0".to_owned());
        }
        Ok(record)
    }
}

/// An order joined with a profile version (or with none: a customer not known yet).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Enriched {
    pub order_id: String,
    pub customer_id: String,
    pub order_time: Millis,
    pub address: Option<String>,
    /// The version joined: its `valid_from`.
    pub valid_from: Option<Millis>,
}

pub fn enrich(order: &Order, profile: Option<&Profile>) -> Enriched {
    Enriched {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        order_time: order.event_time,
        address: profile.map(|p| p.address.clone()),
        valid_from: profile.map(|p| p.valid_from),
    }
}

/// Every version of every profile, by customer and `valid_from`. Inserting a version twice is
/// harmless (a redelivered change), so it can be fed at least once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionedTable {
    versions: BTreeMap<String, BTreeMap<Millis, Profile>>,
}

impl VersionedTable {
    pub fn insert(&mut self, profile: Profile) {
        self.versions.entry(profile.customer_id.clone()).or_default().insert(profile.valid_from, profile);
    }

    pub fn from_versions<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> Self {
        let mut table = Self::default();
        profiles.into_iter().cloned().for_each(|p| table.insert(p));
        table
    }

    /// The version that held at `time`: the latest with `valid_from <= time`.
    pub fn as_of(&self, customer_id: &str, time: Millis) -> Option<&Profile> {
        self.versions.get(customer_id)?.range(..=time).next_back().map(|(_, p)| p)
    }

    /// The newest version, whatever time it is asked about: the naive lookup.
    pub fn latest(&self, customer_id: &str) -> Option<&Profile> {
        self.versions.get(customer_id)?.values().next_back()
    }

    pub fn version_count(&self) -> usize {
        self.versions.values().map(BTreeMap::len).sum()
    }
}

/// The versioned join of `orders` against complete profile history: the reference.
pub fn reference_enrichment<'a>(orders: &[Order], versions: impl IntoIterator<Item = &'a Profile>) -> Vec<Enriched> {
    let table = VersionedTable::from_versions(versions);
    orders.iter().map(|o| enrich(o, table.as_of(&o.customer_id, o.event_time))).collect()
}

/// Settings that fully determine the customers and orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSpec {
    pub namespace: String,
    pub seed: u64,
    pub customers: u32,
    /// Orders before the address changes, and as many after.
    pub orders_per_phase: u32,
    pub start_millis: Millis,
}

impl ProfileSpec {
    pub fn standard(namespace: &str, seed: u64, start_millis: Millis) -> Self {
        Self { namespace: namespace.to_owned(), seed, customers: 6, orders_per_phase: 12, start_millis }
    }

    pub fn customer_id(&self, index: u32) -> String {
        format!("{}{}-c{index:02}", self.namespace, self.seed)
    }
}

/// What the spec describes, in the order `labs run` writes and sends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileData {
    /// Every customer's first version, valid from before any order.
    pub initial: Vec<Profile>,
    pub orders_before: Vec<Order>,
    /// New addresses, valid after every order of `orders_before`.
    pub changes: Vec<Profile>,
    pub orders_after: Vec<Order>,
}

impl ProfileData {
    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders_before.iter().chain(&self.orders_after)
    }

    pub fn versions(&self) -> impl Iterator<Item = &Profile> {
        self.initial.iter().chain(&self.changes)
    }
}

#[cfg(feature = "generators")]
const STREETS: [&str; 5] = ["Elm St", "Harbour Rd", "Mill Lane", "Station Sq", "Kings Ave"];

#[cfg(feature = "generators")]
pub fn generate(spec: &ProfileSpec) -> ProfileData {
    let mut rng = ChaCha8Rng::seed_from_u64(super::mixed_seed(spec.seed, &spec.namespace));
    let customers = spec.customers.max(1);
    let address =
        |rng: &mut ChaCha8Rng| format!("{} {}", rng.random_range(1..200), STREETS[rng.random_range(0..STREETS.len())]);
    let initial: Vec<Profile> = (0..customers)
        .map(|i| Profile {
            customer_id: spec.customer_id(i),
            name: format!("Customer {i}"),
            address: address(&mut rng),
            valid_from: spec.start_millis - 3_600_000,
        })
        .collect();
    let order = |phase: &str, index: u32, time: Millis, rng: &mut ChaCha8Rng| Order {
        order_id: format!("{}{}-{phase}{index:03}", spec.namespace, spec.seed),
        customer_id: spec.customer_id(rng.random_range(0..customers)),
        amount_cents: rng.random_range(500..20_000),
        event_time: time,
    };
    let step = 1_000;
    let orders_before: Vec<Order> = (0..spec.orders_per_phase)
        .map(|i| order("a", i, spec.start_millis + Millis::from(i) * step, &mut rng))
        .collect();
    let change_at = spec.start_millis + Millis::from(spec.orders_per_phase) * step;
    // Every customer who ordered first moves (at least the first one, so there is a change).
    let mut changes = Vec::new();
    for (i, profile) in initial.iter().enumerate() {
        let ordered = orders_before.iter().any(|o| o.customer_id == profile.customer_id);
        if i == 0 || ordered && rng.random_bool(0.7) {
            let valid_from = change_at + i as Millis * 10;
            changes.push(Profile { address: address(&mut rng), valid_from, ..profile.clone() });
        }
    }
    let after = change_at + 5_000;
    let orders_after =
        (0..spec.orders_per_phase).map(|i| order("b", i, after + Millis::from(i) * step, &mut rng)).collect();
    ProfileData { initial, orders_before, changes, orders_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ProfileData {
        generate(&ProfileSpec::standard("t", 5, 10_000_000))
    }

    #[test]
    fn as_of_picks_the_version_that_held_then_and_latest_the_newest() {
        let data = data();
        let table = VersionedTable::from_versions(data.versions());
        let moved = &data.changes[0];
        let old = data.initial.iter().find(|p| p.customer_id == moved.customer_id).unwrap();
        assert_eq!(table.as_of(&moved.customer_id, moved.valid_from - 1), Some(old));
        assert_eq!(table.as_of(&moved.customer_id, moved.valid_from), Some(moved));
        assert_eq!(table.latest(&moved.customer_id), Some(moved));
        assert_eq!(table.as_of(&moved.customer_id, old.valid_from - 1), None, "before the customer existed");
        let mut again = table.clone();
        again.insert(moved.clone());
        assert_eq!(again, table, "a redelivered version changes nothing");
    }

    #[test]
    fn replay_gives_the_same_versioned_join_while_the_naive_one_changes() {
        let data = data();
        // The run: orders before the changes are joined while the replica holds the first
        // versions; then the changes arrive; then the later orders.
        let mut replica = VersionedTable::from_versions(&data.initial);
        let mut first_versioned = Vec::new();
        let mut first_naive = Vec::new();
        let mut join = |replica: &VersionedTable, order: &Order| {
            first_versioned.push(enrich(order, replica.as_of(&order.customer_id, order.event_time)));
            first_naive.push(enrich(order, replica.latest(&order.customer_id)));
        };
        data.orders_before.iter().for_each(|o| join(&replica, o));
        data.changes.iter().cloned().for_each(|p| replica.insert(p));
        data.orders_after.iter().for_each(|o| join(&replica, o));
        // The replay: the same orders, joined again with the replica as it is now.
        let orders: Vec<Order> = data.orders().cloned().collect();
        let replay_versioned: Vec<_> =
            orders.iter().map(|o| enrich(o, replica.as_of(&o.customer_id, o.event_time))).collect();
        let replay_naive: Vec<_> = orders.iter().map(|o| enrich(o, replica.latest(&o.customer_id))).collect();

        assert_eq!(first_versioned, replay_versioned);
        assert_eq!(first_versioned, reference_enrichment(&orders, data.versions()));
        let changed: Vec<_> =
            first_naive.iter().zip(&replay_naive).filter(|(a, b)| a != b).map(|(a, _)| &a.order_id).collect();
        assert!(!changed.is_empty(), "no order's naive join changed on replay");
        assert!(changed.iter().all(|id| data.orders_before.iter().any(|o| &o.order_id == *id)));
    }

    #[test]
    fn order_records_round_trip_and_bad_ones_are_refused() {
        let record = OrderRecord { order: data().orders_before[0].clone(), pass: 2 };
        assert_eq!(OrderRecord::parse(&record.to_bytes()).unwrap(), record);
        assert!(OrderRecord::parse(b"{}").is_err());
        let zero = OrderRecord { pass: 0, ..record };
        assert!(!OrderRecord::parse(&zero.to_bytes()).unwrap_err().contains('\n'));
    }
}
