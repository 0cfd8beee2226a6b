//! The effectful half: apply a [`BatchPlan`] to a store, guarded by per-product checkpoints.
//!
//! Order of writes, per batch: read the checkpoints; write every index row (idempotent puts and
//! deletes); then write each checkpoint, conditionally. A crash between the two leaves the index
//! ahead of the checkpoint, and the retried batch computes and writes the same rows again.
//!
//! An applied change puts *every* row it wants, not only those its checkpoint lacks: puts are
//! idempotent and cheap, and the checkpoint's terms only say what was indexed when it was written.
//! Rows may have gone since: an attempt of a newer change crashed after its index writes and that
//! change was then dropped (the event source mapping's retry limit), or a backfill raced with the
//! indexer. Putting them all makes each applied change repair the product's rows.

use std::collections::{BTreeSet, HashMap};

use labs_core::search_index::{MAX_TERM_LEN, Term};
use serde::Serialize;

use crate::plan::{BatchPlanRef, PlannedChangeRef, is_after};
use crate::store::{BatchStats, Checkpoint, CheckpointCommit, IndexKey, IndexRow, IndexStore, RowTerm, StoreError};

/// What one invocation did. The counters satisfy
/// `records == applied + stale_skipped + collapsed` and `applied <= products`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub records: u64,
    /// Distinct products in the batch.
    pub products: u64,
    pub inserts: u64,
    pub modifies: u64,
    pub removes: u64,
    pub applied: u64,
    pub stale_skipped: u64,
    pub collapsed: u64,
    /// Index rows put and deleted (including repairs after a lost race).
    pub index_puts: u64,
    pub index_deletes: u64,
    /// Checkpoint commits whose condition failed (counted in `stale_skipped` too).
    pub conflicts: u64,
}

impl BatchReport {
    /// The counters added to the `#stats` item for this batch.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            batches: 1,
            records: self.records,
            inserts: self.inserts,
            modifies: self.modifies,
            removes: self.removes,
            applied: self.applied,
            stale_skipped: self.stale_skipped,
            collapsed: self.collapsed,
        }
    }
}

/// A change that is newer than its checkpoint, with the index rows it needs.
struct Pending<'p, 'a> {
    change: &'p PlannedChangeRef<'a>,
    /// Superseded records of this product at or below the checkpoint.
    stale_superseded: u64,
}

/// Applies `plan` to `store` and adds the batch's counters to the `#stats` item.
pub async fn apply_plan<S: IndexStore>(store: &S, plan: &BatchPlanRef<'_>) -> Result<BatchReport, StoreError> {
    let mut report = BatchReport {
        records: plan.records,
        products: plan.changes.len() as u64,
        inserts: plan.inserts,
        modifies: plan.modifies,
        removes: plan.removes,
        ..Default::default()
    };
    let ids: Vec<&str> = plan.changes.iter().map(|c| c.product_id).collect();
    let checkpoints = if ids.is_empty() { HashMap::new() } else { store.get_checkpoints(&ids).await? };

    // Sized up front: growing vectors of a large batch's rows step by step copies them repeatedly.
    let mut pending = Vec::with_capacity(plan.changes.len());
    let mut puts = Vec::with_capacity(plan.changes.iter().map(|c| c.desired().len()).sum());
    let mut deletes = Vec::with_capacity(plan.changes.iter().map(|c| c.undesired_terms.len()).sum());
    let mut commits = Vec::with_capacity(plan.changes.len());
    for change in &plan.changes {
        let checkpoint = checkpoints.get(change.product_id);
        let records = 1 + change.superseded.len() as u64;
        if let Some(cp) = checkpoint
            && !is_after(change.sequence_number, &cp.seq)
        {
            // A redelivery, or a change older than one already applied: it must not win.
            report.stale_skipped += records;
            continue;
        }
        let stale_superseded =
            checkpoint.map_or(0, |cp| change.superseded.iter().filter(|seq| !is_after(seq, &cp.seq)).count() as u64);
        let (product_id, seq) = (change.product_id, change.sequence_number);
        let desired = change.desired();
        puts.extend(desired.iter().map(|&term| IndexRow { term: RowTerm::Text(term), product_id, seq }));
        deletes.extend(maybe_indexed(change, checkpoint).map(|term| IndexKey { term, product_id }));
        commits.push(CheckpointCommit {
            checkpoint: Checkpoint {
                product_id: product_id.to_owned(),
                seq: seq.to_owned(),
                terms: desired.iter().map(Term::to_lowercase).collect(),
                deleted: change.is_delete(),
            },
            expected_seq: checkpoint.map(|cp| cp.seq.clone()),
        });
        pending.push(Pending { change, stale_superseded });
    }

    report.index_puts += puts.len() as u64;
    report.index_deletes += deletes.len() as u64;
    if !puts.is_empty() || !deletes.is_empty() {
        store.write_index(&puts, &deletes).await?;
    }

    let written = if commits.is_empty() { Vec::new() } else { store.commit_checkpoints(commits).await? };
    let mut lost = Vec::new();
    for (p, ok) in pending.iter().zip(written) {
        let records = 1 + p.change.superseded.len() as u64;
        if ok {
            report.applied += 1;
            report.stale_skipped += p.stale_superseded;
            report.collapsed += records - 1 - p.stale_superseded;
        } else {
            report.conflicts += 1;
            report.stale_skipped += records;
            lost.push(p);
        }
    }
    if !lost.is_empty() {
        repair_lost_races(store, &lost, &mut report).await?;
    }

    store.add_stats(&report.stats()).await?;
    Ok(report)
}

