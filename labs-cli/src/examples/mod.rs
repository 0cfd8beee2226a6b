//! The examples: one registry lists every one, what it teaches, and for those that are built,
//! how to run, verify and bench it. Each built example is one folder (`example_N/`); they share
//! the provisioning API (`crate::provision`) and the driver toolkit (`crate::driver`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail};
use futures::future::LocalBoxFuture;
use labs_infra::stack::{self, Stack};
use serde::Serialize;

use crate::figures::Figure;
use crate::output::Output;
use crate::target::Target;

/// Implements [`Example`] for a unit struct from an example's plain async functions, which take
/// the trait's arguments: `run(target, &RunOptions, out)`, `verify(target, &VerifyOptions, out)`,
/// `bench(target, &BenchOptions, out)`. `resources` lists the handles of every declared resource
/// the example's code names.
macro_rules! example {
    ($name:ident {
        scenarios: $scenarios:expr,
        resources: [$($resource:expr),* $(,)?],
        run: $run:path,
        verify: $verify:path
        $(, bench: $bench:path)? $(,)?
    }) => {
        pub struct $name;

        impl $crate::examples::Example for $name {
            fn scenarios(&self) -> &'static [&'static str] {
                $scenarios
            }

            #[cfg(test)]
            fn resources(&self) -> &'static [labs_infra::stack::AnyHandle] {
                const RESOURCES: &[labs_infra::stack::AnyHandle] = &[$($resource.any()),*];
                RESOURCES
            }

            fn run<'a>(
                &'a self,
                target: &'a $crate::target::Target,
                options: &'a $crate::examples::RunOptions,
                out: $crate::output::Output,
            ) -> futures::future::LocalBoxFuture<'a, anyhow::Result<()>> {
                Box::pin($run(target, options, out))
            }

            fn verify<'a>(
                &'a self,
                target: &'a $crate::target::Target,
                options: &'a $crate::examples::VerifyOptions,
                out: $crate::output::Output,
            ) -> futures::future::LocalBoxFuture<'a, anyhow::Result<bool>> {
                Box::pin($verify(target, options, out))
            }

            $(
                fn bench<'a>(
                    &'a self,
                    target: &'a $crate::target::Target,
                    options: &'a $crate::examples::BenchOptions,
                    out: $crate::output::Output,
                ) -> Option<futures::future::LocalBoxFuture<'a, anyhow::Result<Vec<$crate::figures::Figure>>>> {
                    Some(Box::pin($bench(target, options, out)))
                }
            )?
        }
    };
}

mod scenario;
pub mod verdict;

pub mod example_1;
pub mod example_2;
pub mod example_3;
pub mod example_4;
pub mod example_5;
pub mod example_6;
pub mod example_7;
pub mod example_8;
pub mod kafka_1;
pub mod kafka_2;

/// Every example, in the order `labs list` shows them. Adding one is adding its line here.
pub const REGISTRY: &[Entry] = &[
    Entry::built(example_1::ABOUT, &example_1::Example1),
    Entry::built(example_2::ABOUT, &example_2::Example2),
    Entry::built(example_3::ABOUT, &example_3::Example3),
    Entry::built(example_4::ABOUT, &example_4::Example4),
    Entry::built(example_5::ABOUT, &example_5::Example5),
    Entry::built(example_6::ABOUT, &example_6::Example6),
    Entry::built(example_7::ABOUT, &example_7::Example7),
    Entry::built(example_8::ABOUT, &example_8::Example8),
    Entry::built(kafka_1::ABOUT, &kafka_1::Kafka1),
    Entry::built(kafka_2::ABOUT, &kafka_2::Kafka2),
];

/// Which track a lab belongs to: the AWS examples (`example-N`) or the Kafka labs (`kafka-N`),
/// each numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Track {
    Aws,
    Kafka,
}

impl Track {
    /// How ids of this track start: `example` or `kafka`.
    pub const fn word(self) -> &'static str {
        match self {
            Track::Aws => "example",
            Track::Kafka => "kafka",
        }
    }

    /// How the guide's headings name a lab of this track: `Example` or `Kafka`.
    pub const fn heading_word(self) -> &'static str {
        match self {
            Track::Aws => "Example",
            Track::Kafka => "Kafka",
        }
    }
}

/// A registered lab: `example-3`, `kafka-1`. Ordered by track, then number (the registry's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExampleId {
    pub track: Track,
    pub number: u8,
}

impl ExampleId {
    /// AWS example `number` (`example-N`).
    pub const fn aws(number: u8) -> Self {
        Self { track: Track::Aws, number }
    }

    /// Kafka lab `number` (`kafka-N`).
    pub const fn kafka(number: u8) -> Self {
        Self { track: Track::Kafka, number }
    }

