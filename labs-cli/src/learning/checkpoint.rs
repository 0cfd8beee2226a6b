//! `labs checkpoint N`: the plan's checkpoint N, item by item, answered by running the labs the
//! learning map names for it. What runs is read from the map (`answers` of each item), so the
//! command stays true as examples and scenarios land: it brings up each example the checkpoint
//! needs (unless it was up already), runs the named scenarios, runs the example's verifier, and
//! removes what it brought up.

use std::fmt;

use anyhow::{Result, bail};
use serde::Serialize;

use super::map::{Item, Kind, Map, State};
use crate::examples::{self, ExampleId, RunOptions, VerifyOptions};
use crate::output::{Output, note};
use crate::provision;
use crate::target::Target;

/// How each example of a checkpoint is run and verified (`labs checkpoint` flags, without clap).
#[derive(Debug, Clone, Copy)]
pub struct CheckpointOptions {
    /// Passed to every run, as `labs run --count`.
    pub count: Option<usize>,
    pub verify: VerifyOptions,
}

/// What one example runs for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runs {
    /// `labs run example-N` without `--scenario`: an item names the example itself.
    Whole,
    /// Only these scenarios, in the order the checkpoint's items name them.
    Scenarios(Vec<String>),
}

/// `example-2`, as the map and the commands name it, rather than the bare number.
fn as_text<S: serde::Serializer>(id: &ExampleId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(id)
}

/// A built example the checkpoint needs, and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExampleRuns {
    #[serde(serialize_with = "as_text")]
    pub example: ExampleId,
    pub runs: Runs,
}

/// Checkpoint `number` as the map has it: its items, and the examples that answer them.
#[derive(Debug)]
pub struct Plan<'a> {
    pub items: Vec<&'a Item>,
    /// In the order the items first name them.
    pub examples: Vec<ExampleRuns>,
}

/// The checkpoint numbers the map has, in order.
fn checkpoint_numbers(map: &Map) -> Vec<u8> {
    let mut numbers: Vec<u8> =
        map.item.iter().filter(|i| i.kind == Kind::Checkpoint).filter_map(checkpoint_number).collect();
    numbers.dedup();
    numbers
}

/// `checkpoint-2.3` belongs to checkpoint 2.
fn checkpoint_number(item: &Item) -> Option<u8> {
    let rest = item.id.strip_prefix("checkpoint-")?;
    rest.split('.').next()?.parse().ok()
}

/// Selects checkpoint `number`'s items and works out what to run for them: every example an item
/// names (all built: the map's own checks refuse a name that is not), with the union of the
/// scenarios named; an example named without a scenario runs whole.
pub fn plan(map: &Map, number: u8) -> Result<Plan<'_>> {
    let items: Vec<&Item> =
        map.item.iter().filter(|i| i.kind == Kind::Checkpoint && checkpoint_number(i) == Some(number)).collect();
    if items.is_empty() {
        let numbers: Vec<String> = checkpoint_numbers(map).iter().map(u8::to_string).collect();
        bail!("the learning plan has no checkpoint {number}: use one of {}", numbers.join(", "));
    }
    let mut examples: Vec<ExampleRuns> = Vec::new();
    for answer in items.iter().flat_map(|i| &i.answers) {
        let index = match examples.iter().position(|e| e.example == answer.example) {
            Some(index) => index,
            None => {
                examples.push(ExampleRuns { example: answer.example, runs: Runs::Scenarios(Vec::new()) });
                examples.len() - 1
            }
        };
        let runs = &mut examples[index].runs;
        match (&answer.scenario, runs) {
            (None, runs) => *runs = Runs::Whole,
            (Some(_), Runs::Whole) => {}
            (Some(scenario), Runs::Scenarios(names)) => {
                if !names.contains(scenario) {
                    names.push(scenario.clone());
                }
            }
        }
    }
    Ok(Plan { items, examples })
}

