//! `create`: reserve the name, write the config and the state. Nothing runs yet.

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
}

/// Creates a container; returns its state.
/// An empty `config.hostname` becomes the short id, as docker does.
pub fn create(containers: &Containers, mut req: CreateRequest) -> Result<State, StateError> {
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
    containers.reserve_name(&name, &id)?;
    let state = State {
        image: req.image,
        image_id: req.image_id,
        auto_remove: req.auto_remove,
        cmd: req.config.args[req.entrypoint.len().min(req.config.args.len())..].to_vec(),
        entrypoint: req.entrypoint,
        ..State::new(&id, &name)
    };
    if let Err(e) = containers.create(&state, &req.config) {
        let _ = containers.remove(&state);
        return Err(e);
    }
    Ok(state)
}
