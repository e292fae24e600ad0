//! What a container is to run, decided before it starts: the runtime's own plan, written to
//! `config.json` in the container's state directory and read by the monitor and the init.
//!
//! The CLI builds it from an image config and docker-style flags ([`ContainerConfig::defaults`]
//! holds podman's hardening defaults); the OCI runtime mode will build it from a bundle's
//! `config.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// podman's default capabilities (containers.conf `default_capabilities`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// docker's masked paths: hidden behind /dev/null or an empty read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A bind mount from the host (or a named volume's directory).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bind {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: String,
    /// Read-only.
    pub readonly: bool,
    /// In a container with a user namespace, shift the ids of this mount too (an idmapped
    /// mount): corral's named volumes are; host directories are not unless asked (`:idmap`).
    #[serde(default)]
    pub idmap: bool,
}

/// Where a container's output goes (`--log-driver`): see [`crate::process::logsink`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// docker's json lines in `ctr.log`.
    #[default]
    JsonFile,
    /// Nothing kept.
    None,
    /// The systemd journal.
    Journald,
}

/// `--log-driver` and `--log-opt`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogConfig {
    /// The driver.
    #[serde(default)]
    pub driver: LogDriver,
    /// json-file: rotate at this size.
    #[serde(default)]
    pub max_size: Option<u64>,
    /// json-file: files kept in all (default 1).
    #[serde(default)]
    pub max_file: Option<u32>,
    /// journald: `CONTAINER_TAG` and `SYSLOG_IDENTIFIER` (default: the short id).
    #[serde(default)]
    pub tag: Option<String>,
}

/// Where `run --init`'s init is bound in the container (a file on its own `/dev` tmpfs, so
/// that the image's tree and a read-only root are not touched).
pub const INIT_PATH: &str = "/dev/init";

/// cgroup limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU quota in microseconds per `cpu_period`.
    pub cpu_quota: Option<i64>,
    /// CPU period in microseconds.
    pub cpu_period: Option<u64>,
    /// Relative CPU weight (docker's shares, 2..262144).
    pub cpu_shares: Option<u64>,
    /// Allowed CPUs ("0-1", "0,2").
    pub cpuset_cpus: Option<String>,
    /// Allowed memory nodes ("0", "0-1").
    #[serde(default)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks.
    pub pids_limit: Option<i64>,
    /// The device policy, in order (the last rule that matches an access decides); `None`
    /// leaves devices alone (a VM's QEMU, an `update` that does not mention them).
    #[serde(default)]
    pub devices: Option<Vec<DeviceRule>>,
    /// Memory the kernel tries to leave the container under pressure (v1 soft limit, v2
    /// `memory.low`): docker's `--memory-reservation`.
    #[serde(default)]
    pub memory_reservation: Option<u64>,
    /// Memory plus swap in bytes, -1 for unlimited swap: docker's `--memory-swap`. Unset with a
    /// memory limit: no swap.
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// How readily the kernel swaps the container's pages, 0 to 100 (v1 only).
    #[serde(default)]
    pub memory_swappiness: Option<u64>,
    /// Pause instead of OOM-killing at the limit (v1 only): docker's `--oom-kill-disable`.
    #[serde(default)]
    pub oom_kill_disable: bool,
    /// Block I/O weights and throttles.
    #[serde(default)]
    pub blkio: Option<Blkio>,
    /// Huge page limits: page size (`2MB`, `1GB`) and bytes.
    #[serde(default)]
    pub hugetlb: Vec<(String, u64)>,
    /// The class id of the container's packets (v1 `net_cls`).
    #[serde(default)]
    pub net_cls_classid: Option<u32>,
    /// Per-interface priorities of the container's packets (v1 `net_prio`).
    #[serde(default)]
    pub net_prio: Vec<(String, u32)>,
}

