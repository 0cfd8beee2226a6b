//! Example 7 on the emulator: each scenario shows what it claims, verify passes after them, and
//! verify fails on a stream disordered by other means than labs.

mod support;

use serde_json::Value;
use support::{Teardown, labs, prefix};

fn scenario(p: &str, name: &str, count: &str) -> Value {
    let run = labs(p, &["run", "example-7", "--scenario", name, "--count", count, "--json"]).ok().json();
    let report = run["scenarios"][0].clone();
    assert_eq!(report["scenario"], name, "{run}");
    report
}

fn verdicts(ordering: &Value) -> Vec<String> {
    ordering["violations"].as_array().unwrap().iter().map(|t| t["verdict"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn key_order_keeps_each_order_and_random_keys_do_not() {
    let p = prefix("ex7keys");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    let plan = labs(&p, &["up", "example-7", "--dry-run", "--json"]).ok().json();
    assert_eq!(plan["changes"][0]["settings"], "4 shards, provisioned");
    labs(&p, &["up", "example-7"]).ok();

    let keyed = scenario(&p, "key-order", "120");
    assert_eq!(keyed["ordering"]["orders"], 120);
    assert_eq!(keyed["ordering"]["in_order"], 120, "{keyed}");
    assert_eq!(keyed["orders_on_one_shard"], 120);
    assert_eq!(keyed["shards"].as_array().unwrap().len(), 4, "120 orders reach every shard");
    assert!(
        keyed["backward_reads"].as_u64().unwrap() > 0,
        "reading four shards one after another cannot follow the global emission order"
    );

    let random = scenario(&p, "random-keys", "120");
    assert!(random["orders_on_several_shards"].as_u64().unwrap() > 60, "{random}");
    let kinds = verdicts(&random["ordering"]);
    assert!(kinds.len() > 10, "random keys should reorder many orders: {random}");
    assert!(kinds.iter().all(|k| k == "reordered"), "nothing lost or repeated, only reordered: {kinds:?}");

    // Only key-order promised order; verify checks its 120 orders and passes.
    let verified = labs(&p, &["verify", "example-7", "--json"]).ok().json();
    assert_eq!(verified["passed"], true);
    assert_eq!(verified["ordering"]["orders"], 120);
    assert_eq!(verified["ordering"]["in_order"], 120);
    assert!(verified["unchecked_records"].as_u64().unwrap() > 0);
}

#[test]
fn hot_shard_places_keys_by_md5_and_explicit_hash_key_steers() {
    let p = prefix("ex7hot");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    labs(&p, &["up", "example-7"]).ok();
    let hot = scenario(&p, "hot-shard", "200");
    for key in hot["keys"].as_array().unwrap() {
        assert_eq!(key["agrees"], true, "{key}");
        assert_eq!(key["landed_on"].as_array().unwrap().len(), 1, "one key, one shard: {key}");
    }
    let shards = hot["shards"].as_array().unwrap();
    let records: Vec<u64> = shards.iter().map(|s| s["records"].as_u64().unwrap()).collect();
    let total: u64 = records.iter().sum();
    assert!(*records.iter().max().unwrap() * 100 / total >= 35, "skewed keys make a hot shard: {records:?}");
    let steering = &hot["steering"];
    assert_eq!(steering["agrees"], true, "{steering}");
    assert_eq!(steering["landed_on"], serde_json::json!([steering["intended_shard"]]));
    let steered_shard = shards.iter().find(|s| s["shard_id"] == steering["intended_shard"]).unwrap();
    assert_eq!(steered_shard["steered_records"], steering["records"]);
}

#[test]
fn reshard_lineage_aware_consumer_keeps_order_and_the_ignoring_one_does_not() {
    let p = prefix("ex7reshard");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    labs(&p, &["up", "example-7"]).ok();
    // Records of an earlier run sit in the shards about to be split or merged.
    scenario(&p, "key-order", "60");
    let reshard = scenario(&p, "reshard", "150");

    let steps = reshard["steps"].as_array().unwrap();
    assert_eq!(steps[0]["operation"], "split");
    assert_eq!(steps[0]["children"].as_array().unwrap().len(), 2, "{reshard}");
    assert_eq!(steps[1]["operation"], "merge");
    assert_eq!(steps[1]["children"].as_array().unwrap().len(), 1, "{reshard}");

    let aware = &reshard["lineage_aware"]["ordering"];
    assert_eq!(aware["in_order"], 150, "{aware}");
    assert!(aware["violations"].as_array().unwrap().is_empty());
    let ignoring = &reshard["lineage_ignoring"]["ordering"];
    let kinds = verdicts(ignoring);
    assert!(!kinds.is_empty(), "reading children before parents must break some orders: {ignoring}");
    assert!(kinds.iter().all(|k| k == "reordered"), "{kinds:?}");

    // The scenario says which behaviour the target has, and the lineage table agrees with it.
    let deleted =
        reshard["shards"].as_array().unwrap().iter().filter(|s| s["state"] == "deleted by the target").count();
    if reshard["target_keeps_parents"] == true {
        assert_eq!(deleted, 0);
    } else {
        assert_eq!(deleted, 3, "the split parent and both merge parents: {reshard}");
    }

    // Where the records produced after each split and merge went, read back from the shards.
    for step in steps {
        let routed = &step["new_records"];
        let in_range = routed["in_range"].as_u64().unwrap();
        assert!(in_range > 0, "the run produced into the parents' range after the {}: {step}", step["operation"]);
        let placed = ["to_children", "to_parents", "elsewhere"].map(|k| routed[k].as_u64().unwrap());
        assert_eq!(placed.iter().sum::<u64>(), in_range, "{step}");
    }

    // Verify passes: what was provably in a deleted parent is not held against the learner, and
    // says so by count; the rest is checked.
    let verified = labs(&p, &["verify", "example-7", "--json"]).ok().json();
    assert_eq!(verified["passed"], true, "{verified}");
    let checked = verified["ordering"]["orders"].as_u64().unwrap();
    let vanished = verified["vanished_with_deleted_parents"].as_u64().unwrap();
    assert_eq!(checked + vanished, 210, "{verified}");
    if reshard["target_keeps_parents"] == false {
        assert_eq!(verified["missing_parent_shards"].as_array().unwrap().len(), 3);
        assert!(verified["ordering"]["in_order_after_loss"].as_u64().unwrap() > 0, "{verified}");
        assert!(vanished > 0, "orders produced wholly into the split or merged shards are gone: {verified}");
    } else {
        assert_eq!(vanished, 0);
    }

    // A resharded stream is the learner's doing, not drift: `up` leaves it alone.
    let again = labs(&p, &["up", "example-7", "--json"]).ok().json();
    assert_eq!(again["changes"][0]["action"]["action"], "unchanged");
}

#[test]
fn retry_reorder_naive_resend_reorders_and_both_fixes_keep_order() {
    let p = prefix("ex7retry");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    labs(&p, &["up", "example-7"]).ok();
    let retry = scenario(&p, "retry-reorder", "80");
    let producers = retry["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 3);
    for producer in producers {
        assert!(producer["refused"].as_u64().unwrap() > 0, "every producer meets refusals: {producer}");
        assert_eq!(producer["produced"]["retried_entries"], producer["refused"]);
    }
    let naive = verdicts(&producers[0]["ordering"]);
    assert!(!naive.is_empty(), "resending refused entries must reorder some orders: {}", producers[0]);
    assert!(naive.iter().all(|k| k == "reordered"), "{naive:?}");
    for fixed in &producers[1..] {
        // Read back from the stream: every step of every order, once, in order.
        assert_eq!(fixed["ordering"]["in_order"], 80, "{fixed}");
        assert!(fixed["ordering"]["violations"].as_array().unwrap().is_empty(), "{fixed}");
    }
    let verified = labs(&p, &["verify", "example-7", "--json"]).ok().json();
    assert_eq!(verified["passed"], true);
    assert_eq!(verified["ordering"]["orders"], 160, "the two fixed producers are checked, the naive one not");
}

#[test]
fn verify_fails_on_a_deliberately_disordered_stream() {
    let p = prefix("ex7disorder");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    labs(&p, &["up", "example-7"]).ok();
    labs(&p, &["run", "example-7", "--scenario", "key-order", "--count", "30", "--seed", "4"]).ok();
    labs(&p, &["verify", "example-7"]).ok();

    // By other means than labs: put order ko4-o00003's step 1 into the stream again, after its
    // later steps, with the same partition key (so on the same shard).
    let stream = format!("{p}-ex7-orders");
    let lines = labs(&p, &["consume", "--stream", &stream, "--json"]).ok().stdout;
    let step_one: Value = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["data"]["order_id"] == "ko4-o00003" && r["data"]["step"] == 1)
        .expect("order ko4-o00003 step 1 is in the stream");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(support::endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await;
        aws_sdk_kinesis::Client::new(&config)
            .put_record()
            .stream_name(&stream)
            .partition_key(step_one["partition_key"].as_str().unwrap())
            .data(aws_sdk_kinesis::primitives::Blob::new(step_one["data"].to_string()))
            .send()
            .await
            .expect("put the stray record");
    });

    let failed = labs(&p, &["verify", "example-7", "--json"]).fails();
    let report = failed.json();
    assert_eq!(report["passed"], false);
    let violations = report["ordering"]["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{report}");
    assert_eq!(violations[0]["order_id"], "ko4-o00003");
    assert_eq!(violations[0]["verdict"], "reordered");
    assert_eq!(violations[0]["arrival"].as_array().unwrap().last().unwrap(), 1);
    assert!(failed.error_line().contains("example-7 failed verification"));

    // And the table names the order for a person.
    let table = labs(&p, &["verify", "example-7"]).fails();
    assert!(table.stdout.contains("ko4-o00003") && table.stdout.contains("a step arrived after a later one"));
}

#[test]
fn bad_input_is_one_clear_line() {
    let p = prefix("ex7bad");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    let before_up = labs(&p, &["run", "example-7", "--scenario", "key-order"]).fails();
    assert!(before_up.error_line().contains("does not exist (did you run `labs up`"), "{}", before_up.stderr);
    labs(&p, &["up", "example-7"]).ok();
    let nothing = labs(&p, &["verify", "example-7"]).fails();
    assert!(nothing.error_line().contains("nothing to verify"));
    let unknown = labs(&p, &["run", "example-7", "--scenario", "sideways"]).fails();
    assert!(unknown.error_line().contains("example-7 has no scenario 'sideways'"));
    let zero = labs(&p, &["run", "example-7", "--count", "0"]).fails();
    assert!(zero.error_line().contains("--count is the number of orders"));
    labs(&p, &["run", "example-7", "--scenario", "key-order", "--count", "5", "--seed", "2"]).ok();
    let reuse = labs(&p, &["run", "example-7", "--scenario", "key-order", "--seed", "2"]).fails();
    assert!(reuse.error_line().contains("seed 2 was already used for key-order"));
}

fn kinesis_client(runtime: &tokio::runtime::Runtime) -> aws_sdk_kinesis::Client {
    runtime.block_on(async { aws_sdk_kinesis::Client::new(&support::sdk_config().await) })
}

#[test]
fn verify_fails_on_a_loss_planted_after_a_reshard() {
    use labs_core::orders::{Customers, OrderSpec, generate};
    use labs_core::partition::hash_key;

    let p = prefix("ex7loss");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    labs(&p, &["up", "example-7"]).ok();
    scenario(&p, "key-order", "40");
    scenario(&p, "reshard", "90");
    let verified = labs(&p, &["verify", "example-7", "--json"]).ok().json();
    let split = &verified["runs"][1]["reshards"][0];
    assert_eq!(split["operation"], "split", "{verified}");
    let bound = |key: &str| split[key].as_str().unwrap().parse::<u128>().unwrap();
    let split_range = bound("starting_hash_key")..=bound("ending_hash_key");

    // By other means than labs, after the reshard: a key-order run recorded as the third run and
    // produced with one order left out and another's first step left out, both keyed into the
    // split parent's range, where the old verifier excused any missing first steps.
    let stream = format!("{p}-ex7-orders");
    let spec = OrderSpec {
        namespace: "ko".to_owned(),
        seed: 9,
        orders: 30,
        customers: Customers::Even { customers: 50 },
        in_flight: 16,
    };
    let events = generate(&spec);
    let in_split: Vec<&str> = events
        .iter()
        .map(|e| e.order_id.as_str())
        .filter(|id| split_range.contains(&hash_key(id)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(in_split.len() >= 2, "30 orders put at least two keys into a quarter of the key space");
    let (gone, headless) = (in_split[0].to_owned(), in_split[1].to_owned());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = kinesis_client(&runtime);
    runtime.block_on(async {
        client
            .add_tags_to_stream()
            .stream_name(&stream)
            .tags("labs:run:key-order:9", "30 #2")
            .send()
            .await
            .expect("record the planted run");
        for event in &events {
            if event.order_id == gone || (event.order_id == headless && event.step == 1) {
                continue;
            }
            client
                .put_record()
                .stream_name(&stream)
                .partition_key(&event.order_id)
                .data(aws_sdk_kinesis::primitives::Blob::new(serde_json::to_vec(event).unwrap()))
                .send()
                .await
                .expect("put a planted record");
        }
    });

    let failed = labs(&p, &["verify", "example-7", "--json"]).fails();
    let report = failed.json();
    assert_eq!(report["passed"], false);
    let violations = report["ordering"]["violations"].as_array().unwrap();
    let mut broken: Vec<(&str, &str)> =
        violations.iter().map(|v| (v["order_id"].as_str().unwrap(), v["verdict"].as_str().unwrap())).collect();
    broken.sort();
    let mut planted = vec![(gone.as_str(), "missing"), (headless.as_str(), "missing")];
    planted.sort();
    assert_eq!(broken, planted, "{report}");
    let headless_trace = violations.iter().find(|v| v["order_id"] == headless.as_str()).unwrap();
    assert_eq!(headless_trace["missing"], serde_json::json!([1]), "{headless_trace}");
}

#[test]
fn verify_fails_on_a_duplicate_and_on_a_stray_record() {
    let p = prefix("ex7dup");
    let _teardown = Teardown { prefix: &p, example: "example-7" };
    labs(&p, &["up", "example-7"]).ok();
    labs(&p, &["run", "example-7", "--scenario", "key-order", "--count", "20", "--seed", "5"]).ok();
    labs(&p, &["verify", "example-7"]).ok();
    let stream = format!("{p}-ex7-orders");
    let lines = labs(&p, &["consume", "--stream", &stream, "--json"]).ok().stdout;
    let records: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The last step of order ko5-o00002, as read.
    let last = records
        .iter()
        .filter(|r| r["data"]["order_id"] == "ko5-o00002")
        .max_by_key(|r| r["data"]["step"].as_u64().unwrap())
        .expect("order ko5-o00002 is in the stream")
        .clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = kinesis_client(&runtime);
    let put = |key: &str, data: Vec<u8>| {
        runtime.block_on(async {
            client
                .put_record()
                .stream_name(&stream)
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(data))
                .send()
                .await
                .expect("put a planted record");
        })
    };

    // The same step once more, right after itself: a duplicate.
    put("ko5-o00002", last["data"].to_string().into_bytes());
    let report = labs(&p, &["verify", "example-7", "--json"]).fails().json();
    let violations = report["ordering"]["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{report}");
    assert_eq!(violations[0]["order_id"], "ko5-o00002");
    assert_eq!(violations[0]["verdict"], "duplicated");

    // An order event of no recorded run: a stray record is not ignored.
    let mut stray = last["data"].clone();
    stray["order_id"] = Value::from("zz9-o00001");
    put("zz9-o00001", stray.to_string().into_bytes());
    let report = labs(&p, &["verify", "example-7", "--json"]).fails().json();
    assert_eq!(report["foreign"], 1, "{report}");
}
