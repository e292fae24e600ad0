//! A spec and an image's config to the runtime's plan ([`ContainerConfig`]): docker's rules
//! for how the two combine (entrypoint and cmd, environment, working dir, user, exposed ports,
//! volumes, stop signal), and every check that can fail before anything exists.

use std::path::{Path, PathBuf};

use corral_container::config::{Bind, ContainerConfig, DeviceNode, DeviceRule};
use corral_container::userns::IdMap;
use corral_container::{capabilities, rlimits};
use corral_net::Attachment;

use crate::containers::chain;
use crate::record::Record;
use crate::spec::{ContainerSpec, MountSource, Seccomp};
use crate::{EngineError, Result};

/// What the engine makes for a container, decided before anything exists.
#[derive(Debug)]
pub struct Plan {
    /// The runtime's plan.
    pub config: ContainerConfig,
    /// The image's id.
    pub image_id: String,
    /// How many of `config.args` are the entrypoint.
    pub entrypoint_len: usize,
    /// The corral networks to join (empty for `none`/`host`).
    pub attachments: Vec<Attachment>,
    /// The engine's record.
    pub record: Record,
    /// Named volumes to make on first use (`-v NAME:/x`), and the anonymous ones' targets.
    pub volumes: Vec<VolumeUse>,
    /// `--userns=auto[:size=N]`.
    pub userns_auto: Option<u32>,
}

/// A volume the plan mounts: made before the container is created.
#[derive(Debug, Clone)]
pub struct VolumeUse {
    /// The name; `None` for an anonymous volume (named when made).
    pub name: Option<String>,
    /// Index into `config.binds` whose source is the volume's mount point.
    pub bind: usize,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::invalid(msg)
}

