//! The pure half of the indexer: decode a batch of DynamoDB stream records and reduce it to one
//! change per product. No I/O and no knowledge of the checkpoints; `apply` does that.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeSet;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use labs_core::search_index::{Product, Term, text_terms};
use labs_core::sequence;
use serde::Serialize;
use serde_dynamo::{AttributeValue, Item};
use thiserror::Error;

/// The checkpoint table's counters item. No product may have this id.
pub const STATS_ID: &str = "#stats";

/// A stream record that cannot be processed. The handler fails the whole batch with it, so the
/// event source mapping retries the batch (as it would on AWS) until the record expires, the
/// retry limit discards it, or the code is fixed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("stream record #{index} (eventID {event_id:?}): {problem}")]
pub struct DecodeError {
    /// Position of the record in the batch, from 0.
    pub index: usize,
    pub event_id: String,
    pub problem: DecodeProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeProblem {
    #[error("unknown eventName {0:?} (expected INSERT, MODIFY or REMOVE)")]
    UnknownEventName(String),
    #[error("no dynamodb.SequenceNumber")]
    MissingSequenceNumber,
    #[error("dynamodb.SequenceNumber {0:?} is not a decimal number")]
    BadSequenceNumber(String),
    #[error("dynamodb.Keys has no \"id\" attribute")]
    MissingId,
    #[error("key \"id\" must be a non-empty string (S) attribute, found {0}")]
    BadId(String),
    #[error("product id {STATS_ID:?} is reserved for the checkpoint table's counters")]
    ReservedId,
    #[error("{0} record has no dynamodb.NewImage (the stream view type must be NEW_AND_OLD_IMAGES)")]
    MissingNewImage(&'static str),
    #[error("{image} does not decode into a Product: {reason}")]
    BadImage { image: &'static str, reason: String },
    #[error("{image} has id {image_id:?} but dynamodb.Keys has id {key_id:?}")]
    IdMismatch { image: &'static str, image_id: String, key_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Modify => "MODIFY",
            ChangeKind::Remove => "REMOVE",
        }
    }
}

/// One stream record, decoded and checked. It borrows from the record: planning a large batch
/// copied every string of every record before, which cost more than the planning itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedChange<'a> {
    pub event_id: &'a str,
    pub product_id: &'a str,
    pub sequence_number: &'a str,
    pub kind: ChangeKind,
    /// The item after the change (`None` for REMOVE).
    pub new_image: Option<ImageText<'a>>,
    /// The item before the change (`None` for INSERT).
    pub old_image: Option<ImageText<'a>>,
}

/// What the index needs of an image (a [`Product`] that decoded, id checked): its text.
/// Borrowed from the record, unless the image took serde_dynamo's path (see
/// [`product_from_item`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageText<'a> {
    pub name: Cow<'a, str>,
    pub description: Option<Cow<'a, str>>,
}

impl<'a> ImageText<'a> {
    /// Pushes the terms of this text (repeats included) onto `into`, borrowed from the text.
    fn push_terms<'t>(&'t self, into: &mut Vec<Term<'t>>) {
        into.extend(text_terms(&self.name));
        if let Some(description) = &self.description {
            into.extend(text_terms(description));
        }
    }
}

/// Decodes the `index`th record of a batch.
pub fn decode_record<'a>(index: usize, record: &'a EventRecord) -> Result<DecodedChange<'a>, DecodeError> {
    let fail = |problem| DecodeError { index, event_id: record.event_id.clone(), problem };
    let kind = match record.event_name.as_str() {
        "INSERT" => ChangeKind::Insert,
        "MODIFY" => ChangeKind::Modify,
        "REMOVE" => ChangeKind::Remove,
        other => return Err(fail(DecodeProblem::UnknownEventName(other.to_owned()))),
    };
    let sequence_number = match record.change.sequence_number.as_deref() {
        None | Some("") => return Err(fail(DecodeProblem::MissingSequenceNumber)),
        Some(s) if !s.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(fail(DecodeProblem::BadSequenceNumber(s.to_owned())));
        }
        Some(s) => s,
    };
    let product_id = match record.change.keys.get("id") {
        None => return Err(fail(DecodeProblem::MissingId)),
        Some(AttributeValue::S(id)) if !id.is_empty() => id.as_str(),
        Some(other) => return Err(fail(DecodeProblem::BadId(describe(other)))),
    };
    if product_id == STATS_ID {
        return Err(fail(DecodeProblem::ReservedId));
    }
    let id_mismatch = |image, image_id: &str| {
        fail(DecodeProblem::IdMismatch { image, image_id: image_id.to_owned(), key_id: product_id.to_owned() })
    };
    let decode = |image: &'static str, item: &'a Item| -> Result<Option<ImageText<'a>>, DecodeError> {
        if item.is_empty() {
            return Ok(None);
        }
        if let Some(view) = product_from_item(item) {
            if view.id != product_id {
                return Err(id_mismatch(image, view.id));
            }
            return Ok(Some(ImageText {
                name: Cow::Borrowed(view.name),
                description: view.description.map(Cow::Borrowed),
            }));
        }
        let product: Product = serde_dynamo::from_item(item.clone())
            .map_err(|e| fail(DecodeProblem::BadImage { image, reason: e.to_string() }))?;
        if product.id != product_id {
            return Err(id_mismatch(image, &product.id));
        }
        Ok(Some(ImageText { name: Cow::Owned(product.name), description: product.description.map(Cow::Owned) }))
    };
    // A REMOVE's desired state is "nothing", so a stray NewImage there is ignored.
    let new_image = match kind {
        ChangeKind::Remove => None,
        _ => decode("NewImage", &record.change.new_image)?,
    };
    let old_image = decode("OldImage", &record.change.old_image)?;
    if kind != ChangeKind::Remove && new_image.is_none() {
        return Err(fail(DecodeProblem::MissingNewImage(kind.as_str())));
    }
    Ok(DecodedChange { event_id: &record.event_id, product_id, sequence_number, kind, new_image, old_image })
}

