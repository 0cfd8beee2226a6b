//! The table-table join: a per-user timeline (the posts of everyone the user follows), a
//! materialised view of two tables kept current from their change streams.
//!
//! Like Kafka Streams' KTable-KTable join, both sides are materialised as state and a change on
//! either side re-derives the result for its key; here the key is the author, so one row per
//! author ([`AuthorState`]: their posts and their followers) decides every timeline entry that
//! involves them. A post added or removed adds or removes it in each follower's timeline; a
//! follow added or removed adds or removes each of the author's posts in the follower's. The
//! result must equal [`batch_timeline`], the join of the two tables as they end up.

use std::collections::{BTreeMap, BTreeSet};

#[cfg(feature = "generators")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "generators")]
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::time::windows::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub post_id: String,
    pub author: String,
    pub posted_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Follow {
    pub follower: String,
    pub followee: String,
}

/// One row of a table's change stream, reduced to what the join needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TableChange {
    PostPut(Post),
    PostDeleted(Post),
    FollowPut(Follow),
    FollowDeleted(Follow),
}

impl TableChange {
    /// The join key: the author the change is about.
    pub fn author(&self) -> &str {
        match self {
            TableChange::PostPut(p) | TableChange::PostDeleted(p) => &p.author,
            TableChange::FollowPut(f) | TableChange::FollowDeleted(f) => &f.followee,
        }
    }
}

/// A timeline entry: `user` sees `post_id` by `author`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub user: String,
    pub post_id: String,
    pub author: String,
    pub posted_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimelineDelta {
    Add(TimelineEntry),
    Remove(TimelineEntry),
}

/// Both sides of the join for one author.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuthorState {
    pub author: String,
    /// Post id to time posted.
    pub posts: BTreeMap<String, Millis>,
    pub followers: BTreeSet<String>,
}

impl AuthorState {
    pub fn new(author: &str) -> Self {
        Self { author: author.to_owned(), ..Self::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.posts.is_empty() && self.followers.is_empty()
    }

    fn entry(&self, user: &str, post_id: &str, posted_at: Millis) -> TimelineEntry {
        TimelineEntry { user: user.to_owned(), post_id: post_id.to_owned(), author: self.author.clone(), posted_at }
    }

    /// Applies a change about this author; what it does to the timelines. Applying the same
    /// change twice does nothing the second time.
    pub fn apply(&mut self, change: &TableChange) -> Vec<TimelineDelta> {
        match change {
            TableChange::PostPut(post) => {
                if self.posts.insert(post.post_id.clone(), post.posted_at).is_some() {
                    return Vec::new();
                }
                let added = self.followers.iter().map(|u| self.entry(u, &post.post_id, post.posted_at));
                added.map(TimelineDelta::Add).collect()
            }
            TableChange::PostDeleted(post) => {
                let Some(posted_at) = self.posts.remove(&post.post_id) else { return Vec::new() };
                let removed = self.followers.iter().map(|u| self.entry(u, &post.post_id, posted_at));
                removed.map(TimelineDelta::Remove).collect()
            }
            TableChange::FollowPut(follow) => {
                if !self.followers.insert(follow.follower.clone()) {
                    return Vec::new();
                }
                let added = self.posts.iter().map(|(id, at)| self.entry(&follow.follower, id, *at));
                added.map(TimelineDelta::Add).collect()
            }
            TableChange::FollowDeleted(follow) => {
                if !self.followers.remove(&follow.follower) {
                    return Vec::new();
                }
                let removed = self.posts.iter().map(|(id, at)| self.entry(&follow.follower, id, *at));
                removed.map(TimelineDelta::Remove).collect()
            }
        }
    }
}

/// The batch join of the two tables: every (follower, post of a followee).
pub fn batch_timeline(posts: &[Post], follows: &[Follow]) -> BTreeSet<TimelineEntry> {
    let mut entries = BTreeSet::new();
    for follow in follows {
        for post in posts.iter().filter(|p| p.author == follow.followee) {
            entries.insert(TimelineEntry {
                user: follow.follower.clone(),
                post_id: post.post_id.clone(),
                author: post.author.clone(),
                posted_at: post.posted_at,
            });
        }
    }
    entries
}

/// Applies deltas to a set of entries (the timelines table, in memory).
pub fn apply_deltas(entries: &mut BTreeSet<TimelineEntry>, deltas: impl IntoIterator<Item = TimelineDelta>) {
    for delta in deltas {
        match delta {
            TimelineDelta::Add(entry) => entries.insert(entry),
            TimelineDelta::Remove(entry) => entries.remove(&entry),
        };
    }
}

/// Settings that fully determine the posts and follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocialSpec {
    pub namespace: String,
    pub seed: u64,
    pub users: u32,
    pub posts: u32,
    pub follows: u32,
    pub start_millis: Millis,
}

impl SocialSpec {
    pub fn standard(namespace: &str, seed: u64, start_millis: Millis) -> Self {
        Self { namespace: namespace.to_owned(), seed, users: 6, posts: 16, follows: 12, start_millis }
    }

    pub fn user_id(&self, index: u32) -> String {
        format!("{}{}-u{index:02}", self.namespace, self.seed)
    }
}

/// The writes `labs run` makes to the two tables, in order: puts, then some unfollows and
/// post deletions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SocialData {
    pub changes: Vec<TableChange>,
}

