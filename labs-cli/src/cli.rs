//! The command line, and nothing else: these structs mirror the flags and validate values.
//! Turning them into a target and clients happens in `target.rs`.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::examples::{BenchOptions, ExampleId, RunOptions, VerifyOptions};
use crate::target::TargetChoice;

#[derive(Debug, Parser)]
#[command(
    name = "labs",
    version,
    about = "Hands-on labs for stream processing (DDIA chapter 11) on AWS",
    long_about = "Hands-on labs for stream processing (Designing Data-Intensive Applications, chapter 11) on AWS.\n\n\
        By default every command runs against an embedded emulator (MiniStack) that labs installs and starts \
        by itself. --endpoint-url (or AWS_ENDPOINT_URL) picks another LocalStack-compatible endpoint; --aws \
        picks real AWS, and asks before it creates anything."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Name prefix for every resource, so several learners or tests can share one endpoint.
    #[arg(long, global = true, default_value = labs_infra::DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub prefix: String,
    /// A LocalStack-compatible endpoint to use instead of the embedded emulator (never started by
    /// labs); default: the AWS_ENDPOINT_URL environment variable.
    #[arg(long, global = true, conflicts_with = "aws")]
    pub endpoint_url: Option<String>,
    /// Use real AWS through the standard credential chain, profile and region.
    #[arg(long, global = true)]
    pub aws: bool,
    /// Print results as JSON for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Answer yes to confirmation questions (real AWS only asks).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// On an emulator, let its own event source mappings run stream triggers instead of labs'
    /// runner (which has AWS's retry, bisect and on-failure semantics, tumbling windows,
    /// filters and AT_TIMESTAMP).
    #[arg(long, global = true, env = "LABS_ENDPOINT_MAPPINGS")]
    pub endpoint_mappings: bool,
    /// The Kafka labs' broker (`host:port[,host:port]`, plaintext) instead of the embedded one:
    /// a real cluster or Redpanda; labs never starts or stops it.
    #[arg(long, global = true, env = "LABS_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,
}

impl GlobalArgs {
    pub fn target(&self) -> TargetChoice {
        TargetChoice {
            prefix: self.prefix.clone(),
            endpoint_url: self.endpoint_url.clone(),
            aws: self.aws,
            yes: self.yes,
            endpoint_mappings: self.endpoint_mappings,
            kafka_bootstrap: self.kafka_bootstrap.clone(),
        }
    }
}

fn parse_prefix(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 20
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(value.to_owned())
    } else {
        Err("use 1 to 20 lowercase letters, digits or '-', starting with a letter".to_owned())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the examples and the part of the chapter each teaches.
    List,
    /// Show the target, the emulator's health and what is provisioned per example.
    Status,
    /// Provision an example's resources (idempotent).
    Up(UpArgs),
    /// Drive an example: produce, consume, and explain what happens.
    Run(RunArgs),
    /// Check an example's outcome from the data itself; exits non-zero on any mismatch.
    Verify(VerifyArgs),
    /// Remove exactly what `up` made for this prefix (idempotent); with --all, everything labs
    /// made in this account and region, under any prefix.
    Down(DownArgs),
    /// Produce generated clickstream events into a Kinesis stream.
    Produce(ProduceArgs),
    /// Read a Kinesis stream, every shard, from a starting position.
    Consume(ConsumeArgs),
    /// Build the Lambda functions with cargo-lambda (installing it if needed).
    Build(BuildArgs),
    /// Print speed figures for an example, or every figure in one table.
    Bench(BenchArgs),
    /// Check the whole pipeline: build, deploy and invoke a probe Lambda, then remove it.
    Doctor {
        /// Only remove a probe left behind by an interrupted run or an older labs.
        #[arg(long)]
        remove: bool,
    },
    /// Serve a live page on 127.0.0.1 showing streams, queues, mappings and examples move.
    Dashboard(DashboardArgs),
    /// Print an example's section of the guide; without one, the list of sections.
    Guide(GuideArgs),
    /// Every item of the learning plan, the lab that answers it, and how far (verified, shown, ...).
    Questions(QuestionsArgs),
    /// Run a checkpoint of the learning plan: bring up, run and verify the labs that answer it,
    /// report per item, remove what it brought up.
    Checkpoint(CheckpointArgs),
    /// Manage the embedded emulator.
    #[command(subcommand)]
    Emulator(EmulatorCommand),
    /// Manage the embedded Kafka broker (tansu) the Kafka labs use.
    #[command(subcommand)]
    Kafka(KafkaCommand),
    /// Stream triggers run by labs' runner: change a mapping's settings, read the runner's log.
    #[command(subcommand)]
    Triggers(TriggersCommand),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// example-1, example-2, ... (see `labs list`)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub example: Option<ExampleId>,
    /// Every resource carrying labs' tags in the account and region (or on the emulator), under
    /// any prefix (--prefix is ignored), removed in dependency order; asks first on AWS.
    #[arg(long)]
    pub all: bool,
    /// With --all: list what would be removed, with its prefix and age, and remove nothing.
    #[arg(long, requires = "all")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub example: ExampleId,
    /// Seconds derived data (an index, a projection) may take to catch up before a difference counts.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    pub example: ExampleId,
    /// Print the plan (create, update or unchanged per resource) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub example: ExampleId,
    /// Run only this scenario (see the example's section in references/aws-examples.md).
    #[arg(long)]
    pub scenario: Option<String>,
    /// How many events or operations to generate.
    #[arg(long)]
    pub count: Option<usize>,
    /// Seed of the deterministic generator (default: the next unused one).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Search the derived index (example 3): every word must match.
    #[arg(long)]
    pub query: Option<String>,
    /// Show a live table of windows as they open, update and close (example 6).
    #[arg(long)]
    pub follow: bool,
}

