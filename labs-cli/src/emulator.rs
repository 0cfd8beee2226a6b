//! The embedded emulator: MiniStack, installed (pinned) into a private virtualenv under the
//! user's data directory on first use, started on 127.0.0.1, and reused afterwards.
//!
//! One instance per port: its pid and log live in `<home>/run/ministack-<port>.*`, so a test run
//! on its own port never touches a learner's emulator on 4566.

use std::fs::{self, File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub const MINISTACK_VERSION: &str = "1.5.33";
pub const DEFAULT_PORT: u16 = 4566;
/// The services the labs use; naming them shortens start-up.
const SERVICES: &str = "kinesis,sns,sqs,dynamodb,dynamodbstreams,lambda,iam,sts,logs";

/// Where labs keeps its private tools: `LABS_HOME`, else the user's data directory.
pub fn home() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("LABS_HOME") {
        return Ok(PathBuf::from(dir));
    }
    Ok(dirs::data_dir().context("cannot tell where your data directory is: set LABS_HOME")?.join("stream-labs"))
}

/// The emulator's port: `LABS_EMULATOR_PORT`, else 4566.
pub fn port() -> Result<u16> {
    port_from_env("LABS_EMULATOR_PORT", DEFAULT_PORT)
}

/// A port from the environment variable `name`, else `default`; a value that is not a port is a
/// one-line error naming it.
pub(crate) fn port_from_env(name: &str, default: u16) -> Result<u16> {
    match std::env::var(name) {
        Ok(text) => text.parse().with_context(|| format!("{name}={text} is not a port number")),
        Err(_) => Ok(default),
    }
}

pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The virtualenv that holds MiniStack and cargo-lambda.
pub fn venv() -> Result<PathBuf> {
    Ok(home()?.join("venv"))
}

pub(crate) fn run_dir() -> Result<PathBuf> {
    let dir = home()?.join("run");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn pid_file(port: u16) -> Result<PathBuf> {
    Ok(run_dir()?.join(format!("ministack-{port}.pid")))
}

pub fn log_file(port: u16) -> Result<PathBuf> {
    Ok(run_dir()?.join(format!("ministack-{port}.log")))
}

/// Holds an exclusive lock on a file under `run/` while alive: installs and starts by parallel
/// `labs` processes (tests, two terminals) take turns instead of racing.
pub struct Lock(#[allow(dead_code)] File);

pub fn lock(name: &str) -> Result<Lock> {
    let path = run_dir()?.join(format!("{name}.lock"));
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(Lock(file))
}

/// What pip installs into the private virtualenv, pinned.
pub struct PipInstall<'a> {
    /// pip specs, each `name==version`.
    pub packages: &'a [&'a str],
    /// Said while it installs, e.g. `MiniStack 1.2.3`.
    pub what: &'a str,
    /// A file the packages install (a launcher under `bin/`), checked after pip ran.
    pub installs: &'a Path,
    /// Left in the virtualenv once these versions are installed: a version bump installs again.
    pub marker: &'a Path,
    /// Leave the packages' own dependencies out (pip's `--no-deps`): labs pins and installs them.
    pub no_deps: bool,
}

/// Installs `install.packages` into the private virtualenv unless its marker already exists.
pub fn pip_install(install: &PipInstall) -> Result<()> {
    // Without the lock first, so a labs that finds them installed never waits on another's install;
    // then again under it, since a parallel labs may have just installed them.
    if install.marker.exists() {
        return Ok(());
    }
    let _lock = lock("venv")?;
    if install.marker.exists() {
        return Ok(());
    }
    let &PipInstall { packages, what, installs, marker, no_deps } = install;
    let venv = venv()?;
    let python = which_python()?;
    let spinner = crate::output::spinner(&format!("installing {what} into {}", venv.display()));
    if !venv.join("bin/pip").exists() {
        let out = Command::new(&python).args(["-m", "venv"]).arg(&venv).output()?;
        if !out.status.success() {
            bail!(
                "could not create a virtualenv with {python}: {} (on Debian/Ubuntu: apt install python3-venv)",
                last_line(&out.stderr)
            );
        }
    }
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--disable-pip-version-check", "--quiet"])
        .args(no_deps.then_some("--no-deps"))
        .args(packages)
        .output()?;
    spinner.finish_and_clear();
    if !out.status.success() {
        bail!("pip could not install {}: {}", packages.join(" "), last_line(&out.stderr));
    }
    if !installs.exists() {
        bail!("pip installed {} but {} is missing", packages.join(" "), installs.display());
    }
    File::create(marker)?;
    Ok(())
}

fn which_python() -> Result<String> {
    for candidate in ["python3", "python"] {
        if let Ok(out) = Command::new(candidate).arg("--version").output()
            && out.status.success()
        {
            return Ok(candidate.to_owned());
        }
    }
    bail!(
        "Python 3 is needed to install the embedded emulator: install python3, or pass --endpoint-url to use another emulator"
    )
}

