//! The embedded Kafka broker: tansu (Apache-2.0, a Kafka-compatible broker in Rust), built from
//! crates.io with cargo into labs' private directory on first use (pinned), started on
//! 127.0.0.1 with in-memory storage, and reused afterwards. Apache Kafka itself needs a JVM and
//! Maven or an image registry, which these machines lack.
//!
//! One instance per port, like the emulator: its pid and log live in `<home>/run/tansu-<port>.*`,
//! so a test run on its own port never touches a learner's broker. tansu opens no port but its
//! listener (no metrics or admin port), so two instances on two ports run side by side.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::emulator::{self, Started, home, last_line, lock, run_dir};

pub const TANSU_VERSION: &str = "0.6.0";
/// Not Kafka's 9092, so a learner's own Kafka (or Redpanda) there is never taken for ours, and
/// ours never fails to start because theirs holds the port.
pub const DEFAULT_PORT: u16 = 9192;
/// How long the one-time build takes, as the progress line says it.
const BUILD_TIME: &str = "about 15 minutes on 2 cores";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker's port: `LABS_KAFKA_PORT`, else 9192.
pub fn port() -> Result<u16> {
    emulator::port_from_env("LABS_KAFKA_PORT", DEFAULT_PORT)
}

/// The bootstrap address clients use for the embedded broker on `port`.
pub fn bootstrap(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Where `cargo install --root` puts tansu: `<home>/tansu-<version>`.
pub fn install_root() -> Result<PathBuf> {
    Ok(home()?.join(format!("tansu-{TANSU_VERSION}")))
}

fn tansu_bin() -> Result<PathBuf> {
    Ok(install_root()?.join("bin/tansu"))
}

fn pid_file(port: u16) -> Result<PathBuf> {
    Ok(run_dir()?.join(format!("tansu-{port}.pid")))
}

pub fn log_file(port: u16) -> Result<PathBuf> {
    Ok(run_dir()?.join(format!("tansu-{port}.log")))
}

/// Builds tansu with cargo unless it is there already. Slow (`BUILD_TIME`) but once per machine:
/// CI and tests reuse the binary under labs' home.
pub fn install() -> Result<()> {
    let bin = tansu_bin()?;
    if bin.exists() {
        return Ok(());
    }
    let _lock = lock("tansu-install")?;
    if bin.exists() {
        return Ok(()); // another labs process built it while we waited
    }
    let root = install_root()?;
    let log_path = run_dir()?.join("tansu-install.log");
    let log = File::create(&log_path)?;
    let spinner = crate::output::spinner(&format!(
        "building the Kafka broker (tansu {TANSU_VERSION}) into {} with cargo, once: {BUILD_TIME} (log: {})",
        root.display(),
        log_path.display()
    ));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "tansu", "--version", TANSU_VERSION, "--locked", "--features", "dynostore", "--root"])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status();
    spinner.finish_and_clear();
    match status {
        Err(err) => bail!(
            "cannot run cargo to build the Kafka broker ({err}): install Rust, or pass --kafka-bootstrap to use another Kafka"
        ),
        Ok(status) if !status.success() => {
            let log = fs::read(&log_path).unwrap_or_default();
            bail!("cargo could not build tansu {TANSU_VERSION}: {} (log: {})", last_line(&log), log_path.display())
        }
        Ok(_) if !bin.exists() => bail!("cargo finished but {} is missing", bin.display()),
        Ok(_) => Ok(()),
    }
}

/// Whether a Kafka broker answers on `address`: an ApiVersions request (the first thing every
/// client sends) gets a well-formed answer without an error.
pub fn answers(address: &SocketAddr) -> bool {
    api_versions(address).is_ok_and(|error_code| error_code == 0)
}