/// Builds the plan of `spec` over `image` (resolved in `store`).
pub fn plan(
    engine: &crate::Engine,
    store: &corral_image::Store,
    img: &corral_image::Image,
    spec: &ContainerSpec,
) -> Result<Plan> {
    let mut layers = Vec::new();
    for d in img.diff_ids()? {
        if !store.has_layer(&d) {
            return Err(invalid(format!(
                "layer {d} of {} is not unpacked: pull or load the image again",
                spec.image
            )));
        }
        layers.push(store.layer_path(&d));
    }
    let icfg = img.config.config().clone().unwrap_or_default();
    let entrypoint: Vec<String> = match &spec.entrypoint {
        Some(e) => e.clone(),
        None => icfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !spec.command.is_empty() {
        spec.command.clone()
    } else if spec.entrypoint.is_some() {
        Vec::new()
    } else {
        icfg.cmd().clone().unwrap_or_default()
    };
    let entrypoint_len = entrypoint.len();
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(invalid(format!("no command: the image {} has neither Entrypoint nor Cmd; give one after the image name", spec.image)));
    }
    let mut cfg = ContainerConfig::defaults(layers, args);
    if let Some(env) = icfg.env() {
        merge_env(&mut cfg.env, env.iter().cloned());
    }
    merge_env(&mut cfg.env, spec.env.iter().cloned());
    if spec.tty && !cfg.env.iter().any(|e| e.starts_with("TERM=")) {
        // docker and podman give a terminal's process a TERM.
        cfg.env.push("TERM=xterm".into());
    }
    if let Some(w) = spec.workdir.clone().or_else(|| icfg.working_dir().clone()) {
        if !w.is_empty() {
            if !w.starts_with('/') {
                return Err(invalid(format!(
                    "working directory {w:?} must be an absolute path"
                )));
            }
            cfg.cwd = w;
        }
    }
    // Users and groups by name, in the image's own /etc/passwd and /etc/group (top layer
    // first).
    let top_first: Vec<PathBuf> = cfg.layers.iter().rev().cloned().collect();
    let mut home = "/root".to_owned();
    if let Some(u) = spec
        .user
        .clone()
        .or_else(|| icfg.user().clone())
        .filter(|u| !u.is_empty())
    {
        let user = crate::users::resolve(&u, &top_first)?;
        cfg.uid = user.uid;
        cfg.gid = user.gid;
        cfg.additional_gids = user.groups;
        home = user.home;
    }
    // docker's HOME: the user's from passwd (root's /root), unless the image or flags set it.
    if !cfg.env.iter().any(|e| e.starts_with("HOME=")) {
        cfg.env.push(format!("HOME={home}"));
    }
    if !spec.group_add.is_empty() {
        let group = crate::users::read_in_layers(&top_first, "etc/group");
        for g in &spec.group_add {
            let id = crate::users::group_id(g, group.as_deref())?;
            if !cfg.additional_gids.contains(&id) {
                cfg.additional_gids.push(id);
            }
        }
    }
    let sec = &spec.security;
    let parse_maps = |flag: &str, list: &[String]| -> Result<Vec<IdMap>> {
        list.iter()
            .map(|m| IdMap::parse(m).map_err(|e| invalid(format!("--{flag}: {e}"))))
            .collect()
    };
    cfg.uid_map = parse_maps("uidmap", &sec.uidmap)?;
    cfg.gid_map = parse_maps("gidmap", &sec.gidmap)?;
    if cfg.uid_map.is_empty() && !cfg.gid_map.is_empty() {
        return Err(invalid(
            "--gidmap needs --uidmap: give both, or --userns=auto",
        ));
    }
    if cfg.gid_map.is_empty() {
        cfg.gid_map = cfg.uid_map.clone();
    }
    let userns_auto = userns_auto(sec.userns.as_deref())?;
    if userns_auto.is_some() && !cfg.uid_map.is_empty() {
        return Err(invalid(format!(
            "--userns={} and --uidmap conflict: give one",
            sec.userns.as_deref().unwrap_or("")
        )));
    }
    if !cfg.uid_map.is_empty() {
        for (what, map, id) in [
            ("user", &cfg.uid_map, cfg.uid),
            ("group", &cfg.gid_map, cfg.gid),
        ] {
            if corral_container::userns::host_id(map, id).is_none() {
                return Err(invalid(format!("the container's {what} {id} is not mapped by --uidmap/--gidmap: map it, or run as a mapped id with -u")));
            }
        }
    }
    cfg.read_only = spec.read_only;
    cfg.interactive = spec.interactive;
    let mut volumes = Vec::new();
    let mut targets = std::collections::BTreeSet::new();
    for m in &spec.mounts {
        if !targets.insert(m.target.trim_end_matches('/').to_owned()) {
            return Err(invalid(format!(
                "two mounts at {}: give each destination once",
                m.target
            )));
        }
        match &m.source {
            MountSource::Tmpfs { options } => cfg.tmpfs.push(if options.is_empty() {
                m.target.clone()
            } else {
                format!("{}:{options}", m.target)
            }),
            MountSource::Bind { source } => {
                if !source.exists() {
                    return Err(invalid(format!(
                        "bind source {} does not exist: create it first",
                        source.display()
                    )));
                }
                cfg.binds.push(Bind {
                    idmap: false,
                    source: source.clone(),
                    destination: m.target.clone(),
                    readonly: m.readonly,
                });
            }
            MountSource::Volume { name, .. } => {
                volumes.push(VolumeUse {
                    name: name.clone(),
                    bind: cfg.binds.len(),
                });
                cfg.binds.push(Bind {
                    idmap: true,
                    // Filled in when the volume is made.
                    source: PathBuf::new(),
                    destination: m.target.clone(),
                    readonly: m.readonly,
                });
            }
        }
    }
    // The image's VOLUMEs that no mount covers: an anonymous volume each, as docker does.
    if let Some(vols) = icfg.volumes().as_ref().filter(|_| !spec.no_image_volumes) {
        for v in vols {
            let t = v.trim_end_matches('/');
            let t = if t.is_empty() { "/" } else { t };
            if targets.insert(t.to_owned()) {
                volumes.push(VolumeUse {
                    name: None,
                    bind: cfg.binds.len(),
                });
                cfg.binds.push(Bind {
                    idmap: true,
                    source: PathBuf::new(),
                    destination: t.to_owned(),
                    readonly: false,
                });
            }
        }
    }
    let r = &spec.resources;
    if let Some(b) = r.memory {
        if b < 256 << 10 {
            return Err(invalid("the smallest memory limit is 256k"));
        }
        cfg.resources.memory = Some(b);
    }
    if let Some(c) = r.cpus {
        if !(c > 0.0 && c.is_finite()) {
            return Err(invalid(format!("--cpus {c}: must be a positive number")));
        }
        cfg.resources.cpu_quota = Some((c * 100_000.0) as i64);
        cfg.resources.cpu_period = Some(100_000);
    }
    if r.cpu_quota.is_some() || r.cpu_period.is_some() {
        if r.cpus.is_some() {
            return Err(invalid(
                "--cpus conflicts with --cpu-quota/--cpu-period: give one",
            ));
        }
        if let Some(p) = r.cpu_period {
            if !(1000..=1_000_000).contains(&p) {
                return Err(invalid(format!(
                    "--cpu-period {p}: between 1000 and 1000000 microseconds"
                )));
            }
        }
        if let Some(q) = r.cpu_quota {
            if q != -1 && q < 1000 {
                return Err(invalid(format!(
                    "--cpu-quota {q}: at least 1000 microseconds (or -1 for none)"
                )));
            }
        }
        cfg.resources.cpu_quota = r.cpu_quota.filter(|q| *q > 0);
        cfg.resources.cpu_period = r.cpu_period.or(Some(100_000));
    }
    if let Some(adj) = r.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(format!(
                "--oom-score-adj {adj}: between -1000 and 1000"
            )));
        }
        cfg.oom_score_adj = Some(adj);
    }
    if let Some(shm) = r.shm_size {
        if shm < 4096 {
            return Err(invalid("--shm-size: at least 4k"));
        }
        cfg.shm_size = Some(shm);
    }
    cfg.resources.cpu_shares = r.cpu_shares;
    cfg.resources.cpuset_cpus = r.cpuset_cpus.clone();
    cfg.resources.cpuset_mems = r.cpuset_mems.clone();
    cfg.resources.pids_limit = r.pids_limit;
    memory_extras(r, &mut cfg.resources)?;
    let exposed = if spec.networking.publish_all {
        let mut e = icfg.exposed_ports().clone().unwrap_or_default();
        e.extend(spec.networking.expose.iter().cloned());
        e
    } else {
        Vec::new()
    };
    let pod = match &spec.pod {
        Some(p) => Some(engine.resolve_pod(p)?),
        None => None,
    };
    let shared = crate::share::resolve(engine, &sec.shared_namespaces)?;
    let shares_net = shared.iter().any(|(k, _)| k == "net");
    if shares_net {
        crate::share::check_network_conflicts(spec)?;
    }
    for (kind, _) in &shared {
        if sec.host_namespaces.iter().any(|n| n == kind) {
            return Err(invalid(format!(
                "the {kind} namespace cannot be both the host's and another container's"
            )));
        }
    }
    if pod.is_some() && shared.iter().any(|(k, _)| k != "pid") {
        return Err(invalid(
            "--pod: the pod owns the network and IPC namespaces (only --pid container:NAME can be added)",
        ));
    }
    let (mode, attachments) = if shares_net {
        (corral_container::config::NetworkMode::Networks, Vec::new())
    } else if let Some(pod) = &pod {
        let n = &spec.networking;
        if !n.networks.is_empty() || !n.publish.is_empty() || n.publish_all || !n.aliases.is_empty()
        {
            return Err(invalid(format!(
                "--pod {}: the pod owns the network: give --network, -p and --network-alias to `corral pod create`",
                pod.name
            )));
        }
        if spec.hostname.is_some() {
            return Err(invalid(format!(
                "--pod {}: the pod owns the hostname (`corral pod create --hostname`)",
                pod.name
            )));
        }
        (corral_container::config::NetworkMode::Networks, Vec::new())
    } else {
        crate::networks::requested_attachments(engine, &spec.networking, &exposed)?
    };
    cfg.network = mode;
    cfg.no_new_privileges = sec.no_new_privileges;
    cfg.seccomp = match &sec.seccomp {
        Seccomp::Default => cfg.seccomp,
        Seccomp::Unconfined => None,
        Seccomp::Profile(file) => Some(
            corral_container::seccomp::SeccompProfile::load(file).map_err(|e| {
                invalid(format!(
                    "--security-opt seccomp={}: {}",
                    file.display(),
                    chain(&e)
                ))
            })?,
        ),
    };
    cfg.capabilities = capabilities::resolve(
        &cfg.capabilities,
        &sec.cap_add,
        &sec.cap_drop,
        sec.privileged,
        &capabilities::available(),
    )
    .map_err(|e| invalid(chain(&e)))?;
    let rules = cfg.resources.devices.get_or_insert_with(Vec::new);
    for d in &sec.devices {
        let (node, perms) = parse_device(d)?;
        rules.push(node.rule(&perms));
        cfg.devices.push(node);
    }
    for r in &sec.device_cgroup_rules {
        rules.push(
            DeviceRule::parse(r, true)
                .map_err(|e| invalid(format!("--device-cgroup-rule: {e}")))?,
        );
    }
    for m in &sec.mask {
        for p in m.split(':').filter(|p| !p.is_empty()) {
            if !p.starts_with('/') {
                return Err(invalid(format!(
                    "--security-opt mask={m}: paths are absolute"
                )));
            }
            cfg.masked_paths.push(p.to_owned());
        }
    }
    for u in &sec.unmask {
        if u == "ALL" {
            cfg.masked_paths.clear();
            cfg.readonly_paths.clear();
        } else {
            for p in u.split(':') {
                cfg.masked_paths.retain(|x| x != p);
                cfg.readonly_paths.retain(|x| x != p);
            }
        }
    }
    cfg.host_namespaces = sec.host_namespaces.clone();
    if sec.privileged {
        // docker's --privileged: the host's devices, all of them allowed.
        rules.push(DeviceRule::parse("a", true).expect("valid"));
        let own: Vec<String> = cfg.devices.iter().map(|d| d.path.clone()).collect();
        cfg.devices.extend(
            corral_container::config::host_devices()
                .into_iter()
                .filter(|d| !own.contains(&d.path)),
        );
        cfg.privileged = true;
        cfg.masked_paths.clear();
        cfg.readonly_paths.clear();
        if sec.seccomp == Seccomp::Default {
            // docker's --privileged runs unconfined unless a profile is given.
            cfg.seccomp = None;
        }
    }
    if let Some(profile) = &cfg.seccomp {
        // Compiled again by the init; compiling here reports a profile the kernel could not
        // take (too large) before anything is created.
        corral_container::seccomp::compile(profile, &cfg.capabilities)
            .map_err(|e| invalid(format!("--security-opt seccomp: {}", chain(&e))))?;
    }
    for u in &spec.ulimits {
        rlimits::set(
            &mut cfg.rlimits,
            rlimits::parse_ulimit(u).map_err(|e| invalid(chain(&e)))?,
        );
    }
    cfg.tty = spec.tty;
    cfg.detach_keys = spec.detach_keys.clone();
    cfg.log = log_config(spec.log_driver.as_deref(), &spec.log_opts)?;
    if spec.init {
        cfg.init = Some(corral_vm::initramfs::agent_path().map_err(|e| {
            invalid(format!(
                "--init needs corral's static init (corral-guest): {}",
                chain(&e)
            ))
        })?);
    }
    let restart = if spec.restart.is_empty() {
        "no"
    } else {
        &spec.restart
    };
    cfg.restart = corral_container::config::RestartPolicy::parse(restart).ok_or_else(|| {
        invalid(format!(
            "--restart {restart:?}: expected no, on-failure[:N], always or unless-stopped"
        ))
    })?;
    if spec.auto_remove && cfg.restart != corral_container::config::RestartPolicy::No {
        return Err(invalid(format!(
            "--rm and --restart {restart} conflict: a container removed at exit cannot restart"
        )));
    }
    if let Some(s) = &spec.stop_signal {
        corral_container::container_kill::parse_signal(s)
            .map_err(|e| invalid(format!("--stop-signal: {e}")))?;
    }
    cfg.sysctls = sysctls(&spec.sysctls, cfg.network)?;
    let mut extra_hosts = Vec::new();
    for h in &spec.extra_hosts {
        // docker's NAME:IP (an IPv6 address holds colons: split at the first).
        let (name, ip) = h
            .split_once(':')
            .or_else(|| h.split_once('='))
            .ok_or_else(|| invalid(format!("--add-host {h:?}: the form is NAME:IP")))?;
        if name.is_empty() || ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(format!(
                "--add-host {h:?}: the form is NAME:IP (or NAME:host-gateway)"
            )));
        }
        extra_hosts.push((name.to_owned(), ip.to_owned()));
    }
    for d in &spec.dns {
        d.parse::<std::net::IpAddr>()
            .map_err(|_| invalid(format!("--dns {d:?}: give an IP address")))?;
    }
    let dns = !spec.dns.is_empty() || !spec.dns_search.is_empty() || !spec.dns_options.is_empty();
    let networked = cfg.network == corral_container::config::NetworkMode::Networks;
    if dns && !networked {
        // podman's answer too: there is no network to resolve over, or the host's is used.
        return Err(invalid(
            "--dns, --dns-search and --dns-option need a corral network: with --network none or host there is none of corral's to configure",
        ));
    }
    if !networked && extra_hosts.iter().any(|(_, ip)| ip == "host-gateway") {
        return Err(invalid(
            "--add-host NAME:host-gateway needs a corral network (its gateway)",
        ));
    }
    let raw_config = store.read_blob(&img.id).ok();
    let healthcheck = crate::health::resolve(raw_config.as_deref(), &spec.healthcheck)?;
    let mut labels = icfg.labels().clone().unwrap_or_default();
    labels.extend(spec.labels.clone());
    let record = Record {
        labels: labels.into_iter().collect(),
        stop_signal: spec
            .stop_signal
            .clone()
            .or_else(|| icfg.stop_signal().clone()),
        stop_timeout: spec.stop_timeout,
        anonymous_volumes: Vec::new(),
        publish: spec.networking.publish.clone(),
        publish_all: spec.networking.publish_all,
        networks: spec.networking.networks.clone(),
        healthcheck,
        extra_hosts,
        dns: spec.dns.clone(),
        dns_search: spec.dns_search.clone(),
        dns_options: spec.dns_options.clone(),
        pod: pod.as_ref().map(|p| p.id.clone()),
        shared,
    };
    cfg.hostname = match &pod {
        Some(p) => p.hostname.clone(),
        // The host's UTS namespace: its hostname is the host's.
        None if cfg.host_namespaces.iter().any(|n| n == "uts") => {
            if spec.hostname.is_some() {
                return Err(invalid("--hostname conflicts with --uts host"));
            }
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        }
        None => spec.hostname.clone().unwrap_or_default(),
    };
    Ok(Plan {
        config: cfg,
        image_id: img.id.to_string(),
        entrypoint_len,
        attachments,
        record,
        volumes,
        userns_auto,
    })
}

