//! Per Kinesis stream and shard: hash-key range, parent/child lineage, records and records per
//! second. On an emulator the poller reads each shard on from where it stopped last time (one
//! GetShardIterator + GetRecords per shard and tick); on AWS it never reads the lab's shards
//! (they share 5 reads per second with the lab's own consumers), so rates are "n/a" there.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Result;
use labs_infra::stack;
use serde::Serialize;

use super::present::Declared;
use crate::driver::kinesis::{self, Position, Shard};
use crate::target::Target;

/// Samples of records per second kept per shard for the sparklines (a minute at 1/s).
const HISTORY: usize = 60;

#[derive(Debug, Serialize)]
pub struct StreamPanel {
    pub name: String,
    pub example: String,
    /// Records in all shards (None where labs does not read the stream).
    pub records: Option<u64>,
    /// Why there are no rates, where there are none.
    pub rates_unavailable: Option<&'static str>,
    pub shards: Vec<ShardPanel>,
}

#[derive(Debug, Serialize)]
pub struct ShardPanel {
    #[serde(flatten)]
    pub shard: Shard,
    pub records: Option<u64>,
    pub records_per_second: Option<f64>,
    /// Oldest first.
    pub history: Vec<f64>,
}

/// What the poller remembers per shard between ticks.
#[derive(Default)]
struct ShardCount {
    /// Read at least once: later readings are rates.
    seen: bool,
    after: Option<String>,
    records: u64,
    history: VecDeque<f64>,
}

/// Counts every shard's records incrementally across ticks.
#[derive(Default)]
pub struct StreamWatch {
    shards: HashMap<(String, String), ShardCount>,
}

impl StreamWatch {
    /// Every declared stream that exists, `elapsed` after the previous reading.
    pub async fn read(
        &mut self,
        target: &Target,
        examples: &[Declared],
        elapsed: Duration,
        errors: &mut Vec<String>,
    ) -> Vec<StreamPanel> {
        let mut panels = Vec::new();
        for example in examples {
            for declared in &example.stack.kinesis_streams {
                if !example.has(target, &declared.name) {
                    continue;
                }
                let name = stack::full_name(&target.prefix, &declared.name);
                match self.read_stream(target, &name, elapsed).await {
                    Ok(shards) => panels.push(StreamPanel {
                        records: shards.iter().map(|s| s.records).sum(),
                        rates_unavailable: target.kind.is_aws().then_some(
                            "n/a on AWS: labs never reads the lab's shards (CloudWatch's IncomingRecords has the rate)",
                        ),
                        name,
                        example: example.id.to_string(),
                        shards,
                    }),
                    Err(err) => errors.push(format!("{name}: {err:#}")),
                }
            }
        }
        panels
    }

    async fn read_stream(&mut self, target: &Target, stream: &str, elapsed: Duration) -> Result<Vec<ShardPanel>> {
        let client = &target.clients.kinesis;
        let mut panels = Vec::new();
        for shard in kinesis::list_shards(client, stream).await? {
            if target.kind.is_aws() {
                panels.push(ShardPanel { shard, records: None, records_per_second: None, history: Vec::new() });
                continue;
            }
            let count = self.shards.entry((stream.to_owned(), shard.shard_id.clone())).or_default();
            let position = count.after.clone().map_or(Position::TrimHorizon, Position::AfterSequence);
            let first_reading = !count.seen;
            let new = kinesis::read_shard_to_tip(client, stream, &shard.shard_id, &position).await?;
            if let Some(last) = new.last() {
                count.after = Some(last.sequence_number.clone());
            }
            count.records += new.len() as u64;
            count.seen = true;
            // The first reading counts what was there before the dashboard started: not a rate.
            let rate = (!first_reading).then(|| new.len() as f64 / elapsed.as_secs_f64().max(0.001));
            count.history.push_back(rate.unwrap_or(0.0));
            while count.history.len() > HISTORY {
                count.history.pop_front();
            }
            panels.push(ShardPanel {
                shard,
                records: Some(count.records),
                records_per_second: rate,
                history: count.history.iter().copied().collect(),
            });
        }
        Ok(panels)
    }
}
