//! `run`, `create`, `start`, `ps`, `logs`, `stop`, `kill`, `rm`, `wait`, `inspect`, and the
//! hidden `__monitor` and `__init` entry points of the container's own processes.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corral_container::config::{parse_size, Bind, ContainerConfig, NetworkMode};
use corral_container::container_create::{self, CreateRequest};
use corral_container::container_start::{self, Attach, StartError};
use corral_container::userns::IdMap;
use corral_container::{capabilities, rlimits};
use corral_container::{
    container_delete, container_kill, container_pause, container_stats, Containers, Status,
};
use corral_net::Attachment;
use serde_json::json;

use crate::cli::RunArgs;
use crate::exit::{Code, CORRAL_FAILURE};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn containers(root: &Path) -> Result<Containers> {
    Containers::open(root.join("containers"))
        .with_context(|| format!("opening the container store under {}", root.display()))
}

fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("finding the corral binary")
}

/// `corral __monitor CONTAINERS_DIR ID NOTIFY_FD CGROUP_ROOT [--attach]`.
pub fn monitor(args: &[std::ffi::OsString]) -> i32 {
    let root = args
        .first()
        .map(PathBuf::from)
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let release = move |s: &corral_container::State| {
        let _ = super::network::release(&root, &s.id);
    };
    corral_container::process::monitor::main_from_args(args, Some(&release))
}