/// What may be indexed for `change`'s product now but is not desired, each term once: any other
/// term of this batch's images (covers a backfilled index with no checkpoint, and crashed earlier
/// attempts), and the terms its checkpoint recorded.
fn maybe_indexed<'p, 'a>(
    change: &'p PlannedChangeRef<'a>,
    checkpoint: Option<&'a Checkpoint>,
) -> impl Iterator<Item = RowTerm<'a>> + 'p {
    // Usually there is no checkpoint, or it adds few terms: collect only those it adds.
    let known = |term: &str| {
        let found = |terms: &[Term]| terms.binary_search_by(|t| t.cmp_term(term)).is_ok();
        found(change.desired()) || found(&change.undesired_terms)
    };
    let recorded: BTreeSet<&str> =
        checkpoint.iter().flat_map(|cp| &cp.terms).map(String::as_str).filter(|t| !known(t)).collect();
    change.undesired_terms.iter().map(|&term| RowTerm::Text(term)).chain(recorded.into_iter().map(RowTerm::Recorded))
}

/// Another writer committed a checkpoint for these products between our read and our commit, and
/// our index writes may have undone some of its rows. Re-read the winners' checkpoints and write
/// their terms back, removing the rows only we wanted. If a winner's checkpoint is not newer than
/// our change (it vanished, say), fail: the retried batch starts over from a fresh read.
async fn repair_lost_races<S: IndexStore>(
    store: &S,
    lost: &[&Pending<'_, '_>],
    report: &mut BatchReport,
) -> Result<(), StoreError> {
    let ids: Vec<&str> = lost.iter().map(|p| p.change.product_id).collect();
    let winners = store.get_checkpoints(&ids).await?;
    let mut puts = Vec::new();
    let mut deletes = Vec::new();
    for p in lost {
        let product_id = p.change.product_id;
        let winner = match winners.get(product_id) {
            Some(w) if is_after(&w.seq, p.change.sequence_number) => w,
            _ => {
                return Err(StoreError::Other(format!(
                    "checkpoint of {product_id} changed during the batch but is not newer than change {}",
                    p.change.sequence_number
                )));
            }
        };
        let winner_terms: BTreeSet<&str> = winner.terms.iter().map(String::as_str).collect();
        puts.extend(winner.terms.iter().map(|term| IndexRow {
            term: RowTerm::Recorded(term),
            product_id,
            seq: &winner.seq,
        }));
        let mut buffer = [0u8; MAX_TERM_LEN];
        for &term in p.change.desired().iter().filter(|t| !winner_terms.contains(t.lowercase(&mut buffer))) {
            deletes.push(IndexKey { term: RowTerm::Text(term), product_id });
        }
    }
    report.index_puts += puts.len() as u64;
    report.index_deletes += deletes.len() as u64;
    if !puts.is_empty() || !deletes.is_empty() {
        store.write_index(&puts, &deletes).await?;
    }
    Ok(())
}
