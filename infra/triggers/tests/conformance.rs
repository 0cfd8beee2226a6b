//! Conformance tests: one per rule of the spec's section 10 that the runner's decisions cover
//! (`aws-stream-trigger-semantics.md`), plus the error-semantics rules of sections 2-4 they rest
//! on. Each test names its rule. A fake clock and a fake function drive the machine.

mod support;

use std::collections::{BTreeMap, HashSet};

use labs_triggers::{
    FunctionErrorKind, InvokeFailure, ItemFailures, IteratorStart, MappingSettings, Outcome, RecordMeta, ShardHistory,
    ShardMachine, StartingPosition, Step, iterator_start, response,
};
use serde_json::{Value, json};
use support::{Harness, T0, records, seq, seqs};

const DESTINATION: &str = "arn:aws:sqs:us-east-1:000000000000:failures";

fn settings() -> MappingSettings {
    MappingSettings::new(StartingPosition::TrimHorizon)
}

fn function_error() -> Outcome {
    Outcome::FunctionError(FunctionErrorKind::Returned)
}

/// A function that fails whenever the batch contains `poison`.
fn failing_on(poison: String) -> impl FnMut(&[RecordMeta]) -> Outcome {
    move |batch| if batch.iter().any(|r| r.sequence_number == poison) { function_error() } else { Outcome::success() }
}

// --- Rule 2: validation ---------------------------------------------------------------------

#[test]
fn rule_02_settings_outside_aws_ranges_are_rejected() {
    assert!(settings().with_batch_size(0).is_err());
    assert!(settings().with_batch_size(10_001).is_err());
    assert!(settings().with_batching_window(301).is_err());
    assert!(settings().with_parallelization_factor(11).is_err());
    assert!(settings().with_parallelization_factor(0).is_err());
    assert!(settings().with_maximum_retry_attempts(-2).is_err());
    assert!(settings().with_maximum_retry_attempts(10_001).is_err());
    assert!(settings().with_maximum_record_age(59).is_err(), "0..=59 are inside the range but rejected");
    assert!(settings().with_maximum_record_age(604_801).is_err());
    assert!(settings().with_on_failure_destination("arn:aws:sqs:us-east-1:0:q.fifo").is_err());
    assert!(settings().with_on_failure_destination("arn:aws:s3:::bucket").is_err(), "S3 is not supported yet");
    assert!(StartingPosition::parse("AT_TIMESTAMP").is_err());
    assert!(StartingPosition::parse("SOMEWHERE").is_err());
    let accepted = settings()
        .with_maximum_record_age(60)
        .and_then(|s| s.with_maximum_record_age(-1))
        .and_then(|s| s.with_maximum_retry_attempts(0))
        .and_then(|s| s.with_on_failure_destination("arn:aws:sns:us-east-1:0:topic"));
    assert!(accepted.is_ok());
}

// --- Rule 3: starting position --------------------------------------------------------------

#[test]
fn rule_03_trim_horizon_delivers_existing_records_in_order() {
    assert_eq!(iterator_start(&settings(), &ShardHistory::default()), IteratorStart::TrimHorizon);
    let mut harness = Harness::new(settings().with_batch_size(3).unwrap());
    let all = records(10, T0 - 5_000, 1);
    harness.machine.offer(all.clone());
    harness.run(|_| Outcome::success());
    let delivered: Vec<String> = harness.log.invocations.concat();
    assert_eq!(delivered, seqs(&all), "every record once, in sequence-number order");
}