/// A [`Product`] whose strings are borrowed from the image it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProductView<'a> {
    id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    price: Option<f64>,
    version: Option<u64>,
}

/// Decodes an image of the usual shape (attributes of the types `Product` declares, unknown ones
/// ignored) as `serde_dynamo::from_item` would, but from a borrowed item, into a view that
/// borrows its strings: serde_dynamo consumes its input, and copying every attribute of every
/// image for it was a large part of planning. `None` for anything else (a missing id, a wrong
/// type, a number that does not parse), which the caller then hands to serde_dynamo, for the same
/// result or its error message.
fn product_from_item(item: &Item) -> Option<ProductView<'_>> {
    let mut id = None;
    let (mut name, mut description, mut price, mut version) = ("", None, None, None);
    for (attribute, value) in item.iter() {
        match (attribute.as_str(), value) {
            ("id", AttributeValue::S(s)) => id = Some(s.as_str()),
            ("name", AttributeValue::S(s)) => name = s.as_str(),
            ("description", AttributeValue::S(s)) => description = Some(s.as_str()),
            ("price", AttributeValue::N(n)) => price = Some(n.parse().ok()?),
            ("version", AttributeValue::N(n)) => version = Some(n.parse().ok()?),
            // serde reads NULL as an absent option.
            ("description" | "price" | "version", AttributeValue::Null(true)) => {}
            ("id" | "name" | "description" | "price" | "version", _) => return None,
            _ => {}
        }
    }
    // No `..` here: a field added to Product must be decoded here too.
    Some(ProductView { id: id?, name, description, price, version })
}

/// A short description of an attribute's type, for error messages.
fn describe(value: &AttributeValue) -> String {
    match value {
        AttributeValue::S(s) if s.is_empty() => "an empty string".into(),
        AttributeValue::S(_) => "a string".into(),
        AttributeValue::N(n) => format!("a number ({n})"),
        AttributeValue::Bool(_) => "a boolean".into(),
        AttributeValue::B(_) => "binary".into(),
        AttributeValue::Null(_) => "NULL".into(),
        AttributeValue::M(_) => "a map".into(),
        AttributeValue::L(_) => "a list".into(),
        AttributeValue::Ss(_) => "a string set".into(),
        AttributeValue::Ns(_) => "a number set".into(),
        AttributeValue::Bs(_) => "a binary set".into(),
    }
}

/// What a batch asks for one product: the state after its last change in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedChange {
    pub product_id: String,
    /// Sequence number of the product's last change in the batch.
    pub sequence_number: String,
    pub kind: ChangeKind,
    /// Terms the product should be indexed under afterwards; `None` when it was removed.
    pub desired_terms: Option<BTreeSet<String>>,
    /// Terms of every image (old and new) of the product's records in this batch. Some of them may
    /// be in the index already (a backfill, or an attempt of this batch that crashed before its
    /// checkpoint write), so those not desired are deleted too.
    pub seen_terms: BTreeSet<String>,
    /// Sequence numbers of the product's earlier changes in this batch, superseded by this one.
    pub superseded: Vec<String>,
}

impl PlannedChange {
    pub fn is_delete(&self) -> bool {
        self.desired_terms.is_none()
    }

