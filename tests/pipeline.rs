//! The Lambda pipeline: cargo-lambda builds a function, the engine deploys it through the same
//! path as every example's functions, the emulator runs it, and it answers as built.

mod support;

use support::{labs, prefix};

async fn function_exists(name: &str) -> bool {
    let lambda = aws_sdk_lambda::Client::new(&support::sdk_config().await);
    lambda.get_function().function_name(name).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_builds_deploys_and_invokes_a_real_function_then_removes_it() {
    let p = prefix("probe");
    let function = format!("{p}-probe");
    let report = labs(&p, &["doctor", "--json"]).ok().json();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["reply"]["function_name"], function.as_str());
    let steps: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(!function_exists(&function).await, "doctor left {function} behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_remove_only_removes() {
    let p = prefix("leftover");
    let report = labs(&p, &["doctor", "--remove", "--json"]).ok().json();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{report}");
    assert!(steps[0]["step"].as_str().unwrap().starts_with("remove "), "{report}");
    assert!(report["reply"].is_null(), "--remove invoked the function: {report}");
    assert!(!function_exists(&format!("{p}-probe")).await);
}
