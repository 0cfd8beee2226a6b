//! What a stack costs on AWS: per resource, per hour left running, and for one run-through of
//! its example. Pure arithmetic over two data files: the list prices (`infra/prices.toml`, hand
//! transcribed with their date and source) and what a run-through sends (`infra/run-throughs.toml`).
//! Orders of magnitude for a learner deciding whether to leave something up, not a bill.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Kind;
use crate::stack::{MappingSource, Stack, full_name};

const PRICES: &str = include_str!("../prices.toml");
const RUN_THROUGHS: &str = include_str!("../run-throughs.toml");

/// Where prices for an unlisted region come from.
pub const FALLBACK_REGION: &str = "us-east-1";

/// How long a run-through keeps its stack up (`up` to `down`), for the standing part of its cost.
pub const RUN_THROUGH_HOURS: f64 = 0.5;

/// Storage a lab's table holds: a few thousand small items, about a megabyte.
const TABLE_GB: f64 = 0.001;

/// DynamoDB and others price storage per GB-month; AWS counts a month as 730 hours.
const HOURS_PER_MONTH: f64 = 730.0;

/// Requests Lambda's poller makes on an SQS queue even when it is empty: about five long polls
/// of 20 seconds at a time, so 5 × 180 an hour.
const IDLE_SQS_POLLS_PER_HOUR: f64 = 900.0;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub usd: f64,
    pub per: String,
    /// When it was copied from `source` (a date, `YYYY-MM-DD`).
    pub transcribed: String,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegionPrices {
    pub kinesis_shard_hour: Price,
    /// Per million.
    pub kinesis_put_payload_units: Price,
    /// Per million.
    pub dynamodb_write_request_units: Price,
    /// Per million.
    pub dynamodb_read_request_units: Price,
    /// Per GB-month.
    pub dynamodb_storage: Price,
    /// Per million.
    pub lambda_requests: Price,
    pub lambda_gb_seconds: Price,
    /// Per million.
    pub sqs_requests: Price,
    /// Per million.
    pub sns_requests: Price,
}

impl RegionPrices {
    pub fn all(&self) -> [&Price; 9] {
        [
            &self.kinesis_shard_hour,
            &self.kinesis_put_payload_units,
            &self.dynamodb_write_request_units,
            &self.dynamodb_read_request_units,
            &self.dynamodb_storage,
            &self.lambda_requests,
            &self.lambda_gb_seconds,
            &self.sqs_requests,
            &self.sns_requests,
        ]
    }

    /// The oldest transcription date among these prices.
    pub fn transcribed(&self) -> &str {
        self.all().into_iter().map(|p| p.transcribed.as_str()).min().unwrap_or("unknown")
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub regions: BTreeMap<String, RegionPrices>,
}

impl PriceTable {
    /// The table kept in the repo.
    pub fn load() -> Result<Self, String> {
        toml::from_str(PRICES).map_err(|e| format!("infra/prices.toml is not a valid price table: {}", e.message()))
    }

    /// The prices for `region`, or [`FALLBACK_REGION`]'s when the table has none: returns the
    /// region whose prices these are.
    pub fn for_region(&self, region: &str) -> Result<(&str, &RegionPrices), String> {
        self.regions
            .get_key_value(region)
            .or_else(|| self.regions.get_key_value(FALLBACK_REGION))
            .map(|(name, prices)| (name.as_str(), prices))
            .ok_or_else(|| format!("infra/prices.toml has no prices for {region} nor {FALLBACK_REGION}"))
    }
}

/// One function's invocations in a run-through.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Invocations {
    pub invocations: u64,
    /// Average billed duration of one invocation.
    pub seconds: f64,
}

/// What one run-through of an example sends to AWS (see `infra/run-throughs.toml`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunThrough {
    pub kinesis_records: u64,
    pub dynamodb_write_units: u64,
    pub dynamodb_read_units: u64,
    pub sqs_requests: u64,
    pub sns_publishes: u64,
    /// By logical function name, as the stack declares it.
    pub functions: BTreeMap<String, Invocations>,
}

/// Every example's run-through, by example name.
pub fn run_throughs() -> Result<BTreeMap<String, RunThrough>, String> {
    toml::from_str(RUN_THROUGHS).map_err(|e| format!("infra/run-throughs.toml is not valid: {}", e.message()))
}

/// What one resource costs while it exists, whether or not anything uses it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Standing {
    pub kind: Kind,
    pub name: String,
    pub per_hour: f64,
    /// How the figure was reached, in words.
    pub basis: String,
}

/// One line of a run-through's cost.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Charge {
    pub what: String,
    pub usd: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Estimate {
    pub example: String,
    /// The region whose prices were used.
    pub prices_region: String,
    pub transcribed: String,
    pub standing: Vec<Standing>,
    /// `None` when the example has no run-through figures yet.
    pub run_through: Option<Vec<Charge>>,
}

