//! The one poller of a dashboard process: reads the target at most once a second and publishes
//! each reading, serialized once, to every tab through a watch channel (a slow tab only ever
//! misses intermediate readings; it never makes the poller read more).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::snapshot::Gatherer;
use crate::target::Target;

pub const INTERVAL: Duration = Duration::from_secs(1);

/// Runs until the process ends.
pub async fn run(target: &Target, readings: watch::Sender<Arc<str>>) {
    let mut gatherer = Gatherer::new();
    let mut ticks = tokio::time::interval(INTERVAL);
    // A reading slower than a second delays the next one instead of bunching them up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let snapshot = gatherer.gather(target).await;
        let json = serde_json::to_string(&snapshot)
            .unwrap_or_else(|err| format!(r#"{{"errors":["the reading is not serializable: {err}"]}}"#));
        readings.send_replace(json.into());
    }
}
