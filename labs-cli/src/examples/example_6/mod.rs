//! Example 6: reasoning about time (DDIA 11, "Reasoning About Time": event time vs processing
//! time, knowing when you are ready, whose clock, window types).
//!
//! Sensor readings (`labs_core::time::readings`: skewed clocks, out-of-order arrivals, a device
//! offline that then sends its backlog) go into a Kinesis stream. The `event-time-windows`
//! Lambda groups them by event time into tumbling, hopping and session windows with a
//! watermark, allowed lateness and a side output; `arrival-windows` uses Lambda's own tumbling
//! windows, which group by arrival. Lambda has no timers, so each part ends with end-of-input
//! and heartbeat records on every shard. Every part is recorded as a stream tag, so `verify`
//! regenerates what was produced.

mod arrival;
mod bench;
mod event_vs_processing;
mod idle_shard;
mod lab;
mod late_events;
mod part;
mod simulate;
mod verify;
mod watch;
mod windows;

use anyhow::{Result, bail};
use labs_infra::stack::{Lambda, Stream, Table};
use serde::Serialize;

use self::lab::{Lab, Played};
use self::part::Part;
use self::watch::{Mode, Watch};
use super::scenario::ScenarioReport;
use super::{About, RunOptions};
use crate::driver::seeds;
use crate::output::Output;
use crate::target::Target;

// The resources `infra/stacks/example-6.toml` declares.
const READINGS_STREAM: Stream = Stream::new("ex6-readings");
const WATERMARKS: Table = Table::new("ex6-watermarks");
const WINDOWS: Table = Table::new("ex6-windows");
const LATE: Table = Table::new("ex6-late");
const EVENT_WINDOWS: Lambda = Lambda::new("ex6-event-windows");
const ARRIVAL_WINDOWS: Lambda = Lambda::new("ex6-arrival-windows");

pub const ABOUT: About = About::new(
    6,
    "Time",
    "event vs processing time, tumbling/hopping/session windows, watermarks, stragglers",
    "Kinesis, Lambda, DynamoDB",
);

const SCENARIOS: &[&str] =
    &["event-vs-processing", "tumbling", "hopping", "session", "late-events", "idle-shard", "arrival-windows"];
const DEFAULT_PER_DEVICE: u32 = 120;
const MAX_PER_DEVICE: u32 = 2_000;
/// Kinesis allows 50 tags per stream; labs' ownership tags take two, each part one.
const MAX_PARTS: usize = 48;

example!(Example6 {
    scenarios: SCENARIOS,
    resources: [READINGS_STREAM, WATERMARKS, WINDOWS, LATE, EVENT_WINDOWS, ARRIVAL_WINDOWS],
    run: run,
    verify: verify::verify,
    bench: bench::bench,
});

/// What one `labs run` shares between its scenarios: the readings part is played once, by the
/// first scenario that needs it, and every later one looks at the same data.
struct Ctx<'a> {
    lab: Lab<'a>,
    seed: u64,
    per_device: u32,
    follow: bool,
    shared: Option<(Part, Played)>,
}

impl Ctx<'_> {
    /// The readings part of this run, played (and watched, showing `kind`) the first time.
    async fn readings(&mut self, kind: &str) -> Result<(Part, Played)> {
        if let Some(shared) = &self.shared {
            return Ok(shared.clone());
        }
        let part = Part::new(part::READINGS, self.seed, self.lab.next_start().await?, self.per_device);
        self.lab.out.say(format!(
            "Playing {} readings of {} devices ({}), {}x faster than they were measured: device-02 goes offline \
             for 90 s and then sends its backlog. Times are shown from the part's start.",
            part.generated().len(),
            part.spec().devices,
            part.tag_name(),
            part.speed()
        ));
        let mode = if self.follow { Mode::Follow } else { Mode::Watermark };
        let mut watch = Watch::new(mode, kind, part.start);
        let played = self.lab.play(&part, &mut watch).await?;
        self.shared = Some((part.clone(), played.clone()));
        Ok((part, played))
    }

    fn kind_named(&self, prefix: &str) -> Result<labs_core::time::WindowKind> {
        let found = self.lab.settings.kinds.iter().find(|k| k.to_string().starts_with(prefix));
        found.copied().ok_or_else(|| anyhow::anyhow!("the declared WINDOW_KINDS have no {prefix} window"))
    }
}

