//! The engine against a real endpoint (an emulator such as MiniStack or LocalStack): what `labs`
//! did not create is never adopted or removed, and what it did create is tagged and removed.
//! Ignored by default; `tests/run.sh` runs them with `LABS_INFRA_TEST_ENDPOINT` set, or by hand:
//! `LABS_INFRA_TEST_ENDPOINT=http://127.0.0.1:4566 cargo test -p labs-infra --test ownership -- --ignored`.

use std::collections::HashMap;

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_sdk_sts::config::Credentials;
use labs_infra::stack::{
    DeadLetter, DynamoTable, EventSourceMapping, Function, KeyAttribute, KinesisStream, Role, SnsTopic, SqsQueue,
    Stack, Statement, Subscription,
};
use labs_infra::{Action, Artifact, Clients, Engine, Kind, Removal, TAG_EXAMPLE, TAG_PREFIX};

async fn clients() -> Clients {
    let endpoint = std::env::var("LABS_INFRA_TEST_ENDPOINT").expect("LABS_INFRA_TEST_ENDPOINT");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    Clients::new(&config)
}

/// A prefix no other test run uses.
fn prefix(test: &str) -> String {
    format!("it{}{test}", std::process::id())
}

fn queue(name: &str) -> SqsQueue {
    SqsQueue { name: name.into(), visibility_timeout_seconds: 5, dead_letter: None, allow_topics: vec![] }
}

fn quiet(_: &str) {}

