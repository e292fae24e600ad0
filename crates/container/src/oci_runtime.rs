//! The OCI runtime verbs, as podman (through conmon) and containerd's runc shim call them:
//! `create`, `start`, `state`, `kill`, `delete`, `run`.
//!
//! No monitor here: the caller (conmon, the shim) supervises. `create` starts the init as PID 1
//! of a new PID namespace, which builds the container and then blocks on `exec.fifo` in the
//! state directory; `create` returns once it is ready, leaving the init to be reaped by the
//! caller (a child subreaper). `start` opens the FIFO, which releases the exec — runc's
//! protocol.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rustix::process::{kill_process, Pid, Signal};

use crate::cgroups::Cgroup;
use crate::state::{
    now, process_running, process_start_time, Containers, State, StateError, Status,
};

/// Errors of the runtime verbs.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The bundle is unusable.
    #[error(transparent)]
    Bundle(#[from] crate::oci::OciError),
    /// The container exists already.
    #[error("container {0} exists already")]
    Exists(String),
    /// The id has characters runc refuses.
    #[error("invalid container id {0:?}: use letters, digits, '_', '+', '-', '.'")]
    BadId(String),
    /// The container is not in a state for this verb.
    #[error("container {id} is {status}: {what}")]
    WrongState {
        /// The container.
        id: String,
        /// Its status.
        status: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// The container could not be created.
    #[error("{0}")]
    Failed(String),
    /// A file operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        err: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |err| RuntimeError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

/// The OCI status of a container.
pub fn status(s: &State, fifo_exists: bool) -> &'static str {
    let alive = s.pid.is_some_and(|p| process_running(p, s.pid_start));
    match (alive, fifo_exists) {
        (true, true) => "created",
        (true, false) if s.paused => "paused",
        (true, false) => "running",
        (false, _) if s.status == Status::Created && s.pid.is_none() => "creating",
        (false, _) => "stopped",
    }
}

/// `systemd` cgroup paths (`slice:prefix:name`) as cgroupfs paths.
fn cgroup_rel(path: Option<&str>, id: &str) -> PathBuf {
    match path {
        None => Path::new("corral").join(id),
        Some(p) if p.contains(':') && !p.starts_with('/') => {
            let mut parts = p.splitn(3, ':');
            let slice = parts.next().unwrap_or("");
            let prefix = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or(id);
            let slice = if slice.is_empty() {
                "system.slice"
            } else {
                slice
            };
            Path::new(slice).join(format!("{prefix}-{name}.scope"))
        }
        Some(p) => PathBuf::from(p.trim_start_matches('/')),
    }
}

/// Options of `create`.
pub struct CreateOptions<'a> {
    /// The bundle directory.
    pub bundle: &'a Path,
    /// Where to write the init's host pid.
    pub pid_file: Option<&'a Path>,
    /// Where to send the terminal's master side when the bundle asks for a terminal.
    pub console_socket: Option<&'a Path>,
    /// The cgroup root.
    pub cgroup_root: &'a Path,
    /// Descriptors 3 to 3 + N - 1 the caller passes to the process (`--preserve-fds N`).
    pub preserve_fds: u32,
    /// Those of them the caller did not pass (see [`crate::fds::hold_missing`]).
    pub preserve_holes: Vec<i32>,
    /// Told what the bundle asks that is ignored (runc's warnings).
    pub warn: &'a dyn Fn(&str),
}