#[test]
fn rule_03_latest_starts_after_the_newest_record_and_a_checkpoint_wins() {
    let latest = MappingSettings::new(StartingPosition::Latest);
    let fresh = ShardHistory::default();
    assert_eq!(iterator_start(&latest, &fresh), IteratorStart::Latest);
    let checkpointed = ShardHistory { checkpoint: Some("1007".into()), latest_since: Some(T0), ..fresh.clone() };
    assert_eq!(iterator_start(&latest, &checkpointed), IteratorStart::AfterSequenceNumber("1007".into()));
    assert_eq!(
        iterator_start(&settings(), &checkpointed),
        IteratorStart::AfterSequenceNumber("1007".into()),
        "re-enabling resumes from the checkpoint, not from StartingPosition (P6)"
    );
    let child = ShardHistory { opened_after_start: true, ..fresh.clone() };
    assert_eq!(iterator_start(&latest, &child), IteratorStart::TrimHorizon, "a child is read from its start");
    let restarted = ShardHistory { latest_since: Some(T0), ..fresh };
    assert_eq!(
        iterator_start(&latest, &restarted),
        IteratorStart::AtTimestamp(T0),
        "a restart before the first checkpoint skips nothing written since the first read"
    );
}

// --- Rule 4: batch size and batching window -------------------------------------------------

#[test]
fn rule_04_batch_size_caps_the_number_of_records() {
    let mut harness = Harness::new(settings().with_batch_size(100).unwrap());
    harness.machine.offer(records(250, T0, 1));
    harness.run(|_| Outcome::success());
    let sizes: Vec<usize> = harness.log.invocations.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    assert_eq!(harness.log.checkpoints.last(), Some(&seq(249)));
}

#[test]
fn rule_04_batching_window_waits_for_more_records_unless_the_batch_is_full() {
    let window = settings().with_batch_size(5).unwrap().with_batching_window(2).unwrap();
    let mut machine: ShardMachine<RecordMeta> =
        ShardMachine::new(window, Default::default(), support::kinesis_shard(), None, T0);
    let all = records(7, T0, 1);
    machine.offer(all[..2].to_vec());
    assert!(matches!(machine.poll(T0 + 100), Step::WaitUntil(at) if at == T0 + 2_000), "2 of 5: wait for the window");
    machine.offer(all[2..].to_vec());
    let Step::Invoke(full) = machine.poll(T0 + 200) else { panic!("a full batch goes at once") };
    assert_eq!(full.records.len(), 5);
    machine.complete(full.id, Outcome::success(), T0 + 300).unwrap();
    assert_eq!(machine.poll(T0 + 300).checkpoint(), Some(seq(4)));
    assert!(
        matches!(machine.poll(T0 + 400), Step::WaitUntil(at) if at == T0 + 2_300),
        "the next window starts when the previous invocation completes"
    );
    let Step::Invoke(rest) = machine.poll(T0 + 2_300) else { panic!("window over: send what there is") };
    assert_eq!(rest.records.len(), 2);
}

trait StepExt {
    fn checkpoint(self) -> Option<String>;
}

impl StepExt for Step<RecordMeta> {
    fn checkpoint(self) -> Option<String> {
        match self {
            Step::Checkpoint(checkpoint) => Some(checkpoint),
            _ => None,
        }
    }
}

// --- Rule 5: retries exhausted --------------------------------------------------------------

#[test]
fn rule_05_function_error_retries_n_times_then_reports_retry_attempts_exhausted() {
    let limited = settings()
        .with_batch_size(4)
        .unwrap()
        .with_maximum_retry_attempts(2)
        .unwrap()
        .with_on_failure_destination(DESTINATION)
        .unwrap();
    let mut harness = Harness::new(limited);
    let all = records(8, T0, 1);
    harness.machine.offer(all.clone());
    harness.run(failing_on(seq(1)));

    let first_batch = seqs(&all[..4]);
    assert_eq!(
        &harness.log.invocations[..3],
        &[first_batch.clone(), first_batch.clone(), first_batch],
        "N+1 identical"
    );
    assert_eq!(harness.log.discards.len(), 1);
    assert_eq!(harness.log.discards[0].destination.as_deref(), Some(DESTINATION));
    let record = harness.log.discard_json(0);
    assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["responseContext"]["statusCode"], 200);
    let info = &record["KinesisBatchInfo"];
    assert_eq!(info["startSequenceNumber"], seq(0));
    assert_eq!(info["endSequenceNumber"], seq(3));
    assert_eq!(info["batchSize"], 4);
    assert_eq!(info["shardId"], "shardId-000000000001");
    assert_eq!(info["streamArn"], "arn:aws:kinesis:us-east-1:000000000000:stream/orders");
    assert_eq!(harness.log.invocations[3], seqs(&all[4..]), "the shard then moves on");
    assert_eq!(harness.log.checkpoints, vec![seq(3), seq(7)], "discarding checkpoints past the batch (E5)");
}