impl Estimate {
    pub fn per_hour(&self) -> f64 {
        self.standing.iter().map(|s| s.per_hour).sum()
    }

    pub fn per_day(&self) -> f64 {
        self.per_hour() * 24.0
    }

    /// What `hours` of the resources standing cost, requests aside.
    pub fn standing_for(&self, hours: f64) -> f64 {
        self.per_hour() * hours
    }

    pub fn run_through_total(&self) -> Option<f64> {
        self.run_through.as_ref().map(|charges| charges.iter().map(|c| c.usd).sum())
    }
}

fn per_million(count: f64, price: &Price) -> f64 {
    count * price.usd / 1_000_000.0
}

/// The estimate for `stack` under `prefix` (names as the plan shows them), with `prices` (the
/// region they are for is `prices_region`) and, when there is one, its example's run-through.
pub fn estimate(
    stack: &Stack,
    prefix: &str,
    prices_region: &str,
    prices: &RegionPrices,
    run: Option<&RunThrough>,
) -> Estimate {
    let name = |logical: &str| full_name(prefix, logical);
    let mut standing = Vec::new();
    let mut row = |kind, name, per_hour, basis: String| standing.push(Standing { kind, name, per_hour, basis });
    for role in &stack.roles {
        row(Kind::IamRole, name(&role.name), 0.0, "IAM roles are free".into());
    }
    for stream in &stack.kinesis_streams {
        let shard_hour = prices.kinesis_shard_hour.usd;
        row(
            Kind::KinesisStream,
            name(&stream.name),
            f64::from(stream.shards) * shard_hour,
            format!("{} shards × ${shard_hour}/shard-hour; no free tier", stream.shards),
        );
    }
    for table in &stack.dynamodb_tables {
        let storage = prices.dynamodb_storage.usd;
        row(
            Kind::DynamodbTable,
            name(&table.name),
            TABLE_GB * storage / HOURS_PER_MONTH,
            format!("on demand: about 1 MB stored × ${storage}/GB-month; requests paid per use"),
        );
    }
    for topic in &stack.sns_topics {
        row(Kind::SnsTopic, name(&topic.name), 0.0, "paid per publish only".into());
    }
    for queue in &stack.sqs_queues {
        row(Kind::SqsQueue, name(&queue.name), 0.0, "paid per request only".into());
    }
    for subscription in &stack.subscriptions {
        let subscription_name = format!("{} -> {}", name(&subscription.topic), name(&subscription.queue));
        row(Kind::SnsSubscription, subscription_name, 0.0, "deliveries to SQS are free".into());
    }
    for function in &stack.functions {
        row(Kind::LambdaFunction, name(&function.name), 0.0, format!("{} MB, paid per invocation", function.memory_mb));
    }
    for mapping in &stack.event_source_mappings {
        let (source, per_hour, basis) = match &mapping.source {
            MappingSource::SqsQueue(queue) => (
                queue,
                per_million(IDLE_SQS_POLLS_PER_HOUR, &prices.sqs_requests),
                format!("Lambda long-polls the queue: about {IDLE_SQS_POLLS_PER_HOUR} SQS requests/hour, even idle"),
            ),
            MappingSource::KinesisStream(source) | MappingSource::DynamodbTableStream(source) => {
                (source, 0.0, "Lambda's reads of a stream are free".to_owned())
            }
        };
        let mapping_name = format!("{} -> {}", name(source), name(&mapping.function));
        row(Kind::EventSourceMapping, mapping_name, per_hour, basis);
    }
    let run_through = run.map(|run| run_through_charges(stack, prices, run, &standing));
    Estimate {
        example: stack.example.clone(),
        prices_region: prices_region.to_owned(),
        transcribed: prices.transcribed().to_owned(),
        standing,
        run_through,
    }
}

