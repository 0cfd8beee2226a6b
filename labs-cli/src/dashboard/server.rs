//! The HTTP side: the page and its script (compiled in), the latest reading as JSON
//! (`/api/snapshot`), and every new reading as server-sent events (`/api/events`). Listens on
//! 127.0.0.1 only.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures::Stream;
use tokio::sync::watch;

use super::poller;
use crate::target::{Target, TargetChoice};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");

/// What the page gets before the first reading is done.
const PENDING: &str = r#"{"pending":true}"#;

type Readings = watch::Receiver<Arc<str>>;

/// `labs dashboard`: serves until interrupted.
pub async fn serve(choice: &TargetChoice, port: u16) -> Result<()> {
    // Only looks: a stopped embedded emulator is reported on the page, not started.
    let target = Target::resolve(choice, false).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} (pick another with --port)"))?;
    let (sender, readings) = watch::channel(Arc::<str>::from(PENDING));
    let app = Router::new()
        .route("/", get(Html(PAGE)))
        .route("/app.js", get(([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)))
        .route("/api/snapshot", get(snapshot))
        .route("/api/events", get(events))
        .with_state(readings);
    // The URL is the command's result: on stdout, flushed, whatever --json says. With --port 0
    // the system picks a free port; the URL names the one it picked.
    let address = listener.local_addr().context("reading the address the dashboard listens on")?;
    println!("labs dashboard: http://{address}/ (Ctrl-C stops it)");
    std::io::Write::flush(&mut std::io::stdout())?;
    tokio::select! {
        served = axum::serve(listener, app) => served.context("serving the dashboard")?,
        () = poller::run(&target, sender) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

async fn snapshot(State(readings): State<Readings>) -> impl IntoResponse {
    let latest = readings.borrow().clone();
    ([(header::CONTENT_TYPE, "application/json")], latest.to_string())
}

async fn events(State(readings): State<Readings>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // The latest reading at once, then each new one; a tab that falls behind skips to the newest.
    let stream = futures::stream::unfold((readings, true), |(mut readings, first)| async move {
        if !first && readings.changed().await.is_err() {
            return None;
        }
        let data = readings.borrow_and_update().clone();
        Some((Ok(Event::default().data(&*data)), (readings, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
