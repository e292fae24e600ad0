//! The workload spec: what a caller (the CLI, compose, the node agent) asks the engine to run,
//! in types that know nothing of a command line.
//!
//! Where the ecosystem has one textual form that every tool shares — docker's `-p 8080:80`,
//! `--ulimit nofile=1024:2048`, `--device /dev/fuse`, `-v SRC:DST:ro`, `--tmpfs /run:size=1m`
//! — the spec keeps that form and the engine parses it, once, for every caller: compose files
//! and Kubernetes-shaped callers write the same strings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// When to pull the image from its registry (docker's and podman's `--pull`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the store does not have it (the default).
    #[default]
    Missing,
    /// Every time.
    Always,
    /// Never: a missing image is an error.
    Never,
    /// When the registry has a newer one; a registry that cannot be reached keeps the local one.
    Newer,
}

impl std::str::FromStr for PullPolicy {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        Ok(match s {
            "missing" => PullPolicy::Missing,
            "always" | "true" => PullPolicy::Always,
            "never" | "false" => PullPolicy::Never,
            "newer" => PullPolicy::Newer,
            _ => {
                return Err(EngineError::invalid(format!(
                    "--pull {s:?}: expected always, missing, never or newer"
                )))
            }
        })
    }
}

/// The level of isolation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces and cgroups on the host's kernel.
    #[default]
    Container,
    /// A VM of its own, with its own kernel; corral's agent runs the container inside.
    Vm,
}

/// What a mount is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum MountSource {
    /// A host path (absolute).
    Bind {
        /// The host path.
        source: PathBuf,
    },
    /// A named volume (made on first use), or an anonymous one (`name: None`), which is made
    /// for the container and removed with it by `rm -v` or `--rm`.
    Volume {
        /// The volume's name.
        name: Option<String>,
        /// Do not copy the image's files at the target into a new volume.
        nocopy: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Options as mount(8) takes them: `size=10m,mode=1777,uid=1,gid=1,noexec`.
        options: String,
    },
}

/// One mount in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// What is mounted.
    #[serde(flatten)]
    pub source: MountSource,
    /// Where, inside the container (absolute).
    pub target: String,
    /// Read-only.
    pub readonly: bool,
}

/// cgroup limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPUs (fractions allowed), as a quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// Relative CPU weight (docker's shares).
    pub cpu_shares: Option<u64>,
    /// Allowed CPUs (`0-1`, `0,2`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed ("0", "0-1").
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks (-1: unlimited).
    pub pids_limit: Option<i64>,
    /// CFS period in microseconds (`--cpu-period`, with `cpu_quota`).
    pub cpu_period: Option<u64>,
    /// CFS quota in microseconds per period (`--cpu-quota`; -1 unlimited).
    pub cpu_quota: Option<i64>,
    /// The OOM killer's preference (`--oom-score-adj`, -1000 to 1000).
    pub oom_score_adj: Option<i32>,
    /// Size of `/dev/shm` in bytes.
    pub shm_size: Option<u64>,
    /// Memory plus swap in bytes, -1 unlimited (`--memory-swap`).
    pub memory_swap: Option<i64>,
    /// Soft memory limit in bytes (`--memory-reservation`).
    pub memory_reservation: Option<u64>,
    /// Swappiness, 0 to 100 (`--memory-swappiness`).
    pub memory_swappiness: Option<u64>,
    /// Pause rather than OOM-kill at the limit (`--oom-kill-disable`).
    pub oom_kill_disable: bool,
    /// Block I/O weight, 10 to 1000 (`--blkio-weight`).
    pub blkio_weight: Option<u16>,
    /// Per-device throttles: `--device-read-bps`, `--device-write-bps`,
    /// `--device-read-iops`, `--device-write-iops`, each `(device path, rate)`.
    pub device_throttles: DeviceThrottles,
}

