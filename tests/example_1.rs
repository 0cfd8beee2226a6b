//! Example 1 end to end on the emulator: up, run, verify, down, and each step again.

mod support;

use support::{Teardown, labs, prefix};

#[test]
fn up_run_verify_down_are_idempotent() {
    let p = prefix("ex1");
    let _teardown = Teardown { prefix: &p, example: "example-1" };

    let plan = labs(&p, &["up", "example-1", "--dry-run", "--json"]).ok().json();
    assert_eq!(plan["changes"][0]["action"]["action"], "create");
    labs(&p, &["up", "example-1"]).ok();
    let again = labs(&p, &["up", "example-1", "--json"]).ok().json();
    assert_eq!(again["changes"][0]["action"]["action"], "unchanged", "second up must change nothing");

    let run = labs(&p, &["run", "example-1", "--count", "700", "--json"]).ok().json();
    assert_eq!(run["produced"]["records"], 700);
    assert_eq!(run["replay_after_sequence"]["identical"], true);
    assert_eq!(run["replay_at_timestamp"]["identical"], true);
    assert!(run["replay_at_timestamp"]["read_again"].as_u64().unwrap() > 0);

    // A second run gets the next seed; verify covers both.
    labs(&p, &["run", "example-1", "--count", "300"]).ok();
    let verified = labs(&p, &["verify", "example-1", "--json"]).ok().json();
    assert_eq!(verified["report"]["expected"], 1000);
    assert_eq!(verified["passed"], true);

    // Reusing a seed is refused before anything is produced.
    let reuse = labs(&p, &["run", "example-1", "--seed", "1"]).fails();
    assert!(reuse.error_line().contains("seed 1 was already produced"));

    let down = labs(&p, &["down", "example-1", "--json"]).ok().json();
    assert_eq!(down[0]["removal"]["result"], "deleted");
    let down_again = labs(&p, &["down", "example-1", "--json"]).ok().json();
    assert_eq!(down_again[0]["removal"]["result"], "absent");
}

#[test]
fn verify_fails_when_an_event_is_in_the_log_twice() {
    let p = prefix("ex1dup");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    labs(&p, &["run", "example-1", "--count", "50"]).ok();
    labs(&p, &["verify", "example-1"]).ok();

    // Produce the same seed's events again with the generic producer: every id is now twice.
    let stream = format!("{p}-ex1-clicks");
    labs(&p, &["produce", "--stream", &stream, "--count", "50", "--seed", "1"]).ok();
    let run = labs(&p, &["verify", "example-1", "--json"]).fails();
    let report = run.json();
    assert_eq!(report["passed"], false);
    assert_eq!(report["report"]["duplicated"].as_array().unwrap().len(), 50);
}

#[test]
fn consume_reads_from_every_position() {
    let p = prefix("ex1consume");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    let stream = format!("{p}-ex1-clicks");
    labs(&p, &["produce", "--stream", &stream, "--count", "40", "--keys", "random", "--rate", "400"]).ok();

    let all = labs(&p, &["consume", "--stream", &stream, "--json"]).ok();
    let records: Vec<serde_json::Value> = all.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 40);

    let first = &records[0];
    let after = labs(
        &p,
        &[
            "consume",
            "--stream",
            &stream,
            "--from",
            "after-sequence",
            "--shard",
            first["shard_id"].as_str().unwrap(),
            "--sequence",
            first["sequence_number"].as_str().unwrap(),
            "--json",
        ],
    )
    .ok();
    let same_shard = records.iter().filter(|r| r["shard_id"] == first["shard_id"]).count();
    assert_eq!(after.stdout.lines().count(), same_shard - 1);

    let latest = labs(&p, &["consume", "--stream", &stream, "--from", "latest", "--json"]).ok();
    assert_eq!(latest.stdout.lines().count(), 0, "LATEST starts after the last record");
    let limited = labs(&p, &["consume", "--stream", &stream, "--limit", "5", "--json"]).ok();
    assert_eq!(limited.stdout.lines().count(), 5);
}
