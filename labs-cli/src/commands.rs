//! One function per subcommand that is not an example's own (`run`, `verify`, `bench` live in
//! `examples/`). Each resolves its target, does its work, and reports a table or JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use labs_infra::cost::format_usd;
use labs_infra::{SdkContext, stack};
use serde::Serialize;

use crate::cli::{
    BuildArgs, ConsumeArgs, DownArgs, EmulatorCommand, GlobalArgs, KafkaCommand, KeyStrategy, ProduceArgs, StartFrom,
    TriggersCommand, UpArgs,
};
use crate::cost;
use crate::driver::clickstream;
use crate::driver::kinesis::{self, Position, Until};
use crate::emulator;
use crate::examples::{self, About};
use crate::kafka;
use crate::output::{self, Output, note};
use crate::provision;
use crate::sweep;
use crate::target::Target;
use crate::toolchain;
use crate::triggers;

/// The stack `labs doctor` deploys (`infra/stacks/probe.toml`), and its one function.
const PROBE_STACK: &str = "probe";
const PROBE: stack::Lambda = stack::Lambda::new("probe");

/// A registered example as `labs list --json` shows it.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    about: &'static About,
    built: bool,
}

pub fn list(out: Output) -> Result<()> {
    let listed: Vec<Listed> =
        examples::REGISTRY.iter().map(|e| Listed { about: &e.about, built: e.example.is_some() }).collect();
    out.table(
        "",
        &["example", "title", "what it teaches", "AWS parts", "ready"],
        listed.iter().map(|e| {
            vec![
                e.about.id.to_string(),
                e.about.title.into(),
                e.about.teaches.into(),
                e.about.aws.into(),
                if e.built { "yes" } else { "not yet" }.into(),
            ]
        }),
    );
    out.json(&listed)
}

pub async fn up(global: &GlobalArgs, args: &UpArgs, out: Output) -> Result<()> {
    let stack = args.example.stack()?;
    let target = Target::resolve(&global.target(), true).await?;
    provision::up_stack(&target, &stack, args.dry_run, out).await
}

pub async fn down(global: &GlobalArgs, args: &DownArgs, out: Output) -> Result<()> {
    let Some(example) = args.example else {
        let target = Target::resolve(&global.target(), true).await?;
        return sweep::down_all(&target, args.dry_run, out).await;
    };
    let stack = example.stack()?;
    let target = Target::resolve(&global.target(), true).await?;
    target.confirm(&format!(
        "Delete {} resources with prefix {} from {}?",
        stack.example,
        target.prefix,
        target.kind.describe()
    ))?;
    let (removed, failure) = provision::destroy_stack(&target, &stack).await?;
    out.table(
        &format!("{} down (prefix {}):", stack.example, target.prefix),
        &["resource", "name", "result"],
        removed.iter().map(|r| vec![r.kind.to_string(), r.name.clone(), r.removal.to_string()]),
    );
    out.json(&removed)?;
    failure.map_or(Ok(()), Err)
}

#[derive(Serialize)]
struct StatusReport {
    target: crate::target::TargetKind,
    emulator: Option<emulator::Status>,
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
    out.json(&StatusReport { target: target.kind.clone(), emulator, examples, mappings })
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

pub async fn produce(global: &GlobalArgs, args: &ProduceArgs, out: Output) -> Result<()> {
    use labs_core::clickstream::{ClickstreamSpec, events};
    let target = Target::resolve(&global.target(), true).await?;
    if args.count == Some(0) {
        bail!("--count must be at least 1");
    }
    if args.rate == Some(0) {
        bail!("--rate must be at least 1 record per second");
    }
    // With a rate and no count, it runs until Ctrl-C.
    let count = match (args.count, args.rate) {
        (Some(count), _) => Some(count),
        (None, Some(_)) => None,
        (None, None) => Some(1000),
    };
    match count {
        Some(count) => target.confirm(&format!("Produce {count} records into {}?", args.stream))?,
        None => target.confirm(&format!("Produce records into {} until Ctrl-C?", args.stream))?,
    }
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>().into());
    // Generated one at a time as the senders take them: memory does not grow with the count.
    let records =
        events(&ClickstreamSpec { seed, count: count.unwrap_or(usize::MAX), ..Default::default() }).map(|event| {
            let mut record = clickstream::encode(&event);
            record.partition_key = match args.keys {
                KeyStrategy::User => event.user_id.clone(),
                KeyStrategy::Random => format!("{:032x}", rand::random::<u128>()),
                KeyStrategy::Single => "hot-key".to_owned(),
            };
            record
        });
    let bar = match count {
        Some(count) => output::progress(count as u64, "PutRecords"),
        None => output::rate_line("PutRecords until Ctrl-C"),
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let stats = kinesis::produce_until(&target.clients.kinesis, &args.stream, records, args.rate, &bar, ctrl_c).await?;
    bar.finish_and_clear();
    // Read last, so it covers the whole run: `labs bench` reports it.
    let peak_rss_mib = crate::figures::peak_rss_mib();
    out.table(
        &format!("Produced into {} (seed {seed})", args.stream),
        &["records", "seconds", "records/s", "PutRecords calls", "entries retried", "peak memory"],
        [vec![
            stats.records.to_string(),
            format!("{:.2}", stats.seconds),
            format!("{:.0}", stats.records_per_second()),
            stats.calls.to_string(),
            stats.retried_entries.to_string(),
            peak_rss_mib.map(|mib| format!("{mib:.0} MiB")).unwrap_or_else(|| "unknown".into()),
        ]],
    );
    out.json(&Produced { stats: &stats, peak_rss_mib })
}

#[derive(Serialize)]
struct Produced<'a> {
    #[serde(flatten)]
    stats: &'a kinesis::ProduceStats,
    peak_rss_mib: Option<f64>,
}

