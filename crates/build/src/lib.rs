//! corral-build: a Dockerfile and a context to an image in corral's store.
//!
//! Owns the Dockerfile's parsing into stages and steps ([`dockerfile`], on the
//! `parse-dockerfile` crate), variable expansion with the Dockerfile's rules ([`expand`]),
//! `.dockerignore` and source globs ([`ignore`]), a read-only view of unpacked layers
//! ([`layers`]), `COPY`/`ADD` ([`copy`], URLs by [`fetch`]), `RUN` through the engine in a
//! container ([`run`]) or a VM of its own ([`run_vm`]), the image
//! config each step writes ([`state`], [`steps`]) and the build itself ([`builder`]): the
//! stages the target needs, run in parallel where they do not depend on each other, each
//! step looked up in the cache first.
//!
//! The cache: a step's key is a hash of the image it starts from (its manifest digest, so a
//! step that ran again invalidates everything after it), its instruction after expansion, the
//! build arguments it sees, and for `COPY`/`ADD` the content of its sources (path, type, mode,
//! owner, link target and bytes — never the modification time). The value is the image the
//! step made, kept in the store like any other (`corral_image::Store::cache_put`): layers are
//! unpacked once and shared with pulled images. `corral builder prune` forgets it.
//!
//! Does not own: running containers (corral-engine, which every `RUN` goes through), the
//! image store (corral-image), the command line (the binary).

#![warn(missing_docs)]

pub mod builder;
pub mod copy;
pub mod dockerfile;
pub mod expand;
pub mod fetch;
pub mod ignore;
pub mod layers;
pub mod run;
pub mod run_vm;
pub mod state;
pub mod steps;

pub use builder::{build, BuildOptions, Built, Cancel, Progress};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The request (flags, context, Dockerfile location) is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The Dockerfile does not parse.
    #[error("{file}: {err}")]
    Parse {
        /// The Dockerfile's name.
        file: String,
        /// Where and what.
        #[source]
        err: dockerfile::ParseError,
    },
    /// A step is wrong (an expansion, a flag, an unknown stage), with its position.
    #[error("{file}:{line}:{column}: {step}: {message}")]
    Step {
        /// The Dockerfile's name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The step's text.
        step: String,
        /// What is wrong.
        message: String,
    },
    /// `COPY`/`ADD`.
    #[error("{0}")]
    Copy(String),
    /// Preparing or finishing a `RUN`.
    #[error("{0}")]
    Run(String),
    /// A `RUN` command exited non-zero.
    #[error("the command exited with code {code}{}", if output.is_empty() { String::new() } else { format!(":\n{}", output.trim_end()) })]
    RunFailed {
        /// Its exit code.
        code: i32,
        /// Its output, when it was not shown as it ran.
        output: String,
    },
    /// The engine.
    #[error("{0}")]
    Engine(String),
    /// An image (a base that cannot be found, a broken config).
    #[error("{0}")]
    Image(String),
    /// The image store.
    #[error(transparent)]
    Store(#[from] corral_image::StoreError),
    /// Another stage failed first.
    #[error("cancelled: another stage failed")]
    Cancelled,
    /// The build was stopped ([`Cancel`]).
    #[error("interrupted: the build was stopped; nothing was tagged")]
    Interrupted,
}

impl BuildError {
    /// Puts a step's position on an error that does not have one.
    pub fn at(self, file: &str, step: &dockerfile::Step) -> BuildError {
        match self {
            BuildError::Step { .. } | BuildError::Cancelled | BuildError::Interrupted => self,
            other => BuildError::Step {
                file: file.to_owned(),
                line: step.line,
                column: step.column,
                step: step.text.lines().next().unwrap_or("").to_owned(),
                message: other.to_string(),
            },
        }
    }
}
