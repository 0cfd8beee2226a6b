//! What example 4's data says after a run: the tables and the failure queue read at one moment,
//! the stream read back, and what each produced part came to. Scenarios and `verify` judge from
//! these, never from what the run itself remembers.

use super::*;

/// What the tables and the failure queue hold, read at (nearly) one moment.
pub(super) struct Observed {
    pub(super) applied: BTreeMap<String, AppliedEvent>,
    pub(super) invocations: Vec<Invocation>,
    pub(super) totals: BTreeMap<String, TotalsRow>,
}

impl Observed {
    pub(super) async fn read(target: &Target, names: &Names) -> Result<Self> {
        let client = &target.clients.dynamodb;
        let (applied, _) = db::scan_typed::<AppliedEvent>(client, &names.applied).await?;
        let (invocations, _) = db::scan_typed::<Invocation>(client, &names.invocations).await?;
        let (totals, _) = db::scan_typed::<TotalsRow>(client, &names.totals).await?;
        Ok(Self {
            applied: applied.into_iter().map(|a| (a.event_id.clone(), a)).collect(),
            invocations,
            totals: totals.into_iter().map(|t| (t.user_id.clone(), t)).collect(),
        })
    }
}

/// The stream read back: each shard's records in order, and where each purchase landed.
pub(super) struct StreamCopy {
    pub(super) shards: BTreeMap<String, Vec<Incoming>>,
    pub(super) located: BTreeMap<String, Vec<(String, String)>>,
}

impl StreamCopy {
    pub(super) async fn read(target: &Target, names: &Names) -> Result<Self> {
        let spinner = output::spinner("reading the stream from TRIM_HORIZON");
        let records = kinesis::read_stream(&target.clients.kinesis, &names.events, &Position::TrimHorizon).await;
        spinner.finish_and_clear();
        let mut shards: BTreeMap<String, Vec<Incoming>> = BTreeMap::new();
        let mut located: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for record in records? {
            if let Ok(purchase) = purchases::parse_purchase(&record.data) {
                located
                    .entry(purchase.event_id)
                    .or_default()
                    .push((record.shard_id.clone(), record.sequence_number.clone()));
            }
            shards.entry(record.shard_id.clone()).or_default().push(record);
        }
        Ok(Self { shards, located })
    }