    /// The terms the product should be indexed under afterwards (none when it was removed).
    pub fn desired(&self) -> &BTreeSet<String> {
        static NONE: BTreeSet<String> = BTreeSet::new();
        self.desired_terms.as_ref().unwrap_or(&NONE)
    }
}

/// A batch reduced to one change per product, ordered by product id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BatchPlan {
    pub changes: Vec<PlannedChange>,
    pub records: u64,
    pub inserts: u64,
    pub modifies: u64,
    pub removes: u64,
    /// Records superseded by a later change to the same product in the batch.
    pub superseded: u64,
}

/// [`PlannedChange`] as the handler works with it: borrowed from the batch's records, its term
/// sets sorted vectors of [`Term`]s. Building the owned plan's strings and trees took most of the
/// handler's time on a large batch (they are copied once more into the store's rows anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChangeRef<'a> {
    pub product_id: &'a str,
    pub sequence_number: &'a str,
    pub kind: ChangeKind,
    /// Terms the product should be indexed under afterwards, sorted, distinct; `None` when it was
    /// removed.
    pub desired_terms: Option<Vec<Term<'a>>>,
    /// The other terms of the product's images in this batch (see
    /// [`PlannedChange::seen_terms`]), sorted, distinct: to delete.
    pub undesired_terms: Vec<Term<'a>>,
    /// Sequence numbers of the product's earlier changes in this batch, superseded by this one.
    pub superseded: Vec<&'a str>,
}

impl<'a> PlannedChangeRef<'a> {
    pub fn is_delete(&self) -> bool {
        self.desired_terms.is_none()
    }

    /// The terms the product should be indexed under afterwards (none when it was removed).
    pub fn desired(&self) -> &[Term<'a>] {
        self.desired_terms.as_deref().unwrap_or_default()
    }

    /// Whether `term` is desired.
    pub fn desires(&self, term: &Term<'_>) -> bool {
        self.desired().binary_search(term).is_ok()
    }

    /// The owned [`PlannedChange`].
    pub fn to_owned_change(&self) -> PlannedChange {
        let owned = |terms: &[Term]| terms.iter().map(Term::to_lowercase).collect::<BTreeSet<_>>();
        let mut seen_terms = owned(&self.undesired_terms);
        seen_terms.extend(owned(self.desired()));
        PlannedChange {
            product_id: self.product_id.to_owned(),
            sequence_number: self.sequence_number.to_owned(),
            kind: self.kind,
            desired_terms: self.desired_terms.as_deref().map(owned),
            seen_terms,
            superseded: self.superseded.iter().map(|seq| (*seq).to_owned()).collect(),
        }
    }
}

/// [`BatchPlan`] borrowed from the batch (see [`PlannedChangeRef`]): what the handler applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPlanRef<'a> {
    pub changes: Vec<PlannedChangeRef<'a>>,
    pub records: u64,
    pub inserts: u64,
    pub modifies: u64,
    pub removes: u64,
    pub superseded: u64,
}

impl BatchPlanRef<'_> {
    fn count(&mut self, kind: ChangeKind) {
        self.records += 1;
        match kind {
            ChangeKind::Insert => self.inserts += 1,
            ChangeKind::Modify => self.modifies += 1,
            ChangeKind::Remove => self.removes += 1,
        }
    }

    /// The owned [`BatchPlan`].
    pub fn to_owned_plan(&self) -> BatchPlan {
        BatchPlan {
            changes: self.changes.iter().map(PlannedChangeRef::to_owned_change).collect(),
            records: self.records,
            inserts: self.inserts,
            modifies: self.modifies,
            removes: self.removes,
            superseded: self.superseded,
        }
    }
}

/// Decodes every record of `event` and keeps, per product, its last change (by sequence number,
/// compared numerically). Fails on the first record that cannot be decoded.
pub fn plan_batch(event: &Event) -> Result<BatchPlan, DecodeError> {
    let decoded = decode_batch(event)?;
    Ok(plan_decoded(&decoded).to_owned_plan())
}

/// Decodes every record of `event`, in order. Fails on the first record that cannot be decoded.
pub fn decode_batch(event: &Event) -> Result<Vec<DecodedChange<'_>>, DecodeError> {
    let mut decoded = Vec::with_capacity(event.records.len());
    for (index, record) in event.records.iter().enumerate() {
        decoded.push(decode_record(index, record)?);
    }
    Ok(decoded)
}

