//! What labs runs on this machine: the emulator, the Kafka broker, the stream-trigger runner, and
//! the function builds.

use std::collections::HashMap;

use anyhow::{Result, bail};
use labs_infra::stack;

use crate::cli::{BuildArgs, EmulatorCommand, GlobalArgs, KafkaCommand, TriggersCommand};
use crate::emulator;
use crate::examples;
use crate::kafka;
use crate::output::{self, Output, note};
use crate::target::{Destination, Target};
use crate::toolchain;
use crate::triggers;

pub async fn triggers(global: &GlobalArgs, command: &TriggersCommand, out: Output) -> Result<()> {
    match command {
        TriggersCommand::Serve => {
            let target = Target::resolve(&global.target(), false).await?;
            triggers::serve(&target).await
        }
        TriggersCommand::Logs { tail } => {
            let target = Target::resolve(&global.target(), false).await?;
            let Some(endpoint) = target.endpoint() else {
                bail!("on AWS, Lambda runs the mappings: their logs are the function's CloudWatch logs");
            };
            let path = triggers::log_path(endpoint, &target.prefix)?;
            let text = std::fs::read_to_string(&path).map_err(|_| {
                anyhow::anyhow!("no runner log yet at {} (`labs up` starts the runner)", path.display())
            })?;
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(*tail)..] {
                println!("{line}");
            }
            Ok(())
        }
        TriggersCommand::Set(args) => {
            let target = Target::resolve(&global.target(), true).await?;
            target.confirm(&format!("Change the mapping {} on {}?", args.mapping, target.kind.describe()))?;
            let (mapping, settings) = triggers::set(&target, &args.mapping, &args.changes()).await?;
            out.say(format!("{mapping}: {settings}"));
            out.json(&serde_json::json!({ "mapping": mapping, "settings": settings }))
        }
    }
}

pub fn build(global: &GlobalArgs, args: &BuildArgs, out: Output) -> Result<()> {
    let stacks: Vec<stack::Stack> = match args.example {
        Some(id) => vec![id.stack()?],
        None if !args.packages.is_empty() => Vec::new(),
        // Every built example's functions, and the probe `labs doctor` deploys.
        None => {
            let probe = std::iter::once(stack::load(super::doctor::PROBE_STACK).map_err(anyhow::Error::from));
            examples::built().map(|(about, _)| about.id.stack()).chain(probe).collect::<Result<_>>()?
        }
    };
    let mut packages: Vec<String> = args.packages.clone();
    for stack in stacks {
        for function in stack.functions {
            if !packages.contains(&function.package) {
                packages.push(function.package);
            }
        }
    }
    // For the target `labs up` would deploy to with the same flags, so `up` finds them built.
    let embedded = global.target().destination()? == Destination::Embedded;
    let runs_on = toolchain::RunsOn::for_embedded_emulator(embedded);
    let artifacts = toolchain::build(&packages, args.profile.into(), runs_on)?;
    let mut rows: Vec<Vec<String>> = artifacts
        .iter()
        .map(|(package, artifact)| {
            vec![package.clone(), format!("{} KiB", artifact.zip.len() / 1024), artifact.code_sha256[..12].to_owned()]
        })
        .collect();
    rows.sort();
    out.table("Built for provided.al2023 (x86_64)", &["function crate", "zip", "code sha256"], rows);
    out.json(&artifacts.iter().map(|(p, a)| (p.clone(), a.code_sha256.clone())).collect::<HashMap<_, _>>())
}

pub fn emulator(command: &EmulatorCommand, out: Output) -> Result<()> {
    let port = emulator::port()?;
    match command {
        EmulatorCommand::Up => {
            let started = emulator::up(port)?;
            out.say(format!(
                "MiniStack {} {} at {}",
                emulator::MINISTACK_VERSION,
                if started { "started" } else { "already running" },
                emulator::endpoint(port)
            ));
            out.json(&emulator::status(port)?)
        }
        EmulatorCommand::Down => {
            let runners = triggers::stop_all_on(&emulator::endpoint(port))?;
            if runners > 0 {
                note(format!("stopped {runners} stream-trigger runner(s)"));
            }
            let stopped = emulator::down(port)?;
            out.say(if stopped {
                "stopped the embedded emulator"
            } else {
                "no emulator started by labs is running on this port"
            });
            // The Kafka broker is a service of its own, on its own port: the Kafka labs may use
            // it without the emulator, and a script that stops its emulator must not stop a broker
            // it did not start. So it stays up, and the learner is told.
            let kafka_port = kafka::broker::port()?;
            if kafka::broker::status(kafka_port)?.started_by_labs {
                note(format!(
                    "the Kafka broker at {} is still running: `labs kafka down` stops it",
                    kafka::broker::bootstrap(kafka_port)
                ));
            }
            out.json(&serde_json::json!({ "stopped": stopped }))
        }
        EmulatorCommand::Status => {
            let status = emulator::status(port)?;
            out.table(
                "",
                &["installed", "running", "healthy", "started by labs", "endpoint"],
                [vec![
                    status.installed.to_string(),
                    status.running.to_string(),
                    status.healthy.to_string(),
                    status.started_by_labs.to_string(),
                    status.endpoint.clone(),
                ]],
            );
            out.json(&status)
        }
        EmulatorCommand::Logs { tail } => print_tail(&emulator::log_file(port)?, *tail),
        EmulatorCommand::Reset => {
            emulator::reset(port)?;
            out.say("the emulator dropped every resource and record");
            Ok(())
        }
        EmulatorCommand::Path => {
            output::line(emulator::home()?.display().to_string());
            Ok(())
        }
    }
}

pub fn kafka(command: &KafkaCommand, out: Output) -> Result<()> {
    use kafka::broker;
    let port = broker::port()?;
    match command {
        KafkaCommand::Up => {
            let started = broker::up(port)?;
            out.say(format!(
                "Kafka broker (tansu {}) {} at {}",
                broker::TANSU_VERSION,
                if started { "started" } else { "already running" },
                broker::bootstrap(port)
            ));
            out.json(&broker::status(port)?)
        }
        KafkaCommand::Down => {
            let stopped = broker::down(port)?;
            out.say(if stopped {
                "stopped the embedded Kafka broker"
            } else {
                "no Kafka broker started by labs is running on this port"
            });
            out.json(&serde_json::json!({ "stopped": stopped }))
        }
        KafkaCommand::Status => {
            let status = broker::status(port)?;
            out.table(
                "",
                &["installed", "answering", "started by labs", "bootstrap", "binary"],
                [vec![
                    format!("{} (tansu {})", status.installed, status.version),
                    status.healthy.to_string(),
                    status.started_by_labs.to_string(),
                    status.bootstrap.clone(),
                    status.binary.display().to_string(),
                ]],
            );
            out.json(&status)
        }
        KafkaCommand::Logs { tail } => print_tail(&broker::log_file(port)?, *tail),
    }
}

/// The last `tail` lines of a log labs keeps.
fn print_tail(path: &std::path::Path, tail: usize) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|_| anyhow::anyhow!("no log yet at {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(tail)..] {
        output::line(line);
    }
    Ok(())
}