    /// The records of `shard` from `first` to `last`, inclusive, in order.
    pub(super) fn range(&self, shard: &str, first: &str, last: &str) -> Vec<&Incoming> {
        self.shards
            .get(shard)
            .map(|records| {
                records
                    .iter()
                    .filter(|r| {
                        sequence::compare(&r.sequence_number, first).is_ge()
                            && sequence::compare(&r.sequence_number, last).is_le()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The purchases an invocation gave their naive increment. A batch is a contiguous run of
    /// its shard, unless `ParallelizationFactor` > 1 split the shard by key: then a batch that
    /// counted all its records names them in the applied table (by request id).
    pub(super) fn naive_deliveries(
        &self,
        invocation: &Invocation,
        applied_by_request: &BTreeMap<&str, Vec<&AppliedEvent>>,
    ) -> Deliveries {
        let range =
            self.range(&invocation.shard_id, &invocation.first_sequence_number, &invocation.last_sequence_number);
        let naive = invocation.naive_records as usize;
        if range.len() == invocation.records as usize {
            let events = range.iter().take(naive).filter_map(|r| purchases::parse_purchase(&r.data).ok()).collect();
            return Deliveries::Known(events);
        }
        let counted = applied_by_request.get(invocation.request_id.as_str()).map_or(0, Vec::len);
        if counted == naive && invocation.already_applied == 0 {
            let events = applied_by_request
                .get(invocation.request_id.as_str())
                .into_iter()
                .flatten()
                .map(|a| Purchase {
                    event_id: a.event_id.clone(),
                    user_id: a.user_id.clone(),
                    amount: a.amount,
                    event_time: 0,
                    user_seq: 0,
                    fault: None,
                })
                .collect();
            return Deliveries::Known(events);
        }
        Deliveries::Unattributed(naive)
    }
}

pub(super) enum Deliveries {
    Known(Vec<Purchase>),
    /// A batch of a split shard whose records the data does not name.
    Unattributed(usize),
}

pub(super) fn by_request(applied: &BTreeMap<String, AppliedEvent>) -> BTreeMap<&str, Vec<&AppliedEvent>> {
    let mut map: BTreeMap<&str, Vec<&AppliedEvent>> = BTreeMap::new();
    for event in applied.values() {
        map.entry(event.request_id.as_str()).or_default().push(event);
    }
    map
}

/// The invocations whose batch held one of `events` (by where they landed in the stream).
pub(super) fn invocations_of<'a>(
    observed: &'a Observed,
    stream: &StreamCopy,
    events: &[Purchase],
) -> Vec<&'a Invocation> {
    let places: Vec<&(String, String)> =
        events.iter().filter_map(|e| stream.located.get(&e.event_id)).flatten().collect();
    let mut held: Vec<&Invocation> = observed
        .invocations
        .iter()
        .filter(|i| {
            places.iter().any(|(shard, seq)| {
                *shard == i.shard_id
                    && sequence::compare(&i.first_sequence_number, seq).is_le()
                    && sequence::compare(&i.last_sequence_number, seq).is_ge()
            })
        })
        .collect();
    held.sort_by(|a, b| {
        (a.shard_id.as_str(), a.batch_start.as_str()).cmp(&(b.shard_id.as_str(), b.batch_start.as_str()))
    });
    held
}

fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Started => "started (no outcome recorded)",
        Outcome::Succeeded => "succeeded",
        Outcome::PartialFailure => "partial failure",
        Outcome::Failed => "failed (error)",
        Outcome::Aborted => "aborted (process crash)",
        Outcome::Rejected => "rejected",
    }
}

pub(super) fn short_seq(sequence_number: &str) -> String {
    let n = sequence_number.len();
    if n > 8 { format!("…{}", &sequence_number[n - 6..]) } else { sequence_number.to_owned() }
}

/// Shows the invocations that held a part's events: the redeliveries are the attempts > 1.
pub(super) fn show_invocations(out: Output, title: &str, invocations: &[&Invocation]) {
    out.table(
        title,
        &["shard", "batch", "records", "attempt", "outcome", "naive +", "counted", "already counted"],
        invocations.iter().map(|i| {
            vec![
                i.shard_id.clone(),
                format!("{} .. {}", short_seq(&i.first_sequence_number), short_seq(&i.last_sequence_number)),
                i.records.to_string(),
                i.attempt.to_string(),
                outcome_text(i.outcome).to_owned(),
                i.naive_records.to_string(),
                i.applied.to_string(),
                i.already_applied.to_string(),
            ]
        }),
    );
}

/// What a part's events came to, from the data.
#[derive(Debug, Clone, Serialize)]
pub(super) struct PartOutcome {
    pub(super) namespace: String,
    pub(super) seed: u64,
    pub(super) produced: usize,
    /// Events with a dedup row: counted exactly once in `total`/`count`.
    pub(super) counted: usize,
    /// Naive increments written for this part's events, redeliveries included.
    pub(super) naive_deliveries: usize,
    /// `naive_deliveries - produced`: what at-least-once delivery added to the naive counters.
    pub(super) naive_excess: i64,
    pub(super) invocations: usize,
    pub(super) retried_invocations: usize,
    pub(super) seconds: Option<f64>,
}

impl PartOutcome {
    pub(super) fn of(
        produced: &Produced,
        events: &[Purchase],
        observed: &Observed,
        stream: &StreamCopy,
        seconds: Option<f64>,
    ) -> Self {
        let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let requests = by_request(&observed.applied);
        let held = invocations_of(observed, stream, events);
        let naive_deliveries: usize = held
            .iter()
            .map(|i| match stream.naive_deliveries(i, &requests) {
                Deliveries::Known(delivered) => delivered.iter().filter(|e| ids.contains(e.event_id.as_str())).count(),
                Deliveries::Unattributed(n) => n,
            })
            .sum();
        Self {
            namespace: produced.namespace.clone(),
            seed: produced.seed,
            produced: events.len(),
            counted: ids.iter().filter(|id| observed.applied.contains_key(**id)).count(),
            naive_deliveries,
            naive_excess: naive_deliveries as i64 - events.len() as i64,
            invocations: held.len(),
            retried_invocations: held.iter().filter(|i| i.attempt > 1).count(),
            seconds,
        }
    }