#[test]
fn rule_05_the_shard_blocks_while_a_batch_is_retried() {
    // E1: with unlimited retries, nothing after the failing batch is delivered or checkpointed.
    let mut harness = Harness::new(settings().with_batch_size(2).unwrap());
    harness.machine.offer(records(4, T0, 1));
    let mut calls = 0;
    harness.run_for(20, &mut |batch: &[RecordMeta]| {
        calls += 1;
        assert_eq!(batch[0].sequence_number, seq(0), "never past the failing batch");
        function_error()
    });
    assert_eq!(calls, 20);
    assert!(harness.log.checkpoints.is_empty(), "checkpoint only after success");
    assert!(harness.log.discards.is_empty());
}

#[test]
fn rule_05_without_a_destination_the_batch_is_skipped_all_the_same() {
    let mut harness = Harness::new(settings().with_maximum_retry_attempts(0).unwrap());
    harness.machine.offer(records(3, T0, 1));
    harness.run(|_| function_error());
    assert_eq!(harness.log.discards.len(), 1);
    assert_eq!(harness.log.discards[0].destination, None);
    assert_eq!(harness.log.checkpoints, vec![seq(2)]);
}

// --- Rules 6 and 7: partial batch responses -------------------------------------------------

fn reporting(retries: i64) -> MappingSettings {
    settings()
        .with_report_batch_item_failures(true)
        .with_maximum_retry_attempts(retries)
        .unwrap()
        .with_on_failure_destination(DESTINATION)
        .unwrap()
}

#[test]
fn rule_06_partial_response_success_shapes_invoke_once() {
    for payload in ["", "null", "{}", "[]", r#"{"batchItemFailures":[]}"#, r#"{"batchItemFailures":null}"#] {
        let mut harness = Harness::new(reporting(2));
        harness.machine.offer(records(3, T0, 1));
        harness.run(|_| Outcome::Returned { reported: response::item_failures(payload.as_bytes()) });
        assert_eq!(harness.log.invocations.len(), 1, "{payload}");
        assert!(harness.log.discards.is_empty(), "{payload}");
        assert_eq!(harness.log.checkpoints, vec![seq(2)], "{payload}");
    }
}

#[test]
fn rule_07_partial_response_failure_shapes_fail_the_whole_batch_with_null_function_error() {
    let not_in_batch = r#"{"batchItemFailures":[{"itemIdentifier":"424242"}]}"#;
    for payload in [
        r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
        r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
        r#"{"batchItemFailures":[{"foo":123}]}"#,
        r#"{"batchItemFailures":[{"foo":null}]}"#,
        r#"{"batchItemFailures":[{"itemIdentifier":123}]}"#,
        not_in_batch,
    ] {
        let mut harness = Harness::new(reporting(2));
        harness.machine.offer(records(3, T0, 1));
        harness.run(|_| Outcome::Returned { reported: response::item_failures(payload.as_bytes()) });
        assert_eq!(harness.log.invocations.len(), 3, "N+1 invocations: {payload}");
        assert!(harness.log.invocations.iter().all(|b| b.len() == 3), "always the whole batch: {payload}");
        let record = harness.log.discard_json(0);
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 3, "{payload}");
        assert_eq!(record["responseContext"]["functionError"], Value::Null, "{payload}");
        assert!(record["responseContext"].as_object().unwrap().contains_key("functionError"), "null, not absent");
        assert_eq!(record["KinesisBatchInfo"]["batchSize"], 3);
    }
}

