//! Builds the Lambda functions with cargo-lambda (pinned, with its zig, in the private virtualenv
//! beside MiniStack) and hands the engine what it deploys.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use labs_infra::Artifact;
use sha2::{Digest, Sha256};

use crate::emulator;

pub const CARGO_LAMBDA_VERSION: &str = "1.9.2";
/// New zig releases have broken cargo-lambda builds before: pin it with cargo-lambda.
pub const ZIG_VERSION: &str = "0.17.1";

/// The Stream Labs source tree, whose `lambdas/` holds the functions: `LABS_SOURCE_DIR`, else the
/// tree this binary was built from.
pub fn source_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("LABS_SOURCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    if !dir.join("lambdas").is_dir() {
        bail!(
            "cannot find the Stream Labs sources at {} (lambdas/ is missing): set LABS_SOURCE_DIR to your checkout",
            dir.display()
        );
    }
    Ok(dir.canonicalize()?)
}

/// Separate from the workspace's own target directory, so a build started from inside
/// `cargo test` never waits on the lock the outer cargo holds.
fn target_dir() -> Result<PathBuf> {
    Ok(source_dir()?.join("target").join("lambda-build"))
}

fn install() -> Result<PathBuf> {
    let venv = emulator::venv()?;
    let bin = venv.join("bin/cargo-lambda");
    let marker = venv.join(format!(".cargo-lambda-{CARGO_LAMBDA_VERSION}-zig-{ZIG_VERSION}"));
    if !marker.exists() {
        emulator::pip_install(
            &[&format!("cargo-lambda=={CARGO_LAMBDA_VERSION}"), &format!("ziglang=={ZIG_VERSION}")],
            &bin,
            &format!("cargo-lambda {CARGO_LAMBDA_VERSION} and zig {ZIG_VERSION}"),
        )?;
        std::fs::File::create(&marker)?;
    }
    Ok(bin)
}

/// Builds `packages` (crates under `lambdas/`, one binary each, named like the crate) for
/// `provided.al2023` on x86_64 and returns their zips with the hash of each binary.
pub fn build(packages: &[String]) -> Result<HashMap<String, Artifact>> {
    if packages.is_empty() {
        return Ok(HashMap::new());
    }
    let cargo_lambda = install()?;
    let source = source_dir()?;
    let target = target_dir()?;
    // Parallel `labs up`s (tests, two terminals) would otherwise rewrite a zip while another
    // reads it: one build at a time, and the zips are read before the lock is let go.
    std::fs::create_dir_all(&target)?;
    let lock_path = target.join(".labs-build.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let lambda_dir = target.join("lambda");
    let bin_dir = cargo_lambda.parent().context("virtualenv has no bin directory")?.to_owned();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let spinner = crate::output::spinner(&format!("building {} with cargo-lambda", packages.join(", ")));
    let mut command = Command::new(&cargo_lambda);
    command
        .current_dir(&source)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .args(["lambda", "build", "--quiet", "--x86-64", "--output-format", "zip", "--lambda-dir"])
        .arg(&lambda_dir);
    for package in packages {
        command.args(["--package", package]);
    }
    let out = command.output().context("could not run cargo-lambda")?;
    spinner.finish_and_clear();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first_error = stderr.lines().find(|l| l.contains("error")).unwrap_or("see the output above");
        eprintln!("{stderr}");
        bail!("cargo-lambda could not build {}: {}", packages.join(", "), first_error.trim());
    }
    let mut artifacts = HashMap::new();
    for package in packages {
        let zip_path = lambda_dir.join(package).join("bootstrap.zip");
        let zip = std::fs::read(&zip_path).with_context(|| format!("cargo-lambda left no {}", zip_path.display()))?;
        let binary_path = target.join("x86_64-unknown-linux-gnu/debug").join(package);
        let binary = std::fs::read(&binary_path).with_context(|| format!("cannot read {}", binary_path.display()))?;
        let code_sha256 = format!("{:x}", Sha256::digest(&binary));
        artifacts.insert(package.clone(), Artifact { zip, code_sha256 });
    }
    Ok(artifacts)
}
