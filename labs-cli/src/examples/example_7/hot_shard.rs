//! Scenario hot-shard: a skewed key distribution overloads one shard, and what steering does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, bail};
use labs_core::orders::{self};
use labs_core::partition::{ShardRange, hash_key, shard_for_key};
use serde::Serialize;

use super::{Run, STEERED, Scenario, encode, produced_line, read_back};
use crate::driver::kinesis::{self, ProduceStats, PutOptions};
use crate::output::{self, Output};
use crate::target::Target;

#[derive(Serialize)]
struct ShardBar {
    shard_id: String,
    starting_hash_key: String,
    ending_hash_key: String,
    key_space_percent: f64,
    records: usize,
    steered_records: usize,
}

#[derive(Serialize)]
struct KeyMapping {
    partition_key: String,
    records: usize,
    md5_hex: String,
    hash_key: String,
    computed_shard: Option<String>,
    landed_on: Vec<String>,
    agrees: bool,
}

#[derive(Serialize)]
struct Steering {
    partition_key: String,
    explicit_hash_key: String,
    intended_shard: String,
    records: usize,
    landed_on: Vec<String>,
    agrees: bool,
}

#[derive(Serialize)]
pub(super) struct HotShardReport {
    seed: u64,
    orders: usize,
    produced: ProduceStats,
    shards: Vec<ShardBar>,
    keys: Vec<KeyMapping>,
    steering: Steering,
}

fn key_space_percent(range: &ShardRange) -> f64 {
    ((range.ending_hash_key - range.starting_hash_key) as f64 + 1.0) / 2f64.powi(128) * 100.0
}

fn bar(count: usize, max: usize) -> String {
    const WIDTH: usize = 40;
    let cells = if max == 0 { 0 } else { (count * WIDTH).div_ceil(max) };
    "█".repeat(cells)
}

