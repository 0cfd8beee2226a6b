//! The indexer against the in-memory store, on JSON fixtures of DynamoDB stream events and on
//! synthetic workloads. Every scenario ends by comparing the index with
//! `labs_core::search_index::expected_index` of the products the stream implies.

use std::collections::{BTreeMap, BTreeSet};

use cdc_indexer::synthetic::{self, FIRST_SEQUENCE_NUMBER};
use cdc_indexer::{
    BatchReport, BatchStats, Checkpoint, Event, IndexItem, IndexStore, MemoryStore, handle, process_event,
    synthetic_batch,
};
use labs_core::search_index::{Product, apply_ops, diff_index, expected_index, search, workload};
use labs_core::sequence;
use lambda_runtime::{Context, LambdaEvent};

fn fixture(name: &str) -> Event {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The products table the events imply: every distinct record applied in sequence-number order.
fn truth(events: &[&Event]) -> BTreeMap<String, Product> {
    let mut records: Vec<_> = events.iter().flat_map(|e| &e.records).collect();
    records.sort_by(|a, b| {
        sequence::compare(a.change.sequence_number.as_deref().unwrap(), b.change.sequence_number.as_deref().unwrap())
    });
    records.dedup_by(|a, b| a.change.sequence_number == b.change.sequence_number);
    let mut table = BTreeMap::new();
    for record in records {
        if record.event_name == "REMOVE" {
            let id: BTreeMap<String, String> = serde_dynamo::from_item(record.change.keys.clone()).unwrap();
            table.remove(&id["id"]);
        } else {
            let p: Product = serde_dynamo::from_item(record.change.new_image.clone()).unwrap();
            table.insert(p.id.clone(), p);
        }
    }
    table
}

fn assert_index_matches(store: &MemoryStore, table: &BTreeMap<String, Product>) {
    let diff = diff_index(&expected_index(table.values()), &store.index());
    assert!(diff.is_empty(), "index differs from the table: {diff:#?}");
}

async fn index(store: &MemoryStore, event: &Event) -> BatchReport {
    let report = process_event(store, event).await.expect("batch indexed");
    assert_eq!(report.records, report.applied + report.stale_skipped + report.collapsed, "{report:?}");
    report
}

fn ids(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn terms_of(store: &MemoryStore, product_id: &str) -> BTreeSet<String> {
    store.index().into_iter().filter(|(_, id)| id == product_id).map(|(t, _)| t).collect()
}

#[tokio::test]
async fn insert_indexes_every_word() {
    let store = MemoryStore::new();
    let insert = fixture("insert.json");
    let report = index(&store, &insert).await;
    assert_eq!((report.records, report.inserts, report.applied, report.stale_skipped), (1, 1, 1, 0));
    assert_eq!(terms_of(&store, "p-0001"), ids(&["42", "handmade", "leather", "red", "shoes", "size", "soft"]));
    assert_eq!(search(&store.index(), "red shoes"), ids(&["p-0001"]));
    assert_index_matches(&store, &truth(&[&insert]));

    let seq = insert.records[0].change.sequence_number.clone().unwrap();
    let cp = store.checkpoint("p-0001").unwrap();
    assert_eq!(cp.seq, seq);
    assert!(!cp.deleted);
    assert_eq!(cp.terms.len(), 7);
    // Every index row records the change that wrote it.
    assert!(store.snapshot().index.values().all(|s| *s == seq));
    let stats = store.stats();
    assert_eq!((stats.batches, stats.records, stats.inserts, stats.applied), (1, 1, 1, 1));
}

#[tokio::test]
async fn modify_removes_words_that_left_and_adds_new_ones() {
    let store = MemoryStore::new();
    let (insert, modify) = (fixture("insert.json"), fixture("modify.json"));
    index(&store, &insert).await;
    let report = index(&store, &modify).await;
    assert_eq!((report.modifies, report.applied), (1, 1));
    assert_eq!(terms_of(&store, "p-0001"), ids(&["42", "blue", "boots", "leather", "size", "waterproof"]));
    // Every wanted word is put again (6, 3 of them new), and the 4 that left are deleted (red,
    // shoes, soft, handmade).
    assert_eq!((report.index_puts, report.index_deletes), (6, 4));
    assert!(search(&store.index(), "red shoes").is_empty());
    assert_eq!(search(&store.index(), "leather boots"), ids(&["p-0001"]));
    assert_index_matches(&store, &truth(&[&insert, &modify]));
}

#[tokio::test]
async fn remove_deletes_every_row_of_the_product() {
    let store = MemoryStore::new();
    let events = [fixture("insert.json"), fixture("modify.json"), fixture("remove.json")];
    for event in &events {
        index(&store, event).await;
    }
    assert!(store.index().is_empty());
    let cp = store.checkpoint("p-0001").unwrap();
    assert!(cp.deleted);
    assert!(cp.terms.is_empty());
    assert_eq!(store.stats().removes, 1);
    assert!(truth(&events.iter().collect::<Vec<_>>()).is_empty());
}

#[tokio::test]
async fn a_batch_delivered_twice_changes_nothing_the_second_time() {
    let store = MemoryStore::new();
    let batch = fixture("multi_change.json");
    let first = index(&store, &batch).await;
    let after_first = store.snapshot();
    let second = index(&store, &batch).await;
    assert_eq!(second.stale_skipped, second.records);
    assert_eq!((second.applied, second.collapsed, second.index_puts, second.index_deletes), (0, 0, 0, 0));
    let after_second = store.snapshot();
    assert_eq!(after_first.index, after_second.index);
    assert_eq!(after_first.checkpoints, after_second.checkpoints);
    assert_eq!(after_second.index_writes, after_first.index_writes, "a stale batch writes nothing");
    let stats = store.stats();
    assert_eq!(stats.batches, 2);
    assert_eq!(stats.records, 2 * first.records);
    assert_eq!(stats.stale_skipped, first.stale_skipped + second.records);
    assert_index_matches(&store, &truth(&[&batch]));
}

#[tokio::test]
async fn several_changes_to_one_item_collapse_to_the_last() {
    let store = MemoryStore::new();
    let batch = fixture("multi_change.json");
    let report = index(&store, &batch).await;
    assert_eq!((report.records, report.products), (6, 3));
    assert_eq!((report.inserts, report.modifies, report.removes), (3, 2, 1));
    assert_eq!((report.applied, report.collapsed, report.stale_skipped), (3, 3, 0));
    assert_eq!(terms_of(&store, "p-0002"), ids(&["hat", "navy", "wool"]));
    assert!(terms_of(&store, "p-0003").is_empty(), "inserted and removed in the same batch");
    assert!(store.checkpoint("p-0003").unwrap().deleted);
    assert_eq!(search(&store.index(), "wool"), ids(&["p-0002"]));
    assert_index_matches(&store, &truth(&[&batch]));
}

#[tokio::test]
async fn a_stale_change_never_wins_even_when_it_sorts_after_as_text() {
    let (newer, older) = (fixture("lamp_newer.json"), fixture("lamp_older.json"));
    let newer_seq = newer.records[0].change.sequence_number.clone().unwrap();
    let older_seq = older.records[0].change.sequence_number.clone().unwrap();
    assert!(older_seq > newer_seq, "the trap: as text the older change looks newer");

    let store = MemoryStore::new();
    index(&store, &newer).await;
    let report = index(&store, &older).await;
    assert_eq!((report.applied, report.stale_skipped), (0, 1));
    assert_eq!(terms_of(&store, "p-0005"), ids(&["lamp", "linen", "vintage", "white"]));
    assert_eq!(store.checkpoint("p-0005").unwrap().seq, newer_seq);
    assert_index_matches(&store, &truth(&[&newer, &older]));

    // In one batch, in the wrong order, the newer one wins too.
    let store = MemoryStore::new();
    let both = synthetic::event([newer.records.clone(), older.records.clone()].concat());
    let report = index(&store, &both).await;
    assert_eq!((report.applied, report.collapsed), (1, 1));
    assert_eq!(terms_of(&store, "p-0005"), ids(&["lamp", "linen", "vintage", "white"]));
}

#[tokio::test]
async fn delete_then_reinsert() {
    let batch = fixture("delete_reinsert.json");
    let expected = ids(&["big", "glass", "mug", "yellow"]);

    // One record per batch.
    let store = MemoryStore::new();
    for record in &batch.records {
        index(&store, &synthetic::event(vec![record.clone()])).await;
    }
    assert_eq!(terms_of(&store, "p-0006"), expected);
    let cp = store.checkpoint("p-0006").unwrap();
    assert!(!cp.deleted);
    // The REMOVE delivered again later is stale: the product stays indexed.
    let report = index(&store, &synthetic::event(vec![batch.records[1].clone()])).await;
    assert_eq!(report.stale_skipped, 1);
    assert_eq!(terms_of(&store, "p-0006"), expected);
    assert_index_matches(&store, &truth(&[&batch]));

    // All three in one batch.
    let store = MemoryStore::new();
    let report = index(&store, &batch).await;
    assert_eq!((report.applied, report.collapsed), (1, 2));
    assert_eq!(terms_of(&store, "p-0006"), expected);
    assert_index_matches(&store, &truth(&[&batch]));
}

#[tokio::test]
async fn odd_text_does_not_panic() {
    let store = MemoryStore::new();
    let batch = fixture("odd_text.json");
    let report = index(&store, &batch).await;
    assert_eq!(report.applied, 7);
    assert!(terms_of(&store, "p-0100").is_empty());
    assert_eq!(terms_of(&store, "p-0101"), ids(&["br", "caf", "cr", "e", "l", "me"]));
    assert!(terms_of(&store, "p-0102").is_empty());
    assert_eq!(terms_of(&store, "p-0103"), ids(&["x"]));
    assert_eq!(
        terms_of(&store, "p-0104"),
        ids(&["1", "2026", "3", "42", "44", "a", "b2b", "c", "model", "size", "tabs"])
    );
    // The old unicode words are removed although there was no checkpoint (taken from OldImage).
    assert!(terms_of(&store, "p-0105").is_empty());
    assert_eq!(search(&store.index(), "only WORDS"), ids(&["p-0106"]));
    assert!(store.checkpoint("p-0100").unwrap().terms.is_empty());
    assert_index_matches(&store, &truth(&[&batch]));
}

#[tokio::test]
async fn an_undecodable_record_fails_the_whole_batch_clearly() {
    let store = MemoryStore::new();
    let batch = fixture("undecodable.json");
    let err = process_event(&store, &batch).await.unwrap_err().to_string();
    let event_id = batch.records[1].event_id.clone();
    assert!(err.contains(event_id.as_str()), "{err}");
    assert!(err.contains("NewImage does not decode into a Product"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    // Nothing was written, not even the counters: the batch will be retried as a whole.
    assert!(store.index().is_empty());
    assert!(store.checkpoint("p-0200").is_none());
    assert_eq!(store.stats(), BatchStats::default());

    // Through the Lambda handler the same.
    let err = handle(&store, LambdaEvent::new(batch, Context::default())).await.unwrap_err();
    assert!(err.to_string().contains(event_id.as_str()));
}

#[tokio::test]
async fn the_handler_answers_with_the_report() {
    let store = MemoryStore::new();
    let report = handle(&store, LambdaEvent::new(fixture("multi_change.json"), Context::default())).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["records"], 6);
    assert_eq!(json["applied"], 3);
    assert_eq!(json["collapsed"], 3);
}

#[tokio::test]
async fn an_empty_batch_only_counts_itself() {
    let store = MemoryStore::new();
    let report = index(&store, &Event::default()).await;
    assert_eq!(report, BatchReport::default());
    assert_eq!(store.stats(), BatchStats { batches: 1, ..Default::default() });
}

#[tokio::test]
async fn a_crash_before_the_checkpoint_write_is_repaired_by_the_retry() {
    let store = MemoryStore::new();
    let (insert, modify) = (fixture("insert.json"), fixture("modify.json"));
    index(&store, &insert).await;

    store.fail_next_commits(1);
    assert!(process_event(&store, &modify).await.is_err());
    // The index moved ahead of the checkpoint.
    assert!(terms_of(&store, "p-0001").contains("boots"));
    assert_eq!(store.checkpoint("p-0001").unwrap().seq, insert.records[0].change.sequence_number.clone().unwrap());

    let report = index(&store, &modify).await;
    assert_eq!(report.applied, 1);
    assert_index_matches(&store, &truth(&[&insert, &modify]));
    // A crashed attempt of a newer batch that was then superseded is also cleaned up.
    store.fail_next_commits(1);
    assert!(process_event(&store, &fixture("remove.json")).await.is_err());
    index(&store, &fixture("remove.json")).await;
    assert!(store.index().is_empty());
}

/// An attempt crashes after its index writes, and the event source mapping then drops the batch
/// (retry limit): the index holds that change's rows, the checkpoint does not know. The next
/// change puts all its rows, so words the dropped attempt deleted come back.
#[tokio::test]
async fn rows_lost_to_a_crashed_and_dropped_batch_are_put_back_by_the_next_change() {
    let product = |name: &str| Product { id: "p-0300".into(), name: name.into(), ..Default::default() };
    let (v1, v2, v3) = (product("red hat"), product("blue cap"), product("red hat"));
    let insert = synthetic::event(vec![synthetic::stream_record("100", None, Some(&v1))]);
    let dropped = synthetic::event(vec![synthetic::stream_record("200", Some(&v1), Some(&v2))]);
    let back = synthetic::event(vec![synthetic::stream_record("300", Some(&v2), Some(&v3))]);
    let store = MemoryStore::new();
    index(&store, &insert).await;
    store.fail_next_commits(1);
    assert!(process_event(&store, &dropped).await.is_err());
    assert_eq!(terms_of(&store, "p-0300"), ids(&["blue", "cap"]));
    assert_eq!(store.checkpoint("p-0300").unwrap().terms, vec!["hat".to_string(), "red".to_string()]);

    // The checkpoint says "hat" and "red" are indexed; they are not. Both are put anyway.
    let report = index(&store, &back).await;
    assert_eq!((report.applied, report.index_puts, report.index_deletes), (1, 2, 2));
    assert_eq!(terms_of(&store, "p-0300"), ids(&["hat", "red"]));
    assert_index_matches(&store, &truth(&[&insert, &dropped, &back]));
}

#[tokio::test]
async fn a_backfilled_index_without_checkpoints_is_cleaned_using_the_old_image() {
    let (insert, modify) = (fixture("insert.json"), fixture("modify.json"));
    // The index was built from the table before the function ran: no checkpoints.
    let store = MemoryStore::with_index(expected_index(truth(&[&insert]).values()));
    index(&store, &modify).await;
    assert_index_matches(&store, &truth(&[&insert, &modify]));
}

#[tokio::test]
async fn losing_a_checkpoint_race_counts_as_stale_and_restores_the_winner() {
    let store = MemoryStore::new();
    let (insert, modify) = (fixture("insert.json"), fixture("modify.json"));
    index(&store, &insert).await;
    // Another writer applies a newer change (a renamed product) between our read and our commit.
    store.before_next_commit(|state| {
        let seq = "4421584500000000017450499999".to_owned();
        state.index.retain(|(_, id), _| id != "p-0001");
        for term in ["green", "hat"] {
            let item = IndexItem { term: term.into(), product_id: "p-0001".into(), seq: seq.clone() };
            state.index.insert(item.entry(), seq.clone());
        }
        let terms = vec!["green".into(), "hat".into()];
        state
            .checkpoints
            .insert("p-0001".into(), Checkpoint { product_id: "p-0001".into(), seq, terms, deleted: false });
    });
    let report = index(&store, &modify).await;
    assert_eq!((report.conflicts, report.stale_skipped, report.applied), (1, 1, 0));
    assert_eq!(terms_of(&store, "p-0001"), ids(&["green", "hat"]));
}

type Mutation = Box<dyn Fn(&mut aws_lambda_events::event::dynamodb::EventRecord)>;

#[tokio::test]
async fn the_reserved_stats_id_and_other_bad_records_are_rejected() {
    let good = fixture("insert.json").records[0].clone();
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|r| r.event_name = "UPSERT".into()), "unknown eventName \"UPSERT\""),
        (Box::new(|r| r.change.sequence_number = None), "no dynamodb.SequenceNumber"),
        (Box::new(|r| r.change.sequence_number = Some("12a".into())), "is not a decimal number"),
        (Box::new(|r| r.change.keys.clear()), "Keys has no \"id\" attribute"),
        (
            Box::new(|r| {
                r.change.keys.insert("id".into(), serde_dynamo::AttributeValue::N("7".into()));
            }),
            "found a number (7)",
        ),
        (
            Box::new(|r| {
                r.change.keys.insert("id".into(), serde_dynamo::AttributeValue::S("#stats".into()));
                r.change.new_image.insert("id".into(), serde_dynamo::AttributeValue::S("#stats".into()));
            }),
            "reserved",
        ),
        (
            Box::new(|r| {
                r.change.new_image.insert("id".into(), serde_dynamo::AttributeValue::S("p-9".into()));
            }),
            "NewImage has id \"p-9\"",
        ),
        (
            Box::new(|r| {
                r.change.new_image.insert("version".into(), serde_dynamo::AttributeValue::S("two".into()));
            }),
            "NewImage does not decode",
        ),
        (Box::new(|r| r.change.new_image.clear()), "INSERT record has no dynamodb.NewImage"),
    ];
    for (mutate, expected) in cases {
        let mut record = good.clone();
        mutate(&mut record);
        let store = MemoryStore::new();
        let err = process_event(&store, &synthetic::event(vec![good.clone(), record])).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        assert!(message.starts_with("stream record #1 (eventID "), "{message}");
        assert!(store.index().is_empty());
    }
}