/// Block I/O limits (OCI's `linux.resources.blockIO`; docker's `--blkio-weight`,
/// `--device-read-bps` ...). A device is `major:minor`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Blkio {
    /// Relative weight, 10 to 1000.
    pub weight: Option<u16>,
    /// The weight against the cgroup's children (CFQ only).
    pub leaf_weight: Option<u16>,
    /// Weights of single devices: major, minor, weight.
    pub weight_device: Vec<(u32, u32, u16)>,
    /// Read bytes per second: major, minor, rate.
    pub read_bps: Vec<(u32, u32, u64)>,
    /// Write bytes per second.
    pub write_bps: Vec<(u32, u32, u64)>,
    /// Read operations per second.
    pub read_iops: Vec<(u32, u32, u64)>,
    /// Write operations per second.
    pub write_iops: Vec<(u32, u32, u64)>,
}

/// One rule of the devices cgroup, as OCI's `linux.resources.devices[]` and docker's
/// `--device-cgroup-rule` write it (`c 1:3 rwm`, `b *:* m`, `a`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRule {
    /// Allow (or deny) what matches.
    pub allow: bool,
    /// `a` (every device), `c` (character) or `b` (block).
    pub kind: char,
    /// The major number; `None` for any.
    pub major: Option<u32>,
    /// The minor number; `None` for any.
    pub minor: Option<u32>,
    /// What it covers: a subset of `rwm` (read, write, mknod).
    pub access: String,
}

/// docker's default device rules after the deny-all: mknod of any device, and the nodes a
/// container's `/dev` holds.
const ALLOWED_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:1 rwm",   // console
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pts
];

/// Every device denied, then docker's defaults allowed: what a container gets before its own
/// rules (`--device`, `--device-cgroup-rule`) are appended.
pub fn default_device_rules() -> Vec<DeviceRule> {
    let mut rules = vec![DeviceRule {
        allow: false,
        kind: 'a',
        major: None,
        minor: None,
        access: "rwm".into(),
    }];
    rules.extend(allowed_devices());
    rules
}

/// docker's defaults alone, as allow rules (what runc appends to a bundle's own rules).
pub fn allowed_devices() -> impl Iterator<Item = DeviceRule> {
    ALLOWED_DEVICES
        .iter()
        .map(|r| DeviceRule::parse(r, true).expect("valid built-in rule"))
}

impl DeviceRule {
    /// Parses `TYPE [MAJOR:MINOR [ACCESS]]` (`c 1:3 rwm`, `c 136:* rw`, `a`); a missing part
    /// is a wildcard, a missing access is `rwm`.
    pub fn parse(s: &str, allow: bool) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("device rule {s:?}: {why} (the form is \"c|b|a MAJOR:MINOR rwm\", e.g. \"c 1:3 rw\"; * for any number)")
        };
        let mut parts = s.split_whitespace();
        let kind = match parts.next() {
            Some("a") => 'a',
            Some("c") => 'c',
            Some("b") => 'b',
            _ => return Err(bad("the type must be a, c or b")),
        };
        let (mut major, mut minor) = (None, None);
        if let Some(nums) = parts.next() {
            let (ma, mi) = nums.split_once(':').ok_or_else(|| bad("no MAJOR:MINOR"))?;
            let num = |n: &str| -> Result<Option<u32>, String> {
                match n {
                    "*" => Ok(None),
                    n => n
                        .parse::<u32>()
                        .ok()
                        .filter(|&v| v < 1 << 20)
                        .map(Some)
                        .ok_or_else(|| bad("a device number must be * or below 1048576")),
                }
            };
            major = num(ma)?;
            minor = num(mi)?;
        }
        let access = parts.next().unwrap_or("rwm").to_owned();
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(bad("the access must be made of r, w and m"));
        }
        if parts.next().is_some() {
            return Err(bad("too many fields"));
        }
        Ok(DeviceRule {
            allow,
            kind,
            major,
            minor,
            access,
        })
    }

    /// The rule as v1 `devices.allow`/`devices.deny` lines: `a` alone resets the controller,
    /// so a rule on every type with numbers or some access only is written once per type.
    pub fn v1_lines(&self) -> Vec<String> {
        let n = |v: Option<u32>| v.map_or("*".to_owned(), |v| v.to_string());
        let line =
            |kind: char| format!("{kind} {}:{} {}", n(self.major), n(self.minor), self.access);
        match self.kind {
            'a' if self.major.is_none()
                && self.minor.is_none()
                && "rwm".chars().all(|c| self.access.contains(c)) =>
            {
                vec!["a".into()]
            }
            'a' => vec![line('c'), line('b')],
            k => vec![line(k)],
        }
    }
}

