//! What every scenario shares: the resources' names and the function's settings (read from the
//! stack declaration), the tables read back, and playing a part into the stream: readings at
//! their (sped-up) send times, then end-of-input on every shard, then, once every shard's row
//! shows it, one heartbeat per shard, so the last windows close.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrival_windows::ArrivalRow;
use event_time_windows::{LateRow, Settings, ShardRow, WindowRow};
use labs_core::partition;
use labs_core::time::readings::StreamRecord;
use labs_core::time::{Millis, NO_WATERMARK};
use labs_infra::stack;

use super::part::{self, Part};
use super::watch::Watch;
use super::{ARRIVAL_WINDOWS, EVENT_WINDOWS, LATE, READINGS_STREAM, WATERMARKS, WINDOWS};
use crate::driver::dynamodb as db;
use crate::driver::kinesis::{self, Incoming, Outgoing, Position, PutOptions};
use crate::output::{self, Output};
use crate::target::Target;

/// How long a part may take to be processed once it is sent.
const CATCH_UP: Duration = Duration::from_secs(180);
/// How often the tables are read while a part plays.
const POLL: Duration = Duration::from_millis(700);

pub(super) struct Lab<'a> {
    pub target: &'a Target,
    pub out: Output,
    pub stream: String,
    pub watermarks: String,
    pub windows: String,
    pub late: String,
    /// The event-time function's settings, as the stack declares its environment.
    pub settings: Settings,
    /// The arrival-time mapping's tumbling window, when the declaration has one.
    pub arrival_window_seconds: Option<i32>,
}

/// Everything the tables hold at one moment.
#[derive(Debug, Clone, Default)]
pub(super) struct Tables {
    pub shards: Vec<ShardRow>,
    pub windows: Vec<WindowRow>,
    pub arrival: Vec<ArrivalRow>,
    pub late: Vec<LateRow>,
    /// Rows that fit no shape, by key: a verifier reports them.
    pub odd: Vec<String>,
}

impl Tables {
    /// The overall watermark the furthest shard's windows have reached.
    pub fn overall_watermark(&self) -> Millis {
        self.shards.iter().map(|r| r.overall_watermark).max().unwrap_or(NO_WATERMARK)
    }
}

/// The settings the declared function reads from its environment.
pub(super) fn declared_settings() -> Result<(Settings, Option<i32>)> {
    let declared = stack::load("example-6")?;
    let function = declared
        .functions
        .iter()
        .find(|f| f.name == EVENT_WINDOWS.logical())
        .context("example-6 declares no event-time function")?;
    let settings = Settings::from_lookup(|name| function.environment.get(name).cloned())
        .map_err(|e| anyhow::anyhow!("the declared settings of {}: {e}", function.name))?;
    let arrival = declared
        .event_source_mappings
        .iter()
        .find(|m| m.function == ARRIVAL_WINDOWS.logical())
        .and_then(|m| m.tumbling_window_seconds);
    Ok((settings, arrival))
}

pub(super) fn now_millis() -> Millis {
    event_time_windows::wall_clock_millis()
}

impl<'a> Lab<'a> {
    pub async fn connect(target: &'a Target, out: Output) -> Result<Self> {
        let (settings, arrival_window_seconds) = declared_settings()?;
        let lab = Self {
            target,
            out,
            stream: target.name(READINGS_STREAM),
            watermarks: target.name(WATERMARKS),
            windows: target.name(WINDOWS),
            late: target.name(LATE),
            settings,
            arrival_window_seconds,
        };
        db::describe_table(&target.clients.dynamodb, &lab.watermarks, "example-6").await?;
        Ok(lab)
    }

    pub fn prefix_flag(&self) -> String {
        if self.target.prefix == "labs" { String::new() } else { format!(" --prefix {}", self.target.prefix) }
    }

    /// The parts recorded on the stream, in tag order.
    pub async fn parts(&self) -> Result<Vec<Part>> {
        let runs = kinesis::recorded_runs(&self.target.clients.kinesis, &self.stream, "example-6").await?;
        Ok(runs.iter().filter_map(|(name, value)| Part::parse(name, value)).collect())
    }

    pub async fn tables(&self) -> Result<Tables> {
        let client = &self.target.clients.dynamodb;
        let (shards, mut odd) = db::scan_typed::<ShardRow>(client, &self.watermarks).await?;
        let (late, odd_late) = db::scan_typed::<LateRow>(client, &self.late).await?;
        odd.extend(odd_late);
        let mut tables = Tables { shards, late, odd, ..Tables::default() };
        for item in db::scan_all(client, &self.windows).await? {
            let arrival = item.get("window_key").and_then(|k| k.as_s().ok()).is_some_and(|k| k.starts_with("arrival-"));
            let keys = || format!("{:?}", item.get("window_key"));
            if arrival {
                match serde_dynamo::from_item::<_, ArrivalRow>(item.clone()) {
                    Ok(row) => tables.arrival.push(row),
                    Err(e) => tables.odd.push(format!("{}: {e}", keys())),
                }
            } else {
                match serde_dynamo::from_item::<_, WindowRow>(item.clone()) {
                    Ok(row) => tables.windows.push(row),
                    Err(e) => tables.odd.push(format!("{}: {e}", keys())),
                }
            }
        }
        Ok(tables)
    }

