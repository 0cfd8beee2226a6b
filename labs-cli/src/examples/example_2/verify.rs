//! Example 2's verifier: regenerates every recorded run and checks the effects table and the
//! dead-letter queues against it.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use labs_core::order_messages::{self as orders, Finding, Publication, Subscriber};
use serde::Serialize;

use super::consumers::watch;
use super::{Lab, VerifyOptions};
use crate::driver::messaging::{self};
use crate::output::Output;
use crate::target::Target;

#[derive(Serialize)]
struct VerifyReport {
    topic: String,
    runs: Vec<Publication>,
    expected: BTreeMap<Subscriber, usize>,
    /// Orders billing's webhook must have got (posted while it was up), and must not have
    /// (posted while it was down: lost).
    expected_webhook: usize,
    expected_lost: usize,
    findings: Vec<Finding>,
    /// Effects whose order was delivered more than once (and still applied once).
    redelivered: usize,
    /// What the queues still hold.
    queues: BTreeMap<Subscriber, messaging::Depth>,
    passed: bool,
}

/// Regenerates what every recorded run sent and checks it against the effects table and the
/// dead-letter queues. The shipping worker runs on its own, so while its queue still holds
/// messages, a difference only counts once it has outlived `grace`.
pub(super) async fn verify(target: &Target, options: &VerifyOptions, out: Output) -> Result<bool> {
    let grace = options.wait;
    let lab = Lab::connect(target, out).await?;
    let runs = lab.runs().await?;
    if runs.is_empty() {
        bail!("nothing to verify: {} has no recorded runs (run `labs run example-2` first)", lab.topic);
    }
    let expected = orders::expect(&runs);
    let observations = lab.observations().await?;
    let ((findings, effects, queues), _) = watch("reading the effects and the dead-letter queues", grace, async || {
        let (effects, _) = lab.effects().await?;
        let mut dead_letters = BTreeMap::new();
        let mut queues = BTreeMap::new();
        for subscriber in Subscriber::ALL {
            let q = lab.queue(subscriber);
            let held = messaging::peek(lab.sqs(), &q.dead_letter_url).await?;
            dead_letters.insert(subscriber, held.into_iter().map(|m| m.body).collect());
            queues.insert(subscriber, messaging::depth(lab.sqs(), &q.url).await?);
        }
        let mut findings = orders::check(&expected, &effects, &dead_letters);
        // What each run said it saw, held against the table and the regenerated orders.
        for publication in &runs {
            if let Some(observation) = observations.get(&publication.seed) {
                findings.push(observation.check(publication, &effects));
            }
        }
        let passed = findings.iter().all(Finding::passed);
        let worker_busy = queues[&Subscriber::Shipping].total() > 0;
        let status = format!(
            "{} checks failing; the shipping worker has messages left: {worker_busy}",
            findings.iter().filter(|f| !f.passed()).count()
        );
        Ok(((findings, effects, queues), passed || !worker_busy, status))
    })
    .await?;
    let passed = findings.iter().all(Finding::passed);
    let redelivered = effects.iter().filter(|e| e.deliveries > 1).count();
    let counts: BTreeMap<Subscriber, usize> = expected.orders.iter().map(|(s, ids)| (*s, ids.len())).collect();
    out.table(
        &format!(
            "Verifying example-2: {} recorded runs; billing should have handled {}, shipping {}, analytics {} orders{}",
            runs.len(),
            counts[&Subscriber::Billing],
            counts[&Subscriber::Shipping],
            counts[&Subscriber::Analytics],
            if expected.webhook.is_empty() && expected.lost.is_empty() {
                String::new()
            } else {
                format!(
                    "; billing's webhook {}, and not the {} posted while it was down",
                    expected.webhook.len(),
                    expected.lost.len()
                )
            }
        ),
        &["check", "result", "details"],
        findings.iter().map(|f| {
            let shown: Vec<&str> = f.problems.iter().take(3).map(String::as_str).collect();
            let more = if f.problems.len() > 3 { format!(" (+{} more)", f.problems.len() - 3) } else { String::new() };
            vec![
                f.check.clone(),
                if f.passed() { "ok" } else { "FAILED" }.to_owned(),
                format!("{}{more}", shown.join(", ")),
            ]
        }),
    );
    if redelivered > 0 {
        out.say(format!(
            "note: {} delivered to a consumer more than once and processed once (idempotent effects).",
            if redelivered == 1 { "1 order was".to_owned() } else { format!("{redelivered} orders were") }
        ));
    }
    let waiting: Vec<String> = queues
        .iter()
        .filter(|(_, d)| d.total() > 0)
        .map(|(s, d)| format!("{} holds {} messages", lab.queue(*s).name, d.total()))
        .collect();
    if !waiting.is_empty() && !passed {
        out.say(format!(
            "note: {}: a run stopped before its consumers finished, or the worker is behind.",
            waiting.join(", ")
        ));
    }
    out.json(&VerifyReport {
        topic: lab.topic.clone(),
        runs,
        expected: counts,
        expected_webhook: expected.webhook.len(),
        expected_lost: expected.lost.len(),
        findings,
        redelivered,
        queues,
        passed,
    })?;
    Ok(passed)
}
