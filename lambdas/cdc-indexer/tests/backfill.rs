//! The backfill (initial snapshot) against the in-memory store, alone and raced with the indexer.
//! Every scenario ends by comparing the index with `expected_index` of the final table.

use std::collections::BTreeSet;
use std::sync::Arc;

use cdc_indexer::backfill::{SNAPSHOT_SEQUENCE_NUMBER, snapshot_of};
use cdc_indexer::store::{CheckpointCommit, MAX_BACKFILL_ROWS};
use cdc_indexer::synthetic::{self, stream_record};
use cdc_indexer::{BackfillReport, Checkpoint, Event, IndexStore, MemoryStore, backfill_products, process_event};
use labs_core::search_index::{Product, apply_ops, diff_index, expected_index, product_terms, workload};

fn product(id: &str, name: &str) -> Product {
    Product { id: id.into(), name: name.into(), ..Default::default() }
}

fn words(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|w| w.to_string()).collect()
}

fn terms_of(store: &MemoryStore, product_id: &str) -> BTreeSet<String> {
    store.index().into_iter().filter(|(_, id)| id == product_id).map(|(t, _)| t).collect()
}

fn assert_index_matches<'a>(store: &MemoryStore, table: impl IntoIterator<Item = &'a Product>) {
    let diff = diff_index(&expected_index(table), &store.index());
    assert!(diff.is_empty(), "index differs from the table: {diff:#?}");
}

async fn index(store: &MemoryStore, event: &Event) {
    let report = process_event(store, event).await.expect("batch indexed");
    assert_eq!(report.records, report.applied + report.stale_skipped + report.collapsed, "{report:?}");
}

fn report(scanned: u64, written: u64, already_covered: u64) -> BackfillReport {
    BackfillReport { scanned, written, already_covered }
}

#[tokio::test]
async fn products_without_a_checkpoint_are_written_at_the_snapshot_position() {
    let store = MemoryStore::new();
    let scan = [product("p-1", "red wool hat"), product("p-2", "oak desk"), product("p-3", "")];
    assert_eq!(backfill_products(&store, &scan).await.unwrap(), report(3, 3, 0));
    assert_index_matches(&store, &scan);
    assert!(store.snapshot().index.values().all(|seq| seq == SNAPSHOT_SEQUENCE_NUMBER));
    let cp = store.checkpoint("p-1").unwrap();
    assert_eq!((cp.seq.as_str(), cp.deleted), (SNAPSHOT_SEQUENCE_NUMBER, false));
    assert_eq!(cp.terms, vec!["hat".to_string(), "red".into(), "wool".into()]);
    // A product without words still gets its checkpoint: the log covers it from then on.
    assert!(store.checkpoint("p-3").unwrap().terms.is_empty());

    // Every logged change is newer than the snapshot, so the indexer applies it on top.
    let modify = synthetic::event(vec![stream_record("100", Some(&scan[0]), Some(&product("p-1", "red cap")))]);
    let applied = process_event(&store, &modify).await.unwrap();
    assert_eq!((applied.applied, applied.stale_skipped), (1, 0));
    assert_eq!(terms_of(&store, "p-1"), words(&["cap", "red"]));
    assert_index_matches(&store, &[product("p-1", "red cap"), scan[1].clone(), scan[2].clone()]);
}

#[tokio::test]
async fn a_product_the_log_already_covers_is_skipped_and_keeps_the_logs_rows() {
    let store = MemoryStore::new();
    let (old, new) = (product("p-1", "red hat"), product("p-1", "blue cap"));
    // p-1 predates the stream; its change reaches the indexer before the (older) scan is loaded.
    index(&store, &synthetic::event(vec![stream_record("100", Some(&old), Some(&new))])).await;
    let before = store.snapshot();
    let other = product("p-2", "oak desk");
    assert_eq!(backfill_products(&store, &[old, other.clone()]).await.unwrap(), report(2, 1, 1));
    assert_eq!(terms_of(&store, "p-1"), words(&["blue", "cap"]));
    assert_eq!(store.checkpoint("p-1"), before.checkpoints.get("p-1").cloned());
    assert!(store.snapshot().index.iter().filter(|((_, id), _)| id == "p-1").all(|(_, seq)| seq == "100"));
    assert_index_matches(&store, &[new, other]);
}

