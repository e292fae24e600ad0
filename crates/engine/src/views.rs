//! What `inspect` and `ps` show of a container, in docker's shapes: the JSON that scripts
//! parse (`.[0].State.Status`, `.[0].NetworkSettings.IPAddress`, `.[0].Config.Env`), and the
//! STATUS and PORTS columns users read (`Up 5 minutes`, `Exited (0) 2 minutes ago`,
//! `0.0.0.0:8080->80/tcp`).

use std::time::{Duration, SystemTime};

use corral_container::{ContainerConfig, State, Status};
use corral_net::Endpoint;
use serde_json::{json, Map, Value};

use crate::record::Record;

/// Everything known of one container.
pub struct ContainerView {
    /// Its state.
    pub state: State,
    /// Its plan.
    pub config: ContainerConfig,
    /// The engine's record.
    pub record: Record,
    /// Its networks' endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Its log file.
    pub log_path: std::path::PathBuf,
    /// Its health, when it has a check and has started.
    pub health: Option<crate::health::Health>,
}

/// docker's state word: `created`, `running`, `paused`, `exited`.
pub fn status_word(s: &State) -> &'static str {
    match s.status {
        Status::Created => "created",
        Status::Running if s.paused => "paused",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

/// docker's words for a span of time: `Less than a second`, `5 seconds`, `About a minute`,
/// `3 minutes`, `About an hour`, `2 hours`, `3 days` ...
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

fn since(t: Option<&str>) -> Duration {
    t.and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// The STATUS column: `Created`, `Up 5 minutes`, `Up 2 seconds (Paused)`,
/// `Up 1 minute (healthy)`, `Exited (0) 2 minutes ago`.
pub fn status_column(s: &State, health: Option<&crate::health::Health>) -> String {
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = format!("Up {}", human_duration(since(s.started_at.as_deref())));
            if s.paused {
                format!("{up} (Paused)")
            } else if let Some(h) = health {
                let word = if h.status == "starting" {
                    "health: starting"
                } else {
                    &h.status
                };
                format!("{up} ({word})")
            } else {
                up
            }
        }
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code.unwrap_or(-1),
            human_duration(since(s.finished_at.as_deref()))
        ),
    }
}

