//! Every Lambda crate carries, in `[package.metadata.lambda]`, what its stack deploys, so
//! `cargo lambda build`, `deploy` and `watch` work on the crate alone. This checks the two
//! against each other: a change to one without the other fails here, with the block to paste.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use labs_infra::stack::{self, Function, Stack, Vars};
use labs_infra::{DEFAULT_PREFIX, TAG_EXAMPLE};
use serde::Deserialize;

/// `[package.metadata.lambda]`, only the keys the stacks decide; an unknown key is an error, so a
/// misspelt one (which cargo-lambda would ignore) is caught.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LambdaMetadata {
    build: BuildMetadata,
    deploy: DeployMetadata,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct BuildMetadata {
    x86_64: bool,
    output_format: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct DeployMetadata {
    memory: i32,
    timeout: i32,
    #[serde(default)]
    env: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Manifest {
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    #[serde(default)]
    metadata: Option<PackageMetadata>,
}

#[derive(Deserialize)]
struct PackageMetadata {
    lambda: Option<LambdaMetadata>,
}

fn lambdas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lambdas")
}

/// The crates under `lambdas/` that build a function (those with a `src/main.rs`; `labs-core`
/// is a library only), as (package name, manifest path).
fn lambda_crates() -> Vec<(String, PathBuf)> {
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(lambdas_dir()).expect("lambdas/ is readable") {
        let dir = entry.expect("lambdas/ entry").path();
        if dir.join("src/main.rs").is_file() {
            let manifest = dir.join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).expect("a Lambda crate has a Cargo.toml");
            let parsed: Manifest = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
            crates.push((parsed.package.name, manifest));
        }
    }
    crates.sort();
    crates
}

fn read_metadata(manifest: &Path) -> Result<LambdaMetadata, String> {
    let text = std::fs::read_to_string(manifest).map_err(|e| e.to_string())?;
    let parsed: Manifest = toml::from_str(&text).map_err(|e| e.message().to_owned())?;
    parsed
        .package
        .metadata
        .and_then(|m| m.lambda)
        .ok_or_else(|| "has no [package.metadata.lambda.build] and [package.metadata.lambda.deploy]".to_owned())
}

/// What the metadata must say for `function` of `stack`, deployed under the default prefix.
fn expected(stack: &Stack, function: &Function) -> Result<(BuildMetadata, DeployMetadata), String> {
    if let Some((key, value)) = function.environment.iter().find(|(_, v)| v.contains("${") && !only_prefix(v)) {
        return Err(format!(
            "{} sets {key} = {value:?}: only ${{prefix}} can be written into crate metadata",
            function.name
        ));
    }
    // The account, region and partition never reach the environment (checked above).
    let vars = Vars {
        prefix: DEFAULT_PREFIX.to_owned(),
        region: String::new(),
        account: String::new(),
        partition: String::new(),
    };
    // What the engine creates (`infra/src/lambda.rs`: x86_64, a zip) and labs' toolchain builds
    // (`cargo lambda build --x86-64 --output-format zip`).
    let build = BuildMetadata { x86_64: true, output_format: "zip".to_owned() };
    let deploy = DeployMetadata {
        memory: function.memory_mb,
        timeout: function.timeout_seconds,
        env: function.deployed_environment(&vars, &stack.example),
        tags: labs_infra::tags(&stack.example, DEFAULT_PREFIX),
    };
    Ok((build, deploy))
}

fn only_prefix(value: &str) -> bool {
    !value.replace("${prefix}", "").contains("${")
}

/// The block a crate's Cargo.toml should carry, to paste.
fn render(build: &BuildMetadata, deploy: &DeployMetadata) -> String {
    let table = |map: &BTreeMap<String, String>| {
        let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k:?} = {v:?}")).collect();
        format!("{{ {} }}", pairs.join(", "))
    };
    format!(
        "[package.metadata.lambda.build]\nx86_64 = {}\noutput_format = {:?}\n\n\
         [package.metadata.lambda.deploy]\nmemory = {}\ntimeout = {}\nenv = {}\ntags = {}\n",
        build.x86_64,
        build.output_format,
        deploy.memory,
        deploy.timeout,
        table(&deploy.env),
        table(&deploy.tags)
    )
}

/// Checks one crate: its metadata names a stack (`tags."labs:example"`) that deploys it once,
/// and says what that stack deploys.
fn check_crate(package: &str, manifest: &Path) -> Result<(), String> {
    let metadata = read_metadata(manifest)?;
    let example = metadata
        .deploy
        .tags
        .get(TAG_EXAMPLE)
        .ok_or_else(|| format!("its deploy tags name no stack ({TAG_EXAMPLE:?} = \"<stack>\")"))?;
    let stack = stack::load(example).map_err(|e| e.to_string())?;
    let functions: Vec<&Function> = stack.functions.iter().filter(|f| f.package == package).collect();
    let Some(first) = functions.first() else {
        return Err(format!("infra/stacks/{example}.toml does not deploy it"));
    };
    // A crate deployed as several functions (example 8's joins, told apart by their environment)
    // carries one of them: the one `cargo lambda deploy` gives a learner to start from.
    for function in &functions {
        let (build, deploy) = expected(&stack, function)?;
        if metadata.build == build && metadata.deploy == deploy {
            return Ok(());
        }
    }
    let (build, deploy) = expected(&stack, first)?;
    Err(format!(
        "differs from infra/stacks/{example}.toml (function {}); it should read:\n{}",
        first.name,
        render(&build, &deploy)
    ))
}

#[test]
fn every_lambda_crate_carries_what_its_stack_deploys() {
    let crates = lambda_crates();
    assert!(crates.len() >= 2, "found too few Lambda crates under {}", lambdas_dir().display());
    let failures: Vec<String> = crates
        .iter()
        .filter_map(|(package, manifest)| {
            check_crate(package, manifest).err().map(|e| format!("lambdas/{package}/Cargo.toml {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn every_package_a_stack_deploys_is_a_lambda_crate() {
    let crates: Vec<String> = lambda_crates().into_iter().map(|(package, _)| package).collect();
    for name in stack::declared() {
        let stack = stack::load(name).unwrap_or_else(|e| panic!("{e}"));
        for function in &stack.functions {
            assert!(
                crates.contains(&function.package),
                "{name}: function {} deploys {}, which is no crate under lambdas/ with a src/main.rs",
                function.name,
                function.package
            );
        }
    }
}

#[test]
fn the_block_a_failure_suggests_is_what_the_check_wants() {
    // A drift's message gives the block to paste: pasted, it must pass.
    let stack = stack::load("example-4").expect("example-4 is declared");
    let function = &stack.functions[0];
    let (build, deploy) = expected(&stack, function).expect("expected metadata");
    let pasted: LambdaMetadata = toml::from_str(&render(&build, &deploy).replace("[package.metadata.lambda.", "["))
        .expect("the suggested block parses");
    assert_eq!((pasted.build, pasted.deploy), (build, deploy));
}
