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

    let down = labs(&p, &["down", "example-3", "--json"]).ok().json();
    assert!(down.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "deleted"), "{down}");
    let again = labs(&p, &["down", "example-3", "--json"]).ok().json();
    assert!(again.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "absent"), "{again}");
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