#[tokio::test]
#[ignore = "needs an AWS API endpoint in LABS_INFRA_TEST_ENDPOINT"]
async fn an_untagged_queue_under_our_name_is_a_conflict_and_is_never_touched() {
    let clients = clients().await;
    let prefix = prefix("conflict");
    let stranger = format!("{prefix}-orders");
    clients.sqs.create_queue().queue_name(&stranger).send().await.unwrap();
    let stack = Stack {
        example: "it-ownership".into(),
        sqs_queues: vec![queue("orders")],
        kinesis_streams: vec![KinesisStream { name: "clicks".into(), shards: 1 }],
        ..Stack::default()
    };
    let engine = Engine::connect(&clients, &prefix).await.unwrap();

    let plan = engine.plan(&stack, &HashMap::new()).await.unwrap();
    let action_of = |kind| plan.changes.iter().find(|c| c.kind == kind).unwrap().action.clone();
    assert_eq!(action_of(Kind::SqsQueue), Action::Conflict("it has no labs tags".into()));
    assert_eq!(action_of(Kind::KinesisStream), Action::Create);

    let err = engine.apply(&stack, &plan, &HashMap::new(), &quiet).await.unwrap_err().to_string();
    assert!(err.contains(&stranger) && err.contains("nothing was changed"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    // Refused before changing anything: the stream that was to be created is not there.
    let stream = clients.kinesis.describe_stream_summary().stream_name(format!("{prefix}-clicks")).send().await;
    assert!(stream.is_err(), "the stream was created despite the conflict");

    let removed = engine.destroy(&stack, &quiet).await.unwrap();
    let removal_of = |kind| removed.iter().find(|r| r.kind == kind).unwrap().removal.clone();
    assert_eq!(removal_of(Kind::SqsQueue), Removal::LeftAlone("it has no labs tags".into()));
    assert_eq!(removal_of(Kind::KinesisStream), Removal::Absent);

    let url = clients.sqs.get_queue_url().queue_name(&stranger).send().await.unwrap().queue_url.unwrap();
    let tags = clients.sqs.list_queue_tags().queue_url(&url).send().await.unwrap().tags.unwrap_or_default();
    assert!(tags.is_empty(), "the stranger's queue was tagged: {tags:?}");
    clients.sqs.delete_queue().queue_url(&url).send().await.unwrap();
}

#[tokio::test]
#[ignore = "needs an AWS API endpoint in LABS_INFRA_TEST_ENDPOINT"]
async fn up_tags_every_resource_and_down_removes_them_all() {
    let clients = clients().await;
    let prefix = prefix("cycle");
    let stack = Stack {
        example: "it-cycle".into(),
        kinesis_streams: vec![KinesisStream { name: "clicks".into(), shards: 1 }],
        dynamodb_tables: vec![DynamoTable {
            name: "orders".into(),
            partition_key: KeyAttribute { name: "id".into(), attribute_type: "S".into() },
            sort_key: None,
            stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
        }],
        sns_topics: vec![SnsTopic { name: "events".into() }],
        sqs_queues: vec![
            SqsQueue {
                dead_letter: Some(DeadLetter { queue: "work-dlq".into(), max_receive_count: 3 }),
                allow_topics: vec!["events".into()],
                ..queue("work")
            },
            queue("work-dlq"),
        ],
        subscriptions: vec![Subscription {
            topic: "events".into(),
            queue: "work".into(),
            raw_message_delivery: true,
            filter_policy: None,
        }],
        roles: vec![Role {
            name: "worker".into(),
            statements: vec![Statement {
                actions: vec!["sqs:ReceiveMessage".into()],
                resources: vec!["arn:${partition}:sqs:${region}:${account}:${prefix}-work".into()],
            }],
        }],
        ..Stack::default()
    };
    let engine = Engine::connect(&clients, &prefix).await.unwrap();

    let plan = engine.plan(&stack, &HashMap::new()).await.unwrap();
    assert!(plan.changes.iter().all(|c| c.action == Action::Create), "{plan:#?}");
    engine.apply(&stack, &plan, &HashMap::new(), &quiet).await.unwrap();

    // Every resource reads back as ours and as declared, including the stream whose create-time
    // tags MiniStack drops.
    let again = engine.plan(&stack, &HashMap::new()).await.unwrap();
    assert!(again.is_noop(), "{again:#?}");
    let stream_tags =
        clients.kinesis.list_tags_for_stream().stream_name(format!("{prefix}-clicks")).send().await.unwrap().tags;
    let tag = |key: &str| stream_tags.iter().find(|t| t.key == key).and_then(|t| t.value.clone());
    assert_eq!(tag(TAG_PREFIX).as_deref(), Some(prefix.as_str()));
    assert_eq!(tag(TAG_EXAMPLE).as_deref(), Some("it-cycle"));

    let removed = engine.destroy(&stack, &quiet).await.unwrap();
    assert_eq!(removed.len(), plan.changes.len());
    assert!(removed.iter().all(|r| r.removal == Removal::Deleted), "{removed:#?}");
    // Gone, not going: a new plan would create everything again.
    let after = engine.plan(&stack, &HashMap::new()).await.unwrap();
    assert!(after.changes.iter().all(|c| c.action == Action::Create), "{after:#?}");
    // And a second `down` finds nothing and fails nothing.
    let second = engine.destroy(&stack, &quiet).await.unwrap();
    assert!(second.iter().all(|r| r.removal == Removal::Absent), "{second:#?}");
}

/// A function that is never invoked: its code is an empty zip archive.
fn idle_function() -> (Function, HashMap<String, Artifact>) {
    let mut empty_zip = b"PK\x05\x06".to_vec();
    empty_zip.resize(22, 0);
    let function = Function {
        name: "worker".into(),
        package: "idle".into(),
        role: "worker".into(),
        timeout_seconds: 3,
        memory_mb: 128,
        environment: Default::default(),
    };
    let artifact = Artifact { zip: empty_zip, code_sha256: "0".repeat(64) };
    (function, HashMap::from([("idle".to_owned(), artifact)]))
}

#[tokio::test]
#[ignore = "needs an AWS API endpoint in LABS_INFRA_TEST_ENDPOINT"]
async fn a_mapping_without_our_tags_is_a_conflict_and_is_left_alone() {
    let clients = clients().await;
    let prefix = prefix("mapping");
    let (function, artifacts) = idle_function();
    let mapping: EventSourceMapping = toml::from_str(
        r#"
        function = "worker"
        source = { sqs_queue = "work" }
        batch_size = 5
        "#,
    )
    .unwrap();
    let functions_only = Stack {
        example: "it-mapping".into(),
        sqs_queues: vec![queue("work")],
        roles: vec![Role { name: "worker".into(), statements: vec![] }],
        functions: vec![function],
        ..Stack::default()
    };
    let stack = Stack { event_source_mappings: vec![mapping], ..functions_only.clone() };
    let engine = Engine::connect(&clients, &prefix).await.unwrap();
    let plan = engine.plan(&functions_only, &artifacts).await.unwrap();
    engine.apply(&functions_only, &plan, &artifacts, &quiet).await.unwrap();

    // Someone else maps our queue to our function, without tags.
    let queue_arn = format!("arn:aws:sqs:us-east-1:{}:{prefix}-work", engine.vars().account);
    let stranger = clients
        .lambda
        .create_event_source_mapping()
        .function_name(format!("{prefix}-worker"))
        .event_source_arn(&queue_arn)
        .batch_size(5)
        .send()
        .await
        .unwrap();
    let stranger_uuid = stranger.uuid().unwrap().to_owned();

    let plan = engine.plan(&stack, &artifacts).await.unwrap();
    let mapping_change = plan.changes.iter().find(|c| c.kind == Kind::EventSourceMapping).unwrap();
    assert_eq!(mapping_change.action, Action::Conflict("it has no labs tags".into()), "{plan:#?}");
    assert!(engine.apply(&stack, &plan, &artifacts, &quiet).await.is_err());

    let removed = engine.destroy(&stack, &quiet).await.unwrap();
    assert_eq!(removed[0].kind, Kind::EventSourceMapping, "mappings go first");
    assert_eq!(removed[0].removal, Removal::LeftAlone("it has no labs tags".into()));
    assert!(removed[1..].iter().all(|r| r.removal == Removal::Deleted), "{removed:#?}");
    // Deleting the function may take its mappings along (AWS does); clean up if it did not.
    let _ = clients.lambda.delete_event_source_mapping().uuid(&stranger_uuid).send().await;
}

#[tokio::test]
#[ignore = "needs an AWS API endpoint in LABS_INFRA_TEST_ENDPOINT"]
async fn mappings_are_created_tagged_and_removed() {
    let clients = clients().await;
    let prefix = prefix("ourmapping");
    let (function, artifacts) = idle_function();
    let mapping: EventSourceMapping = toml::from_str(
        r#"
        function = "worker"
        source = { sqs_queue = "work" }
        batch_size = 5
        report_batch_item_failures = true
        "#,
    )
    .unwrap();
    let stack = Stack {
        example: "it-ourmapping".into(),
        sqs_queues: vec![queue("work")],
        roles: vec![Role { name: "worker".into(), statements: vec![] }],
        functions: vec![function],
        event_source_mappings: vec![mapping.clone()],
        ..Stack::default()
    };
    let engine = Engine::connect(&clients, &prefix).await.unwrap();
    let plan = engine.plan(&stack, &artifacts).await.unwrap();
    assert!(plan.changes.iter().all(|c| c.action == Action::Create), "{plan:#?}");
    engine.apply(&stack, &plan, &artifacts, &quiet).await.unwrap();
    let again = engine.plan(&stack, &artifacts).await.unwrap();
    assert!(again.is_noop(), "{again:#?}");

    // Drift in a mapping is found and undone.
    let changed =
        Stack { event_source_mappings: vec![EventSourceMapping { batch_size: 7, ..mapping }], ..stack.clone() };
    let drifted = engine.plan(&changed, &artifacts).await.unwrap();
    let mapping_change = drifted.changes.iter().find(|c| c.kind == Kind::EventSourceMapping).unwrap();
    assert_eq!(mapping_change.action, Action::Update("batch size".into()));
    engine.apply(&changed, &drifted, &artifacts, &quiet).await.unwrap();
    assert!(engine.plan(&changed, &artifacts).await.unwrap().is_noop());

    let removed = engine.destroy(&stack, &quiet).await.unwrap();
    assert!(removed.iter().all(|r| r.removal == Removal::Deleted), "{removed:#?}");
}

#[tokio::test]
#[ignore = "needs an AWS API endpoint in LABS_INFRA_TEST_ENDPOINT"]
async fn a_disabled_stream_mapping_keeps_its_stream_settings_and_destination() {
    let clients = clients().await;
    let prefix = prefix("streamsettings");
    let (function, artifacts) = idle_function();
    // Disabled, so the idle function is never invoked.
    let tuned: EventSourceMapping = toml::from_str(
        r#"
        function = "worker"
        source = { kinesis_stream = "clicks" }
        starting_position = "TRIM_HORIZON"
        batch_size = 10
        maximum_retry_attempts = 2
        parallelization_factor = 2
        maximum_record_age_seconds = 3600
        tumbling_window_seconds = 30
        filter_criteria = ['{"data": {"kind": ["reading"]}}']
        on_failure = { sqs_queue = "failures" }
        enabled = false
        "#,
    )
    .unwrap();
    let stack = Stack {
        example: "it-streamsettings".into(),
        kinesis_streams: vec![KinesisStream { name: "clicks".into(), shards: 1 }],
        sqs_queues: vec![queue("failures")],
        roles: vec![Role { name: "worker".into(), statements: vec![] }],
        functions: vec![function],
        event_source_mappings: vec![tuned.clone()],
        ..Stack::default()
    };
    let engine = Engine::connect(&clients, &prefix).await.unwrap();
    let plan = engine.plan(&stack, &artifacts).await.unwrap();
    engine.apply(&stack, &plan, &artifacts, &quiet).await.unwrap();
    let again = engine.plan(&stack, &artifacts).await.unwrap();
    assert!(again.is_noop(), "{again:#?}");

    let listed = clients.lambda.list_event_source_mappings().function_name(format!("{prefix}-worker")).send().await;
    let mappings = listed.unwrap().event_source_mappings.unwrap_or_default();
    let mapping = mappings.iter().find(|m| m.function_arn().is_some_and(|f| f.ends_with(&format!("{prefix}-worker"))));
    let mapping = mapping.expect("the mapping exists");
    assert_eq!(mapping.state(), Some("Disabled"));
    assert_eq!(mapping.parallelization_factor(), Some(2));
    assert_eq!(mapping.maximum_record_age_in_seconds(), Some(3600));
    let patterns: Vec<_> = mapping.filter_criteria().map(|f| f.filters().to_vec()).unwrap_or_default();
    let patterns: Vec<_> = patterns.iter().filter_map(|f| f.pattern()).collect();
    assert_eq!(patterns, ["{\"data\": {\"kind\": [\"reading\"]}}"], "the filter went into CreateEventSourceMapping");
    let destination = mapping.destination_config().and_then(|d| d.on_failure()).and_then(|o| o.destination());
    assert_eq!(
        destination,
        Some(format!("arn:aws:sqs:us-east-1:{}:{prefix}-failures", engine.vars().account).as_str())
    );

    // Back to the defaults: found as drift, undone, and then nothing more to do.
    let plain = EventSourceMapping {
        parallelization_factor: None,
        maximum_record_age_seconds: None,
        tumbling_window_seconds: None,
        filter_criteria: Vec::new(),
        on_failure: None,
        ..tuned
    };
    let plain_stack = Stack { event_source_mappings: vec![plain], ..stack.clone() };
    let drifted = engine.plan(&plain_stack, &artifacts).await.unwrap();
    let change = drifted.changes.iter().find(|c| c.kind == Kind::EventSourceMapping).unwrap();
    let Action::Update(what) = &change.action else { panic!("{change:?}") };
    assert!(what.contains("parallelization factor") && what.contains("on-failure destination"), "{what}");
    assert!(what.contains("filter criteria"), "{what}");
    engine.apply(&plain_stack, &drifted, &artifacts, &quiet).await.unwrap();
    let settled = engine.plan(&plain_stack, &artifacts).await.unwrap();
    assert!(settled.is_noop(), "{settled:#?}");

    let removed = engine.destroy(&stack, &quiet).await.unwrap();
    assert!(removed.iter().all(|r| r.removal == Removal::Deleted), "{removed:#?}");
}
