//! Conformance tests for the spec's tumbling windows (section 5, W1-W7; section 10 rule 14),
//! filtering (section 7, F1-F4; rule 13) and `AT_TIMESTAMP` (P5; rules 2 and 3). Each test names
//! its rule. A fake clock and a fake function drive the machine.

mod support;

use aws_lambda_events::dynamodb::TimeWindowEvent as DynamoDbTimeWindowEvent;
use aws_lambda_events::kinesis::KinesisTimeWindowEvent;
use labs_triggers::event::{DynamoDbInput, EventSource, KinesisInput, kinesis_event, window_event};
use labs_triggers::{
    FilterCriteria, FunctionErrorKind, Invocation, ItemFailures, IteratorStart, MAX_WINDOW_STATE_BYTES,
    MappingSettings, Millis, Outcome, Record, RecordMeta, ShardHistory, ShardMachine, SourceKind, StartingPosition,
    Step, WINDOW_QUIET_MILLIS, WindowInvocation, WindowState, iterator_start,
};
use serde_json::{Value, json};
use support::{Harness, T0, records, seq, seqs};

const DESTINATION: &str = "arn:aws:sqs:us-east-1:000000000000:failures";
const MINUTE: Millis = 60_000;

fn windowed(seconds: u32) -> MappingSettings {
    MappingSettings::new(StartingPosition::TrimHorizon).with_tumbling_window(seconds).unwrap()
}

/// The state a well-behaved window function returns: the sequence numbers it has seen so far,
/// comma-separated, under `seen`.
fn seen_after(invocation: &Invocation<RecordMeta>) -> WindowState {
    let window = invocation.window.as_ref().expect("a window invocation");
    let mut seen: Vec<String> = window
        .state
        .get("seen")
        .and_then(Value::as_str)
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    seen.retain(|s| !s.is_empty());
    seen.extend(invocation.records.iter().map(|r| r.sequence_number.clone()));
    WindowState::from_iter([("seen".to_owned(), Value::String(seen.join(",")))])
}