#[test]
fn rule_07_partial_responses_are_ignored_without_report_batch_item_failures() {
    // R1: the return value is ignored; any non-error return is complete success.
    let mut harness = Harness::new(settings().with_maximum_retry_attempts(0).unwrap());
    harness.machine.offer(records(3, T0, 1));
    harness.run(|batch| Outcome::Returned { reported: ItemFailures::of([batch[1].sequence_number.as_str()]) });
    assert_eq!(harness.log.invocations.len(), 1);
    assert!(harness.log.discards.is_empty());
    assert_eq!(harness.log.checkpoints, vec![seq(2)]);
}

// --- Rule 8: a valid partial response mid-batch ---------------------------------------------

#[test]
fn rule_08_next_invocation_starts_at_the_lowest_reported_sequence_number() {
    let mut harness = Harness::new(reporting(-1).with_batch_size(9).unwrap());
    let all = records(9, T0, 1);
    harness.machine.offer(all.clone());
    let mut first = true;
    harness.run(|_| {
        if std::mem::take(&mut first) {
            // Reported out of order: the lowest (index 4) counts, not the first listed.
            Outcome::Returned { reported: ItemFailures::of([seq(6).as_str(), seq(4).as_str()]) }
        } else {
            Outcome::success()
        }
    });
    assert_eq!(harness.log.invocations.len(), 2);
    assert_eq!(harness.log.invocations[1], seqs(&all[4..]), "from the lowest failure, every later record");
    assert_eq!(harness.log.checkpoints, vec![seq(3), seq(8)], "records before it are committed");
}

// --- Rule 9: the observed retry count after a partial response ------------------------------

#[test]
fn rule_09_last_record_always_failing_is_delivered_five_times() {
    let mut harness = Harness::new(reporting(3).with_batch_size(3).unwrap());
    let all = records(6, T0, 1);
    harness.machine.offer(all.clone());
    let last = seq(5);
    harness.run(|batch| {
        if batch.iter().any(|r| r.sequence_number == last) {
            Outcome::Returned { reported: ItemFailures::of([last.as_str()]) }
        } else {
            Outcome::success()
        }
    });
    assert_eq!(harness.log.deliveries_of(&last), 5);
    for record in &all[..5] {
        assert_eq!(harness.log.deliveries_of(&record.sequence_number), 1, "{}", record.sequence_number);
    }
    assert_eq!(harness.log.discards.len(), 1);
    let record = harness.log.discard_json(0);
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 1);
    assert_eq!(record["KinesisBatchInfo"]["startSequenceNumber"], last);
    assert_eq!(record["KinesisBatchInfo"]["endSequenceNumber"], last);
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 4);
    assert_eq!(record["responseContext"]["functionError"], Value::Null);
}

#[test]
fn rule_09_a_partial_response_that_moves_forward_restarts_the_retry_count() {
    // R6's reading: retries used before the checkpoint moved do not count against the rest.
    let mut harness = Harness::new(reporting(1).with_batch_size(3).unwrap());
    let all = records(3, T0, 1);
    harness.machine.offer(all.clone());
    let mut call = 0;
    harness.run(|_| {
        call += 1;
        match call {
            1 => function_error(),
            2 => Outcome::Returned { reported: ItemFailures::of([seq(1).as_str()]) },
            _ => Outcome::Returned { reported: ItemFailures::of([seq(1).as_str()]) },
        }
    });
    let expected = vec![seqs(&all), seqs(&all), seqs(&all[1..]), seqs(&all[1..])];
    assert_eq!(harness.log.invocations, expected, "the remainder gets 1 + MaximumRetryAttempts invocations");
    assert_eq!(harness.log.discard_json(0)["requestContext"]["approximateInvokeCount"], 2);
}

// --- Rule 10: record age --------------------------------------------------------------------

