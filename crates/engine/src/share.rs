//! `--network container:X`, `--ipc container:X` and `--pid container:X`: a container that
//! joins another's namespaces at each of its starts, as docker's and podman's do.
//!
//! The other container is named at create (and must exist then) and joined by its init's
//! `/proc/PID/ns/KIND` at start (and must be running then). Sharing the network also shares
//! what makes it one: the hostname, `/etc/hosts` and `/etc/resolv.conf` are the other's.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use corral_container::{Containers, Status};

use crate::{Engine, EngineError, Result};

/// The flag that asks for a kind of namespace, for messages.
fn flag(kind: &str) -> &'static str {
    match kind {
        "net" => "--network",
        "ipc" => "--ipc",
        _ => "--pid",
    }
}

/// The containers named by `container:X` modes, resolved to ids: (kind, id).
pub(crate) fn resolve(
    engine: &Engine,
    wanted: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (kind, name) in wanted {
        if !matches!(kind.as_str(), "net" | "ipc" | "pid") {
            return Err(EngineError::invalid(format!(
                "sharing the {kind} namespace of another container is not supported (net, ipc and pid are)"
            )));
        }
        if out.iter().any(|(k, _)| k == kind) {
            return Err(EngineError::invalid(format!(
                "{} is given twice",
                flag(kind)
            )));
        }
        if name.is_empty() {
            return Err(EngineError::invalid(format!(
                "{} container:NAME: give the container's name or id",
                flag(kind)
            )));
        }
        let id = engine.resolve(name).map_err(|_| {
            EngineError::NotFound(format!(
                "{} container:{name}: no such container",
                flag(kind)
            ))
        })?;
        out.push((kind.clone(), id));
    }
    Ok(out)
}

/// What `--network container:X` leaves no room for, refused as docker refuses it.
pub(crate) fn check_network_conflicts(spec: &crate::ContainerSpec) -> Result<()> {
    let n = &spec.networking;
    let conflicts = [
        ("--network NAME", !n.networks.is_empty()),
        ("-p/--publish", !n.publish.is_empty()),
        ("-P/--publish-all", n.publish_all),
        ("--network-alias", !n.aliases.is_empty()),
        ("--ip", n.ip.is_some()),
        ("--mac-address", n.mac.is_some()),
        ("-h/--hostname", spec.hostname.is_some()),
        (
            "--dns/--dns-search/--dns-option",
            !spec.dns.is_empty() || !spec.dns_search.is_empty() || !spec.dns_options.is_empty(),
        ),
        ("--add-host", !spec.extra_hosts.is_empty()),
        ("--pod", spec.pod.is_some()),
    ];
    match conflicts.iter().find(|(_, given)| *given) {
        Some((what, _)) => Err(EngineError::invalid(format!(
            "conflicting options: {what} and --network container:NAME (the other container's network, ports, hostname and DNS are used)"
        ))),
        None => Ok(()),
    }
}

impl Engine {
    /// Points a container's plan at the current namespaces of the containers it shares them
    /// with, before its start; the network's namespace is returned open, to be handed to the
    /// monitor as a network the container joins.
    pub(crate) fn prepare_shared(
        &self,
        cs: &Containers,
        id: &str,
        shared: &[(String, String)],
    ) -> Result<Option<OwnedFd>> {
        let mut cfg = cs.config(id)?;
        let mut netns = None;
        for (kind, other) in shared {
            let s = cs.load(other).map_err(|_| {
                EngineError::Conflict(format!(
                    "{} container:{}: that container no longer exists; remove this one or recreate it",
                    flag(kind),
                    &other[..other.len().min(12)]
                ))
            })?;
            let pid = match (s.status, s.pid) {
                (Status::Running, Some(pid)) => pid,
                _ => {
                    return Err(EngineError::Conflict(format!(
                        "cannot join the {kind} namespace of container {}: it is not running (start it first)",
                        s.name
                    )))
                }
            };
            let path = PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
            if kind == "net" {
                let f = std::fs::File::open(&path)
                    .map_err(crate::io_err("opening the network namespace", &path))?;
                let (from, to) = (cs.dir(other), cs.dir(id));
                for name in ["hosts", "resolv.conf"] {
                    if from.join(name).exists() {
                        std::fs::copy(from.join(name), to.join(name))
                            .map_err(crate::io_err("copying", &from.join(name)))?;
                    }
                }
                cfg.hostname = cs.config(other)?.hostname;
                netns = Some(f.into());
            } else {
                cfg.join_namespaces.retain(|(k, _)| k != kind);
                cfg.join_namespaces.push((kind.clone(), path));
            }
        }
        cs.save_config(id, &cfg)?;
        Ok(netns)
    }
}
