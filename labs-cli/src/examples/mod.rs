//! The seven examples: what each teaches, and for those that are built, how to run and verify
//! them. Each example is one module; they share the provisioning engine (`labs_infra`) and the
//! driver toolkit (`crate::driver`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cli::{BenchArgs, RunArgs, VerifyArgs};
use crate::output::Output;
use crate::target::Target;

pub mod example_1;
pub mod example_2;
pub mod example_3;
pub mod example_7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExampleId(pub u8);

impl FromStr for ExampleId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = text.strip_prefix("example-").or_else(|| text.strip_prefix("ex")).unwrap_or(text);
        match number.parse::<u8>() {
            Ok(n @ 1..=7) => Ok(ExampleId(n)),
            _ => Err(format!("unknown example '{text}': use example-1 ... example-7 (see `labs list`)")),
        }
    }
}

impl fmt::Display for ExampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "example-{}", self.0)
    }
}

#[derive(Debug, Serialize)]
pub struct About {
    pub id: ExampleId,
    pub title: &'static str,
    pub teaches: &'static str,
    pub aws: &'static str,
    pub built: bool,
}

pub const CATALOG: [About; 7] = [
    About {
        id: ExampleId(1),
        title: "A log",
        teaches: "produce, consume, shard iterators, offsets, replay, backpressure",
        aws: "Kinesis",
        built: true,
    },
    About {
        id: ExampleId(2),
        title: "Messaging",
        teaches: "fan-out vs load balancing, acks, redelivery and reordering, dead letters",
        aws: "SNS, SQS, Lambda",
        built: true,
    },
    About {
        id: ExampleId(3),
        title: "Change data capture",
        teaches: "a derived search index kept in sync from the database's change log",
        aws: "DynamoDB + Streams, Lambda",
        built: true,
    },
    About {
        id: ExampleId(4),
        title: "A Lambda stream processor",
        teaches: "batches, retries, bisect, partial failures, exactly-once effects",
        aws: "Kinesis, Lambda, DynamoDB, SQS",
        built: false,
    },
    About {
        id: ExampleId(5),
        title: "Event sourcing",
        teaches: "events as truth, projections, replay and rebuild",
        aws: "Kinesis, Lambda, DynamoDB",
        built: false,
    },
    About {
        id: ExampleId(6),
        title: "Time",
        teaches: "event vs processing time, tumbling/hopping/session windows, watermarks, stragglers",
        aws: "Kinesis, Lambda, DynamoDB",
        built: false,
    },
    About {
        id: ExampleId(7),
        title: "Partitions and ordering",
        teaches: "per-key order, hot shards, resharding",
        aws: "Kinesis",
        built: true,
    },
];

fn not_built(id: ExampleId) -> anyhow::Error {
    anyhow::anyhow!("{id} is not built yet: `labs list` shows which examples are ready")
}

/// Drives an example (`labs run`).
pub async fn run(target: &Target, args: &RunArgs, out: Output) -> Result<()> {
    match args.example.0 {
        1 => example_1::run(target, args, out).await,
        2 => example_2::run(target, args, out).await,
        3 => example_3::run(target, args, out).await,
        7 => example_7::run(target, args, out).await,
        _ => Err(not_built(args.example)),
    }
}

/// Checks an example's outcome from the data (`labs verify`). Returns whether it passed; the
/// caller turns a failure into a non-zero exit.
pub async fn verify(target: &Target, args: &VerifyArgs, out: Output) -> Result<bool> {
    match args.example.0 {
        1 => example_1::verify(target, out).await,
        2 => example_2::verify(target, Duration::from_secs(args.wait), out).await,
        3 => example_3::verify(target, Duration::from_secs(args.wait), out).await,
        7 => example_7::verify(target, out).await,
        _ => Err(not_built(args.example)),
    }
}

pub async fn bench(target: &Target, args: &BenchArgs, out: Output) -> Result<()> {
    match args.example.0 {
        1 => example_1::bench(target, args, out).await,
        3 => example_3::bench(target, args, out).await,
        n => bail!("example-{n} has no benchmark"),
    }
}