pub(super) async fn hot_shard(target: &Target, stream: &str, run: &Run, out: Output) -> Result<HotShardReport> {
    let client = &target.clients.kinesis;
    let part = Scenario::HotShard.parts(run.seed, run.orders).remove(0);
    let events = orders::generate(&part.spec);
    let mut per_customer: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &events {
        *per_customer.entry(&event.customer_id).or_default() += 1;
    }
    let mut customers: Vec<(&str, usize)> = per_customer.into_iter().collect();
    customers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let hottest = customers[0].0.to_owned();
    // The hottest customer's last events are held back, to be steered with ExplicitHashKey.
    let held_back: BTreeSet<u64> = {
        let theirs: Vec<u64> = events.iter().filter(|e| e.customer_id == hottest).map(|e| e.emitted).collect();
        let count = STEERED.min(theirs.len() / 4).max(1);
        theirs[theirs.len() - count..].iter().copied().collect()
    };
    out.say(format!(
        "\n== hot-shard (seed {}) ==\n1. Producing {} events of {} orders from 50 customers, a few of whom place most orders\n   \
         (customer n orders in proportion to 1/n^1.5, so the first three place about two thirds);\n   \
         partition key = customer_id. ({} of {hottest}'s last events are held back for step 3.)",
        run.seed,
        events.len() - held_back.len(),
        run.orders,
        held_back.len()
    ));
    let records = events
        .iter()
        .filter(|e| !held_back.contains(&e.emitted))
        .map(|e| encode(e, e.customer_id.clone()))
        .collect::<Vec<_>>();
    let bar_ = output::progress((events.len() - held_back.len()) as u64, "PutRecords");
    let produced = kinesis::produce(client, stream, records, None, &bar_).await;
    bar_.finish_and_clear();
    let produced = produced?;
    out.say(produced_line(&produced));

    let open: Vec<kinesis::Shard> =
        kinesis::list_shards(client, stream).await?.into_iter().filter(|s| s.open).collect();
    let ranges: Vec<ShardRange> = open.iter().map(kinesis::Shard::range).collect::<Result<_>>()?;
    let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
    let mut per_shard: BTreeMap<&str, usize> = BTreeMap::new();
    let mut landed: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for read in &reads {
        *per_shard.entry(&read.record.shard_id).or_default() += 1;
        landed.entry(&read.record.partition_key).or_default().insert(&read.record.shard_id);
    }

    out.table(
        "2. The open shards' hash key ranges, as ListShards reports them (a 128-bit key space)",
        &["shard", "starting hash key", "ending hash key", "share of the key space"],
        ranges.iter().map(|r| {
            vec![
                r.shard_id.clone(),
                r.starting_hash_key.to_string(),
                r.ending_hash_key.to_string(),
                format!("{:.1}%", key_space_percent(r)),
            ]
        }),
    );
    let max = per_shard.values().copied().max().unwrap_or(0);
    let total: usize = per_shard.values().sum();
    out.table(
        "   Records of this run per shard",
        &["shard", "records", "share", ""],
        ranges.iter().map(|r| {
            let n = per_shard.get(r.shard_id.as_str()).copied().unwrap_or(0);
            vec![
                r.shard_id.clone(),
                n.to_string(),
                format!("{:.0}%", 100.0 * n as f64 / total.max(1) as f64),
                bar(n, max),
            ]
        }),
    );

    let keys: Vec<KeyMapping> = customers
        .iter()
        .take(3)
        .map(|(key, records)| {
            let computed = shard_for_key(&ranges, key).map(|i| ranges[i].shard_id.clone());
            let landed_on: Vec<String> =
                landed.get(key).map(|s| s.iter().map(|s| (*s).to_owned()).collect()).unwrap_or_default();
            let agrees = computed.as_ref().is_some_and(|c| landed_on == [c.clone()]);
            KeyMapping {
                partition_key: (*key).to_owned(),
                records: *records,
                md5_hex: format!("{:032x}", hash_key(key)),
                hash_key: hash_key(key).to_string(),
                computed_shard: computed,
                landed_on,
                agrees,
            }
        })
        .collect();
    out.table(
        "   How a key finds its shard: MD5 of the partition key, read as a 128-bit number, falls in one range",
        &["partition key", "MD5 (hex)", "as a number", "in the range of", "records landed on", "agrees"],
        keys.iter().map(|k| {
            vec![
                k.partition_key.clone(),
                k.md5_hex.clone(),
                k.hash_key.clone(),
                k.computed_shard.clone().unwrap_or_else(|| "no shard".into()),
                k.landed_on.join(", "),
                if k.agrees { "yes" } else { "NO" }.to_owned(),
            ]
        }),
    );

    // 3. Steer the held-back records onto the quietest shard the hot key does not map to.
    let hot_shard = shard_for_key(&ranges, &hottest).map(|i| ranges[i].shard_id.clone()).unwrap_or_default();
    let quiet = ranges
        .iter()
        .filter(|r| r.shard_id != hot_shard)
        .min_by_key(|r| per_shard.get(r.shard_id.as_str()).copied().unwrap_or(0))
        .unwrap_or(&ranges[0]);
    let explicit = quiet.starting_hash_key + (quiet.ending_hash_key - quiet.starting_hash_key) / 2;
    out.say(format!(
        "3. Steering: the {} held-back events of {hottest} go with PutRecord, the same partition key, and\n   \
         ExplicitHashKey = {explicit} (the middle of {}'s range), which replaces the MD5.",
        held_back.len(),
        quiet.shard_id
    ));
    let options = PutOptions { explicit_hash_key: Some(explicit), sequence_number_for_ordering: None };
    let mut steered_to: BTreeSet<String> = BTreeSet::new();
    let steer_bar = output::progress(held_back.len() as u64, "PutRecord");
    for event in events.iter().filter(|e| held_back.contains(&e.emitted)) {
        let placement = kinesis::put_record(client, stream, &encode(event, hottest.clone()), &options).await;
        steer_bar.inc(1);
        steered_to.insert(placement?.shard_id);
    }
    steer_bar.finish_and_clear();
    let reads = read_back(target, stream, &part.spec.id_prefix()).await?;
    let mut steered_read: BTreeMap<&str, usize> = BTreeMap::new();
    let mut after: BTreeMap<&str, usize> = BTreeMap::new();
    for read in &reads {
        *after.entry(&read.record.shard_id).or_default() += 1;
        if held_back.contains(&read.event.emitted) {
            *steered_read.entry(&read.record.shard_id).or_default() += 1;
        }
    }
    let steering = Steering {
        partition_key: hottest.clone(),
        explicit_hash_key: explicit.to_string(),
        intended_shard: quiet.shard_id.clone(),
        records: held_back.len(),
        landed_on: steered_to.into_iter().collect(),
        agrees: steered_read.keys().copied().collect::<Vec<_>>() == [quiet.shard_id.as_str()]
            && steered_read.values().sum::<usize>() == held_back.len(),
    };
    let max = after.values().copied().max().unwrap_or(0);
    out.table(
        &format!(
            "   Records per shard after steering ({} of them steered; PutRecord said: {})",
            held_back.len(),
            steering.landed_on.join(", ")
        ),
        &["shard", "records", "steered here", ""],
        ranges.iter().map(|r| {
            let n = after.get(r.shard_id.as_str()).copied().unwrap_or(0);
            let s = steered_read.get(r.shard_id.as_str()).copied().unwrap_or(0);
            vec![r.shard_id.clone(), n.to_string(), s.to_string(), bar(n, max)]
        }),
    );
    let busiest =
        ranges.iter().max_by_key(|r| after.get(r.shard_id.as_str()).copied().unwrap_or(0)).unwrap_or(&ranges[0]);
    let hottest_share = 100.0 * max as f64 / after.values().sum::<usize>().max(1) as f64;
    out.say(format!(
        "   A few customers place most orders, and a partition key sends all of one customer's events to one shard:\n   \
         the busiest shard took {hottest_share:.0}% of the records with {:.0}% of the key space. On AWS a shard takes at most\n   \
         1 MB/s or 1,000 records/s of writes and refuses the rest (ProvisionedThroughputExceededException), however\n   \
         idle the others are; {}\n   \
         Splitting the hot shard helps only when its load comes from many keys: one key is one hash key, so a\n   \
         single hot customer cannot be split. To spread one key you change it (customer_id plus a suffix 0..N,\n   \
         \"salting\") or steer it with ExplicitHashKey as above. Both cost that customer's order: {hottest}'s steered\n   \
         events now sit on another shard than its earlier ones. (Kafka: a custom partitioner plays ExplicitHashKey's part.)",
        key_space_percent(busiest),
        if target.kind.is_aws() {
            "watch for throttled entries at high rates."
        } else {
            "the emulator never throttles, so here you see only the imbalance."
        }
    ));
    if let Some(k) = keys.iter().find(|k| !k.agrees) {
        bail!(
            "hot-shard: records with key {} landed on {} but its hash key falls in {}: the target does not place keys as Kinesis does",
            k.partition_key,
            k.landed_on.join(", "),
            k.computed_shard.as_deref().unwrap_or("no shard")
        );
    }
    if !steering.agrees {
        bail!(
            "hot-shard: records sent with ExplicitHashKey {} did not all land on {} (read back: {steered_read:?})",
            steering.explicit_hash_key,
            steering.intended_shard
        );
    }
    let shards = ranges
        .iter()
        .map(|r| ShardBar {
            shard_id: r.shard_id.clone(),
            starting_hash_key: r.starting_hash_key.to_string(),
            ending_hash_key: r.ending_hash_key.to_string(),
            key_space_percent: key_space_percent(r),
            records: after.get(r.shard_id.as_str()).copied().unwrap_or(0),
            steered_records: steered_read.get(r.shard_id.as_str()).copied().unwrap_or(0),
        })
        .collect();
    Ok(HotShardReport { seed: run.seed, orders: run.orders, produced, shards, keys, steering })
}