/// Builds the container's plan from the image config and the flags.
fn plan(root: &Path, a: &RunArgs) -> Result<(ContainerConfig, String, usize, Vec<Attachment>)> {
    let store = corral_image::Store::open(root.join("images"))?;
    let img = store.resolve(&a.image)?;
    let mut layers = Vec::new();
    for d in img.diff_ids()? {
        if !store.has_layer(&d) {
            bail!(
                "layer {d} of {} is not unpacked: pull or load the image again",
                a.image
            );
        }
        layers.push(store.layer_path(&d));
    }
    let icfg = img.config.config().clone().unwrap_or_default();
    let entrypoint: Vec<String> = match &a.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => icfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !a.command.is_empty() {
        a.command.clone()
    } else if a.entrypoint.is_some() {
        Vec::new()
    } else {
        icfg.cmd().clone().unwrap_or_default()
    };
    let entrypoint_len = entrypoint.len();
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        bail!("no command: the image {} has neither Entrypoint nor Cmd; give one after the image name", a.image);
    }
    let mut cfg = ContainerConfig::defaults(layers, args);
    if let Some(env) = icfg.env() {
        merge_env(&mut cfg.env, env.iter().cloned());
    }
    for f in &a.env_file {
        let file =
            std::fs::File::open(f).with_context(|| format!("opening env file {}", f.display()))?;
        let lines: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading env file {}", f.display()))?;
        merge_env(
            &mut cfg.env,
            lines
                .into_iter()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|l| expand_env(&l)),
        );
    }
    merge_env(&mut cfg.env, a.env.iter().map(|e| expand_env(e)));
    if let Some(w) = a.workdir.clone().or_else(|| icfg.working_dir().clone()) {
        if !w.starts_with('/') {
            bail!("working directory {w:?} must be an absolute path");
        }
        cfg.cwd = w;
    }
    if let Some(u) = a
        .user
        .clone()
        .or_else(|| icfg.user().clone())
        .filter(|u| !u.is_empty())
    {
        let (uid, gid) = u
            .split_once(':')
            .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
        cfg.uid = uid.parse().with_context(|| {
            format!("user {u:?}: give a numeric UID[:GID] (names are not resolved yet)")
        })?;
        cfg.gid = match gid {
            Some(g) => g
                .parse()
                .with_context(|| format!("group in {u:?} must be numeric"))?,
            None => cfg.uid,
        };
    }
    let parse_maps = |flag: &str, list: &[String]| -> Result<Vec<IdMap>> {
        list.iter()
            .map(|m| IdMap::parse(m).map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
            .collect()
    };
    cfg.uid_map = parse_maps("uidmap", &a.uidmap)?;
    cfg.gid_map = parse_maps("gidmap", &a.gidmap)?;
    if cfg.uid_map.is_empty() && !cfg.gid_map.is_empty() {
        bail!("--gidmap needs --uidmap: give both, or --userns=auto");
    }
    if cfg.gid_map.is_empty() {
        cfg.gid_map = cfg.uid_map.clone();
    }
    if userns_auto(a)?.is_some() && !cfg.uid_map.is_empty() {
        bail!(
            "--userns={} and --uidmap conflict: give one",
            a.userns.as_deref().unwrap_or("")
        );
    }
    if !cfg.uid_map.is_empty() {
        for (what, map, id) in [
            ("user", &cfg.uid_map, cfg.uid),
            ("group", &cfg.gid_map, cfg.gid),
        ] {
            if corral_container::userns::host_id(map, id).is_none() {
                bail!("the container's {what} {id} is not mapped by --uidmap/--gidmap: map it, or run as a mapped id with -u");
            }
        }
    }
    cfg.read_only = a.read_only;
    cfg.interactive = a.interactive;
    cfg.tmpfs = a.tmpfs.clone();
    for t in &cfg.tmpfs {
        if !t.starts_with('/') {
            bail!("--tmpfs {t:?}: the destination must be an absolute path");
        }
    }
    for v in &a.volume {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => bail!("-v {v:?}: expected HOSTDIR:DST[:ro] or VOLUME:DST[:ro]"),
        };
        if !dst.starts_with('/') {
            bail!("-v {v:?}: the destination must be an absolute path");
        }
        let source = if src.starts_with('/') {
            if !Path::new(src).exists() {
                bail!("-v {v:?}: {src} does not exist");
            }
            PathBuf::from(src)
        } else {
            // A named volume, made on first use as docker does.
            if !corral_container::volumes::valid_name(src) {
                bail!("-v {v:?}: {src:?} is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)");
            }
            let vols = super::volume::volumes(root)?;
            vols.create(src)?;
            vols.mountpoint(src)
        };
        cfg.binds.push(Bind {
            idmap: !src.starts_with('/'),
            source,
            destination: dst.to_owned(),
            readonly: ro,
        });
    }
    if let Some(m) = &a.memory {
        let b = parse_size(m)
            .with_context(|| format!("-m {m:?}: expected a size such as 64m or 1g"))?;
        if b < 256 << 10 {
            bail!("-m {m}: the smallest memory limit is 256k");
        }
        cfg.resources.memory = Some(b);
    }
    if let Some(c) = a.cpus {
        if !(c > 0.0 && c.is_finite()) {
            bail!("--cpus {c}: must be a positive number");
        }
        cfg.resources.cpu_quota = Some((c * 100_000.0) as i64);
        cfg.resources.cpu_period = Some(100_000);
    }
    cfg.resources.cpu_shares = a.cpu_shares;
    cfg.resources.cpuset_cpus = a.cpuset_cpus.clone();
    cfg.resources.pids_limit = a.pids_limit;
    let exposed = if a.publish_all {
        icfg.exposed_ports().clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    let (mode, attachments) = networks_of(root, a, &exposed)?;
    cfg.network = mode;
    let mut seccomp_given = false;
    for o in &a.security_opt {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                cfg.no_new_privileges = true
            }
            s if s.starts_with("seccomp=") || s.starts_with("seccomp:") => {
                seccomp_given = true;
                cfg.seccomp = match &s["seccomp=".len()..] {
                    "unconfined" => None,
                    "" => bail!("--security-opt {o:?}: give seccomp=unconfined or seccomp=FILE"),
                    file => Some(
                        corral_container::seccomp::SeccompProfile::load(Path::new(file))
                            .with_context(|| format!("--security-opt {o}"))?,
                    ),
                };
            }
            _ => bail!(
                "--security-opt {o:?}: supported: no-new-privileges, seccomp=unconfined, seccomp=FILE"
            ),
        }
    }
    cfg.capabilities = capabilities::resolve(
        &cfg.capabilities,
        &a.cap_add,
        &a.cap_drop,
        a.privileged,
        &capabilities::available(),
    )?;
    let rules = cfg.resources.devices.get_or_insert_with(Vec::new);
    for d in &a.device {
        let (node, perms) = parse_device(d)?;
        rules.push(node.rule(&perms));
        cfg.devices.push(node);
    }
    for r in &a.device_cgroup_rule {
        rules.push(
            corral_container::config::DeviceRule::parse(r, true)
                .map_err(|e| anyhow::anyhow!("--device-cgroup-rule: {e}"))?,
        );
    }
    if a.privileged {
        // docker's --privileged: the host's devices, all of them allowed.
        rules.push(corral_container::config::DeviceRule::parse("a", true).expect("valid"));
        let own: Vec<String> = cfg.devices.iter().map(|d| d.path.clone()).collect();
        cfg.devices.extend(
            corral_container::config::host_devices()
                .into_iter()
                .filter(|d| !own.contains(&d.path)),
        );
        cfg.privileged = true;
        cfg.masked_paths.clear();
        cfg.readonly_paths.clear();
        if !seccomp_given {
            // docker's --privileged runs unconfined unless a profile is given.
            cfg.seccomp = None;
        }
    }
    if let Some(profile) = &cfg.seccomp {
        // Compiled again by the init; compiling here reports a profile the kernel could not
        // take (too large) before anything is created.
        corral_container::seccomp::compile(profile, &cfg.capabilities)
            .context("--security-opt seccomp")?;
    }
    for u in &a.ulimit {
        rlimits::set(&mut cfg.rlimits, rlimits::parse_ulimit(u)?);
    }
    cfg.tty = a.tty;
    cfg.restart =
        corral_container::config::RestartPolicy::parse(&a.restart).with_context(|| {
            format!(
                "--restart {:?}: expected no, on-failure[:N], always or unless-stopped",
                a.restart
            )
        })?;
    if a.rm && cfg.restart != corral_container::config::RestartPolicy::No {
        bail!(
            "--rm and --restart {} conflict: a container removed at exit cannot restart",
            a.restart
        );
    }
    Ok((cfg, img.id.to_string(), entrypoint_len, attachments))
}

