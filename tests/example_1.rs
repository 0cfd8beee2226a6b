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
    // Read back from the shards (the stream held nothing before this run).
    let read: u64 = run["shards"].as_array().unwrap().iter().map(|s| s["records"].as_u64().unwrap()).sum();
    assert_eq!(read, 700, "{run}");
    assert_eq!(run["replay_after_sequence"]["identical"], true);
    assert_eq!(run["replay_at_timestamp"]["identical"], true);
    assert!(run["replay_at_timestamp"]["read_again"].as_u64().unwrap() > 0);

    // A second run gets the next seed; verify covers both.
    labs(&p, &["run", "example-1", "--count", "300"]).ok();
    let verified = labs(&p, &["verify", "example-1", "--json"]).ok().json();
    assert_eq!(verified["report"]["expected"], 1000);
    assert_eq!(verified["passed"], true);
    // Verify did both runs' replays again from the positions they recorded.
    let replays = verified["replays"].as_array().unwrap();
    assert_eq!(replays.len(), 4, "{verified}");
    assert!(replays.iter().all(|r| r["identical"] == true && r["read_again"] == r["recorded"]), "{verified}");
    assert_eq!(replays[0]["read_again"], run["replay_after_sequence"]["read_again"]);

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

fn kinesis_client(runtime: &tokio::runtime::Runtime) -> aws_sdk_kinesis::Client {
    runtime.block_on(async { aws_sdk_kinesis::Client::new(&support::sdk_config().await) })
}

/// Sets run tags on the stream by other means than labs.
fn set_tags(stream: &str, tags: &[(String, String)]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = kinesis_client(&runtime);
    runtime.block_on(async {
        for chunk in tags.chunks(10) {
            let mut request = client.add_tags_to_stream().stream_name(stream);
            for (key, value) in chunk {
                request = request.tags(key, value);
            }
            request.send().await.expect("set tags");
        }
    });
}

