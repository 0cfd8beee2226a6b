//! Example 2's messages: orders published to an SNS topic and fanned out to SQS queues.
//!
//! One definition for every party: the publisher in `labs`, the consumers inside `labs`, the
//! `shipping-worker` Lambda, and the verifier. Orders come from a seeded generator, so `labs verify
//! example-2` regenerates what each run sent from the [`Publication`]s recorded on the topic and
//! compares it with what the consumers did ([`Effect`]s) and what the dead-letter queues hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The analytics subscription's filter policy passes orders whose `total` attribute is at least this.
pub const ANALYTICS_MIN_TOTAL: f64 = 100.0;
/// The message attribute the filter policy reads (a `Number`).
pub const TOTAL_ATTRIBUTE: &str = "total";
/// An order is about 100 bytes; anything far larger is refused before it is parsed.
pub const MAX_ORDER_BYTES: usize = 4096;
/// The `consumer` of the rows the shipping worker writes for messages it could not handle.
pub const REJECTED: &str = "shipping-rejected";
/// The `consumer` of the rows billing writes for orders it received directly, as a webhook,
/// rather than through its queue (scenario `direct`).
pub const WEBHOOK: &str = "billing-webhook";

/// Which orders of a direct run (by index) are sent while their consumer is down: the middle
/// third. Derived from the count alone, so `verify` knows which ones the webhook never got.
pub fn consumer_down(count: usize) -> Range<usize> {
    count / 3..2 * count / 3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub total: f64,
    /// The publisher's sequence number: the order in which this run sent its orders.
    pub seq: u64,
}

impl Order {
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("orders serialize")
    }

    /// The `total` message attribute: a decimal string, as SNS numeric filters expect.
    pub fn total_attribute(&self) -> String {
        format!("{:.2}", self.total)
    }

    pub fn passes_analytics_filter(&self) -> bool {
        self.total >= ANALYTICS_MIN_TOTAL
    }
}

/// The orders of one run. Order ids embed the seed, so runs with different seeds never collide.
/// Most orders are small and about a third are large; the second and third sit either side of
/// the analytics threshold (100.00 passes, 99.99 does not), so the filter's edge is always shown.
#[cfg(feature = "generators")]
pub fn generate(seed: u64, count: usize) -> Vec<Order> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let cents: u64 = match i {
                1 => 10_000,
                2 => 9_999,
                _ if rng.random_bool(0.35) => rng.random_range(10_000..=30_000),
                _ => rng.random_range(500..10_000),
            };
            Order {
                order_id: format!("s{seed}-o{:04}", i + 1),
                customer_id: format!("cust-{:03}", rng.random_range(0..40)),
                total: cents as f64 / 100.0,
                seq: i as u64 + 1,
            }
        })
        .collect()
}

/// Why a message body is not an order. Each is one line, meant for a log or a table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrderError {
    #[error("the message body is empty")]
    Empty,
    #[error("the message body is {bytes} bytes; an order is at most {MAX_ORDER_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the message body is not JSON: {0}")]
    NotJson(String),
    #[error("the message body is not an order: {0}")]
    NotAnOrder(String),
}

/// Reads an order from a message body, or says in one line why it cannot.
pub fn parse_order(body: &str) -> Result<Order, OrderError> {
    if body.trim().is_empty() {
        return Err(OrderError::Empty);
    }
    if body.len() > MAX_ORDER_BYTES {
        return Err(OrderError::TooLarge { bytes: body.len() });
    }
    let order: Order = serde_json::from_str(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => OrderError::NotAnOrder(e.to_string()),
        _ => OrderError::NotJson(e.to_string()),
    })?;
    if order.order_id.trim().is_empty() {
        return Err(OrderError::NotAnOrder("order_id is empty".to_owned()));
    }
    if order.customer_id.trim().is_empty() {
        return Err(OrderError::NotAnOrder("customer_id is empty".to_owned()));
    }
    if !order.total.is_finite() || order.total < 0.0 {
        return Err(OrderError::NotAnOrder(format!("total must be a number of at least 0, not {}", order.total)));
    }
    Ok(order)
}

/// A body shortened to one printable line, for tables and logs.
pub fn preview(body: &str, max_chars: usize) -> String {
    let flat: String = body.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max_chars {
        flat
    } else {
        format!("{}...", flat.chars().take(max_chars).collect::<String>())
    }
}

/// The queues subscribed to the orders topic, each with its own consumer and dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subscriber {
    Billing,
    Shipping,
    Analytics,
}

impl Subscriber {
    pub const ALL: [Subscriber; 3] = [Subscriber::Billing, Subscriber::Shipping, Subscriber::Analytics];

