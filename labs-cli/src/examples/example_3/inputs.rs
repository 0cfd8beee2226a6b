//! What each path of batch-vs-stream reads, one record of each side by side: a row of the batch
//! job's scan (a bounded input: the table as it stood, no time, no order, no past) and an event of
//! the table's change log (one change, timestamped, at a position in an unbounded sequence, with
//! the item before it). The plan asks how the two differ; this shows it on one product.

use std::collections::BTreeMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record};
use aws_smithy_types::date_time::Format;
use labs_core::search_index::Product;

/// The change to show, from the changes after the scan: the first that modified an item (so its
/// old image is the very row the scan read), else the first change of any kind.
pub(super) fn pick_event(since_scan: &[(String, Record)]) -> Option<&(String, Record)> {
    let mut seen = std::collections::BTreeSet::new();
    let first_of_its_item = |r: &&(String, Record)| seen.insert(key_of(&r.1).unwrap_or_default().to_owned());
    let is_modify = |r: &&(String, Record)| r.1.event_name() == Some(&OperationType::Modify);
    since_scan.iter().filter(first_of_its_item).find(is_modify).or_else(|| since_scan.first())
}

/// The string partition key `id` of a change.
pub(super) fn key_of(record: &Record) -> Option<&str> {
    match record.dynamodb()?.keys()?.get("id")? {
        AttributeValue::S(id) => Some(id),
        _ => None,
    }
}

/// The rows of the side-by-side table: what, when, where, what came before, whether it ends.
/// `at_scan` is the product as the scan read it (`None`: created after the scan), `scanned` how
/// many rows the scan read, `changes_of_key` how many changes of the item the log holds.
pub(super) fn compare(
    at_scan: Option<&Product>,
    scanned: usize,
    (shard_id, event): &(String, Record),
    changes_of_key: usize,
) -> Vec<[String; 3]> {
    let change = event.dynamodb();
    let key = key_of(event).unwrap_or("?");
    let kind = event.event_name().map_or("?", OperationType::as_str);
    let row = match at_scan {
        Some(product) => format!("{key} as the table held it: {}", describe(product)),
        None => format!("none: {key} was created after the scan"),
    };
    let when = change
        .and_then(|c| c.approximate_creation_date_time())
        .and_then(|t| t.fmt(Format::DateTime).ok())
        .map_or_else(|| "no time given".into(), |t| format!("ApproximateCreationDateTime {t}"));
    let after =
        change.and_then(|c| c.new_image()).map_or_else(String::new, |image| format!(" to {}", describe_image(image)));
    let sequence = change.and_then(|c| c.sequence_number()).unwrap_or("?");
    let before = change.and_then(|c| c.old_image()).map_or_else(
        || "none: the change created the item".into(),
        |image| format!("the old image: {}", describe_image(image)),
    );
    vec![
        ["what it is".into(), row, format!("one change to {key}: {kind}{after}")],
        ["when".into(), "as of the scan; the row carries no time".into(), when],
        [
            "where in the input".into(),
            format!("one of {scanned} items, in no meaningful order"),
            format!("sequence number {sequence} in {shard_id}, after every earlier change of {key}"),
        ],
        ["what came before".into(), "gone: a table keeps only the current state".into(), before],
        [
            "does the input end".into(),
            format!("yes: after {scanned} items the job has all of it"),
            format!("never: {changes_of_key} changes of {key} so far, and the next may come any moment"),
        ],
    ]
}

fn describe(product: &Product) -> String {
    match product.price {
        Some(price) => format!("\"{}\", {price:.2}", product.name),
        None => format!("\"{}\"", product.name),
    }
}

fn describe_image(image: &std::collections::HashMap<String, AttributeValue>) -> String {
    let product: Result<Product, _> = serde_dynamo::from_item(image.clone());
    product.map_or_else(|_| format!("{} attributes", image.len()), |p| describe(&p))
}

/// How many changes of each item `records` holds.
pub(super) fn changes_per_key(records: &[(String, Record)]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for key in records.iter().filter_map(|(_, r)| key_of(r)) {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodbstreams::primitives::DateTime;
    use aws_sdk_dynamodbstreams::types::StreamRecord;

    use super::*;

    fn record(kind: OperationType, id: &str, sequence: &str, old_name: Option<&str>) -> (String, Record) {
        let s = |v: &str| AttributeValue::S(v.into());
        let mut change = StreamRecord::builder()
            .keys("id", s(id))
            .sequence_number(sequence)
            .approximate_creation_date_time(DateTime::from_secs(1_796_647_016));
        if let Some(name) = old_name {
            change = change.old_image("id", s(id)).old_image("name", s(name));
        }
        if kind != OperationType::Remove {
            change = change.new_image("id", s(id)).new_image("name", s("new lamp"));
        }
        ("shardId-1".into(), Record::builder().event_name(kind).dynamodb(change.build()).build())
    }

    #[test]
    fn the_event_shown_is_the_first_change_to_an_item_the_scan_read() {
        fn sequence(picked: Option<&(String, Record)>) -> &str {
            picked.and_then(|(_, r)| r.dynamodb()?.sequence_number()).unwrap()
        }
        let insert = record(OperationType::Insert, "p-1", "100", None);
        let modify_new = record(OperationType::Modify, "p-1", "150", Some("just made"));
        let modify = record(OperationType::Modify, "p-2", "200", Some("old"));
        let again = record(OperationType::Modify, "p-2", "250", Some("older"));
        let remove = record(OperationType::Remove, "p-3", "300", Some("gone"));
        // p-1's MODIFY is not its first change since the scan: its old image is not what the scan read.
        let log = [insert.clone(), modify_new, modify, again, remove.clone()];
        assert_eq!(sequence(pick_event(&log)), "200");
        assert_eq!(sequence(pick_event(&[insert, remove])), "100");
        assert!(pick_event(&[]).is_none());
    }

    #[test]
    fn the_row_has_no_time_position_or_past_and_the_event_has_all_three() {
        let product = Product { id: "p-2".into(), name: "lamp".into(), price: Some(3.5), ..Product::default() };
        let event = record(OperationType::Modify, "p-2", "200", Some("old lamp"));
        let rows = compare(Some(&product), 12, &event, 4);
        let cell = |what: &str, side: usize| rows.iter().find(|r| r[0] == what).unwrap()[side].clone();
        assert_eq!(cell("what it is", 1), "p-2 as the table held it: \"lamp\", 3.50");
        assert_eq!(cell("what it is", 2), "one change to p-2: MODIFY to \"new lamp\"");
        assert_eq!(cell("when", 2), "ApproximateCreationDateTime 2026-12-07T12:36:56Z");
        assert!(cell("where in the input", 2).starts_with("sequence number 200 in shardId-1"));
        assert_eq!(cell("what came before", 2), "the old image: \"old lamp\"");
        assert_eq!(cell("does the input end", 1), "yes: after 12 items the job has all of it");
        assert!(cell("does the input end", 2).starts_with("never: 4 changes of p-2"));
        let created = compare(None, 12, &record(OperationType::Insert, "p-9", "300", None), 1);
        assert_eq!(created[0][1], "none: p-9 was created after the scan");
        assert_eq!(created[3][2], "none: the change created the item");
    }

    #[test]
    fn changes_are_counted_per_item() {
        let log = [
            record(OperationType::Insert, "p-1", "1", None),
            record(OperationType::Modify, "p-1", "2", Some("a")),
            record(OperationType::Insert, "p-2", "3", None),
        ];
        assert_eq!(changes_per_key(&log), BTreeMap::from([("p-1", 2), ("p-2", 1)]));
    }
}