impl DeviceNode {
    /// The host's device node `host` (a character or block device), to be made at `path` in
    /// the container with the host's mode and owner.
    pub fn from_host(host: &std::path::Path, path: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::metadata(host)?;
        let kind = if md.file_type().is_char_device() {
            'c'
        } else if md.file_type().is_block_device() {
            'b'
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a device node", host.display()),
            ));
        };
        let rdev = md.rdev();
        Ok(DeviceNode {
            path: path.to_owned(),
            kind,
            major: libc::major(rdev),
            minor: libc::minor(rdev),
            mode: md.mode() & 0o777,
            uid: md.uid(),
            gid: md.gid(),
        })
    }

    /// The rule that lets the container use this node with `access` (a subset of `rwm`).
    pub fn rule(&self, access: &str) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: if self.kind == 'b' { 'b' } else { 'c' },
            major: Some(self.major),
            minor: Some(self.minor),
            access: access.to_owned(),
        }
    }
}

/// The host's device nodes under `/dev` that a `--privileged` container gets (docker's and
/// podman's behaviour), less those corral makes itself and the per-mount ones (`pts`, `shm`,
/// `mqueue`).
pub fn host_devices() -> Vec<DeviceNode> {
    const OWN: &[&str] = &[
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    fn walk(dir: &std::path::Path, rel: &str, depth: u32, out: &mut Vec<DeviceNode>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{rel}/{name}");
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < 3 && !matches!(rel.as_str(), "/dev/pts" | "/dev/shm" | "/dev/mqueue") {
                    walk(&e.path(), &rel, depth + 1, out);
                }
            } else if !(depth == 0 && OWN.contains(&name.as_str())) {
                if let Ok(d) = DeviceNode::from_host(&e.path(), &rel) {
                    out.push(d);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new("/dev"), "/dev", 0, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A device node made in the container's `/dev` (`--device`, a bundle's `linux.devices`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceNode {
    /// Its path inside the container.
    pub path: String,
    /// `c` (character), `b` (block), or `p` (a FIFO).
    pub kind: char,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Network mode (other networks arrive with corral-net).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace the caller made and connected (corral-net's networks), handed to
    /// the monitor as a descriptor.
    Networks,
}

fn yes() -> bool {
    true
}

/// docker's restart policies.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// When it exits non-zero, at most `max` times (0: no limit).
    OnFailure {
        /// Most restarts; 0 for no limit.
        max: u32,
    },
    /// Whatever the exit code, unless stopped by `stop` or `kill`.
    Always,
}

impl RestartPolicy {
    /// Parses `no`, `on-failure[:N]`, `always` (and `unless-stopped`, the same here: corral has
    /// no daemon to restart containers at boot).
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once(':') {
            None => match s {
                "no" => Some(RestartPolicy::No),
                "on-failure" => Some(RestartPolicy::OnFailure { max: 0 }),
                "always" | "unless-stopped" => Some(RestartPolicy::Always),
                _ => None,
            },
            Some(("on-failure", n)) => n.parse().ok().map(|max| RestartPolicy::OnFailure { max }),
            _ => None,
        }
    }

    /// Whether to start again after exit `code`, having restarted `count` times.
    pub fn wants_restart(self, code: i32, count: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && (max == 0 || count < max),
            RestartPolicy::Always => true,
        }
    }
}

/// One resource limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rlimit {
    /// RLIMIT_* name without the prefix, lowercase ("nofile").
    pub name: RlimitName,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
    /// Lowered to the caller's hard limit rather than refused when above it: corral's own
    /// defaults and docker's `--ulimit` are, as documented; a bundle's limits are not (runc
    /// fails as `setrlimit` does, and so does corral).
    #[serde(default = "yes")]
    pub lower_to_caller: bool,
}

/// The 16 resource limits of Linux (`include/uapi/asm-generic/resource.h`), by docker's
/// `--ulimit` names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum RlimitName {
    Cpu,
    Fsize,
    Data,
    Stack,
    Core,
    Rss,
    Nproc,
    Nofile,
    Memlock,
    As,
    Locks,
    Sigpending,
    Msgqueue,
    Nice,
    Rtprio,
    Rttime,
}

