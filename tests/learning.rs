//! `labs guide` and `labs questions`: the guide and the learning map, compiled into the binary,
//! need no emulator. `labs checkpoint`: one checkpoint run for real on the emulator.

mod support;

use support::{Teardown, labs, labs_offline, prefix};

#[test]
fn guide_lists_a_section_per_built_example() {
    let run = labs_offline(&["guide"]).ok();
    assert!(run.stdout.contains("labs guide example-1"), "{}", run.stdout);
    assert!(run.stdout.contains("labs guide example-7"), "{}", run.stdout);
    let sections = labs_offline(&["--json", "guide"]).ok().json();
    let ids: Vec<&str> = sections.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    let listed = labs_offline(&["--json", "list"]).ok().json();
    for example in listed.as_array().unwrap().iter().filter(|e| e["built"] == true) {
        let id = example["id"].as_str().unwrap();
        assert!(ids.contains(&id), "built {id} has no guide section: {ids:?}");
    }
}

#[test]
fn guide_prints_one_section_and_only_that() {
    let run = labs_offline(&["guide", "example-3"]).ok();
    assert!(run.stdout.starts_with("## Example 3: change data capture"), "{}", run.stdout);
    assert!(run.stdout.contains("labs verify example-3"), "{}", run.stdout);
    assert!(!run.stdout.contains("## Example 5"), "the next section leaked in");
    assert!(!run.stdout.contains("\n---\n"), "the separator belongs to no section");
    assert!(run.stdout.contains("What is change data capture?"), "the plan's questions it answers: {}", run.stdout);
    let section = labs_offline(&["--json", "guide", "example-3"]).ok().json();
    assert_eq!(section["id"], "example-3");
    let answers = section["answers"].as_array().unwrap();
    assert!(
        answers.iter().all(|i| i["answers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("example-3")))
    );
    assert!(answers.iter().any(|i| i["id"] == "final-5"), "keeping a search index in sync: {answers:?}");
}

#[test]
fn guide_refuses_an_unknown_example_and_one_without_a_section() {
    let run = labs_offline(&["guide", "example-9"]).fails();
    assert!(run.stderr.contains("unknown example 'example-9'"), "{}", run.stderr);
    let listed = labs_offline(&["--json", "list"]).ok().json();
    if let Some(planned) = listed.as_array().unwrap().iter().find(|e| e["built"] == false) {
        let id = planned["id"].as_str().unwrap().to_owned();
        let run = labs_offline(&["guide", &id]).fails();
        assert!(run.error_line().contains(&format!("{id} has no section in the guide")), "{}", run.stderr);
    }
}

#[test]
fn questions_show_every_item_of_the_plan_with_its_state() {
    let map = labs_offline(&["--json", "questions"]).ok().json();
    let items = map["items"].as_array().unwrap();
    assert_eq!(items.len(), 61, "40 questions, 12 checkpoint items, 5 assessment items, 4 projects");
    let counted: u64 = map["counts"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(counted, 61);
    for item in items {
        let state = item["state"].as_str().unwrap();
        assert!(["verified", "shown", "explained", "not-yet"].contains(&state), "{item}");
        if state == "verified" {
            assert!(item["verify"].is_string() && !item["answers"].as_array().unwrap().is_empty(), "{item}");
        }
    }
    let offsets = items.iter().find(|i| i["text"] == "How do consumer offsets work?").unwrap();
    assert_eq!(offsets["answers"][0], "example-1");
    let kafka = items.iter().find(|i| i["id"] == "project-1").unwrap();
    assert!(
        kafka["kafka"].as_array().unwrap().iter().any(|k| k["kafka"].as_str().unwrap().contains("kafka-topics.sh"))
    );
}

#[test]
fn questions_table_and_summary_for_people() {
    let run = labs_offline(&["questions"]).ok();
    assert!(run.stdout.contains("What is change data capture?"), "{}", run.stdout);
    assert!(run.stdout.contains("61 items:"), "{}", run.stdout);
    let page = labs_offline(&["questions", "--markdown"]).ok();
    assert!(page.stdout.starts_with("# The learning map"), "{}", page.stdout);
    let both = labs_offline(&["--json", "questions", "--markdown"]).fails();
    assert!(both.error_line().contains("pick one"), "{}", both.stderr);
}

#[test]
fn checkpoint_lists_the_plans_checkpoints_and_refuses_one_it_lacks_before_touching_any_target() {
    let listed = labs_offline(&["--json", "checkpoint"]).ok().json();
    let numbers: Vec<u64> = listed.as_array().unwrap().iter().map(|c| c["checkpoint"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(listed[2]["items"][0], "Can you explain how databases can be derived from event streams?");
    let run = labs_offline(&["checkpoint", "9"]).fails();
    assert!(run.error_line().contains("no checkpoint 9: use one of 1, 2, 3, 4"), "{}", run.stderr);
}

/// Checkpoint 2 is the cheap one: example 1 (a stream), example 2's load-balance (queues) and
/// example 7's hot-shard and reshard (a stream), no scenario that waits on a Lambda. Example 1 is
/// up beforehand with a stray record in its log, so its verifier fails: the checkpoint must say
/// so for the items it answers, still verify and remove the others, leave example 1 up, and exit
/// non-zero.
#[test]
fn checkpoint_runs_and_verifies_what_answers_it_and_removes_only_what_it_brought_up() {
    let p = prefix("checkpoint");
    let _teardown = [
        Teardown { prefix: &p, example: "example-1" },
        Teardown { prefix: &p, example: "example-2" },
        Teardown { prefix: &p, example: "example-7" },
    ];
    labs(&p, &["up", "example-1"]).ok();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = aws_sdk_kinesis::Client::new(&support::sdk_config().await);
        let data = aws_sdk_kinesis::primitives::Blob::new(b"not a click".to_vec());
        let stream = format!("{p}-ex1-clicks");
        client.put_record().stream_name(stream).partition_key("stray").data(data).send().await.expect("put");
    });

    let run = labs(&p, &["--json", "checkpoint", "2", "--count", "40"]).fails();
    assert!(run.error_line().contains("checkpoint 2 failed"), "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["passed"], false, "{report}");
    let items = report["items"].as_array().unwrap();
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "Can you compare traditional message brokers with log-based brokers?",
            "Can you explain when to use each messaging pattern?",
            "Do you understand how partitioning enables scalability?",
        ],
        "the plan's words, in its order"
    );
    let item = |id: &str| items.iter().find(|i| i["id"] == id).unwrap().clone();
    assert_eq!(item("checkpoint-2.1")["verified"], "no", "example-1 answers it and failed: {report}");
    assert!(item("checkpoint-2.1")["detail"].as_str().unwrap().contains("example-1: its verifier failed"));
    assert_eq!(item("checkpoint-2.2")["verified"], "explained-only");
    assert_eq!(item("checkpoint-2.3")["verified"], "no", "example-1 is among its answers");

    let examples = report["examples"].as_array().unwrap();
    let ran: Vec<(&str, bool, bool)> = examples
        .iter()
        .map(|e| (e["example"].as_str().unwrap(), e["was_up"].as_bool().unwrap(), e["verified"] == true))
        .collect();
    assert_eq!(ran, [("example-1", true, false), ("example-2", false, true), ("example-7", false, true)], "{report}");
    assert!(examples.iter().all(|e| e["failure"].is_null()), "{report}");
    assert_eq!(examples[1]["runs"]["scenarios"], serde_json::json!(["load-balance"]));
    assert_eq!(examples[2]["runs"]["scenarios"], serde_json::json!(["hot-shard", "reshard"]));

    let status = labs(&p, &["--json", "status"]).ok().json();
    let present = |id: &str| {
        let row = status["examples"].as_array().unwrap().iter().find(|e| e["example"] == id).unwrap().clone();
        row["provisioned"].as_u64().unwrap()
    };
    assert!(present("example-1") > 0, "example-1 was up before the checkpoint and stays up: {status}");
    assert_eq!(present("example-2"), 0, "the checkpoint brought example-2 up, so it removes it");
    assert_eq!(present("example-7"), 0, "the checkpoint brought example-7 up, so it removes it");
}