fn run_through_charges(stack: &Stack, prices: &RegionPrices, run: &RunThrough, standing: &[Standing]) -> Vec<Charge> {
    let mut charges = vec![Charge {
        what: format!("resources up for about {} minutes", (RUN_THROUGH_HOURS * 60.0).round()),
        usd: standing.iter().map(|s| s.per_hour).sum::<f64>() * RUN_THROUGH_HOURS,
    }];
    let mut charge = |count: u64, what: &str, price: &Price| {
        if count > 0 {
            charges.push(Charge { what: format!("{count} {what}"), usd: per_million(count as f64, price) });
        }
    };
    charge(run.kinesis_records, "Kinesis PUT payload units", &prices.kinesis_put_payload_units);
    charge(run.dynamodb_write_units, "DynamoDB write request units", &prices.dynamodb_write_request_units);
    charge(run.dynamodb_read_units, "DynamoDB read request units", &prices.dynamodb_read_request_units);
    charge(run.sqs_requests, "SQS requests", &prices.sqs_requests);
    charge(run.sns_publishes, "SNS publishes", &prices.sns_requests);
    for (function, calls) in &run.functions {
        // A run-through naming an undeclared function is caught by a test, not priced.
        let Some(declared) = stack.functions.iter().find(|f| &f.name == function) else { continue };
        let gb_seconds = calls.invocations as f64 * calls.seconds * f64::from(declared.memory_mb) / 1024.0;
        charges.push(Charge {
            what: format!("{} invocations of {function} ({gb_seconds:.1} GB-s)", calls.invocations),
            usd: per_million(calls.invocations as f64, &prices.lambda_requests)
                + gb_seconds * prices.lambda_gb_seconds.usd,
        });
    }
    charges
}