    /// `example-N`, `exN`, a bare `N` (the AWS track), or `kafka-N`, whether registered or not.
    fn parse_any(text: &str) -> Option<Self> {
        let (track, number) = if let Some(number) = text.strip_prefix("kafka-") {
            (Track::Kafka, number)
        } else {
            (Track::Aws, text.strip_prefix("example-").or_else(|| text.strip_prefix("ex")).unwrap_or(text))
        };
        Some(Self { track, number: number.parse().ok()? })
    }

    /// How the guide's heading names it: `Example 3`, `Kafka 1`.
    pub fn heading(self) -> String {
        format!("{} {}", self.track.heading_word(), self.number)
    }
}

impl Serialize for ExampleId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for ExampleId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match Self::parse_any(text) {
            Some(id) if REGISTRY.iter().any(|e| e.about.id == id) => Ok(id),
            _ => Err(format!("unknown example '{text}': use {} (see `labs list`)", registered_ranges())),
        }
    }
}

/// `example-1 ... example-8, kafka-1`: the registered ids, a range per track.
fn registered_ranges() -> String {
    let mut ranges = Vec::new();
    for track in [Track::Aws, Track::Kafka] {
        let ids: Vec<ExampleId> = REGISTRY.iter().map(|e| e.about.id).filter(|id| id.track == track).collect();
        match ids.as_slice() {
            [] => {}
            [only] => ranges.push(only.to_string()),
            [first, .., last] => ranges.push(format!("{first} ... {last}")),
        }
    }
    if ranges.is_empty() { "a registered example".to_owned() } else { ranges.join(", ") }
}

impl ExampleId {
    /// The stack this example provisions (`infra/stacks/example-N.toml`, `kafka-N.toml`). An
    /// example that is not built provisions nothing, even when its stack is declared already.
    pub fn stack(self) -> Result<Stack> {
        example(self)?;
        Ok(stack::load(&self.to_string())?)
    }
}

impl fmt::Display for ExampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.track.word(), self.number)
    }
}

/// What an example is about, built or not.
#[derive(Debug, Serialize)]
pub struct About {
    pub id: ExampleId,
    pub title: &'static str,
    pub teaches: &'static str,
    pub aws: &'static str,
}

impl About {
    /// Example `number`: its title, what it teaches, the AWS parts it uses.
    pub const fn new(number: u8, title: &'static str, teaches: &'static str, aws: &'static str) -> Self {
        Self { id: ExampleId::aws(number), title, teaches, aws }
    }

    /// Kafka lab `number`: its title, what it teaches, the parts it uses (the broker, AWS's).
    pub const fn kafka(number: u8, title: &'static str, teaches: &'static str, parts: &'static str) -> Self {
        Self { id: ExampleId::kafka(number), title, teaches, aws: parts }
    }
}

/// What a run is asked to do (`labs run` flags, without clap).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub scenario: Option<String>,
    pub count: Option<usize>,
    pub seed: Option<u64>,
    pub query: Option<String>,
    /// A live table of windows as they open, update and close (example 6).
    pub follow: bool,
}

/// How long derived data may take to catch up before a difference counts (`labs verify`).
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    pub wait: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BenchOptions {
    pub count: Option<usize>,
}

/// A built example: what it drives, and how its outcome is checked.
pub trait Example: Sync {
    /// Its scenarios, as `labs run --scenario` names them; empty when it runs as one piece.
    fn scenarios(&self) -> &'static [&'static str];
    /// Every declared resource its code refers to; a test checks its stack declares them all.
    #[cfg(test)]
    fn resources(&self) -> &'static [stack::AnyHandle];
    fn run<'a>(&'a self, target: &'a Target, options: &'a RunOptions, out: Output) -> LocalBoxFuture<'a, Result<()>>;
    /// Returns whether it passed; the caller turns a failure into a non-zero exit.
    fn verify<'a>(
        &'a self,
        target: &'a Target,
        options: &'a VerifyOptions,
        out: Output,
    ) -> LocalBoxFuture<'a, Result<bool>>;
    /// Speed figures, for the examples that have them: printed as the example's own table, and
    /// returned as rows for `labs bench`'s whole-suite table.
    fn bench<'a>(
        &'a self,
        _target: &'a Target,
        _options: &'a BenchOptions,
        _out: Output,
    ) -> Option<LocalBoxFuture<'a, Result<Vec<Figure>>>> {
        None
    }
}

/// One line of the registry: an example's description, and its code once it is built.
pub struct Entry {
    pub about: About,
    pub example: Option<&'static dyn Example>,
}

impl Entry {
    pub const fn built(about: About, example: &'static dyn Example) -> Self {
        Self { about, example: Some(example) }
    }

