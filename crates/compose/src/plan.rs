//! A service's replica as the engine's workload spec, with docker compose's names
//! (`PROJECT-SERVICE-N`) and labels (`com.docker.compose.*`, which `ps`, `down` and other
//! tools find containers by), and the change hash `up` compares.

use std::collections::BTreeMap;

use corral_engine::health::HealthSpec;
use corral_engine::spec::{self, ContainerSpec, Isolation, Mount, MountSource, PullPolicy};
use sha2::{Digest as _, Sha256};

use crate::model::{Project, Service};
use crate::ComposeError;

/// The project label.
pub const PROJECT: &str = "com.docker.compose.project";
/// The service label.
pub const SERVICE: &str = "com.docker.compose.service";
/// The replica number label.
pub const NUMBER: &str = "com.docker.compose.container-number";
/// The change hash label.
pub const HASH: &str = "com.docker.compose.config-hash";
/// One-off (`run`) containers.
pub const ONEOFF: &str = "com.docker.compose.oneoff";
/// The config files label.
pub const FILES: &str = "com.docker.compose.project.config_files";
/// The working directory label.
pub const WORKDIR: &str = "com.docker.compose.project.working_dir";
/// A network's key in the project.
pub const NETWORK: &str = "com.docker.compose.network";
/// A volume's key in the project.
pub const VOLUME: &str = "com.docker.compose.volume";

/// The image a service runs: its `image`, else `PROJECT-SERVICE` (what `build` tags).
pub fn image_of(p: &Project, s: &Service) -> String {
    s.image
        .clone()
        .unwrap_or_else(|| format!("{}-{}", p.name, s.name))
}

/// Replica `n`'s container name.
pub fn container_name(p: &Project, s: &Service, n: u32) -> String {
    match &s.container_name {
        Some(c) => c.clone(),
        None => format!("{}-{}-{n}", p.name, s.name),
    }
}

/// The hash of what makes a service's containers what they are: its normalised config and
/// its image's id (not its replica count). A change in either recreates them.
pub fn config_hash(s: &Service, image_id: &str) -> String {
    // The replica count is not part of a container's config: scaling keeps the others.
    let mut s = s.clone();
    s.replicas = 0;
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&s).expect("serializable"));
    h.update(b"\0");
    h.update(image_id.as_bytes());
    hex::encode(h.finalize())
}

/// A digest of the contents of the configs and secrets `s` mounts (a file's bytes, an inline
/// value), so that editing one recreates the service as a config change does.
pub fn files_digest(p: &Project, s: &Service) -> String {
    let mut h = Sha256::new();
    for u in &s.files {
        let defs = if u.kind == "config" {
            &p.configs
        } else {
            &p.secrets
        };
        let Some(def) = defs.get(&u.source) else {
            continue;
        };
        h.update(u.source.as_bytes());
        h.update(b"\0");
        match (&def.content, &def.file) {
            (Some(c), _) => h.update(c.as_bytes()),
            (None, Some(f)) => h.update(std::fs::read(f).unwrap_or_default()),
            _ => {}
        }
        h.update(b"\0");
    }
    hex::encode(h.finalize())
}

fn memory(m: &str) -> Result<u64, ComposeError> {
    corral_container::config::parse_size(m)
        .ok_or_else(|| ComposeError::Invalid(format!("memory {m:?}: a size such as 512m or 1g")))
}

/// Quotes words for `/bin/sh -c` (a `["CMD", ...]` health check).
fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The spec of replica `n` of `s`.
pub fn container_spec(
    p: &Project,
    s: &Service,
    n: u32,
    hash: &str,
    extra_labels: &BTreeMap<String, String>,
) -> Result<ContainerSpec, ComposeError> {
    container_spec_in(p, s, n, hash, extra_labels, None)
}

fn external_err(service: &str, kind: &str, name: &str) -> ComposeError {
    ComposeError::Invalid(format!(
        "service {service}: unsupported external {kind} {name}: external {kind}s live in a swarm, \
         which corral does not have (give the {kind} a file, content or environment)"
    ))
}

