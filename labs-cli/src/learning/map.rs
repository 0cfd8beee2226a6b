//! The learning map: every item of the learning plan (`references/learning-plan.md`), what
//! answers it, and how far. One source of truth, `references/learning-map.toml`, compiled in:
//! `labs questions` prints it, `references/learning-map.md` is rendered from it, and the tests
//! check it against the plan and the example registry, so it cannot go stale silently.

use std::fmt;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::examples::{self, ExampleId};

pub const MAP_TOML: &str = include_str!("../../../references/learning-map.toml");
/// The plan the map follows, `references/learning-plan.md`.
pub const PLAN: &str = include_str!("../../../references/learning-plan.md");

/// How far the labs answer an item, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// A scenario shows it and `labs verify` checks it from the data.
    Verified,
    /// A scenario shows it; no verifier check is about it.
    Shown,
    /// Only the guide's prose explains it.
    Explained,
    /// Nothing answers it yet.
    NotYet,
}

impl State {
    pub const ALL: [State; 4] = [State::Verified, State::Shown, State::Explained, State::NotYet];
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Verified => "verified",
            State::Shown => "shown",
            State::Explained => "explained",
            State::NotYet => "not yet",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Question,
    Checkpoint,
    Assessment,
    Project,
}

/// An example, and optionally one of its scenarios: `example-2/redelivery` or `example-1`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Answer {
    pub example: ExampleId,
    pub scenario: Option<String>,
}

impl TryFrom<String> for Answer {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let (example, scenario) = match text.split_once('/') {
            Some((example, scenario)) => (example, Some(scenario.to_owned())),
            None => (text.as_str(), None),
        };
        Ok(Answer { example: example.parse()?, scenario })
    }
}

impl From<Answer> for String {
    fn from(answer: Answer) -> String {
        answer.to_string()
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scenario {
            Some(scenario) => write!(f, "{}/{scenario}", self.example),
            None => write!(f, "{}", self.example),
        }
    }
}

/// A labs command and what a Kafka user would type instead.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaEquivalent {
    pub labs: String,
    pub kafka: String,
}

/// One item of the plan, in the plan's words, and what the labs do about it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// `1.2.3` (module 1.2, question 3), `checkpoint-2.1`, `final-4`, `project-3`.
    pub id: String,
    pub kind: Kind,
    /// The plan's heading the item sits under.
    pub section: String,
    /// The plan's words.
    pub text: String,
    pub state: State,
    /// The examples (and scenarios) that show it, strongest first.
    #[serde(default)]
    pub answers: Vec<Answer>,
    /// What `labs verify` proves about it (verified items only).
    #[serde(default)]
    pub verify: Option<String>,
    /// Where the guide explains it.
    #[serde(default)]
    pub explained: Option<String>,
    /// What is still missing.
    #[serde(default)]
    pub gap: Option<String>,
    /// The example being built that will answer it (it must be registered and not built yet).
    #[serde(default)]
    pub planned: Option<ExampleIdText>,
    /// For the plan's Kafka projects: the Kinesis / DynamoDB Streams analogue, command by command.
    #[serde(default)]
    pub kafka: Vec<KafkaEquivalent>,
    #[serde(default)]
    pub analogue: Option<String>,
}

/// An example id as written in the map; parsed (so registered) when the map loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExampleIdText(pub ExampleId);

impl TryFrom<String> for ExampleIdText {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(ExampleIdText)
    }
}

