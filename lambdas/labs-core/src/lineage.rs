//! Shard lineage: after a split or merge, a child shard continues its parents' keys. A consumer
//! that wants per-key order must finish every parent before it reads a child.

use std::collections::HashSet;

/// Orders `items` so that every item comes after its parents (those that are present), keeping
/// the given order otherwise. `lineage` returns an item's id and its up-to-two parent ids.
pub fn parents_first<T>(items: Vec<T>, lineage: impl Fn(&T) -> (String, [Option<String>; 2])) -> Vec<T> {
    let present: HashSet<String> = items.iter().map(|item| lineage(item).0).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut pending: Vec<T> = items;
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for item in pending {
            let (id, parents) = lineage(&item);
            let ready = parents.iter().flatten().all(|p| !present.contains(p) || placed.contains(p));
            if ready {
                placed.insert(id);
                ordered.push(item);
            } else {
                rest.push(item);
            }
        }
        if rest.len() == before {
            // A cycle cannot happen in real lineage; keep the data rather than loop forever.
            ordered.extend(rest);
            break;
        }
        pending = rest;
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, a: Option<&str>, b: Option<&str>) -> (String, [Option<String>; 2]) {
        (id.to_owned(), [a.map(str::to_owned), b.map(str::to_owned)])
    }

    #[test]
    fn children_follow_all_their_parents() {
        // 0 and 1 merge into 3; 2 splits into 4 and 5; listed children-first.
        let items = vec![
            node("3", Some("0"), Some("1")),
            node("4", Some("2"), None),
            node("0", None, None),
            node("5", Some("2"), None),
            node("1", None, None),
            node("2", None, None),
        ];
        let ids: Vec<String> = parents_first(items, Clone::clone).into_iter().map(|n| n.0).collect();
        let at = |id: &str| ids.iter().position(|x| x == id).unwrap();
        assert!(at("0") < at("3") && at("1") < at("3"));
        assert!(at("2") < at("4") && at("2") < at("5"));
        assert_eq!(ids.len(), 6);
    }

    #[test]
    fn missing_parents_do_not_block() {
        // After the emulator dropped a split parent, only children remain.
        let items = vec![node("4", Some("2"), None), node("5", Some("2"), None)];
        assert_eq!(parents_first(items, Clone::clone).len(), 2);
    }
}
