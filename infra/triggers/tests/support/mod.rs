//! A fake clock and a fake function that drive a [`ShardMachine`] the way the runner's loop does,
//! recording everything the machine asks for.

#![allow(dead_code)]

use labs_triggers::{
    Discard, Invocation, MappingSettings, Millis, Outcome, Pacing, Record, RecordMeta, ShardContext, ShardMachine,
    SourceKind, Step, WindowInvocation, WindowState,
};

/// 2026-01-01T00:00:00Z: the fake clock's start.
pub const T0: Millis = 1_767_225_600_000;

/// Sequence numbers that cross digit lengths ("7", "1007", ...), so text order would be wrong.
pub fn seq(index: usize) -> String {
    (index * 1000 + 7).to_string()
}

/// `count` records in one shard, one key each unless `keys` says how many keys to cycle through,
/// arriving 10 ms apart from `first_arrival`.
pub fn records(count: usize, first_arrival: Millis, keys: usize) -> Vec<RecordMeta> {
    (0..count)
        .map(|i| RecordMeta {
            sequence_number: seq(i),
            arrival_millis: first_arrival + 10 * i as Millis,
            ordering_key: format!("key-{}", i % keys.max(1)),
            size_bytes: 100,
        })
        .collect()
}

pub fn kinesis_shard() -> ShardContext {
    ShardContext {
        kind: SourceKind::Kinesis,
        shard_id: "shardId-000000000001".to_owned(),
        stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/orders".to_owned(),
        function_arn: "arn:aws:lambda:us-east-1:000000000000:function:probe".to_owned(),
    }
}

/// What the machine asked for, in order.
#[derive(Debug, Default)]
pub struct Log {
    pub invocations: Vec<Vec<String>>,
    /// The batches that succeeded (the fake function returned nothing failed).
    pub delivered_ok: Vec<Vec<String>>,
    pub discards: Vec<Discard>,
    pub checkpoints: Vec<String>,
    /// With tumbling windows: each invocation's records and window properties, and when it ran.
    pub window_calls: Vec<(Vec<String>, WindowInvocation, Millis)>,
}

impl Log {
    /// How many invocations included `sequence_number`.
    pub fn deliveries_of(&self, sequence_number: &str) -> usize {
        self.invocations.iter().filter(|batch| batch.iter().any(|s| s == sequence_number)).count()
    }

    pub fn discard_json(&self, index: usize) -> serde_json::Value {
        serde_json::to_value(&self.discards[index].record).expect("failure records serialize")
    }
}

pub struct Harness<R: Record = RecordMeta> {
    pub machine: ShardMachine<R>,
    pub now: Millis,
    pub log: Log,
}

impl<R: Record> Harness<R> {
    pub fn new(settings: MappingSettings) -> Self {
        Self::resuming(settings, None)
    }

    pub fn resuming(settings: MappingSettings, checkpoint: Option<String>) -> Self {
        Self::at(settings, checkpoint, T0)
    }

    pub fn at(settings: MappingSettings, checkpoint: Option<String>, now: Millis) -> Self {
        Self {
            machine: ShardMachine::new(settings, Pacing::default(), kinesis_shard(), checkpoint, now),
            now,
            log: Log::default(),
        }
    }

    /// Polls until idle; every invocation is answered at once (10 ms later) by `function`.
    pub fn run(&mut self, mut function: impl FnMut(&[R]) -> Outcome) {
        self.run_for(usize::MAX, &mut function);
    }

    /// Like `run`, but stops after `max_invocations` invocations (a crash of the runner).
    pub fn run_for(&mut self, max_invocations: usize, function: &mut impl FnMut(&[R]) -> Outcome) {
        self.run_windows_for(max_invocations, &mut |invocation: &Invocation<R>| (function(&invocation.records), None));
    }

    /// Polls until idle, answering each invocation with an outcome and a window `state`.
    pub fn run_windows(&mut self, mut function: impl FnMut(&Invocation<R>) -> (Outcome, Option<WindowState>)) {
        self.run_windows_for(usize::MAX, &mut function);
    }

    /// Like `run_windows`, but stops after `max_invocations` invocations.
    pub fn run_windows_for(
        &mut self,
        max_invocations: usize,
        function: &mut impl FnMut(&Invocation<R>) -> (Outcome, Option<WindowState>),
    ) {
        let mut invoked = 0;
        for _ in 0..100_000 {
            match self.machine.poll(self.now) {
                Step::Invoke(invocation) => {
                    if invoked == max_invocations {
                        return;
                    }
                    invoked += 1;
                    let (outcome, state) = function(&invocation);
                    self.note_invocation(&invocation, &outcome);
                    self.now += 10;
                    self.machine
                        .complete_with_state(invocation.id, outcome, state, self.now)
                        .expect("the invocation is in flight");
                }
                Step::WaitUntil(at) => {
                    assert!(at > self.now, "WaitUntil must lie in the future");
                    self.now = at;
                }
                Step::Idle => return,
                other => self.note_effect(other),
            }
        }
        panic!("the machine never went idle");
    }

    pub fn note_invocation(&mut self, invocation: &Invocation<R>, outcome: &Outcome) {
        let batch: Vec<String> = invocation.records.iter().map(|r| r.sequence_number().to_owned()).collect();
        if let Some(window) = &invocation.window {
            self.log.window_calls.push((batch.clone(), window.clone(), self.now));
        }
        if *outcome == Outcome::success() {
            self.log.delivered_ok.push(batch.clone());
        }
        self.log.invocations.push(batch);
    }

    pub fn note_effect(&mut self, step: Step<R>) {
        match step {
            Step::Discard(discard) => self.log.discards.push(*discard),
            Step::Checkpoint(checkpoint) => self.log.checkpoints.push(checkpoint),
            _ => unreachable!("only effects are noted"),
        }
    }
}

/// Every sequence number of `records`, in order.
pub fn seqs(records: &[RecordMeta]) -> Vec<String> {
    records.iter().map(|r| r.sequence_number.clone()).collect()
}
