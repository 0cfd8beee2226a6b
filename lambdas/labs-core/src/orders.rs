//! Example 7's events and checks: seeded order lifecycles interleaved across many orders, the
//! per-order ordering check `labs verify example-7` runs, and the small pure decisions the
//! scenarios make (which entries a simulated throttle refuses, which shards to split and merge,
//! which shards lost a parent).
//!
//! Every order moves through `created`, `paid`, `packed`, `shipped`, `delivered` (some stop
//! early: still in transit). `step` numbers an order's events 1, 2, 3, ... in the order the
//! producer emitted them, so a consumer can tell from the data alone whether it saw them in order.

use std::collections::{BTreeMap, HashMap, HashSet};

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::partition::ShardRange;

pub const STATUSES: [&str; 5] = ["created", "paid", "packed", "shipped", "delivered"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order_id: String,
    pub customer_id: String,
    /// 1, 2, 3, ... within the order, in the order the producer emitted them.
    pub step: u32,
    pub status: String,
    /// Position in the producer's output across all orders: the "global order" that a
    /// partitioned log does not keep.
    pub emitted: u64,
}

/// Who places the orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Customers {
    /// Every customer equally likely.
    Even { customers: u32 },
    /// A few customers place most orders: customer `n` (from 1) places in proportion to
    /// `1 / n^s`, with `s = exponent_hundredths / 100` (Zipf's law).
    Zipf { customers: u32, exponent_hundredths: u32 },
}

/// Settings that fully determine a generated set of orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSpec {
    /// Starts every order id, so runs of different scenarios can share a stream and be told apart.
    pub namespace: String,
    pub seed: u64,
    pub orders: usize,
    pub customers: Customers,
    /// How many orders are under way at once (a new one starts as soon as one ends): few keeps
    /// an order's steps close together in the output, many spreads them out.
    pub in_flight: usize,
}

impl OrderSpec {
    /// The id every order of this spec starts with, e.g. `ko3-`.
    pub fn id_prefix(&self) -> String {
        format!("{}{}-", self.namespace, self.seed)
    }

    pub fn order_id(&self, index: usize) -> String {
        format!("{}o{index:05}", self.id_prefix())
    }
}