fn parse_timestamp(text: &str) -> Result<aws_sdk_kinesis::primitives::DateTime> {
    use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok(DateTime::from_secs_f64(seconds));
    }
    DateTime::from_str(text, DateTimeFormat::DateTime)
        .map_err(|_| anyhow::anyhow!("--timestamp {text} is neither RFC 3339 (2026-01-01T00:00:00Z) nor Unix seconds"))
}

pub async fn consume(global: &GlobalArgs, args: &ConsumeArgs, out: Output) -> Result<()> {
    let target = Target::resolve(&global.target(), true).await?;
    let client = &target.clients.kinesis;
    let position = match args.from {
        StartFrom::TrimHorizon => Position::TrimHorizon,
        StartFrom::Latest => Position::Latest,
        StartFrom::AtTimestamp => {
            Position::AtTimestamp(parse_timestamp(args.timestamp.as_deref().unwrap_or_default())?)
        }
        StartFrom::AfterSequence => Position::AfterSequence(args.sequence.clone().unwrap_or_default()),
    };
    let mut shards = kinesis::list_shards(client, &args.stream).await?;
    if let Some(only) = &args.shard {
        shards.retain(|s| &s.shard_id == only);
        if shards.is_empty() {
            bail!("{} has no shard {only}", args.stream);
        }
    }
    let until = if args.follow { Until::Forever } else { Until::CaughtUp };
    let json = out.json;
    // With --limit, N records in all, however many shards are read at once.
    let printed = Arc::new(AtomicUsize::new(0));
    let limit_reached = Arc::new(tokio::sync::Notify::new());
    let print = {
        let (printed, limit_reached, limit) = (printed.clone(), limit_reached.clone(), args.limit);
        move |record: &kinesis::Incoming| {
            let n = printed.fetch_add(1, Ordering::SeqCst) + 1;
            if limit.is_some_and(|limit| n > limit) {
                return;
            }
            if limit == Some(n) {
                limit_reached.notify_one();
            }
            let data = String::from_utf8_lossy(&record.data);
            if json {
                let value = serde_json::json!({
                    "shard_id": record.shard_id, "sequence_number": record.sequence_number,
                    "partition_key": record.partition_key, "millis_behind_latest": record.millis_behind_latest,
                    "data": serde_json::from_str::<serde_json::Value>(&data).unwrap_or(serde_json::Value::String(data.into_owned())),
                });
                output::line(value.to_string());
            } else {
                output::line(format!(
                    "{}  {}  key={}  lag={}ms  {}",
                    record.shard_id, record.sequence_number, record.partition_key, record.millis_behind_latest, data
                ));
            }
        }
    };
    if args.follow {
        // Every shard at once, until interrupted or the limit is reached.
        let mut readers = tokio::task::JoinSet::new();
        for shard in shards {
            let (client, stream, position, limit) = (client.clone(), args.stream.clone(), position.clone(), args.limit);
            let print = print.clone();
            readers.spawn(async move {
                kinesis::read_shard(&client, &stream, &shard.shard_id, &position, until, limit, print).await.map(|_| ())
            });
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => note("stopped"),
            _ = limit_reached.notified() => {}
            _ = async { while readers.join_next().await.is_some() {} } => {}
        }
    } else {
        for shard in shards {
            let remaining = args.limit.map(|l| l.saturating_sub(printed.load(Ordering::SeqCst)));
            if remaining == Some(0) {
                break;
            }
            kinesis::read_shard(client, &args.stream, &shard.shard_id, &position, until, remaining, print.clone())
                .await?;
        }
    }
    let total = args.limit.map_or(printed.load(Ordering::SeqCst), |l| printed.load(Ordering::SeqCst).min(l));
    note(format!("{total} records read from {}", args.stream));
    Ok(())
}