#[test]
fn rule_10_expired_records_are_discarded_and_fresh_ones_delivered() {
    let aged = settings()
        .with_batch_size(10)
        .unwrap()
        .with_maximum_retry_attempts(0)
        .unwrap()
        .with_maximum_record_age(60)
        .unwrap()
        .with_on_failure_destination(DESTINATION)
        .unwrap();
    let mut harness = Harness::new(aged);
    let mut all = records(6, T0 - 1_000, 1);
    all[0].arrival_millis = T0 - 61_000;
    harness.machine.offer(all.clone());
    harness.run(|_| Outcome::success());

    assert_eq!(harness.log.invocations, vec![seqs(&all[1..])], "the function gets the 5 fresh records");
    assert_eq!(harness.log.discards.len(), 1);
    let record = harness.log.discard_json(0);
    assert_eq!(record["requestContext"]["condition"], "RecordAgeExceeded");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert!(record.get("responseContext").is_none(), "no responseContext key at all");
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 1);
    assert_eq!(record["KinesisBatchInfo"]["startSequenceNumber"], seq(0));
    assert_eq!(harness.log.checkpoints.last(), Some(&seq(5)));
}

#[test]
fn rule_10_records_expiring_while_retried_end_as_record_age_exceeded() {
    let aged = settings().with_maximum_record_age(60).unwrap().with_on_failure_destination(DESTINATION).unwrap();
    let mut harness = Harness::new(aged);
    harness.machine.offer(records(2, T0, 1));
    harness.run(|_| function_error());
    let invocations = harness.log.invocations.len();
    assert!((6..=10).contains(&invocations), "about 8 attempts in 60 s were observed, got {invocations}");
    let record = harness.log.discard_json(0);
    assert_eq!(record["requestContext"]["condition"], "RecordAgeExceeded");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], invocations);
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 2);
    assert!(harness.now - T0 > 60_000 && harness.now - T0 < 80_000, "given up soon after the age limit");
}

// --- Rule 12: failure record shapes ---------------------------------------------------------

#[test]
fn rule_12_kinesis_failure_record_has_aws_shape_and_millisecond_arrivals() {
    let limited = settings().with_maximum_retry_attempts(0).unwrap();
    let mut harness = Harness::at(limited, None, 1_573_691_886_011);
    let mut all = records(2, 0, 1);
    all[0].arrival_millis = 1_573_691_884_835; // 2019-11-14T00:38:04.835Z
    all[1].arrival_millis = 1_573_691_885_580;
    harness.machine.offer(all.clone());
    harness.run(|_| function_error());
    let record = harness.log.discard_json(0);
    let request_id = record["requestContext"]["requestId"].as_str().unwrap().to_owned();
    assert_eq!(request_id.len(), 36, "UUID-shaped: {request_id}");
    let expected = json!({
        "requestContext": {
            "requestId": request_id,
            "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:probe",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 1
        },
        "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": seq(0),
            "endSequenceNumber": seq(1),
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 2,
            "streamArn": "arn:aws:kinesis:us-east-1:000000000000:stream/orders"
        }
    });
    assert_eq!(record, expected);
}

#[test]
fn rule_12_dynamodb_failure_record_uses_ddb_stream_batch_info_and_whole_seconds() {
    let shard = labs_triggers::ShardContext {
        kind: labs_triggers::SourceKind::DynamoDbStreams,
        shard_id: "shardId-00000001573689847184-864758bb".to_owned(),
        stream_arn: "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2019-11-14T00:04:06.388".to_owned(),
        function_arn: "arn:aws:lambda:us-east-1:000000000000:function:probe".to_owned(),
    };
    let limited = settings().with_maximum_retry_attempts(0).unwrap();
    let mut machine = ShardMachine::new(limited, Default::default(), shard, None, T0);
    let mut all = records(1, 0, 1);
    all[0].arrival_millis = 1_573_691_959_620; // 2019-11-14T00:39:19.620Z
    machine.offer(all);
    let Step::Invoke(invocation) = machine.poll(T0) else { panic!("expected an invocation") };
    machine.complete(invocation.id, function_error(), T0 + 5).unwrap();
    let Step::Discard(discard) = machine.poll(T0 + 5) else { panic!("expected a discard") };
    let record = serde_json::to_value(&discard.record).unwrap();
    assert!(record.get("KinesisBatchInfo").is_none());
    let info = &record["DDBStreamBatchInfo"];
    assert_eq!(info["approximateArrivalOfFirstRecord"], "2019-11-14T00:39:19Z");
    assert_eq!(info["shardId"], "shardId-00000001573689847184-864758bb");
    assert_eq!(record["timestamp"], "2026-01-01T00:00:00.005Z", "the record's own time keeps milliseconds");
}