/// Sends ApiVersions v0 and returns the response's error code.
fn api_versions(address: &SocketAddr) -> std::io::Result<i16> {
    const API_VERSIONS: i16 = 18;
    const CORRELATION_ID: i32 = 0x1ab5;
    let client_id = b"labs-health";
    let mut request = Vec::new();
    request.extend_from_slice(&API_VERSIONS.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes()); // version 0
    request.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    request.extend_from_slice(client_id);
    let mut stream = TcpStream::connect_timeout(address, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(&(request.len() as i32).to_be_bytes())?;
    stream.write_all(&request)?;
    let mut head = [0u8; 10]; // size, correlation id, error code
    stream.read_exact(&mut head)?;
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if correlation != CORRELATION_ID {
        return Err(std::io::Error::other("not a Kafka answer"));
    }
    Ok(i16::from_be_bytes([head[8], head[9]]))
}

fn loopback(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

fn read_pid(port: u16) -> Result<Option<i32>> {
    // Read where `pid_file` writes, without creating the folder (status only looks).
    let path = home()?.join("run").join(format!("tansu-{port}.pid"));
    Ok(fs::read_to_string(path).ok().and_then(|text| text.trim().parse().ok()))
}

/// Whether `pid` is still the broker labs started (pid files outlive processes).
fn ours(pid: i32) -> bool {
    tansu_bin().is_ok_and(|bin| emulator::leads_group_running(pid, &bin))
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub installed: bool,
    pub version: &'static str,
    pub bootstrap: String,
    pub healthy: bool,
    pub started_by_labs: bool,
    pub pid: Option<i32>,
    pub binary: PathBuf,
}

pub fn status(port: u16) -> Result<Status> {
    let pid = read_pid(port)?.filter(|pid| ours(*pid));
    let binary = tansu_bin()?;
    Ok(Status {
        installed: binary.exists(),
        version: TANSU_VERSION,
        bootstrap: bootstrap(port),
        healthy: answers(&loopback(port)),
        started_by_labs: pid.is_some(),
        pid,
        binary,
    })
}

/// Installs if needed, then starts the broker on `port` unless ours already answers there.
/// Returns whether this call started it.
pub fn up(port: u16) -> Result<bool> {
    if reuse(port)? {
        return Ok(false);
    }
    install()?;
    let _lock = lock(&format!("tansu-{port}"))?;
    if reuse(port)? {
        return Ok(false); // another labs process started it while we waited for the lock
    }
    if TcpStream::connect_timeout(&loopback(port), Duration::from_millis(300)).is_ok() {
        bail!("port {port} is taken by something that is not a Kafka broker: set LABS_KAFKA_PORT to a free port");
    }
    let log_path = log_file(port)?;
    let log = File::create(&log_path)?;
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(tansu_bin()?)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/", "--silent"])
        .current_dir(run_dir()?)
        // Settings tansu would otherwise take from the environment: an exporter that is not there.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("SCHEMA_REGISTRY")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group, so `down` stops it whole.
        .process_group(0)
        .spawn()
        .context("could not start tansu")?;
    let started = Started { name: "tansu", pid_path: pid_file(port)?, log_path, timeout: START_TIMEOUT };
    let message = format!("starting the Kafka broker (tansu) on {}", bootstrap(port));
    started.wait_until(&mut child, &message, || answers(&loopback(port)))?;
    Ok(true)
}

/// Whether our broker already answers on `port`. A Kafka broker there that labs did not start is
/// an error naming the flag that uses it, so it is never taken for the embedded one.
fn reuse(port: u16) -> Result<bool> {
    let ours_running = read_pid(port)?.is_some_and(ours);
    match (answers(&loopback(port)), ours_running) {
        (true, true) => Ok(true),
        (true, false) => bail!(
            "port {port} is served by a Kafka broker labs did not start: use it with --kafka-bootstrap {}, or set LABS_KAFKA_PORT to a free port",
            bootstrap(port)
        ),
        (false, _) => Ok(false),
    }
}

/// Stops the broker labs started on `port` (its data is in memory, so it goes with it).
/// Returns false when there was nothing of ours to stop.
pub fn down(port: u16) -> Result<bool> {
    Ok(emulator::stop_recorded(&pid_file(port)?, ours))
}