    /// Its name in queue names (`<prefix>-ex2-<name>`) and in the effects table's `consumer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscriber::Billing => "billing",
            Subscriber::Shipping => "shipping",
            Subscriber::Analytics => "analytics",
        }
    }
}

impl fmt::Display for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run sent its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// Published to the topic: every queue gets a copy (analytics only past its filter).
    Topic,
    /// Sent straight to the billing queue.
    Billing,
    /// Sent straight to the billing queue, with one poison message among the orders.
    BillingWithPoison,
    /// Sent straight to the shipping queue, with one message the shipping worker must reject.
    ShippingWithReject,
    /// Each order twice: posted straight to billing's webhook, and sent to the billing queue;
    /// billing is down for the middle third ([`consumer_down`]).
    Direct,
}

impl Route {
    const NAMES: [(Route, &'static str); 5] = [
        (Route::Topic, "topic"),
        (Route::Billing, "billing"),
        (Route::BillingWithPoison, "billing+poison"),
        (Route::ShippingWithReject, "shipping+reject"),
        (Route::Direct, "direct"),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES.iter().find(|(route, _)| *route == self).map(|(_, name)| *name).expect("every route is named")
    }

    fn parse(text: &str) -> Option<Route> {
        Self::NAMES.iter().find(|(_, name)| *name == text).map(|(route, _)| *route)
    }
}

/// What one run sent: recorded on the topic as the tag `labs:run:<seed>` = `<route>:<count>`
/// before anything is sent, so a run that stops halfway shows up as missing orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Publication {
    pub seed: u64,
    pub route: Route,
    pub count: usize,
}

pub const RUN_TAG: &str = "labs:run:";

impl Publication {
    pub fn tag(&self) -> (String, String) {
        (format!("{RUN_TAG}{}", self.seed), format!("{}:{}", self.route.as_str(), self.count))
    }

    /// Reads a tag written by [`Publication::tag`] (and perhaps extended by
    /// [`Observation::tag_value`]); other tags give `None`.
    pub fn from_tag(key: &str, value: &str) -> Option<Self> {
        let seed = key.strip_prefix(RUN_TAG)?.parse().ok()?;
        let head = value.split(' ').next()?;
        let (route, count) = head.split_once(':')?;
        Some(Self { seed, route: Route::parse(route)?, count: count.parse().ok()? })
    }

    #[cfg(feature = "generators")]
    pub fn orders(&self) -> Vec<Order> {
        generate(self.seed, self.count)
    }

    /// The message this run sent that must end in a dead-letter queue, and which one.
    pub fn dead_letter(&self) -> Option<(Subscriber, String)> {
        match self.route {
            Route::BillingWithPoison => Some((Subscriber::Billing, poison_body(self.seed))),
            Route::ShippingWithReject => Some((Subscriber::Shipping, unshippable_body(self.seed))),
            Route::Topic | Route::Billing | Route::Direct => None,
        }
    }
}

/// What a run saw, recorded after the publication in the same tag value, so `verify` can hold
/// the run's account against the effects table and the regenerated orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Observation {
    /// Fan-out: how many of the run's orders each subscriber handled (billing, shipping,
    /// analytics), counted in the effects table.
    FanOut { handled: [usize; 3] },
    /// Load balancing: how many of the run's orders each competing consumer applied.
    LoadBalance { shares: Vec<(String, usize)> },
    /// Redelivery: the order whose consumer crashed, and the seqs in the order the surviving
    /// consumer processed them.
    Redelivery { crashed_seq: u64, processing: Vec<u64> },
    /// Direct: how many of the run's orders reached billing's webhook, how many it lost (posted
    /// while billing was down), and how many reached billing through its queue.
    Direct { webhook: usize, lost: usize, queue: usize },
}

impl Observation {
    /// The publication's tag value followed by this observation: `fan-out=3/3/1`,
    /// `load-balance=consumer-1:10/consumer-2:9`, `redelivery=1@2,3,1`.
    pub fn tag_value(&self, publication: &Publication) -> String {
        let (_, head) = publication.tag();
        let text = match self {
            Observation::FanOut { handled: [b, s, a] } => format!("fan-out={b}/{s}/{a}"),
            Observation::LoadBalance { shares } => {
                format!("load-balance={}", shares.iter().map(|(c, n)| format!("{c}:{n}")).collect::<Vec<_>>().join("/"))
            }
            Observation::Redelivery { crashed_seq, processing } => format!(
                "redelivery={crashed_seq}@{}",
                processing.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
            ),
            Observation::Direct { webhook, lost, queue } => format!("direct={webhook}/{lost}/{queue}"),
        };
        format!("{head} {text}")
    }