// --- Rule 15: bisect ------------------------------------------------------------------------

fn bisecting(retries: i64) -> MappingSettings {
    settings()
        .with_bisect(true)
        .with_maximum_retry_attempts(retries)
        .unwrap()
        .with_on_failure_destination(DESTINATION)
        .unwrap()
}

#[test]
fn rule_15_bisect_isolates_the_poison_record_and_delivers_every_other_one() {
    let mut harness = Harness::new(bisecting(1));
    let all = records(8, T0, 1);
    let poison = seq(2);
    harness.machine.offer(all.clone());
    harness.run(failing_on(poison.clone()));

    let delivered: HashSet<String> = harness.log.delivered_ok.concat().into_iter().collect();
    for record in &all {
        assert_eq!(delivered.contains(&record.sequence_number), record.sequence_number != poison);
    }
    assert_eq!(harness.log.discards.len(), 1);
    let info = &harness.log.discard_json(0)["KinesisBatchInfo"];
    assert_eq!(
        (info["startSequenceNumber"].as_str(), info["endSequenceNumber"].as_str()),
        (Some(&*poison), Some(&*poison))
    );
    let alone = harness.log.invocations.iter().filter(|batch| **batch == [poison.clone()]).count();
    assert_eq!(alone, 2, "the isolated record gets 1 + MaximumRetryAttempts invocations");
    // In order: halves run left first, so successes come in sequence-number order.
    let order: Vec<String> = harness.log.delivered_ok.concat();
    assert_eq!(order, seqs(&all).into_iter().filter(|s| *s != poison).collect::<Vec<_>>());
    assert_eq!(harness.log.checkpoints.last(), Some(&seq(7)));
}

#[test]
fn rule_15_splitting_does_not_consume_retries() {
    // E6: with MaximumRetryAttempts 0 every split would exhaust the quota if it counted.
    let mut harness = Harness::new(bisecting(0));
    harness.machine.offer(records(8, T0, 1));
    harness.run(failing_on(seq(5)));
    let sizes: Vec<usize> = harness.log.invocations.iter().map(Vec::len).collect();
    // [0..8] fails; [0..4] ok; [4..8] fails; [4,5] fails; [4] ok; [5] fails, given up; [6,7] ok.
    assert_eq!(sizes, vec![8, 4, 4, 2, 1, 1, 2]);
    assert_eq!(harness.log.discards.len(), 1);
    assert_eq!(harness.log.discard_json(0)["KinesisBatchInfo"]["startSequenceNumber"], seq(5));
}

#[test]
fn rule_15_without_bisect_the_whole_batch_is_discarded() {
    let mut harness = Harness::new(settings().with_maximum_retry_attempts(0).unwrap());
    harness.machine.offer(records(8, T0, 1));
    harness.run(failing_on(seq(5)));
    assert_eq!(harness.log.invocations.len(), 1);
    assert_eq!(harness.log.discard_json(0)["KinesisBatchInfo"]["batchSize"], 8);
}

#[test]
fn rule_15_a_partial_response_does_not_bisect() {
    // R7: with bisect and partial responses on, a partial response cuts at the failure instead.
    let both = bisecting(0).with_report_batch_item_failures(true);
    let mut harness = Harness::new(both);
    harness.machine.offer(records(8, T0, 1));
    let poison = seq(5);
    harness.run(|batch| {
        if batch.iter().any(|r| r.sequence_number == poison) {
            Outcome::Returned { reported: ItemFailures::of([poison.as_str()]) }
        } else {
            Outcome::success()
        }
    });
    let sizes: Vec<usize> = harness.log.invocations.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![8, 3], "cut at the failure, then the rest as one batch, no halves");
    assert_eq!(harness.log.discard_json(0)["KinesisBatchInfo"]["batchSize"], 3);
}

// --- E2: failures before the function runs --------------------------------------------------