/// Per-device block I/O limits, each a device node's path and a rate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceThrottles {
    /// Bytes read per second.
    pub read_bps: Vec<(PathBuf, u64)>,
    /// Bytes written per second.
    pub write_bps: Vec<(PathBuf, u64)>,
    /// Reads per second.
    pub read_iops: Vec<(PathBuf, u64)>,
    /// Writes per second.
    pub write_iops: Vec<(PathBuf, u64)>,
}

/// Which system call filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// corral's default allow-list.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile in docker's JSON format.
    Profile(PathBuf),
}

/// Privileges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Capabilities to add (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`).
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    pub cap_drop: Vec<String>,
    /// docker's `--privileged`.
    pub privileged: bool,
    /// Set no_new_privs.
    pub no_new_privileges: bool,
    /// The system call filter.
    pub seccomp: Seccomp,
    /// Host devices: `HOSTPATH[:PATH][:PERMS]`.
    pub devices: Vec<String>,
    /// Device cgroup rules: `c 1:3 rwm`.
    pub device_cgroup_rules: Vec<String>,
    /// User namespace: `host`, `auto`, `auto:size=N`.
    pub userns: Option<String>,
    /// uid map lines `C:H:N`.
    pub uidmap: Vec<String>,
    /// gid map lines `C:H:N`.
    pub gidmap: Vec<String>,
    /// Paths to hide beyond docker's defaults (`--security-opt mask=/a:/b`).
    pub mask: Vec<String>,
    /// Default masked or read-only paths to leave visible (`--security-opt unmask=ALL|/a:/b`).
    pub unmask: Vec<String>,
    /// `--ipc host` and `--uts host`: the host's IPC or UTS namespace ("ipc", "uts").
    pub host_namespaces: Vec<String>,
    /// `--network/--ipc/--pid container:X`: another container's namespace, as (kind, name or
    /// id), kind one of `net`, `ipc`, `pid`.
    pub shared_namespaces: Vec<(String, String)>,
}

/// The container's place on networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Networking {
    /// Networks by name, `none` or `host`; empty: the default network.
    pub networks: Vec<String>,
    /// More DNS names on each network.
    pub aliases: Vec<String>,
    /// Published ports, docker's form: `[IP:][HOSTPORT:]PORT[/tcp|udp]`.
    pub publish: Vec<String>,
    /// Publish every port the image exposes on free host ports.
    pub publish_all: bool,
    /// More ports to count as exposed (`--expose`), for `publish_all`.
    pub expose: Vec<String>,
    /// A fixed address on the first network (`--ip`).
    pub ip: Option<std::net::Ipv4Addr>,
    /// A fixed MAC address on the first network (`--mac-address`, `aa:bb:cc:dd:ee:ff`).
    pub mac: Option<String>,
    /// Share the published host ports with the other containers of this group: connections
    /// to a port are spread over the group's containers that serve (compose's replicas of one
    /// service; see `corral_net::Endpoint::port_group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_group: Option<String>,
}

