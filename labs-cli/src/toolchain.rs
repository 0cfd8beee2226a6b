//! Builds the Lambda functions with cargo-lambda (pinned, with its zig, in the private virtualenv
//! beside MiniStack) and hands the engine what it deploys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use labs_infra::Artifact;
use sha2::{Digest, Sha256};

use crate::emulator;

mod inputs;
mod progress;

pub const CARGO_LAMBDA_VERSION: &str = "1.9.2";
/// New zig releases have broken cargo-lambda builds before: pin it with cargo-lambda.
pub const ZIG_VERSION: &str = "0.17.1";

/// The cargo profile a function is built with. Its settings live in Cargo.toml, which is a build
/// input; its name is one too, and each profile keeps its own zips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Cargo's debug profile, for emulators: a first build costs less than half the CPU of an
    /// optimized one, and the zip never leaves the machine.
    Dev,
    /// The workspace's `[profile.lambda]`: optimized for size, stripped, no LTO. For AWS, where a
    /// zip is uploaded on every change and read at every cold start (zips under 4 MB).
    Lambda,
}

impl Profile {
    /// `Lambda` on AWS, `Dev` on an emulator or any other endpoint.
    pub fn for_aws(is_aws: bool) -> Self {
        if is_aws { Profile::Lambda } else { Profile::Dev }
    }

    fn name(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Lambda => "lambda",
        }
    }

    /// The folder cargo writes the profile's binaries to (`dev` is `debug` there).
    fn output_folder(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            Profile::Lambda => "lambda",
        }
    }
}

/// Where the built functions will run, which decides who links them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsOn {
    /// This machine: the embedded emulator starts each function as a local process.
    ThisMachine,
    /// Lambda's platform: AWS, or an endpoint that may run functions in `provided.al2023`
    /// containers, whose glibc may be older than this machine's.
    LambdaPlatform,
}

impl RunsOn {
    /// Only the embedded emulator runs functions on this machine.
    pub fn for_embedded_emulator(embedded: bool) -> Self {
        if embedded { RunsOn::ThisMachine } else { RunsOn::LambdaPlatform }
    }
}

/// Whether this `labs` runs where Lambda's `provided.al2023` x86_64 functions do: x86_64 Linux
/// with glibc (the platform `labs` itself was built for).
const HOST_IS_LAMBDA_PLATFORM: bool = cfg!(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"));

/// Whether cargo-lambda builds with plain cargo (`--compiler cargo`) instead of its default,
/// cargo-zigbuild. zig cross-links for Lambda's platform from any machine, against an old glibc,
/// but its first use on a machine also builds its C runtime libraries (about 16 of the 124
/// CPU-seconds of example 3's first debug build). A debug build of functions that run on this
/// machine, when it is Lambda's platform already (x86_64 Linux, glibc), needs none of that: cargo
/// and the host's linker. Its binary needs this machine's glibc symbol versions, so it is only
/// for functions that run here; builds for AWS or another endpoint keep zig.
fn skips_zig(profile: Profile, runs_on: RunsOn, host_is_lambda_platform: bool) -> bool {
    profile == Profile::Dev && runs_on == RunsOn::ThisMachine && host_is_lambda_platform
}

/// The Stream Labs source tree, whose `lambdas/` holds the functions an installed `labs` builds
/// (the stacks are compiled in): `LABS_SOURCE_DIR`, else the tree this binary was built from,
/// else the checkout the current directory is in.
pub fn source_dir() -> Result<PathBuf> {
    let cwd = std::env::current_dir().ok();
    find_source_dir(std::env::var_os("LABS_SOURCE_DIR").map(PathBuf::from), built_from(), cwd.as_deref())
}

fn built_from() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest)
}

/// A Stream Labs checkout, not just any folder with a `lambdas/`.
fn is_checkout(dir: &Path) -> bool {
    dir.join("lambdas/labs-core/Cargo.toml").is_file()
}

