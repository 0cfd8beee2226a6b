//! Where the labs run. One resolution, used by every command:
//! `--aws` is real AWS; `--endpoint-url`/`AWS_ENDPOINT_URL` is any LocalStack-compatible endpoint
//! (never started by labs); otherwise the embedded emulator, installed and started on demand.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use labs_infra::stack::{Handle, HandleKind};
use labs_infra::{Clients, SdkContext};
use serde::Serialize;

use crate::emulator;
use crate::kafka;
use crate::output::note;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum TargetKind {
    Embedded { endpoint: String },
    Endpoint { endpoint: String },
    Aws { account: String, region: String },
}

impl TargetKind {
    pub fn describe(&self) -> String {
        match self {
            TargetKind::Embedded { endpoint } => {
                format!("embedded emulator (MiniStack {}) at {endpoint}", emulator::MINISTACK_VERSION)
            }
            TargetKind::Endpoint { endpoint } => format!("endpoint {endpoint}"),
            TargetKind::Aws { account, region } => format!("REAL AWS, account {account}, region {region}"),
        }
    }

    pub fn is_aws(&self) -> bool {
        matches!(self, TargetKind::Aws { .. })
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, TargetKind::Embedded { .. })
    }
}

/// What the global flags say about where to run, without clap's types.
#[derive(Debug, Clone)]
pub struct TargetChoice {
    pub prefix: String,
    pub endpoint_url: Option<String>,
    pub aws: bool,
    pub yes: bool,
    /// On an endpoint, let its own event source mappings run stream triggers instead of labs'
    /// runner.
    pub endpoint_mappings: bool,
    /// The Kafka labs' broker when it is not the embedded one.
    pub kafka_bootstrap: Option<String>,
}

/// Where the flags and `AWS_ENDPOINT_URL` point, before anything is contacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Aws,
    Endpoint(String),
    Embedded,
}

impl TargetChoice {
    /// Where these flags point, with `AWS_ENDPOINT_URL` from the environment.
    pub fn destination(&self) -> Result<Destination> {
        let from_env = std::env::var("AWS_ENDPOINT_URL").ok();
        destination(self.aws, self.endpoint_url.as_deref(), from_env.as_deref())
    }
}

/// `--aws`, else `--endpoint-url`, else a non-empty `AWS_ENDPOINT_URL`, else the embedded emulator.
fn destination(aws: bool, endpoint_flag: Option<&str>, endpoint_env: Option<&str>) -> Result<Destination> {
    let endpoint_env = endpoint_env.filter(|url| !url.trim().is_empty());
    if aws {
        // aws-config honours AWS_ENDPOINT_URL, so with --aws it would quietly send every request
        // to that endpoint instead of real AWS.
        if let Some(url) = endpoint_env {
            bail!(
                "--aws asks for real AWS, but the environment variable AWS_ENDPOINT_URL={url} would send every request there: unset it first"
            );
        }
        return Ok(Destination::Aws);
    }
    Ok(match endpoint_flag.or(endpoint_env) {
        Some(url) => Destination::Endpoint(url.to_owned()),
        None => Destination::Embedded,
    })
}

pub struct Target {
    pub kind: TargetKind,
    pub clients: Clients,
    pub prefix: String,
    /// Stream triggers run by the endpoint's own mappings, not labs' runner (never on AWS).
    pub endpoint_mappings: bool,
    /// `--kafka-bootstrap`: another Kafka, which labs never starts; `None` is the embedded broker.
    kafka_bootstrap: Option<String>,
    yes: bool,
}

/// Static credentials for emulators, which accept any.
fn emulator_credentials() -> aws_sdk_kinesis::config::Credentials {
    aws_sdk_kinesis::config::Credentials::new("test", "test", None, None, "labs-emulator")
}

fn region_from_env() -> String {
    std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_owned())
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build()
}

async fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region_from_env()))
        .credentials_provider(emulator_credentials())
        .timeout_config(timeouts())
        .load()
        .await
}

