//! Least privilege, proven on an emulator that enforces IAM (MiniStack started with
//! `AUTH=true`; `tests/run.sh` starts it beside the ordinary one and names it in
//! `LABS_IAM_TEST_ENDPOINT`). There a function's own SDK calls are signed with a session for its
//! execution role, so the role `labs up` declares is all it can do: example 2's shipping worker
//! ships an order, then, with one statement taken out of its role, is refused, and `up` puts
//! the statement back.
//!
//! Run alone: `AUTH=true LABS_EMULATOR_PORT=4639 labs emulator up`, then
//! `LABS_IAM_TEST_ENDPOINT=http://127.0.0.1:4639 cargo test -p labs-cli --test least_privilege -- --ignored`.

mod support;

use std::process::Command;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::LogType;
use base64::Engine;
use labs_core::order_messages::{Order, generate};
use serde_json::{Value, json};
use support::{Run, finish, labs_bin, prefix};

const ENDPOINT_ENV: &str = "LABS_IAM_TEST_ENDPOINT";
/// The name `labs up` gives every role's one inline policy.
const INLINE_POLICY: &str = "labs-least-privilege";

/// `labs --prefix <prefix> --endpoint-url <endpoint> <args>`.
fn labs_at(endpoint: &str, prefix: &str, args: &[&str]) -> Run {
    finish(
        Command::new(labs_bin())
            .args(["--prefix", prefix, "--endpoint-url", endpoint])
            .args(args)
            .output()
            .expect("run labs"),
    )
}

/// Removes the example from the enforcing emulator when the test ends, pass or fail.
struct Down<'a>(&'a str, &'a str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = labs_at(self.0, self.1, &["down", "example-2"]);
    }
}

/// An SQS event as Lambda delivers it, with one message holding `order`.
fn sqs_event(queue: &str, message_id: &str, order: &Order) -> Value {
    json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": format!("handle-{message_id}"),
        "body": order.body(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:000000000000:{queue}"),
        "awsRegion": "us-east-1",
    }]})
}

/// What one invocation answered and logged.
struct Invocation {
    response: Value,
    log: String,
}

impl Invocation {
    fn failed_messages(&self) -> Vec<&str> {
        let failures = self.response["batchItemFailures"].as_array().unwrap();
        failures.iter().map(|f| f["itemIdentifier"].as_str().unwrap()).collect()
    }
}

/// Invokes the worker directly, as its queue's mapping would, with the tail of its log.
async fn invoke(lambda: &aws_sdk_lambda::Client, function: &str, event: Value) -> Invocation {
    let out = lambda
        .invoke()
        .function_name(function)
        .log_type(LogType::Tail)
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .expect("invoke the worker");
    assert_eq!(out.function_error(), None, "the worker answers with per-message failures, never an error");
    let log = base64::engine::general_purpose::STANDARD.decode(out.log_result().unwrap_or_default()).unwrap();
    Invocation {
        response: serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap(),
        log: String::from_utf8_lossy(&log).into_owned(),
    }
}

/// Whether the effects table holds the shipment of `order`.
async fn shipped(dynamodb: &aws_sdk_dynamodb::Client, table: &str, order: &Order) -> bool {
    let key = [("consumer", "shipping"), ("id", order.order_id.as_str())]
        .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.to_owned())));
    let item = dynamodb.get_item().table_name(table).set_key(Some(key.into())).consistent_read(true).send().await;
    item.unwrap().item.is_some()
}