/// `create`: builds the container; its process waits for `start`. Returns the init process
/// (the caller's child) for `run`, which waits on it.
pub fn create(
    containers: &Containers,
    id: &str,
    o: CreateOptions<'_>,
) -> Result<crate::process::InitChild, RuntimeError> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c))
    {
        return Err(RuntimeError::BadId(id.to_owned()));
    }
    if containers.dir(id).exists() {
        return Err(RuntimeError::Exists(id.to_owned()));
    }
    let mut bundle = crate::oci::read_bundle(o.bundle)?;
    for w in &bundle.warnings {
        (o.warn)(w);
    }
    bundle.config.preserve_fds = o.preserve_fds;
    bundle.config.preserve_holes = o.preserve_holes.clone();
    if let Some(who) = &mut bundle.config.identity {
        who.id = id.to_owned();
    }
    let bundle_dir = std::fs::canonicalize(o.bundle).unwrap_or_else(|_| o.bundle.to_owned());
    let mut state = State {
        cmd: bundle.config.args.clone(),
        bundle: Some(bundle_dir),
        teardown_config: bundle.config.hooks.is_some()
            || bundle.config.host_namespaces.iter().any(|n| n == "mount"),
        ..State::new(id, id)
    };
    containers.create(&state, &bundle.config)?;
    let res = create_inner(containers, &mut state, &bundle, &o);
    if res.is_err() {
        unbind_shared_root(&bundle.config);
        let cg = Cgroup::from_dirs(o.cgroup_root, state.cgroup_paths.clone());
        cg.destroy();
        let _ = containers.remove_broken(id);
    }
    res
}