impl RlimitName {
    /// Every limit, in the kernel's order.
    pub const ALL: [RlimitName; 16] = [
        RlimitName::Cpu,
        RlimitName::Fsize,
        RlimitName::Data,
        RlimitName::Stack,
        RlimitName::Core,
        RlimitName::Rss,
        RlimitName::Nproc,
        RlimitName::Nofile,
        RlimitName::Memlock,
        RlimitName::As,
        RlimitName::Locks,
        RlimitName::Sigpending,
        RlimitName::Msgqueue,
        RlimitName::Nice,
        RlimitName::Rtprio,
        RlimitName::Rttime,
    ];

    /// docker's name (`nofile`, `as`).
    pub fn docker_name(self) -> &'static str {
        match self {
            RlimitName::Cpu => "cpu",
            RlimitName::Fsize => "fsize",
            RlimitName::Data => "data",
            RlimitName::Stack => "stack",
            RlimitName::Core => "core",
            RlimitName::Rss => "rss",
            RlimitName::Nproc => "nproc",
            RlimitName::Nofile => "nofile",
            RlimitName::Memlock => "memlock",
            RlimitName::As => "as",
            RlimitName::Locks => "locks",
            RlimitName::Sigpending => "sigpending",
            RlimitName::Msgqueue => "msgqueue",
            RlimitName::Nice => "nice",
            RlimitName::Rtprio => "rtprio",
            RlimitName::Rttime => "rttime",
        }
    }

    /// From docker's name, in any case.
    pub fn from_docker(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|r| r.docker_name() == name)
    }

    /// The OCI spec's name (`RLIMIT_NOFILE`).
    pub fn oci_name(self) -> String {
        format!("RLIMIT_{}", self.docker_name().to_ascii_uppercase())
    }

    /// From the OCI spec's name (`RLIMIT_AS`), which is exact: runc takes no other spelling.
    pub fn from_oci(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.oci_name() == name)
    }
}