/// The seed the generator really uses: mixing in the namespace makes two scenarios run with the
/// same seed produce different interleavings.
#[cfg(feature = "generators")]
fn mixed_seed(spec: &OrderSpec) -> u64 {
    spec.namespace
        .bytes()
        .fold(spec.seed ^ 0x9e37_79b9_7f4a_7c15, |acc, b| (acc ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Draws customer indexes (from 0) as `Customers` says.
#[cfg(feature = "generators")]
struct CustomerPicker {
    /// Cumulative weights for Zipf; empty for even.
    cumulative: Vec<f64>,
    customers: u32,
}

#[cfg(feature = "generators")]
impl CustomerPicker {
    fn new(customers: Customers) -> Self {
        match customers {
            Customers::Even { customers } => Self { cumulative: Vec::new(), customers: customers.max(1) },
            Customers::Zipf { customers, exponent_hundredths } => {
                let s = f64::from(exponent_hundredths) / 100.0;
                let cumulative = (1..=customers.max(1))
                    .scan(0.0, |total, n| {
                        *total += 1.0 / f64::from(n).powf(s);
                        Some(*total)
                    })
                    .collect();
                Self { cumulative, customers: customers.max(1) }
            }
        }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> u32 {
        match self.cumulative.last() {
            None => rng.random_range(0..self.customers),
            Some(total) => {
                let x = rng.random::<f64>() * total;
                self.cumulative.partition_point(|&c| c <= x).min(self.cumulative.len() - 1) as u32
            }
        }
    }
}

pub fn customer_id(index: u32) -> String {
    format!("cust-{index:03}")
}

/// Generates the orders `spec` describes, interleaved: up to `in_flight` orders are under way,
/// a new one starts as soon as there is room, and at each point one of them moves a step on.
#[cfg(feature = "generators")]
pub fn generate(spec: &OrderSpec) -> Vec<OrderEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(mixed_seed(spec));
    let customers = CustomerPicker::new(spec.customers);
    let plans: Vec<(u32, u32)> =
        (0..spec.orders).map(|_| (customers.pick(&mut rng), rng.random_range(3..=STATUSES.len() as u32))).collect();
    let in_flight = spec.in_flight.max(1);
    // (order index, next step)
    let mut active: Vec<(usize, u32)> = Vec::new();
    let mut next_order = 0;
    let mut events = Vec::new();
    loop {
        let choice = if next_order < spec.orders && active.len() < in_flight {
            active.push((next_order, 1));
            next_order += 1;
            active.len() - 1
        } else if active.is_empty() {
            break;
        } else {
            rng.random_range(0..active.len())
        };
        let (order, step) = active[choice];
        let (customer, steps) = plans[order];
        events.push(OrderEvent {
            order_id: spec.order_id(order),
            customer_id: customer_id(customer),
            step,
            status: STATUSES[step as usize - 1].to_owned(),
            emitted: events.len() as u64,
        });
        if step == steps {
            active.remove(choice);
        } else {
            active[choice].1 += 1;
        }
    }
    events
}

/// How many steps each order of `events` has.
pub fn steps_per_order(events: &[OrderEvent]) -> BTreeMap<String, u32> {
    let mut steps = BTreeMap::new();
    for event in events {
        let entry = steps.entry(event.order_id.clone()).or_insert(0);
        *entry = (*entry).max(event.step);
    }
    steps
}

/// What a consumer saw of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Every step, strictly rising, no gap.
    InOrder,
    /// The first `lost` steps are gone with a shard the target no longer has (see
    /// [`check_order`]); the rest arrived strictly rising with no gap.
    InOrderAfterLoss { lost: u32 },
    /// A step arrived after a later one.
    Reordered,
    /// A step arrived twice (and never before a later step).
    Duplicated,
    /// Steps rose, but some never arrived.
    Missing { missing: Vec<u32> },
    /// A step this order does not have.
    UnknownStep { step: u32 },
}

impl Verdict {
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::InOrder | Verdict::InOrderAfterLoss { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Verdict::InOrder => "in order".to_owned(),
            Verdict::InOrderAfterLoss { lost } => format!("in order after the first {lost} steps were lost"),
            Verdict::Reordered => "a step arrived after a later one".to_owned(),
            Verdict::Duplicated => "a step arrived twice".to_owned(),
            Verdict::Missing { missing } => format!("steps {missing:?} never arrived"),
            Verdict::UnknownStep { step } => format!("step {step} is not one of this order's"),
        }
    }
}

/// Judges one order with `steps` steps from the steps in the order they arrived. Up to
/// `excusable` first steps may be missing: the caller has proved they went to a shard the
/// target deleted (see [`check_order`]). What arrived must be strictly rising with no gap, and
/// an order with no arrivals at all is never accepted: nothing of it can be checked.
pub fn judge(steps: u32, arrival: &[u32], excusable: u32) -> Verdict {
    if let Some(&step) = arrival.iter().find(|&&s| s == 0 || s > steps) {
        return Verdict::UnknownStep { step };
    }
    if arrival.windows(2).any(|w| w[1] < w[0]) {
        return Verdict::Reordered;
    }
    if arrival.windows(2).any(|w| w[1] == w[0]) {
        return Verdict::Duplicated;
    }
    let lost = arrival.first().map_or(0, |first| (first - 1).min(excusable));
    let missing: Vec<u32> = (lost + 1..=steps).filter(|s| !arrival.contains(s)).collect();
    match (missing.is_empty(), lost) {
        (false, _) => Verdict::Missing { missing },
        (true, 0) => Verdict::InOrder,
        (true, lost) => Verdict::InOrderAfterLoss { lost },
    }
}

/// For each order of `events` (one producer's output, in emission order), how many of its first
/// steps were provably in a shard that is gone: `in_deleted_shard` says so per event, and only an
/// unbroken run from step 1 counts, because a later step cannot excuse an earlier one.
pub fn proved_lost_first_steps(
    events: &[OrderEvent],
    in_deleted_shard: impl Fn(&OrderEvent) -> bool,
) -> BTreeMap<String, u32> {
    let mut lost: BTreeMap<String, u32> = BTreeMap::new();
    for event in events {
        let count = lost.entry(event.order_id.clone()).or_insert(0);
        if *count + 1 == event.step && in_deleted_shard(event) {
            *count += 1;
        }
    }
    lost.retain(|_, count| *count > 0);
    lost
}

/// One order as the check saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderTrace {
    pub order_id: String,
    /// Its steps in the order they arrived.
    pub arrival: Vec<u32>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct OrderingReport {
    pub orders: usize,
    /// Records of these orders that arrived.
    pub records: usize,
    pub in_order: usize,
    /// Orders whose first steps are gone with a shard the target deleted, the rest in order.
    pub in_order_after_loss: usize,
    /// Steps gone that way, over all orders.
    pub lost_steps: usize,
    /// Every order that is not in order, in order-id order.
    pub violations: Vec<OrderTrace>,
}

impl OrderingReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn count(&self, kind: fn(&Verdict) -> bool) -> usize {
        self.violations.iter().filter(|t| kind(&t.verdict)).count()
    }

    pub fn reordered(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Reordered))
    }
}

