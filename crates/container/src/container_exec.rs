//! `exec`: run another process in a running container.
//!
//! The calling process (the CLI, single-threaded on this path) becomes the way in, as
//! `nsenter` does: it joins the container's cgroups, then its IPC, UTS, network, cgroup, PID
//! and mount namespaces — `setns` into the mount namespace also moves its root and working
//! directory to the container's root — and its user namespace if it has one, drops to the
//! container's capabilities and user, and spawns the command, which is thereby PID n of the
//! container's PID namespace. It waits and returns the command's exit code. Nothing is forked from a multi-threaded process
//! and no code runs between fork and exec.

use std::fs::File;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use crate::state::{Containers, StateError, Status};

/// Why an exec failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The container does not run.
    #[error("container {0} is not running: start it first")]
    NotRunning(String),
    /// The container is paused: the command would be frozen with it.
    #[error(
        "container {0} is paused: resume it first (or, with runc's command line, --ignore-paused)"
    )]
    Paused(String),
    /// Joining the container failed.
    #[error("entering container {name}: {what}")]
    Enter {
        /// The container.
        name: String,
        /// What failed.
        what: String,
    },
    /// The command could not be started (docker's 126/127).
    #[error("{message}")]
    Command {
        /// 126 or 127.
        code: i32,
        /// What went wrong.
        message: String,
    },
}

/// What to run.
pub struct ExecRequest {
    /// Command and arguments.
    pub args: Vec<String>,
    /// Extra environment (`K=V`), added to the container's.
    pub env: Vec<String>,
    /// Working directory (default: the container's).
    pub cwd: Option<String>,
    /// User (default: the container's).
    pub user: Option<(u32, u32)>,
    /// Supplementary groups, with `user` (default: the container's).
    pub groups: Option<Vec<u32>>,
    /// Keep stdin open.
    pub interactive: bool,
    /// Do not wait.
    pub detach: bool,
    /// Where to write the command's host pid.
    pub pid_file: Option<std::path::PathBuf>,
    /// `env` is the whole environment (an OCI process), not additions to the container's.
    pub replace_env: bool,
    /// Keep stdio when detached (the runtime's caller passed its pipes); otherwise a detached
    /// command's output is discarded, as `docker exec -d` does.
    pub keep_stdio: bool,
    /// Give the command a terminal.
    pub tty: bool,
    /// Send the terminal's master here (runtime mode) instead of relaying it.
    pub console_socket: Option<std::path::PathBuf>,
    /// With a terminal relayed: the keys that detach (see [`crate::tty::parse_detach_keys`];
    /// empty: none). The command keeps running with its terminal held by a small process of
    /// its own that discards what it prints, as after docker's detach.
    pub detach_keys: Vec<u8>,
}

/// What runc's `exec` takes beyond the process: its flags for the way in.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Descriptors 3 to 3 + N - 1 the caller passes to the command (`--preserve-fds N`); every
    /// other descriptor above stderr is closed on exec (see [`crate::fds`]).
    pub preserve_fds: u32,
    /// Those of them the caller did not pass (see [`crate::fds::hold_missing`]).
    pub preserve_holes: Vec<i32>,
    /// A sub-cgroup of the container's to run in (runc's `exec --cgroup`):
    /// `[CONTROLLER[,CONTROLLER]:]PATH`, relative to the container's cgroup.
    pub cgroup: Option<String>,
    /// Capabilities added to the container's (`--cap`, see
    /// [`crate::capabilities::add_for_exec`]).
    pub add_caps: Vec<String>,
    /// Run in a paused container too (`--ignore-paused`): the command starts frozen.
    pub ignore_paused: bool,
    /// Every capability this host has and no seccomp filter (`exec --privileged`); the
    /// container's no_new_privs, user and namespaces stay.
    pub privileged: bool,
}

/// Runs `req` in container `id`; returns its exit code (0 when detached).
///
/// The calling process is left inside the container's namespaces with its privileges: call it
/// last, and exit afterwards.
pub fn exec(containers: &Containers, id: &str, req: ExecRequest) -> Result<i32, ExecError> {
    exec_with(containers, id, req, &ExecOptions::default())
}