/// Dollars for people: cents above a cent, else two significant digits, so small sums show.
pub fn format_usd(usd: f64) -> String {
    if usd == 0.0 {
        "$0".to_owned()
    } else if usd >= 0.01 {
        format!("${usd:.2}")
    } else if usd < 0.000_001 {
        "<$0.000001".to_owned()
    } else {
        let decimals = (-usd.log10().floor()) as usize + 1;
        format!("${usd:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack;

    /// Round prices, so each expected figure below can be worked out by hand.
    fn price(usd: f64) -> Price {
        Price { usd, per: "unit".into(), transcribed: "2026-01-01".into(), source: "test".into() }
    }

    fn round_prices() -> RegionPrices {
        RegionPrices {
            kinesis_shard_hour: price(0.01),
            kinesis_put_payload_units: price(0.01),
            dynamodb_write_request_units: price(1.0),
            dynamodb_read_request_units: price(0.1),
            dynamodb_storage: price(0.73),
            lambda_requests: price(0.2),
            lambda_gb_seconds: price(0.00001),
            sqs_requests: price(0.4),
            sns_requests: price(0.5),
        }
    }

    fn estimate_of(example: &str) -> Estimate {
        let stack = stack::load(example).unwrap();
        let runs = run_throughs().unwrap();
        estimate(&stack, "p", "test-region", &round_prices(), runs.get(example))
    }

    #[track_caller]
    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() <= expected.abs() * 1e-9 + 1e-12, "{actual} != {expected}");
    }

    // Per hour: shards × 0.01; tables 0.001 GB × 0.73 / 730 = 0.000001 each; an SQS trigger
    // 900 × 0.4 / 1e6 = 0.00036. Run-through: half an hour of that, plus each count × its price
    // / 1e6, plus per function invocations × 0.2 / 1e6 + invocations × seconds × 128/1024 × 0.00001.
    #[test]
    fn example_1_two_shards() {
        let e = estimate_of("example-1");
        assert_close(e.per_hour(), 0.02);
        assert_close(e.per_day(), 0.48);
        // 0.01 standing + 2000 × 0.01 / 1e6
        assert_close(e.run_through_total().unwrap(), 0.01 + 0.00002);
        assert_eq!(e.standing[0].name, "p-ex1-clicks");
    }

    #[test]
    fn example_2_queues_topic_and_an_sqs_trigger() {
        let e = estimate_of("example-2");
        // one table, one SQS trigger
        assert_close(e.per_hour(), 0.000001 + 0.00036);
        let run = 0.000361 * 0.5
            + 100.0 * 1.0 / 1e6
            + 100.0 * 0.1 / 1e6
            + 1500.0 * 0.4 / 1e6
            + 100.0 * 0.5 / 1e6
            + (100.0 * 0.2 / 1e6 + 100.0 * 0.05 * 0.125 * 0.00001);
        assert_close(e.run_through_total().unwrap(), run);
    }

    #[test]
    fn example_3_tables_only_stand() {
        let e = estimate_of("example-3");
        // Four tables: products, search index, the batch job's index, the CDC checkpoints.
        assert_close(e.per_hour(), 4.0 * 0.000001);
        let run = 0.000004 * 0.5
            + 3000.0 / 1e6
            + 2000.0 * 0.1 / 1e6
            + 50.0 * 0.4 / 1e6
            + (100.0 * 0.2 / 1e6 + 100.0 * 0.1 * 0.125 * 0.00001);
        assert_close(e.run_through_total().unwrap(), run);
    }

    #[test]
    fn example_4_stream_tables_and_queue() {
        let e = estimate_of("example-4");
        assert_close(e.per_hour(), 0.02 + 3.0 * 0.000001);
        let run = 0.020003 * 0.5
            + 3000.0 * 0.01 / 1e6
            + 10000.0 / 1e6
            + 3000.0 * 0.1 / 1e6
            + 50.0 * 0.4 / 1e6
            + (300.0 * 0.2 / 1e6 + 300.0 * 0.1 * 0.125 * 0.00001);
        assert_close(e.run_through_total().unwrap(), run);
    }

    #[test]
    fn example_5_two_functions() {
        let e = estimate_of("example-5");
        assert_close(e.per_hour(), 0.02 + 8.0 * 0.000001);
        let function = 100.0 * 0.2 / 1e6 + 100.0 * 0.05 * 0.125 * 0.00001;
        let run = 0.020008 * 0.5 + 500.0 * 0.01 / 1e6 + 3000.0 / 1e6 + 3000.0 * 0.1 / 1e6 + 2.0 * function;
        assert_close(e.run_through_total().unwrap(), run);
    }

    #[test]
    fn example_6_two_functions_at_their_own_counts() {
        let e = estimate_of("example-6");
        assert_close(e.per_hour(), 0.02 + 3.0 * 0.000001);
        let function = |invocations: f64| invocations * 0.2 / 1e6 + invocations * 0.05 * 0.125 * 0.00001;
        let run = e.per_hour() * 0.5
            + 1000.0 * 0.01 / 1e6
            + 2000.0 / 1e6
            + 1000.0 * 0.1 / 1e6
            + function(300.0)
            + function(30.0);
        assert_close(e.run_through_total().unwrap(), run);
    }

    #[test]
    fn a_stack_without_a_run_through_stands_alone() {
        let stack = stack::load("example-6").unwrap();
        let e = estimate(&stack, "p", "test-region", &round_prices(), None);
        assert_close(e.per_hour(), 0.02 + 3.0 * 0.000001);
        assert_eq!(e.run_through_total(), None);
    }

    #[test]
    fn example_7_four_shards() {
        let e = estimate_of("example-7");
        assert_close(e.per_hour(), 0.04);
        assert_close(e.run_through_total().unwrap(), 0.02 + 2000.0 * 0.01 / 1e6);
    }

    #[test]
    fn every_resource_gets_a_row() {
        for example in stack::declared() {
            let stack = stack::load(example).unwrap();
            let e = estimate(&stack, "p", "r", &round_prices(), None);
            let declared = stack.roles.len()
                + stack.kinesis_streams.len()
                + stack.dynamodb_tables.len()
                + stack.sns_topics.len()
                + stack.sqs_queues.len()
                + stack.subscriptions.len()
                + stack.functions.len()
                + stack.event_source_mappings.len();
            assert_eq!(e.standing.len(), declared, "{example}");
        }
    }

    #[test]
    fn run_throughs_name_declared_examples_and_functions() {
        for (example, run) in run_throughs().unwrap() {
            let stack = stack::load(&example).unwrap_or_else(|e| panic!("{e}"));
            for function in run.functions.keys() {
                assert!(stack.functions.iter().any(|f| &f.name == function), "{example}: {function}");
            }
        }
    }

    #[test]
    fn the_price_table_covers_us_east_1_and_europe_with_dates_and_sources() {
        let table = PriceTable::load().unwrap();
        assert!(table.regions.contains_key("us-east-1"));
        assert!(table.regions.keys().any(|r| r.starts_with("eu-")));
        for (region, prices) in &table.regions {
            for price in prices.all() {
                assert!(price.usd > 0.0, "{region}: {}", price.per);
                assert!(price.source.starts_with("https://aws.amazon.com/"), "{region}: {}", price.per);
                let date =
                    time::Date::parse(&price.transcribed, time::macros::format_description!("[year]-[month]-[day]"));
                assert!(date.is_ok(), "{region}: {} has no date", price.per);
            }
        }
        assert!(PRICES.contains("RE-CHECK"), "the table says its prices must be re-checked");
    }

    #[test]
    fn an_unlisted_region_falls_back_to_us_east_1() {
        let table = PriceTable::load().unwrap();
        assert_eq!(table.for_region("eu-west-1").unwrap().0, "eu-west-1");
        assert_eq!(table.for_region("ap-south-7").unwrap().0, FALLBACK_REGION);
        let empty = PriceTable { regions: BTreeMap::new() };
        assert!(empty.for_region("us-east-1").is_err());
    }

    #[test]
    fn dollars_show_small_sums() {
        assert_eq!(format_usd(0.0), "$0");
        assert_eq!(format_usd(0.72), "$0.72");
        assert_eq!(format_usd(0.03), "$0.03");
        assert_eq!(format_usd(0.0036), "$0.0036");
        assert_eq!(format_usd(0.000014), "$0.000014");
        assert_eq!(format_usd(0.0000001), "<$0.000001");
    }
}