fn seen(state: &WindowState) -> Vec<String> {
    state
        .get("seen")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn aggregating(invocation: &Invocation<RecordMeta>) -> (Outcome, Option<WindowState>) {
    (Outcome::success(), Some(seen_after(invocation)))
}

fn finals(harness: &Harness) -> Vec<&(Vec<String>, WindowInvocation, Millis)> {
    harness.log.window_calls.iter().filter(|(_, window, _)| window.is_final).collect()
}

// --- Rule 14 / W3-W5: state, the final invocation -------------------------------------------

#[test]
fn rule_14_state_round_trips_and_the_final_invoke_carries_every_batch() {
    let mut harness = Harness::new(windowed(60).with_batch_size(2).unwrap());
    let all = records(6, T0 + 1_000, 1);
    harness.machine.offer(all.clone());
    harness.run_windows(aggregating);

    let calls = &harness.log.window_calls;
    assert_eq!(calls.len(), 4, "three batches and the final invocation: {calls:?}");
    for (i, (batch, window, _)) in calls.iter().enumerate() {
        assert_eq!((window.start, window.end), (T0, T0 + MINUTE), "aligned to the epoch");
        let before: Vec<String> = calls[..i].iter().flat_map(|(b, _, _)| b.clone()).collect();
        assert_eq!(seen(&window.state), before, "call {i} gets the state the previous call returned");
        assert_eq!(window.is_final, batch.is_empty() && i == 3);
    }
    let (batch, window, at) = finals(&harness)[0];
    assert!(batch.is_empty(), "the final invocation carries no records");
    assert_eq!(seen(&window.state), seqs(&all), "the final state holds every batch of the window");
    assert!(*at >= T0 + MINUTE + WINDOW_QUIET_MILLIS, "after the quiet period past the window's end");
    assert_eq!(harness.log.checkpoints, vec![seq(5)], "checkpointed once, after the final invocation (W5)");
}

#[test]
fn rule_14_a_response_without_state_is_a_failed_invocation() {
    let settings =
        windowed(60).with_maximum_retry_attempts(1).unwrap().with_on_failure_destination(DESTINATION).unwrap();
    let mut harness = Harness::new(settings);
    harness.machine.offer(records(3, T0, 1));
    // Batches answer without state; the final invocation answers properly.
    harness.run_windows(|invocation| {
        let state = invocation.window.as_ref().unwrap().is_final.then(WindowState::new);
        (Outcome::success(), state)
    });
    assert_eq!(harness.log.invocations.len(), 3, "1 + MaximumRetryAttempts, then the final invocation");
    let record = harness.log.discard_json(0);
    assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(record["responseContext"]["functionError"], Value::Null, "a response, not a function error");
    assert!(seen(&finals(&harness)[0].1.state).is_empty(), "nothing was added to the state");
}

#[test]
fn w5_a_later_window_closes_the_current_one_at_once_and_starts_with_fresh_state() {
    let mut harness = Harness::new(windowed(60).with_batch_size(10).unwrap());
    let mut all = records(5, T0 + 1_000, 1);
    for record in &mut all[3..] {
        record.arrival_millis += MINUTE;
    }
    harness.machine.offer(all.clone());
    harness.run_windows(aggregating);

    let calls: Vec<(Vec<String>, Millis, bool, Vec<String>)> = harness
        .log
        .window_calls
        .iter()
        .map(|(batch, window, _)| (batch.clone(), window.start, window.is_final, seen(&window.state)))
        .collect();
    assert_eq!(
        calls,
        vec![
            (seqs(&all[..3]), T0, false, vec![]),
            (vec![], T0, true, seqs(&all[..3])),
            (seqs(&all[3..]), T0 + MINUTE, false, vec![]),
            (vec![], T0 + MINUTE, true, seqs(&all[3..])),
        ],
        "a batch never spans two windows; each window's state starts fresh"
    );
    let first_final_at = harness.log.window_calls[1].2;
    assert!(first_final_at < T0 + MINUTE, "no quiet period when the next window's records are read");
    assert_eq!(harness.log.checkpoints, vec![seq(2), seq(4)]);
}

#[test]
fn w5_a_failing_final_invocation_blocks_the_shard_until_it_succeeds() {
    let settings = windowed(60).with_maximum_retry_attempts(0).unwrap();
    let mut harness = Harness::new(settings);
    let mut all = records(4, T0, 1);
    for record in &mut all[2..] {
        record.arrival_millis += MINUTE;
    }
    harness.machine.offer(all.clone());
    let mut final_failures = 3;
    harness.run_windows(|invocation| {
        let window = invocation.window.as_ref().unwrap();
        if window.is_final && window.start == T0 && final_failures > 0 {
            final_failures -= 1;
            return (Outcome::FunctionError(FunctionErrorKind::Returned), None);
        }
        aggregating(invocation)
    });
    let starts: Vec<(Millis, bool)> = harness.log.window_calls.iter().map(|(_, w, _)| (w.start, w.is_final)).collect();
    assert_eq!(
        starts,
        vec![(T0, false), (T0, true), (T0, true), (T0, true), (T0, true), (T0 + MINUTE, false), (T0 + MINUTE, true)],
        "retried past MaximumRetryAttempts 0, and nothing of the next window runs meanwhile"
    );
    assert!(harness.log.discards.is_empty());
    assert_eq!(harness.log.checkpoints, vec![seq(1), seq(3)]);
}

#[test]
fn w3_a_state_over_1_mb_ends_the_window_early_and_it_continues_with_fresh_state() {
    let mut harness = Harness::new(windowed(60).with_batch_size(2).unwrap());
    let all = records(4, T0, 1);
    harness.machine.offer(all.clone());
    let big = "x".repeat(MAX_WINDOW_STATE_BYTES);
    harness.run_windows(|invocation| {
        let mut state = seen_after(invocation);
        if invocation.records.first().is_some_and(|r| r.sequence_number == seq(0)) {
            state.insert("padding".to_owned(), Value::String(big.clone()));
        }
        (Outcome::success(), Some(state))
    });
    let calls: Vec<(usize, bool, bool, Vec<String>)> = harness
        .log
        .window_calls
        .iter()
        .map(|(batch, w, _)| (batch.len(), w.is_final, w.terminated_early, seen(&w.state)))
        .collect();
    assert_eq!(
        calls,
        vec![
            (2, false, false, vec![]),
            (0, false, true, seqs(&all[..2])),
            (2, false, false, vec![]),
            (0, true, false, seqs(&all[2..])),
        ]
    );
    assert!(harness.log.window_calls.iter().all(|(_, w, _)| w.start == T0), "the same window throughout");
}

// --- W6, W7 ---------------------------------------------------------------------------------

#[test]
fn w6_the_end_of_a_shard_closes_its_window_without_waiting() {
    let mut harness = Harness::new(windowed(900));
    harness.machine.offer(records(2, T0, 1));
    harness.machine.end_of_shard();
    harness.run_windows(aggregating);
    let (_, window, at) = finals(&harness)[0];
    assert!(*at < T0 + 1_000, "closed at once, not at the window's end");
    assert_eq!(window.end - window.start, 900_000);
    assert!(harness.machine.is_drained());
}

#[test]
fn w7_retries_partial_failures_and_bisect_apply_inside_a_window() {
    let settings = windowed(60)
        .with_batch_size(4)
        .unwrap()
        .with_report_batch_item_failures(true)
        .with_bisect(true)
        .with_maximum_retry_attempts(0)
        .unwrap();
    let mut harness = Harness::new(settings);
    let all = records(8, T0, 1);
    harness.machine.offer(all.clone());
    let poison = seq(6);
    let first_batch = seqs(&all[..4]);
    harness.run_windows(|invocation| {
        let batch = seqs(&invocation.records);
        if batch.contains(&poison) {
            return (Outcome::FunctionError(FunctionErrorKind::Returned), None);
        }
        if batch == first_batch {
            // Records before seq(2) succeeded: the returned state covers them and is taken.
            let mut done = invocation.clone();
            done.records.truncate(2);
            return (Outcome::Returned { reported: ItemFailures::of([seq(2).as_str()]) }, Some(seen_after(&done)));
        }
        aggregating(invocation)
    });
    let final_state = seen(&finals(&harness)[0].1.state);
    let expected: Vec<String> = seqs(&all).into_iter().filter(|s| *s != poison).collect();
    assert_eq!(final_state, expected, "every record once in the state, except the poison given up on");
    assert_eq!(harness.log.deliveries_of(&seq(0)), 1);
    assert_eq!(harness.log.deliveries_of(&seq(2)), 2, "redelivered from the lowest failure");
    assert_eq!(harness.log.discards.len(), 1);
    assert_eq!(harness.log.discard_json(0)["KinesisBatchInfo"]["startSequenceNumber"], poison);
}

#[test]
fn w7_record_age_applies_inside_a_window() {
    let settings = windowed(60).with_maximum_record_age(60).unwrap().with_on_failure_destination(DESTINATION).unwrap();
    // All three arrived in the window starting at T0; the first is 69 s old, the others 40 s.
    let mut harness = Harness::at(settings, None, T0 + 70_000);
    let mut all = records(3, T0 + 30_000, 1);
    all[0].arrival_millis = T0 + 1_000;
    harness.machine.offer(all.clone());
    harness.run_windows(aggregating);
    assert_eq!(harness.log.discard_json(0)["requestContext"]["condition"], "RecordAgeExceeded");
    let delivered: Vec<String> = harness.log.window_calls.iter().flat_map(|(b, _, _)| b.clone()).collect();
    assert_eq!(delivered, seqs(&all[1..]));
    assert!(harness.log.window_calls.iter().all(|(_, w, _)| w.start == T0));
    assert_eq!(harness.log.checkpoints, vec![seq(2)]);
}

#[test]
fn w5_a_restart_mid_window_redelivers_the_window_from_its_start() {
    let settings = windowed(60).with_batch_size(2).unwrap();
    let all = records(6, T0, 1);
    let mut first = Harness::new(settings.clone());
    first.machine.offer(all.clone());
    first.run_windows_for(2, &mut aggregating);
    assert!(first.log.checkpoints.is_empty(), "nothing checkpointed inside an open window");

    let mut second = Harness::resuming(settings, None);
    second.machine.offer(all.clone());
    second.run_windows(aggregating);
    assert_eq!(seen(&finals(&second)[0].1.state), seqs(&all), "the whole window, with fresh state");
}

#[test]
fn p7_a_shard_with_windows_runs_one_batch_at_a_time() {
    let settings = windowed(60).with_parallelization_factor(4).unwrap().with_batch_size(1).unwrap();
    let mut machine: ShardMachine<RecordMeta> =
        ShardMachine::new(settings, Default::default(), support::kinesis_shard(), None, T0);
    machine.offer(records(8, T0, 8));
    let Step::Invoke(first) = machine.poll(T0) else { panic!("expected an invocation") };
    assert!(matches!(machine.poll(T0), Step::Idle), "the state is carried serially");
    let status = machine.status().open_window.expect("the window is open");
    assert_eq!((status.start, status.end, status.records, status.closing), (T0, T0 + MINUTE, 0, false));
    let mut state = WindowState::new();
    state.insert("n".to_owned(), json!("1"));
    machine.complete_with_state(first.id, Outcome::success(), Some(state), T0 + 5).unwrap();
    let status = machine.status().open_window.unwrap();
    assert_eq!((status.records, status.state_bytes), (1, r#"{"n":"1"}"#.len()));
}

#[test]
fn status_shows_the_open_window_and_its_final_invocation_in_flight() {
    let mut machine: ShardMachine<RecordMeta> =
        ShardMachine::new(windowed(60), Default::default(), support::kinesis_shard(), None, T0);
    machine.offer(records(2, T0, 1));
    let Step::Invoke(batch) = machine.poll(T0) else { panic!("expected the batch") };
    machine.complete_with_state(batch.id, Outcome::success(), Some(WindowState::new()), T0 + 5).unwrap();
    assert!(matches!(machine.poll(T0 + 5), Step::WaitUntil(at) if at == T0 + MINUTE + WINDOW_QUIET_MILLIS));
    let Step::Invoke(last) = machine.poll(T0 + MINUTE + WINDOW_QUIET_MILLIS) else { panic!("expected the final") };
    assert!(last.window.as_ref().unwrap().is_final);
    let status = machine.status();
    assert_eq!(status.in_flight, 1);
    assert_eq!(status.pending_records, 2, "held back from the checkpoint until the final succeeds");
    let window = status.open_window.unwrap();
    assert!(window.closing);
    assert_eq!(window.records, 2);
    machine.complete_with_state(last.id, Outcome::success(), Some(WindowState::new()), T0 + MINUTE + 4_000).unwrap();
    assert!(matches!(machine.poll(T0 + MINUTE + 4_000), Step::Checkpoint(c) if c == seq(1)));
    assert_eq!(machine.status().open_window, None);
}

// --- Rule 13 / F1-F4: filtering -------------------------------------------------------------

/// A record with a JSON payload, viewed as Kinesis views it.
#[derive(Debug, Clone)]
struct Payload {
    meta: RecordMeta,
    data: Value,
}

impl Record for Payload {
    fn sequence_number(&self) -> &str {
        &self.meta.sequence_number
    }
    fn arrival_millis(&self) -> Millis {
        self.meta.arrival_millis
    }
    fn ordering_key(&self) -> &str {
        &self.meta.ordering_key
    }
    fn size_bytes(&self) -> u64 {
        self.meta.size_bytes
    }
    fn filter_view(&self) -> Value {
        json!({ "partitionKey": self.meta.ordering_key, "data": self.data })
    }
}

fn payloads(kinds: &[&str]) -> Vec<Payload> {
    records(kinds.len(), T0, 1)
        .into_iter()
        .zip(kinds)
        .map(|(meta, kind)| Payload { meta, data: json!({ "kind": kind }) })
        .collect()
}

fn clicks_only() -> FilterCriteria {
    FilterCriteria::parse([r#"{"data": {"kind": ["click"]}}"#]).unwrap()
}

#[test]
fn rule_13_non_matching_records_are_never_delivered_and_do_not_block_later_ones() {
    let settings = MappingSettings::new(StartingPosition::TrimHorizon).with_filter_criteria(clicks_only());
    let mut harness: Harness<Payload> = Harness::new(settings.with_batch_size(2).unwrap());
    harness.machine.offer(payloads(&["click", "view", "click", "view", "view", "click"]));
    harness.run(|_| Outcome::success());
    // F4: BatchSize counts records after filtering.
    assert_eq!(harness.log.invocations, vec![vec![seq(0), seq(2)], vec![seq(5)]]);
    assert_eq!(harness.log.checkpoints.last(), Some(&seq(5)));
    assert_eq!(harness.machine.status().filtered_records, 3);
}

#[test]
fn f2_a_batch_with_no_match_is_checkpointed_past_without_invoking() {
    let settings = MappingSettings::new(StartingPosition::TrimHorizon).with_filter_criteria(clicks_only());
    let mut harness: Harness<Payload> = Harness::new(settings);
    harness.machine.offer(payloads(&["view", "view", "scroll"]));
    harness.run(|_| Outcome::success());
    assert!(harness.log.invocations.is_empty());
    assert_eq!(harness.log.checkpoints, vec![seq(2)], "the iterator moves past them (F2)");
}

#[test]
fn f1_filters_are_ored_and_each_matcher_follows_the_pattern_syntax() {
    let filters = FilterCriteria::parse([
        r#"{"data": {"kind": [{"prefix": "cl"}], "n": [{"numeric": [">", 0, "<=", 5]}]}}"#,
        r#"{"data": {"vip": [{"exists": true}], "kind": [{"anything-but": ["spam", "bot"]}]}}"#,
        r#"{"partitionKey": ["user-7"], "data": {"gone": [{"exists": false}]}}"#,
    ])
    .unwrap();
    let cases = [
        (json!({"partitionKey": "a", "data": {"kind": "click", "n": 5}}), true),
        (json!({"partitionKey": "a", "data": {"kind": "click", "n": 6}}), false),
        (json!({"partitionKey": "a", "data": {"kind": "click", "n": "5"}}), false),
        (json!({"partitionKey": "a", "data": {"kind": "view", "vip": null}}), true),
        (json!({"partitionKey": "a", "data": {"kind": "spam", "vip": 1}}), false),
        (json!({"partitionKey": "a", "data": {"kind": "view"}}), false),
        (json!({"partitionKey": "user-7", "data": {"kind": "spam"}}), true),
        (json!({"partitionKey": "user-7", "data": {"gone": 1}}), false),
    ];
    for (view, expected) in cases {
        assert_eq!(filters.matches(&view), expected, "{view}");
    }
    assert!(FilterCriteria::default().matches(&json!({})), "no filters: everything passes");
}

#[test]
fn f3_kinesis_filters_see_decoded_json_data_and_non_json_data_only_by_metadata() {
    let record = |data: &[u8]| KinesisInput {
        sequence_number: "1".to_owned(),
        partition_key: "user-1".to_owned(),
        data: data.to_vec(),
        arrival_millis: T0,
        kms_encrypted: false,
    };
    let on_data = FilterCriteria::parse([r#"{"data": {"temperature": [{"numeric": [">", 50]}]}}"#]).unwrap();
    assert!(on_data.matches(&record(br#"{"temperature": 60}"#).filter_view()));
    assert!(!on_data.matches(&record(br#"{"temperature": 40}"#).filter_view()));
    assert!(!on_data.matches(&record(b"temperature 60").filter_view()), "non-JSON data with a data filter: dropped");
    let on_metadata = FilterCriteria::parse([r#"{"partitionKey": ["user-1"]}"#]).unwrap();
    assert!(on_metadata.matches(&record(b"temperature 60").filter_view()), "metadata filters still apply");
}

#[test]
fn f3_dynamodb_filters_use_typed_json_and_n_values_are_strings() {
    let keys = json!({"id": {"S": "item-1"}}).as_object().unwrap().clone();
    let image =
        json!({"id": {"S": "item-1"}, "status": {"S": "open"}, "qty": {"N": "42"}}).as_object().unwrap().clone();
    let change = DynamoDbInput::new("e1", "INSERT", "100", 40, "NEW_IMAGE", T0, keys, Some(image), None);
    let view = change.filter_view();
    let matches = |pattern: &str| FilterCriteria::parse([pattern]).unwrap().matches(&view);
    assert!(matches(r#"{"dynamodb": {"NewImage": {"status": {"S": ["open"]}}}}"#));
    assert!(!matches(r#"{"dynamodb": {"NewImage": {"status": ["open"]}}}"#), "without \"S\" it does not match");
    assert!(!matches(r#"{"dynamodb": {"NewImage": {"qty": {"N": [{"numeric": ["=", 42]}]}}}}"#));
    assert!(matches(r#"{"eventName": ["INSERT"]}"#));
    assert!(matches(r#"{"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">", 0]}]}}"#));
}

#[test]
fn rule_02_an_invalid_filter_pattern_is_rejected_with_aws_wording() {
    let error = FilterCriteria::parse([r#"{"data": "click"}"#]).unwrap_err();
    assert!(error.to_string().starts_with("Invalid filter pattern definition."), "{error}");
}

// --- Rules 2 and 3 / P5: AT_TIMESTAMP -------------------------------------------------------

#[test]
fn rule_02_at_timestamp_is_kinesis_only_and_needs_its_timestamp() {
    let at = StartingPosition::parse_with_timestamp("AT_TIMESTAMP", Some(1_767_225_600.25)).unwrap();
    assert_eq!(at, StartingPosition::AtTimestamp(1_767_225_600_250));
    assert!(StartingPosition::parse("AT_TIMESTAMP").is_err(), "StartingPositionTimestamp is required");
    assert!(StartingPosition::parse_with_timestamp("LATEST", Some(1.0)).is_err(), "valid only with AT_TIMESTAMP");
    let settings = MappingSettings::new(at);
    let table = "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026-01-01T00:00:00.000";
    let error = settings.check_source(SourceKind::DynamoDbStreams, table).unwrap_err();
    assert_eq!(error.to_string(), format!("Unsupported starting position for arn type: {table}"));
    assert!(settings.check_source(SourceKind::Kinesis, "arn:aws:kinesis:us-east-1:0:stream/s").is_ok());
    assert!(MappingSettings::new(StartingPosition::Latest).check_source(SourceKind::DynamoDbStreams, table).is_ok());
    assert!(windowed(900).with_tumbling_window(901).is_err());
}

#[test]
fn rule_03_at_timestamp_reads_from_the_instant_and_a_checkpoint_still_wins() {
    let settings = MappingSettings::new(StartingPosition::AtTimestamp(T0));
    assert_eq!(iterator_start(&settings, &ShardHistory::default()), IteratorStart::AtTimestamp(T0));
    let child = ShardHistory { opened_after_start: true, ..ShardHistory::default() };
    assert_eq!(iterator_start(&settings, &child), IteratorStart::AtTimestamp(T0));
    let resumed = ShardHistory { checkpoint: Some("1007".into()), ..ShardHistory::default() };
    assert_eq!(iterator_start(&settings, &resumed), IteratorStart::AfterSequenceNumber("1007".into()));
}

// --- Section 8.3: the window event's shape --------------------------------------------------

#[test]
fn window_events_read_as_aws_lambda_events_time_window_events() {
    let source = EventSource {
        shard_id: "shardId-000000000006".to_owned(),
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream".to_owned(),
        region: "us-east-1".to_owned(),
        execution_role_arn: "arn:aws:iam::123456789012:role/r".to_owned(),
    };
    let record = KinesisInput {
        sequence_number: "49590338271490256608559692538361571095921575989136588898".to_owned(),
        partition_key: "1".to_owned(),
        data: b"hello".to_vec(),
        arrival_millis: 1_607_497_475_000,
        kms_encrypted: false,
    };
    let window = WindowInvocation {
        start: 1_607_497_440_000,
        end: 1_607_497_560_000,
        state: WindowState::from_iter([("1".to_owned(), json!("282"))]),
        is_final: false,
        terminated_early: false,
    };
    let event = window_event(kinesis_event(&source, &[record]).unwrap(), &source, &window);
    assert_eq!(event["window"], json!({"start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z"}));
    assert_eq!(event["isFinalInvokeForWindow"], false);
    let parsed: KinesisTimeWindowEvent = serde_json::from_value(event).unwrap();
    let properties = &parsed.time_window_properties;
    assert_eq!(properties.state.get("1").map(String::as_str), Some("282"));
    assert_eq!(properties.shard_id.as_deref(), Some("shardId-000000000006"));
    assert_eq!(parsed.kinesis_event.records[0].kinesis.data.0, b"hello");
    assert_eq!(properties.window.start.timestamp_millis(), 1_607_497_440_000);

    let last = WindowInvocation { state: WindowState::new(), is_final: true, ..window };
    let final_event = window_event(json!({ "Records": [] }), &source, &last);
    let parsed: DynamoDbTimeWindowEvent = serde_json::from_value(final_event).unwrap();
    assert!(parsed.time_window_properties.is_final_invoke_for_window);
    assert!(parsed.dynamo_db_event.records.is_empty());
}
