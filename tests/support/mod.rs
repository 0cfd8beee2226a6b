//! Shared by the integration tests: run the real `labs` binary against a real emulator.
//!
//! The emulator is the embedded one on `LABS_EMULATOR_PORT` (tests/run.sh starts it once for the
//! whole run), or whatever `AWS_ENDPOINT_URL` names. Each test gets its own `--prefix`, so tests
//! run in parallel without seeing each other's resources.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::ToSocketAddrs;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub fn labs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_labs")
}

/// A unique prefix per test (and per test process, so reruns never collide with leftovers).
pub fn prefix(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("t{}{}-{name}", std::process::id() % 100_000, n)
}

/// Checks once per test binary that the test emulator answers. Tests never start one:
/// `tests/run.sh` starts it (and stops it on exit), so no emulator outlives a test run.
fn ensure_emulator() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let endpoint = endpoint();
        let address = endpoint.trim_start_matches("http://").trim_start_matches("https://");
        let answers = address
            .to_socket_addrs()
            .ok()
            .into_iter()
            .flatten()
            .any(|a| std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok());
        assert!(answers, "no emulator answers on {endpoint}: run the tests with `bash tests/run.sh`");
    });
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn fails(self) -> Self {
        assert_ne!(self.code, 0, "expected failure\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// The error line: exactly one line that starts with "error:", and no panic or backtrace.
    #[track_caller]
    pub fn error_line(&self) -> String {
        let errors: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "expected one error line, got:\n{}", self.stderr);
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("backtrace"), "{}", self.stderr);
        errors[0].to_owned()
    }
}

pub fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `labs` with these arguments, no emulator needed (bad-input tests).
pub fn labs_offline(args: &[&str]) -> Run {
    finish(Command::new(labs_bin()).args(args).output().expect("run labs"))
}

/// Runs `labs --prefix <prefix> <args>` against the test emulator.
pub fn labs(prefix: &str, args: &[&str]) -> Run {
    ensure_emulator();
    finish(Command::new(labs_bin()).args(["--prefix", prefix]).args(args).output().expect("run labs"))
}

/// Removes an example's resources when a test ends, pass or fail.
pub struct Teardown<'a> {
    pub prefix: &'a str,
    pub example: &'a str,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = labs(self.prefix, &["down", self.example]);
    }
}

/// The endpoint the tests' emulator answers on.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        let port = std::env::var("LABS_EMULATOR_PORT").unwrap_or_else(|_| "4566".to_owned());
        format!("http://127.0.0.1:{port}")
    })
}

/// SDK configuration for the test emulator, for tests that act "by other means" than labs.
pub async fn sdk_config() -> aws_config::SdkConfig {
    ensure_emulator();
    sdk_config_at(&endpoint()).await
}

/// SDK configuration for any emulator endpoint, with the emulators' root credentials.
pub async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

/// A DynamoDB client on the test emulator.
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// The test Kafka broker's bootstrap address: `KAFKA_TEST_BOOTSTRAP` (tests/run.sh sets it), else
/// the embedded broker on `LABS_KAFKA_PORT` (default 9192). Tests never start one.
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_TEST_BOOTSTRAP").unwrap_or_else(|_| {
        let port = std::env::var("LABS_KAFKA_PORT").unwrap_or_else(|_| "9192".to_owned());
        format!("127.0.0.1:{port}")
    })
}

/// The broker tests/run.sh started answers (tests never start one).
pub fn ensure_kafka() {
    let bootstrap = kafka_bootstrap();
    let address = bootstrap.parse().unwrap_or_else(|_| panic!("KAFKA_TEST_BOOTSTRAP={bootstrap} is not host:port"));
    assert!(
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)).is_ok(),
        "no Kafka broker answers on {bootstrap}: run the tests with `bash tests/run.sh`"
    );
}