#[derive(Serialize)]
struct DoctorStep {
    step: String,
    /// `None` when it went as expected, else what happened.
    problem: Option<String>,
}

#[derive(Serialize)]
struct DoctorReport {
    target: crate::target::TargetKind,
    function: String,
    steps: Vec<DoctorStep>,
    /// What the function answered, when it was invoked.
    reply: Option<serde_json::Value>,
    passed: bool,
}

/// Invokes the probe and checks that it answers as built: it echoes the payload and names itself.
async fn invoke_probe(target: &Target, function: &str, reply_seen: &mut Option<serde_json::Value>) -> Result<()> {
    let payload = serde_json::json!({ "nonce": format!("{:016x}", rand::random::<u64>()) });
    let spinner = output::spinner(&format!("invoking {function}"));
    let invoked = target
        .clients
        .lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .doing(format!("invoking {function}"));
    spinner.finish_and_clear();
    let invoked = invoked?;
    let body = invoked.payload().map(|p| p.as_ref().to_vec()).unwrap_or_default();
    let reply: serde_json::Value =
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    *reply_seen = Some(reply.clone());
    if let Some(error) = invoked.function_error() {
        bail!("the function failed ({error}): {reply}");
    }
    if reply["echo"] != payload || reply["function_name"] != function || reply["labs_example"] != PROBE_STACK {
        bail!("it did not answer as built: {reply}");
    }
    Ok(())
}

/// Proves the pipeline every Lambda example relies on: cargo-lambda builds the probe, the engine
/// deploys it like any example's function, the target runs it, and `down` removes it. Each row
/// is what happened; the probe is removed whatever failed before. `--remove` only removes a
/// probe left behind (by an interrupted run or an older labs).
pub async fn doctor(global: &GlobalArgs, remove_only: bool, out: Output) -> Result<()> {
    let target = Target::resolve(&global.target(), true).await?;
    let stack = stack::load(PROBE_STACK)?;
    let function = target.name(PROBE);
    let mut steps = Vec::new();
    let mut reply = None;
    let mut record = |step: String, outcome: &Result<()>| {
        steps.push(DoctorStep { step, problem: outcome.as_ref().err().map(|e| format!("{e:#}")) });
    };
    if !remove_only {
        let deployed = provision::up_stack(&target, &stack, false, Output::quiet()).await;
        record(format!("build with cargo-lambda and deploy {function}"), &deployed);
        if deployed.is_ok() {
            let invoked = invoke_probe(&target, &function, &mut reply).await;
            record("invoke it and check the reply".to_owned(), &invoked);
        }
    }
    let removed = match provision::destroy_stack(&target, &stack).await {
        Ok((_, None)) => Ok(()),
        Ok((_, Some(failure))) => Err(failure),
        Err(err) => Err(err),
    };
    record(format!("remove {function}"), &removed);
    let passed = steps.iter().all(|s| s.problem.is_none());
    out.table(
        "Pipeline check",
        &["step", "result"],
        steps
            .iter()
            .map(|s| vec![s.step.clone(), s.problem.as_ref().map_or("ok".to_owned(), |p| format!("FAILED: {p}"))]),
    );
    let first_problem = steps.iter().find_map(|s| s.problem.as_ref().map(|p| format!("{}: {p}", s.step)));
    out.json(&DoctorReport { target: target.kind.clone(), function, steps, reply, passed })?;
    match first_problem {
        Some(problem) => bail!("the pipeline check failed at {problem}"),
        None => Ok(()),
    }
}

pub fn build(args: &BuildArgs, out: Output) -> Result<()> {
    let stacks: Vec<stack::Stack> = match args.example {
        Some(id) => vec![id.stack()?],
        // Every built example's functions, and the probe `labs doctor` deploys.
        None => {
            let probe = std::iter::once(stack::load(PROBE_STACK).map_err(anyhow::Error::from));
            examples::built().map(|(about, _)| about.id.stack()).chain(probe).collect::<Result<_>>()?
        }
    };
    let mut packages: Vec<String> = Vec::new();
    for stack in stacks {
        for function in stack.functions {
            if !packages.contains(&function.package) {
                packages.push(function.package);
            }
        }
    }
    let artifacts = toolchain::build(&packages)?;
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

    #[test]
    fn the_probe_function_is_declared_in_the_probe_stack() {
        let stack = stack::load(PROBE_STACK).unwrap();
        assert_eq!(stack.check(&PROBE.any()), Ok(()));
    }
}
