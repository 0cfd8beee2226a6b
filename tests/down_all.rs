//! `labs down --all` on the emulator: two prefixes up and a foreign, untagged stream under a
//! name labs itself would give; it removes both prefixes and leaves the foreign stream. It
//! removes every labs resource on the test emulator, so it is the only test of its binary
//! (cargo runs test binaries one after another, so no other test's resources are up meanwhile).

mod support;

use serde_json::Value;
use support::{labs, prefix, sdk_config};

fn names(rows: &Value) -> Vec<String> {
    rows.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

/// Whether a prefix is one `support::prefix` makes (`t<digits>-<name>`).
fn made_by_tests(prefix: &str) -> bool {
    let digits = prefix.strip_prefix('t').and_then(|rest| rest.split_once('-')).map(|(digits, _)| digits);
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test(flavor = "multi_thread")]
async fn down_all_removes_every_prefix_and_leaves_what_labs_did_not_make() {
    // Never sweep a learner's own resources (an AWS_ENDPOINT_URL pointing at their emulator).
    let before = labs("unused", &["down", "--all", "--dry-run", "--json"]).ok().json();
    let others: Vec<&str> = before["found"].as_array().unwrap().iter().filter_map(|f| f["prefix"].as_str()).collect();
    assert!(
        others.iter().all(|p| made_by_tests(p)),
        "this endpoint holds labs resources no test made (prefixes {others:?}): run this test on the test emulator"
    );
    let (a, b) = (prefix("sweepa"), prefix("sweepb"));
    let kinesis = aws_sdk_kinesis::Client::new(&sdk_config().await);
    let foreign = format!("{b}-ex1-clicks");
    kinesis.create_stream().stream_name(&foreign).shard_count(1).send().await.expect("create the foreign stream");
    let planned = labs(&a, &["up", "example-1", "--dry-run", "--json"]).ok().json();
    assert_eq!(planned["changes"][0]["action"]["action"], "create", "{planned}");
    let shards = &planned["estimate"]["standing"][0];
    assert_eq!(shards["name"], format!("{a}-ex1-clicks"), "{planned}");
    assert!(shards["per_hour"].as_f64().is_some_and(|usd| usd > 0.0), "two shards cost by the hour: {planned}");
    labs(&a, &["up", "example-1"]).ok();
    labs(&b, &["up", "example-7"]).ok();

    let status = labs(&a, &["status", "--json"]).ok().json();
    let example_1 = status["examples"].as_array().unwrap().iter().find(|e| e["example"] == "example-1").unwrap();
    assert!(example_1["age_seconds"].as_u64().is_some_and(|s| s < 3600), "{example_1}");
    assert!(example_1["so_far_usd"].as_f64().is_some(), "{example_1}");

    let listed = labs(&a, &["down", "--all", "--dry-run", "--json"]).ok().json();
    let found = names(&listed["found"]);
    assert!(found.contains(&format!("{a}-ex1-clicks")) && found.contains(&format!("{b}-ex7-orders")), "{listed}");
    assert!(!found.contains(&foreign), "an untagged stream is not labs': {listed}");
    let mine = listed["found"].as_array().unwrap().iter().find(|f| f["name"] == format!("{a}-ex1-clicks")).unwrap();
    assert_eq!((mine["prefix"].as_str(), mine["example"].as_str()), (Some(a.as_str()), Some("example-1")));
    assert!(mine["created_at"].is_string(), "{mine}");
    let still_up = labs(&a, &["down", "--all", "--dry-run", "--json"]).ok().json();
    assert_eq!(names(&still_up["found"]).len(), found.len(), "a dry run removes nothing");

    let swept = labs(&a, &["down", "--all", "--json"]).ok().json();
    let removed = names(&swept["removed"]);
    assert!(removed.contains(&format!("{a}-ex1-clicks")) && removed.contains(&format!("{b}-ex7-orders")), "{swept}");
    assert_eq!(swept["left"], serde_json::json!([]), "{swept}");
    let after = labs(&b, &["down", "--all", "--dry-run", "--json"]).ok().json();
    assert_eq!(after["found"], serde_json::json!([]), "{after}");

    let foreign_left = kinesis.describe_stream_summary().stream_name(&foreign).send().await;
    let _ = kinesis.delete_stream().stream_name(&foreign).send().await;
    assert!(foreign_left.is_ok(), "the foreign stream was left alone");
}
