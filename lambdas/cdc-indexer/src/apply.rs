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

use labs_core::search_index::IndexEntry;
use serde::Serialize;

use crate::plan::{BatchPlan, PlannedChange, is_after};
use crate::store::{BatchStats, Checkpoint, CheckpointCommit, IndexItem, IndexStore, StoreError};

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
struct Pending<'a> {
    change: &'a PlannedChange,
    /// Superseded records of this product at or below the checkpoint.
    stale_superseded: u64,
}

/// Applies `plan` to `store` and adds the batch's counters to the `#stats` item.
pub async fn apply_plan<S: IndexStore>(store: &S, plan: &BatchPlan) -> Result<BatchReport, StoreError> {
    let mut report = BatchReport {
        records: plan.records,
        products: plan.changes.len() as u64,
        inserts: plan.inserts,
        modifies: plan.modifies,
        removes: plan.removes,
        ..Default::default()
    };
    let ids: Vec<String> = plan.changes.iter().map(|c| c.product_id.clone()).collect();
    let checkpoints = if ids.is_empty() { HashMap::new() } else { store.get_checkpoints(&ids).await? };

    // Sized up front: growing vectors of a large batch's rows step by step copies them repeatedly.
    let mut pending = Vec::with_capacity(plan.changes.len());
    let mut puts = Vec::with_capacity(plan.changes.iter().map(|c| c.desired().len()).sum());
    let mut deletes = Vec::new();
    let mut commits = Vec::with_capacity(plan.changes.len());
    for change in &plan.changes {
        let checkpoint = checkpoints.get(&change.product_id);
        let records = 1 + change.superseded.len() as u64;
        if let Some(cp) = checkpoint
            && !is_after(&change.sequence_number, &cp.seq)
        {
            // A redelivery, or a change older than one already applied: it must not win.
            report.stale_skipped += records;
            continue;
        }
        let stale_superseded =
            checkpoint.map_or(0, |cp| change.superseded.iter().filter(|seq| !is_after(seq, &cp.seq)).count() as u64);
        let desired = change.desired();
        for term in desired {
            puts.push(IndexItem {
                term: term.clone(),
                product_id: change.product_id.clone(),
                seq: change.sequence_number.clone(),
            });
        }
        for term in maybe_indexed(change, checkpoint).filter(|t| !desired.contains(*t)) {
            deletes.push((term.clone(), change.product_id.clone()));
        }
        commits.push(CheckpointCommit {
            checkpoint: Checkpoint {
                product_id: change.product_id.clone(),
                seq: change.sequence_number.clone(),
                terms: desired.iter().cloned().collect(),
                deleted: change.is_delete(),
            },
            expected_seq: checkpoint.map(|cp| cp.seq.clone()),
        });
        pending.push(Pending { change, stale_superseded });
    }

    report.index_puts += puts.len() as u64;
    report.index_deletes += deletes.len() as u64;
    if !puts.is_empty() || !deletes.is_empty() {
        store.write_index(puts, deletes).await?;
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

/// What may be indexed for `change`'s product now, each term once: any term of this batch's
/// images (covers a backfilled index with no checkpoint, and crashed earlier attempts), and the
/// terms its checkpoint recorded.
fn maybe_indexed<'a>(
    change: &'a PlannedChange,
    checkpoint: Option<&'a Checkpoint>,
) -> impl Iterator<Item = &'a String> {
    // Usually there is no checkpoint, or it adds few terms: collect only those it adds.
    let recorded: BTreeSet<&String> =
        checkpoint.iter().flat_map(|cp| &cp.terms).filter(|t| !change.seen_terms.contains(*t)).collect();
    change.seen_terms.iter().chain(recorded)
}

/// Another writer committed a checkpoint for these products between our read and our commit, and
/// our index writes may have undone some of its rows. Re-read the winners' checkpoints and write
/// their terms back, removing the rows only we wanted. If a winner's checkpoint is not newer than
/// our change (it vanished, say), fail: the retried batch starts over from a fresh read.
async fn repair_lost_races<S: IndexStore>(
    store: &S,
    lost: &[&Pending<'_>],
    report: &mut BatchReport,
) -> Result<(), StoreError> {
    let ids: Vec<String> = lost.iter().map(|p| p.change.product_id.clone()).collect();
    let winners = store.get_checkpoints(&ids).await?;
    let mut puts = Vec::new();
    let mut deletes: Vec<IndexEntry> = Vec::new();
    for p in lost {
        let id = &p.change.product_id;
        let winner = match winners.get(id) {
            Some(w) if is_after(&w.seq, &p.change.sequence_number) => w,
            _ => {
                return Err(StoreError::Other(format!(
                    "checkpoint of {id} changed during the batch but is not newer than change {}",
                    p.change.sequence_number
                )));
            }
        };
        let winner_terms: BTreeSet<&String> = winner.terms.iter().collect();
        for term in &winner.terms {
            puts.push(IndexItem { term: term.clone(), product_id: id.clone(), seq: winner.seq.clone() });
        }
        for term in p.change.desired().iter().filter(|t| !winner_terms.contains(t)) {
            deletes.push((term.clone(), id.clone()));
        }
    }
    report.index_puts += puts.len() as u64;
    report.index_deletes += deletes.len() as u64;
    if !puts.is_empty() || !deletes.is_empty() {
        store.write_index(puts, deletes).await?;
    }
    Ok(())
}