#[tokio::test]
async fn a_product_deleted_through_the_log_is_not_resurrected_by_a_stale_scan() {
    let desk = product("p-1", "oak desk");
    let remove = synthetic::event(vec![stream_record("100", Some(&desk), None)]);

    // The scan read the desk; the indexer applied its REMOVE before the backfill wrote it.
    let store = Arc::new(MemoryStore::new());
    let indexer = Arc::clone(&store);
    let logged = remove.clone();
    store.before_next_backfill(move || async move { index(&indexer, &logged).await });
    assert_eq!(backfill_products(&*store, std::slice::from_ref(&desk)).await.unwrap(), report(1, 0, 1));
    assert!(store.index().is_empty());
    assert!(store.checkpoint("p-1").unwrap().deleted);
    assert_eq!(store.snapshot().backfills, 0);

    // The backfill wrote it first: the REMOVE is newer than the snapshot and deletes it.
    let store = MemoryStore::new();
    assert_eq!(backfill_products(&store, std::slice::from_ref(&desk)).await.unwrap(), report(1, 1, 0));
    index(&store, &remove).await;
    assert!(store.index().is_empty());
    assert!(store.checkpoint("p-1").unwrap().deleted);
    // And a later backfill of the same stale scan stays skipped.
    assert_eq!(backfill_products(&store, &[desk]).await.unwrap(), report(1, 0, 1));
    assert!(store.index().is_empty());
}

#[tokio::test]
async fn running_the_backfill_twice_is_idempotent() {
    let table = apply_ops(&workload(3, 200, 40));
    let scan: Vec<Product> = table.values().cloned().collect();
    let store = MemoryStore::new();
    let n = scan.len() as u64;
    assert_eq!(backfill_products(&store, &scan).await.unwrap(), report(n, n, 0));
    let first = store.snapshot();
    assert_eq!(backfill_products(&store, &scan).await.unwrap(), report(n, 0, n));
    let second = store.snapshot();
    assert_eq!((first.index, first.checkpoints, first.backfills), (second.index, second.checkpoints, second.backfills));
    assert_index_matches(&store, table.values());
    assert_eq!(backfill_products(&store, &[]).await.unwrap(), report(0, 0, 0));
}

#[tokio::test]
async fn the_memory_store_backfill_is_conditional_and_all_or_nothing() {
    let store = MemoryStore::new();
    let (cp, rows) = snapshot_of(&product("p-1", "red hat"));
    assert!(store.backfill_product(&cp, &rows).await.unwrap());
    // A second call with other rows writes none of them.
    let (cp2, rows2) = snapshot_of(&product("p-1", "green mug"));
    assert!(!store.backfill_product(&cp2, &rows2).await.unwrap());
    assert_eq!(terms_of(&store, "p-1"), words(&["hat", "red"]));
    assert_eq!(store.checkpoint("p-1"), Some(cp));

    // A tombstone counts as a checkpoint.
    let tombstone = Checkpoint { product_id: "p-2".into(), seq: "100".into(), terms: vec![], deleted: true };
    store.commit_checkpoints(vec![CheckpointCommit { checkpoint: tombstone, expected_seq: None }]).await.unwrap();
    let (cp, rows) = snapshot_of(&product("p-2", "oak desk"));
    assert!(!store.backfill_product(&cp, &rows).await.unwrap());
    assert!(terms_of(&store, "p-2").is_empty());
}