/// Whether something listens at an endpoint URL's host and port.
fn reachable(endpoint: &str) -> bool {
    let without_scheme = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let authority = without_scheme.split('/').next().unwrap_or_default();
    let default_port = if endpoint.starts_with("https") { 443 } else { 80 };
    let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:{default_port}") };
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

impl Target {
    /// Resolves the target from the global flags. `start_emulator` is false for commands that
    /// only look (status): they report a stopped emulator instead of starting one.
    pub async fn resolve(global: &TargetChoice, start_emulator: bool) -> Result<Self> {
        let (kind, config) = match global.destination()? {
            Destination::Aws => {
                let config = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts()).load().await;
                let region = config
                    .region()
                    .map(|r| r.to_string())
                    .context("no AWS region is configured: set AWS_REGION or a region in your profile")?;
                let identity = Clients::new(&config)
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .doing("checking your AWS credentials (STS GetCallerIdentity)")?;
                let account = identity.account().unwrap_or("unknown").to_owned();
                (TargetKind::Aws { account, region }, config)
            }
            Destination::Endpoint(endpoint) => {
                let endpoint = endpoint.trim_end_matches('/').to_owned();
                if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                    bail!("--endpoint-url {endpoint} is not an http(s) URL");
                }
                if !reachable(&endpoint) {
                    bail!(
                        "cannot reach {endpoint}: start that emulator, or unset AWS_ENDPOINT_URL / drop --endpoint-url to use the embedded one"
                    );
                }
                let config = emulator_config(&endpoint).await;
                (TargetKind::Endpoint { endpoint }, config)
            }
            Destination::Embedded => {
                let port = emulator::port()?;
                let endpoint = emulator::endpoint(port);
                if start_emulator {
                    let blocking = tokio::task::spawn_blocking(move || emulator::up(port));
                    if blocking.await?? {
                        note(format!(
                            "started the embedded emulator at {endpoint} (stop it with `labs emulator down`)"
                        ));
                    }
                }
                let config = emulator_config(&endpoint).await;
                (TargetKind::Embedded { endpoint }, config)
            }
        };
        note(format!("target: {}, prefix {}", kind.describe(), global.prefix));
        Ok(Self {
            kind,
            clients: Clients::new(&config),
            prefix: global.prefix.clone(),
            endpoint_mappings: global.endpoint_mappings,
            kafka_bootstrap: global.kafka_bootstrap.clone().filter(|b| !b.trim().is_empty()),
            yes: global.yes,
        })
    }

    /// The same target under another prefix: `labs down --all` works through every prefix it finds.
    pub fn with_prefix(&self, prefix: &str) -> Target {
        Target {
            kind: self.kind.clone(),
            clients: self.clients.clone(),
            prefix: prefix.to_owned(),
            endpoint_mappings: self.endpoint_mappings,
            kafka_bootstrap: self.kafka_bootstrap.clone(),
            yes: self.yes,
        }
    }

    /// The Kafka broker's bootstrap address: `--kafka-bootstrap` (checked to be reachable), else
    /// the embedded broker, installed and started on first use.
    pub async fn kafka(&self) -> Result<kafka::client::Broker> {
        if let Some(bootstrap) = &self.kafka_bootstrap {
            let reachable = bootstrap.split(',').any(|address| reachable(&format!("tcp://{}", address.trim())));
            if !reachable {
                bail!(
                    "cannot reach the Kafka broker at {bootstrap}: start it, or drop --kafka-bootstrap / LABS_KAFKA_BOOTSTRAP to use the embedded one"
                );
            }
            return Ok(kafka::client::Broker { bootstrap: bootstrap.clone(), one_record_per_batch: false });
        }
        let port = kafka::broker::port()?;
        if tokio::task::spawn_blocking(move || kafka::broker::up(port)).await?? {
            note(format!(
                "started the embedded Kafka broker (tansu {}) at {} (stop it with `labs kafka down`)",
                kafka::broker::TANSU_VERSION,
                kafka::broker::bootstrap(port)
            ));
        }
        Ok(kafka::client::Broker { bootstrap: kafka::broker::bootstrap(port), one_record_per_batch: true })
    }

    /// Which Kafka the Kafka labs use, in words.
    pub fn kafka_description(&self) -> String {
        match &self.kafka_bootstrap {
            Some(bootstrap) => format!("the Kafka at {bootstrap}"),
            None => format!("the embedded broker (tansu {})", kafka::broker::TANSU_VERSION),
        }
    }

    /// The Kafka broker if one is up, without starting the embedded one (for commands that only
    /// look, and for removing topics: a stopped embedded broker holds none).
    pub fn kafka_if_running(&self) -> Result<Option<String>> {
        if let Some(bootstrap) = &self.kafka_bootstrap {
            return Ok(Some(bootstrap.clone()));
        }
        let port = kafka::broker::port()?;
        Ok(kafka::broker::status(port)?.healthy.then(|| kafka::broker::bootstrap(port)))
    }

    /// The region prices are looked up for: the target's own (an emulator's is its configured one).
    pub fn region(&self) -> String {
        match &self.kind {
            TargetKind::Aws { region, .. } => region.clone(),
            _ => self.clients.region(),
        }
    }

    /// The flags that pick this target again, for commands labs suggests.
    pub fn flags(&self) -> String {
        let prefix = format!("--prefix {}", self.prefix);
        match &self.kind {
            TargetKind::Aws { .. } => format!("{prefix} --aws"),
            TargetKind::Endpoint { endpoint } => format!("{prefix} --endpoint-url {endpoint}"),
            TargetKind::Embedded { .. } => prefix,
        }
    }

    /// The endpoint's URL, except on real AWS.
    pub fn endpoint(&self) -> Option<&str> {
        match &self.kind {
            TargetKind::Embedded { endpoint } | TargetKind::Endpoint { endpoint } => Some(endpoint),
            TargetKind::Aws { .. } => None,
        }
    }

    /// The full name of a declared resource under this target's prefix.
    pub fn name<K: HandleKind>(&self, handle: Handle<K>) -> String {
        handle.full_name(&self.prefix)
    }

    /// On real AWS, asks before changing anything; everywhere else, goes ahead.
    pub fn confirm(&self, question: &str) -> Result<()> {
        if !self.kind.is_aws() || self.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            bail!("refusing to change real AWS without a confirmation: run in a terminal, or pass --yes");
        }
        eprint!("{question} [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") { Ok(()) } else { bail!("stopped: nothing was changed") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_pick_aws_then_the_endpoint_flag_then_the_environment_then_the_embedded_emulator() {
        assert_eq!(destination(true, None, None).unwrap(), Destination::Aws);
        assert_eq!(destination(true, None, Some(" ")).unwrap(), Destination::Aws);
        let flag = "http://127.0.0.1:4510";
        let env = "http://127.0.0.1:4566";
        assert_eq!(destination(false, Some(flag), Some(env)).unwrap(), Destination::Endpoint(flag.to_owned()));
        assert_eq!(destination(false, None, Some(env)).unwrap(), Destination::Endpoint(env.to_owned()));
        assert_eq!(destination(false, None, Some("")).unwrap(), Destination::Embedded);
        assert_eq!(destination(false, None, None).unwrap(), Destination::Embedded);
    }

    #[test]
    fn aws_with_an_endpoint_in_the_environment_is_refused_in_one_line() {
        let error = destination(true, None, Some("http://127.0.0.1:4566")).unwrap_err().to_string();
        assert!(error.contains("unset it first") && !error.contains('\n'), "{error}");
    }
}
