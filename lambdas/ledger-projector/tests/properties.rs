//! Property: replaying the log in order from any checkpoint, in batches of any size, with
//! batches that fail part way and are retried, gives the projection of reading every event
//! once, and applies each event once.

use std::collections::BTreeMap;

use labs_core::ledger::projection::balances;
use labs_core::ledger::workload::{WorkloadSpec, generate};
use labs_core::ledger::{Account, Event, decide, evolve};
use ledger_projector::{MemoryBalances, ProjectError, project};
use proptest::prelude::*;

/// The events a seeded workload's commands produce, decided one after the other: the log, in
/// each account's version order, accounts interleaved as the commands came.
fn log(seed: u64, accounts: usize, commands: usize) -> Vec<Event> {
    let spec = WorkloadSpec { namespace: "p".into(), seed, accounts, commands, races: 2, invalid_percent: 10 };
    let mut states: BTreeMap<String, Account> = BTreeMap::new();
    let mut events = Vec::new();
    for command in generate(&spec).commands() {
        let Ok(new) = decide(&states, command) else { continue };
        for event in &new {
            let state = states.remove(&event.account_id).unwrap_or_else(|| Account::new(&event.account_id));
            states.insert(event.account_id.clone(), evolve(state, event));
        }
        events.extend(new);
    }
    events
}

/// One step of the mapping: a batch from the checkpoint, whose first delivery may fail at a
/// write (it is then delivered again), then possibly a replay from an older position.
#[derive(Debug, Clone)]
struct Step {
    size: usize,
    fails_once: bool,
    rewind: Option<prop::sample::Index>,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (1..40usize, prop::bool::weighted(0.2), prop::option::weighted(0.3, any::<prop::sample::Index>()))
        .prop_map(|(size, fails_once, rewind)| Step { size, fails_once, rewind });
    prop::collection::vec(step, 0..15)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn replaying_from_any_checkpoint_gives_the_projection_of_reading_once(
        seed in any::<u64>(),
        accounts in 1..5usize,
        commands in 0..60usize,
        steps in steps(),
    ) {
        let log = log(seed, accounts, commands);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store = MemoryBalances::new();
        let mut applied = 0;
        let mut checkpoint = 0;
        for step in &steps {
            let end = (checkpoint + step.size).min(log.len());
            if step.fails_once {
                store.fail_next_puts(1);
                // A batch with nothing new to write succeeds without writing.
                if let Ok(report) = runtime.block_on(project(&store, &log[checkpoint..end])) {
                    prop_assert_eq!(report.applied, 0);
                }
                store.fail_next_puts(0);
            }
            let report = runtime.block_on(project(&store, &log[checkpoint..end]));
            let report = report.map_err(|e: ProjectError| TestCaseError::fail(e.to_string()))?;
            applied += report.applied;
            checkpoint = match &step.rewind {
                Some(back) => back.index(end + 1),
                None => end,
            };
        }
        // The mapping reaches the end of the log at last.
        let rest = runtime.block_on(project(&store, &log[checkpoint..])).unwrap();
        applied += rest.applied;
        prop_assert_eq!(store.rows(), balances(&log).unwrap());
        prop_assert_eq!(applied, log.len(), "each event applied once");
    }
}
