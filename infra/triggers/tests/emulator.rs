//! The runner against a real emulator with a real Lambda (`lambdas/trigger-probe`).
//!
//! Ignored by default: it needs an endpoint and the probe's zip. Run it with
//! ```text
//! export LABS_EMULATOR_PORT=4613 && target/debug/labs emulator up
//! $(target/debug/labs emulator path)/venv/bin/cargo-lambda lambda build --x86-64 --output-format zip \
//!     --lambda-dir target/lambda-build/zips/dev --package trigger-probe   # CARGO_TARGET_DIR=target/lambda-build
//! LABS_TRIGGERS_TEST_ENDPOINT=http://127.0.0.1:4613 cargo test -p labs-triggers --test emulator -- --ignored
//! ```
//! (with `PATH="$(target/debug/labs emulator path)/venv/bin:$PATH"` for zig, as `tests/run.sh`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use aws_sdk_kinesis::client::Waiters as _;
use aws_sdk_lambda::client::Waiters as _;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime};
use aws_sdk_sqs::types::QueueAttributeName;
use labs_infra::Clients;
use labs_triggers::runner::{CheckpointTable, Destinations, Runner, RunnerClients, StreamMapping, stop_signal};
use labs_triggers::{FilterCriteria, MappingSettings, Pacing, StartingPosition};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

struct Lab {
    clients: Clients,
    prefix: String,
    stream_name: String,
    stream_arn: String,
    shard_id: String,
    function_arn: String,
    role_arn: String,
    queue_url: String,
    queue_arn: String,
    checkpoints_table: String,
    deliveries_table: String,
}

fn probe_zip() -> Vec<u8> {
    let path = std::env::var("TRIGGER_PROBE_ZIP").unwrap_or_else(|_| {
        format!("{}/../../target/lambda-build/zips/dev/trigger-probe/bootstrap.zip", env!("CARGO_MANIFEST_DIR"))
    });
    std::fs::read(&path).unwrap_or_else(|e| panic!("build trigger-probe first ({path}): {e}"))
}

async fn create_table(clients: &Clients, name: &str, keys: &[(&str, KeyType)]) {
    let mut create = clients.dynamodb.create_table().table_name(name).billing_mode(BillingMode::PayPerRequest);
    for (attribute, key_type) in keys {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name(*attribute).key_type(key_type.clone()).build().unwrap(),
            );
    }
    create.send().await.unwrap();
    clients.dynamodb.wait_until_table_exists().table_name(name).wait(WAIT).await.unwrap();
}

