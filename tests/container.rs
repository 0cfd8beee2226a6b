//! The container test mode (`LABS_TEST_TARGET=container bash tests/run.sh`): the emulator as the
//! image a project's CI would run, `ministackorg/ministack` at the version labs pins, started
//! through testcontainers with host networking (so the Lambda processes MiniStack starts inside
//! it reach it on loopback), and removed when the test ends, pass or fail. `labs` drives it as
//! any endpoint (`--endpoint-url`): a Lambda built here is deployed into the container and runs
//! there, and an example goes up, runs, verifies and comes down.
//!
//! Built only with `--features labs-cli/container-tests`; needs a Docker engine and the image
//! (`tests/ministack-image.sh` builds it where no registry is reachable).

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Run, finish, labs_bin, prefix};
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

/// The image's name; its tag is the version labs pins (`MINISTACK_VERSION`).
const IMAGE: &str = "ministackorg/ministack";
const SERVICES: &str = "kinesis,sns,sqs,dynamodb,dynamodbstreams,lambda,iam,sts,logs";

fn pinned_version() -> String {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/emulator.rs"))
        .expect("labs-cli/src/emulator.rs");
    source
        .lines()
        .find_map(|l| l.strip_prefix("pub const MINISTACK_VERSION: &str = \"")?.strip_suffix("\";"))
        .expect("MINISTACK_VERSION in emulator.rs")
        .to_owned()
}

/// A loopback port nothing listens on now. With host networking no port is mapped: the container
/// listens on this one itself.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

fn labs_at(endpoint: &str, prefix: &str, args: &[&str]) -> Run {
    let out = Command::new(labs_bin())
        .args(["--endpoint-url", endpoint, "--prefix", prefix])
        .args(args)
        .output()
        .expect("run labs");
    finish(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_image_runs_a_lambda_and_an_example() {
    let port = free_port().to_string();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    // Dropped at the end of this function, also when an assertion below panics: the container is
    // stopped and removed then.
    let _container = GenericImage::new(IMAGE.to_owned(), pinned_version())
        .with_wait_for(WaitFor::message_on_either_std("Running on http://"))
        .with_network("host")
        .with_env_var("GATEWAY_PORT", &port)
        // Loopback only, as the embedded emulator.
        .with_env_var("BIND_HOST", "127.0.0.1")
        // Handed to the Lambda processes MiniStack starts inside the container.
        .with_env_var("AWS_ENDPOINT_URL", &endpoint)
        .with_env_var("SERVICES", SERVICES)
        .with_startup_timeout(Duration::from_secs(60))
        .start()
        .await
        .unwrap_or_else(|e| panic!("cannot start {IMAGE} (run tests/ministack-image.sh first?): {e}"));
    eprintln!("container ready on {endpoint} in {:.1} s", started.elapsed().as_secs_f64());

    // A Lambda built here, deployed into the container, invoked there, removed.
    let p = prefix("ctr");
    let report = labs_at(&endpoint, &p, &["doctor", "--json"]).ok().json();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["reply"]["function_name"], format!("{p}-probe").as_str(), "{report}");

    // An example against it, the way a learner runs one.
    let p = prefix("ctr1");
    labs_at(&endpoint, &p, &["up", "example-1"]).ok();
    let verified = labs_at(&endpoint, &p, &["run", "example-1", "--count", "200"]).code == 0
        && labs_at(&endpoint, &p, &["verify", "example-1"]).code == 0;
    labs_at(&endpoint, &p, &["down", "example-1"]).ok();
    assert!(verified, "example-1 did not run and verify against the container");
    eprintln!("container mode: {:.1} s in all", started.elapsed().as_secs_f64());
}