/// Checks the arrivals `(order_id, step)`, in the order a consumer processed them, against the
/// orders `expected` (id -> number of steps). Arrivals of other orders are ignored.
/// `excusable(order_id)` is how many of an order's first steps may be missing: those proved to
/// have been in a parent shard the target deleted (produced before the reshard, into the
/// parent's hash range). 0 for every order where nothing was deleted.
pub fn check_order<'a>(
    expected: &BTreeMap<String, u32>,
    arrivals: impl IntoIterator<Item = (&'a str, u32)>,
    excusable: impl Fn(&str) -> u32,
) -> OrderingReport {
    let mut seen: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut report = OrderingReport { orders: expected.len(), ..Default::default() };
    for (order_id, step) in arrivals {
        if expected.contains_key(order_id) {
            seen.entry(order_id).or_default().push(step);
            report.records += 1;
        }
    }
    for (order_id, &steps) in expected {
        let arrival = seen.remove(order_id.as_str()).unwrap_or_default();
        match judge(steps, &arrival, excusable(order_id)) {
            Verdict::InOrder => report.in_order += 1,
            Verdict::InOrderAfterLoss { lost } => {
                report.in_order_after_loss += 1;
                report.lost_steps += lost as usize;
            }
            verdict => report.violations.push(OrderTrace { order_id: order_id.clone(), arrival, verdict }),
        }
    }
    report
}

/// The shards (indexes into `shards`) that name a parent the listing does not hold, with the
/// missing parent ids. On AWS that happens once a closed parent passes the retention period; on
/// MiniStack 1.5.33, right after a split or merge, which deletes the parent and its records.
pub fn orphans<T>(shards: &[T], lineage: impl Fn(&T) -> (String, [Option<String>; 2])) -> Vec<(usize, Vec<String>)> {
    let listed: HashSet<String> = shards.iter().map(|s| lineage(s).0).collect();
    shards
        .iter()
        .enumerate()
        .filter_map(|(index, shard)| {
            let missing: Vec<String> = lineage(shard).1.into_iter().flatten().filter(|p| !listed.contains(p)).collect();
            (!missing.is_empty()).then_some((index, missing))
        })
        .collect()
}

/// A shard and how many records of a run it holds: what resharding decisions look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLoad {
    pub range: ShardRange,
    pub records: usize,
}

/// What the reshard scenario will do: split the busiest open shard in the middle of its hash
/// range, and merge the quietest pair of adjacent shards that does not include it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReshardPlan {
    pub split: String,
    pub new_starting_hash_key: u128,
    /// `None` when no two other shards are adjacent (a stream of one or two shards).
    pub merge: Option<(String, String)>,
}

/// Plans a split and a merge over the open shards. `None` when no shard can be split (a hash
/// range of one key cannot be).
pub fn plan_reshard(open: &[ShardLoad]) -> Option<ReshardPlan> {
    let hottest = open.iter().filter(|s| s.range.ending_hash_key > s.range.starting_hash_key).max_by(|a, b| {
        a.records.cmp(&b.records).then_with(|| b.range.starting_hash_key.cmp(&a.range.starting_hash_key))
    })?;
    let (start, end) = (hottest.range.starting_hash_key, hottest.range.ending_hash_key);
    let new_starting_hash_key = start + (end - start) / 2 + 1;
    let mut others: Vec<&ShardLoad> = open.iter().filter(|s| s.range.shard_id != hottest.range.shard_id).collect();
    others.sort_by_key(|s| s.range.starting_hash_key);
    let merge = others
        .windows(2)
        .filter(|pair| pair[0].range.ending_hash_key.checked_add(1) == Some(pair[1].range.starting_hash_key))
        .min_by_key(|pair| pair[0].records + pair[1].records)
        .map(|pair| (pair[0].range.shard_id.clone(), pair[1].range.shard_id.clone()));
    Some(ReshardPlan { split: hottest.range.shard_id.clone(), new_starting_hash_key, merge })
}

