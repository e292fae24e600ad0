//! corral-engine: the one door from "make this run on this host" to a running container, pod
//! or VM.
//!
//! Owns the way from a typed workload spec ([`spec::ContainerSpec`]) to a running workload:
//! the image resolved (and pulled when the pull policy says so), the runtime's plan built from
//! the image's config and the spec ([`plan`]), user and group names resolved in the image
//! ([`users`]), volumes made, networks joined around the start and left at the end
//! ([`networks`]), pods ([`pods`]; pods inside one VM: [`pod_vm`]), other containers' namespaces joined (`share`), health checks ([`health`]), the VM path for
//! `--isolation vm` and `corral vm` ([`vms`]); the operations on containers ([`containers`]:
//! create, start — again, too —, stop with the image's stop signal, kill, restart, update,
//! remove, exec, wait, rename), listing with filters ([`list`]), images made from containers
//! ([`images`]: commit, diff, history), usage as `stats` shows it ([`stats`]), the events journal ([`events`]), what comes back after a host restart ([`boot`]) and the monitor's part
//! in it ([`monitor`]), logs ([`logs`]), docker-shaped views for `inspect` and `ps` ([`views`])
//! and the `--format` templates over them ([`template`]). The CLI, compose, the builder and
//! the node agent all start workloads through here, so a container started by one is the same
//! thing as one started by another.
//!
//! Does not own: the runtime itself (namespaces, cgroups, the monitor: corral-container),
//! images (corral-image), networks' mechanics (corral-net), VMs' mechanics (corral-vm), the
//! command line or terminals (the binary).

#![warn(missing_docs)]

pub mod boot;
pub mod containers;
pub mod events;
pub mod health;
pub mod images;
pub mod list;
pub mod logs;
pub mod monitor;
pub mod networks;
pub mod plan;
pub mod pod_vm;
pub mod pods;
pub mod record;
mod share;
pub mod spec;
pub mod stats;
pub mod template;
pub mod users;
pub mod views;
pub mod vms;

use std::path::{Path, PathBuf};

pub use containers::Started;
pub use spec::ContainerSpec;

/// The cgroup root corral works under.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Why an engine operation failed. The messages are short; the cause is in the source chain.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request itself is wrong (a flag, a name, a spec field): nothing was made.
    #[error("{0}")]
    Invalid(String),
    /// No such object.
    #[error("{0}")]
    NotFound(String),
    /// The object exists but is in a state that refuses the operation.
    #[error("{0}")]
    Conflict(String),
    /// The workload's process could not start; `code` is docker's (125, 126, 127).
    #[error("{message}")]
    Failed {
        /// 125, 126 or 127.
        code: i32,
        /// Why.
        message: String,
    },
    /// The container store.
    #[error(transparent)]
    State(#[from] corral_container::state::StateError),
    /// Starting a container.
    #[error(transparent)]
    Start(#[from] corral_container::container_start::StartError),
    /// Signalling a container.
    #[error(transparent)]
    Kill(#[from] corral_container::container_kill::KillError),
    /// Removing a container.
    #[error(transparent)]
    Delete(#[from] corral_container::container_delete::DeleteError),
    /// Running a command in a container.
    #[error(transparent)]
    Exec(#[from] corral_container::container_exec::ExecError),
    /// Volumes.
    #[error(transparent)]
    Volume(#[from] corral_container::volumes::VolumeError),
    /// The image store.
    #[error(transparent)]
    Image(#[from] corral_image::store::StoreError),
    /// A registry.
    #[error(transparent)]
    Registry(#[from] corral_image::registry::RegistryError),
    /// Networks.
    #[error(transparent)]
    Net(#[from] corral_net::NetError),
    /// VMs.
    #[error(transparent)]
    Vm(#[from] corral_vm::lifecycle::VmError),
    /// VM clones and templates.
    #[error(transparent)]
    Clone(#[from] corral_vm::clone::CloneError),
    /// A file of the engine's own.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        err: std::io::Error,
    },
}

impl EngineError {
    /// A refused request.
    pub fn invalid(msg: impl Into<String>) -> Self {
        EngineError::Invalid(msg.into())
    }

    /// The exit code docker would give: the workload's own start failure codes, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Failed { code, .. } => *code,
            EngineError::Start(corral_container::container_start::StartError::Failed {
                code,
                ..
            }) => *code,
            _ => 125,
        }
    }
}

/// Result of engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    move |err| EngineError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

/// The engine of one state root.
#[derive(Debug, Clone)]
pub struct Engine {
    root: PathBuf,
    exe: PathBuf,
    journal: events::Journal,
}

impl Engine {
    /// The engine over `root` (`CORRAL_ROOT`); `exe` is the corral binary that monitors, DNS
    /// servers and VM monitors are started from (re-executed, never forked).
    pub fn new(root: impl Into<PathBuf>, exe: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Engine {
            journal: events::Journal::new(&root),
            root,
            exe: exe.into(),
        }
    }

    /// The engine over `root`, re-executing the running binary.
    pub fn current(root: impl Into<PathBuf>) -> Result<Self> {
        let exe =
            std::env::current_exe().map_err(io_err("finding", Path::new("/proc/self/exe")))?;
        Ok(Self::new(root, exe))
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The binary that is re-executed.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The container store.
    pub fn containers(&self) -> Result<corral_container::Containers> {
        Ok(corral_container::Containers::open(
            self.root.join("containers"),
        )?)
    }

    /// The image store.
    pub fn images(&self) -> Result<corral_image::Store> {
        Ok(corral_image::Store::open(self.root.join("images"))?)
    }

    /// The networks.
    pub fn networks(&self) -> corral_net::Networks {
        corral_net::Networks::open(&self.root)
    }

    /// The named volumes.
    pub fn volumes(&self) -> Result<corral_container::volumes::Volumes> {
        Ok(corral_container::volumes::Volumes::open(
            self.root.join("volumes"),
        )?)
    }

    /// The VMs.
    pub fn vms(&self) -> corral_vm::store::Vms {
        corral_vm::store::Vms::open(&self.root)
    }

    /// The events journal.
    pub fn journal(&self) -> &events::Journal {
        &self.journal
    }

    /// Records an event.
    pub fn emit(&self, e: events::Event) {
        self.journal.record(&e);
    }
}