/// A container to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The name; generated when `None`.
    pub name: Option<String>,
    /// The image reference.
    pub image: String,
    /// When to pull it.
    pub pull: PullPolicy,
    /// Replaces the image's entrypoint (`Some(vec![])` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's cmd.
    pub command: Vec<String>,
    /// `K=V` pairs, after the image's.
    pub env: Vec<String>,
    /// The working directory.
    pub workdir: Option<String>,
    /// `USER[:GROUP]`, names or numbers, resolved in the image's `/etc/passwd` and
    /// `/etc/group`; `None`: the image's `USER`.
    pub user: Option<String>,
    /// More groups, names or numbers.
    pub group_add: Vec<String>,
    /// The hostname; the short id when `None`.
    pub hostname: Option<String>,
    /// Keep stdin open.
    pub interactive: bool,
    /// Give the process a terminal.
    pub tty: bool,
    /// Mounts, in order.
    pub mounts: Vec<Mount>,
    /// A read-only root filesystem.
    pub read_only: bool,
    /// cgroup limits.
    pub resources: Resources,
    /// Privileges.
    pub security: Security,
    /// Resource limits, docker's form `nofile=1024:2048`.
    pub ulimits: Vec<String>,
    /// Networks, aliases, published ports.
    pub networking: Networking,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Restart policy: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub restart: String,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    /// The signal `stop` sends first; `None`: the image's `STOPSIGNAL`, else SIGTERM.
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL; `None`: 10.
    pub stop_timeout: Option<u64>,
    /// The keys that detach an attached terminal (`--detach-keys`, parsed); `None`: ctrl-p
    /// ctrl-q.
    pub detach_keys: Option<Vec<u8>>,
    /// `--log-driver`: json-file (default), none, journald.
    pub log_driver: Option<String>,
    /// `--log-opt KEY=VALUE`: max-size, max-file (json-file), tag (journald).
    pub log_opts: Vec<String>,
    /// Run a small init as PID 1 that passes signals on and reaps orphans (docker's `--init`).
    pub init: bool,
    /// Container or VM.
    pub isolation: Isolation,
    /// The health check flags (over the image's `HEALTHCHECK`).
    pub healthcheck: crate::health::HealthSpec,
    /// Kernel parameters of the container's namespaces (`net.*`, `kernel.shm*`, `kernel.msg*`,
    /// `kernel.sem`, `fs.mqueue.*`, `kernel.domainname`).
    pub sysctls: BTreeMap<String, String>,
    /// More `/etc/hosts` lines, docker's `NAME:IP` (`host-gateway`: the network's gateway).
    pub extra_hosts: Vec<String>,
    /// DNS servers instead of the network's.
    pub dns: Vec<String>,
    /// DNS search domains.
    pub dns_search: Vec<String>,
    /// resolv.conf options (`ndots:2`).
    pub dns_options: Vec<String>,
    /// The pod to join (name or id): its network, IPC and UTS namespaces.
    pub pod: Option<String>,
    /// Leave the image's `VOLUME`s unmounted (a build step's container: its writes there
    /// belong in the step's layer, as with BuildKit).
    pub no_image_volumes: bool,
    /// Start without the container's DNS names on its networks, until
    /// `Engine::publish_names` (a replica that takes traffic only once healthy).
    pub dns_hold: bool,
}