#[test]
#[ignore = "needs an emulator enforcing IAM in LABS_IAM_TEST_ENDPOINT"]
fn the_worker_can_do_what_its_role_allows_and_nothing_once_a_statement_is_removed() {
    let endpoint = std::env::var(ENDPOINT_ENV).expect(ENDPOINT_ENV);
    let health = ureq::get(&format!("{endpoint}/_ministack/health"))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_else(|e| panic!("no MiniStack answers on {endpoint}: {e}"));
    let health: Value = serde_json::from_str(&health).unwrap_or_else(|e| panic!("{endpoint} is not MiniStack ({e})"));
    assert_eq!(health["auth"], "enabled", "the emulator on {endpoint} must be started with AUTH=true: {health}");

    let p = prefix("iam");
    let _down = Down(&endpoint, &p);
    labs_at(&endpoint, &p, &["up", "example-2"]).ok();
    let (function, role, queue, table) = (
        format!("{p}-ex2-shipping-worker"),
        format!("{p}-ex2-shipping-worker"),
        format!("{p}-ex2-shipping"),
        format!("{p}-ex2-effects"),
    );
    let orders = generate(7, 3);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = support::sdk_config_at(&endpoint).await;
        let lambda = aws_sdk_lambda::Client::new(&config);
        let iam = aws_sdk_iam::Client::new(&config);
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        // With the role as declared, the worker records its shipment.
        let allowed = invoke(&lambda, &function, sqs_event(&queue, "m1", &orders[0])).await;
        assert!(allowed.failed_messages().is_empty(), "{}\n{}", allowed.response, allowed.log);
        assert!(shipped(&dynamodb, &table, &orders[0]).await, "the effects table holds the shipment");

        // Take out the statement that lets it write the effects table.
        let current = iam.get_role_policy().role_name(&role).policy_name(INLINE_POLICY).send().await.unwrap();
        // IAM answers with the document URL-encoded.
        let document = percent_encoding::percent_decode_str(current.policy_document()).decode_utf8().unwrap();
        let mut policy: Value = serde_json::from_str(&document).expect("the policy is JSON");
        let statements = policy["Statement"].as_array_mut().unwrap();
        let before = statements.len();
        statements.retain(|s| !s["Action"].to_string().contains("dynamodb:UpdateItem"));
        assert_eq!(statements.len(), before - 1, "one statement allows dynamodb:UpdateItem: {policy}");
        iam.put_role_policy()
            .role_name(&role)
            .policy_name(INLINE_POLICY)
            .policy_document(policy.to_string())
            .send()
            .await
            .unwrap();

        // Now the same call is refused: the message fails (SQS would retry it, then dead-letter
        // it), the table has no row, and the log says which action the role lacks.
        let denied = invoke(&lambda, &function, sqs_event(&queue, "m2", &orders[1])).await;
        assert_eq!(denied.failed_messages(), ["m2"], "{}", denied.response);
        assert!(!shipped(&dynamodb, &table, &orders[1]).await, "nothing was written");
        let line = denied.log.lines().find(|l| l.contains("not shipped")).unwrap_or_else(|| panic!("{}", denied.log));
        assert!(
            line.contains("AccessDenied")
                && line.contains(&format!("assumed-role/{role}/"))
                && line.contains("dynamodb:UpdateItem"),
            "{line}"
        );
    });

    // `up` sees the changed policy and restores it; the worker ships again.
    let plan = labs_at(&endpoint, &p, &["up", "example-2", "--dry-run", "--json"]).ok().json();
    let changed: Vec<&Value> =
        plan["changes"].as_array().unwrap().iter().filter(|c| c["action"]["action"] != "unchanged").collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        (&changed[0]["kind"], &changed[0]["action"]["reason"]),
        (&json!("iam-role"), &json!("inline policy changed"))
    );
    labs_at(&endpoint, &p, &["up", "example-2"]).ok();
    rt.block_on(async {
        let config = support::sdk_config_at(&endpoint).await;
        let restored =
            invoke(&aws_sdk_lambda::Client::new(&config), &function, sqs_event(&queue, "m3", &orders[2])).await;
        assert!(restored.failed_messages().is_empty(), "{}\n{}", restored.response, restored.log);
        assert!(shipped(&aws_sdk_dynamodb::Client::new(&config), &table, &orders[2]).await);
    });
}
