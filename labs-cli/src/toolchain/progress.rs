//! cargo-lambda's build, shown while it runs: a first build compiles a few hundred crates and
//! takes minutes, so the spinner names the crate being compiled and how many have started, and
//! everything printed is kept for the log a failed build leaves.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

/// A finished build: its exit status and both output streams, in full.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `command` (cargo-lambda, not `--quiet`) under a spinner that starts as `what` and then
/// follows cargo's `Compiling` lines.
pub fn run(command: &mut Command, what: &str) -> Result<Finished> {
    let spinner = crate::output::spinner(what);
    let mut child = command
        // Plain lines whatever the learner's cargo config says, so they can be read here.
        .env("CARGO_TERM_COLOR", "never")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not run cargo-lambda")?;
    // Drained on its own thread, so a full stdout pipe cannot stall the build.
    let mut stdout_pipe = child.stdout.take().context("cargo-lambda's stdout")?;
    let stdout_reader = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        stdout_pipe.read_to_end(&mut buffer).map(|_| buffer)
    });
    let mut stderr = Vec::new();
    let mut started = 0;
    for line in BufReader::new(child.stderr.take().context("cargo-lambda's stderr")?).split(b'\n') {
        let line = line?;
        if let Some(name) = compiling(&String::from_utf8_lossy(&line)) {
            started += 1;
            spinner.set_message(format!("{what}: compiling {name} (crate {started})"));
        }
        stderr.extend_from_slice(&line);
        stderr.push(b'\n');
    }
    let status = child.wait()?;
    let stdout = stdout_reader.join().map_err(|_| anyhow::anyhow!("reading cargo-lambda's output failed"))??;
    spinner.finish_and_clear();
    Ok(Finished { status, stdout, stderr })
}

/// The crate a line of cargo's output starts compiling (`   Compiling serde v1.0.228`), if any.
fn compiling(line: &str) -> Option<String> {
    line.trim_start().strip_prefix("Compiling ")?.split_whitespace().next().map(str::to_owned)
}

/// The first error line of a failed build's stderr (not a `Compiling thiserror` line).
pub fn first_error(stderr: &str) -> &str {
    stderr.lines().map(str::trim).find(|line| line.starts_with("error")).unwrap_or("no error line")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiling_lines_name_their_crate() {
        assert_eq!(compiling("   Compiling serde v1.0.228").as_deref(), Some("serde"));
        assert_eq!(
            compiling("   Compiling cdc-indexer v0.1.0 (/src/lambdas/cdc-indexer)").as_deref(),
            Some("cdc-indexer")
        );
        assert_eq!(compiling("warning: unused variable: `x`"), None);
        assert_eq!(compiling("    Finished `lambda` profile [optimized] target(s) in 4m 02s"), None);
    }

    #[test]
    fn the_first_error_is_an_error_line_not_a_crate_named_error() {
        let stderr = "   Compiling thiserror v2.0.17\nwarning: unused import\nerror[E0425]: cannot find value `x`\nerror: could not compile `fun`\n";
        assert_eq!(first_error(stderr), "error[E0425]: cannot find value `x`");
        assert_eq!(first_error("   Compiling thiserror v2.0.17\n"), "no error line");
    }
}