/// [`exec`] with runc's options.
pub fn exec_with(
    containers: &Containers,
    id: &str,
    req: ExecRequest,
    opts: &ExecOptions,
) -> Result<i32, ExecError> {
    let s = containers.load(id)?;
    let (Status::Running, Some(pid)) = (s.status, s.pid) else {
        return Err(ExecError::NotRunning(s.name));
    };
    // Read before this process enters the container's mount namespace (whose /proc does not
    // show it): a detach forks, which only a single-threaded process may do.
    let single_threaded = std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1);
    if s.paused && !opts.ignore_paused {
        return Err(ExecError::Paused(s.name));
    }
    let mut cfg = containers.config(id)?;
    for c in &opts.add_caps {
        crate::capabilities::add_for_exec(&mut cfg, c);
    }
    if opts.privileged {
        for c in crate::capabilities::available() {
            crate::capabilities::add_for_exec(&mut cfg, &c);
        }
        cfg.seccomp = None;
    }
    let enter = |what: String| ExecError::Enter {
        name: s.name.clone(),
        what,
    };
    if req.args.is_empty() {
        return Err(enter("no command given".into()));
    }
    // Open every namespace first: after the mount namespace, the host's /proc is out of reach.
    let kinds = [
        ("ipc", LinkNameSpaceType::InterProcessCommunication),
        ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
        ("net", LinkNameSpaceType::Network),
        ("cgroup", LinkNameSpaceType::ControlGroup),
        ("pid", LinkNameSpaceType::ProcessID),
        ("mnt", LinkNameSpaceType::Mount),
    ];
    let mut fds = Vec::new();
    // The user namespace last: once in it, the others (the host's user namespace owns most)
    // could no longer be joined.
    let user = crate::userns::differs_from(pid).then_some(("user", LinkNameSpaceType::User));
    // A time namespace of the container's own (a bundle's): joined too.
    let ns_of = |p: &str| std::fs::read_link(p).ok();
    let time = (ns_of(&format!("/proc/{pid}/ns/time")) != ns_of("/proc/self/ns/time"))
        .then_some(("time", LinkNameSpaceType::Time));
    for (name, kind) in kinds.into_iter().chain(time).chain(user) {
        let p = format!("/proc/{pid}/ns/{name}");
        let f = File::open(&p).map_err(|e| enter(format!("opening {p}: {e}")))?;
        fds.push((name, kind, f));
    }
    // The console socket lives on the host: connect before leaving its mount namespace.
    let console = match (&req.console_socket, req.tty) {
        (Some(p), true) => Some(
            std::os::unix::net::UnixStream::connect(p)
                .map_err(|e| enter(format!("connecting to {}: {e}", p.display())))?,
        ),
        _ => None,
    };
    // The pid file lives on the host: open it before leaving the host's mount namespace.
    let mut pid_file = match &req.pid_file {
        Some(p) => {
            Some(File::create(p).map_err(|e| enter(format!("creating {}: {e}", p.display())))?)
        }
        None => None,
    };
    for dir in &s.cgroup_paths {
        let dir = sub_cgroup(dir, opts.cgroup.as_deref()).map_err(enter)?;
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| enter(format!("joining cgroup {}: {e}", dir.display())))?;
    }
    for (name, kind, f) in &fds {
        move_into_link_name_space(f.as_fd(), Some(*kind))
            .map_err(|e| enter(format!("joining the {name} namespace: {e}")))?;
    }
    drop(fds);
    // A terminal from the container's own devpts (so that it has a name inside, as docker's).
    let pty = if req.tty {
        let out = std::io::stdout();
        let like = console.is_none().then(|| out.as_fd());
        Some(crate::tty::open(like).map_err(|e| enter(format!("opening a terminal: {e}")))?)
    } else {
        None
    };
    if let (Some(p), Some(sock)) = (&pty, &console) {
        crate::tty::send_master_on(sock, &p.master)
            .map_err(|e| enter(format!("sending the terminal: {e}")))?;
    }
    let cwd = req.cwd.clone().unwrap_or_else(|| cfg.cwd.clone());
    rustix::process::chdir(cwd.as_str()).map_err(|e| enter(format!("entering {cwd}: {e}")))?;
    if let Some((uid, gid)) = req.user {
        cfg.uid = uid;
        cfg.gid = gid;
    }
    if let Some(g) = &req.groups {
        cfg.additional_gids = g.clone();
    }
    // The container's seccomp filter, installed as the init installs it: before the capability
    // drop when no_new_privs is off (installing needs CAP_SYS_ADMIN then), last otherwise. The
    // spawned command inherits it.
    // The container's execution domain, which its commands inherit (runc's and youki's exec
    // too).
    if cfg.attrs.personality.is_some() {
        let only = crate::process::attrs::ProcessAttrs {
            personality: cfg.attrs.personality,
            ..Default::default()
        };
        crate::process::attrs::apply_at_exec(&only).map_err(enter)?;
    }
    let seccomp = match &cfg.seccomp {
        Some(p) => Some(
            crate::seccomp::compile(p, &cfg.capabilities)
                .map_err(|e| enter(format!("seccomp: {e}")))?,
        ),
        None => None,
    };
    if let (Some(f), false) = (&seccomp, cfg.no_new_privileges) {
        crate::seccomp::install(f)
            .map(drop)
            .map_err(|e| enter(format!("seccomp: {e}")))?;
    }
    crate::process::init::drop_privileges(&cfg).map_err(enter)?;
    if cfg.no_new_privileges {
        rustix::thread::set_no_new_privs(true).map_err(|e| enter(format!("no_new_privs: {e}")))?;
    }
    if let (Some(f), true) = (&seccomp, cfg.no_new_privileges) {
        crate::seccomp::install(f)
            .map(drop)
            .map_err(|e| enter(format!("seccomp: {e}")))?;
    }
    let mut cmd = Command::new(&req.args[0]);
    cmd.args(&req.args[1..]).env_clear();
    let base: &[String] = if req.replace_env { &[] } else { &cfg.env };
    for kv in base.iter().chain(&req.env) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    if !req.interactive && !req.keep_stdio {
        cmd.stdin(Stdio::null());
    }
    if req.detach && !req.keep_stdio {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    if let Some(p) = &pty {
        let dup = |f: &std::os::fd::OwnedFd| f.try_clone().map_err(|e| enter(format!("dup: {e}")));
        cmd.stdin(Stdio::from(dup(&p.slave)?))
            .stdout(Stdio::from(dup(&p.slave)?))
            .stderr(Stdio::from(dup(&p.slave)?));
        use std::os::unix::process::CommandExt;
        // SAFETY: runs in the child between fork and exec: only setsid(2) and ioctl(2), both
        // async-signal-safe, no allocation, no lock.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::os::fd::BorrowedFd::borrow_raw(0))?;
                Ok(())
            });
        }
    }
    // The caller's descriptors stay out of the container but stdio and the preserved ones:
    // marked here, in this process, which execs nothing else and exits after the command.
    crate::fds::only_stdio_and_preserved(opts.preserve_fds, &opts.preserve_holes)
        .map_err(|e| enter(format!("closing inherited descriptors: {e}")))?;
    let mut child = cmd.spawn().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        let what = if code == 127 {
            "not found"
        } else {
            "cannot be run"
        };
        ExecError::Command {
            code,
            message: format!("{:?}: {what}: {e}", req.args[0]),
        }
    })?;
    if let Some(f) = pid_file.as_mut() {
        use std::io::Write;
        f.write_all(child.id().to_string().as_bytes())
            .map_err(|e| enter(format!("writing the pid file: {e}")))?;
    }
    if req.detach {
        return Ok(0);
    }
    if let (Some(p), None) = (pty, &req.console_socket) {
        // Our copies of the slave must go, or the master never sees the end.
        drop(p.slave);
        drop(cmd);
        let _raw = req
            .interactive
            .then(|| crate::tty::RawMode::enter(std::io::stdin().as_fd()))
            .flatten();
        let end = crate::tty::relay_detachable(&p.master, req.interactive, &req.detach_keys);
        if end == crate::tty::RelayEnd::Detached {
            if single_threaded && hold_terminal(&p.master) {
                drop(_raw);
                eprintln!("\r\nread escape sequence");
                return Ok(0);
            }
            // Cannot hand the terminal over: go on relaying.
            crate::tty::relay(&p.master, req.interactive);
        }
    }
    let st = child.wait().map_err(|e| enter(format!("waiting: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(st
        .code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(255))
}

/// After a detach: a child of ours keeps the terminal's master open (the command would get
/// a hangup when it closes) and reads what the command prints into nothing, until the
/// command is gone. The caller has one thread. False if the fork failed.
fn hold_terminal(master: &std::os::fd::OwnedFd) -> bool {
    // SAFETY: this process has one thread (the caller checked), so the child inherits no lock held
    // by another; the child only reads, then leaves with _exit without returning into the
    // caller's code.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    match pid {
        0 => {
            let _ = rustix::process::setsid();
            let mut buf = [0u8; 4096];
            while matches!(rustix::io::read(master, &mut buf), Ok(n) if n > 0) {}
            // SAFETY: ends the child at once, as the comment above says.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(0)
            }
        }
        p if p > 0 => true,
        _ => false,
    }
}

