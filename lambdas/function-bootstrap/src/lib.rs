//! The start-up every function shares, so each `main` only reads its settings and wires the
//! runtime to its handler.
//!
//! It exists to keep the functions' dependency graph small (the first `labs up` compiles all of
//! it): TLS through rustls with ring rather than the SDK's default aws-lc (whose C build was the
//! longest step), and a plain log subscriber rather than `lambda_runtime`'s, whose env-filter
//! pulls in a regex engine.

use std::str::FromStr;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_types::sdk_config::SharedHttpClient;
use lambda_runtime::Error;
use tracing_subscriber::filter::LevelFilter;

/// The HTTPS client the functions' SDK clients use: hyper and rustls with ring, trusting the
/// system's root certificates (the same client the SDK would build, with another crypto library).
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// The SDK config from what Lambda gives the function (region, credentials, and
/// `AWS_ENDPOINT_URL`, which points it at the emulator), over [`https_client`].
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client()).load().await
}

/// The value of the environment variable `name`, or an error naming it.
pub fn required_env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

/// Logs to stdout, which Lambda sends to CloudWatch: without timestamps (CloudWatch adds them),
/// as JSON when the function's log format is JSON, at the level Lambda's logging controls set
/// (`AWS_LAMBDA_LOG_LEVEL`), else `RUST_LOG`'s, else INFO.
pub fn init_logging() {
    let level = log_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(), std::env::var("RUST_LOG").ok());
    let logs = tracing_subscriber::fmt().with_target(false).without_time().with_max_level(level);
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// The level from Lambda's setting, else `RUST_LOG`, else INFO. Only a plain level is read
/// (`debug`, not `cdc_indexer=debug`): per-module filters would need the env-filter's regex engine.
fn log_level(lambda_level: Option<String>, rust_log: Option<String>) -> LevelFilter {
    let parse = |level: String| {
        // Lambda's levels include FATAL, which tracing has not.
        let level = if level.eq_ignore_ascii_case("fatal") { "error".to_owned() } else { level };
        LevelFilter::from_str(level.trim()).ok()
    };
    lambda_level.and_then(parse).or_else(|| rust_log.and_then(parse)).unwrap_or(LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(lambda_level: Option<&str>, rust_log: Option<&str>) -> LevelFilter {
        log_level(lambda_level.map(str::to_owned), rust_log.map(str::to_owned))
    }

    #[test]
    fn lambda_setting_comes_before_rust_log() {
        assert_eq!(level(Some("DEBUG"), Some("error")), LevelFilter::DEBUG);
        assert_eq!(level(None, Some("warn")), LevelFilter::WARN);
    }

    #[test]
    fn fatal_is_error_and_nothing_readable_is_info() {
        assert_eq!(level(Some("FATAL"), None), LevelFilter::ERROR);
        assert_eq!(level(None, None), LevelFilter::INFO);
        assert_eq!(level(Some("loud"), Some("cdc_indexer=debug")), LevelFilter::INFO);
        assert_eq!(level(Some("loud"), Some("trace")), LevelFilter::TRACE);
    }
}
