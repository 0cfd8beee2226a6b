//! Bad input gets one clear error line and a non-zero exit, never a panic.

mod support;

use support::{labs, labs_offline, prefix};

#[test]
fn unknown_example() {
    let run = labs_offline(&["up", "example-9"]).fails();
    assert!(run.stderr.contains("unknown example 'example-9'"), "{}", run.stderr);
}

#[test]
fn bad_flag() {
    let run = labs_offline(&["run", "example-1", "--no-such-flag"]).fails();
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);
}

#[test]
fn bad_prefix() {
    let run = labs_offline(&["--prefix", "Bad_Prefix", "list"]).fails();
    assert!(run.stderr.contains("lowercase"), "{}", run.stderr);
}

#[test]
fn unreachable_endpoint() {
    let run = labs_offline(&["--endpoint-url", "http://127.0.0.1:9", "status"]).fails();
    assert!(run.error_line().contains("cannot reach http://127.0.0.1:9"));
}

#[test]
fn example_not_built_yet() {
    let run = labs_offline(&["up", "example-6"]).fails();
    assert!(run.error_line().contains("example-6 provisions nothing yet"));
}

#[test]
fn missing_python() {
    // A fresh LABS_HOME and a PATH without Python: the emulator cannot be installed.
    let home = std::env::temp_dir().join(format!("labs-no-python-{}", std::process::id()));
    let out = std::process::Command::new(support::labs_bin())
        .args(["emulator", "up"])
        .env("LABS_HOME", &home)
        .env("LABS_EMULATOR_PORT", "4598")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let run = support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
    .fails();
    assert!(run.error_line().contains("Python 3 is needed"), "{}", run.stderr);
    std::fs::remove_dir_all(home).ok();
}

#[test]
fn stream_that_does_not_exist() {
    let p = prefix("nostream");
    let run = labs(&p, &["consume", "--stream", &format!("{p}-nothing")]).fails();
    assert!(run.error_line().contains("does not exist"));
    let run = labs(&p, &["verify", "example-1"]).fails();
    assert!(run.error_line().contains("labs up example-1"));
}

#[test]
fn list_shows_seven_examples_as_json() {
    let run = labs_offline(&["list", "--json"]).ok();
    assert_eq!(run.json().as_array().map(Vec::len), Some(7));
}
