//! The learning plan the labs follow (`references/learning-plan.md`): `labs guide` prints the
//! guide's section for an example, `labs questions` the map from each item of the plan to what
//! answers it, `labs checkpoint N` runs and verifies the labs that answer a checkpoint. Both read files of `references/` compiled into the binary, so they work offline
//! and always match the labs they were built with.

mod checkpoint;
mod guide;
mod map;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Serialize;

pub use checkpoint::CheckpointOptions;

use crate::examples::{self, ExampleId};
use crate::output::{self, Output};
use crate::target::{Target, TargetChoice};
use map::{Item, Map, State};

/// `labs guide [example-N]`: the section of the guide, or the list of sections.
pub fn guide(example: Option<ExampleId>, out: Output) -> Result<()> {
    let sections = guide::sections(guide::GUIDE);
    let Some(id) = example else {
        out.table(
            "The guide (references/aws-examples.md), one section per example:",
            &["example", "section", "read it with"],
            examples::REGISTRY.iter().map(|entry| {
                let id = entry.about.id;
                match sections.iter().find(|s| s.id == id) {
                    Some(section) => vec![id.to_string(), section.title.to_owned(), format!("labs guide {id}")],
                    None => vec![
                        id.to_string(),
                        format!("{} (not built yet, no section)", entry.about.title),
                        String::new(),
                    ],
                }
            }),
        );
        out.say("Which lab answers which question of the learning plan: labs questions");
        return out.json(&sections);
    };
    let Some(section) = sections.iter().find(|s| s.id == id) else {
        let why = if examples::entry(id).example.is_some() { "" } else { " (it is not built yet)" };
        bail!("{id} has no section in the guide{why}: `labs guide` lists the sections");
    };
    out.say(section.text);
    // The plan's items this example answers, from the map, so the section never lists them by hand.
    let map = map::load()?;
    let answered: Vec<&Item> = map.item.iter().filter(|i| i.answers.iter().any(|a| a.example == id)).collect();
    out.table(
        &format!("\nQuestions of the learning plan {id} answers (labs questions shows them all):"),
        &["item", "in the plan's words", "state", "by"],
        answered.iter().map(|item| {
            let by: Vec<String> = item.answers.iter().filter(|a| a.example == id).map(ToString::to_string).collect();
            vec![item.id.clone(), item.text.clone(), item.state.to_string(), by.join(", ")]
        }),
    );
    out.json(&GuideSection { section, answers: answered })
}

/// `labs checkpoint N`: runs what answers checkpoint N and reports per item; whether it passed.
/// The checkpoint is looked up before the target is resolved, so a wrong number starts nothing.
/// Without a number it lists the checkpoints and what each would run, touching no target.
pub async fn checkpoint(
    choice: &TargetChoice,
    number: Option<u8>,
    options: &CheckpointOptions,
    out: Output,
) -> Result<bool> {
    let map = map::load()?;
    let Some(number) = number else {
        checkpoint::list(&map, out)?;
        return Ok(true);
    };
    let plan = checkpoint::plan(&map, number)?;
    let target = if plan.examples.is_empty() { None } else { Some(Target::resolve(choice, true).await?) };
    checkpoint::run(target.as_ref(), &plan, number, options, out).await
}

#[derive(Serialize)]
struct GuideSection<'a> {
    #[serde(flatten)]
    section: &'a guide::Section<'a>,
    /// The items of the plan this example answers.
    answers: Vec<&'a Item>,
}

#[derive(Serialize)]
struct QuestionsReport<'a> {
    plan: &'a str,
    counts: BTreeMap<State, usize>,
    items: &'a [Item],
}

