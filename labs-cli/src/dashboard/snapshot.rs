//! One reading of the target: every panel's figures at (nearly) one moment, as the page gets it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::examples_panel::{self, ExamplePanel, Lessons};
use super::messaging::{self, QueuePanel, TopicPanel};
use super::present::{self, Declared};
use super::streams::{StreamPanel, StreamWatch};
use crate::target::Target;
use crate::triggers::{self, MappingStatus};

/// Ticks between two reads of what exists (the engine's plan of every example): cheap panels
/// move every second, a new `labs up` shows within this many.
const PLAN_EVERY: u32 = 5;

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub target: String,
    pub prefix: String,
    pub taken_at_unix_millis: u128,
    /// Set when nothing is provisioned under the prefix: what to do instead.
    pub empty: Option<String>,
    pub examples: Vec<ExamplePanel>,
    pub streams: Vec<StreamPanel>,
    pub queues: Vec<QueuePanel>,
    pub topics: Vec<TopicPanel>,
    pub mappings: Vec<MappingStatus>,
    #[serde(flatten)]
    pub lessons: Lessons,
    /// What could not be read this time, one line each.
    pub errors: Vec<String>,
}

/// What the poller keeps between readings.
pub struct Gatherer {
    streams: StreamWatch,
    declared: Vec<Declared>,
    ticks_since_plan: u32,
    last: Option<Instant>,
}

impl Gatherer {
    pub fn new() -> Self {
        Self { streams: StreamWatch::default(), declared: Vec::new(), ticks_since_plan: PLAN_EVERY, last: None }
    }

    pub async fn gather(&mut self, target: &Target) -> Snapshot {
        let mut errors = Vec::new();
        if self.ticks_since_plan >= PLAN_EVERY {
            match present::read(target).await {
                Ok(declared) => {
                    self.declared = declared;
                    self.ticks_since_plan = 0;
                }
                Err(err) => errors.push(format!("what is provisioned: {err:#}")),
            }
        }
        self.ticks_since_plan += 1;
        let now = Instant::now();
        let elapsed = self.last.map_or(Duration::from_secs(1), |last| now - last);
        self.last = Some(now);

        let declared = &self.declared;
        let examples = examples_panel::examples(target, declared, &mut errors).await;
        let streams = self.streams.read(target, declared, elapsed, &mut errors).await;
        let (queues, topics) = messaging::read(target, declared, &mut errors).await;
        let stacks: Vec<_> =
            declared.iter().filter(|d| d.built && !d.present.is_empty()).map(|d| d.stack.clone()).collect();
        let mappings = triggers::status(target, &stacks).await.unwrap_or_else(|err| {
            errors.push(format!("stream mappings: {err:#}"));
            Vec::new()
        });
        let lessons = examples_panel::lessons(target, declared, &mut errors).await;
        let nothing = errors.is_empty() && declared.iter().all(|d| d.present.is_empty());
        Snapshot {
            target: target.kind.describe(),
            prefix: target.prefix.clone(),
            taken_at_unix_millis: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()),
            empty: nothing
                .then(|| format!("nothing provisioned under prefix {}: run `labs up example-1`", target.prefix)),
            examples,
            streams,
            queues,
            topics,
            mappings,
            lessons,
            errors,
        }
    }
}
