//! Example 3 on the emulator with the real deployed indexer Lambda: the derived search index
//! follows the products table through its change stream.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use support::{Teardown, labs, prefix};

#[test]
fn up_run_verify_query_down() {
    let p = prefix("ex3");
    let _teardown = Teardown { prefix: &p, example: "example-3" };
    labs(&p, &["up", "example-3"]).ok();
    let again = labs(&p, &["up", "example-3", "--json"]).ok().json();
    let actions: Vec<&str> =
        again["changes"].as_array().unwrap().iter().map(|c| c["action"]["action"].as_str().unwrap()).collect();
    assert!(actions.iter().all(|a| *a == "unchanged"), "second up must change nothing: {actions:?}");

    let nope = labs(&p, &["run", "example-3", "--scenario", "nope"]).fails();
    assert!(nope.error_line().contains("no scenario 'nope'"), "{}", nope.stderr);

    // The batch job first: the workload after it changes the table behind the batch result.
    let batch =
        labs(&p, &["run", "example-3", "--scenario", "batch-vs-stream", "--count", "60", "--seed", "2", "--json"])
            .ok()
            .json();
    assert!(batch["batch_stale_rows"].as_u64().unwrap() > 0, "writes between batch runs are missing: {batch}");
    assert_eq!(batch["batch_rows_after_rerun_behind"], 0, "{batch}");
    assert!(batch["cdc_lag_ms"].is_number(), "{batch}");

    let run = labs(&p, &["run", "example-3", "--count", "150", "--json"]).ok().json();
    assert!(run["caught_up_seconds"].is_number(), "{run}");
    assert!(run["products"].as_u64().unwrap() > 0);
    assert!(run["indexer_saw"]["records"].as_u64().unwrap() >= 150, "the indexer saw every change: {run}");
    for search in run["searches"].as_array().unwrap() {
        assert_eq!(search["agree"], true, "{search}");
    }
    let verified = labs(&p, &["verify", "example-3", "--json"]).ok().json();
    assert_eq!(verified["passed"], true);
    assert_eq!(verified["expected_rows"], verified["index_rows"]);
    // The batch result matches the table as of its snapshot (rebuilt from the change log), not now.
    let checked = &verified["batch"];
    assert_eq!(checked["differs_from_its_snapshot"], 0, "{checked}");
    assert!(checked["behind_now"].as_u64().unwrap() > 0, "the workload ran after the batch job: {checked}");
    assert_eq!(checked["stale_rows_seen"], batch["batch_stale_rows"], "{checked}");
    assert_eq!(checked["stale_rows_in_log"], batch["batch_stale_rows"], "{checked}");
    tamper_with_the_batch_result(&p);
    let failed = labs(&p, &["verify", "example-3", "--wait", "3", "--json"]).fails().json();
    assert_eq!(failed["batch"]["differs_from_its_snapshot"], 1, "{failed}");

    let down = labs(&p, &["down", "example-3", "--json"]).ok().json();
    assert!(down.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "deleted"), "{down}");
    let again = labs(&p, &["down", "example-3", "--json"]).ok().json();
    assert!(again.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "absent"), "{again}");
}

/// Deletes one row of the batch job's result behind its back.
fn tamper_with_the_batch_result(p: &str) {
    let table = format!("{p}-ex3-batch-index");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = support::dynamodb().await;
        let items = client.scan().table_name(&table).send().await.unwrap();
        let row = items.items().iter().find(|i| i["term"].as_s().unwrap() != "#snapshot").unwrap();
        let key = [("term", row["term"].clone()), ("product_id", row["product_id"].clone())];
        client
            .delete_item()
            .table_name(&table)
            .set_key(Some(key.map(|(k, v)| (k.to_owned(), v)).into()))
            .send()
            .await
            .unwrap();
    });
}

