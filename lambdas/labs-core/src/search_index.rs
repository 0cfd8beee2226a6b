//! Example 3's rules: a search index kept in sync with a DynamoDB product table by change data
//! capture. Everything here is pure: how text becomes terms, what the index should contain for a
//! set of products, how to compare an index with that expectation, how a query is answered, and a
//! seeded workload of product writes for `labs run` to replay and `labs verify` to regenerate.

use std::collections::{BTreeMap, BTreeSet};

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Terms longer than this are cut to this length (in `terms`, so documents and queries agree).
/// DynamoDB refuses partition keys over 2048 bytes: without a cap, one long run of letters in a
/// description would make a stream record that can never be indexed and would block its shard.
pub const MAX_TERM_LEN: usize = 100;

/// The words of `text`: lowercased maximal runs of ASCII letters and digits. Anything else,
/// including non-ASCII letters, separates terms. Runs longer than [`MAX_TERM_LEN`] are truncated.
pub fn terms(text: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    add_terms(text, &mut all);
    all
}

/// Adds the [`terms`] of `text` to `into`. Allocates only for terms not in `into` yet, so that
/// the terms of many similar texts (a product's successive versions) can be united cheaply.
pub fn add_terms(text: &str, into: &mut BTreeSet<String>) {
    // Each term is lowercased in this buffer, so only a term `into` lacks costs an allocation.
    let mut buffer = [0u8; MAX_TERM_LEN];
    for term in text_terms(text) {
        let term = term.lowercase(&mut buffer);
        if !into.contains(term) {
            into.insert(term.to_owned());
        }
    }
}

/// The [`terms`] of `text`, in text order, repeats included, each borrowed from the text as it is
/// written: no allocation, for callers that handle many texts (the CDC indexer).
pub fn text_terms(text: &str) -> TextTerms<'_> {
    TextTerms { text, at: 0 }
}

/// The iterator of [`text_terms`].
#[derive(Debug, Clone)]
pub struct TextTerms<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for TextTerms<'a> {
    type Item = Term<'a>;

    #[inline]
    fn next(&mut self) -> Option<Term<'a>> {
        // Scanning bytes is the same as scanning chars here: every byte of a non-ASCII char is
        // >= 0x80, so it is a separator, as the char is.
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() && !bytes[self.at].is_ascii_alphanumeric() {
            self.at += 1;
        }
        let start = self.at;
        while self.at < bytes.len() && bytes[self.at].is_ascii_alphanumeric() {
            self.at += 1;
        }
        if start == self.at {
            return None;
        }
        let written = &self.text[start..self.at.min(start + MAX_TERM_LEN)];
        Some(Term::new(written))
    }
}

/// One term of a text, as written there (a run of ASCII letters and digits, at most
/// [`MAX_TERM_LEN`] long); the term itself is its lowercase. Compared, ordered and hashed as that
/// lowercase, so a set of them is a set of terms, built without lowercasing into new strings.
#[derive(Debug, Clone, Copy)]
pub struct Term<'a> {
    written: &'a str,
    /// The first 8 bytes of the term (lowercase), big-endian, padded with zeros: ordered as the
    /// terms are, and for a term of 8 bytes or fewer, the whole term. Sorting a product's terms
    /// compares them mostly by this, not by calls to `memcmp`.
    prefix: u64,
    /// Whether `written` differs from its lowercase: most words are written in lowercase, and
    /// those are used as they are.
    has_upper: bool,
}

/// Bytes of a term in [`Term::prefix`].
const PREFIX_LEN: usize = 8;

impl<'a> Term<'a> {
    /// `written` must be a run of ASCII letters and digits.
    #[inline]
    fn new(written: &'a str) -> Self {
        let mut prefix = [0u8; PREFIX_LEN];
        let head = &written.as_bytes()[..written.len().min(PREFIX_LEN)];
        prefix[..head.len()].copy_from_slice(head);
        prefix.make_ascii_lowercase();
        Term { written, prefix: u64::from_be_bytes(prefix), has_upper: written.bytes().any(|b| b.is_ascii_uppercase()) }
    }

