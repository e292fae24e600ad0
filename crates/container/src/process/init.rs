//! The container's init, forked by the monitor (or the runtime's `create`) as PID 1 of a new
//! PID namespace.
//!
//! It enters new mount, UTS, IPC and network namespaces, says `ns` on the status pipe, waits
//! for the monitor's go (sent once it is inside the container's cgroup), enters a new cgroup
//! namespace, builds the root filesystem, applies
//! hostname, rlimits, user, capabilities, no_new_privs, marks every descriptor but stdio and
//! the preserved ones close-on-exec ([`crate::fds`]), installs the seccomp filter, and execs
//! the workload. If anything fails, it writes `CODE MESSAGE` to the status pipe (close-on-exec: a
//! successful exec closes it with nothing written) and exits with CODE: 127 when the command is
//! not found, 126 when it cannot be run, 125 for corral's own failures.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::config::{ContainerConfig, NetworkMode};

/// What the caller prepared before the fork: the init works from the caller's memory, so that
/// parsing the config and compiling the filter are neither repeated nor charged to the
/// container's memory limit (pages the child only reads stay shared).
pub struct Prepared<'a> {
    /// The container's config.
    pub cfg: &'a ContainerConfig,
    /// Its compiled seccomp filter.
    pub seccomp: Option<&'a crate::seccomp::Filters>,
    /// The container's user namespace, made with the config's maps (see [`crate::userns`]);
    /// the init joins it once the root filesystem is built.
    pub userns: Option<OwnedFd>,
    /// The network namespace to join instead of a new one (corral-net's networks).
    pub netns: Option<std::os::fd::BorrowedFd<'a>>,
}

/// Runs the init; never returns.
pub fn main(state_dir: &Path, prepared: Prepared<'_>, sync_fd: i32, status_fd: i32) -> ! {
    let Some(status) = super::inherited(status_fd) else {
        std::process::exit(125);
    };
    let _ = rustix::io::fcntl_setfd(&status, rustix::io::FdFlags::CLOEXEC);
    let (code, msg) = match run(state_dir, prepared, sync_fd, &status) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let mut f = std::fs::File::from(status);
    let _ = f.write_all(format!("{code} {msg}").as_bytes());
    std::process::exit(code);
}

enum Never {}

