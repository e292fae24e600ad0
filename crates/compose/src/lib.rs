//! corral-compose: multi-service applications from compose files, with no daemon.
//!
//! Owns the way from compose files to running containers: loading ([`load`]: files found and
//! merged, YAML anchors, [`interpolate`]d variables from the environment and `.env`,
//! `extends`, profiles, the project's name), the checked and normalised model ([`model`]),
//! the start order ([`order`]), a service's replicas as engine specs with docker compose's
//! names and labels and a change hash ([`plan`]), and the verbs: `up` ([`up`]: only what
//! changed is recreated, with what depends on it; dependency conditions awaited; replicas
//! replaced a batch at a time under `deploy.update_config`, [`rolling`]), `down` and
//! the others ([`ops`]). Every container starts through corral-engine; `build:` goes through
//! corral-build.
//!
//! Does not own: running containers (corral-engine), networks' and volumes' mechanics
//! (corral-net, corral-container), the command line (the binary).

#![warn(missing_docs)]

pub mod interpolate;
pub mod load;
pub mod model;
pub mod ops;
pub mod order;
pub mod plan;
pub mod rolling;
pub mod syntax;
pub mod up;

pub use load::{load, LoadOptions};
pub use model::Project;

/// Why a compose command failed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The files or the flags are wrong.
    #[error("{0}")]
    Invalid(String),
    /// The engine refused or failed.
    #[error("{0}")]
    Engine(String),
    /// A service's image did not build.
    #[error("{0}")]
    Build(String),
    /// A dependency's condition was not met.
    #[error("{0}")]
    Dependency(String),
}

impl ComposeError {
    /// An engine error, chained into one message.
    pub fn engine(e: corral_engine::EngineError) -> Self {
        ComposeError::Engine(corral_engine::containers::chain(&e))
    }
}
