//! Everything labs made in the target, under any prefix: `labs down --all`, and the ages
//! `labs status` shows. What counts is the tags (`labs_infra::inventory`), never the name.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use labs_infra::inventory::{self, Found, describe_age};
use labs_infra::{Removal, Removed, stack};
use serde::Serialize;
use time::OffsetDateTime;

use crate::output::Output;
use crate::provision;
use crate::target::Target;

/// The stack of labs' stream-trigger runner table, which a prefix's examples share: removed
/// after them (their `down` usually takes it already).
const SHARED_STACK: &str = "triggers";

/// The age of what each example has under `prefix`: its oldest dated resource. An example whose
/// resources carry no creation time (an older labs made them) maps to `None`.
pub fn ages(found: &[Found], prefix: &str, now: OffsetDateTime) -> BTreeMap<String, Option<Duration>> {
    let mut ages: BTreeMap<String, Option<Duration>> = BTreeMap::new();
    for resource in found.iter().filter(|f| f.prefix == prefix) {
        let age = resource.age(now);
        let oldest = ages.entry(resource.example.clone()).or_insert(age);
        *oldest = (*oldest).max(age);
    }
    ages
}

/// An age for a table cell.
pub fn age_cell(age: Option<Duration>) -> String {
    age.map_or_else(|| "unknown (no labs:created-at tag)".to_owned(), describe_age)
}

/// The (prefix, example) pairs to remove, each example before the shared stack of its prefix.
fn removal_order(found: &[Found]) -> Vec<(String, String)> {
    let pairs: BTreeSet<(bool, String, String)> =
        found.iter().map(|f| (f.example == SHARED_STACK, f.prefix.clone(), f.example.clone())).collect();
    pairs.into_iter().map(|(_, prefix, example)| (prefix, example)).collect()
}

#[derive(Serialize)]
struct Swept {
    prefix: String,
    example: String,
    #[serde(flatten)]
    removed: Removed,
}

#[derive(Serialize)]
struct Report {
    found: Vec<Found>,
    removed: Vec<Swept>,
    /// What still carries labs' tags afterwards.
    left: Vec<Found>,
}

fn show_found(target: &Target, found: &[Found], now: OffsetDateTime, out: Output) {
    let mut rows: Vec<Vec<String>> = found
        .iter()
        .map(|f| vec![f.prefix.clone(), f.example.clone(), f.kind.to_string(), f.name.clone(), age_cell(f.age(now))])
        .collect();
    rows.sort();
    out.table(
        &format!("Carrying labs' tags on {}:", target.kind.describe()),
        &["prefix", "example", "resource", "name", "age"],
        rows,
    );
}

/// `labs down --all`: finds every resource carrying labs' tags, shows it with its prefix and age,
/// asks on AWS, and removes each (prefix, example) through that example's stack, so only declared
/// resources whose tags match are deleted, in dependency order (mappings, functions,
/// subscriptions, queues and topics, tables and streams, roles). With `dry_run`, lists only.
pub async fn down_all(target: &Target, dry_run: bool, out: Output) -> Result<()> {
    let found = inventory::scan(&target.clients).await?;
    let now = OffsetDateTime::now_utc();
    if found.is_empty() {
        out.say(format!("Nothing carries labs' tags on {}.", target.kind.describe()));
        return out.json(&Report { found, removed: vec![], left: vec![] });
    }
    show_found(target, &found, now, out);
    if dry_run {
        out.say("Dry run: nothing was removed. `labs down --all` removes every row above.");
        return out.json(&Report { found, removed: vec![], left: vec![] });
    }
    let prefixes: BTreeSet<&str> = found.iter().map(|f| f.prefix.as_str()).collect();
    target.confirm(&format!(
        "Delete these {} resources, under {} prefix(es), from {}?",
        found.len(),
        prefixes.len(),
        target.kind.describe()
    ))?;
    let mut removed = Vec::new();
    let mut failures = Vec::new();
    for (prefix, example) in removal_order(&found) {
        // A stack this labs does not declare (an older version's): reported below as left.
        let Ok(stack) = stack::load(&example) else { continue };
        match provision::destroy_stack(&target.with_prefix(&prefix), &stack).await {
            Ok((rows, failure)) => {
                let swept = rows.into_iter().filter(|r| r.removal != Removal::Absent);
                removed.extend(swept.map(|r| Swept { prefix: prefix.clone(), example: example.clone(), removed: r }));
                failures.extend(failure.map(|e| format!("{example} (prefix {prefix}): {e}")));
            }
            Err(err) => failures.push(format!("{example} (prefix {prefix}): {err:#}")),
        }
    }
    out.table(
        "Removed:",
        &["prefix", "example", "resource", "name", "result"],
        removed.iter().map(|s| {
            let r = &s.removed;
            vec![s.prefix.clone(), s.example.clone(), r.kind.to_string(), r.name.clone(), r.removal.to_string()]
        }),
    );
    let left = inventory::scan(&target.clients).await?;
    if !left.is_empty() {
        show_found(target, &left, now, out);
    }
    out.json(&Report { found, removed, left: left.clone() })?;
    if let Some(first) = failures.first() {
        anyhow::bail!("{} of the removals failed, first {first}", failures.len());
    }
    if !left.is_empty() {
        let names: Vec<&str> = left.iter().map(|f| f.name.as_str()).collect();
        anyhow::bail!(
            "{} resources still carry labs' tags (no stack of this labs declares them): {}",
            left.len(),
            names.join(", ")
        );
    }
    out.say(format!("Removed everything labs made on {}.", target.kind.describe()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use labs_infra::Kind;

    use super::*;

    fn found(prefix: &str, example: &str, created_at: Option<&str>) -> Found {
        Found {
            kind: Kind::KinesisStream,
            name: format!("{prefix}-x"),
            prefix: prefix.into(),
            example: example.into(),
            created_at: created_at.map(str::to_owned),
        }
    }

    #[test]
    fn an_example_is_as_old_as_its_oldest_resource() {
        let now =
            OffsetDateTime::parse("2026-12-01T12:00:00Z", &time::format_description::well_known::Rfc3339).unwrap();
        let all = [
            found("p", "example-1", Some("2026-12-01T11:00:00Z")),
            found("p", "example-1", Some("2026-12-01T08:00:00Z")),
            found("p", "example-2", None),
            found("q", "example-3", Some("2026-11-01T00:00:00Z")),
        ];
        let ages = ages(&all, "p", now);
        assert_eq!(ages["example-1"], Some(Duration::from_secs(4 * 3600)));
        assert_eq!(ages["example-2"], None);
        assert!(!ages.contains_key("example-3"), "another prefix's");
    }

    #[test]
    fn the_shared_runner_table_goes_after_the_examples() {
        let all = [
            found("b", SHARED_STACK, None),
            found("b", "example-4", None),
            found("a", "example-1", None),
            found("a", "example-1", None),
            found("a", SHARED_STACK, None),
        ];
        let order: Vec<(String, String)> = removal_order(&all);
        let pairs: Vec<(&str, &str)> = order.iter().map(|(p, e)| (p.as_str(), e.as_str())).collect();
        assert_eq!(pairs, [("a", "example-1"), ("b", "example-4"), ("a", SHARED_STACK), ("b", SHARED_STACK)]);
    }
}
