//! The project model: a compose file (already merged and interpolated) checked key by key —
//! an unknown key is refused with the nearest valid one — and every short and long syntax
//! turned into one normalised form, which `config` prints and the change hash covers.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::syntax::{
    boolean, check_keys, command, duration, key_values, mounts, number, opt_string, ports, scalar,
    strings, type_err,
};
use crate::ComposeError;

/// Top-level keys.
pub const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "configs", "secrets", "include",
];

/// Service keys.
pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "deploy",
    "hostname",
    "user",
    "working_dir",
    "labels",
    "cap_add",
    "cap_drop",
    "privileged",
    "read_only",
    "ulimits",
    "sysctls",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "init",
    "stop_signal",
    "stop_grace_period",
    "profiles",
    "container_name",
    "scale",
    "isolation",
    "pull_policy",
    "extends",
    "stdin_open",
    "tty",
    "domainname",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "shm_size",
    "pids_limit",
    "devices",
    "security_opt",
    "logging",
    "configs",
    "secrets",
    "platform",
    "annotations",
    "group_add",
    "ipc",
    "pid",
    "userns_mode",
    "oom_score_adj",
    "mac_address",
];

/// A service, normalised.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Service {
    /// Its name.
    #[serde(skip)]
    pub name: String,
    /// The image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `build:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// `command` as arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `entrypoint` as arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The environment (a value of `None`: taken from the caller's environment if set).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, Option<String>>,
    /// Published ports, docker's short form.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Exposed ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// Mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    /// tmpfs mounts (`/run:size=1m`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    /// Networks and the service's place on each (empty and no `network_mode`: `default`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, ServiceNetwork>,
    /// `none`, `host`, `service:NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Dependencies.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Dependency>,
    /// The health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Restart policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Replicas (`deploy.replicas`, `scale`).
    pub replicas: u32,
    /// CPU limit (`deploy.resources.limits.cpus`, `cpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit, docker's form (`512m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Soft memory limit (`deploy.resources.reservations.memory`, `mem_reservation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
    /// CPUs reserved (`deploy.resources.reservations.cpus`): shown by `config`, not enforced
    /// (the engine has no CPU reservation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_reservation: Option<f64>,
    /// `deploy.restart_policy.delay` and `.window` (seconds): shown by `config`, not
    /// enforced (the engine restarts with its own back-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_delay: Option<f64>,
    /// See `restart_delay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_window: Option<f64>,
    /// Hostname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// User.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Capabilities added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Privileged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Read-only root.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// ulimits, docker's form (`nofile=1024:2048`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<String>,
    /// sysctls.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Extra hosts (`name:ip`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// DNS servers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// An init process.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Stop signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<u64>,
    /// Profiles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// A fixed container name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// corral's extension: `isolation: vm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// `pull_policy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// Keep stdin open.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    /// A terminal.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// How a change rolls over the replicas (`deploy.update_config`); `None`: all at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateConfig>,
    /// Configs and secrets it mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileUse>,
}

/// `deploy.update_config`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpdateConfig {
    /// Replicas replaced at a time.
    pub parallelism: u32,
    /// Seconds between batches.
    pub delay: f64,
    /// `stop-first` or `start-first`.
    pub order: String,
    /// `pause`, `rollback` or `continue`.
    pub failure_action: String,
    /// Seconds a new replica must stay up (and healthy) before it counts.
    pub monitor: f64,
}

/// `build:`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Build {
    /// The context directory (absolute).
    pub context: String,
    /// The Dockerfile, relative to the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build arguments.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// The target stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A mount, the long syntax.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Mount {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A volume's name (in the project) or a host path (absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Inside the container.
    pub target: String,
    /// Read-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// A service's place on a network.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceNetwork {
    /// More names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// A fixed address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

/// A dependency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dependency {
    /// `service_started`, `service_healthy`, `service_completed_successfully`.
    pub condition: String,
    /// Restart this service when the dependency is recreated.
    pub restart: bool,
    /// Refuse to start without it.
    pub required: bool,
}

/// A health check.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]`.
    pub test: Vec<String>,
    /// Interval, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<f64>,
    /// Timeout, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Start period, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<f64>,
    /// `disable: true`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

