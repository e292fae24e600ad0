//! The OCI runtime spec (a bundle's `config.json`), read into corral's own
//! [`ContainerConfig`]: what podman (through conmon) and containerd hand a runtime.
//!
//! Only the fields corral acts on are read; unknown fields are ignored, as runc does. The
//! bundle is trusted no more than any input: paths are taken as given but every mount point
//! is resolved inside the root filesystem (see [`crate::rootfs`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{
    Bind, CapSets, ContainerConfig, DeviceNode, NetworkMode, Resources, Rlimit, RlimitName,
};
pub use crate::oci_resources::parse_resources;
use crate::oci_resources::{device_rules, resources_of, LinuxResources};

/// Errors reading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The file cannot be read.
    #[error("reading {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The JSON does not parse.
    #[error("parsing {0}")]
    Parse(PathBuf, #[source] serde_json::Error),
    /// Something corral does not support.
    #[error("unsupported in {path}: {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// The `process` cannot be run as given.
    #[error("invalid process in {path}")]
    Process {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        err: ProcessError,
    },
}

/// Why a spec's `process` cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// An rlimit type Linux does not have (runc refuses it too).
    #[error("unknown rlimit type {0:?}: the types are RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_DATA, RLIMIT_STACK, RLIMIT_CORE, RLIMIT_RSS, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_MEMLOCK, RLIMIT_AS, RLIMIT_LOCKS, RLIMIT_SIGPENDING, RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_RTPRIO, RLIMIT_RTTIME")]
    UnknownRlimit(String),
    /// The same rlimit type twice.
    #[error("rlimit type {0} given twice")]
    DuplicateRlimit(String),
    /// Capability sets the kernel refuses (with the warnings about the sets, which explain
    /// an unknown name that left a set empty).
    #[error("process.capabilities{}", if warnings.is_empty() { String::new() } else { format!(" (warning: {warnings})") })]
    Capabilities {
        /// Why.
        #[source]
        err: crate::capabilities::CapSetError,
        /// The warnings so far.
        warnings: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Spec {
    #[serde(rename = "ociVersion")]
    oci_version: Option<String>,
    process: Process,
    hooks: Option<crate::hooks::Hooks>,
    annotations: std::collections::BTreeMap<String, String>,
    domainname: Option<String>,
    root: Root,
    hostname: Option<String>,
    mounts: Vec<Mount>,
    linux: Linux,
}

/// A process description (also the `--process` file of `exec`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Process {
    /// Allocate a terminal.
    pub terminal: bool,
    /// User.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capabilities.
    pub capabilities: Option<Capabilities>,
    /// Resource limits.
    pub rlimits: Vec<OciRlimit>,
    /// no_new_privs.
    #[serde(rename = "noNewPrivileges")]
    pub no_new_privileges: bool,
    /// OOM score adjustment.
    #[serde(rename = "oomScoreAdj")]
    pub oom_score_adj: Option<i32>,
    /// Scheduling policy.
    pub scheduler: Option<OciScheduler>,
    /// I/O priority.
    #[serde(rename = "ioPriority")]
    pub io_priority: Option<OciIoPriority>,
    /// AppArmor profile.
    #[serde(rename = "apparmorProfile")]
    pub apparmor_profile: Option<String>,
    /// SELinux label.
    #[serde(rename = "selinuxLabel")]
    pub selinux_label: Option<String>,
}

/// `process.scheduler`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct OciScheduler {
    /// `SCHED_OTHER` ...
    pub policy: String,
    /// Nice value.
    pub nice: i32,
    /// Static priority.
    pub priority: u32,
    /// `SCHED_FLAG_*` names.
    pub flags: Vec<String>,
    /// DEADLINE runtime (ns).
    pub runtime: u64,
    /// DEADLINE deadline (ns).
    pub deadline: u64,
    /// DEADLINE period (ns).
    pub period: u64,
}

/// `process.ioPriority`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct OciIoPriority {
    /// `IOPRIO_CLASS_RT`, `_BE`, `_IDLE`.
    pub class: String,
    /// 0 (highest) to 7.
    pub priority: u32,
}

/// A process's user.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct User {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(rename = "additionalGids")]
    pub additional_gids: Vec<u32>,
    /// The process's umask.
    pub umask: Option<u32>,
}