/// Refuses the first of `services` that mounts an external config or secret, before anything
/// is started.
pub fn check_external(p: &Project, services: &[String]) -> Result<(), ComposeError> {
    for s in services.iter().filter_map(|n| p.services.get(n)) {
        for u in &s.files {
            let defs = if u.kind == "config" {
                &p.configs
            } else {
                &p.secrets
            };
            if defs.get(&u.source).is_some_and(|d| d.external) {
                return Err(external_err(&s.name, &u.kind, &u.source));
            }
        }
    }
    Ok(())
}

/// [`container_spec`], with the directory where the project's inline configs and secrets
/// are written ([`crate::ops::write_files`]).
pub fn container_spec_in(
    p: &Project,
    s: &Service,
    n: u32,
    hash: &str,
    extra_labels: &BTreeMap<String, String>,
    files_dir: Option<&std::path::Path>,
) -> Result<ContainerSpec, ComposeError> {
    let mut labels = s.labels.clone();
    labels.extend(extra_labels.clone());
    labels.insert(PROJECT.into(), p.name.clone());
    labels.insert(SERVICE.into(), s.name.clone());
    labels.insert(NUMBER.into(), n.to_string());
    labels.insert(HASH.into(), hash.into());
    labels.insert(ONEOFF.into(), "False".into());
    let mut mounts = Vec::new();
    for m in &s.volumes {
        let source = match (m.kind.as_str(), &m.source) {
            ("volume", Some(v)) => MountSource::Volume {
                name: Some(
                    p.volumes
                        .get(v)
                        .map(|d| d.name.clone())
                        .unwrap_or_else(|| v.clone()),
                ),
                nocopy: false,
            },
            ("volume", None) => MountSource::Volume {
                name: None,
                nocopy: false,
            },
            ("bind", Some(src)) => MountSource::Bind { source: src.into() },
            ("tmpfs", _) => MountSource::Tmpfs {
                options: String::new(),
            },
            _ => {
                return Err(ComposeError::Invalid(format!(
                    "services.{}.volumes: a {} mount needs a source",
                    s.name, m.kind
                )))
            }
        };
        mounts.push(Mount {
            source,
            target: m.target.clone(),
            readonly: m.read_only,
        });
    }
    for u in &s.files {
        let defs = if u.kind == "config" {
            &p.configs
        } else {
            &p.secrets
        };
        let def = defs.get(&u.source).ok_or_else(|| {
            ComposeError::Invalid(format!("services.{}: no {} {}", s.name, u.kind, u.source))
        })?;
        if def.external {
            return Err(external_err(&s.name, &u.kind, &u.source));
        }
        let source = match (&def.file, files_dir) {
            (Some(f), _) => f.clone(),
            (None, Some(dir)) => dir
                .join(format!("{}s", u.kind))
                .join(&u.source)
                .display()
                .to_string(),
            (None, None) => {
                return Err(ComposeError::Invalid(format!(
                    "services.{}: {} {} has no file",
                    s.name, u.kind, u.source
                )))
            }
        };
        mounts.push(Mount {
            source: MountSource::Bind {
                source: source.into(),
            },
            target: u.target.clone(),
            readonly: true,
        });
    }
    for t in &s.tmpfs {
        mounts.push(
            Mount::parse_tmpfs(t)
                .map_err(|e| ComposeError::Invalid(format!("services.{}.tmpfs: {e}", s.name)))?,
        );
    }
    let mut security = spec::Security {
        cap_add: s.cap_add.clone(),
        cap_drop: s.cap_drop.clone(),
        privileged: s.privileged,
        ..Default::default()
    };
    let mut networking = spec::Networking {
        publish: s.ports.clone(),
        expose: s.expose.clone(),
        // The replicas share their published host ports: a connection goes to one of those
        // that serve, so `--scale` works with a fixed host port and a start-first update runs
        // the new replica beside the old one.
        port_group: (!s.ports.is_empty()).then(|| format!("compose/{}/{}", p.name, s.name)),
        ..Default::default()
    };
    match s.network_mode.as_deref() {
        None => {
            let nets: Vec<(&String, &crate::model::ServiceNetwork)> = if s.networks.is_empty() {
                Vec::new()
            } else {
                s.networks.iter().collect()
            };
            if nets.is_empty() {
                networking.networks.push(p.networks["default"].name.clone());
            }
            // The service's name is an alias on every network it joins, as in docker compose.
            networking.aliases.push(s.name.clone());
            for (key, sn) in nets {
                let real = p.networks.get(key).map(|d| d.name.clone()).ok_or_else(|| {
                    ComposeError::Invalid(format!("services.{}: no network {key}", s.name))
                })?;
                networking.networks.push(real);
                networking.aliases.extend(sn.aliases.iter().cloned());
                if networking.ip.is_none() {
                    if let Some(ip) = &sn.ipv4_address {
                        networking.ip = Some(ip.parse().map_err(|_| {
                            ComposeError::Invalid(format!("services.{}.networks.{key}.ipv4_address: {ip:?} is not an IPv4 address", s.name))
                        })?);
                    }
                }
            }
        }
        Some("none") => networking.networks.push("none".into()),
        Some("host") => networking.networks.push("host".into()),
        Some(m) => {
            let other = if let Some(svc) = m.strip_prefix("service:") {
                let o = p.services.get(svc).ok_or_else(|| {
                    ComposeError::Invalid(format!(
                        "services.{}.network_mode: no service {svc}",
                        s.name
                    ))
                })?;
                container_name(p, o, 1)
            } else if let Some(c) = m.strip_prefix("container:") {
                c.to_owned()
            } else {
                return Err(ComposeError::Invalid(format!(
                    "services.{}.network_mode: {m:?} (none, host, service:NAME or container:NAME)",
                    s.name
                )));
            };
            security.shared_namespaces.push(("net".into(), other));
            networking.publish.clear();
        }
    }
    let healthcheck = match &s.healthcheck {
        None => HealthSpec::default(),
        Some(h) if h.disable || h.test.first().map(String::as_str) == Some("NONE") => HealthSpec {
            disable: true,
            ..Default::default()
        },
        Some(h) => {
            let cmd = match h.test.first().map(String::as_str) {
                Some("CMD-SHELL") => h.test.get(1).cloned(),
                Some("CMD") => Some(shell_join(&h.test[1..])),
                _ if h.test.is_empty() => None,
                _ => Some(shell_join(&h.test)),
            };
            let secs = |f: Option<f64>| f.map(std::time::Duration::from_secs_f64);
            HealthSpec {
                cmd,
                interval: secs(h.interval),
                timeout: secs(h.timeout),
                retries: h.retries,
                start_period: secs(h.start_period),
                disable: false,
            }
        }
    };
    let pull = match s.pull_policy.as_deref() {
        None | Some("missing") | Some("if_not_present") => PullPolicy::Missing,
        Some("always") => PullPolicy::Always,
        Some("never") | Some("build") => PullPolicy::Never,
        Some(other) => {
            return Err(ComposeError::Invalid(format!(
                "services.{}.pull_policy: {other:?} (always, missing, never, build)",
                s.name
            )))
        }
    };
    Ok(ContainerSpec {
        name: Some(container_name(p, s, n)),
        image: image_of(p, s),
        pull: if s.build.is_some() {
            PullPolicy::Never
        } else {
            pull
        },
        entrypoint: s.entrypoint.clone(),
        command: s.command.clone().unwrap_or_default(),
        env: s
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
            .collect(),
        workdir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        interactive: s.stdin_open,
        tty: s.tty,
        mounts,
        read_only: s.read_only,
        resources: spec::Resources {
            memory: s.memory.as_deref().map(memory).transpose()?,
            cpus: s.cpus,
            memory_reservation: s.memory_reservation.as_deref().map(memory).transpose()?,
            ..Default::default()
        },
        security,
        ulimits: s.ulimits.clone(),
        networking,
        labels,
        restart: s.restart.clone().unwrap_or_default(),
        stop_signal: s.stop_signal.clone(),
        stop_timeout: s.stop_grace_period,
        init: s.init,
        isolation: if s.isolation.as_deref() == Some("vm") {
            Isolation::Vm
        } else {
            Isolation::Container
        },
        healthcheck,
        sysctls: s.sysctls.clone(),
        extra_hosts: s.extra_hosts.clone(),
        dns: s.dns.clone(),
        ..Default::default()
    })
}