    /// The observation in a tag value, if the run recorded one; `Err` when it is there but
    /// unreadable (a verifier must not skip it).
    pub fn from_tag_value(value: &str) -> Result<Option<Self>, String> {
        let Some((_, text)) = value.split_once(' ') else { return Ok(None) };
        let bad = || format!("unreadable observation '{text}'");
        let (kind, body) = text.split_once('=').ok_or_else(bad)?;
        let number = |t: &str| t.parse::<u64>().map_err(|_| bad());
        Ok(Some(match kind {
            "fan-out" => {
                let counts: Vec<usize> =
                    body.split('/').map(|t| t.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
                Observation::FanOut { handled: counts.try_into().map_err(|_| bad())? }
            }
            "load-balance" => Observation::LoadBalance {
                shares: body
                    .split('/')
                    .map(|share| {
                        let (consumer, n) = share.split_once(':').ok_or_else(bad)?;
                        Ok((consumer.to_owned(), n.parse().map_err(|_| bad())?))
                    })
                    .collect::<Result<_, String>>()?,
            },
            "redelivery" => {
                let (crashed, order) = body.split_once('@').ok_or_else(bad)?;
                Observation::Redelivery {
                    crashed_seq: number(crashed)?,
                    processing: order.split(',').map(number).collect::<Result<_, _>>()?,
                }
            }
            "direct" => {
                let counts: Vec<usize> =
                    body.split('/').map(|t| t.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
                let [webhook, lost, queue] = counts.try_into().map_err(|_| bad())?;
                Observation::Direct { webhook, lost, queue }
            }
            _ => return Err(bad()),
        }))
    }

    /// Holds what the run recorded against the effects table and the regenerated orders: the
    /// counts must be the table's, the split must be real, the reordering must have happened.
    #[cfg(feature = "generators")]
    pub fn check(&self, publication: &Publication, effects: &[Effect]) -> Finding {
        let orders = publication.orders();
        let ids: BTreeSet<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
        let rows = |subscriber: Subscriber| -> Vec<&Effect> {
            effects.iter().filter(|e| e.consumer == subscriber.as_str() && ids.contains(e.id.as_str())).collect()
        };
        let seed = publication.seed;
        let mut problems = Vec::new();
        let check = match self {
            Observation::FanOut { handled } => {
                let passing = orders.iter().filter(|o| o.passes_analytics_filter()).count();
                let wanted = [orders.len(), orders.len(), passing];
                for (i, subscriber) in Subscriber::ALL.into_iter().enumerate() {
                    let in_table = rows(subscriber).len();
                    if handled[i] != in_table || in_table != wanted[i] {
                        problems.push(format!(
                            "{subscriber}: the run reported {}, the effects table holds {in_table}, {} were sent its way",
                            handled[i], wanted[i]
                        ));
                    }
                }
                format!("fan-out run {seed}: each queue's count is in the effects table")
            }
            Observation::LoadBalance { shares } => {
                let billed = rows(Subscriber::Billing);
                let mut in_table: BTreeMap<&str, usize> = BTreeMap::new();
                for row in &billed {
                    *in_table.entry(row.handled_by.as_str()).or_default() += 1;
                }
                let recorded: BTreeMap<&str, usize> =
                    shares.iter().filter(|(_, n)| *n > 0).map(|(c, n)| (c.as_str(), *n)).collect();
                if recorded != in_table {
                    problems.push(format!("the run reported {recorded:?}, the effects table holds {in_table:?}"));
                }
                if in_table.len() < 2 {
                    problems.push(format!("{} consumer(s) did all the work: nothing was shared", in_table.len()));
                }
                if billed.len() != orders.len() {
                    problems.push(format!("{} of {} orders were applied", billed.len(), orders.len()));
                }
                format!("load-balance run {seed}: the work was split between consumers, each order once")
            }
            Observation::Redelivery { crashed_seq, processing } => {
                // At-least-once: a seq may come twice, but every published one must come.
                let mut sorted = processing.clone();
                sorted.sort_unstable();
                sorted.dedup();
                let published: Vec<u64> = orders.iter().map(|o| o.seq).collect();
                let crashed = orders.iter().find(|o| o.seq == *crashed_seq);
                let position = processing.iter().position(|s| s == crashed_seq);
                if sorted != published {
                    problems.push(format!("processed seqs {processing:?} are not the published {published:?}"));
                }
                match position {
                    Some(at) if processing[..at].iter().any(|s| s > crashed_seq) => {}
                    _ => problems.push(format!("seq {crashed_seq} did not come back after a later one")),
                }
                let billed = rows(Subscriber::Billing);
                match crashed.and_then(|o| billed.iter().find(|e| e.id == o.order_id)) {
                    Some(row) if row.deliveries >= 2 => {}
                    Some(row) => problems.push(format!("{} was delivered {} time(s)", row.id, row.deliveries)),
                    None => problems.push(format!("no effect of seq {crashed_seq} in the effects table")),
                }
                if billed.len() != orders.len() {
                    problems.push(format!("{} of {} orders were applied", billed.len(), orders.len()));
                }
                format!("redelivery run {seed}: the unacknowledged order came back behind later ones, applied once")
            }
            Observation::Direct { webhook, lost, queue } => {
                let down = consumer_down(orders.len());
                let posted_up = orders.len() - down.len();
                let at_webhook: BTreeSet<&str> = effects
                    .iter()
                    .filter(|e| e.consumer == WEBHOOK && ids.contains(e.id.as_str()))
                    .map(|e| e.id.as_str())
                    .collect();
                let lost_in_table = orders[down].iter().filter(|o| !at_webhook.contains(o.order_id.as_str())).count();
                let queued = rows(Subscriber::Billing).len();
                for (path, reported, in_table, wanted) in [
                    ("webhook", *webhook, at_webhook.len(), posted_up),
                    ("lost", *lost, lost_in_table, orders.len() - posted_up),
                    ("queue", *queue, queued, orders.len()),
                ] {
                    if reported != in_table || in_table != wanted {
                        problems.push(format!(
                            "{path}: the run reported {reported}, the effects table says {in_table}, the run implies {wanted}"
                        ));
                    }
                }
                format!("direct run {seed}: the webhook lost what was posted while billing was down, the queue nothing")
            }
        };
        Finding { check, problems }
    }
}

/// A body no consumer can read: it is cut off in the middle of its JSON.
pub fn poison_body(seed: u64) -> String {
    format!("{{\"order_id\": \"s{seed}-poison\", \"customer_id\": \"cust-000\", \"total\": 12.")
}

/// Well-formed JSON, but not an order: it has no customer to ship to.
pub fn unshippable_body(seed: u64) -> String {
    format!("{{\"order_id\":\"s{seed}-unshippable\",\"total\":42.0,\"seq\":0}}")
}

/// What a consumer did with one order: a row of the effects table (partition key `consumer`,
/// sort key `id`). Writing it is the consumer's side effect, made idempotent by its key: a
/// redelivered order finds its row and only adds to `deliveries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub consumer: String,
    /// The order id.
    pub id: String,
    #[serde(default)]
    pub seq: u64,
    /// Which consumer instance applied the effect (the first delivery).
    #[serde(default)]
    pub handled_by: String,
    /// How many times the order was delivered to this consumer, redeliveries included.
    #[serde(default)]
    pub deliveries: u64,
}

/// A message the shipping worker could not handle (partition key [`REJECTED`], sort key the SQS
/// message id): why, how often, and the size of each batch it came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub consumer: String,
    pub id: String,
    pub reason: String,
    #[serde(default)]
    pub attempts: u64,
    #[serde(default)]
    pub batch_sizes: Vec<u64>,
    #[serde(default)]
    pub body: String,
}

