//! Example 4 on the emulator with the real deployed `exactly-once-counter` Lambda: every scenario
//! runs, verify passes, and planted tampering (a double-applied event, a removed failure
//! message) makes it fail.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use support::{Teardown, labs, prefix};

/// Runs one scenario and returns its report (the JSON array holds one).
fn run(p: &str, scenario: &str, count: &str) -> Value {
    let report = labs(p, &["run", "example-4", "--scenario", scenario, "--count", count, "--json"]).ok().json();
    let reports = report.as_array().expect("an array of scenario reports");
    assert_eq!(reports.len(), 1, "{report}");
    reports[0].clone()
}

/// Every expectation the scenario checked against the data held, except those named in `skip`.
#[track_caller]
fn held(report: &Value, skip: &[&str]) {
    let expectations = report["expectations"].as_array().expect("expectations");
    assert!(!expectations.is_empty(), "{report}");
    for e in expectations {
        let what = e["what"].as_str().unwrap();
        if skip.iter().any(|s| what.contains(s)) {
            continue;
        }
        assert_eq!(e["held"], true, "{}: {what}\n{report:#}", report["scenario"]);
    }
}

fn verify(p: &str, wait: &str) -> support::Run {
    labs(p, &["verify", "example-4", "--wait", wait, "--json"])
}

#[tokio::test(flavor = "multi_thread")]
async fn happy_transient_crash_slow_consumer_verify_and_a_double_applied_event_fails_it() {
    let p = prefix("ex4");
    let _teardown = Teardown { prefix: &p, example: "example-4" };
    let q = p.clone();
    let (happy, transient, crash, slow) = tokio::task::spawn_blocking(move || {
        labs(&q, &["up", "example-4"]).ok();
        let nope = labs(&q, &["run", "example-4", "--scenario", "nope"]).fails();
        assert!(nope.error_line().contains("no scenario 'nope'"), "{}", nope.stderr);
        (run(&q, "happy", "120"), run(&q, "transient", "120"), run(&q, "crash", "120"), run(&q, "slow-consumer", "200"))
    })
    .await
    .unwrap();
    held(&happy, &[]);
    held(&transient, &[]);
    assert!(transient["parts"][0]["naive_excess"].as_i64().unwrap() > 0, "{transient}");
    held(&crash, &[]);
    // The emulator's own poller runs one batch per shard whatever the factor: no overlap there.
    held(&slow, &["overlapped"]);

    let q = p.clone();
    let verified = tokio::task::spawn_blocking(move || verify(&q, "30").ok().json()).await.unwrap();
    assert_eq!(verified["passed"], true, "{verified:#}");
    assert!(verified["produced"].as_u64().unwrap() >= 560, "{verified}");
    assert_eq!(verified["naive_excess"], verified["redelivered"], "{verified}");
    assert!(verified["naive_excess"].as_i64().unwrap() > 0, "the transient and crash redeliveries show: {verified}");

    // A double-applied event: one purchase's increment applied a second time, behind the dedup row.
    let client = support::dynamodb().await;
    let applied = client.scan().table_name(format!("{p}-ex4-applied")).limit(1).send().await.unwrap();
    let row = &applied.items()[0];
    let user = row["user_id"].as_s().unwrap().clone();
    let amount = row["amount"].as_n().unwrap().clone();
    client
        .update_item()
        .table_name(format!("{p}-ex4-totals"))
        .key("user_id", AttributeValue::S(user.clone()))
        .update_expression("ADD #t :a, #c :one")
        .expression_attribute_names("#t", "total")
        .expression_attribute_names("#c", "count")
        .expression_attribute_values(":a", AttributeValue::N(amount))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let q = p.clone();
    let failed = tokio::task::spawn_blocking(move || verify(&q, "2").fails().json()).await.unwrap();
    assert_eq!(failed["passed"], false);
    let users: Vec<&str> =
        failed["total_mismatches"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap()).collect();
    assert_eq!(users, [user.as_str()], "{failed:#}");
}

