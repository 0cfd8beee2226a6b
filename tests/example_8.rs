//! Example 8 on the emulator with the deployed `stream-joins` functions: every scenario once,
//! verify passes, and fails once a join's output is tampered with by other means.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use support::{Teardown, labs, prefix};

#[tokio::test(flavor = "multi_thread")]
async fn the_joins_equal_their_references_and_tampering_fails_verify() {
    let p = prefix("ex8");
    let _teardown = Teardown { prefix: &p, example: "example-8" };
    let cli = p.clone();
    let (run, verified) = tokio::task::spawn_blocking(move || {
        labs(&cli, &["up", "example-8"]).ok();
        let run = labs(&cli, &["run", "example-8", "--count", "12", "--json"]).ok().json();
        (run, labs(&cli, &["verify", "example-8", "--json"]).ok().json())
    })
    .await
    .unwrap();
    let scenarios: Vec<&str> = run.as_array().unwrap().iter().map(|r| r["scenario"].as_str().unwrap()).collect();
    assert_eq!(scenarios, ["window-join", "enrichment", "replay", "timeline"]);
    let window = &run[0];
    assert!(window["no_click"].as_u64().unwrap() > 0, "{window}");
    assert_eq!(window["state"].as_array().unwrap().last().unwrap()["buffered"], 0, "state evicted: {window}");
    assert!(run[2]["naive_changed"].as_u64().unwrap() > 0 && run[2]["versioned_changed"] == 0, "{}", run[2]);
    assert_eq!(verified["passed"], true, "{verified}");

    // A "no click" row turned into a click: the window join no longer equals its reference.
    let client = support::dynamodb().await;
    let table = format!("{p}-ex8-search-clicks");
    let rows = client.scan().table_name(&table).send().await.unwrap();
    let no_click =
        rows.items().iter().find(|i| i["click_id"].as_s().is_ok_and(|c| c == "-")).expect("a no-click row").clone();
    let mut forged = no_click.clone();
    forged.insert("click_id".into(), AttributeValue::S("forged-click".into()));
    client.put_item().table_name(&table).set_item(Some(forged)).send().await.unwrap();
    let cli = p.clone();
    let tampered = tokio::task::spawn_blocking(move || labs(&cli, &["verify", "example-8", "--wait", "0", "--json"]))
        .await
        .unwrap()
        .fails()
        .json();
    assert_eq!(tampered["passed"], false, "{tampered}");
}
