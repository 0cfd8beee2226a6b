//! `.github/workflows/ci.yml` cannot run here; this keeps it the same as what does: both jobs'
//! test step is the README's test command and `.ci/run`'s (the second in the container mode), on
//! ubuntu-latest, with what that command installs cached.

mod support;

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(path: &str) -> String {
    let file: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn workflow() -> Yaml {
    let mut docs = YamlLoader::load_from_str(&repo_file(".github/workflows/ci.yml")).expect("ci.yml is YAML");
    assert_eq!(docs.len(), 1, "ci.yml holds one document");
    docs.remove(0)
}

/// The first command of the README's "Running the tests" section.
fn readme_test_command() -> String {
    let readme = repo_file("README.md");
    let section = readme.split("\n## Running the tests\n").nth(1).expect("README has a 'Running the tests' section");
    let block = section.split("```sh\n").nth(1).expect("the section has a sh block");
    block.lines().next().expect("the block has a command").trim().to_owned()
}

/// The commands of `.ci/run`, without comments, `set` and `cd`.
fn ci_run_commands() -> Vec<String> {
    repo_file(".ci/run")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("set ") && !l.starts_with("cd "))
        .map(str::to_owned)
        .collect()
}

fn job<'a>(workflow: &'a Yaml, name: &str) -> &'a Yaml {
    let job = &workflow["jobs"][name];
    assert!(!job.is_badvalue(), "ci.yml has no job {name:?}");
    job
}

fn steps(job: &Yaml) -> &[Yaml] {
    job["steps"].as_vec().expect("a job has steps")
}

/// Every line the job's steps run, and every path its caches keep.
fn runs(job: &Yaml) -> Vec<&str> {
    steps(job).iter().filter_map(|s| s["run"].as_str()).flat_map(str::lines).collect()
}

fn cached_paths(job: &Yaml) -> Vec<&str> {
    steps(job)
        .iter()
        .filter(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/cache@")))
        .filter_map(|s| s["with"]["path"].as_str())
        .flat_map(str::lines)
        .map(str::trim)
        .collect()
}

#[test]
fn the_test_step_is_the_readme_command_and_ci_runs() {
    let command = readme_test_command();
    assert_eq!(ci_run_commands(), vec![command.clone()], ".ci/run runs something else than the README says");
    let workflow = workflow();
    let test = job(&workflow, "test");
    assert_eq!(test["runs-on"].as_str(), Some("ubuntu-latest"));
    assert_eq!(runs(test), vec![command.as_str()], "the test job's run steps");
    assert!(test["env"].is_badvalue(), "the test job runs the default mode");
    let container = job(&workflow, "container");
    assert_eq!(container["runs-on"].as_str(), Some("ubuntu-latest"));
    assert_eq!(runs(container), vec![command.as_str()], "the container job's run steps");
    let step = steps(container).iter().find(|s| s["run"].as_str().is_some()).expect("a run step");
    assert_eq!(step["env"]["LABS_TEST_TARGET"].as_str(), Some("container"), "the container job's mode");
}

#[test]
fn both_jobs_cache_cargo_and_labs_private_files() {
    let workflow = workflow();
    for name in ["test", "container"] {
        check_caches(name, &cached_paths(job(&workflow, name)));
    }
}

fn check_caches(job: &str, cached: &[&str]) {
    for path in ["~/.cargo/registry", "target"] {
        assert!(cached.contains(&path), "{job}: {path} is not cached: {cached:?}");
    }
    // Where `labs` keeps its virtualenv on a runner (home /home/runner, no LABS_HOME).
    let out = std::process::Command::new(support::labs_bin())
        .args(["emulator", "path"])
        .env("HOME", "/home/runner")
        .env_remove("LABS_HOME")
        .env_remove("XDG_DATA_HOME")
        .output()
        .expect("run labs");
    let home = support::finish(out).ok().stdout.trim().replace("/home/runner", "~");
    let venv = format!("{home}/venv");
    assert!(cached.contains(&venv.as_str()), "{job}: labs' virtualenv {venv} is not cached: {cached:?}");
    // Where it builds the Kafka broker (the slowest install: cargo builds it from source).
    let out = std::process::Command::new(support::labs_bin())
        .args(["kafka", "status", "--json"])
        .env("HOME", "/home/runner")
        .env_remove("LABS_HOME")
        .env_remove("XDG_DATA_HOME")
        .output()
        .expect("run labs");
    let status: serde_json::Value = support::finish(out).ok().json();
    let binary = status["binary"].as_str().expect("kafka status names the binary").replace("/home/runner", "~");
    let root = binary.trim_end_matches("/bin/tansu");
    assert!(cached.contains(&root), "{job}: the Kafka broker's folder {root} is not cached: {cached:?}");
}