/// The answer for one item: `yes`/`no` for what a verifier checks, or why there is nothing to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Its labs ran and their verifiers passed.
    Yes,
    /// A scenario or verifier of its labs failed.
    No,
    /// Its scenarios ran; no verifier check is about the item.
    ShownOnly,
    /// Only the guide explains it: nothing to run.
    ExplainedOnly,
    /// The example that will answer it is not built yet.
    NotBuilt,
    /// Nothing answers it yet.
    NoLab,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Yes => "yes",
            Verdict::No => "NO",
            Verdict::ShownOnly => "shown only (no verifier check)",
            Verdict::ExplainedOnly => "explained only",
            Verdict::NotBuilt => "lab not built yet",
            Verdict::NoLab => "no lab yet",
        })
    }
}

/// How an example's part of the checkpoint went.
#[derive(Debug, Clone, Serialize)]
pub struct ExampleOutcome {
    #[serde(serialize_with = "as_text")]
    pub example: ExampleId,
    pub runs: Runs,
    /// Resources of it existed before the checkpoint, so it was left up.
    pub was_up: bool,
    /// What failed (bringing it up, a scenario, the verifier, removing it), if anything.
    pub failure: Option<String>,
    pub verified: Option<bool>,
}

impl ExampleOutcome {
    fn passed(&self) -> bool {
        self.failure.is_none() && self.verified == Some(true)
    }
}

/// What the item's verdict is, given how its examples went.
pub fn verdict(item: &Item, outcomes: &[ExampleOutcome]) -> Verdict {
    match item.state {
        State::Explained => return Verdict::ExplainedOnly,
        State::NotYet if item.planned.is_some() => return Verdict::NotBuilt,
        State::NotYet => return Verdict::NoLab,
        State::Verified | State::Shown => {}
    }
    let passed = item
        .answers
        .iter()
        .all(|answer| outcomes.iter().any(|outcome| outcome.example == answer.example && outcome.passed()));
    match (passed, item.state) {
        (false, _) => Verdict::No,
        (true, State::Verified) => Verdict::Yes,
        (true, _) => Verdict::ShownOnly,
    }
}

/// What the row says beside the verdict: the verifier's claim, where the guide explains it, what
/// is planned, or what failed.
fn detail(item: &Item, verdict: Verdict, outcomes: &[ExampleOutcome]) -> String {
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| item.answers.iter().any(|a| a.example == o.example))
        .filter_map(|o| match (&o.failure, o.verified) {
            (Some(failure), _) => Some(format!("{}: {failure}", o.example)),
            (None, Some(false)) => Some(format!("{}: its verifier failed (see its checks above)", o.example)),
            _ => None,
        })
        .collect();
    let text = match verdict {
        Verdict::No => failures.join("; "),
        Verdict::Yes => item.verify.clone().unwrap_or_default(),
        Verdict::ShownOnly | Verdict::ExplainedOnly => item.explained.clone().unwrap_or_default(),
        Verdict::NotBuilt => match item.planned {
            Some(planned) => {
                return format!("{} will answer it; {}", planned.0, item.gap.as_deref().unwrap_or_default());
            }
            None => item.gap.clone().unwrap_or_default(),
        },
        Verdict::NoLab => item.gap.clone().unwrap_or_default(),
    };
    // An item partly answered today may wait on an example still being built for the rest.
    match item.planned {
        Some(planned) => format!("{text} Not built yet: {}, which will answer more of it.", planned.0),
        None => text,
    }
}

#[derive(Serialize)]
struct ItemReport<'a> {
    id: &'a str,
    /// The plan's words.
    text: &'a str,
    state: State,
    answers: Vec<String>,
    verified: Verdict,
    detail: String,
}

#[derive(Serialize)]
struct Report<'a> {
    checkpoint: u8,
    passed: bool,
    items: Vec<ItemReport<'a>>,
    examples: &'a [ExampleOutcome],
}

