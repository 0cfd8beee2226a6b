//! Example 8's clickstream: searches and the clicks on their results, by session.
//!
//! Searches and clicks go to two Kinesis streams (`ex8-searches`, `ex8-clicks`), partition key
//! `session_id`. The same [`ClickSpec`] always gives the same events in the same production
//! order, so the verifier regenerates them from the seed. Tuned so the join has something to
//! find: most searches get a click within the window, some get one too late, some none; and
//! some searches are sent late enough that their click arrives first.

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::time::windows::Millis;

/// A search or click record is about 150 bytes; anything far larger is refused unparsed.
pub const MAX_RECORD_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Search {
    pub session_id: String,
    /// Unique across runs: namespace, seed, session and index (`wj7-s003-q1`).
    pub search_id: String,
    pub query: String,
    pub event_time: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    pub session_id: String,
    pub click_id: String,
    /// The result clicked. The join does not read it: it joins by session and time, as a
    /// search engine's log would have to when the click carries no search id.
    pub url: String,
    pub event_time: Millis,
}

/// A record's data on the searches or clicks stream (JSON, tagged by `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ClickstreamRecord {
    Search(Search),
    Click(Click),
    /// Moves processing time on a shard that gets no data (Lambda has no timers), as in
    /// example 6. Not data: it does not keep a shard from becoming idle.
    Heartbeat {
        sent_at: Millis,
    },
    /// No more events before `watermark` on this shard: the last windows can close.
    EndOfInput {
        watermark: Millis,
        sent_at: Millis,
    },
}

impl ClickstreamRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("clickstream records serialize")
    }

    /// The partition key it is produced with: its session (control records go by hash key).
    pub fn session_id(&self) -> Option<&str> {
        match self {
            ClickstreamRecord::Search(search) => Some(&search.session_id),
            ClickstreamRecord::Click(click) => Some(&click.session_id),
            _ => None,
        }
    }
}

/// Why a record's data is not a clickstream record. One line each.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("the record's data is {bytes} bytes; a clickstream record is at most {MAX_RECORD_BYTES}")]
    TooLarge { bytes: usize },
    #[error("the record's data is not a search, click, heartbeat or end-of-input record: {0}")]
    NotARecord(String),
}

pub fn parse_record(data: &[u8]) -> Result<ClickstreamRecord, RecordError> {
    if data.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge { bytes: data.len() });
    }
    let record: ClickstreamRecord = serde_json::from_slice(data).map_err(|e| RecordError::NotARecord(e.to_string()))?;
    let empty = match &record {
        ClickstreamRecord::Search(s) => s.session_id.is_empty() || s.search_id.is_empty(),
        ClickstreamRecord::Click(c) => c.session_id.is_empty() || c.click_id.is_empty(),
        _ => false,
    };
    if empty {
        return Err(RecordError::NotARecord("empty session or event id".to_owned()));
    }
    Ok(record)
}

/// Settings that fully determine a generated clickstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickSpec {
    /// Starts every id, so runs of different scenarios can share the streams.
    pub namespace: String,
    pub seed: u64,
    pub sessions: u32,
    /// Event time of the first session's first search.
    pub start_millis: Millis,
    /// How long after a search a click still belongs to it (the join's window).
    pub window_millis: Millis,
    /// A record waits 0 up to this long before it is sent: out of order within a stream, and
    /// a click may be sent before its search. Keep it below the join's out-of-orderness bound.
    pub max_delay_millis: Millis,
}

impl ClickSpec {
    /// 24 sessions a second apart, a 10 s window, up to 4 s of delay.
    pub fn standard(namespace: &str, seed: u64, start_millis: Millis) -> Self {
        Self {
            namespace: namespace.to_owned(),
            seed,
            sessions: 24,
            start_millis,
            window_millis: 10_000,
            max_delay_millis: 4_000,
        }
    }

    pub fn session_id(&self, session: u32) -> String {
        format!("{}{}-s{session:03}", self.namespace, self.seed)
    }
}

/// The generated events, each stream's in its own production order, and both merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clickstream {
    pub searches: Vec<Search>,
    pub clicks: Vec<Click>,
    /// Every search and click in the order `labs run` sends them (by send time).
    pub production: Vec<ClickstreamRecord>,
}

impl Clickstream {
    /// Where the search or click with this id is in the production order.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.production.iter().position(|r| match r {
            ClickstreamRecord::Search(s) => s.search_id == id,
            ClickstreamRecord::Click(c) => c.click_id == id,
            _ => false,
        })
    }

    /// The largest event time of any event: past it plus the window, every search is decided.
    pub fn last_event_time(&self) -> Millis {
        let searches = self.searches.iter().map(|s| s.event_time);
        searches.chain(self.clicks.iter().map(|c| c.event_time)).max().unwrap_or(Millis::MIN)
    }
}