/// The capability sets of the process besides the bounding set
/// ([`ContainerConfig::capabilities`]), as an OCI bundle gives them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CapSets {
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// Everything the init needs to set up and exec the container's process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Overlay lower directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    /// The process: argv.
    pub args: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory (created if missing, as docker does).
    pub cwd: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Hostname.
    pub hostname: String,
    /// Capabilities kept (names like `CAP_CHOWN`): the bounding set.
    pub capabilities: Vec<String>,
    /// The other capability sets; `None` (docker's flags, configs written before the sets
    /// existed): effective and permitted are the bounding set, inheritable and ambient empty.
    #[serde(default)]
    pub cap_sets: Option<CapSets>,
    /// Set no_new_privs before exec.
    pub no_new_privileges: bool,
    /// Root filesystem read-only.
    pub read_only: bool,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// tmpfs mounts: `DEST` or `DEST:OPTIONS` (`size=1048576,mode=1777,noexec`).
    pub tmpfs: Vec<String>,
    /// Keep stdin open.
    pub interactive: bool,
    /// cgroup limits.
    pub resources: Resources,
    /// Network mode.
    pub network: NetworkMode,
    /// A root filesystem directory (an OCI bundle's), instead of an overlay of `layers`.
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    /// The mounts to make, as an OCI bundle lists them; `None`: corral's own default set.
    #[serde(default)]
    pub mounts: Option<Vec<crate::oci::Mount>>,
    /// Existing namespaces to join (`net`, `ipc`, ... and a path), as a bundle asks.
    #[serde(default)]
    pub join_namespaces: Vec<(String, PathBuf)>,
    /// Kill the process when its parent (the monitor) dies. Off under conmon or containerd's
    /// shim, which are the parents there only after the runtime exits.
    #[serde(default = "yes")]
    pub die_with_parent: bool,
    /// Supplementary groups.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    /// /proc/self/oom_score_adj for the process.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// Give the process a terminal (`-t`, `process.terminal`).
    #[serde(default)]
    pub tty: bool,
    /// What the monitor does when the process exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// Descriptors 3 to 3 + N - 1 the process keeps (the runtime's `--preserve-fds N`); every
    /// other descriptor above stderr is closed on exec.
    #[serde(default)]
    pub preserve_fds: u32,
    /// Those of the preserved descriptors the caller did not pass (held by the runtime with
    /// placeholders, closed at exec).
    #[serde(default)]
    pub preserve_holes: Vec<i32>,
    /// Paths to mask.
    pub masked_paths: Vec<String>,
    /// Paths to make read-only.
    pub readonly_paths: Vec<String>,
    /// The seccomp profile; `None` is `seccomp=unconfined` (and what configs written before
    /// seccomp existed read as).
    #[serde(default)]
    pub seccomp: Option<crate::seccomp::SeccompProfile>,
    /// `--privileged`: `/sys` is mounted read-write (the capabilities and the masked and
    /// read-only paths are decided by whoever builds the config).
    #[serde(default)]
    pub privileged: bool,
    /// uid map of the container's user namespace; empty: the host's user namespace.
    #[serde(default)]
    pub uid_map: Vec<crate::userns::IdMap>,
    /// gid map of the container's user namespace (given whenever `uid_map` is).
    #[serde(default)]
    pub gid_map: Vec<crate::userns::IdMap>,
    /// Device nodes to make in `/dev` beyond the standard ones.
    #[serde(default)]
    pub devices: Vec<DeviceNode>,
    /// Kernel parameters of the container's own namespaces (`net.ipv4.ip_forward` = `1`),
    /// written under its `/proc/sys` before that is made read-only. Whoever builds the config
    /// checks that each belongs to a namespace the container owns.
    #[serde(default)]
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// Size of `/dev/shm` in bytes (docker's `--shm-size`; default 64 MiB).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// Namespaces kept from the host instead of made new: `ipc`, `uts` (`--ipc host`,
    /// `--uts host`; the hostname is then the host's and is never set).
    #[serde(default)]
    pub host_namespaces: Vec<String>,
    /// An OCI bundle's lifecycle hooks (see [`crate::hooks`]).
    #[serde(default)]
    pub hooks: Option<crate::hooks::Hooks>,
    /// A static init program (`run --init`: corral-guest's container init), bound read-only
    /// at [`INIT_PATH`] and run as PID 1 with `--container-init -- ARGS...`; `args` stay the
    /// workload's own.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Where the output goes.
    #[serde(default)]
    pub log: LogConfig,
    /// The propagation of the container's `/` (`linux.rootfsPropagation`); `None`: private.
    #[serde(default)]
    pub rootfs_propagation: Option<Propagation>,
    /// The process's umask; `None`: 0022, as runc sets.
    #[serde(default)]
    pub umask: Option<u32>,
    /// An OCI container's id, bundle and annotations, for the programs told its state.
    #[serde(default)]
    pub identity: Option<crate::hooks::Identity>,
    /// Scheduling, I/O priority, personality, LSM label, domain name, time namespace.
    #[serde(default)]
    pub attrs: crate::process::attrs::ProcessAttrs,
    /// The keys that detach the user's terminal from an attached `run -it` (see
    /// [`crate::tty::parse_detach_keys`]); `None`: ctrl-p ctrl-q; empty: none.
    #[serde(default)]
    pub detach_keys: Option<Vec<u8>>,
}