/// [`plan_batch`] on decoded records, borrowing from them.
pub fn plan_decoded<'a>(decoded: &'a [DecodedChange<'a>]) -> BatchPlanRef<'a> {
    let mut plan = BatchPlanRef::default();
    for change in decoded {
        plan.count(change.kind);
    }
    // One sort groups the changes by product (in id order, as `changes` must be) and orders each
    // product's by sequence number, compared numerically. Stable: of two records with the same
    // sequence number, the later one in the batch stays later, and wins. It sorts references, as
    // moving the changes themselves costs more than comparing them.
    let mut changes: Vec<&DecodedChange> = decoded.iter().collect();
    changes.sort_by(|a, b| {
        a.product_id.cmp(b.product_id).then_with(|| sequence::compare(a.sequence_number, b.sequence_number))
    });
    // Terms are gathered in one buffer, and each set copied out of it at its final size.
    let mut scratch = Vec::new();
    plan.changes =
        changes.chunk_by(|a, b| a.product_id == b.product_id).map(|c| plan_product(c, &mut scratch)).collect();
    plan.superseded = plan.changes.iter().map(|c| c.superseded.len() as u64).sum();
    plan
}

/// Reduces one product's changes in a batch (at least one, in sequence-number order) to the last
/// of them. `scratch` is a buffer to gather terms in.
fn plan_product<'a>(changes: &[&'a DecodedChange<'a>], scratch: &mut Vec<Term<'a>>) -> PlannedChangeRef<'a> {
    let (last, earlier) = changes.split_last().expect("every product has at least one change");
    let desired_terms = last.new_image.as_ref().map(|image| {
        scratch.clear();
        image.push_terms(scratch);
        sort_distinct(scratch);
        scratch.to_vec()
    });
    // Every image but the last change's new one, whose terms are the desired ones.
    let images = earlier.iter().flat_map(|c| c.old_image.iter().chain(&c.new_image)).chain(&last.old_image);
    scratch.clear();
    push_terms_of_images(images, scratch);
    sort_distinct(scratch);
    if let Some(desired) = &desired_terms {
        // Both sorted: one walk through the desired terms finds those to drop.
        let mut desired = desired.iter().peekable();
        scratch.retain(|term| {
            while desired.next_if(|d| *d < term).is_some() {}
            desired.peek() != Some(&term)
        });
    }
    PlannedChangeRef {
        product_id: last.product_id,
        sequence_number: last.sequence_number,
        kind: last.kind,
        desired_terms,
        undesired_terms: scratch.to_vec(),
        superseded: earlier.iter().map(|c| c.sequence_number).collect(),
    }
}

fn sort_distinct(terms: &mut Vec<Term<'_>>) {
    terms.sort_unstable();
    terms.dedup();
}

/// Pushes the terms of `images` (a product's images in stream order) onto `terms`.
fn push_terms_of_images<'a>(images: impl Iterator<Item = &'a ImageText<'a>>, terms: &mut Vec<Term<'a>>) {
    // Most images repeat the text of the one before: a change's old image is the previous
    // change's new image, and many changes touch only the price. So a text is tokenized only when
    // it differs from the previous image's.
    let mut previous: Option<&ImageText> = None;
    for image in images {
        if previous != Some(image) {
            image.push_terms(terms);
        }
        previous = Some(image);
    }
}