/// Capability sets, all five applied as runc applies them (see [`crate::capabilities`]).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// One rlimit.
#[derive(Debug, Clone, Deserialize)]
pub struct OciRlimit {
    /// `RLIMIT_NOFILE` ...
    #[serde(rename = "type")]
    pub typ: String,
    /// Soft.
    pub soft: u64,
    /// Hard.
    pub hard: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Root {
    path: PathBuf,
    readonly: bool,
}

/// A mount of the spec.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Mount {
    /// Where, inside the container.
    pub destination: String,
    /// Filesystem type (`bind` or absent with a bind option: a bind mount).
    #[serde(rename = "type")]
    pub typ: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// mount(8) options.
    pub options: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Linux {
    namespaces: Vec<Namespace>,
    resources: Option<LinuxResources>,
    #[serde(rename = "cgroupsPath")]
    cgroups_path: Option<String>,
    #[serde(rename = "maskedPaths")]
    masked_paths: Option<Vec<String>>,
    #[serde(rename = "readonlyPaths")]
    readonly_paths: Option<Vec<String>>,
    seccomp: Option<serde_json::Value>,
    #[serde(rename = "uidMappings")]
    uid_mappings: Vec<OciIdMap>,
    #[serde(rename = "gidMappings")]
    gid_mappings: Vec<OciIdMap>,
    devices: Vec<OciDevice>,
    #[serde(rename = "rootfsPropagation")]
    rootfs_propagation: Option<String>,
    sysctl: std::collections::BTreeMap<String, String>,
    personality: Option<Personality>,
    #[serde(rename = "timeOffsets")]
    time_offsets: Option<std::collections::BTreeMap<String, TimeOffset>>,
    #[serde(rename = "mountLabel")]
    mount_label: Option<String>,
    #[serde(rename = "memoryPolicy")]
    memory_policy: Option<MemoryPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MemoryPolicy {
    mode: Option<String>,
    nodes: String,
    flags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Personality {
    domain: String,
    flags: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default)]
struct TimeOffset {
    secs: i64,
    nanosecs: u32,
}

/// A device node of `linux.devices`.
#[derive(Debug, Clone, Deserialize)]
struct OciDevice {
    path: String,
    #[serde(rename = "type")]
    typ: String,
    #[serde(default)]
    major: u32,
    #[serde(default)]
    minor: u32,
    #[serde(rename = "fileMode")]
    file_mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// One line of `uidMappings`/`gidMappings`.
#[derive(Debug, Clone, Copy, Deserialize)]
struct OciIdMap {
    #[serde(rename = "containerID")]
    container_id: u32,
    #[serde(rename = "hostID")]
    host_id: u32,
    size: u32,
}

impl From<OciIdMap> for crate::userns::IdMap {
    fn from(m: OciIdMap) -> Self {
        crate::userns::IdMap {
            container_id: m.container_id,
            host_id: m.host_id,
            size: m.size,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Namespace {
    #[serde(rename = "type")]
    typ: String,
    path: Option<PathBuf>,
}

/// What a bundle asks of the runtime beyond the [`ContainerConfig`].
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The plan.
    pub config: ContainerConfig,
    /// The cgroup path the caller chose (relative to each hierarchy), if any.
    pub cgroups_path: Option<String>,
    /// What the bundle asks that is ignored, for the caller to print (runc's warnings).
    pub warnings: Vec<String>,
}

/// Applies a spec `process` to a config; returns warnings about what is ignored (capabilities
/// this kernel does not have, ambient capabilities that cannot be raised).
pub fn apply_process(cfg: &mut ContainerConfig, p: &Process) -> Result<Vec<String>, ProcessError> {
    let mut warnings = Vec::new();
    cfg.args = p.args.clone();
    cfg.env = p.env.clone();
    cfg.cwd = if p.cwd.is_empty() {
        "/".into()
    } else {
        p.cwd.clone()
    };
    cfg.uid = p.user.uid;
    cfg.gid = p.user.gid;
    cfg.additional_gids = p.user.additional_gids.clone();
    cfg.umask = p.user.umask;
    if let Some(c) = &p.capabilities {
        let supported = crate::capabilities::supported();
        let mut unknown = Vec::new();
        let mut known = |names: &[String]| {
            let (ok, bad) = crate::capabilities::known(names, &supported);
            unknown.extend(bad);
            ok
        };
        cfg.capabilities = known(&c.bounding);
        let mut sets = CapSets {
            effective: known(&c.effective),
            permitted: known(&c.permitted),
            inheritable: known(&c.inheritable),
            ambient: known(&c.ambient),
        };
        if !unknown.is_empty() {
            unknown.sort();
            unknown.dedup();
            // runc's words and brackets: tools match on them.
            warnings.push(format!(
                "ignoring unknown or unavailable capabilities: [{}]",
                unknown.join(" ")
            ));
        }
        match crate::capabilities::check_sets(&cfg.capabilities, &mut sets) {
            Ok(w) => warnings.extend(w),
            Err(e) => {
                return Err(ProcessError::Capabilities {
                    err: e,
                    warnings: warnings.join("; "),
                })
            }
        }
        cfg.cap_sets = Some(sets);
    }
    cfg.rlimits = Vec::with_capacity(p.rlimits.len());
    for r in &p.rlimits {
        let name = RlimitName::from_oci(&r.typ)
            .ok_or_else(|| ProcessError::UnknownRlimit(r.typ.clone()))?;
        if cfg.rlimits.iter().any(|l| l.name == name) {
            return Err(ProcessError::DuplicateRlimit(r.typ.clone()));
        }
        cfg.rlimits.push(Rlimit {
            name,
            soft: r.soft,
            hard: r.hard,
            lower_to_caller: false,
        });
    }
    cfg.no_new_privileges = p.no_new_privileges;
    cfg.oom_score_adj = p.oom_score_adj;
    Ok(warnings)
}

/// Reads a spec `process` file (`exec --process`).
pub fn read_process(path: &Path) -> Result<Process, OciError> {
    let b = std::fs::read(path).map_err(|e| OciError::Read(path.into(), e))?;
    serde_json::from_slice(&b).map_err(|e| OciError::Parse(path.into(), e))
}

/// The process attributes of a spec (see [`crate::process::attrs`]), checked against what
/// this host can do.
fn process_attrs(
    spec: &Spec,
    cfg: &ContainerConfig,
) -> Result<crate::process::attrs::ProcessAttrs, String> {
    use crate::process::attrs::{self as a, ProcessAttrs, Scheduler};
    let p = &spec.process;
    let mut out = ProcessAttrs::default();
    if let Some(s) = &p.scheduler {
        let policy = a::sched_policy(&s.policy).ok_or_else(|| {
            format!(
                "process.scheduler.policy {:?}: use SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE or SCHED_DEADLINE",
                s.policy
            )
        })?;
        let mut flags = 0;
        for f in &s.flags {
            flags |= a::sched_flag(f)
                .ok_or_else(|| format!("process.scheduler.flags: unknown flag {f:?}"))?;
        }
        if !(-20..=19).contains(&s.nice) {
            return Err(format!("process.scheduler.nice {}: -20 to 19", s.nice));
        }
        out.scheduler = Some(Scheduler {
            policy,
            nice: s.nice,
            priority: s.priority,
            flags,
            runtime: s.runtime,
            deadline: s.deadline,
            period: s.period,
        });
    }
    if let Some(io) = &p.io_priority {
        let class = a::ioprio_class(&io.class).ok_or_else(|| {
            format!(
                "process.ioPriority.class {:?}: use IOPRIO_CLASS_RT, IOPRIO_CLASS_BE or IOPRIO_CLASS_IDLE",
                io.class
            )
        })?;
        if io.priority > 7 {
            return Err(format!(
                "process.ioPriority.priority {}: 0 to 7",
                io.priority
            ));
        }
        out.io_priority = Some(class << 13 | io.priority);
    }
    if let Some(pers) = &spec.linux.personality {
        let base: u64 = match pers.domain.as_str() {
            "LINUX" => 0,
            "LINUX32" => 0x0008,
            d => {
                return Err(format!(
                    "linux.personality.domain {d:?}: use LINUX or LINUX32"
                ))
            }
        };
        if let Some(f) = pers.flags.first() {
            return Err(format!(
                "linux.personality.flags: {f:?} is not supported (runc supports none either)"
            ));
        }
        out.personality = Some(base);
    }
    if let Some(profile) = p.apparmor_profile.as_deref().filter(|s| !s.is_empty()) {
        if !a::apparmor_enabled() {
            return Err(format!(
                "process.apparmorProfile {profile:?}: this host does not run AppArmor; remove the profile"
            ));
        }
        out.apparmor_profile = Some(profile.to_owned());
    }
    if let Some(label) = p.selinux_label.as_deref().filter(|s| !s.is_empty()) {
        if !a::selinux_enabled() {
            return Err(format!(
                "process.selinuxLabel {label:?}: this host does not run SELinux; remove the label"
            ));
        }
        out.selinux_label = Some(label.to_owned());
    }
    if let Some(label) = spec.linux.mount_label.as_deref().filter(|s| !s.is_empty()) {
        return Err(format!(
            "linux.mountLabel {label:?}: {}",
            if a::selinux_enabled() {
                "mount labels are not supported yet"
            } else {
                "this host does not run SELinux; remove the label"
            }
        ));
    }
    if let Some(d) = spec.domainname.as_deref().filter(|s| !s.is_empty()) {
        if cfg.host_namespaces.iter().any(|n| n == "uts") {
            return Err(
                "a domainname without a uts namespace would change the host's: add {\"type\": \"uts\"} to linux.namespaces"
                    .into(),
            );
        }
        out.domainname = Some(d.to_owned());
    }
    if let Some(mp) = &spec.linux.memory_policy {
        let name = mp
            .mode
            .as_deref()
            .ok_or("linux.memoryPolicy: mode is missing (MPOL_DEFAULT, MPOL_BIND, MPOL_INTERLEAVE, MPOL_PREFERRED ...)")?;
        let mut mode = a::mempolicy_mode(name).ok_or_else(|| {
            format!("linux.memoryPolicy.mode {name:?} is not a memory policy (MPOL_BIND ...)")
        })?;
        for f in &mp.flags {
            mode |= a::mempolicy_flag(f)
                .ok_or_else(|| format!("linux.memoryPolicy.flags: unknown flag {f:?}"))?;
        }
        let mask = a::node_mask(&mp.nodes).map_err(|e| format!("linux.memoryPolicy.nodes: {e}"))?;
        out.memory_policy = Some((mode, mask));
    }
    let time_ns = spec
        .linux
        .namespaces
        .iter()
        .any(|n| n.typ == "time" && n.path.is_none());
    match (&spec.linux.time_offsets, time_ns) {
        (Some(o), true) => {
            for k in o.keys() {
                if k != "monotonic" && k != "boottime" {
                    return Err(format!(
                        "linux.timeOffsets: unknown clock {k:?} (monotonic, boottime)"
                    ));
                }
            }
            let get = |k: &str| o.get(k).map_or((0, 0), |t| (t.secs, t.nanosecs));
            if o.values().any(|t| t.nanosecs >= 1_000_000_000) {
                return Err("linux.timeOffsets: nanosecs must be below 1000000000".into());
            }
            out.time_offsets = Some([get("monotonic"), get("boottime")]);
        }
        (None, true) => out.time_offsets = Some([(0, 0), (0, 0)]),
        (Some(_), false) => {
            return Err(
                "linux.timeOffsets without a new time namespace: add {\"type\": \"time\"} to linux.namespaces"
                    .into(),
            )
        }
        (None, false) => {}
    }
    Ok(out)
}

/// Fields of the runtime spec this runtime does not implement: refused when set, so that a
/// bundle never runs without what it asked for.
fn refuse_unsupported(raw: &[u8]) -> Result<(), String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return Ok(());
    };
    let set = |ptr: &str| {
        v.pointer(ptr).is_some_and(|x| match x {
            serde_json::Value::Null => false,
            serde_json::Value::Object(m) => !m.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::String(s) => !s.is_empty(),
            _ => true,
        })
    };
    for (ptr, what) in [
        (
            "/linux/netDevices",
            "moving host network devices into the container",
        ),
        ("/linux/intelRdt", "Intel RDT (resctrl)"),
        ("/process/execCPUAffinity", "CPU affinity at exec"),
        ("/linux/resources/rdma", "the rdma cgroup"),
        (
            "/linux/resources/unified",
            "raw cgroup v2 files (resources.unified)",
        ),
        (
            "/linux/resources/memory/checkBeforeUpdate",
            "memory checkBeforeUpdate",
        ),
    ] {
        if set(ptr) {
            return Err(format!(
                "{}: {what} is not supported by corral-runtime; remove it",
                ptr.trim_start_matches('/').replace('/', ".")
            ));
        }
    }
    Ok(())
}

/// Refuses an `ociVersion` that is not a semantic version of the spec's major version 1. One
/// that is absent is taken as the current version (bundles written by hand often lack it).
fn check_version(v: Option<&str>) -> Result<(), String> {
    let Some(v) = v else { return Ok(()) };
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        return Err(format!(
            "ociVersion {v:?} is not a version (MAJOR.MINOR.PATCH, as \"1.0.2\")"
        ));
    }
    if parts[0] != "1" {
        return Err(format!(
            "ociVersion {v:?}: this runtime implements version 1 of the runtime spec"
        ));
    }
    Ok(())
}

/// Reads `BUNDLE/config.json`.
pub fn read_bundle(bundle: &Path) -> Result<Bundle, OciError> {
    let path = bundle.join("config.json");
    let b = std::fs::read(&path).map_err(|e| OciError::Read(path.clone(), e))?;
    let spec: Spec = serde_json::from_slice(&b).map_err(|e| OciError::Parse(path.clone(), e))?;
    let unsupported = |what: &str| OciError::Unsupported {
        path: path.clone(),
        what: what.to_owned(),
    };
    check_version(spec.oci_version.as_deref()).map_err(|w| unsupported(&w))?;
    let bundle = std::fs::canonicalize(bundle).map_err(|e| OciError::Read(bundle.into(), e))?;
    let root = if spec.root.path.is_absolute() {
        spec.root.path.clone()
    } else {
        bundle.join(&spec.root.path)
    };
    let mut cfg = ContainerConfig::defaults(Vec::new(), Vec::new());
    let warnings = apply_process(&mut cfg, &spec.process).map_err(|err| OciError::Process {
        path: path.clone(),
        err,
    })?;
    if spec.process.capabilities.is_none() {
        // No capabilities asked: none given (runc's reading), not corral's defaults.
        cfg.capabilities = Vec::new();
        cfg.cap_sets = Some(CapSets::default());
    }
    refuse_unsupported(&b).map_err(|w| unsupported(&w))?;
    cfg.rootfs = Some(root);
    cfg.read_only = spec.root.readonly;
    cfg.hostname = spec.hostname.clone().unwrap_or_default();
    cfg.mounts = Some(spec.mounts.clone());
    cfg.binds = Vec::<Bind>::new();
    cfg.network = NetworkMode::Host;
    // A namespace type the spec does not list is the caller's, inherited (runtime spec).
    let mut seen: Vec<&str> = Vec::new();
    for ns in &spec.linux.namespaces {
        if ![
            "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
        ]
        .contains(&ns.typ.as_str())
        {
            return Err(unsupported(&format!(
                "linux.namespaces: unknown type {:?} (the types are pid, network, mount, ipc, uts, user, cgroup, time)",
                ns.typ
            )));
        }
        if seen.contains(&ns.typ.as_str()) {
            return Err(unsupported(&format!(
                "linux.namespaces: type {:?} given twice",
                ns.typ
            )));
        }
        seen.push(&ns.typ);
    }
    for typ in ["pid", "mount", "ipc", "uts", "cgroup"] {
        if !seen.contains(&typ) {
            cfg.host_namespaces.push(typ.to_owned());
        }
    }
    if !seen.contains(&"uts") && spec.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
        return Err(unsupported(
            "a hostname without a uts namespace would rename the host: add {\"type\": \"uts\"} to linux.namespaces or remove hostname",
        ));
    }
    for ns in &spec.linux.namespaces {
        match (ns.typ.as_str(), &ns.path) {
            ("network", None) => cfg.network = NetworkMode::None,
            ("network", Some(p)) => {
                cfg.network = NetworkMode::Host;
                cfg.join_namespaces.push(("net".into(), p.clone()));
            }
            ("user", None) => {
                if spec.linux.uid_mappings.is_empty() || spec.linux.gid_mappings.is_empty() {
                    return Err(unsupported(
                        "a user namespace without uidMappings and gidMappings",
                    ));
                }
                cfg.uid_map = spec.linux.uid_mappings.iter().map(|&m| m.into()).collect();
                cfg.gid_map = spec.linux.gid_mappings.iter().map(|&m| m.into()).collect();
            }
            (t, Some(p)) => cfg.join_namespaces.push((t.to_owned(), p.clone())),
            _ => {}
        }
    }
    for (k, v) in &spec.linux.sysctl {
        let owned = match crate::config::sysctl_namespace(k) {
            Some("net") => {
                cfg.network == NetworkMode::None
                    || cfg.join_namespaces.iter().any(|(t, _)| t == "net")
            }
            Some(ns) => !cfg.host_namespaces.iter().any(|h| h == ns),
            None => false,
        };
        if !owned || k.contains('/') || k.contains("..") {
            return Err(unsupported(&format!(
                "linux.sysctl {k}: not in a namespace the container owns; setting it would change the host"
            )));
        }
        cfg.sysctls.insert(k.clone(), v.clone());
    }
    cfg.masked_paths = spec.linux.masked_paths.clone().unwrap_or_default();
    cfg.readonly_paths = spec.linux.readonly_paths.clone().unwrap_or_default();
    let mut warnings = warnings;
    cfg.resources = match &spec.linux.resources {
        Some(r) => {
            let (res, w) = resources_of(r).map_err(|w| unsupported(&w))?;
            warnings.extend(w);
            res
        }
        None => Resources::default(),
    };
    // Whatever the bundle says, the devices cgroup is set: to the bundle's rules and docker's
    // defaults.
    if cfg.resources.devices.is_none() {
        cfg.resources.devices = Some(device_rules(&[]).map_err(|w| unsupported(&w))?);
    }
    cfg.devices = spec
        .linux
        .devices
        .iter()
        .map(|d| {
            let kind = match d.typ.as_str() {
                "c" | "u" => 'c',
                "b" => 'b',
                "p" => 'p',
                t => {
                    return Err(unsupported(&format!(
                        "linux.devices {}: type {t:?}",
                        d.path
                    )))
                }
            };
            if !d.path.starts_with("/dev/") || d.path.split('/').any(|c| c == "..") {
                return Err(unsupported(&format!(
                    "linux.devices {}: a device must be under /dev",
                    d.path
                )));
            }
            Ok(DeviceNode {
                path: d.path.clone(),
                kind,
                major: d.major,
                minor: d.minor,
                mode: d.file_mode.unwrap_or(0o666) & 0o7777,
                uid: d.uid.unwrap_or(0),
                gid: d.gid.unwrap_or(0),
            })
        })
        .collect::<Result<_, _>>()?;
    cfg.seccomp = match &spec.linux.seccomp {
        None => None,
        Some(v) => Some(
            crate::seccomp::SeccompProfile::from_json(v.to_string().as_bytes())
                .map_err(|e| unsupported(&format!("linux.seccomp: {e}")))?,
        ),
    };
    cfg.die_with_parent = false;
    cfg.tty = spec.process.terminal;
    cfg.attrs = process_attrs(&spec, &cfg).map_err(|w| unsupported(&w))?;
    cfg.rootfs_propagation = match spec.linux.rootfs_propagation.as_deref() {
        None | Some("") => None,
        Some(p) => Some(crate::config::Propagation::parse(p).ok_or_else(|| {
            unsupported(&format!(
                "linux.rootfsPropagation {p:?}: use shared, slave, private or unbindable"
            ))
        })?),
    };
    if let Some(hooks) = spec.hooks.clone().filter(|h| !h.is_empty()) {
        hooks.check().map_err(|w| unsupported(&w))?;
        cfg.hooks = Some(hooks);
    }
    cfg.identity = Some(crate::hooks::Identity {
        id: String::new(),
        bundle: bundle.clone(),
        annotations: spec.annotations.clone(),
    });
    Ok(Bundle {
        config: cfg,
        cgroups_path: spec.linux.cgroups_path.clone().filter(|p| !p.is_empty()),
        warnings,
    })
}