    /// The bytes after the prefix, as written.
    #[inline]
    fn tail(&self) -> &'a [u8] {
        &self.written.as_bytes()[self.written.len().min(PREFIX_LEN)..]
    }

    /// The term as written in the text.
    #[inline]
    pub fn as_written(&self) -> &'a str {
        self.written
    }

    /// The term, lowercased into `buffer` if need be.
    #[inline]
    pub fn lowercase<'b>(&self, buffer: &'b mut [u8; MAX_TERM_LEN]) -> &'b str
    where
        'a: 'b,
    {
        if !self.has_upper {
            return self.written;
        }
        let lowered = &mut buffer[..self.written.len()];
        lowered.copy_from_slice(self.written.as_bytes());
        lowered.make_ascii_lowercase();
        std::str::from_utf8(lowered).expect("ASCII alphanumerics are UTF-8")
    }

    /// The term, as a new string.
    #[inline]
    pub fn to_lowercase(&self) -> String {
        if self.has_upper { self.written.to_ascii_lowercase() } else { self.written.to_owned() }
    }

    /// Whether this is the term `term` (which must be lowercase to match).
    #[inline]
    pub fn is(&self, term: &str) -> bool {
        self.cmp_term(term) == std::cmp::Ordering::Equal
    }

    /// This term compared with the term `term`, as strings (`term` is taken as it is).
    #[inline]
    pub fn cmp_term(&self, term: &str) -> std::cmp::Ordering {
        if !self.has_upper {
            return self.written.cmp(term);
        }
        cmp_lowered(self.written.as_bytes(), term.as_bytes(), |b| b)
    }
}

/// `a` lowercased compared with `b` mapped by `map_b`, byte by byte.
#[inline]
fn cmp_lowered(a: &[u8], b: &[u8], map_b: impl Fn(u8) -> u8) -> std::cmp::Ordering {
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x.to_ascii_lowercase(), map_b(y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
}

impl PartialEq for Term<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix
            && self.written.len() == other.written.len()
            && self.tail().eq_ignore_ascii_case(other.tail())
    }
}

impl Eq for Term<'_> {}

impl Ord for Term<'_> {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Equal prefixes: both terms are at least 8 bytes long, or they are the same term (a
        // shorter one has zeros where the other has letters or digits).
        self.prefix.cmp(&other.prefix).then_with(|| cmp_lowered(self.tail(), other.tail(), |b| b.to_ascii_lowercase()))
    }
}

impl PartialOrd for Term<'_> {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Term<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut buffer = [0u8; MAX_TERM_LEN];
        self.lowercase(&mut buffer).hash(state);
    }
}

/// A row of the products table. Only `id` (the table's partition key) is required: items written
/// by hand in the console or the CLI may lack any other attribute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Bumped by the workload generator on every write. The indexer does not rely on it (other
    /// writers may not bump it); it guards with stream sequence numbers instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The terms a product is found by: those of its name and of its description.
pub fn product_terms(p: &Product) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    add_product_terms(p, &mut all);
    all
}

/// Adds the [`product_terms`] of `p` to `into` (see [`add_terms`]).
pub fn add_product_terms(p: &Product, into: &mut BTreeSet<String>) {
    add_terms(&p.name, into);
    if let Some(description) = &p.description {
        add_terms(description, into);
    }
}

/// One index row: `(term, product_id)`.
pub type IndexEntry = (String, String);

/// The index that should exist for `products`: one entry per term of each product.
pub fn expected_index<'a>(products: impl IntoIterator<Item = &'a Product>) -> BTreeSet<IndexEntry> {
    products.into_iter().flat_map(|p| product_terms(p).into_iter().map(move |t| (t, p.id.clone()))).collect()
}

/// How an actual index differs from the expected one (both lists sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexDiff {
    /// Expected but absent: searches would miss these products.
    pub missing: Vec<IndexEntry>,
    /// Present but not expected: stale words, or words of deleted products.
    pub extra: Vec<IndexEntry>,
}

impl IndexDiff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }
}

pub fn diff_index(expected: &BTreeSet<IndexEntry>, actual: &BTreeSet<IndexEntry>) -> IndexDiff {
    IndexDiff {
        missing: expected.difference(actual).cloned().collect(),
        extra: actual.difference(expected).cloned().collect(),
    }
}

/// Ids of the products that have every term of `query`. A query without terms matches nothing.
pub fn search(index: &BTreeSet<IndexEntry>, query: &str) -> BTreeSet<String> {
    let mut result: Option<BTreeSet<String>> = None;
    for term in terms(query) {
        let ids: BTreeSet<String> = index
            .range((term.clone(), String::new())..)
            .take_while(|(t, _)| *t == term)
            .map(|(_, id)| id.clone())
            .collect();
        let narrowed = match result {
            None => ids,
            Some(previous) => previous.intersection(&ids).cloned().collect(),
        };
        if narrowed.is_empty() {
            return narrowed;
        }
        result = Some(narrowed);
    }
    result.unwrap_or_default()
}

