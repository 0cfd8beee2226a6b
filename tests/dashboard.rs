//! `labs dashboard` against the emulator with example 1 up: the JSON it serves moves while
//! records arrive and settles after; the page, in a real headless chromium driven through
//! WebDriver, shows the live numbers change, has no script errors, and leaves a screenshot at
//! target/dashboard.png. Needs `chromium` and `chromedriver` (Debian: chromium, chromium-driver;
//! tests/run.sh installs them).

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Teardown, labs, labs_bin, prefix};

/// A process that is killed when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `labs dashboard` on a free port and returns it with its URL (read from its stdout).
fn start_dashboard(prefix: &str) -> (Killed, String) {
    let mut child = Command::new(labs_bin())
        .args(["--prefix", prefix, "dashboard", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start labs dashboard");
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the dashboard's URL");
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in the dashboard's first line: {line:?}"))
        .to_owned();
    (child, url)
}

fn snapshot(url: &str) -> Value {
    let body = ureq::get(&format!("{url}api/snapshot"))
        .call()
        .expect("GET /api/snapshot")
        .body_mut()
        .read_to_string()
        .expect("read the snapshot");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("the snapshot is not JSON ({e}): {body}"))
}

/// Polls the snapshot until `accept` returns Some, or fails after `within`.
fn wait_for<T>(url: &str, within: Duration, what: &str, mut accept: impl FnMut(&Value) -> Option<T>) -> T {
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < within {
        last = snapshot(url);
        if let Some(found) = accept(&last) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("{what}: not seen within {within:?}; last snapshot: {last}");
}

fn stream<'a>(reading: &'a Value, name: &str) -> Option<&'a Value> {
    reading["streams"].as_array()?.iter().find(|s| s["name"] == name)
}

fn rates(stream: &Value) -> Vec<Option<f64>> {
    stream["shards"].as_array().map_or_else(Vec::new, |s| s.iter().map(|s| s["records_per_second"].as_f64()).collect())
}

fn produce(prefix: &str, stream: &str, count: &str) -> Killed {
    let child = Command::new(labs_bin())
        .args(["--prefix", prefix, "produce", "--stream", stream, "--count", count, "--rate", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start labs produce");
    Killed(child)
}

#[test]
fn the_data_endpoint_moves_while_records_arrive_then_settles_and_shows_the_last_verify() {
    let p = prefix("dash");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    let stream_name = format!("{p}-ex1-clicks");

    let (_dashboard, url) = start_dashboard(&p);
    let empty = wait_for(&url, Duration::from_secs(20), "the empty state", |r| r["empty"].as_str().map(str::to_owned));
    assert_eq!(empty, format!("nothing provisioned under prefix {p}: run `labs up example-1`"));

    labs(&p, &["up", "example-1"]).ok();
    // The dashboard notices the new stream by itself (it re-reads what exists every few seconds).
    let before = wait_for(&url, Duration::from_secs(20), "example 1's stream", |r| {
        let s = stream(r, &stream_name)?;
        // Rates exist from the second reading of a shard on.
        rates(s).iter().all(Option::is_some).then(|| s["records"].as_u64())?
    });
    assert_eq!(before, 0);
    let reading = snapshot(&url);
    assert!(reading["empty"].is_null(), "{reading}");
    let shards = stream(&reading, &stream_name).unwrap()["shards"].as_array().unwrap().clone();
    assert_eq!(shards.len(), 2, "{reading}");
    assert_eq!(shards[0]["starting_hash_key"], "0");
    assert_eq!(shards[1]["ending_hash_key"], "340282366920938463463374607431768211455");

    // Values move while `labs run` produces: some reading sees records arrive at a rate.
    labs(&p, &["run", "example-1", "--count", "300"]).ok();
    let mut produce = produce(&p, &stream_name, "400");
    let moving = wait_for(&url, Duration::from_secs(30), "a reading with records arriving", |r| {
        let s = stream(r, &stream_name)?;
        rates(s).iter().any(|rate| rate.is_some_and(|v| v > 0.0)).then(|| s["records"].as_u64()).flatten()
    });
    assert!(moving > 0 && moving <= 700, "{moving}");
    assert!(produce.0.wait().expect("wait for produce").success());

    // Then they settle: every record counted once, every rate back to zero.
    wait_for(&url, Duration::from_secs(30), "the settled stream", |r| {
        let s = stream(r, &stream_name)?;
        (s["records"] == 700 && rates(s).iter().all(|rate| *rate == Some(0.0))).then_some(())
    });

    // `labs verify` records its result on the target; the dashboard reads it back.
    labs(&p, &["verify", "example-1"]).ok();
    let verified = wait_for(&url, Duration::from_secs(15), "example 1's last verify", |r| {
        let example = r["examples"].as_array()?.iter().find(|e| e["example"] == "example-1")?;
        example["last_verify"]["outcome"].as_str().map(str::to_owned)
    });
    assert_eq!(verified, "passed");
}

/// Finds a program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_live_numbers_in_a_real_browser_without_script_errors() {
    let (Some(chromium), Some(driver)) = (which("chromium"), which("chromedriver")) else {
        panic!(
            "this test needs chromium and chromedriver on PATH: `apt-get install chromium chromium-driver` \
             (tests/run.sh installs them)"
        );
    };
    let p = prefix("dashweb");
    let _teardown = Teardown { prefix: &p, example: "example-1" };
    let stream_name = format!("{p}-ex1-clicks");
    let q = p.clone();
    tokio::task::spawn_blocking(move || labs(&q, &["up", "example-1"]).ok()).await.unwrap();
    let (_dashboard, url) = start_dashboard(&p);

    let port = free_port();
    let _driver = Killed(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let options = serde_json::json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".to_owned(), options);
    let webdriver = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let browser = loop {
        // chromedriver listens on localhost over plain HTTP: no TLS stack needed.
        let connected = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&webdriver)
            .await;
        match connected {
            Ok(browser) => break browser,
            // chromedriver takes a moment to listen.
            Err(err) if started.elapsed() < Duration::from_secs(20) => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => panic!("cannot start a chromium session through chromedriver: {err}"),
        }
    };

    browser.goto(&url).await.expect("load the page");
    let records_shown = || async {
        let script = "const n = document.querySelector('.stream-records'); return n ? n.textContent : null;";
        browser.execute(script, vec![]).await.expect("read the page").as_str().and_then(|t| t.parse::<u64>().ok())
    };
    let started = Instant::now();
    while records_shown().await != Some(0) {
        assert!(started.elapsed() < Duration::from_secs(30), "the page never showed the empty stream");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // While `labs produce` runs, the number on the page goes up without a reload.
    let produce = produce(&p, &stream_name, "500");
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.last() != Some(&500) {
        assert!(started.elapsed() < Duration::from_secs(40), "the page's numbers stopped at {seen:?}");
        if let Some(n) = records_shown().await
            && seen.last() != Some(&n)
        {
            seen.push(n);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen.len() >= 3, "the page should show the count rising in steps, saw {seen:?}");
    drop(produce);
    // One more reading, so the sparklines and the last rates are on the screenshot.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let errors = browser.execute("return window.labsErrors;", vec![]).await.expect("read the error hook");
    assert_eq!(errors, serde_json::json!([]), "the page logged errors");
    let png = browser.screenshot().await.expect("take a screenshot");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    browser.close().await.expect("close the browser");
}
