//! What each example provisions (`infra/stacks/*.toml`) and the engine that applies it.
//!
//! The engine plans before it acts: [`Engine::plan`] reads the target and says, per resource,
//! create, update, unchanged, or conflict (something not ours holds the name); [`Engine::apply`]
//! carries out a plan without conflicts; [`Engine::destroy`] removes exactly what a stack declares
//! for one prefix, and only resources whose tags say `labs` made them for that prefix. All three
//! are idempotent and safe to interrupt and re-run.
//!
//! Layers point one way: `model` (shared types, the [`Resource`](model::Resource) trait) and
//! `sdk_error` know no kind; each kind module implements the trait; `engine` orders the kinds.

mod clients;
pub mod cost;
mod dynamodb;
mod engine;
mod iam;
pub mod inventory;
mod kinesis;
mod lambda;
mod mapping;
mod model;
mod poll;
mod sdk_error;
mod sns;
mod sqs;
pub mod stack;

pub use clients::Clients;
pub use engine::Engine;
pub use model::{Action, Artifact, Change, DestroyIncomplete, Kind, Plan, Progress, Removal, Removed};
pub use sdk_error::{SdkContext, WaitContext, innermost_cause};
pub use stack::{Stack, Vars};

/// Tag keys on every resource `labs` creates.
pub const TAG_EXAMPLE: &str = "labs:example";
pub const TAG_PREFIX: &str = "labs:prefix";
/// When `labs up` created it (RFC 3339, UTC): the age `labs status` and `labs down --all` show.
pub const TAG_CREATED_AT: &str = "labs:created-at";
/// How many tags labs may put on a resource of its own, of the 50 most services allow: the
/// example, the prefix, the creation time, and the last verify result (`labs-cli`'s
/// `examples::verdict`, on an example's first table or its stream).
pub const OWN_TAGS: usize = 4;

/// The prefix of every resource name when none is given (`labs --prefix`).
pub const DEFAULT_PREFIX: &str = "labs";

/// The tags on every resource `labs` creates for `example` under `prefix`.
pub fn tags(example: &str, prefix: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (TAG_EXAMPLE.to_owned(), example.to_owned()),
        (TAG_PREFIX.to_owned(), prefix.to_owned()),
    ])
}
