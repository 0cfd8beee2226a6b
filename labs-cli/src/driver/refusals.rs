//! Refusals made on the client: a stand-in for throttling on targets that never throttle (the
//! emulators), shared by the examples that teach what a refused entry costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use labs_core::orders::RefusalPlan;

use super::kinesis::Refuser;

/// A client-side stand-in for throttling, for targets that never throttle (the emulators):
/// refuses the entries its plan picks before they are sent and reports them failed with
/// `THROTTLED`. Like real refusals, refused entries are never written.
#[derive(Clone)]
pub struct Refusals(Arc<RefusalState>);

struct RefusalState {
    plan: RefusalPlan,
    calls: AtomicU64,
    refused: AtomicUsize,
}

impl Refusals {
    pub fn new(plan: RefusalPlan) -> Self {
        Self(Arc::new(RefusalState { plan, calls: AtomicU64::new(0), refused: AtomicUsize::new(0) }))
    }

    /// Entries refused so far.
    pub fn refused(&self) -> usize {
        self.0.refused.load(Ordering::SeqCst)
    }
}

impl Refuser for Refusals {
    /// Numbers one call and says, per entry, whether it is refused.
    fn pick(&self, entries: usize) -> Vec<bool> {
        let call = self.0.calls.fetch_add(1, Ordering::SeqCst);
        let picks: Vec<bool> = (0..entries).map(|entry| self.0.plan.refuses(call, entry as u64)).collect();
        self.0.refused.fetch_add(picks.iter().filter(|refused| **refused).count(), Ordering::SeqCst);
        picks
    }
}
