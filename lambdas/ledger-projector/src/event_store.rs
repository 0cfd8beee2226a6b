//! The event store the `labs` CLI appends to: the trait, and an in-memory implementation for
//! tests. The DynamoDB implementation is in [`crate::dynamo`].
//!
//! - Events: one row per (account, version), a [`StoredEvent`]. An append is conditional on the
//!   version being free, so of two commands decided on the same state only one gets in; a
//!   transfer's two events go in one transaction, both or neither.
//! - Rejections: one row per refused command.
//! - State tables (snapshots, compacted states): one [`Account`] per account, replaced only by a
//!   later version.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use labs_core::ledger::{Account, Rejection, StoredEvent};
use thiserror::Error;

use crate::error::StoreError;

/// TransactWriteItems holds at most 100 items.
pub const MAX_APPEND: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppendError {
    /// Another writer appended at this version first: reload and decide again.
    #[error("account {account_id} already has version {version}")]
    Conflict { account_id: String, version: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks an append's arguments: 1 to [`MAX_APPEND`] events, no account twice.
pub fn check_append(events: &[StoredEvent]) -> Result<(), StoreError> {
    if events.is_empty() || events.len() > MAX_APPEND {
        return Err(StoreError::Other(format!("an append takes 1 to {MAX_APPEND} events, not {}", events.len())));
    }
    let mut accounts: Vec<&str> = events.iter().map(|e| e.account_id.as_str()).collect();
    accounts.sort_unstable();
    if accounts.windows(2).any(|w| w[0] == w[1]) {
        return Err(StoreError::Other("an append takes at most one event per account".into()));
    }
    Ok(())
}

pub trait EventStore {
    /// The events of `account_id` after version `after` (0: all), in version order, read
    /// consistently.
    fn load(&self, account_id: &str, after: u64) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// Appends `events` atomically, each only if its (account, version) is free.
    fn append(&self, events: &[StoredEvent]) -> impl Future<Output = Result<(), AppendError>> + Send;

    /// Logs a refused command (idempotent: one row per command id).
    fn record_rejection(&self, rejection: &Rejection) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A table of account states keyed by account: snapshots, or compacted states.
pub trait StateTable {
    fn get(&self, account_id: &str) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Stores `state` unless the table already holds this or a later version of the account.
    /// Returns whether it was written.
    fn put_if_newer(&self, state: &Account) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

type Hook = Box<dyn FnOnce(&mut BTreeMap<(String, u64), StoredEvent>) + Send>;

/// An in-memory [`EventStore`] with the same conditional semantics as the DynamoDB one, and a
/// hook to play a concurrent writer.
#[derive(Default)]
pub struct MemoryEventStore {
    events: Mutex<BTreeMap<(String, u64), StoredEvent>>,
    rejections: Mutex<BTreeMap<String, Rejection>>,
    before_append: Mutex<Vec<Hook>>,
    loads: Mutex<usize>,
}

impl MemoryEventStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event, by account and version.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn rejections(&self) -> Vec<Rejection> {
        self.rejections.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// `load` calls so far.
    pub fn loads(&self) -> usize {
        *self.loads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `hook` on the rows just before the next append checks its conditions: another
    /// writer getting in between a command's load and its append.
    pub fn before_next_append(&self, hook: impl FnOnce(&mut BTreeMap<(String, u64), StoredEvent>) + Send + 'static) {
        self.before_append.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(hook));
    }
}

impl EventStore for MemoryEventStore {
    async fn load(&self, account_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        *self.loads.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let from = (account_id.to_owned(), after.saturating_add(1));
        let to = (account_id.to_owned(), u64::MAX);
        Ok(events.range(from..=to).map(|(_, event)| event.clone()).collect())
    }

    async fn append(&self, new: &[StoredEvent]) -> Result<(), AppendError> {
        check_append(new)?;
        let hook = {
            let mut hooks = self.before_append.lock().unwrap_or_else(|p| p.into_inner());
            if hooks.is_empty() { None } else { Some(hooks.remove(0)) }
        };
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hook) = hook {
            hook(&mut events);
        }
        if let Some(taken) = new.iter().find(|e| events.contains_key(&(e.account_id.clone(), e.version))) {
            return Err(AppendError::Conflict { account_id: taken.account_id.clone(), version: taken.version });
        }
        for event in new {
            events.insert((event.account_id.clone(), event.version), event.clone());
        }
        Ok(())
    }

    async fn record_rejection(&self, rejection: &Rejection) -> Result<(), StoreError> {
        let mut rejections = self.rejections.lock().unwrap_or_else(|p| p.into_inner());
        rejections.insert(rejection.command_id.clone(), rejection.clone());
        Ok(())
    }
}

/// An in-memory [`StateTable`].
#[derive(Debug, Default)]
pub struct MemoryStateTable {
    rows: Mutex<BTreeMap<String, Account>>,
}

impl MemoryStateTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rows(&self) -> BTreeMap<String, Account> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl StateTable for MemoryStateTable {
    async fn get(&self, account_id: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.rows.lock().unwrap_or_else(|p| p.into_inner()).get(account_id).cloned())
    }

    async fn put_if_newer(&self, state: &Account) -> Result<bool, StoreError> {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if rows.get(&state.account_id).is_some_and(|row| row.version >= state.version) {
            return Ok(false);
        }
        rows.insert(state.account_id.clone(), state.clone());
        Ok(true)
    }
}