#[test]
fn e2_throttles_are_retried_without_consuming_retries() {
    let mut harness = Harness::new(settings().with_maximum_retry_attempts(0).unwrap());
    harness.machine.offer(records(3, T0, 1));
    let mut throttles = 5;
    harness.run(|_| {
        if throttles > 0 {
            throttles -= 1;
            Outcome::NotInvoked(InvokeFailure::Throttled)
        } else {
            Outcome::success()
        }
    });
    assert_eq!(harness.log.invocations.len(), 6);
    assert!(harness.log.discards.is_empty(), "MaximumRetryAttempts 0 was not used up by throttles");
    assert_eq!(harness.log.checkpoints, vec![seq(2)]);
}

#[test]
fn e2_throttles_end_only_when_records_pass_their_maximum_age() {
    let aged = settings().with_maximum_retry_attempts(0).unwrap().with_maximum_record_age(60).unwrap();
    let mut harness = Harness::new(aged);
    harness.machine.offer(records(1, T0, 1));
    harness.run(|_| Outcome::NotInvoked(InvokeFailure::ServiceError));
    assert!(harness.log.invocations.len() > 1);
    assert_eq!(harness.log.discard_json(0)["requestContext"]["condition"], "RecordAgeExceeded");
}

// --- P7: ParallelizationFactor --------------------------------------------------------------

/// Runs rounds in which every invocation in flight completes at once, in reverse order (the worst
/// case for ordering); `fails` decides a batch's outcome. Returns the most batches in flight and
/// whether the machine went idle within `max_rounds`.
fn run_concurrently(
    harness: &mut Harness,
    max_rounds: usize,
    mut fails: impl FnMut(&[RecordMeta]) -> bool,
) -> (usize, bool) {
    let mut most_in_flight = 0;
    for _ in 0..max_rounds {
        let mut in_flight = Vec::new();
        loop {
            match harness.machine.poll(harness.now) {
                Step::Invoke(invocation) => in_flight.push(invocation),
                Step::WaitUntil(at) if in_flight.is_empty() => harness.now = at,
                Step::WaitUntil(_) | Step::Idle => break,
                effect => harness.note_effect(effect),
            }
        }
        if in_flight.is_empty() {
            return (most_in_flight, true);
        }
        most_in_flight = most_in_flight.max(in_flight.len());
        harness.now += 10;
        for invocation in in_flight.into_iter().rev() {
            let outcome = if fails(&invocation.records) { function_error() } else { Outcome::success() };
            harness.note_invocation(&invocation, &outcome);
            harness.machine.complete(invocation.id, outcome, harness.now).unwrap();
        }
    }
    (most_in_flight, false)
}

#[test]
fn p7_parallelization_factor_runs_batches_concurrently_and_keeps_per_key_order() {
    let parallel = settings().with_parallelization_factor(4).unwrap().with_batch_size(5).unwrap();
    let mut harness = Harness::new(parallel);
    let all = records(200, T0, 40);
    harness.machine.offer(all.clone());
    let lanes: HashSet<u128> = all.iter().map(|r| labs_core::partition::hash_key(&r.ordering_key) % 4).collect();
    assert_eq!(lanes.len(), 4, "the keys cover every lane");
    let (most, finished) = run_concurrently(&mut harness, 1_000, |_| false);
    assert!(finished);
    assert_eq!(most, 4, "up to ParallelizationFactor batches in flight");

    let key_of: BTreeMap<String, String> =
        all.iter().map(|r| (r.sequence_number.clone(), r.ordering_key.clone())).collect();
    let mut per_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for sequence_number in harness.log.delivered_ok.concat() {
        per_key.entry(&key_of[&sequence_number]).or_default().push(sequence_number.parse().unwrap());
    }
    assert_eq!(per_key.len(), 40);
    for (key, order) in per_key {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{key} out of order: {order:?}");
    }
    let checkpoints: Vec<u64> = harness.log.checkpoints.iter().map(|c| c.parse().unwrap()).collect();
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]), "the checkpoint only moves forward");
    assert_eq!(harness.log.checkpoints.last(), Some(&seq(199)));
}