impl VerifyArgs {
    pub fn options(&self) -> VerifyOptions {
        VerifyOptions { wait: std::time::Duration::from_secs(self.wait) }
    }
}

impl RunArgs {
    pub fn options(&self) -> RunOptions {
        RunOptions {
            scenario: self.scenario.clone(),
            count: self.count,
            seed: self.seed,
            query: self.query.clone(),
            follow: self.follow,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KeyStrategy {
    /// The user id: one user's events go to one shard, in send order unless a refused entry is resent.
    User,
    /// A random key per record: spreads load, gives up per-user order.
    Random,
    /// One key for everything: the hottest possible shard.
    Single,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Stream name (full name, e.g. labs-ex1-clicks).
    #[arg(long)]
    pub stream: String,
    /// Records to send (default 1000; with --rate and no --count, until Ctrl-C).
    #[arg(long)]
    pub count: Option<usize>,
    /// Records per second at most (default: as fast as the stream takes them).
    #[arg(long)]
    pub rate: Option<u32>,
    #[arg(long, value_enum, default_value_t = KeyStrategy::User)]
    pub keys: KeyStrategy,
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StartFrom {
    TrimHorizon,
    Latest,
    AtTimestamp,
    AfterSequence,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub stream: String,
    #[arg(long, value_enum, default_value_t = StartFrom::TrimHorizon)]
    pub from: StartFrom,
    /// With --from at-timestamp: RFC 3339 time or Unix seconds.
    #[arg(long, required_if_eq("from", "at-timestamp"))]
    pub timestamp: Option<String>,
    /// With --from after-sequence: the sequence number to read after.
    #[arg(long, required_if_eq("from", "after-sequence"))]
    pub sequence: Option<String>,
    /// With --from after-sequence: the shard the sequence number belongs to.
    #[arg(long, required_if_eq("from", "after-sequence"))]
    pub shard: Option<String>,
    /// Keep polling for new records until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build only this example's functions (default: every function).
    pub example: Option<ExampleId>,
    /// Build these function crates (folders under `lambdas/`) instead, such as a probe no example
    /// declares.
    #[arg(long = "package", value_name = "CRATE", conflicts_with = "example")]
    pub packages: Vec<String>,
    /// `dev` is what `labs up` deploys to an emulator (the quicker first build), `lambda` what it
    /// deploys to AWS (small, optimized zips).
    #[arg(long, value_enum, default_value_t = BuildProfile::Dev)]
    pub profile: BuildProfile,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BuildProfile {
    Dev,
    Lambda,
}

impl From<BuildProfile> for crate::toolchain::Profile {
    fn from(profile: BuildProfile) -> Self {
        match profile {
            BuildProfile::Dev => crate::toolchain::Profile::Dev,
            BuildProfile::Lambda => crate::toolchain::Profile::Lambda,
        }
    }
}

/// What `labs bench` measures: an example, or `triggers` (labs' runner beside the emulator's own
/// poller).
#[derive(Debug, Clone, Copy)]
pub enum BenchSubject {
    Example(ExampleId),
    Triggers,
    Producer,
}

impl std::str::FromStr for BenchSubject {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "triggers" => Ok(Self::Triggers),
            "producer" => Ok(Self::Producer),
            _ => text.parse().map(Self::Example),
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// example-1, example-3, ... or `triggers` (the stream-trigger runner beside the emulator's
    /// poller) or `producer` (`labs produce`'s peak memory and speed, into an endpoint that
    /// discards); without one, every bench, in one table (figure, value, anchor, ratio, target, met?)
    pub subject: Option<BenchSubject>,
    /// Records (example 1, triggers, producer) or writes (example 3) to measure with.
    #[arg(long)]
    pub count: Option<usize>,
}

impl BenchArgs {
    pub fn options(&self) -> BenchOptions {
        BenchOptions { count: self.count }
    }
}

#[derive(Debug, Subcommand)]
pub enum EmulatorCommand {
    /// Install (first time) and start the embedded emulator; reuses a running one.
    Up,
    /// Stop the embedded emulator and every function process it started.
    Down,
    /// Show whether it is installed, running and healthy.
    Status,
    /// Print the emulator's log.
    Logs {
        /// Only the last N lines.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Drop every resource and record in the emulator.
    Reset,
    /// Where the emulator keeps its files.
    Path,
}

#[derive(Debug, Subcommand)]
pub enum KafkaCommand {
    /// Install (first time: cargo builds it, about 15 minutes on 2 cores) and start the embedded
    /// broker on 127.0.0.1 (LABS_KAFKA_PORT, default 9192); reuses a running one.
    Up,
    /// Stop the embedded broker (its topics are in memory and go with it).
    Down,
    /// Show whether it is installed, running and answering.
    Status,
    /// Print the broker's log.
    Logs {
        /// Only the last N lines.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Debug, Subcommand)]
pub enum TriggersCommand {
    /// Change a stream mapping's settings (the runner's, or the real mapping's on AWS).
    Set(TriggersSetArgs),
    /// Print the runner's log for this endpoint and prefix.
    Logs {
        /// Only the last N lines.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Run the mappings of this prefix until none is left (started by `labs up`).
    #[command(hide = true)]
    Serve,
}

#[derive(Debug, Args)]
pub struct TriggersSetArgs {
    /// The function the mapping invokes (e.g. ex3-cdc-indexer), or the mapping as `labs status` names it.
    pub mapping: String,
    /// BisectBatchOnFunctionError.
    #[arg(long, value_enum)]
    pub bisect: Option<OnOff>,
    /// MaximumRetryAttempts: -1 (until the record expires) or 0 to 10000.
    #[arg(long, allow_hyphen_values = true)]
    pub max_retries: Option<i64>,
    /// MaximumRecordAgeInSeconds: -1 or 60 to 604800.
    #[arg(long, allow_hyphen_values = true)]
    pub max_record_age: Option<i64>,
    /// ParallelizationFactor, 1 to 10.
    #[arg(long)]
    pub parallelization: Option<u32>,
    /// BatchSize, 1 to 10000.
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// FunctionResponseTypes ReportBatchItemFailures.
    #[arg(long, value_enum)]
    pub report_batch_item_failures: Option<OnOff>,
}

impl TriggersSetArgs {
    pub fn changes(&self) -> crate::triggers::Changes {
        crate::triggers::Changes {
            bisect: self.bisect.map(OnOff::is_on),
            max_retries: self.max_retries,
            max_record_age: self.max_record_age,
            parallelization: self.parallelization,
            batch_size: self.batch_size,
            report_batch_item_failures: self.report_batch_item_failures.map(OnOff::is_on),
        }
    }
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The port on 127.0.0.1 to serve the page on (0: any free port; the printed URL names it).
    #[arg(long, default_value_t = 4800)]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct GuideArgs {
    /// example-1, example-2, ... (default: list the sections)
    pub example: Option<ExampleId>,
}

#[derive(Debug, Args)]
pub struct QuestionsArgs {
    /// Print the map page (references/learning-map.md) instead of the table.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The checkpoint's number in the learning plan (1 to 4); without it, the list of checkpoints.
    pub number: Option<u8>,
    /// How many events or operations each scenario generates (as `labs run --count`).
    #[arg(long)]
    pub count: Option<usize>,
    /// Seconds derived data may take to catch up before a difference counts (as `labs verify --wait`).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}

impl CheckpointArgs {
    pub fn options(&self) -> crate::learning::CheckpointOptions {
        crate::learning::CheckpointOptions {
            count: self.count,
            verify: VerifyOptions { wait: std::time::Duration::from_secs(self.wait) },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use proptest::prelude::*;

    use super::Cli;

    /// Words the command line knows, so arbitrary argv reaches the value parsers, not only
    /// "unknown subcommand".
    const WORDS: &[&str] = &[
        "list",
        "status",
        "up",
        "down",
        "run",
        "verify",
        "bench",
        "build",
        "doctor",
        "produce",
        "consume",
        "emulator",
        "kafka",
        "kafka-1",
        "--kafka-bootstrap",
        "completions",
        "--prefix",
        "--endpoint-url",
        "--aws",
        "--json",
        "--yes",
        "--dry-run",
        "--all",
        "--scenario",
        "--count",
        "--seed",
        "--query",
        "--wait",
        "--stream",
        "--from",
        "--timestamp",
        "--limit",
        "--follow",
        "--rate",
        "--keys",
        "guide",
        "questions",
        "--markdown",
        "checkpoint",
        "dashboard",
        "--port",
        "example-1",
        "example-9",
        "ex3",
        "18446744073709551615",
        "-1",
        "",
    ];

    fn argument() -> impl Strategy<Value = String> {
        prop_oneof![prop::sample::select(WORDS).prop_map(str::to_owned), any::<String>()]
    }

    proptest! {
        #[test]
        fn arbitrary_argv_is_parsed_or_refused_never_a_panic(args in prop::collection::vec(argument(), 0..6)) {
            let argv = std::iter::once("labs".to_owned()).chain(args);
            let _ = Cli::try_parse_from(argv);
        }
    }
}
