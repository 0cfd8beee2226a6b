//! `labs up` killed (SIGKILL) at several points, then `up` again and `down`: the target holds
//! nothing of that prefix afterwards, by name or by tag (issue 10).
//!
//! Example 2, not 1 or 7: their one resource is a Kinesis stream, and MiniStack drops the tags
//! given to `CreateStream`, so a kill between `CreateStream` and `AddTagsToStream` leaves a stream
//! under our name without our tags, which the next `up` rightly refuses to adopt (a conflict) and
//! `down` leaves alone. Every resource of example 2 (topic, queues, subscriptions, table, role,
//! function, mapping) keeps its create-time tags on MiniStack, so every kill point is fair, and
//! its `up` (about 9 s) has many of them. The kills come when the target shows a point reached.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labs_infra::{Clients, TAG_PREFIX};
use support::{Teardown, labs, labs_bin, prefix};

/// How far `up` has got: the prefix's queues, and whether its function exists. Cheap enough to
/// ask every few milliseconds while `up` runs.
async fn progress(clients: &Clients, prefix: &str) -> Progress {
    let queues = clients.sqs.list_queues().queue_name_prefix(format!("{prefix}-")).send().await.unwrap();
    let function = clients.lambda.get_function().function_name(format!("{prefix}-ex2-shipping-worker")).send().await;
    Progress { queues: queues.queue_urls().len(), function: function.is_ok() }
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    queues: usize,
    function: bool,
}

type Reached = fn(Progress) -> bool;

/// The kill points, by what exists (not by time, which a loaded machine stretches): the first
/// queue, most of them (the dead-letter queues come first), the function.
const KILL_POINTS: [(&str, Reached); 3] = [
    ("the first queue", |at| at.queues >= 1),
    ("four queues", |at| at.queues >= 4),
    ("the function", |at| at.function),
];

/// Every resource on the target named `<prefix>-...` or tagged with the prefix, by kind.
async fn leftovers(clients: &Clients, prefix: &str) -> Vec<String> {
    let named = |name: &str| name.starts_with(&format!("{prefix}-"));
    let ours = |tags: Vec<(String, String)>| tags.iter().any(|(k, v)| k == TAG_PREFIX && v == prefix);
    let mut found = Vec::new();

    let topics = clients.sns.list_topics().send().await.unwrap();
    for arn in topics.topics().iter().filter_map(|t| t.topic_arn()) {
        let tags = clients.sns.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
        let tags = tags.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        if named(arn.rsplit(':').next().unwrap_or_default()) || ours(tags) {
            found.push(format!("topic {arn}"));
        }
        let subscriptions = clients.sns.list_subscriptions_by_topic().topic_arn(arn).send().await.unwrap();
        for subscription in subscriptions.subscriptions() {
            if subscription.endpoint().is_some_and(|e| e.contains(&format!(":{prefix}-"))) {
                found.push(format!("subscription to {}", subscription.endpoint().unwrap_or_default()));
            }
        }
    }
    let queues = clients.sqs.list_queues().send().await.unwrap();
    for url in queues.queue_urls() {
        let tags = clients.sqs.list_queue_tags().queue_url(url).send().await.unwrap();
        let tags = tags.tags().cloned().unwrap_or_default().into_iter().collect();
        if named(url.rsplit('/').next().unwrap_or_default()) || ours(tags) {
            found.push(format!("queue {url}"));
        }
    }
    let tables = clients.dynamodb.list_tables().send().await.unwrap();
    for name in tables.table_names() {
        let described = clients.dynamodb.describe_table().table_name(name).send().await.unwrap();
        let arn = described.table().and_then(|t| t.table_arn()).unwrap_or_default();
        let tags = clients.dynamodb.list_tags_of_resource().resource_arn(arn).send().await.unwrap();
        let tags = tags.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        if named(name) || ours(tags) {
            found.push(format!("table {name}"));
        }
    }
    let roles = clients.iam.list_roles().send().await.unwrap();
    for role in roles.roles() {
        let tags = clients.iam.list_role_tags().role_name(role.role_name()).send().await.unwrap();
        let tags = tags.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        if named(role.role_name()) || ours(tags) {
            found.push(format!("role {}", role.role_name()));
        }
    }
    let functions = clients.lambda.list_functions().send().await.unwrap();
    for function in functions.functions() {
        let arn = function.function_arn().unwrap_or_default();
        let tags = clients.lambda.list_tags().resource(arn).send().await.unwrap();
        if named(function.function_name().unwrap_or_default())
            || ours(tags.tags.unwrap_or_default().into_iter().collect())
        {
            found.push(format!("function {arn}"));
        }
    }
    let mappings = clients.lambda.list_event_source_mappings().send().await.unwrap();
    for mapping in mappings.event_source_mappings() {
        let arn = mapping.event_source_mapping_arn().unwrap_or_default();
        let tags = clients.lambda.list_tags().resource(arn).send().await.map(|t| t.tags.unwrap_or_default());
        let to_ours = mapping.function_arn().is_some_and(|f| f.contains(&format!(":function:{prefix}-")));
        if to_ours || ours(tags.unwrap_or_default().into_iter().collect()) {
            found.push(format!("event source mapping {}", mapping.uuid().unwrap_or_default()));
        }
    }
    found
}

#[test]
fn up_killed_at_several_points_then_up_and_down_leave_nothing_of_the_prefix() {
    let p = prefix("killedup");
    let _teardown = Teardown { prefix: &p, example: "example-2" };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clients = runtime.block_on(async { Clients::new(&support::sdk_config().await) });
    let mut interrupted = Vec::new();
    for (point, reached) in KILL_POINTS {
        let mut up = Command::new(labs_bin())
            .args(["--prefix", &p, "up", "example-2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start labs up");
        let deadline = Instant::now() + Duration::from_secs(120);
        while up.try_wait().unwrap().is_none() && Instant::now() < deadline {
            if reached(runtime.block_on(progress(&clients, &p))) {
                up.kill().ok(); // SIGKILL: no cleanup of any kind
                interrupted.push(point);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        up.kill().ok(); // an `up` still running at the deadline
        up.wait().unwrap();
    }
    assert!(interrupted.len() >= 2, "`up` was killed mid-way at several points: {interrupted:?}");
    labs(&p, &["up", "example-2"]).ok();
    let again = labs(&p, &["up", "example-2", "--json"]).ok().json();
    let changes = again["changes"].as_array().unwrap();
    assert!(changes.iter().all(|c| c["action"]["action"] == "unchanged"), "the interrupted up was finished: {again}");

    assert!(!runtime.block_on(leftovers(&clients, &p)).is_empty(), "the check sees what `up` made");
    labs(&p, &["down", "example-2"]).ok();
    let left = runtime.block_on(leftovers(&clients, &p));
    assert!(left.is_empty(), "after down, still on the target: {left:?}");
}