async fn lab(name: &str) -> Lab {
    let endpoint =
        std::env::var("LABS_TRIGGERS_TEST_ENDPOINT").expect("LABS_TRIGGERS_TEST_ENDPOINT names the emulator");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region("us-east-1")
        .credentials_provider(aws_sdk_lambda::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let clients = Clients::new(&config);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 1_000_000_000;
    let prefix = format!("trg{stamp}-{name}");

    let checkpoints_table = format!("{prefix}-triggers-checkpoints");
    create_table(&clients, &checkpoints_table, &[("mapping_id", KeyType::Hash), ("shard_id", KeyType::Range)]).await;
    let deliveries_table = format!("{prefix}-deliveries");
    create_table(&clients, &deliveries_table, &[("sequence_number", KeyType::Hash)]).await;

    let queue_url =
        clients.sqs.create_queue().queue_name(format!("{prefix}-failures")).send().await.unwrap().queue_url.unwrap();
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn = attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();

    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = clients
        .iam
        .create_role()
        .role_name(format!("{prefix}-role"))
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    let role_arn = role.role().unwrap().arn().to_owned();
    let function = clients
        .lambda
        .create_function()
        .function_name(format!("{prefix}-probe"))
        .runtime(Runtime::Providedal2023)
        .architectures(Architecture::X8664)
        .handler("bootstrap")
        .role(&role_arn)
        .timeout(30)
        .environment(Environment::builder().variables("DELIVERIES_TABLE", &deliveries_table).build())
        .code(FunctionCode::builder().zip_file(Blob::new(probe_zip())).build())
        .send()
        .await
        .unwrap();
    let function_arn = function.function_arn().unwrap().to_owned();
    clients.lambda.wait_until_function_active_v2().function_name(&function_arn).wait(WAIT).await.unwrap();

    let stream_name = format!("{prefix}-stream");
    clients.kinesis.create_stream().stream_name(&stream_name).shard_count(1).send().await.unwrap();
    clients.kinesis.wait_until_stream_exists().stream_name(&stream_name).wait(WAIT).await.unwrap();
    let summary = clients.kinesis.describe_stream_summary().stream_name(&stream_name).send().await.unwrap();
    let stream_arn = summary.stream_description_summary().unwrap().stream_arn().to_owned();
    let shards = clients.kinesis.list_shards().stream_name(&stream_name).send().await.unwrap();
    let shard_id = shards.shards()[0].shard_id().to_owned();

    Lab {
        clients,
        prefix,
        stream_name,
        stream_arn,
        shard_id,
        function_arn,
        role_arn,
        queue_url,
        queue_arn,
        checkpoints_table,
        deliveries_table,
    }
}

impl Lab {
    fn runner(&self) -> Runner {
        Runner::new(RunnerClients {
            kinesis: self.clients.kinesis.clone(),
            dynamodb_streams: self.clients.dynamodb_streams.clone(),
            lambda: self.clients.lambda.clone(),
            destinations: Destinations { sqs: self.clients.sqs.clone(), sns: self.clients.sns.clone() },
            checkpoints: CheckpointTable::new(self.clients.dynamodb.clone(), &self.checkpoints_table),
        })
    }

    fn mapping(&self, settings: MappingSettings) -> StreamMapping {
        self.mapping_of(&self.stream_arn, settings)
    }

    fn mapping_of(&self, stream_arn: &str, settings: MappingSettings) -> StreamMapping {
        StreamMapping {
            id: format!("{}-mapping", self.prefix),
            stream_arn: stream_arn.to_owned(),
            function_arn: self.function_arn.clone(),
            execution_role_arn: self.role_arn.clone(),
            region: "us-east-1".to_owned(),
            settings,
            // Fast retries: the semantics, not AWS's pace, are under test.
            pacing: Pacing { first_retry_delay_millis: 200, max_retry_delay_millis: 1_000 },
        }
    }

    /// Puts records one by one (so their order is the shard's) and returns their sequence numbers.
    async fn put(&self, data: &[&str]) -> Vec<String> {
        let keys: Vec<String> = (0..data.len()).map(|i| format!("key-{i}")).collect();
        self.put_with_keys(data, &keys).await
    }

    async fn put_with_keys(&self, data: &[&str], keys: &[String]) -> Vec<String> {
        let mut sequence_numbers = Vec::new();
        for (text, key) in data.iter().zip(keys) {
            let out = self
                .clients
                .kinesis
                .put_record()
                .stream_name(&self.stream_name)
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(text.as_bytes()))
                .send()
                .await
                .unwrap();
            sequence_numbers.push(out.sequence_number().to_owned());
        }
        sequence_numbers
    }

    /// Sequence number to delivery count, from the probe's table.
    async fn deliveries(&self) -> HashMap<String, u32> {
        self.delivery_items().await.into_iter().map(|(sequence_number, (count, _))| (sequence_number, count)).collect()
    }

    /// Sequence number to (delivery count, epoch ns of the first delivery).
    async fn delivery_items(&self) -> HashMap<String, (u32, u128)> {
        let mut items = HashMap::new();
        let mut start = None;
        loop {
            let scan = self
                .clients
                .dynamodb
                .scan()
                .table_name(&self.deliveries_table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            for item in scan.items() {
                let sequence_number = item["sequence_number"].as_s().unwrap().clone();
                if sequence_number.starts_with("window#") {
                    continue;
                }
                let count = item["deliveries"].as_n().unwrap().parse().unwrap();
                let first_at = item["first_at"].as_n().unwrap().parse().unwrap();
                items.insert(sequence_number, (count, first_at));
            }
            start = scan.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// The windows the probe stored on final invocations: key to (sequence numbers seen, final).
    async fn window_items(&self) -> HashMap<String, (Vec<String>, bool)> {
        let scan = self.clients.dynamodb.scan().table_name(&self.deliveries_table).send().await.unwrap();
        scan.items()
            .iter()
            .filter(|item| item["sequence_number"].as_s().unwrap().starts_with("window#"))
            .map(|item| {
                let seen = item["seen"].as_s().unwrap();
                let seen = seen.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                (item["sequence_number"].as_s().unwrap().clone(), (seen, *item["is_final"].as_bool().unwrap()))
            })
            .collect()
    }

    async fn checkpoint(&self) -> Option<String> {
        let table = CheckpointTable::new(self.clients.dynamodb.clone(), &self.checkpoints_table);
        table.load(&format!("{}-mapping", self.prefix), &self.shard_id).await.unwrap().checkpoint
    }

    async fn failure_records(&self) -> Vec<Value> {
        let mut records = Vec::new();
        loop {
            let received = self
                .clients
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if received.messages().is_empty() {
                return records;
            }
            for message in received.messages() {
                records.push(serde_json::from_str(message.body().unwrap()).unwrap());
                let handle = message.receipt_handle().unwrap();
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn wait_for_checkpoint(&self, sequence_number: &str) {
        let started = Instant::now();
        while self.checkpoint().await.as_deref() != Some(sequence_number) {
            assert!(
                started.elapsed() < WAIT,
                "checkpoint never reached {sequence_number}: {:?}",
                self.checkpoint().await
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn poison_is_isolated_by_bisect_and_partial_failures_go_to_the_queue() {
    let lab = lab("bisect").await;
    let settings = MappingSettings::new(StartingPosition::TrimHorizon)
        .with_batch_size(10)
        .unwrap()
        .with_bisect(true)
        .with_report_batch_item_failures(true)
        .with_maximum_retry_attempts(1)
        .unwrap()
        .with_on_failure_destination(&lab.queue_arn)
        .unwrap();
    let sequence_numbers = lab.put(&["r0", "r1", "r2", "poison r3", "r4", "r5", "partial r6", "r7", "r8", "r9"]).await;
    let (stop, stopped) = stop_signal();
    let runner = lab.runner();
    let mapping = lab.mapping(settings);
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });

    lab.wait_for_checkpoint(&sequence_numbers[9]).await;
    let deliveries = lab.deliveries().await;
    for (i, sequence_number) in sequence_numbers.iter().enumerate() {
        assert!(deliveries.get(sequence_number).is_some_and(|n| *n >= 1), "r{i} was never delivered");
    }
    assert_eq!(
        deliveries[&sequence_numbers[0]], 3,
        "r0 rode in the whole batch, its left half and that half's left half"
    );

    let failures = lab.failure_records().await;
    assert_eq!(failures.len(), 2, "{failures:#?}");
    let by_start: HashMap<&str, &Value> =
        failures.iter().map(|r| (r["KinesisBatchInfo"]["startSequenceNumber"].as_str().unwrap(), r)).collect();

    let poison = by_start[sequence_numbers[3].as_str()];
    assert_eq!(poison["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(poison["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(poison["responseContext"]["functionError"], "Unhandled");
    assert_eq!(poison["KinesisBatchInfo"]["endSequenceNumber"], sequence_numbers[3]);
    assert_eq!(poison["KinesisBatchInfo"]["shardId"], lab.shard_id);
    assert_eq!(poison["KinesisBatchInfo"]["streamArn"], lab.stream_arn);
    assert_eq!(poison["requestContext"]["functionArn"], lab.function_arn);

    let partial = by_start[sequence_numbers[6].as_str()];
    assert_eq!(partial["responseContext"]["functionError"], Value::Null);
    assert_eq!(partial["KinesisBatchInfo"]["endSequenceNumber"], sequence_numbers[9]);
    assert_eq!(partial["KinesisBatchInfo"]["batchSize"], 4);

    // Later good writes still get through.
    let later = lab.put(&["r10"]).await;
    lab.wait_for_checkpoint(&later[0]).await;
    assert_eq!(lab.deliveries().await.get(&later[0]), Some(&1));

    // What `labs status` will show, written beside the checkpoint.
    let table = CheckpointTable::new(lab.clients.dynamodb.clone(), &lab.checkpoints_table);
    let started = Instant::now();
    loop {
        let report = table.load_report(&format!("{}-mapping", lab.prefix), &lab.shard_id).await.unwrap();
        if let Some(report) = &report
            && report.last_result == "OK"
            && report.pending_records == 0
        {
            assert_eq!(report.discarded_batches, 2);
            assert_eq!(report.retries_in_progress, 0);
            assert_eq!(report.millis_behind_latest, Some(0));
            break;
        }
        assert!(started.elapsed() < WAIT, "status never settled: {report:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn a_restarted_runner_resumes_from_its_checkpoint_and_skips_nothing() {
    let lab = lab("restart").await;
    let settings = MappingSettings::new(StartingPosition::TrimHorizon).with_batch_size(5).unwrap();
    let first: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    let first = lab.put(&first.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings.clone()));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&first[19]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    // Written while no runner runs, then read by a new one.
    let second: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
    let second = lab.put(&second.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&second[19]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let deliveries = lab.deliveries().await;
    for sequence_number in first.iter().chain(&second) {
        assert_eq!(deliveries.get(sequence_number), Some(&1), "{sequence_number}: delivered once, not skipped");
    }
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn a_runner_killed_mid_stream_redelivers_but_never_skips() {
    let lab = lab("kill").await;
    let settings = MappingSettings::new(StartingPosition::TrimHorizon).with_batch_size(3).unwrap();
    let data: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    let written = lab.put(&data.iter().map(String::as_str).collect::<Vec<_>>()).await;

    // Stop as soon as some progress is stored, with batches certainly still to go.
    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings.clone()));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    let started = Instant::now();
    while lab.checkpoint().await.is_none() {
        assert!(started.elapsed() < WAIT, "no checkpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let stopped_at = lab.checkpoint().await.unwrap();
    assert_ne!(stopped_at, written[59], "stopped mid-stream");

    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&written[59]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let deliveries = lab.deliveries().await;
    for (i, sequence_number) in written.iter().enumerate() {
        assert!(deliveries.get(sequence_number).is_some_and(|n| *n >= 1), "k{i} was skipped");
    }
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip; waits 61 s"]
async fn records_older_than_the_maximum_age_go_to_the_queue_and_fresh_ones_to_the_function() {
    let lab = lab("age").await;
    let settings = MappingSettings::new(StartingPosition::TrimHorizon)
        .with_maximum_record_age(60)
        .unwrap()
        .with_maximum_retry_attempts(0)
        .unwrap()
        .with_on_failure_destination(&lab.queue_arn)
        .unwrap();
    let old = lab.put(&["old"]).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let fresh = lab.put(&["f0", "f1", "f2"]).await;

    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&fresh[2]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let deliveries = lab.deliveries().await;
    assert!(!deliveries.contains_key(&old[0]), "the expired record never reaches the function");
    assert!(fresh.iter().all(|s| deliveries.get(s) == Some(&1)));
    let failures = lab.failure_records().await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0]["requestContext"]["condition"], "RecordAgeExceeded");
    assert!(failures[0].get("responseContext").is_none());
    assert_eq!(failures[0]["KinesisBatchInfo"]["startSequenceNumber"], old[0]);
    assert_eq!(failures[0]["KinesisBatchInfo"]["batchSize"], 1);
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn parallelization_factor_four_keeps_per_key_order() {
    let lab = lab("parallel").await;
    let settings = MappingSettings::new(StartingPosition::TrimHorizon)
        .with_batch_size(4)
        .unwrap()
        .with_parallelization_factor(4)
        .unwrap();
    let keys: Vec<String> = (0..80).map(|i| format!("user-{}", i % 8)).collect();
    let data: Vec<String> = (0..80).map(|i| format!("p{i}")).collect();
    let written = lab.put_with_keys(&data.iter().map(String::as_str).collect::<Vec<_>>(), &keys).await;

    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&written[79]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let items = lab.delivery_items().await;
    for key in 0..8 {
        let firsts: Vec<u128> = (key..80).step_by(8).map(|i| items[&written[i]].1).collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "user-{key} out of order: {firsts:?}");
    }
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn latest_skips_what_came_before_but_not_what_came_while_the_runner_was_down() {
    let lab = lab("latest").await;
    let settings = MappingSettings::new(StartingPosition::Latest);
    let before = lab.put(&["before"]).await;

    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings.clone()));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    let table = CheckpointTable::new(lab.clients.dynamodb.clone(), &lab.checkpoints_table);
    let mapping_id = format!("{}-mapping", lab.prefix);
    let started = Instant::now();
    while table.load(&mapping_id, &lab.shard_id).await.unwrap().latest_since.is_none() {
        assert!(started.elapsed() < WAIT, "the first read from LATEST was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(lab.checkpoint().await, None, "stopped before any record");

    let during = lab.put(&["while down"]).await;
    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&during[0]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let deliveries = lab.deliveries().await;
    assert!(!deliveries.contains_key(&before[0]), "written before the mapping started");
    assert_eq!(deliveries.get(&during[0]), Some(&1));
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn a_table_stream_poison_item_is_isolated_and_reported_as_ddb_stream_batch_info() {
    let lab = lab("table").await;
    let table = format!("{}-items", lab.prefix);
    let created = lab
        .clients
        .dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let stream_arn = created.table_description().unwrap().latest_stream_arn().unwrap().to_owned();
    lab.clients.dynamodb.wait_until_table_exists().table_name(&table).wait(WAIT).await.unwrap();
    for (i, note) in ["fine", "fine", "poison", "fine", "fine", "fine"].iter().enumerate() {
        lab.clients
            .dynamodb
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S(format!("item-{i}")))
            .item("note", AttributeValue::S((*note).to_owned()))
            .send()
            .await
            .unwrap();
    }
    let settings = MappingSettings::new(StartingPosition::TrimHorizon)
        .with_bisect(true)
        .with_maximum_retry_attempts(0)
        .unwrap()
        .with_on_failure_destination(&lab.queue_arn)
        .unwrap();
    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping_of(&stream_arn, settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });

    let started = Instant::now();
    let failures = loop {
        let failures = lab.failure_records().await;
        if !failures.is_empty() {
            break failures;
        }
        assert!(started.elapsed() < WAIT, "no failure record");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Every change reached the function; the checkpoint passes the last one.
    let deliveries = lab.delivery_items().await;
    assert_eq!(deliveries.len(), 6, "{deliveries:?}");
    let last = deliveries.keys().max_by(|a, b| labs_core::sequence::compare(a, b)).unwrap().clone();
    let checkpoints = CheckpointTable::new(lab.clients.dynamodb.clone(), &lab.checkpoints_table);
    let shard_id = failures[0]["DDBStreamBatchInfo"]["shardId"].as_str().unwrap().to_owned();
    let mapping_id = format!("{}-mapping", lab.prefix);
    while checkpoints.load(&mapping_id, &shard_id).await.unwrap().checkpoint.as_deref() != Some(last.as_str()) {
        assert!(started.elapsed() < WAIT, "checkpoint never reached {last}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    assert_eq!(failures.len(), 1, "{failures:#?}");
    let record = &failures[0];
    assert!(record.get("KinesisBatchInfo").is_none());
    let info = &record["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["streamArn"], stream_arn);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    let arrival = info["approximateArrivalOfFirstRecord"].as_str().unwrap();
    assert!(arrival.ends_with('Z') && !arrival.contains('.'), "whole seconds: {arrival}");
    let poison = deliveries.iter().find(|(sequence_number, _)| **sequence_number == info["startSequenceNumber"]);
    let (poison_sequence, _) = poison.expect("the failure record names a delivered record");
    let data = lab
        .clients
        .dynamodb
        .get_item()
        .table_name(&lab.deliveries_table)
        .key("sequence_number", AttributeValue::S(poison_sequence.clone()))
        .send()
        .await
        .unwrap();
    assert!(data.item().unwrap()["data"].as_s().unwrap().contains("poison"));
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn a_windows_final_invocation_carries_the_state_of_every_batch_in_it() {
    let lab = lab("window").await;
    let settings = MappingSettings::new(StartingPosition::TrimHorizon)
        .with_batch_size(2)
        .unwrap()
        .with_tumbling_window(5)
        .unwrap();
    let data: Vec<String> = (0..9).map(|i| format!("w{i}")).collect();
    let written = lab.put(&data.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });

    // While a window is open, its status is written beside the checkpoint.
    let table = CheckpointTable::new(lab.clients.dynamodb.clone(), &lab.checkpoints_table);
    let mapping_id = format!("{}-mapping", lab.prefix);
    let started = Instant::now();
    let open = loop {
        if let Some(window) = table.load_window(&mapping_id, &lab.shard_id).await.unwrap() {
            break window;
        }
        assert!(started.elapsed() < WAIT, "no open window was ever reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(open.end_millis - open.start_millis, 5_000);
    assert_eq!(open.start_millis % 5_000, 0, "aligned to the epoch");

    // Checkpointed only once the last window's final invocation succeeded.
    lab.wait_for_checkpoint(&written[8]).await;
    while table.load_window(&mapping_id, &lab.shard_id).await.unwrap().is_some() {
        assert!(started.elapsed() < WAIT, "the window never closed in the status");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let windows = lab.window_items().await;
    assert!(!windows.is_empty());
    assert!(windows.values().all(|(_, is_final)| *is_final), "no window ended early: {windows:?}");
    let mut in_windows: Vec<String> = windows.values().flat_map(|(seen, _)| seen.clone()).collect();
    in_windows.sort_by(|a, b| labs_core::sequence::compare(a, b));
    assert_eq!(in_windows, written, "every record in exactly one window's final state");
    let largest = windows.values().map(|(seen, _)| seen.len()).max().unwrap();
    assert!(largest > 2, "some window spanned several batches of 2, its state carried: {windows:?}");
    let deliveries = lab.deliveries().await;
    assert!(written.iter().all(|s| deliveries.get(s) == Some(&1)), "{deliveries:?}");
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn filtered_records_are_never_delivered_and_the_checkpoint_moves_past_them() {
    let lab = lab("filter").await;
    let filters = FilterCriteria::parse([r#"{"data": {"keep": [true]}}"#]).unwrap();
    let settings = MappingSettings::new(StartingPosition::TrimHorizon).with_filter_criteria(filters);
    let written = lab
        .put(&[
            r#"{"keep": true, "n": 0}"#,
            r#"{"keep": false}"#,
            "not json",
            r#"{"keep": true, "n": 3}"#,
            r#"{"n": 4}"#,
        ])
        .await;
    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&written[4]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let deliveries = lab.deliveries().await;
    let mut delivered: Vec<&String> = deliveries.keys().collect();
    delivered.sort_by(|a, b| labs_core::sequence::compare(a, b));
    assert_eq!(delivered, vec![&written[0], &written[3]]);
    assert!(deliveries.values().all(|n| *n == 1));

    // AT_TIMESTAMP is refused for a table stream before anything is read, as AWS refuses it.
    let table_stream = "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026-01-01T00:00:00.000";
    let at = MappingSettings::new(StartingPosition::AtTimestamp(0));
    let (_stop, stopped) = stop_signal();
    let error = lab.runner().run(lab.mapping_of(table_stream, at), stopped).await.unwrap_err();
    assert_eq!(error, format!("Unsupported starting position for arn type: {table_stream}"));
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn at_timestamp_starts_at_the_first_record_at_or_after_the_instant() {
    let lab = lab("at").await;
    let before = lab.put(&["before"]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let instant = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = lab.put(&["after 1", "after 2"]).await;

    let settings = MappingSettings::new(StartingPosition::AtTimestamp(instant));
    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping(settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });
    lab.wait_for_checkpoint(&after[1]).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let deliveries = lab.deliveries().await;
    assert!(!deliveries.contains_key(&before[0]), "written before the instant");
    assert!(after.iter().all(|s| deliveries.get(s) == Some(&1)), "{deliveries:?}");
}

#[tokio::test]
#[ignore = "needs an emulator (LABS_TRIGGERS_TEST_ENDPOINT) and the trigger-probe zip"]
async fn a_table_stream_window_carries_every_change_to_its_final_invocation() {
    let lab = lab("tablewin").await;
    let table = format!("{}-items", lab.prefix);
    let created = lab
        .clients
        .dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let stream_arn = created.table_description().unwrap().latest_stream_arn().unwrap().to_owned();
    lab.clients.dynamodb.wait_until_table_exists().table_name(&table).wait(WAIT).await.unwrap();
    for i in 0..6 {
        lab.clients
            .dynamodb
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S(format!("item-{i}")))
            .send()
            .await
            .unwrap();
    }
    let settings = MappingSettings::new(StartingPosition::TrimHorizon)
        .with_batch_size(2)
        .unwrap()
        .with_tumbling_window(5)
        .unwrap();
    let (stop, stopped) = stop_signal();
    let (runner, mapping) = (lab.runner(), lab.mapping_of(&stream_arn, settings));
    let running = tokio::spawn(async move { runner.run(mapping, stopped).await });

    let started = Instant::now();
    let (delivered, windows) = loop {
        let delivered = lab.deliveries().await;
        let windows = lab.window_items().await;
        let in_windows: usize = windows.values().map(|(seen, _)| seen.len()).sum();
        if delivered.len() == 6 && in_windows == 6 {
            break (delivered, windows);
        }
        assert!(started.elapsed() < WAIT, "windows never closed over every change: {delivered:?} {windows:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let mut in_windows: Vec<String> = windows.values().flat_map(|(seen, _)| seen.clone()).collect();
    in_windows.sort();
    let mut changes: Vec<String> = delivered.keys().cloned().collect();
    changes.sort();
    assert_eq!(in_windows, changes, "every change in exactly one window's final state");
    assert!(windows.values().all(|(_, is_final)| *is_final));
    assert!(windows.values().any(|(seen, _)| seen.len() > 2), "a window spanned batches of 2: {windows:?}");
}