/// One write to the products table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProductOp {
    /// PutItem: an insert, an update, or a re-insert after a delete.
    Put(Product),
    /// DeleteItem.
    Delete { id: String },
}

impl ProductOp {
    pub fn id(&self) -> &str {
        match self {
            ProductOp::Put(p) => &p.id,
            ProductOp::Delete { id } => id,
        }
    }
}

pub const COLOURS: [&str; 10] =
    ["red", "blue", "green", "black", "white", "yellow", "grey", "navy", "orange", "purple"];
pub const MATERIALS: [&str; 10] =
    ["leather", "cotton", "wool", "steel", "oak", "bamboo", "linen", "glass", "canvas", "denim"];
pub const NOUNS: [&str; 12] =
    ["shoes", "jacket", "scarf", "chair", "table", "lamp", "bag", "hat", "mug", "boots", "gloves", "desk"];
pub const ADJECTIVES: [&str; 8] =
    ["soft", "sturdy", "handmade", "lightweight", "waterproof", "classic", "vintage", "compact"];

/// The id of the `n`th product (from 0): `p-0001`, `p-0002`, ...
pub fn product_id(n: usize) -> String {
    format!("p-{:04}", n + 1)
}

#[cfg(feature = "generators")]
fn pick<'a>(rng: &mut ChaCha8Rng, words: &[&'a str]) -> &'a str {
    words[rng.random_range(0..words.len())]
}

#[cfg(feature = "generators")]
fn random_name(rng: &mut ChaCha8Rng) -> String {
    format!("{} {} {}", pick(rng, &COLOURS), pick(rng, &MATERIALS), pick(rng, &NOUNS))
}

#[cfg(feature = "generators")]
fn random_description(rng: &mut ChaCha8Rng, name: &str) -> Option<String> {
    // Some products have no description at all, as items written by hand often do.
    if rng.random_range(0..10) == 0 {
        return None;
    }
    let noun = name.rsplit(' ').next().unwrap_or(name);
    Some(format!(
        "A {} {} in {}, size {}. Ships in {}-{} days!",
        pick(rng, &ADJECTIVES),
        noun,
        pick(rng, &MATERIALS),
        rng.random_range(1..50),
        rng.random_range(1..4),
        rng.random_range(4..10),
    ))
}

#[cfg(feature = "generators")]
fn random_price(rng: &mut ChaCha8Rng) -> Option<f64> {
    (rng.random_range(0..10) != 0).then(|| f64::from(rng.random_range(100u32..100_000)) / 100.0)
}

/// A seeded, deterministic sequence of `operations` writes over at most `catalogue` products
/// (ids `p-0001` upwards; a catalogue of 0 is treated as 1).
///
/// While some ids have never been used, most writes insert a new product; after that, writes are
/// mostly updates (new name, description or price), some deletes, and some re-inserts of deleted
/// products. Every `Put` of a product carries `version` = 1 + the number of earlier `Put`s of that
/// id, so versions rise by 1 per write and keep rising across a delete and re-insert.
#[cfg(feature = "generators")]
pub fn workload(seed: u64, operations: usize, catalogue: usize) -> Vec<ProductOp> {
    let catalogue = catalogue.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut live: BTreeMap<String, Product> = BTreeMap::new();
    let mut deleted: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_new = 0usize;
    let mut ops = Vec::with_capacity(operations);
    for _ in 0..operations {
        let roll = rng.random_range(0..100);
        let op = if next_new < catalogue && (live.is_empty() || roll < 80) {
            let id = product_id(next_new);
            next_new += 1;
            let name = random_name(&mut rng);
            let description = random_description(&mut rng, &name);
            let product = Product { id, name, description, price: random_price(&mut rng), version: Some(1) };
            live.insert(product.id.clone(), product.clone());
            ProductOp::Put(product)
        } else if !deleted.is_empty() && (live.is_empty() || roll < 8) {
            let index = rng.random_range(0..deleted.len());
            let (id, last_version) = deleted.iter().nth(index).map(|(k, v)| (k.clone(), *v)).unwrap();
            deleted.remove(&id);
            let name = random_name(&mut rng);
            let description = random_description(&mut rng, &name);
            let product =
                Product { id, name, description, price: random_price(&mut rng), version: Some(last_version + 1) };
            live.insert(product.id.clone(), product.clone());
            ProductOp::Put(product)
        } else if roll < 20 && live.len() > 1 {
            let index = rng.random_range(0..live.len());
            let id = live.keys().nth(index).cloned().unwrap();
            let gone = live.remove(&id).unwrap();
            deleted.insert(id.clone(), gone.version.unwrap_or(0));
            ProductOp::Delete { id }
        } else {
            let index = rng.random_range(0..live.len());
            let product = live.values_mut().nth(index).unwrap();
            match rng.random_range(0..3) {
                0 => {
                    product.name = random_name(&mut rng);
                    product.description = random_description(&mut rng, &product.name);
                }
                1 => product.description = random_description(&mut rng, &product.name),
                _ => product.price = random_price(&mut rng),
            }
            product.version = Some(product.version.unwrap_or(0) + 1);
            ProductOp::Put(product.clone())
        };
        ops.push(op);
    }
    ops
}