/// Which PutRecords entries a simulated throttle refuses. Deterministic for a seed, call and
/// entry, so a run refuses the same entries when repeated. Used where the target never throttles
/// (emulators), to show what a partial failure does to order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalPlan {
    pub seed: u64,
    /// Share of entries refused, 0 to 100.
    pub percent: u32,
}

impl RefusalPlan {
    pub fn refuses(&self, call: u64, entry: u64) -> bool {
        // splitmix64 over the three inputs: cheap, well mixed, no state.
        let mut z = self.seed ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ entry.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z % 100 < u64::from(self.percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{hash_key, shard_for_key};

    fn spec(namespace: &str, seed: u64, orders: usize, in_flight: usize) -> OrderSpec {
        OrderSpec { namespace: namespace.into(), seed, orders, customers: Customers::Even { customers: 20 }, in_flight }
    }

    #[test]
    fn generation_is_deterministic_and_namespaced() {
        let a = spec("ko", 1, 50, 8);
        assert_eq!(generate(&a), generate(&a));
        let b = spec("rs", 1, 50, 8);
        let ids_a: HashSet<String> = generate(&a).into_iter().map(|e| e.order_id).collect();
        assert!(generate(&b).iter().all(|e| !ids_a.contains(&e.order_id)));
        assert_ne!(
            generate(&a).iter().map(|e| e.step).collect::<Vec<_>>(),
            generate(&b).iter().map(|e| e.step).collect::<Vec<_>>(),
            "same seed, other namespace: another interleaving"
        );
    }

    #[test]
    fn every_order_is_a_full_prefix_of_the_lifecycle_emitted_in_step_order() {
        let events = generate(&spec("ko", 7, 300, 16));
        let steps = steps_per_order(&events);
        assert_eq!(steps.len(), 300);
        let mut next: HashMap<&str, u32> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.emitted, i as u64);
            let expected = next.entry(&event.order_id).or_insert(1);
            assert_eq!(event.step, *expected, "{event:?}");
            assert_eq!(event.status, STATUSES[event.step as usize - 1]);
            *expected += 1;
        }
        assert!(steps.values().all(|&s| (3..=5).contains(&s)));
        assert_eq!(events.len() as u32, steps.values().sum::<u32>());
    }

    #[test]
    fn orders_interleave_and_in_flight_bounds_how_far() {
        let events = generate(&spec("ko", 2, 100, 4));
        // Orders are interleaved: some order's next step comes after another order's event.
        let steps = steps_per_order(&events);
        assert!(events.windows(2).any(|w| w[0].order_id != w[1].order_id && w[0].step < steps[&w[0].order_id]));
        let mut open: HashSet<&str> = HashSet::new();
        for event in &events {
            open.insert(&event.order_id);
            assert!(open.len() <= 4);
            if event.step == steps[&event.order_id] {
                open.remove(event.order_id.as_str());
            }
        }
    }

    #[test]
    fn zipf_customers_concentrate_on_the_few_biggest() {
        let skewed = OrderSpec {
            customers: Customers::Zipf { customers: 50, exponent_hundredths: 150 },
            ..spec("hs", 1, 4000, 16)
        };
        let events = generate(&skewed);
        let orders: HashMap<&str, &str> =
            events.iter().map(|e| (e.order_id.as_str(), e.customer_id.as_str())).collect();
        let share = |ids: &[&str]| orders.values().filter(|c| ids.contains(c)).count() as f64 / orders.len() as f64;
        // 1/n^1.5 over 50 customers: the first places about 43%, the first three about 67%.
        assert!((0.39..0.47).contains(&share(&["cust-000"])), "{}", share(&["cust-000"]));
        assert!((0.62..0.72).contains(&share(&["cust-000", "cust-001", "cust-002"])));
        assert!(orders.values().any(|c| *c == "cust-049"), "the long tail still orders");
    }

    #[test]
    fn with_room_for_every_order_all_start_before_any_moves_on() {
        let events = generate(&spec("rs", 1, 30, 30));
        assert!(events[..30].iter().all(|e| e.step == 1));
        assert!(events[30..].iter().all(|e| e.step > 1));
    }