/// The directory of the container's cgroup `dir` that an `exec --cgroup` process joins:
/// `dir` itself, or its sub-cgroup `PATH` for the controllers named (all when none are; on
/// cgroup v1 a hierarchy is named by its directory under `/sys/fs/cgroup`). The sub-cgroup
/// must exist and lie inside the container's.
fn sub_cgroup(dir: &std::path::Path, spec: Option<&str>) -> Result<std::path::PathBuf, String> {
    let Some(spec) = spec else {
        return Ok(dir.to_owned());
    };
    let (controllers, path) = match spec.split_once(':') {
        Some((c, p)) => (Some(c), p),
        None => (None, spec),
    };
    if let Some(list) = controllers {
        // v1: the hierarchy's name is the directory below the cgroup root (`cpu,cpuacct`).
        let hierarchy = dir
            .strip_prefix("/sys/fs/cgroup")
            .ok()
            .and_then(|r| r.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = list
            .split(',')
            .any(|c| hierarchy.split(',').any(|h| h == c));
        if !named {
            return Ok(dir.to_owned());
        }
    }
    let rel = std::path::Path::new(path.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "--cgroup {spec:?}: a path inside the container's cgroup, without .."
        ));
    }
    let sub = dir.join(rel);
    if !sub.is_dir() {
        return Err(format!(
            "--cgroup {spec:?}: {} does not exist (create the sub-cgroup first)",
            sub.display()
        ));
    }
    Ok(sub)
}