fn run(
    state_dir: &Path,
    prepared: Prepared<'_>,
    sync_fd: i32,
    status: &OwnedFd,
) -> Result<Never, (i32, String)> {
    let Prepared {
        cfg,
        seccomp,
        userns,
        netns,
    } = prepared;
    let own = |e: &dyn std::fmt::Display| (125, e.to_string());
    if !cfg.uid_map.is_empty() && userns.is_none() {
        return Err((125, "the container's user namespace was not made".into()));
    }
    if cfg.tty {
        // The terminal's slave is our stdin: make it the controlling terminal of a new session.
        crate::tty::make_controlling(std::io::stdin().as_fd())
            .map_err(|e| (125, format!("setting up the terminal: {e}")))?;
    }

    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC | UnshareFlags::NEWCGROUP;
    if cfg.network == NetworkMode::None {
        flags |= UnshareFlags::NEWNET;
    }
    for ns in &cfg.host_namespaces {
        match ns.as_str() {
            "ipc" => flags.remove(UnshareFlags::NEWIPC),
            "uts" => flags.remove(UnshareFlags::NEWUTS),
            "cgroup" => flags.remove(UnshareFlags::NEWCGROUP),
            "mount" => flags.remove(UnshareFlags::NEWNS),
            _ => {}
        }
    }
    if let Some(ns) = netns {
        rustix::thread::move_into_link_name_space(ns, Some(LinkNameSpaceType::Network))
            .map_err(|e| (125, format!("joining the network namespace: {e}")))?;
    }
    // Namespaces the caller made for us (a network namespace prepared by podman's netavark or
    // a CNI plugin, say): join them instead of making new ones.
    for (kind, path) in &cfg.join_namespaces {
        let (ty, flag) = match kind.as_str() {
            "net" | "network" => (LinkNameSpaceType::Network, UnshareFlags::NEWNET),
            "ipc" => (
                LinkNameSpaceType::InterProcessCommunication,
                UnshareFlags::NEWIPC,
            ),
            "uts" => (
                LinkNameSpaceType::HostNameAndNISDomainName,
                UnshareFlags::NEWUTS,
            ),
            "cgroup" => (LinkNameSpaceType::ControlGroup, UnshareFlags::NEWCGROUP),
            "mount" | "mnt" => (LinkNameSpaceType::Mount, UnshareFlags::NEWNS),
            "time" => (LinkNameSpaceType::Time, UnshareFlags::empty()),
            // Opened by the caller, joined after the root filesystem is built; the PID
            // namespace is joined by the caller before it forks us.
            "user" | "pid" => continue,
            other => {
                return Err((
                    125,
                    format!("joining an existing {other} namespace is not supported"),
                ))
            }
        };
        let f = std::fs::File::open(path)
            .map_err(|e| (125, format!("opening namespace {}: {e}", path.display())))?;
        rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&f), Some(ty))
            .map_err(|e| (125, format!("joining namespace {}: {e}", path.display())))?;
        flags.remove(flag);
    }
    // Runtime mode (`create` then `start`): the exec waits on this FIFO. Opened now as O_PATH,
    // while the state directory is still reachable.
    let fifo = rustix::fs::open(
        state_dir.join("exec.fifo"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok();
    // The namespaces are made before the go, that is before this process is in the
    // container's cgroup: their kernel memory (a copy of the host's mount tree, a network
    // namespace) is the runtime's work, not charged to the container's memory limit. All but
    // the cgroup namespace, whose root is the cgroup it is made in.
    let cgroupns = flags.contains(UnshareFlags::NEWCGROUP);
    flags.remove(UnshareFlags::NEWCGROUP);
    // SAFETY: CLONE_FILES is not among the flags, and this process has one thread.
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(|e| (125, format!("entering new namespaces: {e}")))?;
    if cfg.network == NetworkMode::None {
        crate::loopback::up().map_err(|e| (125, format!("bringing up lo: {e}")))?;
    }
    // A time namespace: ours only at the exec (its offsets must be written before anything
    // enters it).
    if let Some(offsets) = &cfg.attrs.time_offsets {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWTIME) }
            .map_err(|e| (125, format!("entering a new time namespace: {e}")))?;
        super::attrs::write_time_offsets(offsets).map_err(|e| (125, e))?;
    }

    rustix::io::write(status, b"ns\n")
        .map_err(|e| (125, format!("reporting the namespaces: {e}")))?;
    // The go: one byte once we are in the cgroup. EOF means the monitor gave up.
    let sync: OwnedFd = super::inherited(sync_fd).ok_or((125, "no sync pipe".to_owned()))?;
    let mut go = [0u8; 1];
    let mut sf = std::fs::File::from(sync);
    if sf.read(&mut go).map_err(|e| own(&e))? != 1 {
        return Err((125, "the monitor went away before the start".into()));
    }
    drop(sf);
    if cgroupns {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWCGROUP) }
            .map_err(|e| (125, format!("entering a new cgroup namespace: {e}")))?;
    }
    // The seccomp agent's socket, if the profile has one: a host path, reached now.
    let agent = match cfg
        .seccomp
        .as_ref()
        .and_then(|p| p.listener_path.as_deref())
    {
        Some(path) if seccomp.is_some() => {
            Some(crate::seccomp::notify::connect(path).map_err(|e| own(&e))?)
        }
        _ => None,
    };
    // Our pid as the runtime sees it: the host's /proc is still mounted here.
    let host_pid = (cfg.hooks.is_some() || agent.is_some())
        .then(|| {
            std::fs::read_link("/proc/self")
                .ok()?
                .to_str()?
                .parse::<i32>()
                .ok()
        })
        .flatten();
    let mut create_container = || match &cfg.hooks {
        Some(h) => crate::hooks::run(
            "createContainer",
            &h.create_container,
            &crate::hooks::state_of(cfg, "created", host_pid),
            None,
        )
        .map_err(std::io::Error::other),
        None => Ok(()),
    };
    crate::rootfs::setup(
        cfg,
        state_dir,
        userns.as_ref().map(|f| f.as_fd()),
        &mut create_container,
    )
    .map_err(|e| own(&error_chain(&e)))?;

    // Never in the host's UTS namespace: that would rename the host.
    if !cfg.hostname.is_empty() && !cfg.host_namespaces.iter().any(|n| n == "uts") {
        rustix::system::sethostname(cfg.hostname.as_bytes())
            .map_err(|e| (125, format!("setting the hostname: {e}")))?;
    }
    if let Some(d) = &cfg.attrs.domainname {
        rustix::system::setdomainname(d.as_bytes())
            .map_err(|e| (125, format!("setting the domain name: {e}")))?;
    }
    crate::rlimits::apply(&cfg.rlimits).map_err(|e| own(&error_chain(&e)))?;
    // Lowering it needs privileges in the host's user namespace: before joining the container's.
    if let Some(adj) = cfg.oom_score_adj {
        let _ = std::fs::write("/proc/self/oom_score_adj", adj.to_string());
    }
    if let Some(ns) = userns {
        // Everything mounted so far belongs to a mount namespace of the host's user namespace;
        // a new one owned by the container's locks it all beneath the container.
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::User))
            .map_err(|e| (125, format!("joining the user namespace: {e}")))?;
        // SAFETY: CLONE_FILES is not among the flags, and this process has one thread.
        #[allow(unsafe_code)]
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }
            .map_err(|e| (125, format!("a mount namespace of the user namespace: {e}")))?;
        // Root of the namespace (the host's root maps to nobody here), as the kernel has it
        // for a process that entered a new user namespace.
        let root = (rustix::process::Gid::ROOT, rustix::process::Uid::ROOT);
        rustix::thread::set_thread_res_gid(root.0, root.0, root.0)
            .and_then(|()| rustix::thread::set_thread_res_uid(root.1, root.1, root.1))
            .map_err(|e| (125, format!("becoming root of the user namespace: {e}")))?;
    }
    let cwd = if cfg.cwd.is_empty() {
        "/"
    } else {
        cfg.cwd.as_str()
    };
    if std::fs::create_dir_all(cwd).is_err() && !Path::new(cwd).is_dir() {
        return Err((125, format!("working directory {cwd} cannot be created")));
    }
    rustix::process::chdir(cwd).map_err(|e| (125, format!("entering {cwd}: {e}")))?;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(
        cfg.umask.unwrap_or(0o022) & 0o777,
    ));
    // A program that is not there fails `create`, not a container that `create` reported made
    // (runc's check): found the way the exec will look for it.
    if let Some(prog) = cfg.args.first() {
        find_executable(prog, &cfg.env)?;
    }

    // Without no_new_privs, installing the filter needs CAP_SYS_ADMIN, which the drop below
    // removes: install it now (see crate::seccomp for what the filter must then allow).
    let tell_agent = |listener: Option<OwnedFd>| -> Result<(), (i32, String)> {
        if let (Some(l), Some(conn)) = (listener, &agent) {
            let meta = cfg
                .seccomp
                .as_ref()
                .and_then(|p| p.listener_metadata.as_deref());
            let who = cfg.identity.clone().unwrap_or_default();
            crate::seccomp::notify::send(conn, &l, host_pid, meta, who.state("creating", host_pid))
                .map_err(|e| {
                    (
                        125,
                        format!("handing the seccomp listener to its agent: {e}"),
                    )
                })?;
        }
        Ok(())
    };
    if let (Some(f), false) = (seccomp, cfg.no_new_privileges) {
        tell_agent(crate::seccomp::install(f).map_err(|e| own(&error_chain(&e)))?)?;
    }
    super::attrs::apply_privileged(&cfg.attrs).map_err(|e| (125, e))?;
    drop_privileges(cfg).map_err(|e| (125, e))?;
    // If the monitor dies, the container dies with it rather than run on unsupervised (set
    // after the credential change, which clears it).
    if cfg.die_with_parent {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(|e| (125, format!("parent death signal: {e}")))?;
    }
    if cfg.no_new_privileges {
        rustix::thread::set_no_new_privs(true).map_err(|e| (125, format!("no_new_privs: {e}")))?;
    }
    // A filter with an agent goes on before `create` returns, so that the agent holds its
    // listener when the container is created (runc's order; its calls after this one are the
    // FIFO's open and write, and the exec).
    let mut late_filter = seccomp.filter(|_| cfg.no_new_privileges);
    if let Some(f) = late_filter.filter(|f| f.has_notify()) {
        tell_agent(crate::seccomp::install(f).map_err(|e| own(&error_chain(&e)))?)?;
        late_filter = None;
    }

    if let Some(fifo) = fifo {
        wait_for_start(&fifo, status).map_err(|e| {
            if !Path::new("/proc/self").exists() {
                // runc needs it there too: the FIFO is reopened through /proc/self/fd.
                (
                    125,
                    "the container has no /proc: mount proc at /proc in the spec's mounts".into(),
                )
            } else {
                (125, format!("waiting for start: {e}"))
            }
        })?;
    }
    if let Some(h) = &cfg.hooks {
        crate::hooks::run(
            "startContainer",
            &h.start_container,
            &crate::hooks::state_of(cfg, "created", host_pid),
            Some(&cfg.env),
        )
        .map_err(|e| own(&e))?;
    }
    // Nothing of the caller's reaches the workload but stdio and what it asked to pass (see
    // crate::fds): before the filter, which may not allow close_range.
    crate::fds::only_stdio_and_preserved(cfg.preserve_fds, &cfg.preserve_holes)
        .map_err(|e| (125, format!("closing inherited descriptors: {e}")))?;
    let Some((prog, args)) = cfg.args.split_first() else {
        return Err((125, "no command given and the image has none".into()));
    };
    let mut cmd = match &cfg.init {
        Some(_) => {
            let mut c = std::process::Command::new(crate::config::INIT_PATH);
            c.args(["--container-init", "--", prog]);
            c
        }
        None => std::process::Command::new(prog),
    };
    cmd.args(args).env_clear();
    for kv in &cfg.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    super::attrs::apply_at_exec(&cfg.attrs).map_err(|e| (125, e))?;
    // With no_new_privs, the filter goes on last, right before the exec.
    if let Some(f) = late_filter {
        tell_agent(crate::seccomp::install(f).map_err(|e| own(&error_chain(&e)))?)?;
    }
    let err = cmd.exec();
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    let what = if code == 127 {
        "not found"
    } else {
        "cannot be run"
    };
    Err((code, format!("{prog:?}: {what}: {err}")))
}

