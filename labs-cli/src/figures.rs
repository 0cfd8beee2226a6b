//! One row type for every speed figure `labs bench` reports, so the whole suite prints one table
//! (and one JSON document) without parsing what each bench printed. A figure is shown beside
//! its anchor, measured in the same run, since a shared machine's absolute numbers drift.

use serde::Serialize;

use crate::output::Output;

/// What a figure must reach to meet its goal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "bound")]
pub enum Goal {
    /// The value itself, at most this (latencies, sizes, memory).
    AtMost(f64),
    /// The value itself, at least this (throughputs).
    AtLeast(f64),
    /// value / anchor at least this.
    RatioAtLeast(f64),
}

/// A measurement of the same kind taken in the same run, to read the figure against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anchor {
    pub name: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Which bench measured it: `example-3`, `triggers`, `lambda`, `producer`.
    pub source: String,
    pub figure: String,
    pub value: f64,
    pub unit: &'static str,
    pub anchor: Option<Anchor>,
    pub goal: Option<Goal>,
}

impl Figure {
    pub fn new(source: impl Into<String>, figure: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self { source: source.into(), figure: figure.into(), value, unit, anchor: None, goal: None }
    }

    pub fn anchored(mut self, name: impl Into<String>, value: f64) -> Self {
        self.anchor = Some(Anchor { name: name.into(), value });
        self
    }

    pub fn goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }

    /// value / anchor, when there is an anchor that is not zero.
    pub fn ratio(&self) -> Option<f64> {
        self.anchor.as_ref().filter(|a| a.value != 0.0).map(|a| self.value / a.value)
    }

    /// Whether the goal is met; `None` without a goal, or for a ratio goal without a ratio.
    pub fn met(&self) -> Option<bool> {
        match self.goal? {
            Goal::AtMost(bound) => Some(self.value <= bound),
            Goal::AtLeast(bound) => Some(self.value >= bound),
            Goal::RatioAtLeast(bound) => self.ratio().map(|r| r >= bound),
        }
    }

    fn target_text(&self) -> String {
        match self.goal {
            None => String::new(),
            Some(Goal::AtMost(bound)) => format!("<= {} {}", number(bound), self.unit),
            Some(Goal::AtLeast(bound)) => format!(">= {} {}", number(bound), self.unit),
            Some(Goal::RatioAtLeast(bound)) => format!("ratio >= {bound:.2}x"),
        }
    }
}

/// Whole numbers without decimals, small ones with one or two.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// This process's peak resident memory in MiB (`VmHWM`), where `/proc` tells it.
pub fn peak_rss_mib() -> Option<f64> {
    parse_vm_hwm(&std::fs::read_to_string("/proc/self/status").ok()?)
}

fn parse_vm_hwm(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// The JSON row: a figure with its ratio and verdict worked out.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    figure: &'a Figure,
    ratio: Option<f64>,
    met: Option<bool>,
}

/// Prints the figures as one table (figure, value, anchor, ratio, target, met?), or as JSON.
pub fn print(title: &str, figures: &[Figure], out: Output) -> anyhow::Result<()> {
    out.table(
        title,
        &["source", "figure", "value", "anchor", "ratio", "target", "met?"],
        figures.iter().map(|f| {
            vec![
                f.source.clone(),
                f.figure.clone(),
                format!("{} {}", number(f.value), f.unit),
                f.anchor.as_ref().map(|a| format!("{}: {} {}", a.name, number(a.value), f.unit)).unwrap_or_default(),
                f.ratio().map(|r| format!("{r:.2}x")).unwrap_or_default(),
                f.target_text(),
                match f.met() {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
            ]
        }),
    );
    out.json(&figures.iter().map(|f| Row { figure: f, ratio: f.ratio(), met: f.met() }).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_judged_on_the_value_or_on_the_ratio_to_the_anchor() {
        let latency = Figure::new("x", "p50", 250.0, "ms").goal(Goal::AtMost(300.0));
        assert_eq!(latency.met(), Some(true));
        assert_eq!(Figure { value: 301.0, ..latency.clone() }.met(), Some(false));
        let speed =
            Figure::new("x", "rate", 900.0, "records/s").anchored("boto3", 1000.0).goal(Goal::RatioAtLeast(1.0));
        assert_eq!(speed.ratio(), Some(0.9));
        assert_eq!(speed.met(), Some(false));
        assert_eq!(
            Figure::new("x", "rate", 1.0, "/s").goal(Goal::RatioAtLeast(1.0)).met(),
            None,
            "no anchor, no verdict"
        );
        assert_eq!(Figure::new("x", "rate", 1.0, "/s").anchored("zero", 0.0).ratio(), None);
        assert_eq!(Figure::new("x", "size", 5.0, "MB").goal(Goal::AtLeast(4.0)).met(), Some(true));
        assert_eq!(Figure::new("x", "size", 5.0, "MB").met(), None);
    }

    #[test]
    fn peak_memory_comes_from_vm_hwm() {
        let status = "Name:\tlabs\nVmPeak:\t  999999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(20.0));
        assert_eq!(parse_vm_hwm("Name:\tlabs\n"), None);
        assert!(peak_rss_mib().is_some_and(|mib| mib > 0.0), "this test process has a peak");
    }
}