/// What the consumers and dead-letter queues must hold after the recorded runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Expectation {
    pub orders: BTreeMap<Subscriber, BTreeSet<String>>,
    /// Orders published to the topic that the analytics filter must keep out.
    pub filtered_out: BTreeSet<String>,
    /// The bodies each dead-letter queue must hold, sorted.
    pub dead_letters: BTreeMap<Subscriber, Vec<String>>,
    /// Orders posted to billing's webhook while it was up: each must have reached it.
    pub webhook: BTreeSet<String>,
    /// Orders posted to billing's webhook while it was down: lost, none may be there.
    pub lost: BTreeSet<String>,
}

#[cfg(feature = "generators")]
pub fn expect(publications: &[Publication]) -> Expectation {
    let mut expected = Expectation::default();
    for subscriber in Subscriber::ALL {
        expected.orders.insert(subscriber, BTreeSet::new());
        expected.dead_letters.insert(subscriber, Vec::new());
    }
    for publication in publications {
        let down = consumer_down(publication.count);
        for (index, order) in publication.orders().into_iter().enumerate() {
            if publication.route == Route::Direct {
                let direct = if down.contains(&index) { &mut expected.lost } else { &mut expected.webhook };
                direct.insert(order.order_id.clone());
            }
            let mut to = |subscriber: Subscriber| {
                expected.orders.get_mut(&subscriber).expect("every subscriber").insert(order.order_id.clone());
            };
            match publication.route {
                Route::Topic => {
                    to(Subscriber::Billing);
                    to(Subscriber::Shipping);
                    if order.passes_analytics_filter() {
                        to(Subscriber::Analytics);
                    } else {
                        expected.filtered_out.insert(order.order_id.clone());
                    }
                }
                Route::Billing | Route::BillingWithPoison | Route::Direct => to(Subscriber::Billing),
                Route::ShippingWithReject => to(Subscriber::Shipping),
            }
        }
        if let Some((subscriber, body)) = publication.dead_letter() {
            expected.dead_letters.get_mut(&subscriber).expect("every subscriber").push(body);
        }
    }
    for bodies in expected.dead_letters.values_mut() {
        bodies.sort();
    }
    expected
}

