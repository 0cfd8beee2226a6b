//! Where the index and the checkpoints live: the trait the apply step needs, its item shapes, and
//! an in-memory implementation for tests and for handler-only benchmarks.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Mutex;

use labs_core::search_index::{IndexEntry, MAX_TERM_LEN, Term};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::plan::STATS_ID;

/// A row of the index table: partition key `term`, sort key `product_id`, and `seq`, the stream
/// sequence number of the change that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndexItem {
    pub term: String,
    pub product_id: String,
    pub seq: String,
}

impl IndexItem {
    pub fn entry(&self) -> IndexEntry {
        (self.term.clone(), self.product_id.clone())
    }
}

/// An index row to put, borrowed from the plan: its term, the product id, and the sequence number
/// of the change that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRow<'a> {
    pub term: RowTerm<'a>,
    pub product_id: &'a str,
    pub seq: &'a str,
}

/// The key of an index row to delete, borrowed like [`IndexRow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexKey<'a> {
    pub term: RowTerm<'a>,
    pub product_id: &'a str,
}

/// The term of an index row: as a product's text has it (the term is its lowercase), or as a
/// checkpoint recorded it (taken as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowTerm<'a> {
    Text(Term<'a>),
    Recorded(&'a str),
}

impl<'a> RowTerm<'a> {
    /// The term, lowercased into `buffer` if need be.
    pub fn as_str<'b>(&self, buffer: &'b mut [u8; MAX_TERM_LEN]) -> &'b str
    where
        'a: 'b,
    {
        match self {
            RowTerm::Text(term) => term.lowercase(buffer),
            RowTerm::Recorded(term) => term,
        }
    }

    pub fn to_owned_term(&self) -> String {
        match self {
            RowTerm::Text(term) => term.to_lowercase(),
            RowTerm::Recorded(term) => (*term).to_owned(),
        }
    }
}

/// A row of the checkpoint table (partition key `product_id`): the last change applied to a
/// product and the terms it is indexed under since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub product_id: String,
    /// Stream sequence number (decimal string) of the last applied change.
    pub seq: String,
    /// Terms currently indexed for the product (a list, so it may be empty).
    #[serde(default)]
    pub terms: Vec<String>,
    /// Whether the last applied change was a REMOVE.
    #[serde(default)]
    pub deleted: bool,
}

/// A checkpoint write, conditional on the stored `seq` still being what was read (`None`: no
/// checkpoint). DynamoDB compares strings as text, not as numbers, so "lower than mine" is checked
/// in code when reading and enforced as compare-and-swap when writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointCommit {
    pub checkpoint: Checkpoint,
    pub expected_seq: Option<String>,
}

/// The counters of the checkpoint table's `#stats` item, added to once per batch. Also the shape
/// to read that item back with (`serde_dynamo::from_item`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchStats {
    /// Invocations that got as far as recording their counters.
    pub batches: u64,
    /// Stream records received, duplicates included.
    pub records: u64,
    pub inserts: u64,
    pub modifies: u64,
    pub removes: u64,
    /// Records whose change was written to the index (at most one per product per batch).
    pub applied: u64,
    /// Records at or below the product's checkpoint (redeliveries, or changes older than one
    /// already applied), and changes that lost a checkpoint race to another writer.
    pub stale_skipped: u64,
    /// Records superseded by a later change to the same product in the same batch.
    pub collapsed: u64,
}

impl BatchStats {
    pub fn add(&mut self, other: &BatchStats) {
        self.batches += other.batches;
        self.records += other.records;
        self.inserts += other.inserts;
        self.modifies += other.modifies;
        self.removes += other.removes;
        self.applied += other.applied;
        self.stale_skipped += other.stale_skipped;
        self.collapsed += other.collapsed;
    }

