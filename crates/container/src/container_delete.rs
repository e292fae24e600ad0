//! `rm`: remove a container and everything it made.
//!
//! Accepts what a crash left: a directory whose state file is missing or does not parse (its
//! processes and cgroups are found by id), a monitor that died (its cgroup may still hold
//! processes, and cgroups it made before recording them are found by id too). The container
//! stops existing in one step ([`Containers::remove`]) once nothing of it runs.

use std::path::Path;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

use crate::cgroups::Cgroup;
use crate::container_kill::{self, KillError};
use crate::state::{Containers, StateError, Status};

/// Why a container could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// It runs and force was not given.
    #[error("container {0} is running: stop it first, or remove it with -f")]
    Running(String),
    /// Killing it failed.
    #[error(transparent)]
    Kill(#[from] KillError),
}

/// Removes a container; a running one only with `force` (it is killed first).
pub fn delete(
    containers: &Containers,
    id: &str,
    force: bool,
    cgroup_root: &Path,
) -> Result<(), DeleteError> {
    let s = match containers.load(id) {
        Ok(s) => s,
        // A state file that does not parse (with force), or none at all (an older version was
        // killed while removing it): remove what can be found by id.
        Err(StateError::Corrupt { .. }) if force => {
            return remove_broken(containers, id, cgroup_root)
        }
        Err(StateError::NotFound(_)) if containers.dir(id).is_dir() => {
            return remove_broken(containers, id, cgroup_root)
        }
        Err(e) => return Err(e.into()),
    };
    if s.status == Status::Running {
        if !force {
            return Err(DeleteError::Running(s.name));
        }
        let _ = crate::container_pause::thaw_if_paused(containers, id, cgroup_root);
        match container_kill::kill(containers, id, Signal::KILL) {
            Err(KillError::NotRunning(_)) | Ok(()) => {}
            Err(e) => return Err(e.into()),
        }
        container_kill::wait_exit(containers, id, Some(Duration::from_secs(10)))?;
    }
    let s = match containers.load(id) {
        Ok(s) => s,
        // The monitor removed it (--rm) while we waited.
        Err(StateError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // A monitor that died leaves its cgroup, and maybe processes in it: end them by pid, then
    // remove the directories. One killed before it recorded its cgroup left it unrecorded:
    // the directories named after the id are looked for too.
    let mut dirs = s.cgroup_paths.clone();
    for d in Cgroup::dirs_for(cgroup_root, id) {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    if !dirs.is_empty() {
        let cg = Cgroup::from_dirs(cgroup_root, dirs);
        kill_all(&cg);
        cg.destroy();
    }
    containers.remove(&s)?;
    Ok(())
}

/// Removes a container whose state cannot be read: its processes and cgroups by id, then its
/// directory and names.
fn remove_broken(containers: &Containers, id: &str, cgroup_root: &Path) -> Result<(), DeleteError> {
    tracing::info!(
        id,
        "removing a container whose state file is missing or corrupt"
    );
    let cg = Cgroup::from_dirs(cgroup_root, Cgroup::dirs_for(cgroup_root, id));
    kill_all(&cg);
    cg.destroy();
    containers.remove_broken(id)?;
    Ok(())
}

/// Ends every process left in a cgroup, by pid.
fn kill_all(cg: &Cgroup) {
    for pid in cg.procs() {
        if let Some(p) = Pid::from_raw(pid) {
            let _ = kill_process(p, Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{new_id, State};

    #[test]
    fn a_container_whose_state_file_is_gone_can_be_removed() {
        let t = tempfile::tempdir().unwrap();
        let cs = Containers::open(t.path().join("containers")).unwrap();
        let cgroups = t.path().join("cgroup");
        std::fs::create_dir(&cgroups).unwrap();
        let s = State::new(&new_id().unwrap(), "half");
        cs.reserve_name("half", &s.id).unwrap();
        cs.create(
            &s,
            &crate::ContainerConfig::defaults(vec![], vec!["true".into()]),
        )
        .unwrap();
        // What an older version's rm left when killed after deleting the state file.
        std::fs::remove_file(cs.dir(&s.id).join("state.json")).unwrap();
        assert_eq!(cs.resolve("half").unwrap(), s.id);
        delete(&cs, &s.id, false, &cgroups).unwrap();
        assert!(cs.ids().unwrap().is_empty());
        assert!(matches!(cs.resolve("half"), Err(StateError::NotFound(_))));
        cs.reserve_name("half", &new_id().unwrap()).unwrap();
    }
}
