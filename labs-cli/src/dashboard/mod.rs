//! `labs dashboard`: a page on 127.0.0.1 that watches what is provisioned under the prefix move.
//!
//! One poller per process (`poller.rs`) reads the target once a second and publishes a
//! [`Snapshot`](snapshot::Snapshot) as JSON on a `tokio::sync::watch` channel; every open tab
//! gets the same JSON through server-sent events (`server.rs`), so tabs never multiply the load
//! on the target. Each panel's reading is a small module (`present`, `streams`, `messaging`,
//! `examples_panel`) built on the driver, `triggers` and the examples' own readers. The page and
//! its script are compiled in (`page.html`, `app.js`): no CDN, works offline. It only reads.

mod examples_panel;
mod messaging;
mod poller;
mod present;
mod server;
mod snapshot;
mod streams;

pub use server::serve;