/// The table after `ops` have been applied in order, by id.
pub fn apply_ops<'a>(ops: impl IntoIterator<Item = &'a ProductOp>) -> BTreeMap<String, Product> {
    let mut table = BTreeMap::new();
    for op in ops {
        match op {
            ProductOp::Put(p) => {
                table.insert(p.id.clone(), p.clone());
            }
            ProductOp::Delete { id } => {
                table.remove(id);
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(words: &[&str]) -> BTreeSet<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn product(id: &str, name: &str, description: Option<&str>) -> Product {
        Product { id: id.into(), name: name.into(), description: description.map(Into::into), ..Default::default() }
    }

    #[test]
    fn terms_are_lowercased_alphanumeric_runs() {
        assert_eq!(terms("Red Leather SHOES, red!"), set(&["leather", "red", "shoes"]));
        assert_eq!(terms("iPhone 15 Pro-Max"), set(&["15", "iphone", "max", "pro"]));
        assert_eq!(terms("abc123DEF"), set(&["abc123def"]));
        assert_eq!(terms("size 42 (EU) / 9.5 UK"), set(&["42", "5", "9", "eu", "size", "uk"]));
    }

    #[test]
    fn terms_of_odd_text() {
        assert!(terms("").is_empty());
        assert!(terms("   \t\n").is_empty());
        assert!(terms("!?.,;:-_()[]{}'\"/\\@#$%^&*+=~`|<>").is_empty());
        // Non-ASCII letters separate terms; they are never part of one.
        assert_eq!(terms("Café naïve"), set(&["caf", "na", "ve"]));
        assert!(terms("東京 😀 ĀĒĪ").is_empty());
        assert_eq!(terms("ÉCOLE"), set(&["cole"]));
        assert_eq!(terms("0007"), set(&["0007"]));
    }

    #[test]
    fn text_terms_borrow_the_text_and_compare_as_lowercase() {
        let text = "Red HAT, red hat; Café";
        let written: Vec<&str> = text_terms(text).map(|t| t.as_written()).collect();
        assert_eq!(written, ["Red", "HAT", "red", "hat", "Caf"]);
        let set: BTreeSet<Term> = text_terms(text).collect();
        let lowered: Vec<String> = set.iter().map(Term::to_lowercase).collect();
        assert_eq!(lowered, ["caf", "hat", "red"]);
        let term = |text| text_terms(text).next().unwrap();
        let (red, hat) = (term("Red"), term("hat"));
        assert!(red == term("rED") && red.is("red") && !red.is("Red") && !red.is("re"));
        assert!(hat < red && term("Z") > term("a") && term("b") < term("B1") && term("Red") > term("RE"));
        let (long, longer) = (term("Handmade"), term("handmadeS"));
        assert!(long < longer && longer == term("HANDMADEs") && longer > term("handmadea") && long != longer);
        let mut buffer = [0u8; MAX_TERM_LEN];
        assert_eq!(term("AbC1").lowercase(&mut buffer), "abc1");
        assert_eq!(term("abc1").lowercase(&mut buffer), "abc1");
    }

    proptest::proptest! {
        /// `text_terms` is `terms` without the lowercasing: the same terms, and their order and
        /// equality are those of the lowercase strings.
        #[test]
        fn text_terms_are_the_terms(text in "[a-zA-Z0-9 ,.é東-]{0,60}", long in 0usize..2, other in "(handMade|[a-zA-Z]{0,2}){0,6}") {
            let text = if long == 1 { format!("{text} {}", "Ab".repeat(120)) } else { text };
            let lowered: BTreeSet<String> = text_terms(&text).map(|t| t.to_lowercase()).collect();
            proptest::prop_assert_eq!(&lowered, &terms(&text));
            let mut buffer = [0u8; MAX_TERM_LEN];
            for term in text_terms(&text).chain(text_terms(&other)) {
                for against in text_terms(&text).chain(text_terms(&other)) {
                    let (a, b) = (term.to_lowercase(), against.to_lowercase());
                    proptest::prop_assert_eq!(term.cmp(&against), a.cmp(&b));
                    proptest::prop_assert_eq!(term == against, a == b);
                    proptest::prop_assert_eq!(term.is(&b), a == b);
                    proptest::prop_assert_eq!(term.cmp_term(&b), a.cmp(&b));
                    proptest::prop_assert_eq!(term.cmp_term(against.as_written()), a.as_str().cmp(against.as_written()));
                }
                proptest::prop_assert_eq!(term.lowercase(&mut buffer), term.to_lowercase());
            }
        }
    }

    #[test]
    fn add_terms_unites_with_what_is_there() {
        let mut all = set(&["red", "zebra"]);
        add_terms("Red HAT, red hat; Café", &mut all);
        assert_eq!(all, set(&["caf", "hat", "red", "zebra"]));
        let mut all = BTreeSet::new();
        add_product_terms(&product("p-1", "Red shoes", Some("Leather, red.")), &mut all);
        assert_eq!(all, set(&["leather", "red", "shoes"]));
    }

    #[test]
    fn long_runs_are_truncated_consistently() {
        let long = "a".repeat(3000);
        let t = terms(&long);
        assert_eq!(t.len(), 1);
        assert_eq!(t.first().unwrap().len(), MAX_TERM_LEN);
        let index = expected_index([&product("p-1", &long, None)]);
        assert_eq!(search(&index, &long.to_uppercase()), set(&["p-1"]));
    }

    #[test]
    fn product_terms_unite_name_and_description() {
        let p = product("p-1", "Red shoes", Some("Leather, red."));
        assert_eq!(product_terms(&p), set(&["leather", "red", "shoes"]));
        assert_eq!(product_terms(&product("p-2", "Mug", None)), set(&["mug"]));
        assert!(product_terms(&product("p-3", "", None)).is_empty());
    }

    #[test]
    fn product_tolerates_missing_attributes() {
        let p: Product = serde_json::from_str(r#"{"id":"p-9"}"#).unwrap();
        assert_eq!(p, product("p-9", "", None));
        let p: Product =
            serde_json::from_str(r#"{"id":"p-9","name":"x","price":1.5,"version":3,"extra":true}"#).unwrap();
        assert_eq!((p.price, p.version), (Some(1.5), Some(3)));
        assert!(serde_json::from_str::<Product>(r#"{"name":"no id"}"#).is_err());
        // Absent options are not written (DynamoDB would otherwise store NULL attributes).
        let json = serde_json::to_value(product("p-1", "a", None)).unwrap();
        assert_eq!(json, serde_json::json!({"id": "p-1", "name": "a"}));
    }

    #[test]
    fn expected_index_and_diff() {
        let a = product("p-1", "red shoes", None);
        let b = product("p-2", "blue shoes", Some("Red laces"));
        let index = expected_index([&a, &b]);
        let entry = |t: &str, id: &str| (t.to_string(), id.to_string());
        assert_eq!(
            index,
            [
                entry("blue", "p-2"),
                entry("laces", "p-2"),
                entry("red", "p-1"),
                entry("red", "p-2"),
                entry("shoes", "p-1"),
                entry("shoes", "p-2"),
            ]
            .into_iter()
            .collect()
        );
        assert!(diff_index(&index, &index).is_empty());

        let mut actual = index.clone();
        actual.remove(&entry("red", "p-1"));
        actual.insert(entry("green", "p-1"));
        let diff = diff_index(&index, &actual);
        assert!(!diff.is_empty());
        assert_eq!(diff.missing, vec![entry("red", "p-1")]);
        assert_eq!(diff.extra, vec![entry("green", "p-1")]);
        assert!(expected_index([]).is_empty());
    }

    #[test]
    fn search_needs_all_terms() {
        let products = [
            product("p-1", "Red leather shoes", None),
            product("p-2", "Blue leather shoes", Some("red laces")),
            product("p-3", "Red wool scarf", None),
        ];
        let index = expected_index(&products);
        assert_eq!(search(&index, "red shoes"), set(&["p-1", "p-2"]));
        assert_eq!(search(&index, "RED, Leather!"), set(&["p-1", "p-2"]));
        assert_eq!(search(&index, "red"), set(&["p-1", "p-2", "p-3"]));
        assert_eq!(search(&index, "wool shoes"), set(&[]));
        assert_eq!(search(&index, "unknown"), set(&[]));
        assert!(search(&index, "").is_empty());
        assert!(search(&index, "?!").is_empty());
        assert!(search(&index, "東京").is_empty());
        // A term that is a prefix of another does not match it.
        assert!(search(&index, "re").is_empty());
    }

    #[test]
    fn workload_is_deterministic() {
        assert_eq!(workload(7, 300, 40), workload(7, 300, 40));
        assert_ne!(workload(7, 300, 40), workload(8, 300, 40));
        assert_eq!(workload(7, 300, 40).len(), 300);
        assert!(workload(7, 0, 40).is_empty());
        assert_eq!(workload(7, 5, 0).len(), 5);
    }

    #[test]
    fn workload_has_inserts_updates_deletes_and_reinserts() {
        let ops = workload(42, 2000, 100);
        let mut puts_per_id: BTreeMap<String, u64> = BTreeMap::new();
        let mut live = BTreeSet::new();
        let (mut inserts, mut updates, mut deletes, mut reinserts) = (0, 0, 0, 0);
        for op in &ops {
            match op {
                ProductOp::Put(p) => {
                    assert!(p.id.starts_with("p-") && p.id.len() == 6, "{}", p.id);
                    let puts = puts_per_id.entry(p.id.clone()).or_default();
                    *puts += 1;
                    assert_eq!(p.version, Some(*puts), "versions rise by one per write");
                    match (*puts, live.insert(p.id.clone())) {
                        (1, _) => inserts += 1,
                        (_, true) => reinserts += 1,
                        (_, false) => updates += 1,
                    }
                }
                ProductOp::Delete { id } => {
                    assert!(live.remove(id), "only live products are deleted");
                    deletes += 1;
                }
            }
        }
        assert_eq!(inserts, 100);
        assert!(updates > 1000, "{updates}");
        assert!(deletes > 50, "{deletes}");
        assert!(reinserts > 10, "{reinserts}");
        // Inserts come early: the first 100 operations are mostly inserts.
        let early_new = ops[..100].iter().filter(|op| matches!(op, ProductOp::Put(p) if p.version == Some(1))).count();
        assert!(early_new > 60, "{early_new}");
    }

    #[test]
    fn workload_products_are_searchable() {
        let ops = workload(1, 500, 60);
        let table = apply_ops(&ops);
        assert_eq!(table.len(), live_count(&ops));
        let index = expected_index(table.values());
        let hits: usize = COLOURS
            .iter()
            .flat_map(|c| NOUNS.iter().map(move |n| format!("{c} {n}")))
            .map(|q| search(&index, &q).len())
            .sum();
        assert!(hits > 0);
        let any = table.values().next().unwrap();
        assert!(search(&index, &any.name).contains(&any.id));
    }

    fn live_count(ops: &[ProductOp]) -> usize {
        let mut live = BTreeSet::new();
        for op in ops {
            match op {
                ProductOp::Put(p) => live.insert(p.id.clone()),
                ProductOp::Delete { id } => live.remove(id),
            };
        }
        live.len()
    }

    #[test]
    fn apply_ops_keeps_the_last_write() {
        let ops = vec![
            ProductOp::Put(product("p-1", "a", None)),
            ProductOp::Put(product("p-2", "b", None)),
            ProductOp::Put(product("p-1", "c", None)),
            ProductOp::Delete { id: "p-2".into() },
            ProductOp::Delete { id: "p-3".into() },
        ];
        let table = apply_ops(&ops);
        assert_eq!(table.len(), 1);
        assert_eq!(table["p-1"].name, "c");
        assert_eq!(ops[3].id(), "p-2");
    }
}