/// A long workload cut into batches, each delivered once, some twice in a row (a retried
/// batch), and some earlier batches again much later (stale redeliveries).
#[tokio::test]
async fn a_synthetic_workload_with_retries_and_redeliveries_converges() {
    let ops = workload(11, 3000, 120);
    let records = synthetic::stream_records(&mut BTreeMap::new(), &ops, 99_999_999_999_999_999_000);
    let batches: Vec<Event> = records.chunks(37).map(|c| synthetic::event(c.to_vec())).collect();
    let store = MemoryStore::new();
    let mut total = BatchStats::default();
    for (i, batch) in batches.iter().enumerate() {
        if i % 7 == 3 {
            store.fail_next_commits(1);
            assert!(process_event(&store, batch).await.is_err());
        }
        total.add(&index(&store, batch).await.stats());
        if i % 5 == 0 {
            total.add(&index(&store, batch).await.stats());
        }
        if i % 9 == 8 {
            total.add(&index(&store, &batches[i / 2]).await.stats());
        }
    }
    assert_eq!(store.stats(), total);
    assert!(total.stale_skipped > 0 && total.collapsed > 0 && total.removes > 0);
    let table = apply_ops(&ops);
    assert_index_matches(&store, &table);
    // Every live product has a checkpoint with exactly its terms; deleted ones say so.
    for (id, p) in &table {
        let cp = store.checkpoint(id).unwrap();
        assert!(!cp.deleted);
        assert_eq!(cp.terms.iter().cloned().collect::<BTreeSet<_>>(), labs_core::search_index::product_terms(p));
    }
}