/// Runs checkpoint `number` against `target`; returns whether every scenario and verifier passed.
/// `target` is needed only when the plan runs an example.
pub async fn run(
    target: Option<&Target>,
    plan: &Plan<'_>,
    number: u8,
    options: &CheckpointOptions,
    out: Output,
) -> Result<bool> {
    let mut outcomes = Vec::new();
    if let Some(target) = target {
        let names: Vec<String> = plan.examples.iter().map(|e| e.example.to_string()).collect();
        target.confirm(&format!(
            "Checkpoint {number} brings up {} on {} (unless up already), runs and verifies them, and removes what it brought up. Go on?",
            names.join(", "),
            target.kind.describe()
        ))?;
        // Each example's own output is the lesson in a terminal; with --json only the report is printed.
        let inner = if out.json { Output::quiet() } else { out };
        for runs in &plan.examples {
            outcomes.push(run_example(target, runs, options, inner).await?);
        }
    }
    let items: Vec<ItemReport> = plan
        .items
        .iter()
        .map(|item| {
            let verdict = verdict(item, &outcomes);
            ItemReport {
                id: &item.id,
                text: &item.text,
                state: item.state,
                answers: item.answers.iter().map(ToString::to_string).collect(),
                verified: verdict,
                detail: detail(item, verdict, &outcomes),
            }
        })
        .collect();
    let passed = outcomes.iter().all(ExampleOutcome::passed);
    out.table(
        &format!("\nCheckpoint {number} of the learning plan:"),
        &["item", "in the plan's words", "answered by", "verified", "what verify proves / where it is explained"],
        items.iter().map(|i| {
            let by = if i.answers.is_empty() { "-".to_owned() } else { i.answers.join("\n") };
            vec![i.id.to_owned(), i.text.to_owned(), by, i.verified.to_string(), i.detail.clone()]
        }),
    );
    out.say(summary(&outcomes));
    out.json(&Report { checkpoint: number, passed, items, examples: &outcomes })?;
    Ok(passed)
}

fn summary(outcomes: &[ExampleOutcome]) -> String {
    if outcomes.is_empty() {
        return "No built lab answers this checkpoint yet: nothing was run.".to_owned();
    }
    let names = |keep: &dyn Fn(&ExampleOutcome) -> bool| -> String {
        let names: Vec<String> = outcomes.iter().filter(|o| keep(o)).map(|o| o.example.to_string()).collect();
        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
    };
    format!(
        "Verified: {}. Failed: {}. Left up as they were: {}.",
        names(&ExampleOutcome::passed),
        names(&|o: &ExampleOutcome| !o.passed()),
        names(&|o: &ExampleOutcome| o.was_up),
    )
}

/// Brings `runs.example` up unless it is up already, runs its scenarios, verifies it, and removes
/// it again if it was down. A failure is recorded, not returned, so the other examples still run
/// and what was brought up is still removed.
async fn run_example(
    target: &Target,
    runs: &ExampleRuns,
    options: &CheckpointOptions,
    out: Output,
) -> Result<ExampleOutcome> {
    let id = runs.example;
    let stack = id.stack()?;
    let (present, _) = provision::presence(target, &stack).await?;
    let mut outcome =
        ExampleOutcome { example: id, runs: runs.runs.clone(), was_up: present > 0, failure: None, verified: None };
    note(format!(
        "\n== Checkpoint: {id} ({}) ==",
        if outcome.was_up { "up already, left up" } else { "bringing it up" }
    ));
    match up_run_verify(target, &stack, runs, options, out).await {
        Ok(verified) => outcome.verified = Some(verified),
        Err(err) => outcome.failure = Some(format!("{err:#}").replace('\n', " ")),
    }
    if !outcome.was_up {
        match provision::destroy_stack(target, &stack).await {
            Ok((_, None)) => note(format!("{id} removed again (it was down before the checkpoint).")),
            Ok((_, Some(err))) | Err(err) => {
                let removal = format!("labs down: {err:#}; run `labs down {id}`");
                outcome.failure = Some(match outcome.failure.take() {
                    Some(earlier) => format!("{earlier}; {removal}"),
                    None => removal,
                });
            }
        }
    }
    Ok(outcome)
}

#[derive(Serialize)]
struct Listed<'a> {
    checkpoint: u8,
    items: Vec<&'a str>,
    runs: Vec<ExampleRuns>,
}