/// A mount's propagation type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// Events go both ways with its peers.
    Shared,
    /// Events come from its master only.
    Slave,
    /// No events either way.
    Private,
    /// Private, and cannot be bind mounted.
    Unbindable,
}

impl Propagation {
    /// From the spec's name (`shared`, `rslave` ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.strip_prefix('r').unwrap_or(s) {
            "shared" => Propagation::Shared,
            "slave" => Propagation::Slave,
            "private" => Propagation::Private,
            "unbindable" => Propagation::Unbindable,
            _ => return None,
        })
    }

    /// The mount(2) flags.
    pub fn flags(self) -> rustix::mount::MountPropagationFlags {
        use rustix::mount::MountPropagationFlags as F;
        match self {
            Propagation::Shared => F::SHARED,
            Propagation::Slave => F::DOWNSTREAM,
            Propagation::Private => F::PRIVATE,
            Propagation::Unbindable => F::UNBINDABLE,
        }
    }
}

impl ContainerConfig {
    /// A config with podman's hardening defaults around `layers` and `args`.
    pub fn defaults(layers: Vec<PathBuf>, args: Vec<String>) -> Self {
        ContainerConfig {
            layers,
            args,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            hostname: String::new(),
            capabilities: DEFAULT_CAPS.iter().map(|s| s.to_string()).collect(),
            cap_sets: None,
            no_new_privileges: false,
            read_only: false,
            binds: Vec::new(),
            tmpfs: Vec::new(),
            interactive: false,
            resources: Resources {
                devices: Some(default_device_rules()),
                ..Resources::default()
            },
            network: NetworkMode::None,
            restart: RestartPolicy::No,
            tty: false,
            rootfs: None,
            mounts: None,
            join_namespaces: Vec::new(),
            die_with_parent: true,
            additional_gids: Vec::new(),
            oom_score_adj: None,
            rlimits: vec![Rlimit {
                name: RlimitName::Nofile,
                soft: 1048576,
                hard: 1048576,
                lower_to_caller: true,
            }],
            masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
            seccomp: Some(crate::seccomp::default_profile()),
            privileged: false,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            devices: Vec::new(),
            sysctls: std::collections::BTreeMap::new(),
            shm_size: None,
            host_namespaces: Vec::new(),
            preserve_fds: 0,
            preserve_holes: Vec::new(),
            hooks: None,
            init: None,
            log: LogConfig::default(),
            rootfs_propagation: None,
            umask: None,
            identity: None,
            attrs: Default::default(),
            detach_keys: None,
        }
    }
}

/// The namespace a kernel parameter belongs to (`net`, `ipc` or `uts`), or `None` when it is
/// the host's: a container may set only those of namespaces it owns (runc's and docker's
/// rule).
pub fn sysctl_namespace(key: &str) -> Option<&'static str> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.starts_with("net.") {
        Some("net")
    } else if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some("ipc")
    } else if key == "kernel.domainname" || key == "kernel.hostname" {
        Some("uts")
    } else {
        None
    }
}

/// Parses a size as docker does: bytes, or with a suffix b, k, m, g (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mul) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.parse().ok()?;
    if !(v.is_finite() && v > 0.0) {
        return None;
    }
    Some((v * mul as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_and_decide() {
        assert_eq!(
            RestartPolicy::parse("on-failure:3"),
            Some(RestartPolicy::OnFailure { max: 3 })
        );
        assert_eq!(RestartPolicy::parse("sometimes"), None);
        let p = RestartPolicy::OnFailure { max: 2 };
        assert!(p.wants_restart(1, 1));
        assert!(!p.wants_restart(1, 2));
        assert!(!p.wants_restart(0, 0));
        assert!(RestartPolicy::Always.wants_restart(0, 100));
        assert!(!RestartPolicy::No.wants_restart(1, 0));
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("bogus"), None);
        assert_eq!(parse_size("-1m"), None);
    }
}