fn find_source_dir(explicit: Option<PathBuf>, built_from: &Path, cwd: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        if !is_checkout(&dir) {
            bail!("LABS_SOURCE_DIR={} is not a Stream Labs checkout (it has no lambdas/labs-core)", dir.display());
        }
        return Ok(dir.canonicalize()?);
    }
    let mut candidates = std::iter::once(built_from).chain(cwd.into_iter().flat_map(Path::ancestors));
    match candidates.find(|dir| is_checkout(dir)) {
        Some(dir) => Ok(dir.canonicalize()?),
        None => bail!(
            "cannot find the Stream Labs sources to build the Lambda functions ({} is gone): run labs inside your checkout, or set LABS_SOURCE_DIR to it",
            built_from.display()
        ),
    }
}

/// Separate from the workspace's own target directory, so a build started from inside
/// `cargo test` never waits on the lock the outer cargo holds.
fn target_dir() -> Result<PathBuf> {
    Ok(source_dir()?.join("target").join("lambda-build"))
}

/// cargo-lambda, and zig only for a build that links with it: the embedded emulator's builds never
/// do, and zig is about 400 MB installed.
fn install(with_zig: bool) -> Result<PathBuf> {
    let venv = emulator::venv()?;
    let bin = venv.join("bin/cargo-lambda");
    emulator::pip_install(&emulator::PipInstall {
        packages: &[&format!("cargo-lambda=={CARGO_LAMBDA_VERSION}")],
        what: &format!("cargo-lambda {CARGO_LAMBDA_VERSION}"),
        installs: &bin,
        marker: &venv.join(format!(".cargo-lambda-{CARGO_LAMBDA_VERSION}")),
        // Its one dependency is zig, unpinned: installed below, pinned, when a build links with it.
        no_deps: true,
    })?;
    if with_zig {
        emulator::pip_install(&emulator::PipInstall {
            packages: &[&format!("ziglang=={ZIG_VERSION}")],
            what: &format!("zig {ZIG_VERSION}"),
            // cargo-lambda finds this zig through the launcher the package installs.
            installs: &venv.join("bin/python-zig"),
            marker: &venv.join(format!(".ziglang-{ZIG_VERSION}")),
            no_deps: false,
        })?;
    }
    Ok(bin)
}