/// A top-level network.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NetworkDef {
    /// The real name (`PROJECT_KEY` unless `name:` or external).
    pub name: String,
    /// Made elsewhere: never created or removed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// No way out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A subnet (`ipam.config[0].subnet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VolumeDef {
    /// The real name (`PROJECT_KEY` unless `name:` or external).
    pub name: String,
    /// Made elsewhere.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The resolved project.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Project {
    /// The project's name.
    pub name: String,
    /// Its services.
    pub services: BTreeMap<String, Service>,
    /// Its networks.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkDef>,
    /// Its volumes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, VolumeDef>,
    /// Its configs (files services mount read-only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileDef>,
    /// Its secrets (files services mount read-only under `/run/secrets`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileDef>,
}

/// A top-level config or secret: where its content comes from.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FileDef {
    /// A file (absolute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The content itself (configs' `content:`, or a secret's `environment:` variable's value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `environment:` naming a variable the environment does not have: refused when a
    /// service that mounts it is started, not when the file is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// `external: true`: kept by a swarm, which corral does not have. The file loads (so
    /// `config`, `ps` and `down` work); starting a service that mounts it is refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

/// A config or secret a service mounts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FileUse {
    /// `config` or `secret`.
    pub kind: String,
    /// The top-level name.
    pub source: String,
    /// Where in the container (absolute).
    pub target: String,
}

