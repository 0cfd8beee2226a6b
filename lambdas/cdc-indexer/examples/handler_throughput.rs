//! The handler's in-process throughput, without the emulator: the path `labs bench example-3`
//! times (`process_event` on a synthetic batch, into an empty in-memory store), repeated.
//!
//! ```sh
//! cargo run --release -p cdc-indexer --example handler_throughput -- [RECORDS] [RUNS]
//! ```
//!
//! Each run gets a fresh batch and store, built outside the timing. Under
//! `valgrind --tool=callgrind --toggle-collect='*index_batch*'` with RUNS = 1, the instruction
//! count is the handler's alone.

use std::time::Instant;

use cdc_indexer::{BatchReport, Event, MemoryStore, process_event, synthetic_batch};

fn arg(position: usize, default: usize) -> usize {
    match std::env::args().nth(position) {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("argument {position} must be a whole number, got {text:?}");
            std::process::exit(2)
        }),
    }
}

/// What is timed, kept out of line so that callgrind can count it alone.
#[inline(never)]
fn index_batch(runtime: &tokio::runtime::Runtime, store: &MemoryStore, event: &Event) -> BatchReport {
    runtime.block_on(process_event(store, event)).expect("the synthetic batch indexes")
}

fn main() {
    let records = arg(1, 50_000);
    let runs = arg(2, 5).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let event = synthetic_batch(records, 7);
        let store = MemoryStore::default();
        let started = Instant::now();
        let report = index_batch(&runtime, &store, &event);
        let rate = event.records.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "{} records ({} products, {} index puts, {} deletes): {rate:.0} records/s",
            report.records, report.products, report.index_puts, report.index_deletes
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median {:.0} records/s, best {:.0} records/s", rates[runs / 2], rates[runs - 1]);
}