#[cfg(feature = "generators")]
const QUERIES: [&str; 6] = ["rust streams", "kinesis shards", "flink joins", "ddia", "watermarks", "dynamodb ttl"];

/// The events `spec` describes.
#[cfg(feature = "generators")]
pub fn generate(spec: &ClickSpec) -> Clickstream {
    let mut rng = ChaCha8Rng::seed_from_u64(super::mixed_seed(spec.seed, &spec.namespace));
    let window = spec.window_millis.max(2_000);
    let max_delay = spec.max_delay_millis.max(0);
    let mut sent: Vec<(Millis, usize, ClickstreamRecord)> = Vec::new();
    let mut push = |at: Millis, record: ClickstreamRecord| {
        let order = sent.len();
        sent.push((at, order, record));
    };
    let mut stream = Clickstream::default();
    for session in 0..spec.sessions {
        let session_id = spec.session_id(session);
        let first = spec.start_millis + Millis::from(session) * 1_000 + rng.random_range(0..500);
        let searches = if rng.random_bool(0.3) { 2 } else { 1 };
        for index in 0..searches {
            let event_time = first + Millis::from(index) * (window + 3_000);
            let search = Search {
                session_id: session_id.clone(),
                search_id: format!("{session_id}-q{index}"),
                query: QUERIES[rng.random_range(0..QUERIES.len())].to_owned(),
                event_time,
            };
            let outcome: f64 = rng.random();
            let click_offset = if outcome < 0.65 {
                Some(rng.random_range(500..window - 500)) // within the window
            } else if outcome < 0.8 {
                Some(window + rng.random_range(1_000..2_500)) // too late for it
            } else {
                None
            };
            // Sometimes the search waits longer than its click: the click arrives first.
            let click_first = click_offset.is_some_and(|o| o < max_delay) && rng.random_bool(0.5);
            let search_delay = if click_first { max_delay } else { rng.random_range(0..=max_delay / 2) };
            push(event_time + search_delay, ClickstreamRecord::Search(search.clone()));
            stream.searches.push(search);
            if let Some(offset) = click_offset {
                let click = Click {
                    session_id: session_id.clone(),
                    click_id: format!("{session_id}-c{index}"),
                    url: format!("https://example.com/r/{}", rng.random_range(1..50)),
                    event_time: event_time + offset,
                };
                let delay = if click_first { 0 } else { rng.random_range(0..=max_delay / 2) };
                push(click.event_time + delay, ClickstreamRecord::Click(click.clone()));
                stream.clicks.push(click);
            }
        }
    }
    sent.sort_by_key(|(at, order, _)| (*at, *order));
    stream.production = sent.into_iter().map(|(_, _, record)| record).collect();
    stream
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClickSpec {
        ClickSpec::standard("t", 7, 1_000_000)
    }

    #[test]
    fn the_same_spec_gives_the_same_events_and_another_seed_others() {
        assert_eq!(generate(&spec()), generate(&spec()));
        assert_ne!(generate(&spec()).production, generate(&ClickSpec { seed: 8, ..spec() }).production);
    }

    #[test]
    fn some_clicks_are_sent_before_their_search_and_some_searches_get_none() {
        let stream = generate(&spec());
        let position = |id: &str| stream.position(id);
        let click_first =
            stream.clicks.iter().filter(|c| position(&c.click_id) < position(&c.click_id.replace("-c", "-q"))).count();
        assert!(click_first > 0, "no click arrives before its search");
        assert!(stream.clicks.len() < stream.searches.len(), "every search got a click");
        assert_eq!(stream.production.len(), stream.searches.len() + stream.clicks.len());
    }

    #[test]
    fn records_round_trip_and_bad_data_is_refused_with_one_line() {
        let stream = generate(&spec());
        for record in &stream.production {
            assert_eq!(&parse_record(&record.to_bytes()).unwrap(), record);
        }
        for bad in
            [&b"{}"[..], b"not json", br#"{"kind":"click","session_id":"","click_id":"x","url":"u","event_time":1}"#]
        {
            let reason = parse_record(bad).unwrap_err().to_string();
            assert!(!reason.contains('\n'), "{reason}");
        }
        assert!(matches!(parse_record(&vec![b' '; MAX_RECORD_BYTES + 1]), Err(RecordError::TooLarge { .. })));
    }
}