/// `labs questions`: every item of the plan with its state; `markdown` prints the map page
/// (`references/learning-map.md`) instead.
pub fn questions(markdown: bool, out: Output) -> Result<()> {
    if markdown && out.json {
        bail!("--markdown and --json are two formats: pick one");
    }
    let map = map::load()?;
    if markdown {
        output::line(render_markdown(&map).trim_end());
        return Ok(());
    }
    out.table(
        &format!("{} ({} items)", map.plan, map.item.len()),
        &[
            "item",
            "in the plan's words",
            "state",
            "answered by",
            "what verify proves / where it is explained / what is missing",
        ],
        map.item.iter().map(|item| {
            vec![
                item.id.clone(),
                item.text.clone(),
                item.state.to_string(),
                answered_by(item, ", "),
                details(item)
                    .into_iter()
                    .map(|(label, text)| format!("{label}: {text}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ]
        }),
    );
    for item in map.item.iter().filter(|i| !i.kafka.is_empty()) {
        out.table(
            &format!("\n{} {}: {}", item.id, item.text, item.analogue.as_deref().unwrap_or_default()),
            &["labs (Kinesis / DynamoDB Streams)", "Kafka"],
            item.kafka.iter().map(|k| vec![k.labs.clone(), k.kafka.clone()]),
        );
    }
    out.say(format!("\n{}", summary(&map)));
    out.json(&QuestionsReport {
        plan: &map.plan,
        counts: State::ALL.iter().map(|s| (*s, map.count(*s))).collect(),
        items: &map.item,
    })
}

fn summary(map: &Map) -> String {
    let counts: Vec<String> = State::ALL.iter().map(|s| format!("{} {s}", map.count(*s))).collect();
    format!("{} items: {}.", map.item.len(), counts.join(", "))
}

fn answered_by(item: &Item, separator: &str) -> String {
    let mut names: Vec<String> = item.answers.iter().map(ToString::to_string).collect();
    if let Some(planned) = item.planned {
        names.push(format!("planned ({})", planned.0));
    }
    names.join(separator)
}

fn details(item: &Item) -> Vec<(&'static str, &str)> {
    [("verify", &item.verify), ("guide", &item.explained), ("missing", &item.gap)]
        .into_iter()
        .filter_map(|(label, text)| Some((label, text.as_deref()?)))
        .collect()
}

/// The map page, `references/learning-map.md`: a test keeps it equal to this rendering.
fn render_markdown(map: &Map) -> String {
    let mut page = String::from(
        "# The learning map\n\n\
         <!-- Rendered from learning-map.toml by `labs questions --markdown`: edit the TOML, then run\n     \
         `cargo labs questions --markdown > references/learning-map.md`. A unit test fails while they differ. -->\n\n",
    );
    page.push_str(&format!(
        "Every question, checkpoint item, assessment item and project of [{}](learning-plan.md), in \
         the plan's words, with the lab that answers it. In the terminal: `labs questions` (`--json` \
         for scripts); an example's guide section: `labs guide example-N`; a checkpoint's labs run \
         and verified, item by item: `labs checkpoint N`.\n\n",
        map.plan
    ));
    page.push_str(
        "- **verified**: a scenario shows it and `labs verify` checks it from the data;\n\
         - **shown**: a scenario shows it, and no verifier check is about it;\n\
         - **explained**: only the guide's prose explains it;\n\
         - **not yet**: nothing answers it yet; *planned (example-N)* says which example being built will.\n\n",
    );
    page.push_str(&format!("{}\n", summary(map)));
    let mut section = "";
    for item in &map.item {
        if item.section != section {
            section = &item.section;
            page.push_str(&format!("\n## {section}\n"));
        }
        page.push_str(&format!("\n**{}** {} — *{}*\n\n", item.id, item.text, item.state));
        let answered = answered_by(item, ", ");
        if !answered.is_empty() {
            let names: Vec<String> = answered.split(", ").map(|n| format!("`{n}`")).collect();
            page.push_str(&format!("- answered by: {}\n", names.join(", ")));
        }
        if let Some(analogue) = &item.analogue {
            page.push_str(&format!("- on AWS: {analogue}\n"));
        }
        for (label, text) in details(item) {
            let label = match label {
                "verify" => "`labs verify` proves",
                "guide" => "explained in",
                _ => "still missing",
            };
            page.push_str(&format!("- {label}: {text}\n"));
        }
        if !item.kafka.is_empty() {
            page.push_str("\n| labs (Kinesis / DynamoDB Streams) | Kafka |\n|---|---|\n");
            for k in &item.kafka {
                page.push_str(&format!("| `{}` | `{}` |\n", k.labs, k.kafka));
            }
        }
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_page_is_the_rendering_of_the_map_data() {
        let page = include_str!("../../../references/learning-map.md");
        let rendered = render_markdown(&map::load().unwrap());
        assert!(
            page.trim_end() == rendered.trim_end(),
            "references/learning-map.md differs from learning-map.toml: run \
             `cargo labs questions --markdown > references/learning-map.md`"
        );
    }

    /// `- *In the plan's words* (1.2.3, ...)` under a section's "Questions this lab answers":
    /// the item's id and its words as the guide quotes them.
    fn quoted_questions(section: &str) -> Vec<(String, String)> {
        let Some(start) = section.find("### Questions this lab answers") else { return Vec::new() };
        let list = &section[start..];
        let list = &list[..list[4..].find("\n### ").map_or(list.len(), |end| end + 4)];
        let mut quoted = Vec::new();
        for line in list.lines().filter_map(|l| l.strip_prefix("- *")) {
            let (text, rest) = line.split_once("* (").unwrap_or_else(|| panic!("not `- *words* (id)`: {line}"));
            let id = rest.split([',', ')']).next().unwrap_or_default();
            quoted.push((id.to_owned(), text.to_owned()));
        }
        quoted
    }

    #[test]
    fn every_question_a_guide_section_quotes_is_the_plans_and_the_map_ties_it_to_that_example() {
        let map = map::load().unwrap();
        for section in guide::sections(guide::GUIDE) {
            let quoted = quoted_questions(section.text);
            let id = section.id;
            for (item_id, text) in quoted {
                let item = map.item.iter().find(|i| i.id == item_id);
                let item = item.unwrap_or_else(|| panic!("{id}'s section quotes {item_id}, which the map lacks"));
                assert_eq!(item.text, text, "{id}'s section quotes {item_id} in other words than the plan's");
                let mentioned = item.answers.iter().any(|a| a.example == id)
                    || item.explained.as_deref().is_some_and(|e| e.contains(&id.heading()[1..]));
                assert!(mentioned, "{id}'s section claims {item_id}, but the map names neither it nor its guide text");
            }
        }
    }

    #[test]
    fn the_guide_links_the_map_at_its_top() {
        let top: String = guide::GUIDE.lines().take(12).collect::<Vec<_>>().join("\n");
        assert!(top.contains("(learning-map.md)"), "references/aws-examples.md must link the map near its top");
    }
}
