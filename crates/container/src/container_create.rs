//! `create`: reserve the name, write the config and the state. Nothing runs yet.
//!
//! The container comes into existence in one step (its directory renamed into place, see
//! [`crate::state`]): whatever else the caller keeps in its directory (the engine's record,
//! the networks it is to join) goes in with it through [`create_with_files`], so that a crash
//! never leaves a container without them.

use crate::config::ContainerConfig;
use crate::state::{new_id, Containers, State, StateError};

/// What to create.
pub struct CreateRequest {
    /// Name; generated from the id when absent.
    pub name: Option<String>,
    /// Image as the user named it.
    pub image: String,
    /// Image id.
    pub image_id: String,
    /// The plan.
    pub config: ContainerConfig,
    /// Remove when it exits.
    pub auto_remove: bool,
    /// The entrypoint part of `config.args`.
    pub entrypoint: Vec<String>,
    /// `--userns=auto[:size=N]`: give the container a user namespace with a host range of
    /// this many ids that no other container holds.
    pub userns_auto: Option<u32>,
}

/// Creates a container; returns its state.
/// An empty `config.hostname` becomes the short id, as docker does.
pub fn create(containers: &Containers, req: CreateRequest) -> Result<State, StateError> {
    create_with_files(containers, req, &[])
}

/// [`create`], with `files` (name in the container's directory, content) written into the
/// directory before it is renamed into place: the container exists with them or not at all.
pub fn create_with_files(
    containers: &Containers,
    mut req: CreateRequest,
    files: &[(&str, &[u8])],
) -> Result<State, StateError> {
    let id = new_id().map_err(|err| StateError::Io {
        what: "reading",
        path: "/dev/urandom".into(),
        err,
    })?;
    let name = req
        .name
        .take()
        .unwrap_or_else(|| format!("c-{}", &id[..12]));
    if req.config.hostname.is_empty() {
        req.config.hostname = id[..12].to_owned();
    }
    // docker's HOSTNAME, unless the image or the caller set it.
    if !req.config.env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        let h = format!("HOSTNAME={}", req.config.hostname);
        req.config.env.push(h);
    }
    containers.reserve_name(&name, &id)?;
    let state = State {
        image: req.image,
        image_id: req.image_id,
        auto_remove: req.auto_remove,
        cmd: req.config.args[req.entrypoint.len().min(req.config.args.len())..].to_vec(),
        entrypoint: req.entrypoint,
        ..State::new(&id, &name)
    };
    let io_err = |what, path: std::path::PathBuf| move |err| StateError::Io { what, path, err };
    // Ranges are chosen and written under one lock, so that two containers created at once
    // never share one.
    let _lock = match req.userns_auto {
        Some(size) => {
            let path = containers.root().join("userns.lock");
            let lock = std::fs::File::create(&path).map_err(io_err("creating", path.clone()))?;
            rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| io_err("locking", path.clone())(e.into()))?;
            let taken: Vec<crate::userns::IdMap> = containers
                .ids()?
                .iter()
                .filter_map(|other| containers.config(other).ok())
                .flat_map(|c| c.uid_map.into_iter().chain(c.gid_map))
                .collect();
            let Some(range) = crate::userns::auto_range(&taken, size) else {
                let _ = containers.remove(&state);
                return Err(io_err("allocating a user namespace range under", path)(
                    std::io::Error::other("every range is taken: remove containers"),
                ));
            };
            req.config.uid_map = vec![range];
            req.config.gid_map = vec![range];
            Some(lock)
        }
        None => None,
    };
    if let Err(e) = containers.create_with_files(&state, &req.config, files) {
        let _ = containers.remove(&state);
        return Err(e);
    }
    Ok(state)
}
