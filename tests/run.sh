#!/usr/bin/env bash
# Runs every test on a fresh machine. Needs Rust and Python 3; installs the rest itself
# (MiniStack, cargo-lambda and zig, into labs' private virtualenv; the Kafka broker tansu, built
# with cargo into labs' home), starts the embedded emulator and broker on their own ports, and
# stops them (the emulator with every Lambda process it spawned) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# A port of its own, so a learner's emulator on 4566 is never touched.
export LABS_EMULATOR_PORT="${LABS_EMULATOR_PORT:-4599}"

# The dashboard's browser test drives Debian's chromium through chromedriver (WebDriver).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo_if_needed=""
  if [ "$(id -u)" != 0 ]; then sudo_if_needed="sudo"; fi
  $sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_if_needed apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi

# Formatting and lints first: cheap, and a failure here needs no emulator.
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings

cargo build --locked -p labs-cli
labs=target/debug/labs

started=no
# The Kafka labs' broker (tansu), on a port of its own too, so a learner's broker on 9192 (or their
# own Kafka on 9092) is never touched. LABS_KAFKA_BOOTSTRAP names another Kafka instead.
export LABS_KAFKA_PORT="${LABS_KAFKA_PORT:-9193}"
kafka_started=no
# A second emulator, on a port of its own, enforces IAM (MiniStack's AUTH=true): there each
# function's own calls are signed as its execution role (tests/least_privilege.rs).
iam_port="${LABS_IAM_EMULATOR_PORT:-4639}"
iam_started=no
# On exit, pass or fail: stop the emulators this script started, then say how long the whole
# run took (the suite must stay well under CI's hour). The exit status is kept.
finish() {
  status=$?
  if [ "$started" = yes ]; then
    "$labs" emulator down || true
  fi
  if [ "$iam_started" = yes ]; then
    LABS_EMULATOR_PORT="$iam_port" "$labs" emulator down || true
  fi
  if [ "$kafka_started" = yes ]; then
    "$labs" kafka down || true
  fi
  outcome=passed
  [ "$status" -eq 0 ] || outcome="failed (exit $status)"
  echo "tests/run.sh: $outcome, wall time $((SECONDS / 60)) min $((SECONDS % 60)) s" >&2
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  if ! "$labs" emulator status --json | grep -q '"healthy": true'; then
    started=yes
    "$labs" emulator up
  fi
  endpoint="http://127.0.0.1:${LABS_EMULATOR_PORT}"
else
  endpoint="$AWS_ENDPOINT_URL"
fi
if ! LABS_EMULATOR_PORT="$iam_port" "$labs" emulator status --json | grep -q '"healthy": true'; then
  iam_started=yes
  env -u AWS_ENDPOINT_URL AUTH=true LABS_EMULATOR_PORT="$iam_port" "$labs" emulator up
fi
export LABS_IAM_TEST_ENDPOINT="http://127.0.0.1:${iam_port}"

# The Kafka broker: built once with cargo into labs' home (about 15 minutes on 2 cores; CI caches
# that folder, README.md "Running the tests"), then started in well under a second.
if [ -z "${LABS_KAFKA_BOOTSTRAP:-}" ]; then
  if ! "$labs" kafka status --json | grep -q '"healthy": true'; then
    kafka_started=yes
    "$labs" kafka up
  fi
  export KAFKA_TEST_BOOTSTRAP="127.0.0.1:${LABS_KAFKA_PORT}"
else
  export KAFKA_TEST_BOOTSTRAP="$LABS_KAFKA_BOOTSTRAP"
fi

# Build every Lambda once up front, so tests that deploy functions do not each wait for the
# compiler. First the smallest as for AWS, linked by zig (which this installs): tests/cargo_lambda.rs
# builds it the way cargo-lambda does by default, and finds it done. Then every function as the
# embedded emulator runs them (host-linked, no zig), which is what the zips are left as.
env -u AWS_ENDPOINT_URL "$labs" --aws build --package pipeline-probe
"$labs" build
# The stream-trigger runner's own tests deploy a probe function no example declares, and
# tests/arrival_windows.rs example 6's arrival-windows function.
"$labs" build --package trigger-probe --package arrival-windows

# The functions' DynamoDB store tests and the engine's ownership tests talk to the same emulator.
export CDC_INDEXER_TEST_ENDPOINT="$endpoint"
export EXACTLY_ONCE_COUNTER_TEST_ENDPOINT="$endpoint"
export LEDGER_TEST_ENDPOINT="$endpoint"
export LABS_INFRA_TEST_ENDPOINT="$endpoint"
export LABS_TRIGGERS_TEST_ENDPOINT="$endpoint"
export EVENT_TIME_WINDOWS_TEST_ENDPOINT="$endpoint"
export ARRIVAL_WINDOWS_TEST_ENDPOINT="$endpoint"
export STREAM_JOINS_TEST_ENDPOINT="$endpoint"
cargo test --locked --workspace -- --include-ignored

# Opt-in (LABS_TEST_TARGET=container): the emulator as the container image a project's CI would
# run, started by the test through testcontainers and removed after it; needs a Docker engine.
# Adds the image build once (or a pull), one compile of the Docker client, and seconds a run
# (README.md, "Three ways to run the tests").
if [ "${LABS_TEST_TARGET:-}" = container ]; then
  bash tests/ministack-image.sh
  cargo test --locked -p labs-cli --features container-tests --test container
fi