pub(crate) fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_owned()
}

fn ministack_bin() -> Result<PathBuf> {
    Ok(venv()?.join("bin/ministack"))
}

pub fn install() -> Result<()> {
    let marker = venv()?.join(format!(".ministack-{MINISTACK_VERSION}"));
    pip_install(&PipInstall {
        packages: &[&format!("ministack=={MINISTACK_VERSION}")],
        what: &format!("MiniStack {MINISTACK_VERSION}"),
        installs: &ministack_bin()?,
        marker: &marker,
        no_deps: false,
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().new_agent()
}

/// Who answers on an emulator endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "version")]
pub enum Server {
    /// MiniStack, with the version its health check reports.
    #[serde(rename = "ministack")]
    MiniStack(String),
    /// Something that answers LocalStack's health check but not MiniStack's.
    LocalStackCompatible,
}

impl Server {
    pub fn describe(&self) -> String {
        match self {
            Server::MiniStack(version) => format!("MiniStack {version}"),
            Server::LocalStackCompatible => "a LocalStack-compatible server (not MiniStack)".to_owned(),
        }
    }

    /// Whether this is the emulator labs installs, at the pinned version.
    pub fn is_embedded(&self) -> bool {
        *self == Server::MiniStack(MINISTACK_VERSION.to_owned())
    }
}

/// Who answers the health check on `endpoint`, if anyone.
pub fn identify(endpoint: &str) -> Option<Server> {
    let agent = agent();
    let health = |path: &str| -> Option<serde_json::Value> {
        let mut response = agent.get(&format!("{endpoint}{path}")).call().ok()?;
        if !response.status().is_success() {
            return None;
        }
        // A body that is not JSON still says something answered.
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Some(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    };
    if let Some(body) = health("/_ministack/health") {
        let version = body["version"].as_str().unwrap_or("of unknown version").to_owned();
        return Some(Server::MiniStack(version));
    }
    health("/_localstack/health").map(|_| Server::LocalStackCompatible)
}

/// Whether an emulator answers its health check on `endpoint`.
pub fn healthy(endpoint: &str) -> bool {
    identify(endpoint).is_some()
}

fn read_pid(port: u16) -> Result<Option<i32>> {
    let path = pid_file(port)?;
    Ok(fs::read_to_string(path).ok().and_then(|text| text.trim().parse().ok()))
}

pub(crate) fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Whether `pid` is still the emulator labs started: alive, leading its own process group, and
/// running our MiniStack. A pid file can outlive its process and the pid be reused by another.
fn ours(pid: i32) -> bool {
    ministack_bin().is_ok_and(|bin| leads_group_running(pid, &bin))
}

/// Whether `pid` is alive, leads its own process group, and runs `bin` (the check every process
/// labs starts and later stops goes through).
pub(crate) fn leads_group_running(pid: i32, bin: &Path) -> bool {
    // SAFETY: getpgid only reads the process table.
    if !alive(pid) || unsafe { libc::getpgid(pid) } != pid {
        return false;
    }
    let command = fs::read(format!("/proc/{pid}/cmdline")).ok().or_else(|| {
        // Without /proc (macOS): ask ps.
        Command::new("ps").args(["-o", "command=", "-p", &pid.to_string()]).output().ok().map(|o| o.stdout)
    });
    command.is_some_and(|c| String::from_utf8_lossy(&c).contains(&*bin.to_string_lossy()))
}

/// Stops the process group `pid` leads: politely, then for good.
pub(crate) fn stop_group(pid: i32) {
    // SAFETY: plain signal sends to the process group labs created (pgid == pid, checked by the caller).
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub installed: bool,
    pub version: &'static str,
    pub endpoint: String,
    pub running: bool,
    pub healthy: bool,
    /// Who answers on the port; `None` when nothing does.
    pub server: Option<Server>,
    pub started_by_labs: bool,
    pub pid: Option<i32>,
    pub home: PathBuf,
}

pub fn status(port: u16) -> Result<Status> {
    let endpoint = endpoint(port);
    let pid = read_pid(port)?.filter(|pid| ours(*pid));
    let server = identify(&endpoint);
    let healthy = server.is_some();
    Ok(Status {
        installed: venv()?.join(format!(".ministack-{MINISTACK_VERSION}")).exists(),
        version: MINISTACK_VERSION,
        running: pid.is_some() || healthy,
        healthy,
        server,
        started_by_labs: pid.is_some(),
        pid,
        endpoint,
        home: home()?,
    })
}

/// Installs if needed, then starts the emulator on `port` unless one already answers there.
/// Returns whether this call started it.
pub fn up(port: u16) -> Result<bool> {
    let endpoint = endpoint(port);
    if reuse(port, &endpoint)? {
        return Ok(false);
    }
    install()?;
    let _lock = lock(&format!("ministack-{port}"))?;
    if reuse(port, &endpoint)? {
        return Ok(false); // another labs process started it while we waited for the lock
    }
    if std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok() {
        bail!("port {port} is taken by something that is not an emulator: set LABS_EMULATOR_PORT to a free port");
    }
    let log_path = log_file(port)?;
    let log = File::create(&log_path)?;
    let mut child = Command::new(ministack_bin()?)
        .current_dir(run_dir()?)
        .env("BIND_HOST", "127.0.0.1")
        .env("GATEWAY_PORT", port.to_string())
        // Lambdas inherit it: without it a function's own SDK calls would go to real AWS.
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("SERVICES", SERVICES)
        .env_remove("LOCALSTACK_PERSISTENCE")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: `down` stops it and every function process it spawned at once.
        .process_group(0)
        .spawn()
        .context("could not start MiniStack")?;
    let started = Started { name: "MiniStack", pid_path: pid_file(port)?, log_path, timeout: START_TIMEOUT };
    started.wait_until(&mut child, &format!("starting MiniStack on {endpoint}"), || healthy(&endpoint))?;
    Ok(true)
}

/// A service labs just started in a process group of its own, with its pid file and log.
pub(crate) struct Started {
    pub name: &'static str,
    pub pid_path: PathBuf,
    pub log_path: PathBuf,
    /// How long it may take to answer after starting.
    pub timeout: Duration,
}

impl Started {
    /// Records the pid and waits, with a spinner, until `ready` holds. If the process exits or
    /// the time runs out, leaves nothing behind (the process group, then the pid file) and fails
    /// with the log's last line.
    pub(crate) fn wait_until(
        &self,
        child: &mut std::process::Child,
        message: &str,
        ready: impl Fn() -> bool,
    ) -> Result<()> {
        let pid = child.id() as i32;
        fs::write(&self.pid_path, pid.to_string())?;
        let spinner = crate::output::spinner(message);
        let deadline = Instant::now() + self.timeout;
        let failure = loop {
            if ready() {
                spinner.finish_and_clear();
                return Ok(());
            }
            if let Some(exit) = child.try_wait()? {
                let log = fs::read(&self.log_path).unwrap_or_default();
                break format!(
                    "{} exited at start ({exit}): {} (log: {})",
                    self.name,
                    last_line(&log),
                    self.log_path.display()
                );
            }
            if Instant::now() > deadline {
                break format!(
                    "{} did not become healthy within {} s, so labs stopped it (log: {})",
                    self.name,
                    self.timeout.as_secs(),
                    self.log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        spinner.finish_and_clear();
        stop_group(pid);
        child.try_wait().ok();
        fs::remove_file(&self.pid_path).ok();
        bail!(failure)
    }
}

/// Stops the process group whose leader's pid `pid_path` records, if `ours` says it is still the
/// process labs started; the pid file goes either way (a stale one names a process that is gone,
/// or a pid that now belongs to something else). Returns whether it stopped something.
pub(crate) fn stop_recorded(pid_path: &Path, ours: impl Fn(i32) -> bool) -> bool {
    let Some(pid) = fs::read_to_string(pid_path).ok().and_then(|text| text.trim().parse::<i32>().ok()) else {
        return false;
    };
    let stopped = ours(pid);
    if stopped {
        stop_group(pid);
    }
    fs::remove_file(pid_path).ok();
    stopped
}

/// How long MiniStack may take to answer its health check after starting.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether an emulator we can use already answers on `port`: our pinned MiniStack. Anything else
/// answering there is an error that says what it is, so it is never taken for the embedded one.
fn reuse(port: u16, endpoint: &str) -> Result<bool> {
    match identify(endpoint) {
        None => Ok(false),
        Some(server) if server.is_embedded() => Ok(true),
        Some(server) => bail!(
            "port {port} is served by {}, not the embedded MiniStack {MINISTACK_VERSION}: use it with --endpoint-url {endpoint}, or set LABS_EMULATOR_PORT to a free port",
            server.describe()
        ),
    }
}

/// Stops the emulator this machine's labs started on `port`, with every process it spawned.
/// Returns false when there was nothing of ours to stop.
pub fn down(port: u16) -> Result<bool> {
    Ok(stop_recorded(&pid_file(port)?, ours))
}

pub fn reset(port: u16) -> Result<()> {
    let endpoint = endpoint(port);
    let response = agent().post(&format!("{endpoint}/_ministack/reset")).send_empty();
    match response {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => bail!("the emulator at {endpoint} refused to reset (HTTP {})", r.status()),
        Err(err) => bail!("cannot reach the emulator at {endpoint}: {err} (start it with `labs emulator up`)"),
    }
}
