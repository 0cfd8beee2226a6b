//! The Lambda pipeline: cargo-lambda builds a function, the engine deploys it through the same
//! path as every example's functions, the emulator runs it, and it answers as built.

mod support;

use support::{labs, prefix};

#[test]
fn doctor_builds_deploys_and_invokes_a_real_function() {
    let p = prefix("probe");
    let report = labs(&p, &["doctor", "--json"]).ok().json();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["reply"]["function_name"], format!("{p}-probe"));
}
