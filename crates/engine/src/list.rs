//! `ps` and its `--filter`s (docker's keys: `id`, `name`, `label`, `status`, `exited`,
//! `ancestor`, `network`, `volume`, `health`, `before`, `since`): one key given twice matches either
//! value, different keys must all match.

use std::collections::BTreeMap;

use corral_container::Status;

use crate::views::ContainerView;
use crate::{Engine, EngineError, Result};

/// Parsed `--filter KEY=VALUE`s.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    by: BTreeMap<String, Vec<String>>,
}

const KEYS: &[&str] = &[
    "id", "name", "label", "status", "exited", "ancestor", "network", "volume", "before", "since",
    "health",
];

impl ContainerFilter {
    /// Parses filters; an unknown key or a bad value is refused, naming the keys.
    pub fn parse(filters: &[String]) -> Result<Self> {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in filters {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                EngineError::invalid(format!("--filter {f:?}: the form is KEY=VALUE"))
            })?;
            if !KEYS.contains(&k) {
                return Err(EngineError::invalid(format!(
                    "--filter {f:?}: unknown key {k:?} (use {})",
                    KEYS.join(", ")
                )));
            }
            if k == "status"
                && !matches!(
                    v,
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                )
            {
                return Err(EngineError::invalid(format!(
                    "--filter {f:?}: status is one of created, restarting, running, removing, paused, exited, dead"
                )));
            }
            if k == "health" && !matches!(v, "starting" | "healthy" | "unhealthy" | "none") {
                return Err(EngineError::invalid(format!(
                    "--filter {f:?}: unrecognised filter value for health: {v} (starting, healthy, unhealthy, none)"
                )));
            }
            if k == "exited" && v.parse::<i32>().is_err() {
                return Err(EngineError::invalid(format!(
                    "--filter {f:?}: exited takes an exit code"
                )));
            }
            by.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(ContainerFilter { by })
    }

    /// Whether a status filter is given (then `ps` looks at every container, as docker).
    pub fn has_status(&self) -> bool {
        self.by.contains_key("status") || self.by.contains_key("exited")
    }

    fn matches(&self, v: &ContainerView, created_of: &dyn Fn(&str) -> Option<String>) -> bool {
        let s = &v.state;
        self.by.iter().all(|(k, vals)| {
            vals.iter().any(|val| match k.as_str() {
                "id" => s.id.starts_with(val.as_str()),
                "name" => s.name.contains(val.as_str()),
                "label" => match val.split_once('=') {
                    Some((lk, lv)) => v.record.labels.get(lk).is_some_and(|x| x == lv),
                    None => v.record.labels.contains_key(val),
                },
                "status" => crate::views::status_word(s) == val,
                "exited" => {
                    s.status == Status::Exited
                        && s.exit_code.map(|c| c.to_string()) == Some(val.clone())
                }
                "ancestor" => {
                    let short =
                        |n: &str| n.strip_prefix("docker.io/library/").unwrap_or(n).to_owned();
                    s.image == *val
                        || short(&s.image) == short(val)
                        || s.image == format!("{val}:latest")
                        || s.image_id
                            .trim_start_matches("sha256:")
                            .starts_with(val.trim_start_matches("sha256:"))
                }
                "network" => {
                    v.endpoints.iter().any(|e| e.network == *val)
                        || v.record.networks.iter().any(|n| n == val)
                }
                "volume" => v.config.binds.iter().any(|b| {
                    b.destination == *val
                        || b.source
                            .parent()
                            .and_then(|p| p.file_name())
                            .is_some_and(|n| n == val.as_str())
                }),
                "health" => match &v.health {
                    Some(h) => h.status == *val,
                    None => val == "none",
                },
                "before" => created_of(val).is_some_and(|t| s.created < t),
                "since" => created_of(val).is_some_and(|t| s.created > t),
                _ => false,
            })
        })
    }
}

impl Engine {
    /// Containers, newest first: the running ones, or all; those the filter accepts.
    pub fn list(&self, all: bool, filter: &ContainerFilter) -> Result<Vec<ContainerView>> {
        let cs = self.containers()?;
        let endpoints = self.networks().endpoints_by_owner().unwrap_or_default();
        let lookup = |owner: &str| endpoints.get(owner).cloned().unwrap_or_default();
        let mut rows = Vec::new();
        let mut broken = Vec::new();
        for id in cs.ids()? {
            match self.view_in(&cs, &id, &lookup) {
                Ok(v) => rows.push(v),
                Err(EngineError::State(corral_container::state::StateError::NotFound(_))) => {}
                Err(e) => broken.push((id, e)),
            }
        }
        for (id, e) in broken {
            // Shown, not hidden: the user must learn it exists to remove it.
            tracing::warn!("container {}: {e}", &id[..12.min(id.len())]);
        }
        let created: BTreeMap<String, (String, String)> = rows
            .iter()
            .map(|v| {
                (
                    v.state.id.clone(),
                    (v.state.name.clone(), v.state.created.clone()),
                )
            })
            .collect();
        let created_of = |what: &str| {
            created
                .iter()
                .find(|(id, (name, _))| name == what || id.starts_with(what))
                .map(|(_, (_, t))| t.clone())
        };
        let show_all = all || filter.has_status();
        rows.retain(|v| {
            (show_all || v.state.status == Status::Running) && filter.matches(v, &created_of)
        });
        rows.sort_by(|a, b| b.state.created.cmp(&a.state.created));
        Ok(rows)
    }
}
