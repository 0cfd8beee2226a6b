//! What each example provisions (`infra/stacks/*.toml`) and the engine that applies it.
//!
//! The engine plans before it acts: [`Engine::plan`] reads the target and says, per resource,
//! create, update or unchanged; [`Engine::apply`] carries out a plan; [`Engine::destroy`] removes
//! exactly what a stack declares for one prefix, and only resources whose tags say `labs` made
//! them for that prefix. All three are idempotent and safe to interrupt and re-run.

mod clients;
mod dynamodb;
mod engine;
mod iam;
mod kinesis;
mod lambda;
mod sns;
mod sqs;
pub mod stack;

pub use clients::Clients;
pub use engine::{Action, Artifact, Change, Engine, Kind, Plan, Progress, Removal, Removed};
pub use stack::{Stack, Vars};

/// Tag keys on every resource `labs` creates.
pub const TAG_EXAMPLE: &str = "labs:example";
pub const TAG_PREFIX: &str = "labs:prefix";

/// Turns an SDK error into one line: what we were doing, then the service's error code and
/// message, or for a failure before any answer (connection, timeout) its innermost cause. The
/// SDK's own `Display` says only "service error".
pub trait SdkContext<T> {
    fn doing(self, what: impl std::fmt::Display) -> anyhow::Result<T>;
}

impl<T, E, R> SdkContext<T> for Result<T, aws_sdk_sts::error::SdkError<E, R>>
where
    E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    fn doing(self, what: impl std::fmt::Display) -> anyhow::Result<T> {
        self.map_err(|err| {
            let detail = match err.as_service_error() {
                Some(service) => format!(
                    "{}: {}",
                    service.code().unwrap_or("service error"),
                    service.message().unwrap_or("no message")
                ),
                None => innermost_cause(&err),
            };
            anyhow::anyhow!("{what}: {detail}")
        })
    }
}

/// The same for waiters, whose errors wrap the SDK's.
pub trait WaitContext<T> {
    fn waiting(self, what: impl std::fmt::Display) -> anyhow::Result<T>;
}

impl<T, E: std::error::Error + 'static> WaitContext<T> for Result<T, E> {
    fn waiting(self, what: impl std::fmt::Display) -> anyhow::Result<T> {
        self.map_err(|err| anyhow::anyhow!("{what}: {}", innermost_cause(&err)))
    }
}

/// The last error in a chain of causes: the one that says what actually went wrong.
pub fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