#[derive(Serialize)]
struct RunReport {
    stream: String,
    parts: Vec<Part>,
    scenarios: Vec<ScenarioReport>,
}

async fn run(target: &Target, args: &RunOptions, out: Output) -> Result<()> {
    if args.query.is_some() {
        bail!("example-6 has no --query: it runs scenarios (--scenario NAME)");
    }
    let scenarios: Vec<&'static str> = match args.scenario.as_deref() {
        None => SCENARIOS.to_vec(),
        Some(name) => match SCENARIOS.iter().find(|s| **s == name) {
            Some(known) => vec![*known],
            None => bail!("example-6 has no scenario '{name}': use one of {}", SCENARIOS.join(", ")),
        },
    };
    let per_device = match args.count {
        None => DEFAULT_PER_DEVICE,
        Some(n) if (20..=MAX_PER_DEVICE as usize).contains(&n) => n as u32,
        Some(_) => bail!("--count is readings per device (one every 2 s): use 20 to {MAX_PER_DEVICE}"),
    };
    let lab = Lab::connect(target, out).await?;
    let recorded = lab.parts().await?;
    let adding = 1 + usize::from(scenarios.contains(&"idle-shard"));
    seeds::check_room(recorded.len(), adding, MAX_PARTS, &lab.stream, "example-6")?;
    let used: Vec<u64> = recorded.iter().map(|p| p.seed).collect();
    let seed = seeds::for_scenario(args.seed, &used, "example-6", &lab.stream, "example-6")?;
    target.confirm(&format!("Produce sensor readings into {}?", lab.stream))?;
    out.say(format!(
        "Readings -> {} -> Lambda {} (event time: {}; watermark = largest event time - {} s per shard, the minimum \
         across shards, idle after {} s; allowed lateness {} s) and Lambda {} (Lambda's tumbling windows, by \
         arrival) -> {}, {}, {}.",
        lab.stream,
        target.name(EVENT_WINDOWS),
        lab.settings.kinds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        lab.settings.watermark.max_out_of_orderness / 1000,
        lab.settings.watermark.idle_timeout / 1000,
        lab.settings.allowed_lateness / 1000,
        target.name(ARRIVAL_WINDOWS),
        lab.windows,
        lab.watermarks,
        lab.late
    ));
    let mut ctx = Ctx { lab, seed, per_device, follow: args.follow, shared: None };
    let mut reports = Vec::new();
    for scenario in &scenarios {
        out.say(format!("\n=== example-6 / {scenario} (seed {seed}) ==="));
        reports.push(match *scenario {
            "event-vs-processing" => event_vs_processing::run(&mut ctx).await?,
            "tumbling" | "hopping" | "session" => windows::run(&mut ctx, scenario).await?,
            "late-events" => late_events::run(&mut ctx).await?,
            "idle-shard" => idle_shard::run(&mut ctx).await?,
            _ => arrival::run(&mut ctx).await?,
        });
    }
    out.say(format!(
        "\nCheck it from the data: labs verify example-6{} regenerates every reading from the recorded seeds and checks \
         the windows, the watermarks and the side output against them.",
        ctx.lab.prefix_flag()
    ));
    let problems: Vec<String> = reports.iter().filter_map(|r| r.problem.clone()).collect();
    let parts = ctx.lab.parts().await?.into_iter().filter(|p| p.seed == seed).collect();
    out.json(&RunReport { stream: ctx.lab.stream.clone(), parts, scenarios: reports })?;
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}