/// `labs checkpoint` without a number: each checkpoint, its items in the plan's words, and what
/// `labs checkpoint N` would run for it.
pub fn list(map: &Map, out: Output) -> Result<()> {
    let mut listed = Vec::new();
    for number in checkpoint_numbers(map) {
        let plan = plan(map, number)?;
        listed.push(Listed {
            checkpoint: number,
            items: plan.items.iter().map(|i| i.text.as_str()).collect(),
            runs: plan.examples,
        });
    }
    out.table(
        "The learning plan's checkpoints (`labs checkpoint N` runs one):",
        &["checkpoint", "items, in the plan's words", "what it runs"],
        listed.iter().map(|l| {
            let runs: Vec<String> = l
                .runs
                .iter()
                .map(|r| match &r.runs {
                    Runs::Whole => format!("{} (all of it)", r.example),
                    Runs::Scenarios(names) => format!("{}: {}", r.example, names.join(", ")),
                })
                .collect();
            let runs = if runs.is_empty() { "nothing built answers it yet".to_owned() } else { runs.join("\n") };
            vec![l.checkpoint.to_string(), l.items.join("\n"), runs]
        }),
    );
    out.json(&listed)
}

/// `labs up`, `labs run` for each scenario, `labs verify`: whether it verified, or what failed.
async fn up_run_verify(
    target: &Target,
    stack: &labs_infra::stack::Stack,
    runs: &ExampleRuns,
    options: &CheckpointOptions,
    out: Output,
) -> Result<bool> {
    let id = runs.example;
    provision::up_stack(target, stack, false, out).await.map_err(|e| e.context("labs up"))?;
    let scenarios: Vec<Option<&String>> = match &runs.runs {
        Runs::Whole => vec![None],
        Runs::Scenarios(names) => names.iter().map(Some).collect(),
    };
    for scenario in scenarios {
        let run = RunOptions { scenario: scenario.cloned(), count: options.count, ..RunOptions::default() };
        examples::run(target, id, &run, out).await.map_err(|e| match scenario {
            Some(name) => e.context(format!("labs run {id} --scenario {name}")),
            None => e.context(format!("labs run {id}")),
        })?;
    }
    examples::verify(target, id, &options.verify, out).await.map_err(|e| e.context(format!("labs verify {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learning::map;

    /// A map with one checkpoint of three items; `answers` per item as TOML arrays.
    fn map_with(items: &[(&str, &str, &str)]) -> Map {
        map::parse(&map_text(items)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same, without checking it against the registry: every example is built today, and
    /// these tests are about an item that names one still being built (as the Kafka labs will).
    fn map_naming_an_unbuilt_example(items: &[(&str, &str, &str)]) -> Map {
        toml::from_str(&map_text(items)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn map_text(items: &[(&str, &str, &str)]) -> String {
        let mut text = String::from("plan = \"p\"\n");
        for (id, state, extra) in items {
            text.push_str(&format!(
                "[[item]]\nid = \"{id}\"\nkind = \"checkpoint\"\nsection = \"s\"\ntext = \"text of {id}\"\nstate = \"{state}\"\n{extra}\n"
            ));
        }
        text
    }

    const VERIFIED: &str = "verify = \"v\"";

    #[test]
    fn a_checkpoint_runs_the_union_of_its_items_scenarios_once_each_in_the_order_named() {
        let map = map_with(&[
            (
                "checkpoint-1.1",
                "verified",
                &format!("answers = [\"example-2/redelivery\", \"example-2/fan-out\"]\n{VERIFIED}"),
            ),
            (
                "checkpoint-1.2",
                "shown",
                "answers = [\"example-7/hot-shard\", \"example-2/redelivery\", \"example-2/dead-letter\"]",
            ),
            ("checkpoint-2.1", "verified", &format!("answers = [\"example-1\"]\n{VERIFIED}")),
        ]);
        let plan = plan(&map, 1).unwrap();
        assert_eq!(plan.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["checkpoint-1.1", "checkpoint-1.2"]);
        let scenarios = |names: &[&str]| Runs::Scenarios(names.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            plan.examples,
            vec![
                ExampleRuns { example: ExampleId::aws(2), runs: scenarios(&["redelivery", "fan-out", "dead-letter"]) },
                ExampleRuns { example: ExampleId::aws(7), runs: scenarios(&["hot-shard"]) },
            ]
        );
    }

    #[test]
    fn an_example_named_without_a_scenario_runs_whole_whatever_else_names_its_scenarios() {
        let map = map_with(&[
            ("checkpoint-3.1", "shown", "answers = [\"example-5/rebuild\"]"),
            ("checkpoint-3.2", "shown", "answers = [\"example-5\"]"),
            ("checkpoint-3.3", "shown", "answers = [\"example-5/snapshot\"]"),
        ]);
        assert_eq!(
            plan(&map, 3).unwrap().examples,
            vec![ExampleRuns { example: ExampleId::aws(5), runs: Runs::Whole }]
        );
    }

    #[test]
    fn items_without_a_lab_run_nothing_and_say_why() {
        let map = map_naming_an_unbuilt_example(&[
            ("checkpoint-4.1", "explained", "explained = \"Example 2, somewhere\""),
            ("checkpoint-4.2", "not-yet", "planned = \"example-6\"\ngap = \"being built\""),
            ("checkpoint-4.3", "not-yet", "gap = \"nothing\""),
        ]);
        let plan = plan(&map, 4).unwrap();
        assert!(plan.examples.is_empty());
        let verdicts: Vec<Verdict> = plan.items.iter().map(|i| verdict(i, &[])).collect();
        assert_eq!(verdicts, [Verdict::ExplainedOnly, Verdict::NotBuilt, Verdict::NoLab]);
        assert_eq!(detail(plan.items[1], Verdict::NotBuilt, &[]), "example-6 will answer it; being built");
    }

    #[test]
    fn an_item_answered_in_part_says_which_example_still_being_built_will_answer_the_rest() {
        let map = map_naming_an_unbuilt_example(&[(
            "checkpoint-4.1",
            "shown",
            "answers = [\"example-3/workload\"]\nexplained = \"Example 3.\"\nplanned = \"example-6\"",
        )]);
        let item = &map.item[0];
        let ran = [outcome(3, Some(true), None)];
        assert_eq!(verdict(item, &ran), Verdict::ShownOnly);
        assert_eq!(
            detail(item, Verdict::ShownOnly, &ran),
            "Example 3. Not built yet: example-6, which will answer more of it."
        );
    }

    fn outcome(example: u8, verified: Option<bool>, failure: Option<&str>) -> ExampleOutcome {
        ExampleOutcome {
            example: ExampleId::aws(example),
            runs: Runs::Whole,
            was_up: false,
            failure: failure.map(str::to_owned),
            verified,
        }
    }

    #[test]
    fn an_item_is_verified_only_when_every_example_it_names_ran_and_passed_its_verifier() {
        let map = map_with(&[
            (
                "checkpoint-2.1",
                "verified",
                &format!("answers = [\"example-1\", \"example-2/load-balance\"]\n{VERIFIED}"),
            ),
            ("checkpoint-2.3", "shown", "answers = [\"example-7/hot-shard\"]"),
        ]);
        let (both, shown) = (&map.item[0], &map.item[1]);
        let passed = [outcome(1, Some(true), None), outcome(2, Some(true), None), outcome(7, Some(true), None)];
        assert_eq!(verdict(both, &passed), Verdict::Yes);
        assert_eq!(verdict(shown, &passed), Verdict::ShownOnly);
        let verify_failed = [outcome(1, Some(true), None), outcome(2, Some(false), None)];
        assert_eq!(verdict(both, &verify_failed), Verdict::No);
        assert_eq!(detail(both, Verdict::No, &verify_failed), "example-2: its verifier failed (see its checks above)");
        let run_failed = [outcome(1, Some(true), None), outcome(2, None, Some("scenario load-balance: boom"))];
        assert_eq!(verdict(both, &run_failed), Verdict::No);
        assert_eq!(verdict(shown, &[outcome(7, None, Some("labs up: no"))]), Verdict::No);
        assert_eq!(verdict(both, &[outcome(1, Some(true), None)]), Verdict::No, "example-2 never ran");
    }

    #[test]
    fn an_unknown_checkpoint_is_refused_naming_the_plans() {
        let map = map::load().unwrap();
        let err = plan(&map, 9).unwrap_err().to_string();
        assert_eq!(err, "the learning plan has no checkpoint 9: use one of 1, 2, 3, 4");
    }

    #[test]
    fn every_checkpoint_of_the_real_map_plans_only_built_examples() {
        let map = map::load().unwrap();
        for number in checkpoint_numbers(&map) {
            let plan = plan(&map, number).unwrap();
            assert_eq!(plan.items.len(), 3, "checkpoint {number}");
            for runs in &plan.examples {
                assert!(examples::entry(runs.example).example.is_some(), "{} is not built", runs.example);
            }
        }
    }
}