#[test]
fn p7_a_blocked_lane_holds_the_checkpoint_but_not_the_other_lanes() {
    let parallel = settings().with_parallelization_factor(4).unwrap().with_batch_size(2).unwrap();
    let mut harness = Harness::new(parallel);
    let all = records(40, T0, 8);
    harness.machine.offer(all.clone());
    let poison = all[3].clone();
    // Unlimited retries: the poison's lane stays blocked for as long as we run.
    let (_, finished) =
        run_concurrently(&mut harness, 50, |batch| batch.iter().any(|r| r.sequence_number == poison.sequence_number));
    assert!(!finished);
    let poison_seq: u64 = poison.sequence_number.parse().unwrap();
    let checkpoints: Vec<u64> = harness.log.checkpoints.iter().map(|c| c.parse().unwrap()).collect();
    assert!(!checkpoints.is_empty() && checkpoints.iter().all(|c| *c < poison_seq), "held below the poison");
    let ok = harness.log.delivered_ok.concat();
    let delivered: Vec<&RecordMeta> =
        ok.iter().map(|s| all.iter().find(|r| &r.sequence_number == s).unwrap()).collect();
    assert!(
        delivered.iter().filter(|r| r.sequence_number.parse::<u64>().unwrap() > poison_seq).count() >= 20,
        "the other lanes kept going"
    );
    assert!(
        delivered
            .iter()
            .all(|r| r.ordering_key != poison.ordering_key || r.sequence_number.parse::<u64>().unwrap() < poison_seq),
        "nothing of the poison's key passes it"
    );
}

// --- Checkpoints and restarts ---------------------------------------------------------------

/// Kills the runner after every `kill_every` invocations and restarts it from the last stored
/// checkpoint, re-reading the shard after it, as the runner does.
fn survives_restarts(parallelization: u32, kill_every: usize) {
    let configured = settings()
        .with_parallelization_factor(parallelization)
        .unwrap()
        .with_batch_size(4)
        .unwrap()
        .with_bisect(true)
        .with_maximum_retry_attempts(1)
        .unwrap();
    let all = records(60, T0, 5);
    let mut checkpoint: Option<String> = None;
    let mut delivered: HashSet<String> = HashSet::new();
    let mut discarded: HashSet<String> = HashSet::new();
    let mut calls = 0;
    for _restart in 0..100 {
        let mut harness = Harness::resuming(configured.clone(), checkpoint.clone());
        // The shard re-read from the checkpoint: the machine must ignore what is behind it.
        harness.machine.offer(all.clone());
        harness.run_for(kill_every, &mut |batch: &[RecordMeta]| {
            calls += 1;
            // Every 7th call fails, and one record is a poison.
            if calls % 7 == 0 || batch.iter().any(|r| r.sequence_number == seq(33)) {
                function_error()
            } else {
                Outcome::success()
            }
        });
        delivered.extend(harness.log.delivered_ok.concat());
        for discard in &harness.log.discards {
            let range = discard.record.batch.range();
            let (start, end): (u64, u64) =
                (range.start_sequence_number.parse().unwrap(), range.end_sequence_number.parse().unwrap());
            discarded.extend(all.iter().map(|r| r.sequence_number.clone()).filter(|s| {
                let s: u64 = s.parse().unwrap();
                start <= s && s <= end
            }));
        }
        if let Some(last) = harness.log.checkpoints.last() {
            checkpoint = Some(last.clone());
        }
        if checkpoint.as_deref() == Some(seq(59).as_str()) {
            break;
        }
    }
    assert_eq!(checkpoint, Some(seq(59)), "the shard was finished");
    for record in &all {
        let s = &record.sequence_number;
        assert!(delivered.contains(s) || discarded.contains(s), "{s} was skipped");
    }
    assert!(discarded.contains(&seq(33)) && !delivered.contains(&seq(33)));
}

#[test]
fn checkpoint_only_after_success_so_a_restart_never_skips_a_record() {
    survives_restarts(1, 8);
}

#[test]
fn checkpoint_under_parallelization_never_skips_a_record_across_restarts() {
    survives_restarts(3, 10);
}
