//! The runner as a background process, managed as the emulator is (`emulator.rs`): one per
//! endpoint and prefix, in its own process group, its pid and log in
//! `<home>/run/triggers-<endpoint>-<prefix>.{pid,log}`, the pid checked to be ours before any
//! signal is sent.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::emulator;
use crate::output::note;

/// The endpoint as a file-name part: `http://127.0.0.1:4566` becomes `127.0.0.1_4566`.
fn endpoint_key(endpoint: &str) -> String {
    let without_scheme = endpoint.split("://").nth(1).unwrap_or(endpoint);
    without_scheme.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect()
}

fn stem(endpoint: &str, prefix: &str) -> String {
    format!("triggers-{}-{prefix}", endpoint_key(endpoint))
}

fn pid_file(endpoint: &str, prefix: &str) -> Result<PathBuf> {
    Ok(emulator::run_dir()?.join(format!("{}.pid", stem(endpoint, prefix))))
}

pub fn log_path(endpoint: &str, prefix: &str) -> Result<PathBuf> {
    Ok(emulator::run_dir()?.join(format!("{}.log", stem(endpoint, prefix))))
}

/// Whether `pid` is a runner labs started for `prefix`: alive, leading its own process group,
/// and running `labs ... --prefix <prefix> ... triggers serve`.
fn ours(pid: i32, prefix: &str) -> bool {
    // SAFETY: getpgid only reads the process table.
    if !emulator::alive(pid) || unsafe { libc::getpgid(pid) } != pid {
        return false;
    }
    let command = fs::read(format!("/proc/{pid}/cmdline")).ok().or_else(|| {
        Command::new("ps").args(["-o", "command=", "-p", &pid.to_string()]).output().ok().map(|o| o.stdout)
    });
    let Some(command) = command else { return false };
    let text = String::from_utf8_lossy(&command);
    let args: Vec<&str> = text.split(['\0', ' ']).filter(|a| !a.is_empty()).collect();
    let serves = args.windows(2).any(|w| w == ["triggers", "serve"]);
    let for_prefix = args.windows(2).any(|w| w == ["--prefix", prefix]);
    serves && for_prefix
}

/// The runner's pid for this endpoint and prefix, if one of ours is running.
pub fn running_pid(endpoint: &str, prefix: &str) -> Option<i32> {
    let path = pid_file(endpoint, prefix).ok()?;
    let pid: i32 = fs::read_to_string(path).ok()?.trim().parse().ok()?;
    ours(pid, prefix).then_some(pid)
}

/// Starts the runner unless it runs already.
pub fn ensure_running(endpoint: &str, prefix: &str) -> Result<()> {
    let _lock = emulator::lock(&stem(endpoint, prefix))?;
    if running_pid(endpoint, prefix).is_some() {
        return Ok(());
    }
    let log_path = log_path(endpoint, prefix)?;
    let log = OpenOptions::new().create(true).append(true).open(&log_path)?;
    let exe = std::env::current_exe().context("cannot tell where the labs binary is")?;
    let child = Command::new(exe)
        .args(["--prefix", prefix, "--endpoint-url", endpoint, "triggers", "serve"])
        .env("LABS_LOG", std::env::var("LABS_LOG").unwrap_or_else(|_| "info,aws=warn,hyper=warn".to_owned()))
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group, as the emulator: `stop` ends it and nothing else.
        .process_group(0)
        .spawn()
        .context("could not start the stream-trigger runner")?;
    fs::write(pid_file(endpoint, prefix)?, child.id().to_string())?;
    note(format!(
        "started the stream-trigger runner for prefix {prefix} (pid {}, log: labs triggers logs)",
        child.id()
    ));
    Ok(())
}

/// Stops the runner of this endpoint and prefix. Returns whether one of ours was running.
pub fn stop(endpoint: &str, prefix: &str) -> Result<bool> {
    let path = pid_file(endpoint, prefix)?;
    let Some(pid) = running_pid(endpoint, prefix) else {
        fs::remove_file(path).ok();
        return Ok(false);
    };
    emulator::stop_group(pid);
    fs::remove_file(path).ok();
    Ok(true)
}

/// Stops every runner of this endpoint (before the emulator stops). Returns how many ran.
pub fn stop_all_on(endpoint: &str) -> Result<usize> {
    let lead = format!("triggers-{}-", endpoint_key(endpoint));
    let mut stopped = 0;
    for entry in fs::read_dir(emulator::run_dir()?)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(prefix) = name.strip_prefix(&lead).and_then(|rest| rest.strip_suffix(".pid"))
            && stop(endpoint, prefix)?
        {
            stopped += 1;
        }
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_different_ports_get_different_files() {
        assert_eq!(stem("http://127.0.0.1:4566", "labs"), "triggers-127.0.0.1_4566-labs");
        assert_ne!(stem("http://127.0.0.1:4566", "labs"), stem("http://127.0.0.1:4619", "labs"));
    }
}