#[tokio::test]
async fn one_large_synthetic_batch() {
    let n = 5000;
    let batch = synthetic_batch(n, 3);
    assert!(batch.records.len() <= n && batch.records.len() > n * 9 / 10);
    assert_eq!(batch.records[0].change.sequence_number.as_deref(), Some(FIRST_SEQUENCE_NUMBER.to_string().as_str()));
    let store = MemoryStore::new();
    let report = index(&store, &batch).await;
    assert_eq!(report.records as usize, batch.records.len());
    assert!(report.collapsed > 0);
    assert_index_matches(&store, &apply_ops(&synthetic::synthetic_ops(n, 3)));
    assert_eq!(synthetic_batch(n, 3), batch, "deterministic");
}

#[tokio::test]
async fn the_memory_store_commit_is_compare_and_swap() {
    let store = MemoryStore::new();
    let cp = |seq: &str| Checkpoint { product_id: "p".into(), seq: seq.into(), terms: vec![], deleted: false };
    let commit = |seq: &str, expected: Option<&str>| cdc_indexer::store::CheckpointCommit {
        checkpoint: cp(seq),
        expected_seq: expected.map(Into::into),
    };
    assert_eq!(store.commit_checkpoints(vec![commit("5", None)]).await.unwrap(), vec![true]);
    assert_eq!(store.commit_checkpoints(vec![commit("6", None)]).await.unwrap(), vec![false]);
    assert_eq!(store.commit_checkpoints(vec![commit("7", Some("4"))]).await.unwrap(), vec![false]);
    assert_eq!(store.commit_checkpoints(vec![commit("7", Some("5"))]).await.unwrap(), vec![true]);
    assert_eq!(store.checkpoint("p").unwrap().seq, "7");
}