    #[test]
    fn judge_tells_each_kind_of_violation_apart() {
        assert_eq!(judge(3, &[1, 2, 3], 0), Verdict::InOrder);
        assert_eq!(judge(3, &[1, 3, 2], 0), Verdict::Reordered);
        assert_eq!(judge(3, &[1, 2, 3, 2], 0), Verdict::Reordered, "a late copy is out of order");
        assert_eq!(judge(3, &[1, 2, 2, 3], 0), Verdict::Duplicated);
        assert_eq!(judge(3, &[1, 3], 0), Verdict::Missing { missing: vec![2] });
        assert_eq!(judge(3, &[2, 3], 0), Verdict::Missing { missing: vec![1] });
        assert_eq!(judge(3, &[], 0), Verdict::Missing { missing: vec![1, 2, 3] });
        assert_eq!(judge(3, &[1, 4], 0), Verdict::UnknownStep { step: 4 });
        assert_eq!(judge(3, &[0, 1], 0), Verdict::UnknownStep { step: 0 });
    }

    #[test]
    fn an_excused_loss_covers_only_the_first_steps_proved_lost() {
        assert_eq!(judge(5, &[3, 4, 5], 2), Verdict::InOrderAfterLoss { lost: 2 });
        assert_eq!(judge(5, &[3, 4, 5], 4), Verdict::InOrderAfterLoss { lost: 2 });
        // More missing than was proved to be in a deleted parent.
        assert_eq!(judge(5, &[3, 4, 5], 1), Verdict::Missing { missing: vec![2] });
        // An order with no arrivals at all is never accepted, whatever was excused.
        assert_eq!(judge(5, &[], 5), Verdict::Missing { missing: vec![1, 2, 3, 4, 5] });
        assert_eq!(judge(5, &[1, 2, 3, 4, 5], 3), Verdict::InOrder);
        // A hole after the first arrival is not explained by a lost parent shard.
        assert_eq!(judge(5, &[2, 4, 5], 3), Verdict::Missing { missing: vec![3] });
        // Nor is a missing tail, nor disorder.
        assert_eq!(judge(5, &[3, 4], 2), Verdict::Missing { missing: vec![5] });
        assert_eq!(judge(5, &[4, 3, 5], 3), Verdict::Reordered);
    }