/// Looks `prog` up as execvp will, through the `PATH` of `env` (when it has no slash);
/// `(127, why)` when it is not an executable file.
fn find_executable(prog: &str, env: &[String]) -> Result<(), (i32, String)> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        return if runnable(Path::new(prog)) {
            Ok(())
        } else if Path::new(prog).exists() {
            Err((
                126,
                format!("exec: {prog:?}: permission denied (not an executable file)"),
            ))
        } else {
            Err((127, format!("exec: {prog:?}: no such file or directory")))
        };
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if path
        .split(':')
        .any(|d| runnable(&Path::new(if d.is_empty() { "." } else { d }).join(prog)))
    {
        return Ok(());
    }
    Err((
        127,
        format!("exec: {prog:?}: executable file not found in $PATH"),
    ))
}

/// An error and its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Tells `create` the container is ready (`ready` on the status pipe), then blocks until
/// `start` opens the FIFO for reading, as runc's `exec.fifo`.
///
/// The FIFO is opened as the process's user (it belongs to that user, see
/// `crate::oci_runtime`), after the privileges are dropped. A non-blocking open first checks
/// that it can be opened at all, before `ready`: one that fails then fails `create`, instead
/// of a container that `create` reported made and that dies unseen (ENXIO is the success: no
/// reader yet).
fn wait_for_start(fifo: &OwnedFd, status: &OwnedFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let early = match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => Some(f),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => None,
        Err(e) => return Err(e),
    };
    rustix::io::write(status, b"ready\n")?;
    let mut w = match early {
        // A reader was there already: the start came.
        Some(f) => f,
        None => std::fs::OpenOptions::new().write(true).open(&path)?,
    };
    w.write_all(b"0")
}