/// One check of `labs verify example-2` and what it found wrong (order ids or message bodies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: String,
    pub problems: Vec<String>,
}

impl Finding {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Compares the consumers' effects and the dead-letter queues' bodies with what the recorded
/// runs imply. Every finding is listed, passed or not, in a fixed order.
pub fn check(
    expected: &Expectation,
    effects: &[Effect],
    dead_letters: &BTreeMap<Subscriber, Vec<String>>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for subscriber in Subscriber::ALL {
        let wanted = &expected.orders[&subscriber];
        let handled: BTreeSet<&String> =
            effects.iter().filter(|e| e.consumer == subscriber.as_str()).map(|e| &e.id).collect();
        findings.push(Finding {
            check: format!("{subscriber}: every order sent its way was handled"),
            problems: wanted.iter().filter(|id| !handled.contains(id)).map(|id| format!("missing {id}")).collect(),
        });
        let unexpected: Vec<&String> = handled.iter().copied().filter(|id| !wanted.contains(*id)).collect();
        if subscriber == Subscriber::Analytics {
            let (leaked, other): (Vec<&String>, Vec<&String>) =
                unexpected.into_iter().partition(|id| expected.filtered_out.contains(*id));
            findings.push(Finding {
                check: "analytics: no order its filter excludes got through".to_owned(),
                problems: leaked.iter().map(|id| format!("filter let through {id}")).collect(),
            });
            findings.push(Finding {
                check: "analytics: it handled nothing else".to_owned(),
                problems: other.iter().map(|id| format!("unexpected {id}")).collect(),
            });
        } else {
            findings.push(Finding {
                check: format!("{subscriber}: it handled nothing else"),
                problems: unexpected.iter().map(|id| format!("unexpected {id}")).collect(),
            });
        }
    }
    for subscriber in Subscriber::ALL {
        let wanted = &expected.dead_letters[&subscriber];
        let mut found = dead_letters.get(&subscriber).cloned().unwrap_or_default();
        found.sort();
        findings.push(Finding {
            check: format!("{subscriber}-dlq holds exactly the messages its consumer could not handle"),
            problems: multiset_difference(wanted, &found, "missing")
                .into_iter()
                .chain(multiset_difference(&found, wanted, "unexpected"))
                .collect(),
        });
    }
    findings.extend(check_webhook(expected, effects));
    findings
}

/// The direct path: the webhook got exactly the orders posted while it was up, and none of those
/// posted while it was down (they were lost, and nothing may pretend otherwise).
fn check_webhook(expected: &Expectation, effects: &[Effect]) -> [Finding; 3] {
    let got: BTreeSet<&String> = effects.iter().filter(|e| e.consumer == WEBHOOK).map(|e| &e.id).collect();
    let other = got.iter().filter(|id| !expected.webhook.contains(**id) && !expected.lost.contains(**id));
    [
        Finding {
            check: format!("{WEBHOOK}: every order posted while it was up arrived"),
            problems: expected
                .webhook
                .iter()
                .filter(|id| !got.contains(id))
                .map(|id| format!("missing {id}"))
                .collect(),
        },
        Finding {
            check: format!("{WEBHOOK}: no order posted while it was down arrived (they were lost)"),
            problems: expected
                .lost
                .iter()
                .filter(|id| got.contains(id))
                .map(|id| format!("{id} arrived though it was posted while the consumer was down"))
                .collect(),
        },
        Finding {
            check: format!("{WEBHOOK}: it handled nothing else"),
            problems: other.map(|id| format!("unexpected {id}")).collect(),
        },
    ]
}

/// Each element of `a` (sorted) not matched by one in `b` (sorted), as "`label` <preview>".
fn multiset_difference(a: &[String], b: &[String], label: &str) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for body in b {
        *counts.entry(body.as_str()).or_default() += 1;
    }
    a.iter()
        .filter(|body| match counts.get_mut(body.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .map(|body| format!("{label} {}", preview(body, 80)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(consumer: &str, id: &str, handled_by: &str, deliveries: u64) -> Effect {
        Effect { consumer: consumer.into(), id: id.into(), seq: 0, handled_by: handled_by.into(), deliveries }
    }

    #[test]
    fn observations_read_back_as_written_and_leave_the_publication_readable() {
        let publication = Publication { seed: 7, route: Route::Topic, count: 30 };
        for observed in [
            Observation::FanOut { handled: [30, 30, 11] },
            Observation::LoadBalance { shares: vec![("consumer-1".into(), 12), ("consumer-2".into(), 18)] },
            Observation::Redelivery { crashed_seq: 1, processing: vec![2, 3, 1] },
            Observation::Direct { webhook: 20, lost: 10, queue: 30 },
        ] {
            let value = observed.tag_value(&publication);
            assert_eq!(Observation::from_tag_value(&value), Ok(Some(observed)));
            assert_eq!(Publication::from_tag("labs:run:7", &value), Some(publication));
        }
        assert_eq!(Observation::from_tag_value("topic:30"), Ok(None));
        assert!(Observation::from_tag_value("topic:30 fan-out=1/2").is_err());
        assert!(Observation::from_tag_value("topic:30 sideways=1").is_err());
    }

    #[test]
    fn an_observation_is_held_against_the_effects_table() {
        let publication = Publication { seed: 4, route: Route::Billing, count: 3 };
        let ids: Vec<String> = publication.orders().into_iter().map(|o| o.order_id).collect();
        let rows = |by: [&str; 3], deliveries: [u64; 3]| -> Vec<Effect> {
            (0..3).map(|i| row("billing", &ids[i], by[i], deliveries[i])).collect()
        };
        let redelivery = Observation::Redelivery { crashed_seq: 1, processing: vec![2, 3, 1] };
        let fine = rows(["consumer-A", "consumer-B", "consumer-B"], [2, 1, 1]);
        assert!(redelivery.check(&publication, &fine).passed());
        // Delivered once only: the lesson did not happen.
        assert!(!redelivery.check(&publication, &rows(["consumer-A", "consumer-B", "consumer-B"], [1, 1, 1])).passed());
        // Claimed in publish order, or with a seq lost or twice.
        for processing in [vec![1, 2, 3], vec![2, 1], vec![2, 2, 1]] {
            let claim = Observation::Redelivery { crashed_seq: 1, processing };
            assert!(!claim.check(&publication, &fine).passed(), "{claim:?}");
        }
        // A lost effect row.
        assert!(!redelivery.check(&publication, &fine[..2]).passed());

        let shares =
            |a, b| Observation::LoadBalance { shares: vec![("consumer-1".into(), a), ("consumer-2".into(), b)] };
        let split = rows(["consumer-1", "consumer-2", "consumer-2"], [1, 1, 1]);
        assert!(shares(1, 2).check(&publication, &split).passed());
        assert!(!shares(2, 1).check(&publication, &split).passed(), "the run's account differs from the table");
        let alone = rows(["consumer-1", "consumer-1", "consumer-1"], [1, 1, 1]);
        assert!(!shares(3, 0).check(&publication, &alone).passed(), "nothing was shared");

        let fan = Publication { seed: 4, route: Route::Topic, count: 3 };
        let passing = fan.orders().iter().filter(|o| o.passes_analytics_filter()).count();
        let mut table: Vec<Effect> = Vec::new();
        for consumer in ["billing", "shipping"] {
            table.extend(ids.iter().map(|id| row(consumer, id, "x", 1)));
        }
        let large = fan.orders().into_iter().filter(|o| o.passes_analytics_filter());
        table.extend(large.map(|o| row("analytics", &o.order_id, "x", 1)));
        let observed = Observation::FanOut { handled: [3, 3, passing] };
        assert!(observed.check(&fan, &table).passed());
        assert!(!Observation::FanOut { handled: [3, 2, passing] }.check(&fan, &table).passed());
        assert!(!observed.check(&fan, &table[1..]).passed(), "a lost effect row");

        let direct = Publication { seed: 4, route: Route::Direct, count: 3 };
        let mut table: Vec<Effect> = ids.iter().map(|id| row("billing", id, "billing-1", 1)).collect();
        table.extend([row(WEBHOOK, &ids[0], "webhook-1", 1), row(WEBHOOK, &ids[2], "webhook-1", 1)]);
        let claim = Observation::Direct { webhook: 2, lost: 1, queue: 3 };
        assert!(claim.check(&direct, &table).passed());
        assert!(!Observation::Direct { webhook: 3, lost: 0, queue: 3 }.check(&direct, &table).passed());
        table.push(row(WEBHOOK, &ids[1], "webhook-1", 1));
        assert!(!claim.check(&direct, &table).passed(), "an order posted while billing was down arrived");
    }

    #[test]
    fn same_seed_same_orders_and_ids_differ_across_seeds() {
        assert_eq!(generate(3, 50), generate(3, 50));
        let ids: BTreeSet<String> = generate(1, 40).into_iter().chain(generate(2, 40)).map(|o| o.order_id).collect();
        assert_eq!(ids.len(), 80);
        let seqs: Vec<u64> = generate(1, 5).iter().map(|o| o.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn the_filter_has_something_to_do_and_its_edge_is_shown() {
        let orders = generate(7, 60);
        let passing = orders.iter().filter(|o| o.passes_analytics_filter()).count();
        assert!(passing > 5 && passing < 55, "{passing} of 60 pass the filter");
        assert!(orders[1].passes_analytics_filter() && orders[1].total_attribute() == "100.00");
        assert!(!orders[2].passes_analytics_filter() && orders[2].total_attribute() == "99.99");
    }

    #[test]
    fn orders_round_trip_through_their_body() {
        for order in generate(5, 20) {
            assert_eq!(parse_order(&order.body()).unwrap(), order);
        }
    }

    #[test]
    fn bad_bodies_are_clear_errors() {
        assert_eq!(parse_order(""), Err(OrderError::Empty));
        assert_eq!(parse_order("  \n"), Err(OrderError::Empty));
        assert!(matches!(parse_order(&"x".repeat(MAX_ORDER_BYTES + 1)), Err(OrderError::TooLarge { bytes: 4097 })));
        assert!(matches!(parse_order(&poison_body(1)), Err(OrderError::NotJson(_))));
        assert!(matches!(parse_order("hello"), Err(OrderError::NotJson(_))));
        let missing = parse_order(&unshippable_body(1)).unwrap_err();
        assert!(missing.to_string().contains("missing field `customer_id`"), "{missing}");
        assert!(matches!(parse_order("[1, 2]"), Err(OrderError::NotAnOrder(_))));
        let negative = r#"{"order_id":"a","customer_id":"c","total":-1,"seq":1}"#;
        assert!(parse_order(negative).unwrap_err().to_string().contains("at least 0"));
        let blank = r#"{"order_id":" ","customer_id":"c","total":1,"seq":1}"#;
        assert!(parse_order(blank).unwrap_err().to_string().contains("order_id is empty"));
        for err in [OrderError::Empty, parse_order("{").unwrap_err()] {
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(preview("a\nb", 10), "a b");
        assert_eq!(preview("abcdef", 3), "abc...");
    }

    #[test]
    fn publications_round_trip_through_their_tag() {
        for route in [Route::Topic, Route::Billing, Route::BillingWithPoison, Route::ShippingWithReject, Route::Direct]
        {
            let publication = Publication { seed: 12, route, count: 7 };
            let (key, value) = publication.tag();
            assert_eq!(Publication::from_tag(&key, &value), Some(publication));
        }
        assert_eq!(Publication::from_tag("labs:example", "example-2"), None);
        assert_eq!(Publication::from_tag("labs:run:1", "sideways:3"), None);
    }

    fn effect(consumer: Subscriber, id: &str) -> Effect {
        Effect {
            consumer: consumer.as_str().to_owned(),
            id: id.to_owned(),
            seq: 0,
            handled_by: "t".into(),
            deliveries: 1,
        }
    }

    fn webhook_effect(id: &str) -> Effect {
        Effect { consumer: WEBHOOK.to_owned(), ..effect(Subscriber::Billing, id) }
    }

    /// The effects and dead letters of consumers that did everything right.
    fn perfect(expected: &Expectation) -> (Vec<Effect>, BTreeMap<Subscriber, Vec<String>>) {
        let effects = expected
            .orders
            .iter()
            .flat_map(|(s, ids)| ids.iter().map(|id| effect(*s, id)))
            .chain(expected.webhook.iter().map(|id| webhook_effect(id)))
            .collect();
        (effects, expected.dead_letters.clone())
    }

    fn failures(findings: &[Finding]) -> Vec<String> {
        findings.iter().flat_map(|f| f.problems.clone()).collect()
    }

    #[test]
    fn routes_decide_who_must_handle_what() {
        let publications = [
            Publication { seed: 1, route: Route::Topic, count: 10 },
            Publication { seed: 2, route: Route::BillingWithPoison, count: 3 },
            Publication { seed: 3, route: Route::ShippingWithReject, count: 2 },
        ];
        let expected = expect(&publications);
        let topic = generate(1, 10);
        let analytics: BTreeSet<String> =
            topic.iter().filter(|o| o.passes_analytics_filter()).map(|o| o.order_id.clone()).collect();
        assert_eq!(expected.orders[&Subscriber::Billing].len(), 13);
        assert_eq!(expected.orders[&Subscriber::Shipping].len(), 12);
        assert_eq!(expected.orders[&Subscriber::Analytics], analytics);
        assert_eq!(expected.filtered_out.len(), 10 - analytics.len());
        assert_eq!(expected.dead_letters[&Subscriber::Billing], vec![poison_body(2)]);
        assert_eq!(expected.dead_letters[&Subscriber::Shipping], vec![unshippable_body(3)]);
        assert!(expected.dead_letters[&Subscriber::Analytics].is_empty());

        let (effects, dead_letters) = perfect(&expected);
        let findings = check(&expected, &effects, &dead_letters);
        assert!(findings.iter().all(Finding::passed), "{findings:?}");
        assert_eq!(findings.len(), 13);
    }

    #[test]
    fn the_consumer_is_down_for_the_middle_third() {
        assert_eq!(consumer_down(30), 10..20);
        assert_eq!(consumer_down(12), 4..8);
        assert_eq!(consumer_down(3), 1..2);
        for count in 3..50 {
            let down = consumer_down(count);
            assert!(down.start > 0 && down.end < count && !down.is_empty(), "{count}: {down:?}");
        }
    }

    #[test]
    fn a_direct_run_reaches_the_queue_always_and_the_webhook_only_while_it_is_up() {
        let publication = Publication { seed: 5, route: Route::Direct, count: 9 };
        let expected = expect(&[publication]);
        let ids: Vec<String> = publication.orders().into_iter().map(|o| o.order_id).collect();
        assert_eq!(expected.orders[&Subscriber::Billing], ids.iter().cloned().collect());
        assert_eq!(expected.lost, ids[3..6].iter().cloned().collect());
        assert_eq!(expected.webhook, ids[..3].iter().chain(&ids[6..]).cloned().collect());
        assert!(publication.dead_letter().is_none());

        let (effects, dead_letters) = perfect(&expected);
        assert!(check(&expected, &effects, &dead_letters).iter().all(Finding::passed));
        // A direct delivery deleted, a lost order that claims to have arrived, a stranger.
        let mut tampered: Vec<Effect> =
            effects.iter().filter(|e| !(e.consumer == WEBHOOK && e.id == ids[0])).cloned().collect();
        tampered.push(webhook_effect(&ids[4]));
        tampered.push(webhook_effect("s9-o0001"));
        let problems = failures(&check(&expected, &tampered, &dead_letters));
        assert_eq!(
            problems,
            vec![
                format!("missing {}", ids[0]),
                format!("{} arrived though it was posted while the consumer was down", ids[4]),
                "unexpected s9-o0001".to_owned(),
            ]
        );
        // Through the queue, every order must arrive, the ones sent while it was down included.
        let queue_lost: Vec<Effect> =
            effects.into_iter().filter(|e| !(e.consumer == "billing" && e.id == ids[4])).collect();
        assert_eq!(failures(&check(&expected, &queue_lost, &dead_letters)), vec![format!("missing {}", ids[4])]);
    }

    #[test]
    fn every_kind_of_loss_and_leak_is_reported() {
        let expected = expect(&[
            Publication { seed: 1, route: Route::Topic, count: 10 },
            Publication { seed: 2, route: Route::BillingWithPoison, count: 3 },
        ]);
        let (mut effects, mut dead_letters) = perfect(&expected);
        // A billing order lost, a filtered-out order in analytics, a stranger in shipping.
        effects.retain(|e| !(e.consumer == "billing" && e.id == "s2-o0001"));
        let excluded = expected.filtered_out.iter().next().unwrap().clone();
        effects.push(effect(Subscriber::Analytics, &excluded));
        effects.push(effect(Subscriber::Shipping, "s9-o0001"));
        // The poison message gone from its dead-letter queue, something else in another.
        dead_letters.get_mut(&Subscriber::Billing).unwrap().clear();
        dead_letters.insert(Subscriber::Analytics, vec!["{}".to_owned()]);
        let problems = failures(&check(&expected, &effects, &dead_letters));
        assert_eq!(
            problems,
            vec![
                "missing s2-o0001".to_owned(),
                "unexpected s9-o0001".to_owned(),
                format!("filter let through {excluded}"),
                format!("missing {}", preview(&poison_body(2), 80)),
                "unexpected {}".to_owned(),
            ]
        );
    }

    #[test]
    fn a_poison_message_twice_in_a_dead_letter_queue_is_one_too_many() {
        let expected = expect(&[Publication { seed: 4, route: Route::BillingWithPoison, count: 1 }]);
        let (effects, mut dead_letters) = perfect(&expected);
        dead_letters.insert(Subscriber::Billing, vec![poison_body(4), poison_body(4)]);
        let problems = failures(&check(&expected, &effects, &dead_letters));
        assert_eq!(problems, vec![format!("unexpected {}", preview(&poison_body(4), 80))]);
    }
}