    /// The counters as `(attribute name, value)` pairs, in a fixed order.
    pub fn counters(&self) -> [(&'static str, u64); 8] {
        [
            ("batches", self.batches),
            ("records", self.records),
            ("inserts", self.inserts),
            ("modifies", self.modifies),
            ("removes", self.removes),
            ("applied", self.applied),
            ("stale_skipped", self.stale_skipped),
            ("collapsed", self.collapsed),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} failed: {message}")]
    Dynamo { operation: &'static str, message: String },
    #[error("{0}")]
    Other(String),
}

/// Index rows one [`IndexStore::backfill_product`] call may write: DynamoDB's TransactWriteItems
/// holds at most 100 items, the checkpoint and 99 rows. Both stores enforce it.
pub const MAX_BACKFILL_ROWS: usize = 99;

/// Checks the arguments of [`IndexStore::backfill_product`]: a real product id, rows of that
/// product only, no term twice, at most [`MAX_BACKFILL_ROWS`].
pub fn check_backfill(checkpoint: &Checkpoint, rows: &[IndexItem]) -> Result<(), StoreError> {
    let id = &checkpoint.product_id;
    if id.is_empty() || id == STATS_ID {
        return Err(StoreError::Other(format!("cannot backfill product id {id:?}: it is empty or reserved")));
    }
    if rows.len() > MAX_BACKFILL_ROWS {
        return Err(StoreError::Other(format!(
            "cannot backfill product {id}: it has {} terms, but its checkpoint and index rows must be written in \
             one DynamoDB transaction, which holds at most 100 items ({MAX_BACKFILL_ROWS} rows); write the item \
             again so that the stream indexes it instead",
            rows.len()
        )));
    }
    if let Some(row) = rows.iter().find(|row| row.product_id != *id) {
        return Err(StoreError::Other(format!("backfill of {id} was given a row of product {}", row.product_id)));
    }
    let distinct: BTreeSet<&String> = rows.iter().map(|row| &row.term).collect();
    if distinct.len() != rows.len() {
        return Err(StoreError::Other(format!("backfill of {id} was given the same term twice")));
    }
    Ok(())
}

/// Storage for the index and the checkpoints. Every write must be idempotent except
/// `commit_checkpoints` and `backfill_product`, which are conditional.
pub trait IndexStore {
    /// Strongly consistent reads of the checkpoints of `product_ids` (distinct). Absent ones are
    /// left out of the map.
    fn get_checkpoints<I: AsRef<str> + Sync>(
        &self,
        product_ids: &[I],
    ) -> impl Future<Output = Result<HashMap<String, Checkpoint>, StoreError>> + Send;

    /// Puts and deletes index rows. No key appears twice across `puts` and `deletes`. Borrowed:
    /// a store copies only what it keeps or sends (a large batch's rows by the hundred thousand).
    fn write_index(
        &self,
        puts: &[IndexRow<'_>],
        deletes: &[IndexKey<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes each checkpoint if its condition holds. Returns, per commit and in order, whether
    /// it was written (`false`: the condition failed, another writer got there first). Owned, as
    /// in `write_index`.
    fn commit_checkpoints(
        &self,
        commits: Vec<CheckpointCommit>,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// Adds `stats` to the `#stats` counters.
    fn add_stats(&self, stats: &BatchStats) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Loads one scanned product (see [`crate::backfill`]): atomically creates `checkpoint` and
    /// puts `rows`, only if the product has no checkpoint yet. Returns `false`, having written
    /// nothing, if it had one (live or deleted: the change log already covers the product). Fails
    /// if [`check_backfill`] refuses the arguments.
    fn backfill_product(
        &self,
        checkpoint: &Checkpoint,
        rows: &[IndexItem],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// An index entry `(term, product_id)`, owned or borrowed, so that [`MemoryState::index`] (keyed
/// by owned pairs) can be searched with borrowed ones, without copying them into a key first.
trait EntryKey {
    fn parts(&self) -> (&str, &str);
}

impl EntryKey for IndexEntry {
    fn parts(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl EntryKey for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        *self
    }
}

impl<'a> Borrow<dyn EntryKey + 'a> for IndexEntry {
    fn borrow(&self) -> &(dyn EntryKey + 'a) {
        self
    }
}

// Hashed and compared as the pair of strings is, as `Borrow` requires.
impl Hash for dyn EntryKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn EntryKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn EntryKey + '_ {}

type Hook = Box<dyn FnOnce(&mut MemoryState) + Send>;
type AsyncHook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Everything a [`MemoryStore`] holds.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    /// Index rows: `(term, product_id)` → `seq`. Hashed, not ordered: a large batch puts and
    /// deletes rows by the hundred thousand, and a tree of string pairs made that the handler's
    /// largest cost (nothing reads the rows in order; [`MemoryStore::index`] sorts them). With
    /// foldhash, not std's DoS-resistant SipHash, which took a third of the writes' time.
    pub index: HashMap<IndexEntry, String, foldhash::fast::RandomState>,
    pub checkpoints: BTreeMap<String, Checkpoint>,
    pub stats: BatchStats,
    /// Calls made, for tests that count round trips.
    pub index_writes: u64,
    pub checkpoint_commits: u64,
    /// `backfill_product` calls that wrote (returned true).
    pub backfills: u64,
}

impl MemoryState {
    /// [`IndexStore::backfill_product`] on this state, in one step (the store's lock makes it
    /// atomic). Public so that a hook can play a backfill committing at a chosen moment.
    pub fn backfill_product(&mut self, checkpoint: &Checkpoint, rows: &[IndexItem]) -> Result<bool, StoreError> {
        check_backfill(checkpoint, rows)?;
        if self.checkpoints.contains_key(&checkpoint.product_id) {
            return Ok(false);
        }
        self.checkpoints.insert(checkpoint.product_id.clone(), checkpoint.clone());
        for row in rows {
            self.index.insert(row.entry(), row.seq.clone());
        }
        self.backfills += 1;
        Ok(true)
    }
}

/// An in-memory [`IndexStore`] with the same conditional semantics as the DynamoDB one, plus
/// fault injection for tests.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
    /// Number of upcoming `commit_checkpoints` calls that fail without writing anything.
    failing_commits: Mutex<usize>,
    /// Run against the state just before the next `commit_checkpoints` (a concurrent writer).
    before_commit: Mutex<Option<Hook>>,
    /// Awaited at the start of the next `backfill_product`, before its atomic step.
    before_backfill: Mutex<Option<AsyncHook>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `index` rows (with sequence number "0") and no checkpoints, as
    /// an index built by some other means than [`crate::backfill`] would be.
    pub fn with_index(index: impl IntoIterator<Item = IndexEntry>) -> Self {
        let store = Self::new();
        store.state().index = index.into_iter().map(|entry| (entry, "0".to_owned())).collect();
        store
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of everything stored.
    pub fn snapshot(&self) -> MemoryState {
        self.state().clone()
    }

    /// The index rows as `(term, product_id)` pairs.
    pub fn index(&self) -> BTreeSet<IndexEntry> {
        self.state().index.keys().cloned().collect()
    }

    pub fn checkpoint(&self, product_id: &str) -> Option<Checkpoint> {
        self.state().checkpoints.get(product_id).cloned()
    }

    pub fn stats(&self) -> BatchStats {
        self.state().stats
    }

    /// Makes the next `n` checkpoint commits fail with an error after the index writes, as if the
    /// function crashed or timed out between the two.
    pub fn fail_next_commits(&self, n: usize) {
        *self.failing_commits.lock().unwrap() = n;
    }

    /// Runs `hook` on the state just before the next checkpoint commit, to play a concurrent
    /// writer that slips in between the checkpoint read and the commit.
    pub fn before_next_commit(&self, hook: impl FnOnce(&mut MemoryState) + Send + 'static) {
        *self.before_commit.lock().unwrap() = Some(Box::new(hook));
    }

    /// Awaits `hook` at the start of the next `backfill_product`, before the check and the write
    /// (which happen in one step). A test can run an indexer batch there, through a clone of an
    /// `Arc<MemoryStore>`, to play changes the log delivers after the scan read the product.
    pub fn before_next_backfill<F, Fut>(&self, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        *self.before_backfill.lock().unwrap() = Some(Box::new(move || Box::pin(hook())));
    }
}

impl IndexStore for MemoryStore {
    async fn get_checkpoints<I: AsRef<str> + Sync>(
        &self,
        product_ids: &[I],
    ) -> Result<HashMap<String, Checkpoint>, StoreError> {
        let state = self.state();
        Ok(product_ids
            .iter()
            .filter_map(|id| state.checkpoints.get(id.as_ref()).map(|cp| (id.as_ref().to_owned(), cp.clone())))
            .collect())
    }

    async fn write_index(&self, puts: &[IndexRow<'_>], deletes: &[IndexKey<'_>]) -> Result<(), StoreError> {
        let mut state = self.state();
        state.index_writes += 1;
        state.index.reserve(puts.len());
        let mut buffer = [0u8; MAX_TERM_LEN];
        for row in puts {
            let term = row.term.as_str(&mut buffer);
            // A row already there keeps its strings; only a new one allocates its own.
            match state.index.get_mut(&(term, row.product_id) as &dyn EntryKey) {
                Some(seq) => row.seq.clone_into(seq),
                None => {
                    state.index.insert((term.to_owned(), row.product_id.to_owned()), row.seq.to_owned());
                }
            }
        }
        for key in deletes {
            let term = key.term.as_str(&mut buffer);
            state.index.remove(&(term, key.product_id) as &dyn EntryKey);
        }
        Ok(())
    }

    async fn commit_checkpoints(&self, commits: Vec<CheckpointCommit>) -> Result<Vec<bool>, StoreError> {
        {
            let mut failing = self.failing_commits.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(StoreError::Other("injected failure before the checkpoint write".into()));
            }
        }
        let hook = self.before_commit.lock().unwrap().take();
        let mut state = self.state();
        if let Some(hook) = hook {
            hook(&mut state);
        }
        state.checkpoint_commits += 1;
        Ok(commits
            .into_iter()
            .map(|CheckpointCommit { checkpoint, expected_seq }| {
                match (state.checkpoints.get_mut(&checkpoint.product_id), expected_seq) {
                    (Some(stored), Some(expected)) if stored.seq == expected => *stored = checkpoint,
                    (None, None) => {
                        state.checkpoints.insert(checkpoint.product_id.clone(), checkpoint);
                    }
                    _ => return false,
                }
                true
            })
            .collect())
    }

    async fn add_stats(&self, stats: &BatchStats) -> Result<(), StoreError> {
        self.state().stats.add(stats);
        Ok(())
    }

    async fn backfill_product(&self, checkpoint: &Checkpoint, rows: &[IndexItem]) -> Result<bool, StoreError> {
        let hook = self.before_backfill.lock().unwrap().take();
        if let Some(hook) = hook {
            hook().await;
        }
        self.state().backfill_product(checkpoint, rows)
    }
}

#[cfg(test)]
mod tests {
    use labs_core::search_index::text_terms;

    use super::*;

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    fn entry(term: &str, product_id: &str) -> IndexEntry {
        (term.to_owned(), product_id.to_owned())
    }

    #[test]
    fn borrowed_rows_find_the_owned_ones() {
        let store = MemoryStore::with_index([entry("Hat", "p-1"), entry("cap", "p-1")]);
        let text = "Hat cap";
        let terms: Vec<Term> = text_terms(text).collect();
        let (hat, cap) = (RowTerm::Text(terms[0]), RowTerm::Text(terms[1]));
        let put = |term, seq| IndexRow { term, product_id: "p-1", seq };
        run(store.write_index(&[put(hat, "5"), put(cap, "6")], &[])).unwrap();
        let index = store.snapshot().index;
        // "Hat" in a text is the term "hat": a new row; the foreign row "Hat" is another key.
        assert_eq!(index.len(), 3);
        assert_eq!(index.get(&entry("hat", "p-1")).map(String::as_str), Some("5"));
        assert_eq!(index.get(&entry("cap", "p-1")).map(String::as_str), Some("6"), "rewritten in place");
        assert_eq!(index.get(&entry("Hat", "p-1")).map(String::as_str), Some("0"));

        let key = |term, product_id| IndexKey { term, product_id };
        let deletes = [key(hat, "p-1"), key(RowTerm::Recorded("Hat"), "p-1"), key(cap, "p-2")];
        run(store.write_index(&[], &deletes)).unwrap();
        assert_eq!(store.index(), [entry("cap", "p-1")].into_iter().collect());
    }
}
