//! Kafka 2 end to end on the emulator and the embedded Kafka broker that tests/run.sh starts: the
//! products table's change stream relayed into topics, a consumer group keeping the index, the
//! compacted state topic, a rebuild from offset 0; verify fails on a tampered state topic and on
//! a change relayed twice.

mod support;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{Teardown, kafka_bootstrap, labs, prefix};

/// Produces one record to `topic` as any Kafka client could, behind labs' back (hashing its key
/// as Java's clients and labs do, so it lands in the key's partition).
fn produce(topic: &str, key: &str, value: &[u8]) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap();
        producer
            .send(FutureRecord::to(topic).key(key).payload(value), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    });
}

#[test]
fn up_run_relay_compaction_rebuild_verify_tamper_down() {
    support::ensure_kafka();
    let p = prefix("k2");
    let _teardown = Teardown { prefix: &p, example: "kafka-2" };
    labs(&p, &["up", "kafka-2"]).ok();
    let again = labs(&p, &["up", "kafka-2", "--json"]).ok().json();
    let changes = again["changes"].as_array().unwrap();
    assert!(changes.iter().all(|c| c["action"]["action"] == "unchanged"), "second up must change nothing: {again}");

    let run = labs(&p, &["run", "kafka-2", "--count", "120", "--json"]).ok().json();
    assert_eq!(run["in_sync"], true, "{run}");
    let relayed = run["relay"]["relayed"].as_u64().unwrap();
    assert!(relayed > 0, "{run}");
    assert_eq!(run["indexer"]["saw"]["records"], relayed, "the group applied every relayed change: {run}");
    assert!(run["relay"]["resumed_after"].as_object().unwrap().values().all(|v| v.is_null()), "{run}");

    // The relay resumes after its offsets: nothing is relayed twice, nothing is applied twice.
    let rerun = labs(&p, &["run", "kafka-2", "--scenario", "relay", "--json"]).ok().json();
    assert_eq!(rerun["relay"]["relayed"], 0, "{rerun}");
    assert_eq!(rerun["indexer"]["saw"]["records"], 0, "{rerun}");
    assert!(rerun["relay"]["resumed_after"].as_object().unwrap().values().all(|v| v.is_string()), "{rerun}");

    let verified = labs(&p, &["verify", "kafka-2", "--json"]).ok().json();
    assert_eq!(verified["passed"], true, "{verified}");
    assert_eq!(verified["change_topic"]["records_read"], relayed, "{verified}");
    assert_eq!(verified["change_topic"]["expected"], relayed, "{verified}");

    let compaction = labs(&p, &["run", "kafka-2", "--scenario", "compaction", "--json"]).ok().json();
    let records = compaction["records"].as_u64().unwrap();
    let kept = compaction["would_keep"].as_u64().unwrap();
    let dropped = compaction["would_drop_superseded"].as_u64().unwrap();
    assert_eq!(kept + dropped + compaction["would_drop_tombstones"].as_u64().unwrap(), records, "{compaction}");
    assert_eq!(compaction["folded_keys"], compaction["products"], "{compaction}");
    if compaction["broker_compacted"] == false {
        assert_eq!(records, relayed, "an uncompacted state topic holds a record per change: {compaction}");
        assert!(kept < records, "the workload updates products, so compaction would drop some: {compaction}");
    }

    let rebuild = labs(&p, &["run", "kafka-2", "--scenario", "rebuild", "--json"]).ok().json();
    assert_eq!(rebuild["equals_live_index"], true, "{rebuild}");
    assert_eq!(rebuild["equals_table"], true, "{rebuild}");
    assert_eq!(rebuild["records_read"], records, "a new group reads the topic from offset 0: {rebuild}");

    // Another value for a live product in the state topic: its latest record no longer equals the item.
    let live = "p-0001";
    produce(&format!("{p}-k2-product-state"), live, br#"{"id":"p-0001","name":"forged"}"#);
    let failed = labs(&p, &["verify", "kafka-2", "--json"]).fails().json();
    assert_eq!(failed["passed"], false);
    let differs: Vec<&str> = failed["state_differs"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(differs.iter().any(|d| d.starts_with(live)), "{failed}");
    assert!(failed["change_topic"]["duplicated"].as_array().unwrap().is_empty(), "{failed}");

    // A change relayed twice: the change topic's check counts it.
    let record = first_change(&p);
    produce(&format!("{p}-k2-product-changes"), &record.0, &record.1);
    let failed = labs(&p, &["verify", "kafka-2", "--json"]).fails().json();
    assert_eq!(failed["change_topic"]["duplicated"].as_array().unwrap().len(), 1, "{failed}");

    let down = labs(&p, &["down", "kafka-2", "--json"]).ok().json();
    assert!(down.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "deleted"), "{down}");
}

/// The key and value of the change topic's first record in partition 0.
fn first_change(p: &str) -> (String, Vec<u8>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", kafka_bootstrap()).set("group.id", "k2-test").create().unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&format!("{p}-k2-product-changes"), 0, Offset::Beginning).unwrap();
    consumer.assign(&list).unwrap();
    for _ in 0..30 {
        if let Some(message) = consumer.poll(Duration::from_secs(1)) {
            let message = message.unwrap();
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            return (key, message.payload().unwrap().to_vec());
        }
    }
    panic!("partition 0 of the change topic gave no record in 30 s");
}