/// Builds `packages` (crates under `lambdas/`, one binary each, named like the crate) for
/// `provided.al2023` on x86_64 and returns their zips with the hash of each binary. A package
/// whose inputs are unchanged since its last build is not handed to the compiler at all.
pub fn build(packages: &[String], profile: Profile, runs_on: RunsOn) -> Result<HashMap<String, Artifact>> {
    if packages.is_empty() {
        return Ok(HashMap::new());
    }
    // Sources first: a missing checkout or crate is said before anything is installed.
    let source = source_dir()?;
    for crate_dir in packages.iter().map(|package| source.join("lambdas").join(package)) {
        if !crate_dir.join("src/main.rs").is_file() {
            bail!("{} is not a function crate: it has no src/main.rs", crate_dir.display());
        }
    }
    let cargo_lambda = install(!skips_zig(profile, runs_on, HOST_IS_LAMBDA_PLATFORM))?;
    let target = target_dir()?;
    // Parallel `labs up`s (tests, two terminals) would otherwise rewrite a zip while another
    // reads it: one build at a time, and the zips are read before the lock is let go.
    std::fs::create_dir_all(&target)?;
    let lock_path = target.join(".labs-build.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
    // Not `<target>/lambda`: cargo keeps the lambda profile's host-side output (build scripts) there.
    let lambda_dir = zips_dir(&target, profile);
    let tools = format!(
        "cargo-lambda {CARGO_LAMBDA_VERSION}, zig {ZIG_VERSION}, profile {}, zig skipped {}",
        profile.name(),
        skips_zig(profile, runs_on, HOST_IS_LAMBDA_PLATFORM)
    );
    let mut hashes = HashMap::new();
    let mut stale = Vec::new();
    for package in packages {
        let hash = inputs::hash(&source, package, &tools)?;
        let built = std::fs::read_to_string(fingerprint_path(&lambda_dir, package)).unwrap_or_default();
        let outputs_exist =
            lambda_dir.join(package).join("bootstrap.zip").exists() && binary_path(&target, profile, package).exists();
        if built.trim() != hash || !outputs_exist {
            stale.push(package.clone());
        }
        hashes.insert(package.clone(), hash);
    }
    if stale.is_empty() {
        crate::output::note(format!("{}: unchanged since the last build", packages.join(", ")));
    } else {
        compile(&cargo_lambda, &source, &target, &lambda_dir, profile, runs_on, &stale)?;
        for package in &stale {
            std::fs::write(fingerprint_path(&lambda_dir, package), &hashes[package])?;
        }
    }
    let mut artifacts = HashMap::new();
    for package in packages {
        let zip_path = lambda_dir.join(package).join("bootstrap.zip");
        let zip = std::fs::read(&zip_path).with_context(|| format!("cargo-lambda left no {}", zip_path.display()))?;
        let code_sha256 = code_hash(&target, &lambda_dir, profile, package, stale.contains(package))?;
        artifacts.insert(package.clone(), Artifact { zip, code_sha256 });
    }
    Ok(artifacts)
}

/// The hash of a package's binary, which tells the engine whether the deployed code differs.
/// Hashing a binary of megabytes takes seconds in a debug `labs`, so it is kept
/// beside the zip and computed again only after a build (or when the kept one is missing).
fn code_hash(target: &Path, lambda_dir: &Path, profile: Profile, package: &str, rebuilt: bool) -> Result<String> {
    let kept_path = lambda_dir.join(package).join(".labs-code-sha256");
    if !rebuilt
        && let Ok(kept) = std::fs::read_to_string(&kept_path)
        && kept.trim().len() == 64
    {
        return Ok(kept.trim().to_owned());
    }
    let binary_path = binary_path(target, profile, package);
    let binary = std::fs::read(&binary_path).with_context(|| format!("cannot read {}", binary_path.display()))?;
    let code_sha256 = format!("{:x}", Sha256::digest(&binary));
    std::fs::write(&kept_path, &code_sha256)?;
    Ok(code_sha256)
}

/// Where the hash of a package's inputs at its last successful build is kept.
fn fingerprint_path(lambda_dir: &Path, package: &str) -> PathBuf {
    lambda_dir.join(package).join(".labs-inputs")
}

/// Where cargo puts what it builds for Lambda's target with the lambda profile.
fn profile_dir(target: &Path, profile: Profile) -> PathBuf {
    target.join("x86_64-unknown-linux-gnu").join(profile.output_folder())
}

fn binary_path(target: &Path, profile: Profile, package: &str) -> PathBuf {
    profile_dir(target, profile).join(package)
}

/// Where a profile's zips are kept: `<target>/zips/<profile>/<package>/bootstrap.zip`.
pub fn zips_dir(target: &Path, profile: Profile) -> PathBuf {
    target.join("zips").join(profile.name())
}

/// Runs cargo-lambda once for `packages`, in one target directory, so what they share is compiled
/// once. A failure is one line: the first error, and where the whole compiler output was saved.
fn compile(
    cargo_lambda: &Path,
    source: &Path,
    target: &Path,
    lambda_dir: &Path,
    profile: Profile,
    runs_on: RunsOn,
    packages: &[String],
) -> Result<()> {
    let bin_dir = cargo_lambda.parent().context("virtualenv has no bin directory")?.to_owned();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let what = format!("building {} with cargo-lambda", packages.join(", "));
    // The spinner is drawn on terminals only: say once, everywhere, that this can take minutes.
    if !profile_dir(target, profile).exists() {
        crate::output::note(format!("{what}: a first build compiles every dependency and takes minutes"));
    }
    let mut command = Command::new(cargo_lambda);
    command
        .current_dir(source)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", target)
        .args(["lambda", "build", "--profile", profile.name(), "--x86-64", "--output-format", "zip", "--lambda-dir"])
        .arg(lambda_dir);
    if skips_zig(profile, runs_on, HOST_IS_LAMBDA_PLATFORM) {
        command.args(["--compiler", "cargo"]);
    }
    for package in packages {
        command.args(["--package", package]);
    }
    let out = progress::run(&mut command, &what)?;
    if !out.status.success() {
        let log_path = target.join("last-build.log");
        std::fs::write(&log_path, [out.stdout.as_slice(), out.stderr.as_slice()].concat())?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first_error = progress::first_error(&stderr);
        bail!("cargo-lambda could not build {}: {first_error} (full log: {})", packages.join(", "), log_path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder laid out like a checkout (only what `is_checkout` looks at), removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str, checkout: bool) -> Scratch {
            let dir = std::env::temp_dir().join(format!("labs-source-{}-{name}", std::process::id()));
            std::fs::create_dir_all(dir.join("deep/inside")).unwrap();
            if checkout {
                std::fs::create_dir_all(dir.join("lambdas/labs-core")).unwrap();
                std::fs::write(dir.join("lambdas/labs-core/Cargo.toml"), "").unwrap();
            }
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }

    #[test]
    fn the_tree_it_was_built_from_comes_first() {
        let built = Scratch::new("built", true);
        let elsewhere = Scratch::new("elsewhere", true);
        let found = find_source_dir(None, &built.0, Some(&elsewhere.0)).unwrap();
        assert_eq!(found, built.0.canonicalize().unwrap());
    }

    #[test]
    fn without_that_tree_the_checkout_around_the_current_directory() {
        let gone = std::env::temp_dir().join("labs-source-never-there");
        let checkout = Scratch::new("cwd", true);
        let found = find_source_dir(None, &gone, Some(&checkout.0.join("deep/inside"))).unwrap();
        assert_eq!(found, checkout.0.canonicalize().unwrap());
    }

    #[test]
    fn nowhere_says_what_it_needs_in_one_line() {
        let gone = std::env::temp_dir().join("labs-source-never-there");
        let plain = Scratch::new("plain", false);
        let error = find_source_dir(None, &gone, Some(&plain.0)).unwrap_err().to_string();
        assert!(error.contains("run labs inside your checkout, or set LABS_SOURCE_DIR"), "{error}");
        assert!(error.contains("labs-source-never-there") && !error.contains('\n'), "{error}");
    }

    #[test]
    fn a_wrong_labs_source_dir_is_named() {
        let built = Scratch::new("built-too", true);
        let plain = Scratch::new("not-a-checkout", false);
        let error = find_source_dir(Some(plain.0.clone()), &built.0, None).unwrap_err().to_string();
        assert!(error.starts_with("LABS_SOURCE_DIR=") && error.contains("not a Stream Labs checkout"), "{error}");
    }

    #[test]
    fn only_debug_builds_that_run_on_this_machine_skip_zig() {
        use RunsOn::{LambdaPlatform, ThisMachine};
        assert!(skips_zig(Profile::Dev, ThisMachine, true));
        assert!(!skips_zig(Profile::Dev, ThisMachine, false), "another host links for Lambda with zig");
        assert!(!skips_zig(Profile::Dev, LambdaPlatform, true), "an endpoint's containers may have an older glibc");
        assert!(!skips_zig(Profile::Lambda, ThisMachine, true));
        assert!(!skips_zig(Profile::Lambda, LambdaPlatform, true));
    }

    #[test]
    fn code_hash_is_kept_until_the_next_build() {
        let root = std::env::temp_dir().join(format!("labs-code-hash-{}", std::process::id()));
        let lambda_dir = root.join("lambda");
        std::fs::create_dir_all(lambda_dir.join("fun")).unwrap();
        let binary = binary_path(&root, Profile::Dev, "fun");
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        std::fs::write(&binary, b"first").unwrap();
        let first = code_hash(&root, &lambda_dir, Profile::Dev, "fun", true).unwrap();
        assert_eq!(first, format!("{:x}", Sha256::digest(b"first")));
        std::fs::write(&binary, b"second").unwrap();
        assert_eq!(
            code_hash(&root, &lambda_dir, Profile::Dev, "fun", false).unwrap(),
            first,
            "unchanged inputs: the kept hash"
        );
        let second = code_hash(&root, &lambda_dir, Profile::Dev, "fun", true).unwrap();
        assert_eq!(second, format!("{:x}", Sha256::digest(b"second")), "after a build: hashed again");
        std::fs::remove_dir_all(root).ok();
    }
}