#[tokio::test]
async fn a_product_the_store_cannot_take_fails_the_backfill_before_anything_is_written() {
    let store = MemoryStore::new();
    let name = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let largest = product("p-1", &name(MAX_BACKFILL_ROWS));
    let too_large = product("p-2", &name(MAX_BACKFILL_ROWS + 1));
    let err = backfill_products(&store, &[largest.clone(), too_large]).await.unwrap_err().to_string();
    assert!(err.contains("p-2") && err.contains("100 terms") && err.contains("99 rows"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(store.index().is_empty() && store.checkpoint("p-1").is_none());

    let err = backfill_products(&store, &[product("#stats", "x")]).await.unwrap_err().to_string();
    assert!(err.contains("reserved"), "{err}");

    assert_eq!(backfill_products(&store, &[largest]).await.unwrap(), report(1, 1, 0));
    assert_eq!(terms_of(&store, "p-1").len(), MAX_BACKFILL_ROWS);
}

/// The indexer reads "no checkpoint", a backfill commits its checkpoint ("0") and rows, then the
/// indexer's conditional commit fails. The winner is not newer than the change, so the batch
/// fails and is retried (as the event source mapping would), and the retry applies the change on
/// top of the backfill. Scans older and newer than the change both end right.
#[tokio::test]
async fn a_backfill_between_the_indexers_read_and_commit_fails_the_batch_and_the_retry_applies_it() {
    let (old, new, newer) = (product("p-1", "red hat"), product("p-1", "blue cap"), product("p-1", "green mug"));
    let modify = synthetic::event(vec![stream_record("100", Some(&old), Some(&new))]);
    let later = synthetic::event(vec![stream_record("200", Some(&new), Some(&newer))]);
    let remove = synthetic::event(vec![stream_record("100", Some(&old), None)]);

    // (batches of the log, what the scan read, the table at the end)
    let cases: [(Vec<&Event>, &Product, Option<&Product>); 4] = [
        (vec![&remove], &old, None),
        (vec![&modify], &old, Some(&new)),
        (vec![&modify], &new, Some(&new)),
        (vec![&modify, &later], &newer, Some(&newer)),
    ];
    for (batches, scanned, last) in cases {
        let store = MemoryStore::new();
        let scanned = scanned.clone();
        store.before_next_commit(move |state| {
            let (cp, rows) = snapshot_of(&scanned);
            assert!(state.backfill_product(&cp, &rows).unwrap());
        });
        let err = process_event(&store, batches[0]).await.unwrap_err().to_string();
        assert!(err.contains("is not newer than change 100"), "{err}");
        assert_eq!(store.checkpoint("p-1").unwrap().seq, SNAPSHOT_SEQUENCE_NUMBER);
        assert_eq!(store.stats().batches, 0, "a failed batch records no counters");

        for batch in &batches {
            index(&store, batch).await;
        }
        assert_index_matches(&store, last);
        let cp = store.checkpoint("p-1").unwrap();
        assert_eq!(cp.deleted, last.is_none());
        if last.is_none() {
            assert!(store.index().is_empty(), "the removed product must not be resurrected");
        } else {
            assert!(terms_of(&store, "p-1").is_disjoint(&words(&["red"])), "old words are gone");
        }
    }
}

/// A small deterministic generator, for the interleavings below.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Products that predate the stream, then logged changes (updates, deletes and re-inserts of some
/// of those products). Each product is scanned at its own moment (a scan is not a snapshot),
/// the scan is loaded in pages between indexer batches, and some batches are delivered twice or
/// lose a checkpoint race to a page of the backfill. The index always ends equal to the table.
#[tokio::test]
async fn any_interleaving_of_scan_backfill_and_indexer_converges() {
    let mut total = BackfillReport::default();
    let mut raced = 0;
    for seed in 0..24u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seed + 1));
        // The log touches the first 40 of the 50 products that predate it, and no others.
        let legacy = apply_ops(&workload(seed + 100, 100, 50));
        let ops = workload(seed, 240, 40);
        let mut final_table = legacy.clone();
        let records = synthetic::stream_records(&mut final_table, &ops, 10_000_000_000_000_000_000);

        // The table after each prefix of the log; each product is read at a moment of its own.
        let mut states = vec![legacy.clone()];
        for record in &records {
            let mut table = states.last().unwrap().clone();
            if record.event_name == "REMOVE" {
                let old: Product = serde_dynamo::from_item(record.change.old_image.clone()).unwrap();
                table.remove(&old.id);
            } else {
                let new: Product = serde_dynamo::from_item(record.change.new_image.clone()).unwrap();
                table.insert(new.id.clone(), new);
            }
            states.push(table);
        }
        let ids: BTreeSet<String> = states.iter().flat_map(|s| s.keys().cloned()).collect();
        let scan: Vec<Product> = ids.iter().filter_map(|id| states[rng.below(states.len())].get(id).cloned()).collect();

        let batches: Vec<Event> = records.chunks(1 + rng.below(12)).map(|c| synthetic::event(c.to_vec())).collect();
        let pages: Vec<&[Product]> = scan.chunks(1 + rng.below(10)).collect();
        // Page i is loaded before batch at[i] is delivered (batches.len(): after the last one).
        let mut at: Vec<usize> = pages.iter().map(|_| rng.below(batches.len() + 1)).collect();
        at.sort_unstable();

        let store = MemoryStore::new();
        let mut pages_left = pages.iter().zip(&at).peekable();
        for (i, batch) in batches.iter().enumerate() {
            let mut delivered = false;
            while let Some((page, _)) = pages_left.next_if(|(_, at)| **at == i) {
                // A batch's first delivery always commits checkpoints, so the hook runs then.
                if !delivered && rng.below(3) == 0 {
                    // The page commits between this batch's checkpoint read and its commit.
                    let page = page.to_vec();
                    store.before_next_commit(move |state| {
                        for p in &page {
                            let (cp, rows) = snapshot_of(p);
                            state.backfill_product(&cp, &rows).unwrap();
                        }
                    });
                    delivered = process_event(&store, batch).await.is_ok();
                    raced += 1;
                } else {
                    let r = backfill_products(&store, page).await.unwrap();
                    total.written += r.written;
                    total.already_covered += r.already_covered;
                }
            }
            index(&store, batch).await;
            if rng.below(4) == 0 {
                index(&store, batch).await;
            }
        }
        for (page, _) in pages_left {
            let r = backfill_products(&store, page).await.unwrap();
            total.written += r.written;
            total.already_covered += r.already_covered;
        }

        let diff = diff_index(&expected_index(final_table.values()), &store.index());
        assert!(diff.is_empty(), "seed {seed}: {diff:#?}");
        for (id, p) in &final_table {
            let cp = store.checkpoint(id).unwrap_or_else(|| panic!("seed {seed}: no checkpoint for {id}"));
            assert!(!cp.deleted);
            assert_eq!(cp.terms.iter().cloned().collect::<BTreeSet<_>>(), product_terms(p), "seed {seed}: {id}");
        }
    }
    // Every path was taken: written from the scan, skipped as covered, raced with a commit.
    assert!(total.written > 0 && total.already_covered > 0 && raced > 0, "{total:?}, raced {raced}");
}