/// Parses one service (keys checked).
pub fn service(name: &str, v: &Value, dir: &std::path::Path) -> Result<Service, ComposeError> {
    let at = format!("services.{name}");
    let m = v.as_object().ok_or_else(|| type_err(&at, "a mapping", v))?;
    check_keys(m, SERVICE_KEYS, &at)?;
    let f = |k: &str| format!("{at}.{k}");
    let mut s = Service {
        name: name.to_owned(),
        image: opt_string(m.get("image"), &f("image"))?,
        command: command(m.get("command"), &f("command"))?,
        entrypoint: command(m.get("entrypoint"), &f("entrypoint"))?,
        environment: key_values(m.get("environment"), &f("environment"))?,
        ports: ports(m.get("ports"), &f("ports"))?,
        expose: strings(m.get("expose"), &f("expose"))?,
        volumes: mounts(m.get("volumes"), &f("volumes"), dir)?,
        tmpfs: strings(m.get("tmpfs"), &f("tmpfs"))?,
        network_mode: opt_string(m.get("network_mode"), &f("network_mode"))?,
        restart: opt_string(m.get("restart"), &f("restart"))?,
        replicas: 1,
        hostname: opt_string(m.get("hostname"), &f("hostname"))?,
        user: opt_string(m.get("user"), &f("user"))?,
        working_dir: opt_string(m.get("working_dir"), &f("working_dir"))?,
        labels: key_values(m.get("labels"), &f("labels"))?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        cap_add: strings(m.get("cap_add"), &f("cap_add"))?,
        cap_drop: strings(m.get("cap_drop"), &f("cap_drop"))?,
        privileged: boolean(m.get("privileged"), &f("privileged"))?,
        read_only: boolean(m.get("read_only"), &f("read_only"))?,
        sysctls: key_values(m.get("sysctls"), &f("sysctls"))?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        extra_hosts: match m.get("extra_hosts") {
            Some(Value::Object(o)) => o
                .iter()
                .map(|(k, v)| Ok(format!("{k}:{}", scalar(v, &f("extra_hosts"))?)))
                .collect::<Result<_, ComposeError>>()?,
            other => strings(other, &f("extra_hosts"))?
                .into_iter()
                .map(|h| h.replacen('=', ":", 1))
                .collect(),
        },
        dns: strings(m.get("dns"), &f("dns"))?,
        init: boolean(m.get("init"), &f("init"))?,
        stop_signal: opt_string(m.get("stop_signal"), &f("stop_signal"))?,
        stop_grace_period: m
            .get("stop_grace_period")
            .map(|d| duration(d, &f("stop_grace_period")).map(|s| s.ceil() as u64))
            .transpose()?,
        profiles: strings(m.get("profiles"), &f("profiles"))?,
        container_name: opt_string(m.get("container_name"), &f("container_name"))?,
        isolation: opt_string(m.get("isolation"), &f("isolation"))?,
        pull_policy: opt_string(m.get("pull_policy"), &f("pull_policy"))?,
        stdin_open: boolean(m.get("stdin_open"), &f("stdin_open"))?,
        tty: boolean(m.get("tty"), &f("tty"))?,
        memory: opt_string(m.get("mem_limit"), &f("mem_limit"))?,
        memory_reservation: opt_string(m.get("mem_reservation"), &f("mem_reservation"))?,
        cpus: m.get("cpus").map(|c| number(c, &f("cpus"))).transpose()?,
        ..Default::default()
    };
    if let Some(iso) = &s.isolation {
        if iso != "vm" && iso != "container" && iso != "default" {
            return Err(ComposeError::Invalid(format!(
                "{}: {iso:?} (container or vm)",
                f("isolation")
            )));
        }
    }
    // ulimits: `nofile: 1024` or `nofile: {soft, hard}`.
    if let Some(Value::Object(u)) = m.get("ulimits") {
        for (k, v) in u {
            s.ulimits.push(match v {
                Value::Object(o) => format!(
                    "{k}={}:{}",
                    o.get("soft")
                        .map(|x| scalar(x, &f("ulimits")))
                        .transpose()?
                        .unwrap_or_default(),
                    o.get("hard")
                        .map(|x| scalar(x, &f("ulimits")))
                        .transpose()?
                        .unwrap_or_default()
                ),
                other => format!("{k}={}", scalar(other, &f("ulimits"))?),
            });
        }
    }
    if let Some(b) = m.get("build") {
        s.build = Some(match b {
            Value::String(ctx) => Build {
                context: crate::load::clean_path(&dir.join(ctx)),
                ..Default::default()
            },
            Value::Object(o) => {
                check_keys(
                    o,
                    &[
                        "context",
                        "dockerfile",
                        "args",
                        "target",
                        "labels",
                        "network",
                        "secrets",
                        "cache_from",
                        "tags",
                        "platforms",
                        "no_cache",
                        "pull",
                        "ssh",
                        "shm_size",
                        "extra_hosts",
                        "isolation",
                        "dockerfile_inline",
                    ],
                    &f("build"),
                )?;
                Build {
                    context: crate::load::clean_path(
                        &dir.join(
                            opt_string(o.get("context"), &f("build.context"))?
                                .unwrap_or_else(|| ".".into()),
                        ),
                    ),
                    dockerfile: opt_string(o.get("dockerfile"), &f("build.dockerfile"))?,
                    args: key_values(o.get("args"), &f("build.args"))?
                        .into_iter()
                        .filter_map(|(k, v)| v.or_else(|| std::env::var(&k).ok()).map(|v| (k, v)))
                        .collect(),
                    target: opt_string(o.get("target"), &f("build.target"))?,
                }
            }
            o => return Err(type_err(&f("build"), "a path or a mapping", o)),
        });
    }
    match m.get("networks") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for n in a {
                s.networks
                    .insert(scalar(n, &f("networks"))?, ServiceNetwork::default());
            }
        }
        Some(Value::Object(o)) => {
            for (n, v) in o {
                let here = format!("{}.{n}", f("networks"));
                let sn = match v {
                    Value::Null => ServiceNetwork::default(),
                    Value::Object(o) => {
                        check_keys(
                            o,
                            &[
                                "aliases",
                                "ipv4_address",
                                "ipv6_address",
                                "priority",
                                "mac_address",
                                "link_local_ips",
                            ],
                            &here,
                        )?;
                        ServiceNetwork {
                            aliases: strings(o.get("aliases"), &here)?,
                            ipv4_address: opt_string(o.get("ipv4_address"), &here)?,
                        }
                    }
                    other => return Err(type_err(&here, "a mapping", other)),
                };
                s.networks.insert(n.clone(), sn);
            }
        }
        Some(o) => return Err(type_err(&f("networks"), "a list or a mapping", o)),
    }
    match m.get("depends_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for d in a {
                s.depends_on.insert(
                    scalar(d, &f("depends_on"))?,
                    Dependency {
                        condition: "service_started".into(),
                        restart: false,
                        required: true,
                    },
                );
            }
        }
        Some(Value::Object(o)) => {
            for (d, v) in o {
                let here = format!("{}.{d}", f("depends_on"));
                let m = v
                    .as_object()
                    .ok_or_else(|| type_err(&here, "a mapping", v))?;
                check_keys(m, &["condition", "restart", "required"], &here)?;
                let condition = opt_string(m.get("condition"), &here)?
                    .unwrap_or_else(|| "service_started".into());
                if !matches!(
                    condition.as_str(),
                    "service_started" | "service_healthy" | "service_completed_successfully"
                ) {
                    return Err(ComposeError::Invalid(format!(
                        "{here}.condition: {condition:?} (service_started, service_healthy or service_completed_successfully)"
                    )));
                }
                s.depends_on.insert(
                    d.clone(),
                    Dependency {
                        condition,
                        restart: boolean(m.get("restart"), &here)?,
                        required: m
                            .get("required")
                            .map(|r| boolean(Some(r), &here))
                            .transpose()?
                            .unwrap_or(true),
                    },
                );
            }
        }
        Some(o) => return Err(type_err(&f("depends_on"), "a list or a mapping", o)),
    }
    if let Some(h) = m.get("healthcheck") {
        let here = f("healthcheck");
        let o = h
            .as_object()
            .ok_or_else(|| type_err(&here, "a mapping", h))?;
        check_keys(
            o,
            &[
                "test",
                "interval",
                "timeout",
                "retries",
                "start_period",
                "start_interval",
                "disable",
            ],
            &here,
        )?;
        let test = match o.get("test") {
            Some(Value::String(t)) => vec!["CMD-SHELL".into(), t.clone()],
            other => strings(other, &here)?,
        };
        s.healthcheck = Some(Healthcheck {
            test,
            interval: o.get("interval").map(|d| duration(d, &here)).transpose()?,
            timeout: o.get("timeout").map(|d| duration(d, &here)).transpose()?,
            retries: o
                .get("retries")
                .map(|r| number(r, &format!("{here}.retries")))
                .transpose()?,
            start_period: o
                .get("start_period")
                .map(|d| duration(d, &here))
                .transpose()?,
            disable: boolean(o.get("disable"), &here)?,
        });
    }
    if let Some(sc) = m.get("scale") {
        s.replicas = scalar(sc, &f("scale"))?
            .parse()
            .map_err(|_| ComposeError::Invalid(format!("{}: not a number", f("scale"))))?;
    }
    if let Some(Value::Object(d)) = m.get("deploy") {
        check_keys(
            d,
            &[
                "replicas",
                "resources",
                "restart_policy",
                "update_config",
                "rollback_config",
                "labels",
                "mode",
                "placement",
                "endpoint_mode",
            ],
            &f("deploy"),
        )?;
        if let Some(r) = d.get("replicas") {
            s.replicas = scalar(r, &f("deploy.replicas"))?.parse().map_err(|_| {
                ComposeError::Invalid(format!("{}: not a number", f("deploy.replicas")))
            })?;
        }
        if let Some(Value::Object(limits)) = d.get("resources").and_then(|r| r.get("limits")) {
            if let Some(c) = limits.get("cpus") {
                s.cpus = Some(number(c, &f("deploy.resources.limits.cpus"))?);
            }
            if let Some(mem) = limits.get("memory") {
                s.memory = Some(scalar(mem, &f("deploy.resources.limits.memory"))?);
            }
        }
        if let Some(Value::Object(r)) = d.get("resources").and_then(|r| r.get("reservations")) {
            if let Some(c) = r.get("cpus") {
                s.cpus_reservation = Some(number(c, &f("deploy.resources.reservations.cpus"))?);
            }
            if let Some(mem) = r.get("memory") {
                s.memory_reservation =
                    Some(scalar(mem, &f("deploy.resources.reservations.memory"))?);
            }
        }
        if let Some(u) = d.get("update_config") {
            let here = f("deploy.update_config");
            let o = u
                .as_object()
                .ok_or_else(|| type_err(&here, "a mapping", u))?;
            check_keys(
                o,
                &[
                    "parallelism",
                    "delay",
                    "order",
                    "failure_action",
                    "monitor",
                    "max_failure_ratio",
                ],
                &here,
            )?;
            let order = opt_string(o.get("order"), &here)?.unwrap_or_else(|| "stop-first".into());
            if order != "stop-first" && order != "start-first" {
                return Err(ComposeError::Invalid(format!(
                    "{here}.order: {order:?} (stop-first or start-first)"
                )));
            }
            let failure_action =
                opt_string(o.get("failure_action"), &here)?.unwrap_or_else(|| "pause".into());
            if !matches!(failure_action.as_str(), "pause" | "rollback" | "continue") {
                return Err(ComposeError::Invalid(format!(
                    "{here}.failure_action: {failure_action:?} (pause, rollback or continue)"
                )));
            }
            s.update = Some(UpdateConfig {
                parallelism: o
                    .get("parallelism")
                    .map(|p| scalar(p, &here))
                    .transpose()?
                    .map(|p| {
                        p.parse::<u32>().map_err(|_| {
                            ComposeError::Invalid(format!("{here}.parallelism: not a number"))
                        })
                    })
                    .transpose()?
                    .unwrap_or(1)
                    .max(1),
                delay: o
                    .get("delay")
                    .map(|d| duration(d, &here))
                    .transpose()?
                    .unwrap_or(0.0),
                order,
                failure_action,
                monitor: o
                    .get("monitor")
                    .map(|d| duration(d, &here))
                    .transpose()?
                    .unwrap_or(0.0),
            });
        }
        if let Some(Value::Object(rp)) = d.get("restart_policy") {
            let here = f("deploy.restart_policy");
            let max: Option<u32> = rp
                .get("max_attempts")
                .map(|n| number(n, &format!("{here}.max_attempts")))
                .transpose()?;
            let c = match rp.get("condition") {
                Some(c) => scalar(c, &format!("{here}.condition"))?,
                None => "any".into(),
            };
            // The engine counts retries only for on-failure; `any` with max_attempts keeps
            // restarting (docker outside swarm does the same).
            s.restart.get_or_insert(match (c.as_str(), max) {
                ("none", _) => "no".into(),
                ("on-failure", Some(n)) => format!("on-failure:{n}"),
                ("on-failure", None) => "on-failure".into(),
                _ => "always".into(),
            });
            s.restart_delay = rp
                .get("delay")
                .map(|d| duration(d, &format!("{here}.delay")))
                .transpose()?;
            s.restart_window = rp
                .get("window")
                .map(|d| duration(d, &format!("{here}.window")))
                .transpose()?;
        }
    }
    for (kind, key, base) in [
        ("config", "configs", "/"),
        ("secret", "secrets", "/run/secrets/"),
    ] {
        let Some(list) = m.get(key) else { continue };
        let here = f(key);
        let arr = list
            .as_array()
            .ok_or_else(|| type_err(&here, "a list", list))?;
        for (i, u) in arr.iter().enumerate() {
            let at = format!("{here}[{i}]");
            let (source, target) = match u {
                Value::String(n) => (n.clone(), None),
                Value::Object(o) => {
                    check_keys(o, &["source", "target", "uid", "gid", "mode"], &at)?;
                    (
                        opt_string(o.get("source"), &at)?.ok_or_else(|| {
                            ComposeError::Invalid(format!("{at}: source is required"))
                        })?,
                        opt_string(o.get("target"), &at)?,
                    )
                }
                other => return Err(type_err(&at, "a name or a mapping", other)),
            };
            let target = match target {
                Some(t) if t.starts_with('/') => t,
                Some(t) => format!("{base}{t}"),
                None => format!("{base}{source}"),
            };
            s.files.push(FileUse {
                kind: kind.into(),
                source,
                target,
            });
        }
    }
    if s.image.is_none() && s.build.is_none() {
        return Err(ComposeError::Invalid(format!(
            "{at}: neither image nor build is given"
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_and_long_syntaxes_normalise() {
        let dir = std::path::Path::new("/proj");
        let s = service(
            "web",
            &json!({
                "image": "busybox",
                "command": "sh -c 'echo \"hi there\"'",
                "environment": ["A=1", "B"],
                "ports": ["8080:80", {"target": 53, "published": 5353, "protocol": "udp"}],
                "volumes": ["data:/data:ro", "./site:/site", "/anon", {"type": "tmpfs", "target": "/t"}],
                "networks": {"front": {"aliases": ["www"]}},
                "depends_on": {"db": {"condition": "service_healthy"}},
                "healthcheck": {"test": "true", "interval": "1m30s"},
                "deploy": {"replicas": 3, "resources": {"limits": {"memory": "64m"}}},
            }),
            dir,
        )
        .unwrap();
        assert_eq!(s.command.unwrap(), vec!["sh", "-c", "echo \"hi there\""]);
        assert_eq!(s.environment.get("B"), Some(&None));
        assert_eq!(s.ports, vec!["8080:80", "5353:53/udp"]);
        assert_eq!(
            s.volumes[0],
            Mount {
                kind: "volume".into(),
                source: Some("data".into()),
                target: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(s.volumes[1].source.as_deref(), Some("/proj/site"));
        assert_eq!(s.volumes[2].source, None);
        assert_eq!(s.networks["front"].aliases, vec!["www"]);
        assert_eq!(s.depends_on["db"].condition, "service_healthy");
        assert_eq!(s.healthcheck.unwrap().interval, Some(90.0));
        assert_eq!((s.replicas, s.memory.as_deref()), (3, Some("64m")));
    }

    #[test]
    fn unknown_keys_name_the_nearest() {
        let e = service(
            "web",
            &json!({"image": "x", "enviroment": []}),
            std::path::Path::new("/"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("did you mean \"environment\""),
            "{e}"
        );
        let e = service(
            "web",
            &json!({"image": "x", "ports": "80"}),
            std::path::Path::new("/"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("must be a list"), "{e}");
        assert!(service("web", &json!({"command": "x"}), std::path::Path::new("/")).is_err());
    }
}