fn product(id: &str, name: &str, description: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("id", AttributeValue::S(id.into())),
        ("name", AttributeValue::S(name.into())),
        ("description", AttributeValue::S(description.into())),
        ("version", AttributeValue::N("1".into())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn query(p: &str, words: &str) -> Vec<String> {
    let found = labs(p, &["run", "example-3", "--query", words, "--json"]).ok().json();
    found.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

/// `labs verify` (which waits for the indexer) and then a search, off the async runtime.
async fn verify_and_search(p: &str, words: &'static str) -> (serde_json::Value, Vec<String>) {
    let p = p.to_owned();
    tokio::task::spawn_blocking(move || (labs(&p, &["verify", "example-3", "--json"]).ok().json(), query(&p, words)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_writes_reach_the_index_and_tampering_fails_verify() {
    let p = prefix("ex3direct");
    let _teardown = Teardown { prefix: &p, example: "example-3" };
    let up = p.clone();
    tokio::task::spawn_blocking(move || labs(&up, &["up", "example-3"]).ok()).await.unwrap();
    let client = support::dynamodb().await;
    let products = format!("{p}-ex3-products");

    // Written by "other means": the SDK, as the console or the AWS CLI would.
    for (id, name, description) in [
        ("direct-1", "Zanzibar teapot", "porcelain, hand painted"),
        ("direct-2", "Zanzibar mug", "stoneware"),
        ("direct-3", "plain cup", "?!"),
    ] {
        client.put_item().table_name(&products).set_item(Some(product(id, name, description))).send().await.unwrap();
    }
    let (verified, found) = verify_and_search(&p, "zanzibar").await;
    assert_eq!(verified["passed"], true);
    assert_eq!(found, vec!["direct-1".to_owned(), "direct-2".to_owned()]);

    // A word leaves (MODIFY) and a product goes (REMOVE).
    client
        .put_item()
        .table_name(&products)
        .set_item(Some(product("direct-1", "teapot", "porcelain")))
        .send()
        .await
        .unwrap();
    client.delete_item().table_name(&products).key("id", AttributeValue::S("direct-2".into())).send().await.unwrap();
    let (verified, found) = verify_and_search(&p, "zanzibar").await;
    assert_eq!(verified["passed"], true);
    assert!(found.is_empty(), "{found:?}");

    // Remove one index row behind the indexer's back: verify must notice and fail.
    client
        .delete_item()
        .table_name(format!("{p}-ex3-search-index"))
        .key("term", AttributeValue::S("teapot".into()))
        .key("product_id", AttributeValue::S("direct-1".into()))
        .send()
        .await
        .unwrap();
    let q = p.clone();
    let failed =
        tokio::task::spawn_blocking(move || labs(&q, &["verify", "example-3", "--wait", "3", "--json"]).fails())
            .await
            .unwrap();
    let report = failed.json();
    assert_eq!(report["passed"], false);
    assert_eq!(report["missing"], serde_json::json!([["teapot", "direct-1"]]));
    assert_eq!(report["extra"], serde_json::json!([]));

    // A stray row in the derived index, for a product the table does not have: verify fails too.
    client
        .put_item()
        .table_name(format!("{p}-ex3-search-index"))
        .item("term", AttributeValue::S("phantom".into()))
        .item("product_id", AttributeValue::S("nowhere-1".into()))
        .send()
        .await
        .unwrap();
    let q = p.clone();
    let failed =
        tokio::task::spawn_blocking(move || labs(&q, &["verify", "example-3", "--wait", "3", "--json"]).fails())
            .await
            .unwrap();
    let report = failed.json();
    assert_eq!(report["extra"], serde_json::json!([["phantom", "nowhere-1"]]), "{report}");
}

#[test]
fn backfill_ends_in_sync() {
    let p = prefix("ex3backfill");
    let _teardown = Teardown { prefix: &p, example: "example-3" };
    labs(&p, &["up", "example-3"]).ok();
    let run = labs(&p, &["run", "example-3", "--scenario", "backfill", "--count", "120", "--json"]).ok().json();
    let backfill = &run["backfill"];
    assert!(backfill["written"].as_u64().unwrap() > 0, "pre-stream products were loaded from the scan: {run}");
    labs(&p, &["verify", "example-3"]).ok();
}

#[test]
fn unknown_scenario_and_missing_tables_are_clear_errors() {
    let p = prefix("ex3errors");
    let run = labs(&p, &["run", "example-3"]).fails();
    assert!(run.error_line().contains("labs up example-3"), "{}", run.stderr);
    let run = labs(&p, &["verify", "example-3"]).fails();
    assert!(run.error_line().contains("does not exist"), "{}", run.stderr);
}

/// Every record of the products table's stream: (shard id, sequence number, the item's `id`).
async fn stream_records(products: &str) -> Vec<(String, String, String)> {
    let clients = labs_infra::Clients::new(&support::sdk_config().await);
    let table = clients.dynamodb.describe_table().table_name(products).send().await.unwrap();
    let stream_arn = table.table().unwrap().latest_stream_arn().unwrap().to_owned();
    let streams = &clients.dynamodb_streams;
    let stream = streams.describe_stream().stream_arn(&stream_arn).send().await.unwrap();
    let mut records = Vec::new();
    for shard in stream.stream_description().unwrap().shards() {
        let shard_id = shard.shard_id().unwrap().to_owned();
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(&shard_id)
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(current) = iterator {
            let page = streams.get_records().shard_iterator(current).send().await.unwrap();
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let change = record.dynamodb().unwrap();
                let id = change.keys().unwrap()["id"].as_s().unwrap().clone();
                records.push((shard_id.clone(), change.sequence_number().unwrap().to_owned(), id));
            }
            iterator = page.next_shard_iterator;
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_goes_to_the_failure_queue_and_later_writes_still_reach_the_index() {
    let p = prefix("ex3poison");
    let _teardown = Teardown { prefix: &p, example: "example-3" };
    let q = p.clone();
    let run = tokio::task::spawn_blocking(move || {
        labs(&q, &["up", "example-3"]).ok();
        labs(&q, &["run", "example-3", "--scenario", "poison", "--count", "60", "--seed", "7", "--json"]).ok().json()
    })
    .await
    .unwrap();
    assert!(run["caught_up_seconds"].is_number(), "the good writes after the poison reached the index: {run}");
    let failures = run["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "one failure record, for the poison alone: {run}");
    let failure = &failures[0];
    assert_eq!(failure["batch_size"], 1, "bisect isolated the poison: {failure}");
    assert_eq!(failure["condition"], "RetryAttemptsExhausted");
    assert_eq!(failure["approximate_invoke_count"], 3, "the first attempt and two retries: {failure}");

    // The record's shard and sequence range are the poison's, as the stream itself says.
    let records = stream_records(&format!("{p}-ex3-products")).await;
    let poison: Vec<_> = records.iter().filter(|(_, _, id)| id == "poison-7").collect();
    assert_eq!(poison.len(), 1, "{records:?}");
    let (shard_id, sequence_number, _) = poison[0];
    assert_eq!(failure["shard_id"].as_str(), Some(shard_id.as_str()));
    assert_eq!(failure["start_sequence_number"].as_str(), Some(sequence_number.as_str()));
    assert_eq!(failure["end_sequence_number"].as_str(), Some(sequence_number.as_str()));

    let q = p.clone();
    let verified =
        tokio::task::spawn_blocking(move || labs(&q, &["verify", "example-3", "--json"]).ok().json()).await.unwrap();
    assert_eq!(verified["passed"], true, "{verified}");
    assert_eq!(verified["odd_items"].as_array().unwrap().len(), 1, "the poison is the one odd item: {verified}");
}

fn runner_pid(p: &str) -> Option<u64> {
    let status = labs(p, &["status", "--json"]).ok().json();
    status["mappings"].as_array().unwrap().iter().find_map(|m| m["runner_pid"].as_u64())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runner_killed_mid_stream_and_started_again_skips_nothing() {
    let p = prefix("ex3kill");
    let _teardown = Teardown { prefix: &p, example: "example-3" };
    let q = p.clone();
    let first = tokio::task::spawn_blocking(move || {
        labs(&q, &["up", "example-3"]).ok();
        runner_pid(&q)
    })
    .await
    .unwrap()
    .expect("`up` started the runner");
    let client = support::dynamodb().await;
    let products = format!("{p}-ex3-products");
    let write = |from: usize, to: usize| {
        let client = client.clone();
        let products = products.clone();
        async move {
            for i in from..to {
                let item =
                    product(&format!("kill-{i:03}"), &format!("Killjoy item{i}"), "written while the runner dies");
                client.put_item().table_name(&products).set_item(Some(item)).send().await.unwrap();
            }
        }
    };
    write(0, 80).await;
    let killed = std::process::Command::new("kill").args(["-9", &first.to_string()]).status().unwrap();
    assert!(killed.success());
    write(80, 160).await;

    let q = p.clone();
    let (second, verified) = tokio::task::spawn_blocking(move || {
        let stopped = runner_pid(&q);
        labs(&q, &["up", "example-3"]).ok();
        (stopped, runner_pid(&q), labs(&q, &["verify", "example-3", "--json"]).ok().json())
    })
    .await
    .map(|(stopped, second, verified)| {
        assert_eq!(stopped, None, "status shows the killed runner as not running");
        (second, verified)
    })
    .unwrap();
    assert!(second.is_some_and(|pid| pid != first), "`up` started a new runner: {second:?} after {first}");
    assert_eq!(verified["passed"], true, "{verified}");
    assert_eq!(verified["products"], 160, "{verified}");
}

/// The settings of the prefix's one mapping, as `labs status --json` shows them.
fn mapping_settings(p: &str) -> String {
    let status = labs(p, &["status", "--json"]).ok().json();
    let mappings = status["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 1, "{status}");
    assert_eq!(mappings[0]["run_by"], "labs runner");
    mappings[0]["settings"].as_str().unwrap().to_owned()
}

#[test]
fn triggers_set_changes_the_runner_and_up_restores_the_declaration() {
    let p = prefix("ex3set");
    let _teardown = Teardown { prefix: &p, example: "example-3" };
    labs(&p, &["up", "example-3"]).ok();
    assert!(mapping_settings(&p).contains("retries 2, max age unlimited, bisect on"), "{}", mapping_settings(&p));

    let refused = labs(&p, &["triggers", "set", "ex3-cdc-indexer", "--parallelization", "11"]).fails();
    assert!(refused.error_line().contains("ParallelizationFactor 11"), "{}", refused.stderr);
    labs(
        &p,
        &["triggers", "set", "ex3-cdc-indexer", "--max-retries", "-1", "--bisect", "off", "--max-record-age", "60"],
    )
    .ok();
    let changed = mapping_settings(&p);
    assert!(changed.contains("retries unlimited, max age 60 s, bisect off"), "{changed}");

    // The declaration is the truth again after `up`, with nothing for the engine to change.
    let up = labs(&p, &["up", "example-3", "--json"]).ok().json();
    assert!(up["changes"].as_array().unwrap().iter().all(|c| c["action"]["action"] == "unchanged"), "{up}");
    assert!(mapping_settings(&p).contains("retries 2, max age unlimited, bisect on"), "{}", mapping_settings(&p));
}