/// docker's `--memory-swap`, `--memory-reservation`, `--memory-swappiness`,
/// `--oom-kill-disable`, `--blkio-weight` and the device throttles, checked as docker checks
/// them (the cgroup refuses what this host cannot do, at create).
fn memory_extras(
    r: &crate::spec::Resources,
    out: &mut corral_container::config::Resources,
) -> Result<()> {
    if let Some(s) = r.memory_swap {
        match r.memory {
            None if s != -1 => {
                return Err(invalid(
                    "--memory-swap needs -m: it is memory plus swap (or -1 for unlimited swap)",
                ))
            }
            Some(m) if s != -1 && s < m as i64 => {
                return Err(invalid(
                    "--memory-swap must be at least -m: it is memory plus swap (or -1 for unlimited swap)",
                ))
            }
            _ => {}
        }
        out.memory_swap = Some(s);
    }
    if let Some(res) = r.memory_reservation {
        if r.memory.is_some_and(|m| res > m) {
            return Err(invalid(
                "--memory-reservation must be below -m: it is a soft limit under the hard one",
            ));
        }
        out.memory_reservation = Some(res);
    }
    if let Some(sw) = r.memory_swappiness {
        if sw > 100 {
            return Err(invalid(format!(
                "--memory-swappiness {sw}: between 0 and 100"
            )));
        }
        out.memory_swappiness = Some(sw);
    }
    if r.oom_kill_disable && r.memory.is_none() {
        // docker warns; a container that could take the host's memory unkillable is worse.
        return Err(invalid(
            "--oom-kill-disable needs -m: without a limit the host's OOM killer could not stop it",
        ));
    }
    out.oom_kill_disable = r.oom_kill_disable;
    let t = &r.device_throttles;
    if r.blkio_weight.is_some()
        || !(t.read_bps.is_empty()
            && t.write_bps.is_empty()
            && t.read_iops.is_empty()
            && t.write_iops.is_empty())
    {
        if let Some(w) = r.blkio_weight {
            if !(10..=1000).contains(&w) {
                return Err(invalid(format!("--blkio-weight {w}: between 10 and 1000")));
            }
        }
        let numbers = |list: &[(PathBuf, u64)], flag: &str| -> Result<Vec<(u32, u32, u64)>> {
            list.iter()
                .map(|(path, rate)| {
                    use std::os::unix::fs::{FileTypeExt, MetadataExt};
                    let md = std::fs::metadata(path)
                        .map_err(|e| invalid(format!("{flag} {}: {e}", path.display())))?;
                    if !md.file_type().is_block_device() {
                        return Err(invalid(format!(
                            "{flag} {}: not a block device",
                            path.display()
                        )));
                    }
                    let dev = md.rdev();
                    Ok((rustix::fs::major(dev), rustix::fs::minor(dev), *rate))
                })
                .collect()
        };
        out.blkio = Some(corral_container::config::Blkio {
            weight: r.blkio_weight,
            read_bps: numbers(&t.read_bps, "--device-read-bps")?,
            write_bps: numbers(&t.write_bps, "--device-write-bps")?,
            read_iops: numbers(&t.read_iops, "--device-read-iops")?,
            write_iops: numbers(&t.write_iops, "--device-write-iops")?,
            ..Default::default()
        });
    }
    Ok(())
}