    pub(super) fn rows(&self) -> Vec<Vec<String>> {
        vec![
            vec!["events produced".into(), self.produced.to_string()],
            vec!["counted exactly once (total/count)".into(), self.counted.to_string()],
            vec!["naive increments (naive_total/naive_count)".into(), self.naive_deliveries.to_string()],
            vec!["naive over-count".into(), self.naive_excess.to_string()],
            vec![
                "invocations / of them retries".into(),
                format!("{} / {}", self.invocations, self.retried_invocations),
            ],
            vec!["time until counted".into(), self.seconds.map_or("did not finish".into(), |s| format!("{s:.1} s"))],
        ]
    }
}

/// Failure records in the queue, looked at without consuming them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct FailureRecord {
    pub(super) shard_id: String,
    pub(super) start_sequence_number: String,
    pub(super) end_sequence_number: String,
    pub(super) batch_size: u64,
    pub(super) condition: String,
}

impl FailureRecord {
    /// Reads an on-failure message body (AWS's shape: `KinesisBatchInfo`, `requestContext`).
    pub(super) fn parse(body: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        let info = value.get("KinesisBatchInfo").ok_or("no KinesisBatchInfo")?;
        let text = |v: &serde_json::Value, key: &str| -> Result<String, String> {
            v.get(key).and_then(serde_json::Value::as_str).map(str::to_owned).ok_or(format!("no {key}"))
        };
        Ok(Self {
            shard_id: text(info, "shardId")?,
            start_sequence_number: text(info, "startSequenceNumber")?,
            end_sequence_number: text(info, "endSequenceNumber")?,
            batch_size: info.get("batchSize").and_then(serde_json::Value::as_u64).unwrap_or(0),
            condition: value
                .pointer("/requestContext/condition")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
        })
    }

    pub(super) fn covers(&self, shard: &str, sequence_number: &str) -> bool {
        self.shard_id == shard
            && sequence::compare(&self.start_sequence_number, sequence_number).is_le()
            && sequence::compare(&self.end_sequence_number, sequence_number).is_ge()
    }
}

/// Every message of the failure queue, parsed where it can be (the others as their problem).
pub(super) async fn peek_failures(target: &Target, names: &Names) -> Result<Vec<Result<FailureRecord, String>>> {
    let url = messaging::queue_url(&target.clients.sqs, &names.failures, "example-4").await?;
    let messages = messaging::peek(&target.clients.sqs, &url).await?;
    Ok(messages.iter().map(|m| FailureRecord::parse(&m.body)).collect())
}

/// The events of `events` that `failures` name (stream positions from `stream`).
pub(super) fn named_by(failures: &[FailureRecord], stream: &StreamCopy, events: &[Purchase]) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| {
            stream
                .located
                .get(&e.event_id)
                .is_some_and(|places| places.iter().any(|(shard, seq)| failures.iter().any(|f| f.covers(shard, seq))))
        })
        .map(|e| e.event_id.clone())
        .collect()
}

/// Where the part's fault marker landed in the stream.
pub(super) fn faulty_place(events: &[Purchase], stream: &StreamCopy) -> Option<(String, String)> {
    let marked = events.iter().find(|e| e.fault.is_some())?;
    stream.located.get(&marked.event_id)?.first().cloned()
}

/// The invocations whose batch held the record at (`shard`, `seq`), in batch order.
pub(super) fn holding<'a>(observed: &'a Observed, shard: &str, seq: &str) -> Vec<&'a Invocation> {
    let mut held: Vec<&Invocation> = observed
        .invocations
        .iter()
        .filter(|i| {
            i.shard_id == shard
                && sequence::compare(&i.first_sequence_number, seq).is_le()
                && sequence::compare(&i.last_sequence_number, seq).is_ge()
        })
        .collect();
    held.sort_by(|a, b| {
        sequence::compare(&a.first_sequence_number, &b.first_sequence_number).then(a.attempt.cmp(&b.attempt))
    });
    held
}
