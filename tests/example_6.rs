//! Example 6 on the emulator with the real deployed event-time Lambda: every scenario in one
//! run, verify passing, verify failing on a tampered window, and down.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use support::{Teardown, labs, prefix};

fn scenario<'a>(run: &'a Value, name: &str) -> &'a Value {
    let scenarios = run["scenarios"].as_array().unwrap();
    scenarios.iter().find(|s| s["scenario"] == name).unwrap_or_else(|| panic!("no {name} in {run}"))
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a number: {value}"))
}

fn failed_checks(report: &Value) -> Vec<String> {
    let checks = report["checks"].as_array().unwrap();
    checks.iter().filter(|c| c["passed"] == false).map(|c| c["check"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_verify_tampering_and_down() {
    let p = prefix("ex6");
    let _teardown = Teardown { prefix: &p, example: "example-6" };
    let q = p.clone();
    let run = tokio::task::spawn_blocking(move || {
        labs(&q, &["up", "example-6"]).ok();
        let nope = labs(&q, &["run", "example-6", "--scenario", "nope"]).fails();
        assert!(nope.error_line().contains("no scenario 'nope'"), "{}", nope.stderr);
        labs(&q, &["run", "example-6", "--count", "60", "--json"]).ok().json()
    })
    .await
    .unwrap();
    for s in run["scenarios"].as_array().unwrap() {
        assert_eq!(s["problem"], Value::Null, "{s}");
    }
    let mut parts: Vec<&str> =
        run["parts"].as_array().unwrap().iter().map(|p| p["namespace"].as_str().unwrap()).collect();
    parts.sort_unstable();
    assert_eq!(parts, ["idle", "readings"], "one shared readings part, and the idle shard's own");

    // event-vs-processing: same totals, different minutes.
    let minutes = scenario(&run, "event-vs-processing")["minutes"].as_array().unwrap().clone();
    let total = |field: &str| minutes.iter().map(|m| number(&m[field])).sum::<u64>();
    assert_eq!(total("by_arrival"), 360);
    assert_eq!(total("ground_truth"), 360);
    assert!(minutes.iter().any(|m| m["by_arrival"] != m["by_event_time"]), "{minutes:?}");

    // Each window type: all final, none emitted before the watermark passed its end.
    for kind in ["tumbling", "hopping", "session"] {
        let s = scenario(&run, kind);
        assert!(number(&s["windows"]) > 0 && s["windows"] == s["final_windows"], "{s}");
        assert_eq!(s["emitted_early"], 0, "{s}");
        assert_eq!(s["differ_from_accepted"], 0, "{s}");
    }
    // The backlog: stragglers revise windows or reach the side output; waiting longer answers later.
    let late = scenario(&run, "late-events");
    assert!(number(&late["side_output"]) + number(&late["revised_windows"]) > 0, "{late}");
    let trade_offs = late["trade_offs"].as_array().unwrap();
    assert!(trade_offs.len() >= 2);
    // The silent shard held the watermark until it was idle, then was left out.
    let idle = scenario(&run, "idle-shard");
    assert_eq!(idle["released"], true, "{idle}");
    assert!(idle["longest_stall_s"].as_f64().unwrap() >= 15.0, "{idle}");
    // Lambda's tumbling windows, where the runner delivers them; said plainly where it does not.
    let arrival = scenario(&run, "arrival-windows");
    if arrival["supported"] == true {
        assert_eq!(arrival["differing"], 0, "{arrival}");
        assert!(!arrival["rows"].as_array().unwrap().is_empty(), "{arrival}");
    } else {
        assert!(arrival["note"].as_str().unwrap().contains("not in this build"), "{arrival}");
    }

    let q = p.clone();
    let verified =
        tokio::task::spawn_blocking(move || labs(&q, &["verify", "example-6", "--json"]).ok().json()).await.unwrap();
    assert_eq!(verified["passed"], true, "{verified}");
    assert!(number(&verified["readings"]) > 360, "the readings part and the idle part: {verified}");

    // A final window edited by hand: it no longer equals its readings, and the books no longer balance.
    let client = support::dynamodb().await;
    let windows = format!("{p}-ex6-windows");
    let rows = client.scan().table_name(&windows).send().await.unwrap();
    let row = rows
        .items()
        .iter()
        .find(|i| i["window_key"].as_s().unwrap().starts_with("tumbling-1m#"))
        .expect("a tumbling window")
        .clone();
    let key = [("window_key", row["window_key"].clone()), ("start", row["start"].clone())];
    client
        .update_item()
        .table_name(&windows)
        .set_key(Some(key.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()))
        .update_expression("SET #count = #count + :one")
        .expression_attribute_names("#count", "count")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let q = p.clone();
    let failed =
        tokio::task::spawn_blocking(move || labs(&q, &["verify", "example-6", "--wait", "1", "--json"]).fails())
            .await
            .unwrap()
            .json();
    assert_eq!(
        failed_checks(&failed),
        [
            "every final window equals the ground truth over the readings it accepted",
            "every reading is in exactly one of (its final window, the side output)"
        ],
        "{failed}"
    );

    let q = p.clone();
    tokio::task::spawn_blocking(move || {
        let down = labs(&q, &["down", "example-6", "--json"]).ok().json();
        assert!(down.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "deleted"), "{down}");
    })
    .await
    .unwrap();
}