/// Poison (stall, retry limit, bisect) and partial batch responses need AWS's semantics, which
/// labs' stream-trigger runner brings to the emulator (MiniStack's own poller retries a failing
/// batch forever and ignores bisect and retry limits); the mapping is declared `runner = true`.
#[tokio::test(flavor = "multi_thread")]
async fn poison_and_partial_batch_verify_and_a_removed_failure_message_fails_it() {
    let p = prefix("ex4poison");
    let _teardown = Teardown { prefix: &p, example: "example-4" };
    let q = p.clone();
    let (poison, partial) = tokio::task::spawn_blocking(move || {
        labs(&q, &["up", "example-4"]).ok();
        (run(&q, "poison", "150"), run(&q, "partial-batch", "150"))
    })
    .await
    .unwrap();
    held(&poison, &[]);
    held(&partial, &[]);
    assert!(poison["details"]["lost_with_poison"].as_u64().unwrap() > 0, "{poison}");
    assert_eq!(poison["details"]["discarded_after_bisect"], 1, "{poison}");

    let q = p.clone();
    let verified = tokio::task::spawn_blocking(move || verify(&q, "30").ok().json()).await.unwrap();
    assert_eq!(verified["passed"], true, "{verified:#}");
    assert!(verified["discarded"].as_u64().unwrap() >= 2, "{verified}");

    // Remove one failure message: the events it named are now neither counted nor discarded.
    let sqs = aws_sdk_sqs::Client::new(&support::sdk_config().await);
    let url = sqs.get_queue_url().queue_name(format!("{p}-ex4-failures")).send().await.unwrap().queue_url.unwrap();
    let received = sqs.receive_message().queue_url(&url).max_number_of_messages(1).send().await.unwrap();
    let message = &received.messages()[0];
    sqs.delete_message().queue_url(&url).receipt_handle(message.receipt_handle().unwrap()).send().await.unwrap();
    let q = p.clone();
    let failed = tokio::task::spawn_blocking(move || verify(&q, "2").fails().json()).await.unwrap();
    assert_eq!(failed["passed"], false);
    assert!(!failed["lost"].as_array().unwrap().is_empty(), "{failed:#}");
}

/// The mapping ids with a settings row in the prefix's runner table, or `None` without a table.
async fn runner_mappings(p: &str) -> Option<Vec<String>> {
    let dynamodb = support::dynamodb().await;
    let scanned = dynamodb.scan().table_name(format!("{p}-triggers-checkpoints")).send().await.ok()?;
    let mut ids: Vec<String> = scanned
        .items()
        .iter()
        .filter(|item| item.get("shard_id").and_then(|s| s.as_s().ok()).is_some_and(|s| s == "#settings"))
        .filter_map(|item| item.get("mapping_id").and_then(|m| m.as_s().ok()).cloned())
        .collect();
    ids.sort();
    Some(ids)
}

/// Examples 3 and 4 both run on the runner under one prefix: they share its table (its own
/// stack, so neither `up` finds the other's resource), and it goes only with the last of them.
#[tokio::test(flavor = "multi_thread")]
async fn examples_3_and_4_share_the_runner_table_until_the_last_goes_down() {
    let p = prefix("ex34");
    let _teardown_3 = Teardown { prefix: &p, example: "example-3" };
    let _teardown_4 = Teardown { prefix: &p, example: "example-4" };
    let q = p.clone();
    tokio::task::spawn_blocking(move || {
        labs(&q, &["up", "example-3"]).ok();
        labs(&q, &["up", "example-4"]).ok();
    })
    .await
    .unwrap();
    let ex3 = format!("{p}-ex3-products -> {p}-ex3-cdc-indexer");
    let ex4 = format!("{p}-ex4-events -> {p}-ex4-processor");
    assert_eq!(runner_mappings(&p).await, Some(vec![ex3, ex4.clone()]));

    let q = p.clone();
    tokio::task::spawn_blocking(move || labs(&q, &["down", "example-3"]).ok()).await.unwrap();
    assert_eq!(runner_mappings(&p).await, Some(vec![ex4]), "example 4 still runs on the runner");

    let q = p.clone();
    tokio::task::spawn_blocking(move || labs(&q, &["down", "example-4"]).ok()).await.unwrap();
    assert_eq!(runner_mappings(&p).await, None, "the last runner mapping took the table with it");
}