/// The PORTS column: `0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp`.
pub fn ports_column(eps: &[Endpoint]) -> String {
    eps.iter()
        .flat_map(|e| e.ports.iter())
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ContainerView {
    /// docker's `inspect` object.
    pub fn docker_json(&self) -> Value {
        let s = &self.state;
        let c = &self.config;
        let r = &self.record;
        let path = c.args.first().cloned().unwrap_or_default();
        let mut binds = Vec::new();
        let mut mounts = Vec::new();
        for b in &c.binds {
            let volume = b
                .source
                .parent()
                .filter(|_| b.source.file_name().is_some_and(|n| n == "_data"))
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            binds.push(format!(
                "{}:{}{}",
                volume
                    .clone()
                    .unwrap_or_else(|| b.source.display().to_string()),
                b.destination,
                if b.readonly { ":ro" } else { "" }
            ));
            mounts.push(json!({
                "Type": if volume.is_some() { "volume" } else { "bind" },
                "Name": volume,
                "Source": b.source,
                "Destination": b.destination,
                "RW": !b.readonly,
                "Mode": if b.readonly { "ro" } else { "" },
                "Propagation": "rprivate",
            }));
        }
        let mut tmpfs = Map::new();
        for t in &c.tmpfs {
            let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
            tmpfs.insert(dst.to_owned(), json!(opts));
        }
        let mut ports = Map::new();
        let mut networks = Map::new();
        for e in &self.endpoints {
            for p in &e.ports {
                let key = format!("{}/{}", p.container_port, p.protocol);
                let entry = ports.entry(key).or_insert_with(|| json!([]));
                if let Value::Array(a) = entry {
                    a.push(json!({
                        "HostIp": p.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
                        "HostPort": p.host_port.to_string(),
                    }));
                }
            }
            networks.insert(
                e.network.clone(),
                json!({
                    "IPAddress": e.ip.to_string(), "IPPrefixLen": e.prefix,
                    "Gateway": e.gateway.to_string(), "MacAddress": e.mac,
                    "Aliases": e.aliases, "NetworkID": e.network,
                }),
            );
        }
        let first = self.endpoints.first();
        let restart = match c.restart {
            corral_container::config::RestartPolicy::No => ("no", 0),
            corral_container::config::RestartPolicy::OnFailure { max } => ("on-failure", max),
            corral_container::config::RestartPolicy::Always => ("always", 0),
        };
        let shared = |kind: &str| {
            r.shared
                .iter()
                .find(|(k, _)| k == kind)
                .map(|(_, id)| format!("container:{id}"))
        };
        let ns_mode = |kind: &str| {
            shared(kind).unwrap_or_else(|| {
                if c.host_namespaces.iter().any(|n| n == kind) {
                    "host".to_owned()
                } else {
                    "private".to_owned()
                }
            })
        };
        let network_mode = match c.network {
            _ if shared("net").is_some() => shared("net").unwrap_or_default(),
            corral_container::config::NetworkMode::None => "none".to_owned(),
            corral_container::config::NetworkMode::Host => "host".to_owned(),
            corral_container::config::NetworkMode::Networks => self.endpoints.first().map_or_else(
                || r.networks.first().cloned().unwrap_or_default(),
                |e| e.network.clone(),
            ),
        };
        let user = if c.uid == 0 && c.gid == 0 {
            String::new()
        } else {
            format!("{}:{}", c.uid, c.gid)
        };
        json!({
            "Id": s.id,
            "Created": s.created,
            "Path": path,
            "Args": c.args.get(1..).unwrap_or_default(),
            "State": {
                "Status": status_word(s),
                "Running": s.status == Status::Running,
                "Paused": s.paused,
                "Restarting": false,
                "OOMKilled": s.oom_killed,
                "Dead": false,
                "Pid": s.pid.unwrap_or(0),
                "ExitCode": s.exit_code.unwrap_or(0),
                "Error": s.error.clone().unwrap_or_default(),
                "StartedAt": s.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "FinishedAt": s.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "Health": self.health,
            },
            "Image": s.image_id,
            "ResolvConfPath": "",
            "HostnamePath": "",
            "LogPath": self.log_path,
            "Name": format!("/{}", s.name),
            "RestartCount": s.restart_count,
            "Driver": "overlay",
            "Platform": "linux",
            "HostConfig": {
                "Binds": binds,
                "NetworkMode": network_mode,
                "IpcMode": ns_mode("ipc"),
                "PidMode": if ns_mode("pid") == "private" { String::new() } else { ns_mode("pid") },
                "UTSMode": if ns_mode("uts") == "private" { String::new() } else { ns_mode("uts") },
                "CgroupnsMode": ns_mode("cgroup"),
                "RestartPolicy": {"Name": restart.0, "MaximumRetryCount": restart.1},
                "AutoRemove": s.auto_remove,
                "Init": c.init.is_some(),
                "LogConfig": {
                    "Type": match c.log.driver {
                        corral_container::config::LogDriver::JsonFile => "json-file",
                        corral_container::config::LogDriver::None => "none",
                        corral_container::config::LogDriver::Journald => "journald",
                    },
                    "Config": {
                        "max-size": c.log.max_size.map(|s| s.to_string()),
                        "max-file": c.log.max_file.map(|n| n.to_string()),
                        "tag": c.log.tag,
                    },
                },
                "CapAdd": Value::Null,
                "Privileged": c.privileged,
                "ReadonlyRootfs": c.read_only,
                "Tmpfs": tmpfs,
                "Memory": c.resources.memory.unwrap_or(0),
                "NanoCpus": c.resources.cpu_quota.map_or(0, |q| {
                    q * 1_000_000_000 / c.resources.cpu_period.unwrap_or(100_000).max(1) as i64
                }),
                "CpuShares": c.resources.cpu_shares.unwrap_or(0),
                "CpuQuota": c.resources.cpu_quota.unwrap_or(0),
                "CpuPeriod": c.resources.cpu_period.unwrap_or(0),
                "CpusetCpus": c.resources.cpuset_cpus.clone().unwrap_or_default(),
                "CpusetMems": c.resources.cpuset_mems.clone().unwrap_or_default(),
                "PidsLimit": c.resources.pids_limit,
                "GroupAdd": c.additional_gids,
            },
            "Mounts": mounts,
            "Config": {
                "Hostname": c.hostname,
                "User": user,
                "Tty": c.tty,
                "OpenStdin": c.interactive,
                "Env": c.env,
                "Cmd": s.cmd,
                "Entrypoint": s.entrypoint,
                "Image": s.image,
                "WorkingDir": c.cwd,
                "Labels": r.labels,
                "StopSignal": r.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
                "StopTimeout": r.stop_timeout.unwrap_or(10),
                "Healthcheck": r.healthcheck.as_ref().map(|h| json!({
                    "Test": h.test,
                    "Interval": h.interval_ms * 1_000_000,
                    "Timeout": h.timeout_ms * 1_000_000,
                    "Retries": h.retries,
                    "StartPeriod": h.start_period_ms * 1_000_000,
                })),
            },
            "NetworkSettings": {
                "IPAddress": first.map(|e| e.ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": first.map_or(0, |e| e.prefix),
                "Gateway": first.map(|e| e.gateway.to_string()).unwrap_or_default(),
                "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
                "Ports": ports,
                "Networks": networks,
            },
        })
    }

    /// corral's own shape (`inspect --json`): what it showed before docker's, kept for the
    /// scripts written against it.
    pub fn corral_json(&self) -> Value {
        let s = &self.state;
        let c = &self.config;
        let mut nets = Map::new();
        let mut ports = Vec::new();
        for e in &self.endpoints {
            nets.insert(
                e.network.clone(),
                json!({"ip": e.ip, "prefix": e.prefix, "gateway": e.gateway, "mac": e.mac,
                       "aliases": e.aliases, "interface": e.ifname}),
            );
            for p in &e.ports {
                ports.push(json!({
                    "host_ip": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                    "host_port": p.host_port, "container_port": p.container_port,
                    "protocol": p.protocol,
                }));
            }
        }
        json!({
            "id": s.id, "name": s.name, "image": s.image, "image_id": s.image_id,
            "created": s.created,
            "state": {
                "status": status_word(s).replace("paused", "running"), "running": s.status == Status::Running,
                "paused": s.paused,
                "pid": s.pid, "exit_code": s.exit_code, "oom_killed": s.oom_killed,
                "started_at": s.started_at, "finished_at": s.finished_at, "error": s.error,
            },
            "config": {
                "cmd": s.cmd, "entrypoint": s.entrypoint, "env": c.env, "working_dir": c.cwd,
                "user": format!("{}:{}", c.uid, c.gid), "hostname": c.hostname,
                "labels": self.record.labels,
            },
            "host_config": {
                "memory": c.resources.memory,
                "cpus": c.resources.cpu_quota.map(|q| q as f64 / c.resources.cpu_period.unwrap_or(100_000) as f64),
                "cpu_quota": c.resources.cpu_quota,
                "cpu_shares": c.resources.cpu_shares, "cpuset_cpus": c.resources.cpuset_cpus,
                "pids_limit": c.resources.pids_limit, "network": c.network,
                "read_only": c.read_only, "binds": c.binds, "tmpfs": c.tmpfs,
                "auto_remove": s.auto_remove,
            },
            "network_settings": {"networks": nets, "ports": ports},
            "cgroup_paths": s.cgroup_paths,
            "log_path": self.log_path,
        })
    }
}

/// docker's `inspect` object of an image (with corral's own `id`, `digest` and `config`
/// beside it, as `inspect` printed them before).
pub fn image_json(store: &corral_image::Store, img: &corral_image::Image) -> Value {
    let c = &img.config;
    let layers: Vec<String> = img
        .diff_ids()
        .unwrap_or_default()
        .iter()
        .map(|d| d.to_string())
        .collect();
    let size: u64 = img
        .diff_ids()
        .unwrap_or_default()
        .iter()
        .map(|d| store.layer_size(d).unwrap_or(0))
        .sum();
    // `host:5000/app:1` is repository `host:5000/app`: the tag is after the last colon that
    // has no slash after it.
    let repo = |n: &str| {
        let n = n.split('@').next().unwrap_or(n);
        match n.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => r.to_owned(),
            _ => n.to_owned(),
        }
    };
    json!({
        "Id": img.id.to_string(),
        "RepoTags": img.names.iter().map(|n| corral_image::reference::short(n)).collect::<Vec<_>>(),
        "RepoDigests": img.names.iter().map(|n| format!("{}@{}", repo(&corral_image::reference::short(n)), img.digest)).collect::<Vec<_>>(),
        "Created": c.created(),
        "Author": c.author(),
        "Architecture": c.architecture().to_string(),
        "Os": c.os().to_string(),
        "Config": c.config(),
        "RootFS": {"Type": "layers", "Layers": layers},
        "Size": size,
        "id": img.id.to_string(),
        "digest": img.digest.to_string(),
        "config": c,
    })
}

impl crate::Engine {
    /// Everything known of a container, for `inspect` and `ps`.
    pub fn view(&self, id: &str) -> crate::Result<ContainerView> {
        let cs = self.containers()?;
        let nets = self.networks();
        self.view_in(&cs, id, &|owner| {
            nets.endpoints_of(owner).unwrap_or_default()
        })
    }

    /// [`Self::view`] with the state store open and the endpoints looked up by the caller
    /// (a listing opens and reads them once for all containers).
    pub(crate) fn view_in(
        &self,
        cs: &corral_container::Containers,
        id: &str,
        endpoints: &dyn Fn(&str) -> Vec<corral_net::Endpoint>,
    ) -> crate::Result<ContainerView> {
        let state = cs.load(id)?;
        let config = cs.config(id)?;
        let dir = cs.dir(id);
        let record = Record::load(&dir);
        // A pod's containers are on the pod's endpoints.
        let owner = record.pod.clone().unwrap_or_else(|| id.to_owned());
        Ok(ContainerView {
            state,
            config,
            endpoints: endpoints(&owner),
            record,
            log_path: dir.join("ctr.log"),
            health: crate::health::load(&dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_docker_prints_them() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(300)), "5 minutes");
        assert_eq!(human_duration(Duration::from_secs(3700)), "About an hour");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
    }
}
