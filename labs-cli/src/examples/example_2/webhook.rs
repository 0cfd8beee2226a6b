//! Billing as a webhook (scenario `direct`): a small HTTP server inside `labs` that applies each
//! order posted to it, idempotently like billing's queue consumer, under its own consumer name
//! ([`WEBHOOK`]); and the producer's side, which posts and retries briefly, as webhook senders do.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use labs_core::order_messages::{Order, WEBHOOK, parse_order};
use shipping_worker::DynamoEffects;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The instance named in the effects table's `handled_by`.
const INSTANCE: &str = "webhook-1";
/// How often the producer tries one order before it gives up on it, and the pause between tries.
pub(super) const ATTEMPTS: u32 = 3;
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The webhook server: started, stopped (its port then refuses connections) and started again on
/// the same address.
pub(super) struct Webhook {
    address: SocketAddr,
    store: DynamoEffects,
    running: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
}

impl Webhook {
    /// Listens on 127.0.0.1, on a port the system picks.
    pub(super) async fn start(store: DynamoEffects) -> Result<Self> {
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("cannot listen for the webhook")?;
        let address = listener.local_addr().context("reading the webhook's address")?;
        let mut webhook = Self { address, store, running: None };
        webhook.serve(listener);
        Ok(webhook)
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}/orders", self.address)
    }

    /// Stops serving and closes the port: from now on a post is refused (connection refused).
    pub(super) async fn stop(&mut self) -> Result<()> {
        if let Some((shutdown, task)) = self.running.take() {
            let _ = shutdown.send(());
            task.await.context("the webhook server panicked")?.context("serving the webhook")?;
        }
        Ok(())
    }

    /// Listens again on the same address.
    pub(super) async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .with_context(|| format!("cannot listen on {} again for the webhook", self.address))?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new().route("/orders", post(receive)).with_state(self.store.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        self.running = Some((shutdown, tokio::spawn(server.into_future())));
    }
}

/// One posted order: applied (200), not an order (400), or not recorded (500, worth a retry).
async fn receive(State(store): State<DynamoEffects>, body: String) -> (StatusCode, String) {
    match parse_order(&body) {
        Err(problem) => (StatusCode::BAD_REQUEST, problem.to_string()),
        Ok(order) => match store.record_as(WEBHOOK, &order, INSTANCE).await {
            Ok(_) => (StatusCode::OK, "applied".to_owned()),
            Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        },
    }
}

/// What posting one order took.
#[derive(Debug, Clone)]
pub(super) struct Posted {
    pub(super) attempts: u32,
    /// The round trip of the try that succeeded, or why the last one failed.
    pub(super) outcome: std::result::Result<Duration, String>,
    /// How long the producer spent on this order, retries and pauses included.
    pub(super) busy: Duration,
}

/// The producer's client: a new connection per post, so a stopped server is refused at once
/// rather than found out on a pooled connection.
pub(super) fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .max_idle_connections(0)
        .build()
        .into()
}

/// Posts `order` to `url`, up to [`ATTEMPTS`] times [`RETRY_PAUSE`] apart; after that the producer
/// moves on and the order is lost.
pub(super) async fn post_order(agent: &ureq::Agent, url: &str, order: &Order) -> Posted {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (agent, url, body) = (agent.clone(), url.to_owned(), order.body());
        let tried = Instant::now();
        let answer = tokio::task::spawn_blocking(move || post_once(&agent, &url, &body))
            .await
            .unwrap_or_else(|err| Err(format!("the sender panicked: {err}")));
        let outcome = answer.map(|()| tried.elapsed());
        if outcome.is_ok() || attempts == ATTEMPTS {
            return Posted { attempts, outcome, busy: started.elapsed() };
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

fn post_once(agent: &ureq::Agent, url: &str, body: &str) -> std::result::Result<(), String> {
    let mut response =
        agent.post(url).header("Content-Type", "application/json").send(body).map_err(|err| match err {
            ureq::Error::Io(io) => io.kind().to_string(),
            other => other.to_string(),
        })?;
    if response.status().as_u16() == 200 {
        return Ok(());
    }
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Err(format!("HTTP {}: {text}", response.status()))
}
