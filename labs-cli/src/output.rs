//! How results reach the learner: tables for people, JSON (`--json`) for scripts, progress bars
//! on stderr for long work. Colour only when the terminal wants it (`NO_COLOR` is respected).

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

fn plain() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) || !std::io::stderr().is_terminal()
}

fn draw_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() }
}

pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("static template"));
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub fn progress(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), draw_target());
    let template = if plain() {
        "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}"
    } else {
        "{msg} [{bar:30.cyan/blue}] {pos}/{len} {per_sec} eta {eta}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("static template").progress_chars("=> "));
    bar.set_message(message.to_owned());
    bar
}

/// A running count with its rate, for work without an end (`labs produce --rate R`).
pub fn rate_line(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target());
    bar.set_style(
        ProgressStyle::with_template("{msg}: {pos} records, {per_sec} ({elapsed})").expect("static template"),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

/// The `p`-th percentile (0.0 to 1.0) of sorted latencies, in milliseconds; 0 when there are none.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Prints one line of results on stdout. When the reader has gone (`labs consume | head`), labs
/// stops quietly, as `cat` does: nothing it prints is worth an error then.
pub fn line(text: impl AsRef<str>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", text.as_ref()).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(err) => {
            eprintln!("error: cannot write to stdout: {err}");
            std::process::exit(1);
        }
    }
}

/// Says something to the learner on stderr, so stdout stays clean for `--json`.
pub fn note(text: impl AsRef<str>) {
    eprintln!("{}", text.as_ref());
}

#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
    /// Nothing at all: for a step inside a larger command that reports on its own.
    pub quiet: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json, quiet: false }
    }

    pub fn quiet() -> Self {
        Self { json: false, quiet: true }
    }

    /// Prints a table, or in JSON mode nothing (the caller prints one JSON document at the end).
    pub fn table<R: IntoIterator<Item = String>>(
        &self,
        title: &str,
        header: &[&str],
        rows: impl IntoIterator<Item = R>,
    ) {
        if self.json || self.quiet {
            return;
        }
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic).set_header(header);
        for row in rows {
            table.add_row(row.into_iter().collect::<Vec<_>>());
        }
        if !title.is_empty() {
            line(title);
        }
        line(table.to_string());
    }

    /// Prose for people; silent in JSON mode.
    pub fn say(&self, text: impl AsRef<str>) {
        if !self.json && !self.quiet {
            line(text);
        }
    }

    pub fn json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        if self.json {
            line(serde_json::to_string_pretty(value)?);
        }
        Ok(())
    }
}