/// `--network`, `--network-alias`, `-p`, `-P`: the container's network mode and the corral
/// networks it joins (checked now, so that a bad name or port fails before anything exists).
fn networks_of(
    root: &Path,
    a: &RunArgs,
    exposed: &[String],
) -> Result<(NetworkMode, Vec<Attachment>)> {
    let names = super::network::requested(&a.network);
    let mut ports = Vec::new();
    for p in &a.publish {
        ports.push(
            p.parse::<corral_net::PortSpec>()
                .map_err(|e| anyhow::anyhow!("-p {p:?}: {e}"))?,
        );
    }
    for e in exposed {
        // The image's `EXPOSE 80/tcp`: to a free host port.
        let spec = e.trim_end_matches("/tcp");
        ports.push(
            spec.parse::<corral_net::PortSpec>()
                .map_err(|err| anyhow::anyhow!("-P: the image exposes {e:?}: {err}"))?,
        );
    }
    let special = |n: &str| n == "none" || n == "host";
    if names.iter().any(|n| special(n)) {
        if names.len() > 1 {
            bail!(
                "--network {}: none and host cannot be combined with other networks",
                names.join(",")
            );
        }
        if !ports.is_empty() {
            bail!("-p/-P need a network: with --network {}, nothing can be published (use a corral network)", names[0]);
        }
        if !a.network_alias.is_empty() {
            bail!(
                "--network-alias needs a corral network, not --network {}",
                names[0]
            );
        }
        let mode = if names[0] == "none" {
            NetworkMode::None
        } else {
            NetworkMode::Host
        };
        return Ok((mode, Vec::new()));
    }
    let nets = super::network::networks(root);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if !seen.insert(n.clone()) {
            bail!("--network {n}: given twice");
        }
        if n != corral_net::store::DEFAULT_NETWORK {
            nets.get(n).with_context(|| {
                format!("--network {n}: no such network (corral network create {n} makes it)")
            })?;
        }
        for al in &a.network_alias {
            corral_net::store::validate_name(al)
                .with_context(|| format!("--network-alias {al:?}"))?;
        }
        out.push(Attachment {
            network: n.clone(),
            aliases: a.network_alias.clone(),
            // Published through the first network, as docker does.
            ports: if i == 0 { ports.clone() } else { Vec::new() },
        });
    }
    Ok((NetworkMode::Networks, out))
}

