//! Where the balances projection lives: one row per account, an [`Account`] (the state as of the
//! row's `version`). The trait the projector needs, and an in-memory implementation.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use labs_core::ledger::Account;

use crate::error::StoreError;

pub trait BalanceStore {
    /// Strongly consistent reads of the rows of `account_ids` (distinct); absent ones are left out.
    fn get_rows(
        &self,
        account_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Account>, StoreError>> + Send;

    /// Writes `row` if the stored row is still at `expected_version` (0: no row). Returns whether
    /// it was written (`false`: another writer moved the row).
    fn put_row(&self, row: &Account, expected_version: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// An in-memory [`BalanceStore`] with the same conditional semantics as the DynamoDB one.
#[derive(Debug, Default)]
pub struct MemoryBalances {
    rows: Mutex<BTreeMap<String, Account>>,
    /// Upcoming `put_row` calls that fail without writing (a crash mid-batch).
    failing_puts: Mutex<usize>,
}

impl MemoryBalances {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rows(&self) -> BTreeMap<String, Account> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces a row as someone editing the table by hand would.
    pub fn overwrite(&self, row: Account) {
        self.rows.lock().unwrap_or_else(|p| p.into_inner()).insert(row.account_id.clone(), row);
    }

    pub fn fail_next_puts(&self, n: usize) {
        *self.failing_puts.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }
}

impl BalanceStore for MemoryBalances {
    async fn get_rows(&self, account_ids: &[String]) -> Result<HashMap<String, Account>, StoreError> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        Ok(account_ids.iter().filter_map(|id| rows.get(id).map(|row| (id.clone(), row.clone()))).collect())
    }

    async fn put_row(&self, row: &Account, expected_version: u64) -> Result<bool, StoreError> {
        {
            let mut failing = self.failing_puts.lock().unwrap_or_else(|p| p.into_inner());
            if *failing > 0 {
                *failing -= 1;
                return Err(StoreError::Other("injected failure of a balance write".into()));
            }
        }
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if rows.get(&row.account_id).map_or(0, |stored| stored.version) != expected_version {
            return Ok(false);
        }
        rows.insert(row.account_id.clone(), row.clone());
        Ok(true)
    }
}
