//! The guide, `references/aws-examples.md`, compiled in: its sections, one per example, found by
//! their headings (`## Example N: title`, `## Kafka N: title`), so a new section needs no list entry.

use serde::Serialize;

use crate::examples::{ExampleId, Track};

/// The learner's guide, as the repository has it when labs is built.
pub const GUIDE: &str = include_str!("../../../references/aws-examples.md");

/// One example's section of the guide: its heading and everything up to the next heading.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Section<'a> {
    pub id: ExampleId,
    pub title: &'a str,
    pub text: &'a str,
}

/// The example sections of `guide`, in the order they appear.
pub fn sections(guide: &str) -> Vec<Section<'_>> {
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for line in guide.split_inclusive('\n') {
        if line.starts_with("## ") {
            starts.push((offset, line.trim_end()));
        }
        offset += line.len();
    }
    let mut found = Vec::new();
    for (i, (start, heading)) in starts.iter().enumerate() {
        let Some((id, title)) = example_heading(heading) else { continue };
        let end = starts.get(i + 1).map_or(guide.len(), |(next, _)| *next);
        // Sections are separated by a rule; it belongs to neither.
        let text = guide[*start..end].trim_end().trim_end_matches("---").trim_end();
        found.push(Section { id, title, text });
    }
    found
}

/// `## Example 3: change data capture ...` gives example-3 and the title, `## Kafka 1: ...`
/// kafka-1; other headings give nothing.
fn example_heading(heading: &str) -> Option<(ExampleId, &str)> {
    let rest = heading.strip_prefix("## ")?;
    let (track, rest) = [Track::Aws, Track::Kafka]
        .into_iter()
        .find_map(|track| Some((track, rest.strip_prefix(track.heading_word())?.strip_prefix(' ')?)))?;
    let (number, title) = rest.split_once(':')?;
    Some((ExampleId { track, number: number.trim().parse().ok()? }, title.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples;

    #[test]
    fn sections_run_from_their_heading_to_the_next_one() {
        let guide = "# Title\n\nintro\n\n---\n\n## Example 1: a log\n\none\n\n---\n\n\
                     ## Example 12: more: with a colon\ntwo\n## Examples 4 and 6\n\nlater\n\
                     ## Kafka 2: cdc\nthree\n## Kafkaesque 3: no\n";
        let found = sections(guide);
        assert_eq!(
            found,
            vec![
                Section { id: ExampleId::aws(1), title: "a log", text: "## Example 1: a log\n\none" },
                Section {
                    id: ExampleId::aws(12),
                    title: "more: with a colon",
                    text: "## Example 12: more: with a colon\ntwo"
                },
                Section { id: ExampleId::kafka(2), title: "cdc", text: "## Kafka 2: cdc\nthree" },
            ]
        );
    }

    #[test]
    fn every_built_example_has_exactly_one_section_in_the_guide() {
        let found = sections(GUIDE);
        for (about, _) in examples::built() {
            let count = found.iter().filter(|s| s.id == about.id).count();
            assert_eq!(count, 1, "{} has {count} sections in references/aws-examples.md", about.id);
        }
        for section in &found {
            let id = section.id.to_string();
            assert!(id.parse::<ExampleId>().is_ok(), "the guide has a section for unregistered {id}");
        }
    }
}