/// Applies the capability sets and the user as runc does (`finalizeNamespace`): the bounding
/// set first, then, with `PR_SET_KEEPCAPS` so that a non-root user keeps what it is given,
/// the groups and ids, then the inheritable, effective and permitted sets, then the ambient
/// set (see [`crate::capabilities`] for what was checked beforehand).
pub(crate) fn drop_privileges(cfg: &ContainerConfig) -> Result<(), String> {
    use caps::CapSet;
    let sets = crate::capabilities::ProcessCaps::of(cfg);
    for c in caps::all() {
        if !sets.bounding.contains(&c) {
            // Capabilities this kernel does not know cannot be dropped: ignore EINVAL.
            let _ = caps::drop(None, CapSet::Bounding, c);
        }
    }
    // Always, root too: the caller's supplementary groups must not reach the container (its
    // root gets exactly the groups it asked for, as runc and docker give), and in a user
    // namespace the host's groups mean nothing.
    {
        let gid = rustix::process::Gid::from_raw(cfg.gid);
        let uid = rustix::process::Uid::from_raw(cfg.uid);
        let groups: Vec<rustix::process::Gid> = cfg
            .additional_gids
            .iter()
            .map(|&g| rustix::process::Gid::from_raw(g))
            .collect();
        rustix::thread::set_keep_capabilities(true)
            .map_err(|e| format!("keeping capabilities across setuid: {e}"))?;
        rustix::thread::set_thread_groups(&groups).map_err(|e| format!("setting groups: {e}"))?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)
            .map_err(|e| format!("setting gid {}: {e}", cfg.gid))?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)
            .map_err(|e| format!("setting uid {}: {e}", cfg.uid))?;
        rustix::thread::set_keep_capabilities(false)
            .map_err(|e| format!("keeping capabilities across setuid: {e}"))?;
    }
    // In this order, each capset(2) valid on its own: effective is raised while permitted is
    // still the full set, and permitted lowered once effective is within it.
    let set = |which: CapSet, name: &str, value: &caps::CapsHashSet| {
        caps::set(None, which, value).map_err(|e| {
            let mut names: Vec<String> = value.iter().map(|c| c.to_string()).collect();
            names.sort();
            format!("setting the {name} capabilities [{}]: {e}", names.join(" "))
        })
    };
    set(CapSet::Inheritable, "inheritable", &sets.inheritable)?;
    set(CapSet::Effective, "effective", &sets.effective)?;
    set(CapSet::Permitted, "permitted", &sets.permitted)?;
    // Whatever the caller had in its ambient set goes; a kernel without ambient capabilities
    // (before 4.3) fails the clear, which matters only if some are asked.
    match caps::clear(None, CapSet::Ambient) {
        Err(e) if !sets.ambient.is_empty() => {
            return Err(format!("clearing the ambient capabilities: {e}"))
        }
        _ => {}
    }
    for &c in &sets.ambient {
        caps::raise(None, CapSet::Ambient, c)
            .map_err(|e| format!("raising ambient capability {c}: {e}"))?;
    }
    Ok(())
}
