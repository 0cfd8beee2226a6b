//! `labs`: provision, drive, verify and tear down the Stream Labs examples.
//! `main` only parses, dispatches, and turns errors into one line and an exit code.

mod bench_suite;
mod cli;
mod commands;
mod cost;
mod dashboard;
mod driver;
mod emulator;
mod examples;
mod figures;
mod kafka;
mod learning;
mod output;
mod provision;
mod sweep;
mod target;
mod toolchain;
mod trigger_bench;
mod triggers;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{BenchSubject, Cli, Command};
use crate::output::Output;
use crate::target::Target;

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let out = Output::new(cli.global.json);
    let global = &cli.global;
    match &cli.command {
        Command::List => commands::list(out)?,
        Command::Status => commands::status(global, out).await?,
        Command::Up(args) => commands::up(global, args, out).await?,
        Command::Down(args) => commands::down(global, args, out).await?,
        Command::Run(args) => {
            let target = Target::resolve(&global.target(), true).await?;
            examples::run(&target, args.example, &args.options(), out).await?;
        }
        Command::Verify(args) => {
            let target = Target::resolve(&global.target(), true).await?;
            if !examples::verify(&target, args.example, &args.options(), out).await? {
                eprintln!("error: {} failed verification (see the checks above)", args.example);
                return Ok(ExitCode::FAILURE);
            }
            out.say(format!("{} verified.", args.example));
        }
        Command::Produce(args) => commands::produce(global, args, out).await?,
        Command::Consume(args) => commands::consume(global, args, out).await?,
        Command::Build(args) => commands::build(global, args, out)?,
        Command::Bench(args) => {
            let choice = global.target();
            let target = || Target::resolve(&choice, true);
            match args.subject {
                Some(BenchSubject::Example(id)) => {
                    examples::bench(&target().await?, id, &args.options(), out).await?;
                }
                Some(BenchSubject::Triggers) => {
                    trigger_bench::bench(&target().await?, args.count, out).await?;
                }
                // The producer's figures need no emulator: it sends into an endpoint of the bench's own.
                Some(BenchSubject::Producer) => bench_suite::producer(args.count, out).await?,
                None => bench_suite::all(&target().await?, out).await?,
            }
        }
        Command::Doctor { remove } => commands::doctor(global, *remove, out).await?,
        Command::Dashboard(args) => dashboard::serve(&global.target(), args.port).await?,
        Command::Guide(args) => learning::guide(args.example, out)?,
        Command::Questions(args) => learning::questions(args.markdown, out)?,
        Command::Checkpoint(args) => {
            if !learning::checkpoint(&global.target(), args.number, &args.options(), out).await? {
                let number = args.number.map(|n| format!(" {n}")).unwrap_or_default();
                eprintln!("error: checkpoint{number} failed: a scenario or verifier failed (see the table above)");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Emulator(command) => commands::emulator(command, out)?,
        Command::Kafka(command) => commands::kafka(command, out)?,
        Command::Triggers(command) => commands::triggers(global, command, out).await?,
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "labs", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // A bug should still read as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        eprintln!("error: internal error: {message} (please report it)");
    }));
    let cli = Cli::parse();
    if std::env::var_os("LABS_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("LABS_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