/// `--userns`: `Some(size)` for an automatic range, `None` for the host's namespace.
fn userns_auto(a: &RunArgs) -> Result<Option<u32>> {
    let Some(mode) = a.userns.as_deref() else {
        return Ok(None);
    };
    let bad = || {
        anyhow::anyhow!("--userns={mode:?}: expected host, auto or auto:size=N (N from 1 to 65536)")
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

/// `K` alone takes the value from corral's own environment, as docker does.
fn expand_env(e: &str) -> String {
    if e.contains('=') {
        e.to_owned()
    } else {
        format!("{e}={}", std::env::var(e).unwrap_or_default())
    }
}

fn merge_env(env: &mut Vec<String>, add: impl Iterator<Item = String>) {
    for kv in add {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
}

pub fn run(root: &Path, a: RunArgs, start_it: bool) -> Result<()> {
    if a.isolation == "vm" {
        return super::vm::run_isolated(root, a, start_it);
    }
    let (mut cfg, image_id, entrypoint_len, attachments) = plan(root, &a)?;
    let cs = containers(root)?;
    cfg.hostname = a.hostname.clone().unwrap_or_default();
    let state = container_create::create(
        &cs,
        CreateRequest {
            name: a.name.clone(),
            image: a.image.clone(),
            image_id,
            config: cfg.clone(),
            auto_remove: a.rm,
            entrypoint: cfg.args[..entrypoint_len].to_vec(),
            userns_auto: userns_auto(&a)?,
        },
    )?;
    if !attachments.is_empty() {
        if let Err(e) = corral_net::attach::save_requests(&cs.dir(&state.id), &attachments) {
            let _ = cs.remove(&state);
            return Err(e.into());
        }
    }
    if !start_it {
        println!("{}", state.id);
        return Ok(());
    }
    let attach = if a.detach {
        Attach::Detached
    } else {
        Attach::Attached
    };
    let started = start_with_networks(root, &cs, &state.id, attach);
    if let Err(StartError::Prepare(_)) = &started {
        // Nothing ran: `run` leaves nothing behind (`start` of a created one keeps it).
        let _ = cs.remove(&state);
    }
    match started {
        Err(StartError::Prepare(message)) => {
            eprintln!("error: {message}");
            Err(Code(CORRAL_FAILURE).into())
        }
        Ok(None) => {
            println!("{}", state.id);
            Ok(())
        }
        Ok(Some(code)) => Err(Code(code).into()),
        Err(StartError::Failed { code, message }) => {
            eprintln!("error: {message}");
            if code == 125 {
                eprintln!(
                    "hint: `corral inspect {}` shows the container's state",
                    state.name
                );
            }
            Err(Code(code).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The flags of `exec`.
pub struct ExecFlags {
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

pub fn exec(root: &Path, c: &str, f: ExecFlags, command: Vec<String>) -> Result<()> {
    let user = match &f.user {
        None => None,
        Some(u) => {
            let (uid, gid) = u
                .split_once(':')
                .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
            let uid: u32 = uid
                .parse()
                .with_context(|| format!("user {u:?}: give a numeric UID[:GID]"))?;
            let gid: u32 = match gid {
                Some(g) => g
                    .parse()
                    .with_context(|| format!("group in {u:?} must be numeric"))?,
                None => uid,
            };
            Some((uid, gid))
        }
    };
    if let Some(w) = &f.workdir {
        if !w.starts_with('/') {
            bail!("working directory {w:?} must be an absolute path");
        }
    }
    let cs = containers(root)?;
    let id = cs.resolve(c)?;
    let req = corral_container::container_exec::ExecRequest {
        args: command,
        env: f.env.iter().map(|e| expand_env(e)).collect(),
        cwd: f.workdir,
        user,
        interactive: f.interactive,
        detach: f.detach,
        pid_file: None,
        replace_env: false,
        keep_stdio: false,
        tty: f.tty,
        console_socket: None,
    };
    match corral_container::container_exec::exec(&cs, &id, req) {
        Ok(code) => {
            if code == 0 {
                Ok(())
            } else {
                Err(Code(code).into())
            }
        }
        Err(corral_container::container_exec::ExecError::Command { code, message }) => {
            eprintln!("error: {message}");
            Err(Code(code).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Connects the container to its networks, then starts it; on failure before the monitor
/// runs, disconnects it again.
fn start_with_networks(
    root: &Path,
    cs: &Containers,
    id: &str,
    attach: Attach,
) -> Result<Option<i32>, StartError> {
    let netns = super::network::attach_for_start(root, cs, id)
        .map_err(|e| StartError::Prepare(format!("{e:#}")))?;
    let networked = netns.is_some();
    let exe = exe().map_err(|e| StartError::Spawn(std::io::Error::other(e.to_string())))?;
    let res = container_start::start(cs, id, &exe, Path::new(CGROUP_ROOT), attach, netns);
    if networked && matches!(res, Err(StartError::Spawn(_))) {
        let _ = super::network::release(root, id);
    }
    res
}

pub fn start(root: &Path, c: &str, attach: bool) -> Result<()> {
    let cs = containers(root)?;
    let id = cs.resolve(c)?;
    let mode = if attach {
        Attach::Attached
    } else {
        Attach::Detached
    };
    match start_with_networks(root, &cs, &id, mode) {
        Ok(Some(code)) => Err(Code(code).into()),
        Ok(None) => Ok(()),
        Err(StartError::Failed { code, message }) => {
            eprintln!("error: {message}");
            Err(Code(code).into())
        }
        Err(e) => Err(e.into()),
    }
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

pub fn ps(root: &Path, all: bool, quiet: bool, as_json: bool) -> Result<()> {
    let cs = containers(root)?;
    let mut rows = Vec::new();
    for id in cs.ids()? {
        let s = match cs.load(&id) {
            Ok(s) => s,
            Err(e) => {
                // Shown, not hidden: the user must learn it exists to remove it.
                eprintln!("warning: container {}: {e} ", &id[..12]);
                continue;
            }
        };
        if !all && s.status != Status::Running {
            continue;
        }
        let cfg = cs.config(&id).ok();
        rows.push((s, cfg));
    }
    rows.sort_by(|a, b| b.0.created.cmp(&a.0.created));
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(s, c)| {
                json!({
                    "id": s.id, "name": s.name, "image": s.image,
                    "command": c.as_ref().map(|c| c.args.join(" ")).unwrap_or_default(),
                    "status": if s.paused && s.status == Status::Running { "paused" } else { status_str(s.status) },
                    "exit_code": s.exit_code,
                    "oom_killed": s.oom_killed, "pid": s.pid, "created": s.created,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for (s, _) in &rows {
            writeln!(out, "{}", &s.id[..12])?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:12}  {:20}  {:24}  {:20}  {:12}  NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    )?;
    for (s, c) in &rows {
        let cmd = c.as_ref().map(|c| c.args.join(" ")).unwrap_or_default();
        let cmd: String = cmd.chars().take(24).collect();
        let status = match s.status {
            Status::Exited => format!("exited ({})", s.exit_code.unwrap_or(-1)),
            Status::Running if s.paused => "paused".to_owned(),
            st => status_str(st).to_owned(),
        };
        writeln!(
            out,
            "{:12}  {:20}  {:24}  {:20}  {:12}  {}",
            &s.id[..12],
            s.image,
            cmd,
            s.created,
            status,
            s.name
        )?;
    }
    Ok(())
}

pub fn logs(
    root: &Path,
    c: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<()> {
    let cs = containers(root)?;
    let id = cs.resolve(c)?;
    let path = cs.dir(&id).join("ctr.log");
    let running = || cs.load(&id).is_ok_and(|s| s.status == Status::Running);
    follow_json_log(&path, follow, tail, timestamps, &running)
}

/// Prints a log of JSON lines (`log`, `stream`, `time`, as docker's json-file), the last
/// `tail` lines first, and with `follow` what comes while `running()` says so.
pub fn follow_json_log(
    path: &Path,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
    running: &dyn Fn() -> bool,
) -> Result<()> {
    let print = |line: &str, out: &mut dyn Write, err: &mut dyn Write| -> Result<()> {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => return Ok(()),
        };
        let text = v["log"].as_str().unwrap_or("");
        let to: &mut dyn Write = if v["stream"] == "stderr" { err } else { out };
        if timestamps {
            write!(to, "{} ", v["time"].as_str().unwrap_or(""))?;
        }
        to.write_all(text.as_bytes())?;
        Ok(())
    };
    follow_lines(path, follow, tail, running, &mut |lines| {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for l in lines {
            print(l, &mut out, &mut err)?;
        }
        out.flush()?;
        Ok(())
    })
}

/// Prints a plain text log (a VM's console), as [`follow_json_log`] does.
pub fn follow_raw(
    path: &Path,
    follow: bool,
    tail: Option<usize>,
    running: &dyn Fn() -> bool,
) -> Result<()> {
    follow_lines(path, follow, tail, running, &mut |lines| {
        let mut out = std::io::stdout().lock();
        for l in lines {
            writeln!(out, "{l}")?;
        }
        out.flush()?;
        Ok(())
    })
}

fn follow_lines(
    path: &Path,
    follow: bool,
    tail: Option<usize>,
    running: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&[&str]) -> Result<()>,
) -> Result<()> {
    let mut offset = 0u64;
    let mut first = true;
    loop {
        let data = std::fs::read(path).unwrap_or_default();
        if (data.len() as u64) > offset {
            let chunk = &data[offset as usize..];
            // Only whole lines; a partial last line is read next time.
            let end = chunk.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            let text = String::from_utf8_lossy(&chunk[..end]);
            let mut lines: Vec<&str> = text.lines().collect();
            if first {
                if let Some(n) = tail {
                    let skip = lines.len().saturating_sub(n);
                    lines.drain(..skip);
                }
            }
            emit(&lines)?;
            offset += end as u64;
        }
        first = false;
        if !follow {
            return Ok(());
        }
        if running() {
            std::thread::sleep(Duration::from_millis(100));
        } else if std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) <= offset {
            return Ok(());
        }
    }
}

fn for_each(
    root: &Path,
    names: &[String],
    mut f: impl FnMut(&Containers, &str) -> Result<()>,
) -> Result<()> {
    let cs = containers(root)?;
    let mut failed = false;
    for n in names {
        match cs
            .resolve(n)
            .map_err(anyhow::Error::from)
            .and_then(|id| f(&cs, &id))
        {
            Ok(()) => println!("{n}"),
            Err(e) => {
                failed = true;
                let mut m = format!("error: {n}: {e}");
                for c in e.chain().skip(1) {
                    m.push_str(&format!(": {c}"));
                }
                eprintln!("{m}");
            }
        }
    }
    if failed {
        return Err(Code(CORRAL_FAILURE).into());
    }
    Ok(())
}

pub fn stop(root: &Path, names: &[String], secs: u64) -> Result<()> {
    for_each(root, names, |cs, id| {
        container_pause::thaw_if_paused(cs, id, Path::new(CGROUP_ROOT))?;
        Ok(container_kill::stop(cs, id, Duration::from_secs(secs))?)
    })
}

/// `C:PATH` names a container's path; a part before `:` holding `/` is a host path (docker).
fn container_side(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

pub fn cp(root: &Path, source: &str, destination: &str) -> Result<()> {
    use corral_container::container_cp;
    let cs = containers(root)?;
    match (container_side(source), container_side(destination)) {
        (Some((c, p)), None) => {
            let id = cs.resolve(c)?;
            container_cp::copy_out(&cs, &id, p, Path::new(destination))?;
        }
        (None, Some((c, p))) => {
            let id = cs.resolve(c)?;
            container_cp::copy_in(&cs, &id, Path::new(source), p)?;
        }
        (Some(_), Some(_)) => {
            bail!("cp between two containers is not supported: copy through the host")
        }
        (None, None) => bail!("one side of cp must be CONTAINER:PATH"),
    }
    Ok(())
}

pub fn pause(root: &Path, names: &[String], paused: bool) -> Result<()> {
    for_each(root, names, |cs, id| {
        Ok(container_pause::set_paused(
            cs,
            id,
            paused,
            Path::new(CGROUP_ROOT),
        )?)
    })
}

pub fn stats(root: &Path, names: &[String], once: bool, as_json: bool) -> Result<()> {
    let cs = containers(root)?;
    let ids: Vec<String> = if names.is_empty() {
        cs.ids()?
            .into_iter()
            .filter(|id| cs.load(id).is_ok_and(|s| s.status == Status::Running))
            .collect()
    } else {
        names
            .iter()
            .map(|n| cs.resolve(n))
            .collect::<Result<_, _>>()?
    };
    loop {
        let mut rows = Vec::new();
        for id in &ids {
            let Ok(s) = cs.load(id) else { continue };
            if let Some(st) = container_stats::stats(&cs, id, Path::new(CGROUP_ROOT))? {
                rows.push((s, st));
            }
        }
        if as_json {
            let v: Vec<_> = rows
                .iter()
                .map(|(s, st)| json!({ "id": s.id, "name": s.name, "memory_usage": st.memory_usage,
                    "memory_limit": st.memory_limit, "cpu_usage_ns": st.cpu_usage_ns, "pids": st.pids }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        if !once {
            // Clear the screen and go home, as docker's refreshing display does.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        writeln!(
            out,
            "{:12}  {:20}  {:>12}  {:>12}  {:>10}  {:>5}",
            "CONTAINER ID", "NAME", "MEM USAGE", "LIMIT", "CPU (s)", "PIDS"
        )?;
        for (s, st) in &rows {
            let limit = st.memory_limit.map_or("-".to_owned(), super::image::human);
            writeln!(
                out,
                "{:12}  {:20}  {:>12}  {:>12}  {:>10.2}  {:>5}",
                &s.id[..12],
                s.name,
                super::image::human(st.memory_usage),
                limit,
                st.cpu_usage_ns as f64 / 1e9,
                st.pids
            )?;
        }
        out.flush()?;
        if once || rows.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn top(root: &Path, c: &str, as_json: bool) -> Result<()> {
    let cs = containers(root)?;
    let id = cs.resolve(c)?;
    let procs = container_stats::top(&cs, &id, Path::new(CGROUP_ROOT))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&procs)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>8}  {:>8}  {:>6}  {:>8}  {:>10}  COMMAND",
        "PID", "PPID", "UID", "TIME(s)", "RSS"
    )?;
    for p in procs {
        writeln!(
            out,
            "{:>8}  {:>8}  {:>6}  {:>8.2}  {:>10}  {}",
            p.pid,
            p.ppid,
            p.uid,
            p.cpu_seconds,
            super::image::human(p.rss),
            p.command
        )?;
    }
    Ok(())
}

pub fn kill(root: &Path, names: &[String], signal: &str) -> Result<()> {
    let sig = container_kill::parse_signal(signal)?;
    for_each(root, names, |cs, id| Ok(container_kill::kill(cs, id, sig)?))
}

pub fn rm(root: &Path, names: &[String], force: bool) -> Result<()> {
    for_each(root, names, |cs, id| {
        container_delete::delete(cs, id, force, Path::new(CGROUP_ROOT))?;
        super::network::release(root, id)
    })
}

pub fn wait(root: &Path, names: &[String]) -> Result<()> {
    let cs = containers(root)?;
    for n in names {
        let id = cs.resolve(n)?;
        container_kill::wait_exit(&cs, &id, None)?;
        let code = cs.load(&id).ok().and_then(|s| s.exit_code).unwrap_or(-1);
        println!("{code}");
    }
    Ok(())
}

pub fn inspect(root: &Path, targets: &[String]) -> Result<()> {
    let cs = containers(root)?;
    let mut out = Vec::new();
    for t in targets {
        match cs.resolve(t) {
            Ok(id) => {
                let s = cs.load(&id)?;
                let c = cs.config(&id)?;
                out.push(json!({
                    "id": s.id, "name": s.name, "image": s.image, "image_id": s.image_id,
                    "created": s.created,
                    "state": {
                        "status": status_str(s.status), "running": s.status == Status::Running,
                        "paused": s.paused,
                        "pid": s.pid, "exit_code": s.exit_code, "oom_killed": s.oom_killed,
                        "started_at": s.started_at, "finished_at": s.finished_at, "error": s.error,
                    },
                    "config": {
                        "cmd": s.cmd, "entrypoint": s.entrypoint, "env": c.env, "working_dir": c.cwd,
                        "user": format!("{}:{}", c.uid, c.gid), "hostname": c.hostname,
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
                    "network_settings": super::network::settings_json(root, &id),
                    "cgroup_paths": s.cgroup_paths,
                    "log_path": cs.dir(&id).join("ctr.log"),
                }));
            }
            Err(corral_container::state::StateError::NotFound(_)) => {
                // Not a container: maybe an image.
                let store = corral_image::Store::open(root.join("images"))?;
                let img = store
                    .resolve(t)
                    .with_context(|| format!("no such container or image: {t}"))?;
                out.push(json!({ "id": img.id.to_string(), "digest": img.digest.to_string(), "config": img.config }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let v = if out.len() == 1 {
        out.pop().expect("one")
    } else {
        serde_json::Value::Array(out)
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// `--device HOSTPATH[:PATH][:PERMS]`: the node to make and the access to allow.
fn parse_device(spec: &str) -> Result<(corral_container::config::DeviceNode, String)> {
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, path, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, p] => (*h, *p, "rwm"),
        [h, p, perms] => (*h, *p, *perms),
        _ => bail!("--device {spec:?}: expected HOSTPATH[:PATH][:PERMS], e.g. /dev/fuse or /dev/sdb:/dev/xvdb:r"),
    };
    if !is_perms(perms) {
        bail!("--device {spec:?}: the permissions {perms:?} must be made of r, w and m");
    }
    let node = corral_container::config::DeviceNode::from_host(Path::new(host), path)
        .with_context(|| format!("--device {spec:?}: {host} is not a usable host device"))?;
    if !path.starts_with("/dev/") || path.split('/').any(|c| c == "..") {
        bail!("--device {spec:?}: the path in the container must be under /dev/");
    }
    Ok((node, perms.to_owned()))
}
