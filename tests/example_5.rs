//! Example 5 on the emulator with the real deployed relay and projector Lambdas: every scenario,
//! verify passing, and verify failing on tampering (an event removed from the store, a
//! projection row edited).

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use support::{Teardown, labs, prefix};

fn scenario<'a>(run: &'a Value, name: &str) -> &'a Value {
    let scenarios = run["scenarios"].as_array().unwrap();
    let found = scenarios.iter().find(|s| s["scenario"] == name);
    found.unwrap_or_else(|| panic!("no {name} in {run}"))
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a number: {value}"))
}

/// The check of a verify report whose name starts with `name`.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    let checks = report["checks"].as_array().unwrap();
    checks.iter().find(|c| c["check"].as_str().unwrap().starts_with(name)).unwrap_or_else(|| panic!("{report}"))
}

fn failed_checks(report: &Value) -> Vec<String> {
    let checks = report["checks"].as_array().unwrap();
    checks.iter().filter(|c| c["passed"] == false).map(|c| c["check"].as_str().unwrap().to_owned()).collect()
}

fn key(pairs: &[(&str, AttributeValue)]) -> std::collections::HashMap<String, AttributeValue> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// `labs verify` off the async runtime; the tampering tests give derived data 3 s to catch up.
async fn verify(p: &str, passes: bool) -> support::Run {
    let p = p.to_owned();
    tokio::task::spawn_blocking(move || {
        let run = labs(&p, &["verify", "example-5", "--wait", "3", "--json"]);
        if passes { run.ok() } else { run.fails() }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_verify_tampering_and_down() {
    let p = prefix("ex5");
    let _teardown = Teardown { prefix: &p, example: "example-5" };
    let q = p.clone();
    let run = tokio::task::spawn_blocking(move || {
        labs(&q, &["up", "example-5"]).ok();
        let again = labs(&q, &["up", "example-5", "--json"]).ok().json();
        let actions: Vec<&str> =
            again["changes"].as_array().unwrap().iter().map(|c| c["action"]["action"].as_str().unwrap()).collect();
        assert!(actions.iter().all(|a| *a == "unchanged"), "second up must change nothing: {actions:?}");
        let nope = labs(&q, &["run", "example-5", "--scenario", "nope"]).fails();
        assert!(nope.error_line().contains("no scenario 'nope'"), "{}", nope.stderr);
        labs(&q, &["run", "example-5", "--count", "40", "--json"]).ok().json()
    })
    .await
    .unwrap();

    // commands: refusals, races lost and retried, and the CRUD table losing updates.
    let commands = scenario(&run, "commands");
    assert_eq!(commands["problem"], Value::Null, "{commands}");
    assert!(number(&commands["rejected"]) > 0 && number(&commands["accepted"]) > 0, "{commands}");
    assert_eq!(commands["lost_races"], commands["races"], "every race has one loser: {commands}");
    let race = &commands["race_outcomes"].as_array().unwrap()[0];
    assert_ne!(race["winner"], race["loser"]);
    assert!(!commands["lost_updates"].as_array().unwrap().is_empty(), "{commands}");
    assert!(commands["caught_up_seconds"].is_number());

    // rebuild: the replayed projection equals the live one; peaks come from history.
    let rebuild = scenario(&run, "rebuild");
    assert_eq!(rebuild["identical"], true, "{rebuild}");
    assert_eq!(rebuild["rebuilt_rows"], rebuild["live_rows"]);
    assert!(!rebuild["peaks"].as_array().unwrap().is_empty(), "{rebuild}");

    // snapshot: loads read fewer events, and land on the same state.
    let snapshot = scenario(&run, "snapshot");
    assert!(number(&snapshot["snapshots_written"]) > 0, "{snapshot}");
    assert!(number(&snapshot["events_read"]) < number(&snapshot["events_read_without_snapshots"]), "{snapshot}");
    assert!(snapshot["accounts"].as_array().unwrap().iter().all(|a| a["equal"] == true), "{snapshot}");

    // evolve: both shapes in the store, one projection.
    let evolve = scenario(&run, "evolve");
    assert!(number(&evolve["v1_events"]) > 0 && number(&evolve["v2_events"]) > 0, "{evolve}");
    assert!(evolve["v1_example"].as_str().unwrap().contains("amount_cents"), "{evolve}");
    assert_eq!(evolve["differing_accounts"], serde_json::json!([]));

    // retention: compacted is much smaller, and compacted + tail equals the projection.
    let retention = scenario(&run, "retention");
    assert_eq!(retention["problem"], Value::Null, "{retention}");
    assert_eq!(retention["retention_hours"], 24);
    assert!(number(&retention["compacted_rows"]) < number(&retention["log_records"]), "{retention}");
    assert!(number(&retention["tail_events"]) > 0, "{retention}");
    assert_eq!(retention["rebuilt_equals_projection"], true);

    let verified = verify(&p, true).await.json();
    assert_eq!(verified["passed"], true, "{verified}");
    assert_eq!(verified["runs"].as_array().unwrap().len(), 5);
    assert!(number(&verified["events"]) > 100);

    let client = support::dynamodb().await;
    let balances = format!("{p}-ex5-balances");
    let events = format!("{p}-ex5-event-store");

    // A projection row edited by hand: the row's balance no longer folds from its events.
    let account = AttributeValue::S("commands-1-acct-000".into());
    let row_key = key(&[("account_id", account.clone())]);
    let original = client.get_item().table_name(&balances).set_key(Some(row_key.clone())).send().await.unwrap();
    let original = original.item.expect("the projection has the account");
    client
        .update_item()
        .table_name(&balances)
        .set_key(Some(row_key))
        .update_expression("SET balance = balance + :extra")
        .expression_attribute_values(":extra", AttributeValue::N("100000".into()))
        .send()
        .await
        .unwrap();
    let failed = verify(&p, false).await.json();
    assert_eq!(failed_checks(&failed), vec![check(&failed, "balances projection")["check"].as_str().unwrap()]);
    let details = check(&failed, "balances projection")["details"].as_str().unwrap().to_owned();
    assert!(details.contains("commands-1-acct-000") && details.contains("differ from a fold"), "{details}");
    client.put_item().table_name(&balances).set_item(Some(original)).send().await.unwrap();
    verify(&p, true).await;

    // An event removed from the store: a gap, an accepted command missing an event, and a log
    // holding an event the store no longer has.
    let gone = key(&[
        ("account_id", AttributeValue::S("rebuild-1-acct-000".into())),
        ("version", AttributeValue::N("2".into())),
    ]);
    client.delete_item().table_name(&events).set_key(Some(gone)).send().await.unwrap();
    let failed = verify(&p, false).await;
    let report = failed.json();
    let store = check(&report, "event store");
    assert_eq!(store["passed"], false);
    assert!(store["details"].as_str().unwrap().contains("gaps (1): rebuild-1-acct-000 v2"), "{store}");
    assert_eq!(check(&report, "every accepted command")["passed"], false, "{report}");
    let log = check(&report, "Kinesis log")["details"].as_str().unwrap().to_owned();
    assert!(log.contains("log events not in the store"), "{log}");
    // For people: the failing check is one row of the table, naming what is wrong.
    let q = p.clone();
    let text =
        tokio::task::spawn_blocking(move || labs(&q, &["verify", "example-5", "--wait", "1"]).fails()).await.unwrap();
    let line = text.stdout.lines().find(|l| l.contains("event store") && l.contains("FAILED"));
    assert!(line.is_some_and(|l| l.contains("rebuild-1-acct-000 v2")), "{}", text.stdout);
    assert!(text.stderr.contains("failed verification"), "{}", text.stderr);

    let q = p.clone();
    tokio::task::spawn_blocking(move || {
        let down = labs(&q, &["down", "example-5", "--json"]).ok().json();
        assert!(down.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "deleted"), "{down}");
        let again = labs(&q, &["down", "example-5", "--json"]).ok().json();
        assert!(again.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "absent"), "{again}");
    })
    .await
    .unwrap();
}

#[test]
fn a_single_scenario_and_its_seed() {
    let p = prefix("ex5one");
    let _teardown = Teardown { prefix: &p, example: "example-5" };
    labs(&p, &["up", "example-5"]).ok();
    let run =
        labs(&p, &["run", "example-5", "--scenario", "snapshot", "--seed", "9", "--count", "20", "--json"]).ok().json();
    assert_eq!(run["scenarios"].as_array().unwrap().len(), 1);
    assert_eq!(scenario(&run, "snapshot")["seed"], 9);
    let again = labs(&p, &["run", "example-5", "--scenario", "snapshot", "--seed", "9"]).fails();
    assert!(again.error_line().contains("seed 9 was already used"), "{}", again.stderr);
    let verified = labs(&p, &["verify", "example-5", "--json"]).ok().json();
    assert_eq!(verified["runs"][0]["seed"], 9);
}

#[test]
fn missing_tables_are_a_clear_error() {
    let p = prefix("ex5errors");
    let run = labs(&p, &["run", "example-5"]).fails();
    assert!(run.error_line().contains("labs up example-5"), "{}", run.stderr);
    let run = labs(&p, &["verify", "example-5"]).fails();
    assert!(run.error_line().contains("does not exist"), "{}", run.stderr);
}
