//! What exists under the prefix, per example, from the engine's plan: the one place that knows
//! how each kind of resource is looked up and whether it is ours (tags). Panels read only what
//! this says is present, so an example that is down costs no calls beyond its plan.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use labs_infra::stack::{self, Stack};
use labs_infra::{Action, Engine};
use serde::Serialize;

use crate::examples::{self, ExampleId};
use crate::target::Target;

/// An example's declaration and which of its resources exist (full names).
pub struct Declared {
    pub id: ExampleId,
    pub title: &'static str,
    pub built: bool,
    pub stack: Stack,
    /// Full names of the resources that exist (a role and a function may share one).
    pub present: HashSet<String>,
    /// How many of the declared resources exist.
    pub present_count: usize,
    pub declared: usize,
}

impl Declared {
    pub fn has(&self, target: &Target, name: &str) -> bool {
        self.present.contains(&stack::full_name(&target.prefix, name))
    }

    pub fn state(&self) -> State {
        match (self.built, self.present_count) {
            (false, 0) => State::NotBuilt,
            (_, 0) => State::Down,
            (_, n) if n == self.declared => State::Up,
            _ => State::PartlyUp,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Up,
    PartlyUp,
    Down,
    NotBuilt,
}

/// Every registered example that declares a stack, with what of it exists on the target.
pub async fn read(target: &Target) -> Result<Vec<Declared>> {
    let engine = Engine::connect(&target.clients, &target.prefix).await?;
    let mut found = Vec::new();
    for entry in examples::REGISTRY {
        let id = entry.about.id;
        // An example that is not built may already declare its stack (`infra/stacks`).
        let Ok(stack) = stack::load(&id.to_string()) else { continue };
        let plan = engine.plan(&stack, &HashMap::new()).await?;
        // As `labs status` counts: what is not to be created exists (a conflict is in the way).
        let existing: Vec<_> = plan.changes.iter().filter(|c| c.action != Action::Create).collect();
        let present_count = existing.len();
        let present = existing.into_iter().map(|c| c.name.clone()).collect();
        found.push(Declared {
            id,
            title: entry.about.title,
            built: entry.example.is_some(),
            declared: plan.changes.len(),
            stack,
            present,
            present_count,
        });
    }
    Ok(found)
}
