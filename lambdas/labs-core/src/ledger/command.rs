//! What a client asks of the ledger, and why it may be refused.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A request to change one or two accounts. It becomes events only if `decide` accepts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique per command; every event it produces and its rejection (if refused) name it.
    pub command_id: String,
    /// When it was issued (RFC 3339 UTC); its events occur then.
    pub issued_at: String,
    pub action: Action,
}

/// Amounts are in cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Open { account_id: String, owner: String },
    Deposit { account_id: String, amount: u64 },
    Withdraw { account_id: String, amount: u64 },
    Transfer { from: String, to: String, amount: u64 },
    Close { account_id: String },
}

impl Action {
    /// The accounts the action reads and appends to: one, or two for a transfer (source first).
    pub fn accounts(&self) -> Vec<&str> {
        match self {
            Action::Open { account_id, .. }
            | Action::Deposit { account_id, .. }
            | Action::Withdraw { account_id, .. }
            | Action::Close { account_id } => vec![account_id],
            Action::Transfer { from, to, .. } => vec![from, to],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Open { .. } => "open",
            Action::Deposit { .. } => "deposit",
            Action::Withdraw { .. } => "withdraw",
            Action::Transfer { .. } => "transfer",
            Action::Close { .. } => "close",
        }
    }
}

/// Why `decide` refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account was never opened")]
    NotOpened,
    #[error("the account is closed")]
    Closed,
    #[error("the amount must be positive")]
    ZeroAmount,
    #[error("the balance is {balance} cents, less than the {requested} requested")]
    InsufficientFunds { balance: u64, requested: u64 },
    #[error("a transfer needs two different accounts")]
    SameAccount,
    #[error("only an empty account can be closed; this one holds {balance} cents")]
    BalanceNotZero { balance: u64 },
    #[error("the balance would exceed the largest amount the ledger can hold")]
    Overflow,
}

/// A refused command, as it is logged: the account whose state refused it and the version of
/// that state, so that a reader can tell a stale refusal from a current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub command_id: String,
    pub account_id: String,
    /// The account's version when the command was checked (0: no events yet).
    pub checked_version: u64,
    #[serde(flatten)]
    pub reason: RejectReason,
}
