//! Example 2 on the emulator with the real deployed shipping worker: every scenario, verify
//! passing after them and failing once a queue has lost a message, drift repaired by `up`, and
//! `down` leaving no topic, queue or subscription behind.

mod support;

use serde_json::Value;
use support::{Teardown, labs, prefix};

fn actions(plan: &Value) -> Vec<(String, String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["name"].as_str().unwrap().to_owned(),
                c["action"]["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn action_of(plan: &Value, name: &str) -> Value {
    plan["changes"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["action"].clone()
}

/// The checks of a verify report that hold a run's own account against the data, with how many
/// problems each found.
fn run_checks(report: &Value) -> Vec<(String, usize)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"].as_str().unwrap().contains(" run "))
        .map(|f| (f["check"].as_str().unwrap().to_owned(), f["problems"].as_array().unwrap().len()))
        .collect()
}

async fn topic_arn(sns: &aws_sdk_sns::Client, name: &str) -> String {
    let topics = sns.list_topics().send().await.unwrap();
    let suffix = format!(":{name}");
    topics.topics().iter().filter_map(|t| t.topic_arn()).find(|arn| arn.ends_with(&suffix)).unwrap().to_owned()
}

/// The one scenario report of `labs run example-2 --scenario <name> --json`, checked to have no problem.
fn run_scenario(p: &str, scenario: &str, extra: &[&str]) -> Value {
    let mut args = vec!["run", "example-2", "--scenario", scenario, "--json"];
    args.extend_from_slice(extra);
    let run = labs(p, &args).ok().json();
    let report = run["scenarios"][0].clone();
    assert_eq!(report["scenario"], scenario);
    assert_eq!(report["problem"], Value::Null, "{report:#}");
    report
}

#[test]
fn every_scenario_then_verify_then_a_lost_message_then_down() {
    let p = prefix("ex2");
    let _teardown = Teardown { prefix: &p, example: "example-2" };
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Provisioning: every kind is planned, created once, and then left alone.
    let plan = labs(&p, &["up", "example-2", "--dry-run", "--json"]).ok().json();
    let planned = actions(&plan);
    for kind in
        ["sns-topic", "sqs-queue", "sns-subscription", "dynamodb-table", "lambda-function", "event-source-mapping"]
    {
        assert!(planned.iter().any(|(k, _, _)| k == kind), "{kind} missing from {planned:?}");
    }
    assert_eq!(planned.iter().filter(|(k, _, _)| k == "sqs-queue").count(), 6);
    assert!(planned.iter().all(|(_, _, a)| a == "create"), "{planned:?}");
    labs(&p, &["up", "example-2"]).ok();
    let again = labs(&p, &["up", "example-2", "--json"]).ok().json();
    assert!(actions(&again).iter().all(|(_, _, a)| a == "unchanged"), "second up must change nothing: {again}");

    // Drift made by hand shows in the plan and `up` repairs it.
    let (billing, analytics) = (format!("{p}-ex2-billing"), format!("{p}-ex2-analytics"));
    rt.block_on(async {
        let config = support::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let sns = aws_sdk_sns::Client::new(&config);
        let url = sqs.get_queue_url().queue_name(&billing).send().await.unwrap().queue_url.unwrap();
        sqs.set_queue_attributes()
            .queue_url(url)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "30")
            .send()
            .await
            .unwrap();
        let subscriptions = sns.list_subscriptions().send().await.unwrap();
        let arn = subscriptions
            .subscriptions()
            .iter()
            .find(|s| s.endpoint().is_some_and(|e| e.ends_with(&format!(":{analytics}"))))
            .and_then(|s| s.subscription_arn())
            .unwrap()
            .to_owned();
        sns.set_subscription_attributes()
            .subscription_arn(arn)
            .attribute_name("FilterPolicy")
            .attribute_value("")
            .send()
            .await
            .unwrap();
    });
    let drifted = labs(&p, &["up", "example-2", "--dry-run", "--json"]).ok().json();
    assert_eq!(action_of(&drifted, &billing)["reason"], "visibility timeout");
    assert_eq!(action_of(&drifted, &format!("{p}-ex2-orders -> {analytics}"))["reason"], "filter policy");
    labs(&p, &["up", "example-2"]).ok();
    let repaired = labs(&p, &["up", "example-2", "--dry-run", "--json"]).ok().json();
    assert!(actions(&repaired).iter().all(|(_, _, a)| a == "unchanged"), "{repaired}");

    // fan-out: one copy per subscriber; the analytics filter passes only the large orders.
    let fan_out = run_scenario(&p, "fan-out", &["--count", "12"]);
    let queues = fan_out["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 3);
    for queue in queues {
        // Counted in the effects table, with nothing left in the queue.
        assert_eq!(queue["handled"], queue["expected"], "{queue}");
        assert_eq!(queue["left_in_queue"], 0, "{queue}");
    }
    let analytics_expected = queues[2]["expected"].as_u64().unwrap();
    assert!(analytics_expected > 0 && analytics_expected < 12, "the filter must pass some orders, not all");

    // load-balance: three consumers share billing, every order processed once, none lost.
    let balanced = run_scenario(&p, "load-balance", &["--count", "30"]);
    assert_eq!(balanced["processed"], 30);
    assert_eq!(balanced["lost"], 0);
    let busy = balanced["consumers"].as_array().unwrap().iter().filter(|c| c["orders"].as_u64() > Some(0)).count();
    assert!(busy >= 2, "{balanced}");

    // redelivery: the crashed message comes back after later ones and is processed once.
    let redelivered = run_scenario(&p, "redelivery", &[]);
    assert_eq!(redelivered["deliveries_of_crashed_order"], 2);
    assert_eq!(redelivered["processed"], 6);
    assert_ne!(redelivered["processing_order"], redelivered["publish_order"]);

    // dead-letter: the poison message ends in the dead-letter queue, and again after a redrive.
    let dead = run_scenario(&p, "dead-letter", &[]);
    assert_eq!(dead["orders_processed"], 4);
    assert_eq!(dead["poison_failures"], 3, "maxReceiveCount is 3");
    assert_eq!(dead["redriven"], 1);
    assert_eq!(dead["in_dead_letter_queue"], true);

    // lambda-partial-failure: the real worker fails only the bad message, 3 times, then it is dead-lettered.
    let partial = run_scenario(&p, "lambda-partial-failure", &[]);
    assert_eq!(partial["shipped"], 5);
    assert_eq!(partial["in_dead_letter_queue"], true);
    assert_eq!(partial["rejection"]["attempts"], 3);
    assert!(partial["rejection"]["reason"].as_str().unwrap().contains("customer_id"), "{partial}");
    let sizes: Vec<u64> =
        partial["rejection"]["batch_sizes"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    assert!(sizes[0] > 1 && sizes[1..].iter().all(|n| *n == 1), "first with good orders, then alone: {sizes:?}");

    // direct: the webhook gets only the orders posted while billing was up, the queue all of them.
    let direct = run_scenario(&p, "direct", &["--count", "12"]);
    let down = labs_core::order_messages::consumer_down(12);
    assert_eq!(direct["down_seqs"], serde_json::json!([down.start + 1, down.end]));
    assert_eq!(direct["direct"]["delivered"], 12 - down.len());
    assert_eq!(direct["direct"]["lost"], down.len());
    assert_eq!(direct["direct"]["calls"], 12 - down.len() + 3 * down.len(), "3 tries for each refused order");
    assert_eq!(direct["broker"]["delivered"], 12);
    assert_eq!(direct["broker"]["lost"], 0);
    assert_eq!(direct["held_by_queue_ms"].as_array().unwrap().len(), down.len());

    let verified = labs(&p, &["verify", "example-2", "--json"]).ok().json();
    assert_eq!(verified["passed"], true, "{verified:#}");
    assert_eq!(verified["runs"].as_array().unwrap().len(), 6);
    assert_eq!(verified["expected"]["billing"], 12 + 30 + 6 + 4 + 12);
    assert_eq!(
        (verified["expected_webhook"].clone(), verified["expected_lost"].clone()),
        ((12 - down.len()).into(), down.len().into())
    );
    // What the runs saw is checked from the stored data: fan-out's counts, the split across the
    // competing consumers, the redelivered order behind later ones, what each path of direct got.
    let observed = run_checks(&verified);
    assert_eq!(observed.len(), 4, "{verified:#}");
    assert!(observed.iter().all(|(_, problems)| *problems == 0), "{observed:?}");

    // Planted tampering, by other means than labs: a stray row in the effects table, a run that
    // claims one consumer did all the work, a redelivery claimed in publish order, an order the
    // webhook got deleted, and one posted while it was down made to look delivered.
    let effects_table = format!("{p}-ex2-effects");
    let key = |consumer: &str, id: &str| {
        std::collections::HashMap::from([
            ("consumer".to_owned(), aws_sdk_dynamodb::types::AttributeValue::S(consumer.into())),
            ("id".to_owned(), aws_sdk_dynamodb::types::AttributeValue::S(id.into())),
        ])
    };
    let stray = || key("billing", "s999-o00001");
    let direct_seed =
        verified["runs"].as_array().unwrap().iter().find(|r| r["route"] == "direct").unwrap()["seed"].as_u64().unwrap();
    let direct_orders = labs_core::order_messages::generate(direct_seed, 12);
    let webhook = labs_core::order_messages::WEBHOOK;
    let (delivered, lost) = (&direct_orders[0].order_id, &direct_orders[down.start].order_id);
    let topic = format!("{p}-ex2-orders");
    let billing_dlq = format!("{p}-ex2-billing-dlq");
    let poison = verified["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "billing-with-poison")
        .map(|r| labs_core::order_messages::poison_body(r["seed"].as_u64().unwrap()))
        .expect("the dead-letter run is recorded");
    let (original, webhook_row) = rt.block_on(async {
        let config = support::sdk_config().await;
        let sns = aws_sdk_sns::Client::new(&config);
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        dynamodb.put_item().table_name(&effects_table).set_item(Some(stray())).send().await.unwrap();
        let row = dynamodb.get_item().table_name(&effects_table).set_key(Some(key(webhook, delivered))).send();
        let row = row.await.unwrap().item.expect("the webhook's row of its first order");
        dynamodb.delete_item().table_name(&effects_table).set_key(Some(key(webhook, delivered))).send().await.unwrap();
        dynamodb.put_item().table_name(&effects_table).set_item(Some(key(webhook, lost))).send().await.unwrap();
        // A duplicate: the poison message twice in the dead-letter queue.
        let url = sqs.get_queue_url().queue_name(&billing_dlq).send().await.unwrap().queue_url.unwrap();
        sqs.send_message().queue_url(&url).message_body(&poison).send().await.unwrap();
        let arn = topic_arn(&sns, &topic).await;
        let tags = sns.list_tags_for_resource().resource_arn(&arn).send().await.unwrap();
        let original: Vec<(String, String)> =
            tags.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        for (key, value) in &original {
            let head = value.split(' ').next().unwrap();
            let forged = if value.contains(" load-balance=") {
                format!("{head} load-balance=consumer-1:30")
            } else if let Some((_, body)) = value.split_once(" redelivery=") {
                let crashed = body.split('@').next().unwrap();
                format!("{head} redelivery={crashed}@1,2,3,4,5,6")
            } else {
                continue;
            };
            let tag = aws_sdk_sns::types::Tag::builder().key(key).value(forged).build().unwrap();
            sns.tag_resource().resource_arn(&arn).tags(tag).send().await.unwrap();
        }
        (original, row)
    });
    let tampered = labs(&p, &["verify", "example-2", "--wait", "2", "--json"]).fails().json();
    let mut broken: Vec<String> = tampered["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["problems"].as_array().unwrap().is_empty())
        .map(|f| f["check"].as_str().unwrap().split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    broken.sort();
    assert_eq!(
        broken,
        [
            "billing-dlq holds",
            "billing-webhook: every",
            "billing-webhook: no",
            "billing: it",
            "direct run",
            "load-balance run",
            "redelivery run"
        ],
        "{tampered:#}"
    );
    rt.block_on(async {
        let config = support::sdk_config().await;
        let sns = aws_sdk_sns::Client::new(&config);
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        dynamodb.delete_item().table_name(&effects_table).set_key(Some(stray())).send().await.unwrap();
        dynamodb.delete_item().table_name(&effects_table).set_key(Some(key(webhook, lost))).send().await.unwrap();
        dynamodb.put_item().table_name(&effects_table).set_item(Some(webhook_row)).send().await.unwrap();
        // Take one copy of the poison message out again; whatever else was received goes back.
        let url = sqs.get_queue_url().queue_name(&billing_dlq).send().await.unwrap().queue_url.unwrap();
        let received =
            sqs.receive_message().queue_url(&url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
        let mut deleted = false;
        for message in received.messages() {
            let handle = message.receipt_handle().unwrap();
            if !deleted && message.body() == Some(poison.as_str()) {
                sqs.delete_message().queue_url(&url).receipt_handle(handle).send().await.unwrap();
                deleted = true;
            } else {
                sqs.change_message_visibility()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            }
        }
        assert!(deleted, "the planted copy is in {billing_dlq}");
        let arn = topic_arn(&sns, &topic).await;
        for (key, value) in &original {
            let tag = aws_sdk_sns::types::Tag::builder().key(key).value(value).build().unwrap();
            sns.tag_resource().resource_arn(&arn).tags(tag).send().await.unwrap();
        }
    });
    labs(&p, &["verify", "example-2"]).ok();

    // A queue loses a message: delete the poison message from billing's dead-letter queue.
    let dead_letter_queue = format!("{p}-ex2-billing-dlq");
    rt.block_on(async {
        let sqs = aws_sdk_sqs::Client::new(&support::sdk_config().await);
        let url = sqs.get_queue_url().queue_name(&dead_letter_queue).send().await.unwrap().queue_url.unwrap();
        let received = sqs.receive_message().queue_url(&url).wait_time_seconds(1).send().await.unwrap();
        let poison = received.messages().iter().find(|m| m.body().unwrap_or_default().contains("-poison")).unwrap();
        sqs.delete_message().queue_url(&url).receipt_handle(poison.receipt_handle().unwrap()).send().await.unwrap();
    });
    let failed = labs(&p, &["verify", "example-2", "--wait", "2", "--json"]).fails();
    assert!(failed.stderr.contains("example-2 failed verification"), "{}", failed.stderr);
    let report = failed.json();
    assert_eq!(report["passed"], false);
    let broken: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["problems"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0]["check"].as_str().unwrap().starts_with("billing-dlq"), "{broken:?}");
    assert!(broken[0]["problems"][0].as_str().unwrap().starts_with("missing {\"order_id\""), "{broken:?}");

    // Down leaves nothing behind, and a second down finds nothing to do.
    let down = labs(&p, &["down", "example-2", "--json"]).ok().json();
    assert!(down.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "deleted"), "{down}");
    rt.block_on(async {
        let config = support::sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let sns = aws_sdk_sns::Client::new(&config);
        let queues = sqs.list_queues().queue_name_prefix(&p).send().await.unwrap();
        assert!(queues.queue_urls().is_empty(), "{:?}", queues.queue_urls());
        let topics = sns.list_topics().send().await.unwrap();
        assert!(!topics.topics().iter().any(|t| t.topic_arn().unwrap_or_default().contains(&p)));
        let subscriptions = sns.list_subscriptions().send().await.unwrap();
        let left: Vec<_> =
            subscriptions.subscriptions().iter().filter(|s| s.endpoint().unwrap_or_default().contains(&p)).collect();
        assert!(left.is_empty(), "{left:?}");
    });
    let again = labs(&p, &["down", "example-2", "--json"]).ok().json();
    assert!(again.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "absent"), "{again}");
}

#[test]
fn bad_input_and_a_missing_stack_are_clear_errors() {
    let p = prefix("ex2errors");
    let unknown = labs(&p, &["run", "example-2", "--scenario", "nope"]).fails();
    assert!(unknown.error_line().contains("no scenario 'nope'"), "{}", unknown.stderr);
    let count = labs(&p, &["run", "example-2", "--scenario", "redelivery", "--count", "5"]).fails();
    assert!(count.error_line().contains("--count sets how many orders"), "{}", count.stderr);
    let few = labs(&p, &["run", "example-2", "--scenario", "direct", "--count", "2"]).fails();
    assert!(few.error_line().contains("at least 3 for direct"), "{}", few.stderr);
    let query = labs(&p, &["run", "example-2", "--query", "x"]).fails();
    assert!(query.error_line().contains("no --query"), "{}", query.stderr);
    let run = labs(&p, &["run", "example-2"]).fails();
    assert!(run.error_line().contains("labs up example-2"), "{}", run.stderr);
    let verify = labs(&p, &["verify", "example-2"]).fails();
    assert!(verify.error_line().contains("does not exist"), "{}", verify.stderr);
    let down = labs(&p, &["down", "example-2", "--json"]).ok().json();
    assert!(down.as_array().unwrap().iter().all(|r| r["removal"]["result"] == "absent"), "{down}");
}