/// Whether sequence number `a` is strictly after `b`.
pub fn is_after(a: &str, b: &str) -> bool {
    sequence::compare(a, b) == Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{event, stream_record};

    fn product(id: &str, name: &str) -> Product {
        Product { id: id.into(), name: name.into(), ..Default::default() }
    }

    fn owned(view: ProductView<'_>) -> Product {
        Product {
            id: view.id.into(),
            name: view.name.into(),
            description: view.description.map(Into::into),
            price: view.price,
            version: view.version,
        }
    }

    fn words(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn collapses_each_product_to_its_numerically_last_change() {
        let (a1, a2, a3) = (product("a", "red hat"), product("a", "blue hat"), product("a", "green cap"));
        let b = product("b", "oak desk");
        let batch = event(vec![
            stream_record("9", None, Some(&a1)),
            stream_record("10", Some(&a1), Some(&a2)),
            stream_record("8", None, Some(&b)),
            // Out of order in the batch: still the newest for "a".
            stream_record("100", Some(&a2), Some(&a3)),
            stream_record("99", Some(&b), None),
        ]);
        let plan = plan_batch(&batch).unwrap();
        assert_eq!((plan.records, plan.inserts, plan.modifies, plan.removes), (5, 2, 2, 1));
        assert_eq!(plan.superseded, 3);
        assert_eq!(plan.changes.len(), 2);
        let a = &plan.changes[0];
        assert_eq!((a.product_id.as_str(), a.sequence_number.as_str(), a.kind), ("a", "100", ChangeKind::Modify));
        assert_eq!(a.desired_terms, Some(words(&["cap", "green"])));
        assert_eq!(a.seen_terms, words(&["blue", "cap", "green", "hat", "red"]));
        assert_eq!(a.superseded, vec!["9".to_string(), "10".to_string()]);
        let b = &plan.changes[1];
        assert_eq!((b.sequence_number.as_str(), b.kind), ("99", ChangeKind::Remove));
        assert!(b.is_delete());
        assert_eq!(b.seen_terms, words(&["desk", "oak"]));
    }

    #[test]
    fn the_borrowing_decoder_agrees_with_serde() {
        let batch = crate::synthetic::synthetic_batch(400, 5);
        let images = batch.records.iter().flat_map(|r| [&r.change.new_image, &r.change.old_image]);
        for item in images.filter(|item| !item.is_empty()) {
            let expected: Product = serde_dynamo::from_item(item.clone()).unwrap();
            assert_eq!(product_from_item(item).map(owned), Some(expected));
        }
        let mut item = Item::from(std::collections::HashMap::from([
            ("id".to_owned(), AttributeValue::S("a".into())),
            ("description".to_owned(), AttributeValue::Null(true)),
            ("extra".to_owned(), AttributeValue::Bool(true)),
        ]));
        assert_eq!(product_from_item(&item).map(owned), Some(product("a", "")));
        // Left to serde: whatever it may reject.
        for (attribute, value) in [
            ("price", AttributeValue::S("cheap".into())),
            ("version", AttributeValue::N("1.5".into())),
            ("name", AttributeValue::Null(true)),
            ("description", AttributeValue::Null(false)),
        ] {
            item.insert(attribute.into(), value.clone());
            assert_eq!(product_from_item(&item), None, "{attribute}: {value:?}");
            assert!(serde_dynamo::from_item::<_, Product>(item.clone()).is_err(), "{attribute}: {value:?}");
            item.remove(attribute);
        }
        item.remove("id");
        assert_eq!(product_from_item(&item), None);
    }

    #[test]
    fn the_borrowed_plan_keeps_terms_as_written_each_once() {
        let (a1, a2) = (product("a", "Red hat, RED hat"), product("a", "red Cap"));
        let batch = event(vec![stream_record("1", None, Some(&a1)), stream_record("2", Some(&a1), Some(&a2))]);
        let decoded = decode_batch(&batch).unwrap();
        let plan = plan_decoded(&decoded);
        let change = &plan.changes[0];
        fn written<'a>(terms: &[Term<'a>]) -> Vec<&'a str> {
            terms.iter().map(|t| t.as_written()).collect()
        }
        assert_eq!(written(change.desired()), ["Cap", "red"]);
        assert_eq!(written(&change.undesired_terms), ["hat"]);
        assert_eq!(change.superseded, ["1"]);
        assert_eq!(plan.to_owned_plan(), plan_batch(&batch).unwrap());
        assert_eq!(plan.to_owned_plan().changes[0].seen_terms, words(&["cap", "hat", "red"]));
    }

    #[test]
    fn equal_sequence_numbers_keep_the_later_record() {
        let (x, y) = (product("a", "first"), product("a", "second"));
        let plan =
            plan_batch(&event(vec![stream_record("5", None, Some(&x)), stream_record("05", None, Some(&y))])).unwrap();
        assert_eq!(plan.changes[0].desired_terms, Some(words(&["second"])));
        assert_eq!(plan.superseded, 1);
    }

    #[test]
    fn an_empty_batch_plans_nothing() {
        assert_eq!(plan_batch(&Event::default()).unwrap(), BatchPlan::default());
    }

    #[test]
    fn a_remove_ignores_a_stray_new_image() {
        let mut record = stream_record("7", Some(&product("a", "x")), None);
        record.change.new_image.insert("name".into(), AttributeValue::L(vec![]));
        let change = decode_record(0, &record).unwrap();
        assert_eq!((change.kind, change.new_image), (ChangeKind::Remove, None));
    }

    #[test]
    fn errors_name_the_record_and_the_problem() {
        let mut record = stream_record("7", None, Some(&product("a", "x")));
        record.event_id = "abc".into();
        record.change.old_image.insert("id".into(), AttributeValue::S("a".into()));
        record.change.old_image.insert("price".into(), AttributeValue::S("cheap".into()));
        let err = decode_record(3, &record).unwrap_err();
        assert_eq!(err.index, 3);
        assert!(matches!(err.problem, DecodeProblem::BadImage { image: "OldImage", .. }));
        let message = err.to_string();
        assert!(message.starts_with("stream record #3 (eventID \"abc\"): OldImage does not decode"), "{message}");
    }
}
