//! Bad input gets one clear error line and a non-zero exit, never a panic.

mod support;

use support::{labs, labs_offline, prefix};

#[test]
fn unknown_example() {
    let run = labs_offline(&["up", "example-9"]).fails();
    assert!(run.stderr.contains("unknown example 'example-9'"), "{}", run.stderr);
}

#[test]
fn bad_flag() {
    let run = labs_offline(&["run", "example-1", "--no-such-flag"]).fails();
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);
}

#[test]
fn bad_prefix() {
    let run = labs_offline(&["--prefix", "Bad_Prefix", "list"]).fails();
    assert!(run.stderr.contains("lowercase"), "{}", run.stderr);
}

#[test]
fn unreachable_endpoint() {
    let run = labs_offline(&["--endpoint-url", "http://127.0.0.1:9", "status"]).fails();
    assert!(run.error_line().contains("cannot reach http://127.0.0.1:9"));
}

#[test]
fn missing_python() {
    // A fresh LABS_HOME and a PATH without Python: the emulator cannot be installed.
    let home = std::env::temp_dir().join(format!("labs-no-python-{}", std::process::id()));
    let out = std::process::Command::new(support::labs_bin())
        .args(["emulator", "up"])
        .env("LABS_HOME", &home)
        .env("LABS_EMULATOR_PORT", "4598")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let run = support::finish(out).fails();
    assert!(run.error_line().contains("Python 3 is needed"), "{}", run.stderr);
    std::fs::remove_dir_all(home).ok();
}

#[test]
fn stream_that_does_not_exist() {
    let p = prefix("nostream");
    let run = labs(&p, &["consume", "--stream", &format!("{p}-nothing")]).fails();
    assert!(run.error_line().contains("does not exist"));
    let run = labs(&p, &["verify", "example-1"]).fails();
    assert!(run.error_line().contains("labs up example-1"));
}

#[test]
fn list_shows_the_eight_examples_and_the_kafka_labs_as_json_all_built() {
    let run = labs_offline(&["list", "--json"]).ok();
    let examples = run.json();
    let ids: Vec<&str> = examples.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: Vec<String> =
        (1..=8).map(|n| format!("example-{n}")).chain((1..=2).map(|n| format!("kafka-{n}"))).collect();
    assert_eq!(ids, expected, "{examples}");
    assert!(examples.as_array().unwrap().iter().all(|e| e["built"] == true), "{examples}");
}

/// Runs `labs` with its own LABS_HOME and emulator port, offline.
fn labs_on_port(home: &std::path::Path, port: u16, args: &[&str]) -> support::Run {
    let out = std::process::Command::new(support::labs_bin())
        .args(args)
        .env("LABS_HOME", home)
        .env("LABS_EMULATOR_PORT", port.to_string())
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    support::finish(out)
}

fn scratch_home(name: &str) -> std::path::PathBuf {
    let home = std::env::temp_dir().join(format!("labs-{name}-{}", std::process::id()));
    std::fs::create_dir_all(home.join("run")).unwrap();
    home
}

#[test]
fn a_stale_pid_file_never_signals_another_process() {
    // The pid file names a live process that is not the emulator (its pid was reused).
    let home = scratch_home("stale-pid");
    let mut bystander = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(home.join("run/ministack-4597.pid"), bystander.id().to_string()).unwrap();
    let run = labs_on_port(&home, 4597, &["emulator", "down"]).ok();
    assert!(run.stdout.contains("no emulator started by labs"), "{}", run.stdout);
    assert!(bystander.try_wait().unwrap().is_none(), "labs signalled a process it did not start");
    assert!(!home.join("run/ministack-4597.pid").exists(), "the stale pid file is left behind");
    bystander.kill().ok();
    std::fs::remove_dir_all(home).ok();
}

#[test]
fn another_server_on_the_port_is_named_not_taken_for_ministack() {
    use std::io::{Read, Write};
    // A LocalStack-compatible health check, and nothing else.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 2048];
            let n = stream.read(&mut request).unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]);
            let (status, body) = if request.starts_with("GET /_localstack/health ") {
                ("200 OK", r#"{"services": {"kinesis": "running"}, "version": "4.0.0"}"#)
            } else {
                ("404 Not Found", "{}")
            };
            let reply =
                format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            stream.write_all(reply.as_bytes()).ok();
        }
    });
    let home = scratch_home("other-server");
    let run = labs_on_port(&home, port, &["emulator", "up"]).fails();
    let error = run.error_line();
    assert!(error.contains("a LocalStack-compatible server (not MiniStack)"), "{error}");
    assert!(error.contains("--endpoint-url"), "{error}");
    let run = labs_on_port(&home, port, &["emulator", "status", "--json"]).ok();
    assert_eq!(run.json()["server"]["kind"], "local-stack-compatible", "{}", run.stdout);
    assert_eq!(run.json()["started_by_labs"], false);
    std::fs::remove_dir_all(home).ok();
}

#[test]
fn aws_with_an_exported_endpoint_names_the_variable() {
    let out = std::process::Command::new(support::labs_bin())
        .args(["--aws", "status"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let run = support::finish(out).fails();
    let error = run.error_line();
    assert!(error.contains("AWS_ENDPOINT_URL=http://127.0.0.1:9"), "{error}");
    assert!(!error.contains("--endpoint-url"), "it blames a flag never given: {error}");
}

#[test]
fn consume_into_a_closed_pipe_and_follow_with_a_limit() {
    use std::io::{BufRead, BufReader};
    let p = prefix("pipe");
    let _teardown = support::Teardown { prefix: &p, example: "example-1" };
    labs(&p, &["up", "example-1"]).ok();
    let stream = format!("{p}-ex1-clicks");
    labs(&p, &["produce", "--stream", &stream, "--count", "1000", "--seed", "7"]).ok();

    // `labs consume | head -1`: the reader goes away after one line, long before the ~250 KB of
    // output is written (more than a pipe buffers), so the writes after it fail with EPIPE.
    let mut consumer = std::process::Command::new(support::labs_bin())
        .args(["--prefix", &p, "consume", "--stream", &stream])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(consumer.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("key="), "{first}");
    let out = consumer.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("error") && !stderr.contains("Broken pipe"), "{stderr}");

    // --follow --limit N: N records in all across both shards, then it stops by itself.
    let run = labs(&p, &["consume", "--stream", &stream, "--follow", "--limit", "5"]).ok();
    assert_eq!(run.stdout.lines().count(), 5, "{}", run.stdout);
}

#[test]
fn sources_not_found_from_another_directory() {
    // An installed `labs` run anywhere, told to build from a folder that is no checkout.
    let out = std::process::Command::new(support::labs_bin())
        .args(["build", "example-4"])
        .current_dir(std::env::temp_dir())
        .env("LABS_SOURCE_DIR", "/nonexistent")
        .output()
        .unwrap();
    let run = support::finish(out).fails();
    assert!(run.error_line().contains("LABS_SOURCE_DIR=/nonexistent is not a Stream Labs checkout"), "{}", run.stderr);
}
