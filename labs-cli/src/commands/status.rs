//! `labs status`: what is up on the target, for how long and at what cost, and the trigger
//! runner's mappings.

use anyhow::Result;
use labs_infra::cost::format_usd;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::cost;
use crate::emulator;
use crate::examples;
use crate::kafka;
use crate::output::Output;
use crate::provision;
use crate::sweep;
use crate::target::Target;
use crate::triggers;

#[derive(Serialize)]
struct StatusReport {
    target: crate::target::TargetKind,
    emulator: Option<emulator::Status>,
    /// The embedded Kafka broker, unless `--kafka-bootstrap` names another.
    kafka: Option<kafka::broker::Status>,
    examples: Vec<ExampleStatus>,
    mappings: Vec<triggers::MappingStatus>,
}

#[derive(Serialize)]
struct ExampleStatus {
    example: String,
    provisioned: usize,
    declared: usize,
    /// Since its oldest resource was created (`labs:created-at`), when that is known.
    age_seconds: Option<u64>,
    /// What its resources cost an hour on AWS, requests aside (list prices, infra/prices.toml).
    per_hour_usd: f64,
    /// `per_hour_usd` over its age.
    so_far_usd: Option<f64>,
}

pub async fn status(global: &GlobalArgs, out: Output) -> Result<()> {
    let target = Target::resolve(&global.target(), false).await?;
    let emulator = match &target.kind {
        crate::target::TargetKind::Embedded { .. } => Some(emulator::status(emulator::port()?)?),
        _ => None,
    };
    if let Some(status) = &emulator {
        out.table(
            "Embedded emulator",
            &["installed", "running", "healthy", "endpoint", "pid", "files"],
            [vec![
                format!("{} (MiniStack {})", status.installed, status.version),
                status.running.to_string(),
                status.healthy.to_string(),
                status.endpoint.clone(),
                status.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                status.home.display().to_string(),
            ]],
        );
    }
    let kafka = match global.kafka_bootstrap {
        None => Some(kafka::broker::status(kafka::broker::port()?)?),
        Some(_) => None,
    };
    if let Some(status) = &kafka {
        out.table(
            "Embedded Kafka broker (the Kafka labs)",
            &["installed", "answering", "bootstrap", "pid"],
            [vec![
                format!("{} (tansu {})", status.installed, status.version),
                status.healthy.to_string(),
                status.bootstrap.clone(),
                status.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            ]],
        );
    }
    let mut examples = Vec::new();
    let mut mappings = Vec::new();
    if emulator.as_ref().is_none_or(|s| s.healthy) {
        let found = labs_infra::inventory::scan(&target.clients).await?;
        let ages = sweep::ages(&found, &target.prefix, time::OffsetDateTime::now_utc());
        let mut stacks = Vec::new();
        for (about, _) in examples::built() {
            let stack = about.id.stack()?;
            let (provisioned, declared) = provision::presence(&target, &stack).await?;
            stacks.push(stack.clone());
            let age = if provisioned > 0 { ages.get(&stack.example).copied().flatten() } else { None };
            let per_hour_usd = cost::estimate(&target, &stack)?.per_hour();
            examples.push(ExampleStatus {
                example: about.id.to_string(),
                provisioned,
                declared,
                age_seconds: age.map(|a| a.as_secs()),
                per_hour_usd,
                so_far_usd: age.map(|a| per_hour_usd * a.as_secs_f64() / 3600.0),
            });
        }
        show_examples(&target, &examples, out);
        let elsewhere: std::collections::BTreeSet<&str> =
            found.iter().filter(|f| f.prefix != target.prefix).map(|f| f.prefix.as_str()).collect();
        if !elsewhere.is_empty() {
            out.say(format!(
                "Other prefixes also have resources here ({}): `labs down --all --dry-run` lists them.",
                elsewhere.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        mappings = triggers::status(&target, &stacks).await?;
        show_mappings(&mappings, out);
    } else {
        out.say("The emulator is not running: `labs emulator up` starts it (any other command does too).");
    }
    out.json(&StatusReport { target: target.kind.clone(), emulator, kafka, examples, mappings })
}

fn show_examples(target: &Target, examples: &[ExampleStatus], out: Output) {
    let on_aws = target.kind.is_aws();
    out.table(
        &format!("Provisioned with prefix {}", target.prefix),
        &[
            "example",
            "resources present",
            "state",
            "up for",
            if on_aws { "cost so far" } else { "on AWS it would cost" },
        ],
        examples.iter().map(|e| {
            let state = state_cell(e, &target.flags());
            let age = e.age_seconds.map(std::time::Duration::from_secs);
            let (up_for, so_far) = match (e.provisioned, e.so_far_usd) {
                (0, _) => (String::new(), String::new()),
                (_, Some(usd)) => {
                    (sweep::age_cell(age), format!("{} ({}/h)", format_usd(usd), format_usd(e.per_hour_usd)))
                }
                (_, None) => (sweep::age_cell(age), format!("{}/h", format_usd(e.per_hour_usd))),
            };
            vec![e.example.clone(), format!("{} of {}", e.provisioned, e.declared), state, up_for, so_far]
        }),
    );
}

/// Up, down or partly up; an example up longer than [`cost::OLD_AFTER`] is flagged with the
/// command that removes it (`flags` pick the same target again).
fn state_cell(example: &ExampleStatus, flags: &str) -> String {
    let state = match example.provisioned {
        0 => return "down".to_owned(),
        n if n == example.declared => "up",
        _ => "partly up: run `labs up` or `labs down` again",
    };
    let old = example.age_seconds.is_some_and(|s| std::time::Duration::from_secs(s) > cost::OLD_AFTER);
    if old {
        format!("⚠ {state} for hours: `labs down {} {flags}` removes it", example.example)
    } else {
        state.to_owned()
    }
}

fn show_mappings(mappings: &[triggers::MappingStatus], out: Output) {
    if mappings.is_empty() {
        return;
    }
    out.table(
        "Stream mappings",
        &["mapping", "run by", "settings", "iterator age"],
        mappings.iter().map(|m| {
            let run_by = match (m.run_by, m.runner_pid) {
                (who, Some(pid)) => format!("{who} (pid {pid})"),
                (who, None) if m.iterator_age_source.starts_with("MillisBehind") => {
                    format!("{who} (not running: `labs up` starts it)")
                }
                (who, None) => who.to_owned(),
            };
            vec![m.mapping.clone(), run_by, m.settings.clone(), m.iterator_age_source.to_owned()]
        }),
    );
    let shards: Vec<Vec<String>> = mappings
        .iter()
        .flat_map(|m| {
            m.shards.iter().map(|s| {
                let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
                vec![
                    m.mapping.clone(),
                    s.shard_id.clone(),
                    or_dash(s.checkpoint.clone()) + if s.finished { " (finished)" } else { "" },
                    or_dash(s.millis_behind_latest.map(|n| n.to_string())),
                    or_dash(s.retries_in_progress.map(|n| n.to_string())),
                    or_dash(s.last_result.clone()),
                    or_dash(s.discarded_batches.map(|n| n.to_string())),
                    or_dash(s.open_window.as_ref().map(|w| w.describe())),
                ]
            })
        })
        .collect();
    if !shards.is_empty() {
        out.table(
            "Shards of the mappings labs' runner executes",
            &[
                "mapping",
                "shard",
                "checkpoint",
                "ms behind",
                "retries in progress",
                "last result",
                "sent to on-failure since start",
                "open tumbling window",
            ],
            shards,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_up_for_hours_are_flagged_with_the_command_that_removes_them() {
        let status = |provisioned, hours: Option<u64>| ExampleStatus {
            example: "example-1".into(),
            provisioned,
            declared: 2,
            age_seconds: hours.map(|h| h * 3600),
            per_hour_usd: 0.03,
            so_far_usd: None,
        };
        let flags = "--prefix p --aws";
        assert_eq!(state_cell(&status(2, Some(1)), flags), "up");
        assert_eq!(state_cell(&status(2, None), flags), "up", "no creation time, no flag");
        assert_eq!(state_cell(&status(0, Some(9)), flags), "down");
        assert_eq!(
            state_cell(&status(2, Some(4)), flags),
            "⚠ up for hours: `labs down example-1 --prefix p --aws` removes it"
        );
        assert!(state_cell(&status(1, Some(4)), flags).starts_with("⚠ partly up"));
    }
}
