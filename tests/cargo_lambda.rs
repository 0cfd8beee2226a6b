//! A Lambda crate deployed without `labs`: `cargo lambda build` and `cargo lambda deploy` on the
//! crate alone (its `[package.metadata.lambda]` supplies the rest), to the test emulator, with a
//! role the test made; then `cargo lambda invoke --remote`, then everything removed.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use labs_infra::stack;
use support::prefix;

/// The smallest function, deployed by the `probe` stack.
const PACKAGE: &str = "pipeline-probe";
const STACK: &str = "probe";

const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtualenv's `bin` where `labs` installed cargo-lambda and zig (`tests/run.sh` installs them).
fn venv_bin() -> PathBuf {
    let home = support::labs_offline(&["emulator", "path"]).ok().stdout;
    PathBuf::from(home.trim()).join("venv/bin")
}

/// cargo-lambda with its zig first on PATH and the emulator's dummy credentials.
fn cargo_lambda(args: &[&str]) -> Result<String> {
    let bin = venv_bin();
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let out = Command::new(bin.join("cargo-lambda"))
        .arg("lambda")
        .args(args)
        .current_dir(source_dir())
        .env("PATH", path)
        // labs' own build directory: the build is already there (`labs build`), so this takes a second.
        .env("CARGO_TARGET_DIR", source_dir().join("target/lambda-build"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .output()
        .context("cannot run cargo-lambda (tests/run.sh installs it)")?;
    let run = support::finish(out);
    if run.code != 0 {
        bail!("cargo lambda {} failed:\n{}\n{}", args.join(" "), run.stdout, run.stderr);
    }
    Ok(run.stdout)
}

/// One build at a time in labs' build directory, as `labs build` does (`toolchain.rs`).
fn build_lock() -> Result<std::fs::File> {
    let dir = source_dir().join("target/lambda-build");
    std::fs::create_dir_all(&dir)?;
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".labs-build.lock"))?;
    lock.lock()?;
    Ok(lock)
}

fn sorted(map: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    map.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

/// Build, deploy, check the configuration, invoke. Errors instead of asserts, so the caller
/// removes what was made whatever happens here.
async fn deploy_and_invoke(
    iam: &aws_sdk_iam::Client,
    lambda: &aws_sdk_lambda::Client,
    role: &str,
    function: &str,
    lambda_dir: &Path,
) -> Result<()> {
    let endpoint = support::endpoint();
    let role_arn = iam
        .create_role()
        .role_name(role)
        .assume_role_policy_document(TRUST_POLICY)
        .send()
        .await
        .context("CreateRole")?
        .role
        .context("CreateRole returned no role")?
        .arn;

    {
        let _lock = build_lock()?;
        // No --x86-64 / --output-format: the crate's build metadata says x86_64 and zip. The
        // debug profile, as `labs build` builds for emulators, so its dependencies are reused.
        cargo_lambda(&["build", "--quiet", "--package", PACKAGE, "--lambda-dir", &lambda_dir.to_string_lossy()])?;
    }
    let zip = lambda_dir.join(PACKAGE).join("bootstrap.zip");
    ensure!(zip.is_file(), "cargo lambda build made no {} (is the build metadata read?)", zip.display());

    // No --memory / --timeout / --env-var / --tag: the crate's deploy metadata gives them.
    cargo_lambda(&[
        "deploy",
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--iam-role",
        &role_arn,
        "--lambda-dir",
        &lambda_dir.to_string_lossy(),
        "--binary-name",
        PACKAGE,
        function,
    ])?;

    let stack = stack::load(STACK)?;
    let declared = stack.functions.iter().find(|f| f.package == PACKAGE).context("the probe stack's function")?;
    let vars = labs_infra::Vars {
        prefix: labs_infra::DEFAULT_PREFIX.to_owned(),
        region: String::new(),
        account: String::new(),
        partition: String::new(),
    };
    let deployed = lambda.get_function().function_name(function).send().await.context("GetFunction")?;
    let config = deployed.configuration.context("GetFunction returned no configuration")?;
    ensure!(config.memory_size == Some(declared.memory_mb), "memory {:?}", config.memory_size);
    ensure!(config.timeout == Some(declared.timeout_seconds), "timeout {:?}", config.timeout);
    ensure!(config.role.as_deref() == Some(role_arn.as_str()), "role {:?}", config.role);
    let env = sorted(config.environment.as_ref().and_then(|e| e.variables.as_ref()));
    ensure!(env == declared.deployed_environment(&vars, STACK), "environment {env:?}");
    let function_tags = sorted(deployed.tags.as_ref());
    ensure!(function_tags == labs_infra::tags(STACK, labs_infra::DEFAULT_PREFIX), "tags {function_tags:?}");

    let reply = cargo_lambda(&[
        "invoke",
        "--remote",
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--output-format",
        "json",
        "--data-ascii",
        r#"{"from":"cargo lambda invoke"}"#,
        function,
    ])?;
    let reply: serde_json::Value = serde_json::from_str(&reply).with_context(|| format!("reply {reply}"))?;
    ensure!(reply["echo"]["from"] == "cargo lambda invoke", "reply {reply}");
    ensure!(reply["function_name"] == function, "reply {reply}");
    ensure!(reply["labs_example"] == STACK, "reply {reply}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cargo_lambda_deploys_a_crate_alone_with_its_metadata() {
    let p = prefix("cl");
    let function = format!("{p}-probe");
    let role = format!("{p}-probe");
    let lambda_dir = std::env::temp_dir().join(format!("labs-{p}"));
    let config = support::sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    let lambda = aws_sdk_lambda::Client::new(&config);

    let outcome = deploy_and_invoke(&iam, &lambda, &role, &function, &lambda_dir).await;

    // Removed whatever happened above; a removal that fails is a failure too.
    let removed_function = lambda.delete_function().function_name(&function).send().await;
    let removed_role = iam.delete_role().role_name(&role).send().await;
    std::fs::remove_dir_all(&lambda_dir).ok();
    outcome.unwrap();
    removed_function.expect("DeleteFunction");
    removed_role.expect("DeleteRole");
    let gone = lambda.get_function().function_name(&function).send().await;
    assert!(gone.is_err(), "{function} is still there");
}