    /// An example that is described but not built: `labs list` shows it as not ready. (Every
    /// registered example is built today; the next one starts here.)
    #[allow(dead_code)]
    pub const fn planned(about: About) -> Self {
        Self { about, example: None }
    }
}

/// The registered example `id`.
pub fn entry(id: ExampleId) -> &'static Entry {
    // ExampleId only parses registered ids, so a miss is a bug, not bad input.
    REGISTRY.iter().find(|e| e.about.id == id).expect("an ExampleId names a registered example")
}

/// The examples that are built.
pub fn built() -> impl Iterator<Item = (&'static About, &'static dyn Example)> {
    REGISTRY.iter().filter_map(|e| Some((&e.about, e.example?)))
}

fn example(id: ExampleId) -> Result<&'static dyn Example> {
    entry(id)
        .example
        .ok_or_else(|| anyhow::anyhow!("{id} is not built yet: `labs list` shows which examples are ready"))
}

/// Drives an example (`labs run`).
pub async fn run(target: &Target, id: ExampleId, options: &RunOptions, out: Output) -> Result<()> {
    let example = example(id)?;
    let scenarios = example.scenarios();
    if let Some(name) = &options.scenario
        && !scenarios.is_empty()
        && !scenarios.contains(&name.as_str())
    {
        bail!("{id} has no scenario '{name}': use one of {}", scenarios.join(", "));
    }
    example.run(target, options, out).await
}

/// Checks an example's outcome from the data (`labs verify`), and records the result on the
/// target ([`verdict`]) for the dashboard and any other process to read.
pub async fn verify(target: &Target, id: ExampleId, options: &VerifyOptions, out: Output) -> Result<bool> {
    let result = example(id)?.verify(target, options, out).await;
    let outcome = match &result {
        Ok(true) => verdict::Outcome::Passed,
        Ok(false) => verdict::Outcome::Failed,
        Err(_) => verdict::Outcome::Error,
    };
    // Recording is a courtesy to the dashboard: it never changes what verify reports.
    if let Err(err) = verdict::record(target, &id.stack()?, outcome).await {
        crate::output::note(format!("note: the result was not recorded on the target: {err:#}"));
    }
    result
}

pub async fn bench(target: &Target, id: ExampleId, options: &BenchOptions, out: Output) -> Result<Vec<Figure>> {
    match example(id)?.bench(target, options, out) {
        Some(bench) => bench.await,
        None => bail!("{id} has no benchmark"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handle_an_example_uses_is_declared_in_its_stack() {
        for (about, example) in built() {
            let stack = about.id.stack().unwrap_or_else(|e| panic!("{}: {e}", about.id));
            for handle in example.resources() {
                stack.check(handle).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn every_example_stack_belongs_to_a_registered_example_and_every_built_one_has_a_stack() {
        for name in stack::declared().filter(|name| name.starts_with("example-") || name.starts_with("kafka-")) {
            let _: ExampleId = name.parse().unwrap_or_else(|e| panic!("infra/stacks/{name}.toml: {e}"));
        }
        for (about, _) in built() {
            about.id.stack().unwrap_or_else(|e| panic!("{}: {e}", about.id));
        }
    }

    #[test]
    fn ids_parse_only_when_registered() {
        assert_eq!("example-7".parse::<ExampleId>(), Ok(ExampleId::aws(7)));
        assert_eq!("ex3".parse::<ExampleId>(), Ok(ExampleId::aws(3)));
        assert_eq!("kafka-1".parse::<ExampleId>(), Ok(ExampleId::kafka(1)));
        let unknown = |id: &str| format!("unknown example '{id}': use {} (see `labs list`)", registered_ranges());
        assert_eq!("example-9".parse::<ExampleId>(), Err(unknown("example-9")));
        assert_eq!("kafka-99".parse::<ExampleId>(), Err(unknown("kafka-99")));
        assert_eq!("kafka1".parse::<ExampleId>(), Err(unknown("kafka1")));
        assert!(registered_ranges().starts_with("example-1 ... example-8, kafka-1"), "{}", registered_ranges());
    }

    #[test]
    fn ids_print_as_they_parse() {
        for entry in REGISTRY {
            let id = entry.about.id;
            assert_eq!(id.to_string().parse::<ExampleId>(), Ok(id));
        }
        assert_eq!(ExampleId::kafka(2).to_string(), "kafka-2");
        assert_eq!(ExampleId::kafka(2).heading(), "Kafka 2");
    }

    #[test]
    fn registry_ids_are_unique_and_rising() {
        let ids: Vec<ExampleId> = REGISTRY.iter().map(|e| e.about.id).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    }
}