impl Mount {
    /// Parses docker's `-v` form: `SRC:DST[:OPTS]` or `DST` alone (an anonymous volume).
    /// SRC is an absolute or relative (`./x`, `../x`, `~/x`) host path, or a volume name.
    /// OPTS: `ro`, `rw`, `z`, `Z`, `nocopy`, comma-separated; `z`/`Z` relabel for SELinux,
    /// which this host does not run, so they are accepted and do nothing, as on docker
    /// without SELinux.
    pub fn parse_volume(v: &str, cwd: &std::path::Path) -> Result<Mount, EngineError> {
        let bad = |why: &str| {
            EngineError::invalid(format!(
                "-v {v:?}: {why} (the form is HOSTDIR:DST[:ro], VOLUME:DST[:ro] or DST)"
            ))
        };
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [d] => (None, *d, ""),
            [s, d] => (Some(*s), *d, ""),
            [s, d, o] => (Some(*s), *d, *o),
            _ => return Err(bad("too many ':'")),
        };
        if !dst.starts_with('/') {
            return Err(bad("the destination must be an absolute path"));
        }
        let (mut readonly, mut nocopy) = (false, false);
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => readonly = true,
                "rw" => readonly = false,
                "z" | "Z" => {}
                "nocopy" => nocopy = true,
                other => {
                    return Err(bad(&format!(
                        "unknown option {other:?}: use ro, rw, z, Z or nocopy"
                    )))
                }
            }
        }
        let source = match src {
            None => MountSource::Volume { name: None, nocopy },
            Some(s) if s.starts_with('/') => MountSource::Bind { source: s.into() },
            Some(s) if s.starts_with("./") || s.starts_with("../") || s == "." || s == ".." => {
                MountSource::Bind {
                    source: cwd.join(s),
                }
            }
            Some(s) if s == "~" || s.starts_with("~/") => {
                let home = std::env::var_os("HOME").ok_or_else(|| bad("$HOME is not set"))?;
                MountSource::Bind {
                    source: PathBuf::from(home)
                        .join(s.trim_start_matches('~').trim_start_matches('/')),
                }
            }
            Some(s) => {
                if !corral_container::volumes::valid_name(s) {
                    return Err(bad(&format!("{s:?} is neither a host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")));
                }
                MountSource::Volume {
                    name: Some(s.to_owned()),
                    nocopy,
                }
            }
        };
        if nocopy && matches!(source, MountSource::Bind { .. }) {
            return Err(bad("nocopy is for volumes, not host paths"));
        }
        Ok(Mount {
            source,
            target: dst.to_owned(),
            readonly,
        })
    }

    /// Parses docker's `--tmpfs DST[:OPTS]`: `/run:size=10m,mode=1777,noexec`.
    pub fn parse_tmpfs(t: &str) -> Result<Mount, EngineError> {
        let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
        if !dst.starts_with('/') {
            return Err(EngineError::invalid(format!(
                "--tmpfs {t:?}: the destination must be an absolute path"
            )));
        }
        let options = normalize_tmpfs_options(opts)
            .map_err(|why| EngineError::invalid(format!("--tmpfs {t:?}: {why}")))?;
        Ok(Mount {
            source: MountSource::Tmpfs { options },
            target: dst.to_owned(),
            readonly: false,
        })
    }

    /// Parses docker's long form `--mount type=bind|volume|tmpfs,source=..,target=..,readonly`.
    pub fn parse_mount_flag(m: &str, cwd: &std::path::Path) -> Result<Mount, EngineError> {
        let bad = |why: String| {
            EngineError::invalid(format!(
                "--mount {m:?}: {why} (the form is type=bind|volume|tmpfs,source=SRC,target=DST[,readonly])"
            ))
        };
        let (mut kind, mut src, mut dst) = ("volume".to_owned(), None::<String>, None::<String>);
        let (mut readonly, mut nocopy) = (false, false);
        let mut tmpfs_opts = Vec::new();
        for kv in m.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "type" => kind = v.to_owned(),
                "source" | "src" => src = Some(v.to_owned()),
                "target" | "destination" | "dst" => dst = Some(v.to_owned()),
                "readonly" | "ro" => {
                    readonly = match v {
                        "" | "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad(format!("readonly={v:?}: give true or false"))),
                    }
                }
                "volume-nocopy" => nocopy = v != "false",
                "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
                "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
                "bind-propagation" | "consistency" | "z" | "Z" | "relabel" => {}
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
        let dst = dst.ok_or_else(|| bad("no target".into()))?;
        if !dst.starts_with('/') {
            return Err(bad("the target must be an absolute path".into()));
        }
        let source = match kind.as_str() {
            "bind" => {
                let s = src.ok_or_else(|| bad("a bind mount needs source=".into()))?;
                let p = PathBuf::from(&s);
                MountSource::Bind {
                    source: if p.is_absolute() { p } else { cwd.join(p) },
                }
            }
            "volume" => {
                if let Some(s) = &src {
                    if !corral_container::volumes::valid_name(s) {
                        return Err(bad(format!("{s:?} is not a volume name")));
                    }
                }
                MountSource::Volume { name: src, nocopy }
            }
            "tmpfs" => {
                if src.is_some() {
                    return Err(bad("a tmpfs has no source".into()));
                }
                MountSource::Tmpfs {
                    options: normalize_tmpfs_options(&tmpfs_opts.join(",")).map_err(bad)?,
                }
            }
            other => return Err(bad(format!("type={other:?}: give bind, volume or tmpfs"))),
        };
        Ok(Mount {
            source,
            target: dst,
            readonly,
        })
    }
}