impl From<ExampleIdText> for String {
    fn from(id: ExampleIdText) -> String {
        id.0.to_string()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Map {
    /// The plan the map follows.
    pub plan: String,
    pub item: Vec<Item>,
}

impl Map {
    pub fn count(&self, state: State) -> usize {
        self.item.iter().filter(|i| i.state == state).count()
    }
}

/// The compiled-in map, checked against the plan and the registry.
pub fn load() -> Result<Map> {
    let map = parse(MAP_TOML)?;
    let differences = differences(&plan_items(PLAN), &map);
    if !differences.is_empty() {
        bail!("references/learning-map.toml does not follow the plan: {}", differences.join("; "));
    }
    Ok(map)
}

pub(super) fn parse(text: &str) -> Result<Map> {
    let map: Map = toml::from_str(text).map_err(|e| anyhow::anyhow!("references/learning-map.toml: {e}"))?;
    let problems = problems(&map);
    if !problems.is_empty() {
        bail!("references/learning-map.toml is out of date: {}", problems.join("; "));
    }
    Ok(map)
}

/// What makes an item's state untrue of the code: a verified item without a built example or a
/// verifier claim, a scenario the example does not have, a "planned" example that is built now.
fn problems(map: &Map) -> Vec<String> {
    let mut found = Vec::new();
    for item in &map.item {
        let mut problem = |text: String| found.push(format!("{}: {text}", item.id));
        match item.state {
            State::Verified if item.verify.is_none() => {
                problem("verified, but says nothing of what verify proves".into())
            }
            State::Verified | State::Shown if item.answers.is_empty() => {
                problem(format!("{}, but no example answers it", item.state))
            }
            State::Explained if item.explained.is_none() => problem("explained, but not where".into()),
            State::NotYet if !item.answers.is_empty() => problem("not yet, but names examples that answer it".into()),
            _ => {}
        }
        if item.state != State::Verified && item.verify.is_some() {
            problem(format!("{}, but claims what verify proves", item.state));
        }
        for answer in &item.answers {
            let Some(example) = examples::entry(answer.example).example else {
                problem(format!("{answer} is named, but {} is not built", answer.example));
                continue;
            };
            if let Some(scenario) = &answer.scenario
                && !example.scenarios().contains(&scenario.as_str())
            {
                problem(format!("{} has no scenario '{scenario}'", answer.example));
            }
        }
        if let Some(ExampleIdText(planned)) = item.planned
            && examples::entry(planned).example.is_some()
        {
            problem(format!("planned for {planned}, which is built now: say what it shows"));
        }
    }
    found
}

/// The plan's items in order, as `(kind, text)`: the questions under "Questions to Answer",
/// the checkpoint boxes, the comprehension check and the practical projects.
fn plan_items(plan: &str) -> Vec<(Kind, String)> {
    let mut items = Vec::new();
    let mut in_questions = false;
    let mut numbered: Option<Kind> = None;
    for line in plan.lines() {
        let trimmed = line.trim();
        if line.starts_with('#') {
            in_questions = false;
            numbered = match trimmed {
                "### Comprehension Check" => Some(Kind::Assessment),
                t if t.starts_with("### Practical Projects") => Some(Kind::Project),
                _ => None,
            };
            continue;
        }
        if trimmed.starts_with("- **") {
            in_questions = trimmed == "- **Questions to Answer**:";
            continue;
        }
        if let Some(text) = trimmed.strip_prefix("- [ ] ") {
            items.push((Kind::Checkpoint, text.to_owned()));
        } else if in_questions && let Some(text) = trimmed.strip_prefix("- ") {
            items.push((Kind::Question, text.to_owned()));
        } else if let Some(kind) = numbered
            && let Some((number, text)) = trimmed.split_once(". ")
            && number.parse::<u8>().is_ok()
        {
            items.push((kind, text.replace("**", "")));
        }
    }
    items
}

/// Differences between the plan and the map: a plan item the map lacks or words differently, a
/// map item the plan does not have, or the two in a different order.
fn differences(plan: &[(Kind, String)], map: &Map) -> Vec<String> {
    let mapped: Vec<(Kind, String)> = map.item.iter().map(|i| (i.kind, i.text.clone())).collect();
    let mut found: Vec<String> = Vec::new();
    for (kind, text) in plan {
        if !mapped.contains(&(*kind, text.clone())) {
            found.push(format!("the map lacks the plan's {kind:?} \"{text}\""));
        }
    }
    for (kind, text) in &mapped {
        if !plan.contains(&(*kind, text.clone())) {
            found.push(format!("the map has a {kind:?} the plan lacks: \"{text}\""));
        }
    }
    if found.is_empty() && plan != mapped.as_slice() {
        found.push("the map lists the plan's items in another order".to_owned());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_loads_and_every_item_is_true_of_the_registry() {
        let map = load().unwrap_or_else(|e| panic!("{e}"));
        let ids: std::collections::BTreeSet<&str> = map.item.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), map.item.len(), "item ids repeat");
    }

    #[test]
    fn the_map_has_every_item_of_the_plan_in_its_words_and_order() {
        let plan = plan_items(PLAN);
        let count = |kind| plan.iter().filter(|(k, _)| *k == kind).count();
        assert_eq!(
            [count(Kind::Question), count(Kind::Checkpoint), count(Kind::Assessment), count(Kind::Project)],
            [40, 12, 5, 4],
            "the plan reads differently than it did: check plan_items"
        );
        let differences = differences(&plan, &parse(MAP_TOML).unwrap());
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    }

    #[test]
    fn a_plan_item_the_map_lacks_is_named() {
        let mut map = load().unwrap();
        let dropped = map.item.remove(7);
        let plan = plan_items(PLAN);
        assert_eq!(
            differences(&plan, &map),
            vec![format!("the map lacks the plan's {:?} \"{}\"", dropped.kind, dropped.text)]
        );
    }

    #[test]
    fn the_kafka_projects_show_the_kafka_equivalent_of_each_command() {
        let map = load().unwrap();
        for project in map.item.iter().filter(|i| i.kind == Kind::Project && i.text.contains("Kafka")) {
            assert!(project.analogue.is_some(), "{} names Kafka but not its AWS analogue", project.id);
            assert!(!project.kafka.is_empty(), "{} names Kafka but shows no Kafka commands", project.id);
        }
    }

    fn with_item(extra: &str) -> Result<Map> {
        parse(&format!(
            "plan = \"p\"\n[[item]]\nid = \"x\"\nkind = \"question\"\nsection = \"s\"\ntext = \"t\"\n{extra}"
        ))
    }

    #[test]
    fn untrue_items_are_refused() {
        let refused = |extra: &str, expected: &str| {
            let err = with_item(extra).expect_err(extra).to_string();
            assert!(err.contains(expected), "{extra}: {err}");
        };
        refused("state = \"verified\"\nanswers = [\"example-1\"]", "says nothing of what verify proves");
        refused("state = \"shown\"", "no example answers it");
        refused(
            "state = \"shown\"\nanswers = [\"example-2/no-such-scenario\"]",
            "example-2 has no scenario 'no-such-scenario'",
        );
        if let Some(planned) = examples::REGISTRY.iter().find(|e| e.example.is_none()) {
            let id = planned.about.id;
            refused(&format!("state = \"shown\"\nanswers = [\"{id}\"]"), &format!("{id} is not built"));
        }
        refused("state = \"explained\"", "not where");
        refused("state = \"not-yet\"\nplanned = \"example-1\"", "planned for example-1, which is built now");
        refused("state = \"shown\"\nanswers = [\"example-9\"]", "unknown example 'example-9'");
        refused("state = \"shown\"\nanswers = [\"example-1\"]\nverify = \"v\"", "claims what verify proves");
        assert!(with_item("state = \"verified\"\nanswers = [\"example-2/redelivery\"]\nverify = \"v\"").is_ok());
    }
}