fn create_inner(
    containers: &Containers,
    state: &mut State,
    bundle: &crate::oci::Bundle,
    o: &CreateOptions<'_>,
) -> Result<crate::process::InitChild, RuntimeError> {
    let dir = containers.dir(&state.id);
    let fifo = dir.join("exec.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(|e| io("creating", &fifo)(e.into()))?;
    // The init opens it after becoming the process's user (in its user namespace, if any):
    // that user's, mode 0600. runc makes it 0622 instead, writable by anyone who reaches it.
    own_for_user(&fifo, &bundle.config).map_err(io("handing over", &fifo))?;
    let rel = cgroup_rel(bundle.cgroups_path.as_deref(), &state.id);
    let cgroup = Cgroup::create_at(o.cgroup_root, &rel, &bundle.config.resources).map_err(|e| {
        RuntimeError::Failed(format!(
            "creating the cgroup: {e}: {}",
            std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        ))
    })?;
    state.cgroup_paths = cgroup.dirs.clone();
    containers.save(state)?;
    use crate::process::Stdio as S;
    // With a terminal: a new one, whose master goes to the caller over the console socket;
    // without: the caller's stdio (conmon's pipes, or a terminal) become the container's.
    let [stdin, stdout, stderr] = if bundle.config.tty {
        let socket = o.console_socket.ok_or_else(|| {
            RuntimeError::Failed("the bundle asks for a terminal: give --console-socket".into())
        })?;
        let pty = crate::tty::open(None).map_err(io("opening a terminal", socket))?;
        crate::tty::send_master(socket, &pty.master)
            .map_err(io("sending the terminal to", socket))?;
        let dup = |f: &std::os::fd::OwnedFd| f.try_clone().map_err(io("dup", socket));
        [
            S::Fd(dup(&pty.slave)?),
            S::Fd(dup(&pty.slave)?),
            S::Fd(pty.slave),
        ]
    } else {
        [S::Inherit, S::Inherit, S::Inherit]
    };
    let launched =
        crate::process::launch_init(&dir, &bundle.config, None, &cgroup, stdin, stdout, stderr)
            .map_err(|(_, m)| RuntimeError::Failed(m))?;
    let mut child = launched.child;
    let mut status = BufReader::new(launched.status);
    let mut line = String::new();
    let _ = status.read_line(&mut line);
    if line != "ready\n" {
        let mut rest = String::new();
        let _ = status.read_to_string(&mut rest);
        let _ = child.wait();
        let msg = format!("{line}{rest}");
        let msg = msg
            .split_once(' ')
            .map_or(msg.as_str(), |(_, m)| m)
            .to_owned();
        return Err(RuntimeError::Failed(if msg.is_empty() {
            "the container init died".into()
        } else {
            msg
        }));
    }
    let pid = child.id() as i32;
    state.pid = Some(pid);
    state.pid_start = process_start_time(pid);
    containers.save(state)?;
    if let Some(p) = o.pid_file {
        std::fs::write(p, pid.to_string()).map_err(io("writing", p))?;
    }
    Ok(child)
}

/// Opens the FIFO the init waits on and reads its byte: the init then execs. Without blocking
/// on the open (a blocking open would wait forever for an init that died after `create`, say
/// killed by the OOM killer under a tiny memory limit): poll, and check on the init meanwhile.
fn release(s: &State, fifo: &Path) -> Result<(), RuntimeError> {
    use rustix::event::{poll, PollFd, PollFlags};
    let f = rustix::fs::open(
        fifo,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io("opening", fifo)(e.into()))?;
    let timeout = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        let mut fds = [PollFd::new(&f, PollFlags::IN)];
        let ready = poll(&mut fds, Some(&timeout)).map_err(|e| io("waiting on", fifo)(e.into()))?;
        if ready > 0 {
            let mut b = [0u8; 1];
            match rustix::io::read(&f, &mut b) {
                Ok(1) => return Ok(()),
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(io("reading", fifo)(e.into())),
            }
        }
        if !s.pid.is_some_and(|p| process_running(p, s.pid_start)) {
            return Err(RuntimeError::Failed(format!(
                "the container {} exited before it was started (killed? see its memory limit)",
                s.id
            )));
        }
        if ready > 0 {
            // A writer came and went without its byte: it is gone.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// `start`: releases the created container's process, then runs the bundle's `poststart`
/// hooks (a failing one is told to `warn`, as the spec says).
pub fn start(containers: &Containers, id: &str, warn: &dyn Fn(&str)) -> Result<(), RuntimeError> {
    let mut s = containers.load_raw(id)?;
    let fifo = containers.dir(id).join("exec.fifo");
    let st = status(&s, fifo.exists());
    if st != "created" {
        return Err(RuntimeError::WrongState {
            id: id.to_owned(),
            status: st,
            what: "only a created container can be started",
        });
    }
    release(&s, &fifo)?;
    let _ = std::fs::remove_file(&fifo);
    s.status = Status::Running;
    s.started_at = Some(now());
    containers.save(&s)?;
    let cfg = s
        .teardown_config
        .then(|| containers.config(id).ok())
        .flatten();
    if let Some((h, cfg)) = cfg.and_then(|c| Some((c.hooks.clone()?, c))) {
        let state = crate::hooks::state_of(&cfg, "running", s.pid);
        for e in crate::hooks::run_all("poststart", &h.poststart, &state) {
            warn(&e.to_string());
        }
    }
    Ok(())
}

/// `state`: runc's JSON.
pub fn state_json(containers: &Containers, id: &str) -> Result<serde_json::Value, RuntimeError> {
    let s = containers.load_raw(id)?;
    let st = status(&s, containers.dir(id).join("exec.fifo").exists());
    let running = st != "stopped";
    Ok(serde_json::json!({
        "ociVersion": "1.0.2",
        "id": s.id,
        "pid": if running { s.pid.unwrap_or(0) } else { 0 },
        "status": st,
        "bundle": s.bundle,
        "rootfs": containers.config(id).ok().and_then(|c| c.rootfs),
        "created": s.created,
        "owner": "",
    }))
}

/// `kill`: a signal to the process, or with `all` to every process of the container.
pub fn kill(
    containers: &Containers,
    id: &str,
    sig: Signal,
    all: bool,
    cgroup_root: &Path,
) -> Result<(), RuntimeError> {
    let s = containers.load_raw(id)?;
    let st = status(&s, containers.dir(id).join("exec.fifo").exists());
    if st == "stopped" {
        return Err(RuntimeError::WrongState {
            id: id.to_owned(),
            status: st,
            what: "there is no process to signal",
        });
    }
    let mut pids = Vec::new();
    if all {
        pids = Cgroup::from_dirs(cgroup_root, s.cgroup_paths.clone()).procs();
    }
    if let Some(p) = s.pid {
        pids.push(p);
    }
    for p in pids {
        if let Some(pid) = Pid::from_raw(p) {
            let _ = kill_process(pid, sig);
        }
    }
    Ok(())
}

/// `delete`: removes a stopped container (with `force`, kills a running one first), then
/// runs the bundle's `poststop` hooks (a failing one is told to `warn`).
pub fn delete(
    containers: &Containers,
    id: &str,
    force: bool,
    cgroup_root: &Path,
    warn: &dyn Fn(&str),
) -> Result<(), RuntimeError> {
    let s = match containers.load_raw(id) {
        Ok(s) => s,
        Err(StateError::NotFound(_)) if force => return Ok(()),
        Err(StateError::Corrupt { .. }) if force => {
            containers.remove_broken(id)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let st = status(&s, containers.dir(id).join("exec.fifo").exists());
    if st != "stopped" && st != "creating" {
        if !force && st != "created" {
            return Err(RuntimeError::WrongState {
                id: id.to_owned(),
                status: st,
                what: "stop it first, or delete with --force",
            });
        }
        kill(containers, id, Signal::KILL, true, cgroup_root)?;
        for _ in 0..200 {
            if s.pid.is_none_or(|p| !process_running(p, s.pid_start)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let cg = Cgroup::from_dirs(cgroup_root, s.cgroup_paths.clone());
    for p in cg.procs() {
        if let Some(pid) = Pid::from_raw(p) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
    cg.destroy();
    let cfg = s
        .teardown_config
        .then(|| containers.config(id).ok())
        .flatten();
    if let Some(c) = &cfg {
        unbind_shared_root(c);
    }
    containers.remove_broken(id)?;
    if let Some((h, cfg)) = cfg.and_then(|c| Some((c.hooks.clone()?, c))) {
        let state = crate::hooks::state_of(&cfg, "stopped", None);
        for e in crate::hooks::run_all("poststop", &h.poststop, &state) {
            warn(&e.to_string());
        }
    }
    Ok(())
}

/// A container in the caller's mount namespace left its root bound on itself there (and what
/// the bundle mounted beneath it, see `crate::rootfs`): detached with the container. Only the
/// topmost mount at the root goes, ours.
fn unbind_shared_root(cfg: &crate::ContainerConfig) {
    if let Some(root) = cfg
        .rootfs
        .as_ref()
        .filter(|_| cfg.host_namespaces.iter().any(|n| n == "mount"))
    {
        if crate::mountinfo::is_mount_point(root) {
            let _ = rustix::mount::unmount(root, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// The pids of a container (host), for `ps`.
pub fn pids(
    containers: &Containers,
    id: &str,
    cgroup_root: &Path,
) -> Result<Vec<i32>, RuntimeError> {
    let s = containers.load_raw(id)?;
    Ok(Cgroup::from_dirs(cgroup_root, s.cgroup_paths).procs())
}

/// Gives `path` to the host ids of the container's process user, so that it can open it once
/// it is that user (from inside its user namespace, if it has one). In a user namespace the
/// bundle joins without giving its maps, the ids are unknown: left to root.
fn own_for_user(path: &Path, cfg: &crate::ContainerConfig) -> std::io::Result<()> {
    let (uid, gid) = if cfg.uid_map.is_empty() {
        if cfg.join_namespaces.iter().any(|(k, _)| k == "user") {
            return Ok(());
        }
        (cfg.uid, cfg.gid)
    } else {
        let unmapped =
            || std::io::Error::other("the process's user is not mapped in its user namespace");
        (
            crate::userns::host_id(&cfg.uid_map, cfg.uid).ok_or_else(unmapped)?,
            crate::userns::host_id(&cfg.gid_map, cfg.gid).ok_or_else(unmapped)?,
        )
    };
    if (uid, gid) == (0, 0) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}