/// Checks tmpfs options and turns docker's sizes (`10m`) into the kernel's (`10485760`).
fn normalize_tmpfs_options(opts: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        match k {
            "size" => {
                let b = corral_container::config::parse_size(v)
                    .ok_or_else(|| format!("size={v:?}: give a size such as 64m"))?;
                out.push(format!("size={b}"));
            }
            "mode" => {
                u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("mode={v:?}: give octal permissions such as 1777"))?;
                out.push(format!("mode={v}"));
            }
            "uid" | "gid" | "nr_inodes" | "nr_blocks" => {
                v.parse::<u64>()
                    .map_err(|_| format!("{k}={v:?}: give a number"))?;
                out.push(o.to_owned());
            }
            "noexec" | "exec" | "nosuid" | "suid" | "nodev" | "dev" | "ro" | "rw" | "noatime"
            | "atime" | "nodiratime" | "relatime" | "strictatime" | "tmpcopyup"
            | "notmpcopyup" => out.push(o.to_owned()),
            other => {
                return Err(format!(
                    "unknown option {other:?}: use size, mode, uid, gid, nr_inodes, noexec, nosuid, nodev, ro"
                ))
            }
        }
    }
    Ok(out.join(","))
}

/// Parses docker's `--label K=V` (a `K` alone has an empty value) into `labels`.
pub fn parse_labels<'a>(
    labels: &mut BTreeMap<String, String>,
    given: impl IntoIterator<Item = &'a str>,
) -> Result<(), EngineError> {
    for l in given {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            return Err(EngineError::invalid(format!(
                "--label {l:?}: the key is empty (the form is KEY=VALUE)"
            )));
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn volume_flags_parse_like_docker() {
        let cwd = Path::new("/home/u/app");
        let m = Mount::parse_volume("/data", cwd).unwrap();
        assert_eq!(
            m.source,
            MountSource::Volume {
                name: None,
                nocopy: false
            }
        );
        let m = Mount::parse_volume("./src:/app:ro,z", cwd).unwrap();
        assert_eq!(
            m.source,
            MountSource::Bind {
                source: "/home/u/app/./src".into()
            }
        );
        assert!(m.readonly);
        let m = Mount::parse_volume("cache:/c:nocopy", cwd).unwrap();
        assert_eq!(
            m.source,
            MountSource::Volume {
                name: Some("cache".into()),
                nocopy: true
            }
        );
        assert!(Mount::parse_volume("x:relative", cwd).is_err());
        assert!(Mount::parse_volume("/a:/b:bogus", cwd).is_err());
        assert!(Mount::parse_volume("bad name:/b", cwd).is_err());
    }

    #[test]
    fn tmpfs_options_are_checked_and_sizes_converted() {
        let m = Mount::parse_tmpfs("/run:size=10m,mode=1777,noexec").unwrap();
        assert_eq!(m.target, "/run");
        assert_eq!(
            m.source,
            MountSource::Tmpfs {
                options: "size=10485760,mode=1777,noexec".into()
            }
        );
        assert!(Mount::parse_tmpfs("/run:size=lots").is_err());
        assert!(Mount::parse_tmpfs("/run:mode=999").is_err());
        assert!(Mount::parse_tmpfs("run").is_err());
        assert!(Mount::parse_tmpfs("/run:frobnicate").is_err());
    }

    #[test]
    fn long_mount_form_parses() {
        let cwd = Path::new("/w");
        let m = Mount::parse_mount_flag("type=bind,source=d,target=/d,readonly", cwd).unwrap();
        assert_eq!(
            m.source,
            MountSource::Bind {
                source: "/w/d".into()
            }
        );
        assert!(m.readonly);
        let m = Mount::parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=1m", cwd).unwrap();
        assert_eq!(
            m.source,
            MountSource::Tmpfs {
                options: "size=1048576".into()
            }
        );
        assert!(Mount::parse_mount_flag("type=nfs,target=/t", cwd).is_err());
        assert!(Mount::parse_mount_flag("type=bind,target=/t", cwd).is_err());
    }
}
