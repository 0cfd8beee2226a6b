//! The guide, `references/aws-examples.md`, compiled in: its sections, one per example, found by
//! their headings (`## Example N: title`), so a new section needs no list entry.

use serde::Serialize;

/// The learner's guide, as the repository has it when labs is built.
pub const GUIDE: &str = include_str!("../../../references/aws-examples.md");

/// One example's section of the guide: its heading and everything up to the next heading.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Section<'a> {
    pub number: u8,
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
        let Some((number, title)) = example_heading(heading) else { continue };
        let end = starts.get(i + 1).map_or(guide.len(), |(next, _)| *next);
        // Sections are separated by a rule; it belongs to neither.
        let text = guide[*start..end].trim_end().trim_end_matches("---").trim_end();
        found.push(Section { number, title, text });
    }
    found
}

/// `## Example 3: change data capture ...` gives 3 and the title; other headings give nothing.
fn example_heading(heading: &str) -> Option<(u8, &str)> {
    let rest = heading.strip_prefix("## Example ")?;
    let (number, title) = rest.split_once(':')?;
    Some((number.trim().parse().ok()?, title.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples;

    #[test]
    fn sections_run_from_their_heading_to_the_next_one() {
        let guide = "# Title\n\nintro\n\n---\n\n## Example 1: a log\n\none\n\n---\n\n\
                     ## Example 12: more: with a colon\ntwo\n## Examples 4 and 6\n\nlater\n";
        let found = sections(guide);
        assert_eq!(
            found,
            vec![
                Section { number: 1, title: "a log", text: "## Example 1: a log\n\none" },
                Section { number: 12, title: "more: with a colon", text: "## Example 12: more: with a colon\ntwo" },
            ]
        );
    }

    #[test]
    fn every_built_example_has_exactly_one_section_in_the_guide() {
        let found = sections(GUIDE);
        for (about, _) in examples::built() {
            let count = found.iter().filter(|s| s.number == about.id.0).count();
            assert_eq!(count, 1, "{} has {count} sections in references/aws-examples.md", about.id);
        }
        for section in &found {
            let id = format!("example-{}", section.number);
            assert!(id.parse::<examples::ExampleId>().is_ok(), "the guide has a section for unregistered {id}");
        }
    }
}
