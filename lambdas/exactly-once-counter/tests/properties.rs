//! Property: however a shard's records are redelivered (a batch again after its answer was
//! lost, a replay from an older checkpoint with other batch boundaries) and whatever records the
//! producer wrote twice, the exactly-once totals are those of counting each purchase once, and
//! the naive totals are those of every delivery.

mod common;

use std::collections::BTreeSet;

use common::batch;
use exactly_once_counter::{BatchOutcome, MemoryStore, TotalsRow, process_batch};
use labs_core::purchases::{Purchase, UserTotal, delivered_totals, expected_totals};
use proptest::prelude::*;

/// The shard's records: distinct purchases, some written twice by a producer retry (the copy
/// lands later in the shard, with its own sequence number).
fn shard() -> impl Strategy<Value = Vec<Purchase>> {
    let purchases = prop::collection::vec((0..5u32, 1..10_000u64), 1..150);
    let copies = prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..10);
    (purchases, copies).prop_map(|(drawn, copies)| {
        let mut records: Vec<Purchase> = drawn
            .into_iter()
            .enumerate()
            .map(|(i, (user, amount))| Purchase {
                event_id: format!("p-e{i:06}"),
                user_id: format!("user-{user:03}"),
                amount,
                event_time: i as i64,
                user_seq: 0,
                fault: None,
            })
            .collect();
        for (original, later) in copies {
            let copy = records[original.index(records.len())].clone();
            let at = later.index(records.len() + 1);
            records.insert(at, copy);
        }
        records
    })
}

/// One step of the mapping: a batch from the checkpoint, delivered `times` times (the answer
/// lost in between), then possibly a replay from an older position.
#[derive(Debug, Clone)]
struct Step {
    size: usize,
    times: usize,
    rewind: Option<prop::sample::Index>,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (1..130usize, 1..4usize, prop::option::weighted(0.3, any::<prop::sample::Index>()))
        .prop_map(|(size, times, rewind)| Step { size, times, rewind });
    prop::collection::vec(step, 0..12)
}

fn totals(store: &MemoryStore, pick: fn(&TotalsRow) -> UserTotal) -> std::collections::BTreeMap<String, UserTotal> {
    store.totals().into_iter().map(|(user, row)| (user, pick(&row))).filter(|(_, t)| t.count > 0).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_redelivery_and_duplication_gives_the_totals_of_counting_each_purchase_once(
        records in shard(),
        steps in steps(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store = MemoryStore::default();
        let mut delivered: Vec<&Purchase> = Vec::new();
        let mut deliver = |range: std::ops::Range<usize>, request: usize| {
            let outcome = runtime.block_on(process_batch(&store, &batch(&records, range.clone()), &format!("req-{request}")));
            match outcome {
                Ok(BatchOutcome::Respond(response)) => assert!(response.batch_item_failures.is_empty()),
                other => panic!("a batch without faults is counted whole: {other:?}"),
            }
            delivered.extend(&records[range]);
        };
        let mut checkpoint = 0;
        let mut request = 0;
        for step in &steps {
            let end = (checkpoint + step.size).min(records.len());
            for _ in 0..step.times {
                request += 1;
                deliver(checkpoint..end, request);
            }
            checkpoint = match &step.rewind {
                Some(back) => back.index(end + 1),
                None => end,
            };
        }
        // The mapping reaches the end of the shard at last.
        if checkpoint < records.len() {
            deliver(checkpoint..records.len(), request + 1);
        }
        prop_assert_eq!(
            totals(&store, |r| UserTotal { total: r.total, count: r.count }),
            expected_totals(&records, &BTreeSet::new())
        );
        prop_assert_eq!(
            totals(&store, |r| UserTotal { total: r.naive_total, count: r.naive_count }),
            delivered_totals(delivered)
        );
        let distinct: BTreeSet<&str> = records.iter().map(|p| p.event_id.as_str()).collect();
        prop_assert_eq!(store.applied().len(), distinct.len());
    }
}