impl SocialData {
    /// The tables as they end up.
    pub fn final_tables(&self) -> (Vec<Post>, Vec<Follow>) {
        let mut posts: BTreeMap<String, Post> = BTreeMap::new();
        let mut follows: BTreeSet<Follow> = BTreeSet::new();
        for change in &self.changes {
            match change {
                TableChange::PostPut(p) => drop(posts.insert(p.post_id.clone(), p.clone())),
                TableChange::PostDeleted(p) => drop(posts.remove(&p.post_id)),
                TableChange::FollowPut(f) => drop(follows.insert(f.clone())),
                TableChange::FollowDeleted(f) => drop(follows.remove(f)),
            }
        }
        (posts.into_values().collect(), follows.into_iter().collect())
    }

    pub fn reference(&self) -> BTreeSet<TimelineEntry> {
        let (posts, follows) = self.final_tables();
        batch_timeline(&posts, &follows)
    }
}

#[cfg(feature = "generators")]
pub fn generate(spec: &SocialSpec) -> SocialData {
    let mut rng = ChaCha8Rng::seed_from_u64(super::mixed_seed(spec.seed, &spec.namespace));
    let users = spec.users.max(2);
    let mut follows: BTreeSet<Follow> = BTreeSet::new();
    while follows.len() < spec.follows.min(users * (users - 1)) as usize {
        let (a, b) = (rng.random_range(0..users), rng.random_range(0..users));
        if a != b {
            follows.insert(Follow { follower: spec.user_id(a), followee: spec.user_id(b) });
        }
    }
    let posts: Vec<Post> = (0..spec.posts)
        .map(|i| Post {
            post_id: format!("{}{}-p{i:03}", spec.namespace, spec.seed),
            author: spec.user_id(rng.random_range(0..users)),
            posted_at: spec.start_millis + Millis::from(i) * 1_000,
        })
        .collect();
    // Follows and posts interleaved, as two tables written at once would be.
    let mut puts: Vec<TableChange> = follows.iter().cloned().map(TableChange::FollowPut).collect();
    for (i, post) in posts.iter().enumerate() {
        let at = rng.random_range(0..=puts.len()).max(i.min(puts.len()));
        puts.insert(at, TableChange::PostPut(post.clone()));
    }
    let unfollows: Vec<_> = follows.iter().filter(|_| rng.random_bool(0.2)).cloned().collect();
    let deletions: Vec<_> = posts.iter().filter(|_| rng.random_bool(0.15)).cloned().collect();
    let mut changes = puts;
    changes.extend(unfollows.into_iter().map(TableChange::FollowDeleted));
    changes.extend(deletions.into_iter().map(TableChange::PostDeleted));
    SocialData { changes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incremental(changes: &[TableChange]) -> (BTreeSet<TimelineEntry>, BTreeMap<String, AuthorState>) {
        let mut states: BTreeMap<String, AuthorState> = BTreeMap::new();
        let mut entries = BTreeSet::new();
        for change in changes {
            let state = states.entry(change.author().to_owned()).or_insert_with(|| AuthorState::new(change.author()));
            apply_deltas(&mut entries, state.apply(change));
        }
        (entries, states)
    }

    #[test]
    fn the_incremental_timeline_equals_the_batch_join_of_the_final_tables() {
        let data = generate(&SocialSpec::standard("t", 11, 0));
        let (entries, _) = incremental(&data.changes);
        let reference = data.reference();
        assert_eq!(entries, reference);
        assert!(!reference.is_empty());
        assert!(data.changes.iter().any(|c| matches!(c, TableChange::FollowDeleted(_))));
    }

    #[test]
    fn the_two_change_streams_may_interleave_in_any_way() {
        // Two pollers: all post changes first, then all follow changes (each in its own order).
        let data = generate(&SocialSpec::standard("t", 12, 0));
        let (posts, follows): (Vec<_>, Vec<_>) = data
            .changes
            .iter()
            .cloned()
            .partition(|c| matches!(c, TableChange::PostPut(_) | TableChange::PostDeleted(_)));
        let follows_first: Vec<_> = follows.iter().chain(&posts).cloned().collect();
        assert_eq!(incremental(&follows_first).0, data.reference());
        assert_eq!(incremental(&posts.into_iter().chain(follows).collect::<Vec<_>>()).0, data.reference());
    }

    #[test]
    fn a_follow_brings_the_authors_posts_and_an_unfollow_takes_them_away() {
        let mut state = AuthorState::new("ann");
        let post = |id: &str| Post { post_id: id.into(), author: "ann".into(), posted_at: 1 };
        let follow = Follow { follower: "bob".into(), followee: "ann".into() };
        assert!(state.apply(&TableChange::PostPut(post("p1"))).is_empty(), "no followers yet");
        state.apply(&TableChange::PostPut(post("p2")));
        let added = state.apply(&TableChange::FollowPut(follow.clone()));
        assert_eq!(added.len(), 2);
        assert!(state.apply(&TableChange::FollowPut(follow.clone())).is_empty(), "redelivered");
        assert!(
            matches!(&state.apply(&TableChange::PostDeleted(post("p1")))[..], [TimelineDelta::Remove(e)] if e.user == "bob")
        );
        assert_eq!(state.apply(&TableChange::FollowDeleted(follow)).len(), 1);
        state.apply(&TableChange::PostDeleted(post("p2")));
        assert!(state.is_empty());
    }
}