    #[test]
    fn check_order_reports_violations_and_ignores_other_orders() {
        let expected = BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 2), ("c".to_owned(), 3)]);
        let arrivals = [("a", 1), ("b", 2), ("x", 1), ("a", 2), ("b", 1), ("a", 3), ("c", 2), ("c", 3)];
        let report = check_order(&expected, arrivals, |id| if id == "c" { 1 } else { 0 });
        assert_eq!(report.orders, 3);
        assert_eq!(report.records, 7);
        assert_eq!(report.in_order, 1);
        assert_eq!(report.in_order_after_loss, 1);
        assert_eq!(report.lost_steps, 1);
        assert_eq!(report.reordered(), 1);
        assert_eq!(
            report.violations,
            vec![OrderTrace { order_id: "b".into(), arrival: vec![2, 1], verdict: Verdict::Reordered }]
        );
        assert!(!report.is_ok());
        let fine =
            check_order(&expected, [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2)], |id| u32::from(id == "c"));
        assert!(!fine.is_ok(), "order c has no arrivals at all: {fine:?}");
        let fine = check_order(&expected, [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 3)], |id| {
            if id == "c" { 2 } else { 0 }
        });
        assert!(fine.is_ok(), "{fine:?}");
    }

    #[test]
    fn only_an_unbroken_run_of_first_steps_is_proved_lost() {
        let events = generate(&spec("rs", 3, 20, 20));
        // Everything emitted before event 25 was in a deleted shard.
        let lost = proved_lost_first_steps(&events, |e| e.emitted < 25);
        assert_eq!(lost.len(), 20, "all 20 orders start within the first 20 events");
        for (order, count) in &lost {
            let early = events.iter().filter(|e| &e.order_id == order && e.emitted < 25).count() as u32;
            assert_eq!(*count, early, "{order}");
        }
        // A later step in a deleted shard does not excuse an earlier one that was not.
        let lost = proved_lost_first_steps(&events, |e| e.step == 2);
        assert!(lost.is_empty(), "{lost:?}");
    }

    fn node(id: &str, a: Option<&str>, b: Option<&str>) -> (String, [Option<String>; 2]) {
        (id.to_owned(), [a.map(str::to_owned), b.map(str::to_owned)])
    }

    #[test]
    fn orphans_are_shards_whose_parents_are_not_listed() {
        // AWS after a split of 2 and a merge of 0 and 1: everything listed, no orphans.
        let kept = vec![
            node("0", None, None),
            node("1", None, None),
            node("2", None, None),
            node("3", Some("2"), None),
            node("4", Some("2"), None),
            node("5", Some("0"), Some("1")),
        ];
        assert!(orphans(&kept, Clone::clone).is_empty());
        // MiniStack after the same: the parents are gone.
        let deleted = vec![node("3", Some("2"), None), node("4", Some("2"), None), node("5", Some("0"), Some("1"))];
        assert_eq!(
            orphans(&deleted, Clone::clone),
            vec![(0, vec!["2".to_owned()]), (1, vec!["2".to_owned()]), (2, vec!["0".to_owned(), "1".to_owned()])]
        );
    }

    /// The hash key ranges Kinesis (and MiniStack) report for a new stream of 4 shards, as text.
    fn four_shards() -> Vec<ShardRange> {
        [
            ("shardId-000000000000", "0", "85070591730234615865843651857942052863"),
            (
                "shardId-000000000001",
                "85070591730234615865843651857942052864",
                "170141183460469231731687303715884105727",
            ),
            (
                "shardId-000000000002",
                "170141183460469231731687303715884105728",
                "255211775190703847597530955573826158591",
            ),
            (
                "shardId-000000000003",
                "255211775190703847597530955573826158592",
                "340282366920938463463374607431768211455",
            ),
        ]
        .iter()
        .map(|(id, start, end)| ShardRange::parse(id, start, end).unwrap())
        .collect()
    }

    #[test]
    fn keys_map_to_the_shards_the_stream_reports() {
        let ranges = four_shards();
        // md5 computed independently (Python hashlib); its top two bits pick the quarter.
        let cases = [
            ("cust-000", 0xf7602952_u32, 3),
            ("cust-001", 0x05bbf6e4, 0),
            ("cust-002", 0x61bb3650, 1),
            ("ko1-o00001", 0x9b55b81c, 2),
        ];
        for (key, top, shard) in cases {
            assert_eq!((hash_key(key) >> 96) as u32, top, "{key}");
            assert_eq!(shard_for_key(&ranges, key), Some(shard), "{key}");
        }
    }

    fn load(id: &str, start: u128, end: u128, records: usize) -> ShardLoad {
        ShardLoad { range: ShardRange { shard_id: id.into(), starting_hash_key: start, ending_hash_key: end }, records }
    }

    #[test]
    fn plan_splits_the_busiest_and_merges_the_quietest_adjacent_pair() {
        let ranges = four_shards();
        let loads: Vec<ShardLoad> =
            ranges.iter().zip([40, 90, 10, 20]).map(|(r, n)| ShardLoad { range: r.clone(), records: n }).collect();
        let plan = plan_reshard(&loads).unwrap();
        assert_eq!(plan.split, "shardId-000000000001");
        assert!(ranges[1].contains(plan.new_starting_hash_key));
        assert!(plan.new_starting_hash_key > ranges[1].starting_hash_key);
        assert_eq!(plan.merge, Some(("shardId-000000000002".into(), "shardId-000000000003".into())));

        // The hottest in the middle of two cold ones that are not adjacent: merge the others.
        let plan =
            plan_reshard(&[load("a", 0, 9, 1), load("b", 10, 19, 9), load("c", 20, 29, 1), load("d", 30, 39, 5)])
                .unwrap();
        assert_eq!(plan.split, "b");
        assert_eq!(plan.new_starting_hash_key, 15);
        assert_eq!(plan.merge, Some(("c".into(), "d".into())));

        // Two shards: a split, nothing to merge. A one-key range cannot be split.
        assert_eq!(plan_reshard(&[load("a", 0, 9, 5), load("b", 10, 19, 1)]).unwrap().merge, None);
        assert_eq!(plan_reshard(&[load("a", 5, 5, 5)]), None);
    }

    #[test]
    fn refusals_are_deterministic_and_near_the_rate() {
        let plan = RefusalPlan { seed: 3, percent: 20 };
        let refused = (0..10_000).filter(|i| plan.refuses(i / 100, i % 100)).count();
        assert!((1_700..2_300).contains(&refused), "{refused}");
        assert_eq!(
            (0..50).map(|i| plan.refuses(1, i)).collect::<Vec<_>>(),
            (0..50).map(|i| plan.refuses(1, i)).collect::<Vec<_>>()
        );
        assert!((0..1000).all(|i| !RefusalPlan { seed: 1, percent: 0 }.refuses(0, i)));
        assert!((0..1000).all(|i| RefusalPlan { seed: 1, percent: 100 }.refuses(0, i)));
    }
}