    /// Every record of the stream, from the start.
    pub async fn stream_records(&self) -> Result<Vec<Incoming>> {
        kinesis::read_stream(&self.target.clients.kinesis, &self.stream, &Position::TrimHorizon).await
    }

    /// A new part's start: after every watermark the shards' rows show.
    pub async fn next_start(&self) -> Result<Millis> {
        let tables = self.tables().await?;
        let highest = tables
            .shards
            .iter()
            .flat_map(|r| [Some(r.overall_watermark), Some(r.watermark), r.declared_watermark, r.max_event_time])
            .flatten()
            .filter(|w| *w != NO_WATERMARK)
            .max();
        Ok(part::next_start(now_millis(), highest))
    }

    /// Sends one control record to every shard, by explicit hash key.
    async fn to_every_shard(&self, record: impl Fn() -> StreamRecord) -> Result<()> {
        let shards = self.settings.watermark.expected_shards as u32;
        for range in partition::even_ranges(shards) {
            let outgoing = Outgoing { partition_key: "control".to_owned(), data: record().to_bytes() };
            let options = PutOptions { explicit_hash_key: Some(range.starting_hash_key), ..PutOptions::default() };
            kinesis::put_record(&self.target.clients.kinesis, &self.stream, &outgoing, &options).await?;
        }
        Ok(())
    }

    /// Records `part` on the stream, plays it, and waits until every window it touched is final.
    /// `watch` reports the watermark and the windows while it plays.
    pub async fn play(&self, part: &Part, watch: &mut Watch) -> Result<Played> {
        let client = &self.target.clients.kinesis;
        kinesis::record_run(client, &self.stream, &part.tag_name(), &part.tag_value()).await?;
        let generated = part.generated();
        let end = part.end_watermark(&self.settings);
        let first_sent = generated.first().map_or(part.start, |g| g.true_sent_at);
        let started = Instant::now();
        let bar = output::progress(generated.len() as u64, &format!("sending {}", part.tag_name()));
        let mut last_poll = Instant::now();
        let mut sent_at = Vec::with_capacity(generated.len());
        for g in &generated {
            let due = Duration::from_secs_f64(((g.true_sent_at - first_sent).max(0) as f64 / 1000.0) / part.speed());
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let outgoing = Outgoing { partition_key: g.reading.device_id.clone(), data: g.reading.to_bytes() };
            kinesis::put_record(client, &self.stream, &outgoing, &PutOptions::default()).await?;
            sent_at.push(now_millis());
            bar.inc(1);
            if last_poll.elapsed() >= POLL {
                watch.poll(self).await?;
                last_poll = Instant::now();
            }
        }
        bar.finish_and_clear();

        // End of input: no more readings before `end` on any shard.
        self.to_every_shard(|| StreamRecord::EndOfInput { watermark: end, sent_at: now_millis() }).await?;
        let ended_at = now_millis();
        self.wait_for(watch, "every shard's row to show the end of input", |t| {
            t.shards.len() >= self.settings.watermark.expected_shards
                && t.shards.iter().all(|r| r.declared_watermark.is_some_and(|w| w >= end))
        })
        .await?;
        // Each shard's processor learns of the others' end only when it runs again.
        self.to_every_shard(|| StreamRecord::Heartbeat { sent_at: now_millis() }).await?;
        let heartbeats_at = now_millis();
        let tables = self
            .wait_for(watch, "every window to be final", |t| t.shards.iter().all(|r| r.overall_watermark >= end))
            .await?;
        Ok(Played { end, sent_at, ended_at, heartbeats_at, tables })
    }

    /// Reads the tables until `done` holds (reporting through `watch`), or fails after a while.
    pub async fn wait_for(&self, watch: &mut Watch, what: &str, done: impl Fn(&Tables) -> bool) -> Result<Tables> {
        let started = Instant::now();
        let spinner = output::spinner(&format!("waiting for {what}"));
        loop {
            let tables = watch.poll(self).await?;
            if done(&tables) {
                spinner.finish_and_clear();
                return Ok(tables);
            }
            if started.elapsed() > CATCH_UP {
                spinner.finish_and_clear();
                bail!(
                    "waited {} s for {what} in {}: is {} running? (`labs status example-6{}`)",
                    CATCH_UP.as_secs(),
                    self.watermarks,
                    self.target.name(EVENT_WINDOWS),
                    self.prefix_flag()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What playing a part did.
#[derive(Debug, Clone)]
pub(super) struct Played {
    /// The watermark the end-of-input records declared.
    pub end: Millis,
    /// Wall-clock time each reading was sent, in production order.
    pub sent_at: Vec<Millis>,
    pub ended_at: Millis,
    pub heartbeats_at: Millis,
    /// The tables once every window was final.
    pub tables: Tables,
}
