//! `pause` and `unpause`: freeze and thaw every process of a container through its cgroup.

use std::path::Path;

use crate::cgroups::{Cgroup, CgroupError};
use crate::state::{Containers, StateError, Status};

/// Why a container could not be paused or resumed.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The container does not run.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// It already is in the asked state.
    #[error("container {0} is {1}")]
    Already(String, &'static str),
    /// The freezer refused.
    #[error("freezing")]
    Cgroup(#[from] CgroupError),
}

/// Freezes (`true`) or thaws a running container.
pub fn set_paused(
    containers: &Containers,
    id: &str,
    paused: bool,
    cgroup_root: &Path,
) -> Result<(), PauseError> {
    let mut s = containers.load(id)?;
    if s.status != Status::Running {
        return Err(PauseError::NotRunning(s.name));
    }
    if s.paused == paused {
        let what = if paused {
            "already paused"
        } else {
            "not paused"
        };
        return Err(PauseError::Already(s.name, what));
    }
    Cgroup::from_dirs(cgroup_root, s.cgroup_paths.clone()).freeze(paused)?;
    s.paused = paused;
    containers.save(&s)?;
    Ok(())
}

/// Thaws a container if it is paused (before signalling it: a frozen process cannot act on a
/// signal).
pub fn thaw_if_paused(
    containers: &Containers,
    id: &str,
    cgroup_root: &Path,
) -> Result<(), PauseError> {
    let s = containers.load(id)?;
    if s.paused && s.status == Status::Running {
        set_paused(containers, id, false, cgroup_root)?;
    }
    Ok(())
}
