//! One function per subcommand that is not an example's own (`run`, `verify`, `bench` live in
//! `examples/`). Each resolves its target, does its work, and reports a table or JSON. The
//! commands about one example's stack are here; the rest are grouped by what they touch.

mod doctor;
mod local;
mod records;
mod status;

pub use doctor::doctor;
pub use local::{build, emulator, kafka, triggers};
pub use records::{consume, produce};
pub use status::status;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{DownArgs, GlobalArgs, UpArgs};
use crate::examples::{self, About};
use crate::output::Output;
use crate::provision;
use crate::sweep;
use crate::target::Target;

/// A registered example as `labs list --json` shows it.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    about: &'static About,
    built: bool,
}

pub fn list(out: Output) -> Result<()> {
    let listed: Vec<Listed> =
        examples::REGISTRY.iter().map(|e| Listed { about: &e.about, built: e.example.is_some() }).collect();
    out.table(
        "",
        &["example", "title", "what it teaches", "AWS parts", "ready"],
        listed.iter().map(|e| {
            vec![
                e.about.id.to_string(),
                e.about.title.into(),
                e.about.teaches.into(),
                e.about.aws.into(),
                if e.built { "yes" } else { "not yet" }.into(),
            ]
        }),
    );
    out.json(&listed)
}

pub async fn up(global: &GlobalArgs, args: &UpArgs, out: Output) -> Result<()> {
    let stack = args.example.stack()?;
    let target = Target::resolve(&global.target(), true).await?;
    provision::up_stack(&target, &stack, args.dry_run, out).await
}

pub async fn down(global: &GlobalArgs, args: &DownArgs, out: Output) -> Result<()> {
    let Some(example) = args.example else {
        let target = Target::resolve(&global.target(), true).await?;
        return sweep::down_all(&target, args.dry_run, out).await;
    };
    let stack = example.stack()?;
    let target = Target::resolve(&global.target(), true).await?;
    target.confirm(&format!(
        "Delete {} resources with prefix {} from {}?",
        stack.example,
        target.prefix,
        target.kind.describe()
    ))?;
    let (removed, failure) = provision::destroy_stack(&target, &stack).await?;
    out.table(
        &format!("{} down (prefix {}):", stack.example, target.prefix),
        &["resource", "name", "result"],
        removed.iter().map(|r| vec![r.kind.to_string(), r.name.clone(), r.removal.to_string()]),
    );
    out.json(&removed)?;
    failure.map_or(Ok(()), Err)
}
