//! Kafka 1 end to end on the embedded Kafka broker (tansu) that tests/run.sh starts: up, run
//! every scenario, verify, down; a tampered log fails verify; a topic labs did not make is a
//! conflict; and a second broker on its own port starts, answers, and stops with its process group.

mod support;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::{Teardown, ensure_kafka, kafka_bootstrap, labs, prefix};

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka_bootstrap());
    config
}

#[test]
fn up_run_verify_down_are_idempotent() {
    ensure_kafka();
    let p = prefix("k1");
    let _teardown = Teardown { prefix: &p, example: "kafka-1" };

    let plan = labs(&p, &["up", "kafka-1", "--dry-run", "--json"]).ok().json();
    let topics: Vec<&serde_json::Value> =
        plan["changes"].as_array().unwrap().iter().filter(|c| c["kind"] == "kafka-topic").collect();
    assert_eq!(topics.len(), 2, "{plan}");
    assert!(topics.iter().all(|c| c["action"]["action"] == "create"), "{plan}");
    labs(&p, &["up", "kafka-1"]).ok();
    let again = labs(&p, &["up", "kafka-1", "--json"]).ok().json();
    let changes = again["changes"].as_array().unwrap();
    assert!(changes.iter().all(|c| c["action"]["action"] == "unchanged"), "second up must change nothing: {again}");

    // Every scenario, one run.
    let run = labs(&p, &["run", "kafka-1", "--count", "400", "--json"]).ok();
    assert!(run.stdout.contains("\"groups\""), "{}", run.stdout);
    let report = run.json();
    assert_eq!(report["run"]["count"], 400);
    assert_eq!(report["produce"]["records"], 400);
    let groups = report["run"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 6, "shared, audit, search, resume, replay, rebalance: {report}");

    // A second run of one scenario gets the next seed; verify covers both.
    labs(&p, &["run", "kafka-1", "--scenario", "rebalance", "--count", "200"]).ok();
    let verified = labs(&p, &["verify", "kafka-1", "--json"]).ok().json();
    assert_eq!(verified["passed"], true, "{verified}");
    assert_eq!(verified["report"]["expected"], 600);
    let checks = verified["checks"].as_array().unwrap();
    // Three log checks, then per run its groups' commits and its lookup by time.
    assert_eq!(checks.len(), 3 + (6 + 1) + (1 + 1), "{verified}");

    let reuse = labs(&p, &["run", "kafka-1", "--seed", "1"]).fails();
    assert!(reuse.error_line().contains("seed 1 was already used"), "{}", reuse.stderr);

    let down = labs(&p, &["down", "kafka-1", "--json"]).ok().json();
    let topic_rows: Vec<&serde_json::Value> =
        down.as_array().unwrap().iter().filter(|r| r["kind"] == "kafka-topic").collect();
    assert_eq!(topic_rows.len(), 2, "{down}");
    assert!(topic_rows.iter().all(|r| r["removal"]["result"] == "deleted"), "{down}");
    let down_again = labs(&p, &["down", "kafka-1", "--json"]).ok().json();
    assert!(down_again.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "absent"), "{down_again}");
}

#[test]
fn verify_fails_when_a_record_is_in_the_log_twice() {
    ensure_kafka();
    let p = prefix("k1dup");
    let _teardown = Teardown { prefix: &p, example: "kafka-1" };
    labs(&p, &["up", "kafka-1"]).ok();
    labs(&p, &["run", "kafka-1", "--scenario", "log", "--count", "60"]).ok();
    labs(&p, &["verify", "kafka-1"]).ok();

    // By other means than labs: read the first record of partition 0 and append it again.
    let topic = format!("{p}-k1-clicks");
    let consumer: BaseConsumer = client_config().set("group.id", "tamper").create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&list).unwrap();
    let message = match consumer.poll(Duration::from_secs(10)) {
        Some(Ok(message)) => message.detach(),
        Some(Err(err)) => panic!("cannot read {topic}: {err}"),
        None => panic!("{topic}/0 holds nothing to copy"),
    };
    let producer: BaseProducer = client_config().create().unwrap();
    let mut record = BaseRecord::to(&topic).partition(0).payload(message.payload().unwrap());
    record = record.key(message.key().unwrap());
    if let Some(headers) = message.headers() {
        record = record.headers(headers.clone());
    }
    producer.send(record).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let run = labs(&p, &["verify", "kafka-1", "--json"]).fails();
    let report = run.json();
    assert_eq!(report["passed"], false);
    assert_eq!(report["report"]["duplicated"].as_array().unwrap().len(), 1, "{report}");
    assert!(run.error_line().contains("kafka-1 failed verification"), "{}", run.stderr);
}

#[test]
fn a_topic_labs_did_not_make_with_other_partitions_is_a_conflict() {
    ensure_kafka();
    let p = prefix("k1own");
    let _teardown = Teardown { prefix: &p, example: "kafka-1" };
    let admin: AdminClient<DefaultClientContext> = client_config().create().unwrap();
    let name = format!("{p}-k1-clicks");
    let topic = NewTopic::new(&name, 2, TopicReplication::Fixed(1));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(admin.create_topics([&topic], &AdminOptions::new())).unwrap().remove(0).unwrap();

    let up = labs(&p, &["up", "kafka-1"]).fails();
    let line = up.error_line();
    assert!(line.contains(&format!("Kafka topic {name} exists but labs did not create it")), "{line}");
    assert!(line.contains("it has 2 partitions, declared 4") && line.contains("nothing was changed"), "{line}");
}

#[test]
fn a_second_broker_runs_on_its_own_port_and_stops_with_its_process_group() {
    ensure_kafka();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().to_string()
    };
    let kafka = |args: &[&str]| {
        support::finish(
            std::process::Command::new(support::labs_bin())
                .args(["kafka"])
                .args(args)
                .env("LABS_KAFKA_PORT", &port)
                .env_remove("LABS_KAFKA_BOOTSTRAP")
                .output()
                .unwrap(),
        )
    };
    let up = kafka(&["up", "--json"]).ok().json();
    let pid = up["pid"].as_i64().expect("labs started it") as i32;
    assert_eq!(up["healthy"], true, "{up}");
    assert_eq!(up["bootstrap"], format!("127.0.0.1:{port}"));
    // The test broker on its own port is still there beside it.
    ensure_kafka();
    assert_eq!(kafka(&["up", "--json"]).ok().json()["pid"], up["pid"], "a second up reuses it");

    let down = kafka(&["down", "--json"]).ok().json();
    assert_eq!(down["stopped"], true);
    let group_gone = std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(!group_gone, "the broker's process is still alive after down");
    let status = kafka(&["status", "--json"]).ok().json();
    assert_eq!(status["healthy"], false, "{status}");
    assert_eq!(kafka(&["down", "--json"]).ok().json()["stopped"], false, "nothing left to stop");
}
