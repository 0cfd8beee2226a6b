//! What the learner sees about cost: an example's estimate before `up` (per resource, per hour and
//! day left running, one run-through), and how long it has been up. The figures come from
//! `labs_infra::cost`; this picks the target's region and shows them.

use std::time::Duration;

use anyhow::Result;
use labs_infra::cost::{self, Estimate, PriceTable, format_usd};
use labs_infra::stack::Stack;

use crate::output::Output;
use crate::target::Target;

/// Up longer than this, `labs status` points at the command that removes an example.
pub const OLD_AFTER: Duration = Duration::from_secs(3 * 3600);

/// The estimate for `stack` under the target's prefix, at the target region's prices.
pub fn estimate(target: &Target, stack: &Stack) -> Result<Estimate> {
    let table = PriceTable::load().map_err(anyhow::Error::msg)?;
    let (prices_region, prices) = table.for_region(&target.region()).map_err(anyhow::Error::msg)?;
    let runs = cost::run_throughs().map_err(anyhow::Error::msg)?;
    Ok(cost::estimate(stack, &target.prefix, prices_region, prices, runs.get(&stack.example)))
}

/// `about $0.03 an hour ($0.72 a day)`: the standing cost in one phrase, for questions and notes.
pub fn per_hour_phrase(estimate: &Estimate) -> String {
    format!("about {} an hour ({} a day)", format_usd(estimate.per_hour()), format_usd(estimate.per_day()))
}

/// The estimate as a table per resource with a total, the run-through, and what it leaves out.
pub fn show(target: &Target, estimate: &Estimate, out: Output) {
    let region = target.region();
    let place =
        if target.kind.is_aws() { format!("on AWS in {region}") } else { format!("if it ran on AWS in {region}") };
    let mut rows: Vec<Vec<String>> = estimate
        .standing
        .iter()
        .map(|s| {
            vec![
                s.kind.to_string(),
                s.name.clone(),
                format_usd(s.per_hour),
                format_usd(s.per_hour * 24.0),
                s.basis.clone(),
            ]
        })
        .collect();
    rows.push(vec![
        "total".into(),
        String::new(),
        format_usd(estimate.per_hour()),
        format_usd(estimate.per_day()),
        "while it stays up, requests aside".into(),
    ]);
    out.table(
        &format!("What {} costs {place}, left running:", estimate.example),
        &["resource", "name", "per hour", "per day", "basis"],
        rows,
    );
    if estimate.prices_region != region {
        out.say(format!("infra/prices.toml has no prices for {region}: these are {}'s.", estimate.prices_region));
    }
    match (&estimate.run_through, estimate.run_through_total()) {
        (Some(charges), Some(total)) => {
            let parts: Vec<String> = charges.iter().map(|c| format!("{} {}", c.what, format_usd(c.usd))).collect();
            out.say(format!(
                "One run-through (up, run, verify, down): about {}: {}.",
                format_usd(total),
                parts.join("; ")
            ));
        }
        _ => out
            .say(format!("{} has no run-through figures yet: its requests are paid per use on top.", estimate.example)),
    }
    out.say(format!(
        "The AWS free tier may cover part of this (Lambda, SQS, SNS and DynamoDB have free monthly allowances; \
         Kinesis has none). List prices transcribed by hand on {}, not fetched: check them at the sources in \
         infra/prices.toml.",
        estimate.transcribed
    ));
}

#[cfg(test)]
mod tests {
    use labs_infra::stack;

    use super::*;

    const GUIDE: &str = include_str!("../../references/aws-examples.md");

    /// The guide's table says what the estimator says at us-east-1's prices, example by example.
    #[test]
    fn the_guide_table_matches_the_estimates() {
        let section = GUIDE.split("\n## What it costs on AWS\n").nth(1).expect("the guide's cost section");
        let table = PriceTable::load().unwrap();
        let (_, prices) = table.for_region("us-east-1").unwrap();
        let runs = cost::run_throughs().unwrap();
        let rows: Vec<Vec<&str>> = section
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter(|l| l.starts_with("| example-") || l.starts_with("| kafka-"))
            .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), runs.len(), "one row per example with a run-through");
        for row in rows {
            let stack = stack::load(row[0]).unwrap();
            let estimate = cost::estimate(&stack, "p", "us-east-1", prices, runs.get(row[0]));
            let expected = [
                format_usd(estimate.per_hour()),
                format_usd(estimate.per_day()),
                format_usd(estimate.run_through_total().unwrap()),
            ];
            assert_eq!(row[1..], expected, "{}", row[0]);
        }
    }
}