#[test]
fn verify_fails_on_a_planted_loss_and_on_a_replay_the_log_does_not_hold() {
    let p = prefix("ex1tamper");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    let run = labs(&p, &["run", "example-1", "--count", "200", "--json"]).ok().json();
    labs(&p, &["verify", "example-1"]).ok();
    let stream = format!("{p}-ex1-clicks");

    // A replay record that claims one record more than reading from its offset returns.
    let verified = labs(&p, &["verify", "example-1", "--json"]).ok().json();
    let recorded = &verified["runs"]["1"];
    let mark = &recorded["after_sequence"];
    let tag = |read_after: u64, read_at: u64| {
        format!(
            "200 after:{}:{}:{read_after} at:{}:{read_at}",
            mark["shard_id"].as_str().unwrap(),
            mark["from"].as_str().unwrap(),
            recorded["at_timestamp"]["from"].as_str().unwrap()
        )
    };
    let (after, at) = (
        run["replay_after_sequence"]["read_again"].as_u64().unwrap(),
        run["replay_at_timestamp"]["read_again"].as_u64().unwrap(),
    );
    set_tags(&stream, &[("labs:run:1".to_owned(), tag(after + 1, at))]);
    let failed = labs(&p, &["verify", "example-1", "--json"]).fails().json();
    let replays = failed["replays"].as_array().unwrap();
    assert_eq!(replays[0]["recorded"].as_u64(), Some(after + 1), "{failed}");
    assert_eq!(replays[0]["read_again"].as_u64(), Some(after));
    assert_eq!(replays[1]["read_again"], replays[1]["recorded"], "the other replay still agrees");
    set_tags(&stream, &[("labs:run:1".to_owned(), tag(after, at))]);
    labs(&p, &["verify", "example-1"]).ok();

    // A lost run: recorded as produced, never in the log.
    set_tags(&stream, &[("labs:run:77".to_owned(), "5".to_owned())]);
    let lost = labs(&p, &["verify", "example-1", "--json"]).fails().json();
    let missing: Vec<&str> =
        lost["report"]["missing"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(missing, ["s77-e0000000", "s77-e0000001", "s77-e0000002", "s77-e0000003", "s77-e0000004"]);

    // A stray record that is no event of this example.
    set_tags(&stream, &[("labs:run:77".to_owned(), "0".to_owned())]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = kinesis_client(&runtime);
    runtime.block_on(async {
        let data = aws_sdk_kinesis::primitives::Blob::new(b"not a click".to_vec());
        client.put_record().stream_name(&stream).partition_key("stray").data(data).send().await.expect("put");
    });
    let stray = labs(&p, &["verify", "example-1", "--json"]).fails().json();
    assert_eq!(stray["report"]["undecodable"], 1, "{stray}");
    assert!(stray["report"]["missing"].as_array().unwrap().is_empty(), "{stray}");

    // A run tag labs cannot read is an error, never skipped.
    set_tags(&stream, &[("labs:run:78".to_owned(), "five".to_owned())]);
    let unreadable = labs(&p, &["verify", "example-1"]).fails();
    assert!(unreadable.error_line().contains("labs:run:78 = five"), "{}", unreadable.stderr);
}

#[test]
fn seeds_near_the_maximum_and_the_tag_limit_are_clear_errors() {
    let p = prefix("ex1limits");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    let max = u64::MAX.to_string();
    labs(&p, &["run", "example-1", "--count", "5", "--seed", &max]).ok();
    let next = labs(&p, &["run", "example-1", "--count", "5"]).fails();
    assert!(next.error_line().contains(&format!("no seed follows {max}")), "{}", next.stderr);

    // 46 more recorded runs: with labs' three own tags the stream holds 50, the most Kinesis allows.
    let stream = format!("{p}-ex1-clicks");
    let tags: Vec<(String, String)> = (1..=45).map(|seed| (format!("labs:run:{seed}"), "1".to_owned())).collect();
    set_tags(&stream, &tags);
    let full = labs(&p, &["run", "example-1", "--count", "5", "--seed", "100"]).fails();
    assert!(full.error_line().contains("already records 46 runs"), "{}", full.stderr);
}

#[test]
fn durability_counts_what_each_producer_lost_and_verify_recounts_it() {
    let p = prefix("ex1durable");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    let run = labs(&p, &["run", "example-1", "--scenario", "durability", "--count", "100", "--json"]).ok().json();
    let unchecked = &run["fire_and_forget"];
    let refused = unchecked["observed"]["values"]["refused"].as_u64().unwrap();
    assert!(refused > 0, "{run}");
    assert_eq!(unchecked["in_log"]["distinct"].as_u64().unwrap(), 100 - refused, "refused entries are lost: {run}");
    assert_eq!(run["acknowledged"]["in_log"]["distinct"], 100, "re-sent until acknowledged: {run}");
    assert!(run["acknowledged"]["stats"]["retried_entries"].as_u64().unwrap() > 0, "{run}");

    let verified = labs(&p, &["verify", "example-1", "--json"]).ok().json();
    let checks = verified["scenario_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{verified}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{verified}");

    // The lost events turn up after all: the log no longer matches what the run recorded.
    let stream = format!("{p}-ex1-clicks");
    labs(&p, &["produce", "--stream", &stream, "--count", "100", "--seed", "1"]).ok();
    let failed = labs(&p, &["verify", "example-1", "--json"]).fails().json();
    let check = &failed["scenario_checks"][0];
    assert_eq!((check["seed"].as_u64(), check["passed"].as_bool()), (Some(1), Some(false)), "{failed}");
}

#[test]
fn overload_shows_buffering_dropping_and_backpressure_apart() {
    let p = prefix("ex1overload");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    let run = labs(&p, &["run", "example-1", "--scenario", "overload", "--count", "120", "--json"]).ok().json();
    let modes = run["modes"].as_array().unwrap();
    let mode = |name: &str| modes.iter().find(|m| m["mode"] == name).unwrap().clone();
    let (buffering, dropping, backpressure) = (mode("buffering"), mode("dropping"), mode("backpressure"));
    for m in modes {
        assert_eq!(m["in_log"]["distinct"], 120, "the log loses nothing in any mode: {m}");
    }
    assert_eq!(buffering["consumer"]["processed"], 120, "{buffering}");
    assert!(dropping["consumer"]["dropped"].as_u64().unwrap() > 0, "{dropping}");
    assert!(backpressure["refused"].as_u64().unwrap() > 0, "{backpressure}");
    let rate =
        |m: &serde_json::Value| m["producer"]["records"].as_f64().unwrap() / m["producer"]["seconds"].as_f64().unwrap();
    assert!(rate(&backpressure) < rate(&buffering), "refusals slowed the producer: {run}");
    assert!(
        backpressure["consumer"]["max_backlog"].as_u64() < buffering["consumer"]["max_backlog"].as_u64(),
        "the backlog grows only where the producer is not pushed back: {run}"
    );
    let verified = labs(&p, &["verify", "example-1", "--json"]).ok().json();
    let checks = verified["scenario_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{verified}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{verified}");

    // A record that no longer adds up: the dropping consumer claims it dropped nothing.
    let seed = dropping["seed"].as_u64().unwrap();
    let processed = dropping["consumer"]["processed"].as_u64().unwrap();
    let forged = format!("overload dropping backlog=0 dropped=0 processed={processed} refused=0 sent=120");
    set_tags(&format!("{p}-ex1-clicks"), &[(format!("labs:run:{seed}"), forged)]);
    let failed = labs(&p, &["verify", "example-1", "--json"]).fails().json();
    let check = failed["scenario_checks"].as_array().unwrap().iter().find(|c| c["seed"] == seed).cloned();
    assert_eq!(check.map(|c| c["passed"].clone()), Some(serde_json::json!(false)), "{failed}");
}

#[test]
fn polling_counts_empty_asks_per_interval_beside_a_push_consumer() {
    let p = prefix("ex1polling");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    let run = labs(&p, &["run", "example-1", "--scenario", "polling", "--count", "8", "--json"]).ok().json();
    let consumers = run["consumers"].as_array().unwrap();
    let pushed = run["push_supported"] == true;
    assert_eq!(consumers.len(), if pushed { 4 } else { 3 }, "{run}");
    assert!(consumers.iter().all(|c| c["received"] == 8), "every consumer got every event: {run}");
    let (eager, lazy) = (&consumers[0], &consumers[2]);
    assert!(eager["asks"].as_u64() > lazy["asks"].as_u64(), "{run}");
    assert!(eager["empty"].as_u64() > lazy["empty"].as_u64(), "the eager poller asks in vain: {run}");

    let verified = labs(&p, &["verify", "example-1", "--json"]).ok().json();
    assert_eq!(verified["scenario_checks"][0]["passed"], true, "{verified}");

    // A record that claims the eager poller missed an event the log holds: verify fails.
    let seed = run["seed"].as_u64().unwrap();
    let forged = "polling consumers c100=40 c1000=5 c3000=3 e100=30 e1000=1 e3000=1 g100=7 g1000=8 g3000=8 sent=8";
    set_tags(&format!("{p}-ex1-clicks"), &[(format!("labs:run:{seed}"), forged.to_owned())]);
    let failed = labs(&p, &["verify", "example-1", "--json"]).fails().json();
    assert_eq!(failed["scenario_checks"][0]["passed"], false, "{failed}");
}