/// The sysctls namespaced by what the container owns (runc's and docker's rule), checked;
/// `net.ipv4.ping_group_range` opened to every group in a network namespace of its own, as
/// docker and podman do, so that unprivileged ICMP sockets (`ping` without NET_RAW) work.
fn sysctls(
    given: &std::collections::BTreeMap<String, String>,
    network: corral_container::config::NetworkMode,
) -> Result<std::collections::BTreeMap<String, String>> {
    use corral_container::config::NetworkMode;
    let mut out = std::collections::BTreeMap::new();
    if network != NetworkMode::Host {
        out.insert(
            "net.ipv4.ping_group_range".to_owned(),
            "0 2147483647".to_owned(),
        );
    }
    for (k, v) in given {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            || k.contains("..")
        {
            return Err(invalid(format!(
                "--sysctl {k:?}: not a kernel parameter name"
            )));
        }
        // The hostname is --hostname's.
        if corral_container::config::sysctl_namespace(k).is_none() || k == "kernel.hostname" {
            return Err(invalid(format!(
                "--sysctl {k}: not in a namespace the container owns (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, kernel.domainname); it would change the host"
            )));
        }
        if k.starts_with("net.") && network == NetworkMode::Host {
            return Err(invalid(format!(
                "--sysctl {k}: the container shares the host's network namespace (--network host): it would change the host"
            )));
        }
        if !Path::new("/proc/sys").join(k.replace('.', "/")).exists() {
            return Err(invalid(format!(
                "--sysctl {k}: this kernel has no such parameter"
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// `--userns`: `Some(size)` for an automatic range, `None` for the host's namespace.
fn userns_auto(mode: Option<&str>) -> Result<Option<u32>> {
    let Some(mode) = mode else {
        return Ok(None);
    };
    let bad = || {
        invalid(format!(
            "--userns={mode:?}: expected host, auto or auto:size=N (N from 1 to 65536)"
        ))
    };
    match mode {
        "" | "host" => Ok(None),
        "auto" | "private" => Ok(Some(corral_container::userns::AUTO_SIZE)),
        m => {
            let n: u32 = m
                .strip_prefix("auto:size=")
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?;
            if n == 0 || n > corral_container::userns::AUTO_SIZE {
                return Err(bad());
            }
            Ok(Some(n))
        }
    }
}

/// Sets `K=V` pairs, replacing earlier values of the same key.
pub fn merge_env(env: &mut Vec<String>, add: impl Iterator<Item = String>) {
    for kv in add {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
}

/// `--device HOSTPATH[:PATH][:PERMS]`: the node to make and the access to allow.
pub fn parse_device(spec: &str) -> Result<(DeviceNode, String)> {
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, path, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, p] => (*h, *p, "rwm"),
        [h, p, perms] => (*h, *p, *perms),
        _ => return Err(invalid(format!("--device {spec:?}: expected HOSTPATH[:PATH][:PERMS], e.g. /dev/fuse or /dev/sdb:/dev/xvdb:r"))),
    };
    if !is_perms(perms) {
        return Err(invalid(format!(
            "--device {spec:?}: the permissions {perms:?} must be made of r, w and m"
        )));
    }
    let node = DeviceNode::from_host(Path::new(host), path).map_err(|e| {
        invalid(format!(
            "--device {spec:?}: {host} is not a usable host device: {e}"
        ))
    })?;
    if !path.starts_with("/dev/") || path.split('/').any(|c| c == "..") {
        return Err(invalid(format!(
            "--device {spec:?}: the path in the container must be under /dev/"
        )));
    }
    Ok((node, perms.to_owned()))
}

/// `--log-driver` and `--log-opt`, checked as docker checks them.
fn log_config(
    driver: Option<&str>,
    opts: &[String],
) -> Result<corral_container::config::LogConfig> {
    use corral_container::config::{LogConfig, LogDriver};
    let driver = match driver.unwrap_or("json-file") {
        "json-file" | "" => LogDriver::JsonFile,
        "none" => LogDriver::None,
        "journald" => {
            let sock = corral_container::process::logsink::JOURNAL_SOCKET;
            if !Path::new(sock).exists() {
                return Err(invalid(format!(
                    "--log-driver journald: no journal on this host ({sock} does not exist: systemd-journald is not running)"
                )));
            }
            LogDriver::Journald
        }
        other => {
            return Err(invalid(format!(
                "--log-driver {other}: corral logs with json-file (the default), none or journald"
            )))
        }
    };
    let mut cfg = LogConfig {
        driver,
        ..Default::default()
    };
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| invalid(format!("--log-opt {o:?}: the form is KEY=VALUE")))?;
        match (driver, k) {
            (LogDriver::JsonFile, "max-size") => {
                let size = corral_container::config::parse_size(v)
                    .filter(|&s| s > 0)
                    .ok_or_else(|| {
                        invalid(format!(
                            "--log-opt max-size={v}: expected a size such as 10m"
                        ))
                    })?;
                cfg.max_size = Some(size);
            }
            (LogDriver::JsonFile, "max-file") => {
                let n = v.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    invalid(format!(
                        "--log-opt max-file={v}: expected a number, at least 1"
                    ))
                })?;
                cfg.max_file = Some(n);
            }
            (LogDriver::Journald, "tag") => cfg.tag = Some(v.to_owned()),
            (_, k) => {
                let known = match driver {
                    LogDriver::JsonFile => "max-size, max-file",
                    LogDriver::Journald => "tag",
                    LogDriver::None => "none",
                };
                return Err(invalid(format!(
                    "--log-opt {k}: not an option of this log driver (it takes {known})"
                )));
            }
        }
    }
    if cfg.max_file.is_some_and(|n| n > 1) && cfg.max_size.is_none() {
        return Err(invalid(
            "--log-opt max-file needs max-size: files are rotated when the log reaches it",
        ));
    }
    Ok(cfg)
}
