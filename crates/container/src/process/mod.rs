//! The processes of a running container, each in a file named after the process that runs
//! the code (youki's shape):
//!
//! - [`monitor`]: `corral __monitor`, one per container, outliving the CLI: creates the cgroup,
//!   starts the init in a new PID namespace, logs its output, reaps it, records the exit.
//! - [`init`]: forked by the monitor (or the runtime's `create`), PID 1 of the container until
//!   it execs the workload: enters the remaining namespaces, builds the root filesystem, joins
//!   the user namespace if any, drops privileges, execs.
//!
//! Nothing forks from a multi-threaded process: the monitor and the runtime are
//! single-threaded, so the forked init may run ordinary Rust code (see `launch_init`).

pub mod attrs;
pub mod init;
pub mod logsink;
pub mod monitor;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of an fd number passed on the command line by the parent process.
pub fn inherited(fd: RawFd) -> Option<OwnedFd> {
    // An fd passed by number must be open (fcntl would fail otherwise) and in this process
    // nothing else claims it: the parent set it up for exactly this use.
    rustix::io::fcntl_getfd(
        // SAFETY: borrowing only for the duration of the fcntl; validity is what is checked.
        #[allow(unsafe_code)]
        unsafe {
            std::os::fd::BorrowedFd::borrow_raw(fd)
        },
    )
    .ok()?;
    // SAFETY: the fd is open (checked above) and owned by no other object in this process:
    // the monitor/CLI passed it to this process for this purpose alone.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Never pass it on: the workload must not hold the CLI's or the monitor's pipes open.
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC).ok()?;
    Some(owned)
}

/// Where one of the init's standard streams goes.
pub(crate) enum Stdio {
    /// The caller's own.
    Inherit,
    /// /dev/null.
    Null,
    /// This descriptor.
    Fd(OwnedFd),
}

/// The init process, as its parent sees it.
pub struct InitChild {
    pid: rustix::process::Pid,
}

impl InitChild {
    /// Its host pid.
    pub fn id(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    /// Waits for it to end.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        loop {
            match rustix::process::waitpid(Some(self.pid), rustix::process::WaitOptions::empty()) {
                Ok(Some((_, st))) => return Ok(std::process::ExitStatus::from_raw(st.as_raw())),
                Ok(None) => continue,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Kills it.
    pub fn kill(&self) -> std::io::Result<()> {
        rustix::process::kill_process(self.pid, rustix::process::Signal::KILL).map_err(Into::into)
    }
}

/// The init, started and in its cgroup, running its setup.
pub(crate) struct Launched {
    /// The init process (PID 1 of its new PID namespace).
    pub child: InitChild,
    /// Its status pipe: `CODE MESSAGE` on failure, `ready` when waiting for `start`, EOF when
    /// the workload was exec'd.
    pub status: std::fs::File,
}

/// Forks the init of the container in `state_dir` as PID 1 of a new PID namespace, puts it in
/// `cgroup`, and gives it the go.
///
/// The caller is single-threaded (the monitor, or the runtime's `create`/`run`), so the child
/// may run ordinary Rust code after `fork` — no lock can be held by a thread that does not
/// exist in the child — and it does, until it execs the workload. This saves the re-exec of the
/// corral binary (~1.5 ms and its page faults, charged to the container) that an
/// `exec(/proc/self/exe)` would cost.
pub(crate) fn launch_init(
    state_dir: &std::path::Path,
    cfg: &crate::ContainerConfig,
    netns: Option<std::os::fd::BorrowedFd<'_>>,
    cgroup: &crate::cgroups::Cgroup,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Launched, (i32, String)> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let e125 = |what: &str, e: std::io::Error| (125, format!("{what}: {e}"));
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| e125("pipe", e.into()))
    };
    let (sync_r, sync_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    // Compiled before the fork, so that a profile this kernel cannot take fails before any
    // setup, and the child does not pay for it.
    let seccomp = cfg
        .seccomp
        .as_ref()
        .map(|p| crate::seccomp::compile(p, &cfg.capabilities))
        .transpose()
        .map_err(|e| (125, init::error_chain(&e)))?;
    if cfg.network == crate::config::NetworkMode::Networks && netns.is_none() {
        return Err((
            125,
            "the container's network namespace was not given".into(),
        ));
    }
    // The user namespace, if any: made here, while the caller is single-threaded and still
    // outside any new PID namespace, or one the bundle names.
    let userns = match cfg.join_namespaces.iter().find(|(k, _)| k == "user") {
        Some((_, path)) => Some(OwnedFd::from(std::fs::File::open(path).map_err(|e| {
            (
                125,
                format!("opening user namespace {}: {e}", path.display()),
            )
        })?)),
        None if !cfg.uid_map.is_empty() => Some(
            crate::userns::create(&cfg.uid_map, &cfg.gid_map)
                .map_err(|e| e125("user namespace", e))?,
        ),
        None => None,
    };
    // Where the caller's later children go (hooks, say): back to its own PID namespace once
    // the init is forked.
    let own_pidns = cfg
        .hooks
        .as_ref()
        .and_then(|_| std::fs::File::open("/proc/self/ns/pid").ok());
    // Our next child is PID 1 of a new PID namespace, or a process of the one the bundle
    // names, or of the caller's when the bundle lists none; the caller itself stays outside.
    match cfg.join_namespaces.iter().find(|(k, _)| k == "pid") {
        Some((_, path)) => {
            let f = std::fs::File::open(path).map_err(|e| {
                (
                    125,
                    format!("opening PID namespace {}: {e}", path.display()),
                )
            })?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&f),
                Some(rustix::thread::LinkNameSpaceType::ProcessID),
            )
            .map_err(|e| {
                (
                    125,
                    format!("joining PID namespace {}: {e}", path.display()),
                )
            })?;
        }
        None if cfg.host_namespaces.iter().any(|n| n == "pid") => {}
        // SAFETY: CLONE_FILES is not among the flags, and the caller has one thread.
        #[allow(unsafe_code)]
        None => unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) }
            .map_err(|e| e125("new PID namespace", e.into()))?,
    }
    // SAFETY: the caller is single-threaded (see above), so the child inherits no lock held by
    // another thread and may allocate; it never returns into the caller's code: init::main
    // execs the workload or exits.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(e125(
            "forking the container init",
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(sync_w);
        drop(status_r);
        let wire = |s: Stdio, which: i32| -> std::io::Result<()> {
            let fd = match s {
                Stdio::Inherit => return Ok(()),
                Stdio::Null => std::fs::OpenOptions::new()
                    .read(which == 0)
                    .write(which != 0)
                    .open("/dev/null")?
                    .into(),
                Stdio::Fd(fd) => fd,
            };
            match which {
                0 => rustix::stdio::dup2_stdin(&fd)?,
                1 => rustix::stdio::dup2_stdout(&fd)?,
                _ => rustix::stdio::dup2_stderr(&fd)?,
            }
            Ok(())
        };
        if wire(stdin, 0)
            .and(wire(stdout, 1))
            .and(wire(stderr, 2))
            .is_err()
        {
            std::process::exit(125);
        }
        let (s, st) = (sync_r.as_raw_fd(), status_w.as_raw_fd());
        // init::main takes these descriptors over by number.
        std::mem::forget(sync_r);
        std::mem::forget(status_w);
        let prepared = init::Prepared {
            cfg,
            seccomp: seccomp.as_ref(),
            userns,
            netns,
        };
        init::main(state_dir, prepared, s, st);
    }
    drop(sync_r);
    drop(status_w);
    drop((stdin, stdout, stderr, userns));
    if let Some(ns) = &own_pidns {
        let _ = rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(ns),
            Some(rustix::thread::LinkNameSpaceType::ProcessID),
        );
    }
    let mut child = InitChild {
        pid: rustix::process::Pid::from_raw(pid).expect("positive pid"),
    };
    let mut status = std::fs::File::from(status_r);
    // The child makes its namespaces first (their kernel memory is not the container's) and
    // says `ns`; then it joins the cgroup. Anything else is its failure, `CODE MESSAGE`.
    let mut said = [0u8; 3];
    let mut got = 0;
    while got < said.len() {
        match std::io::Read::read(&mut status, &mut said[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e125("reading the container's status", e));
            }
        }
    }
    if &said[..got] != b"ns\n" {
        let mut rest = String::from_utf8_lossy(&said[..got]).into_owned();
        let _ = std::io::Read::read_to_string(&mut status, &mut rest);
        let _ = child.wait();
        let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest.as_str()));
        return Err((
            code.parse().unwrap_or(125),
            if msg.is_empty() {
                "the container's init died".to_owned()
            } else {
                msg.to_owned()
            },
        ));
    }
    if let Err(e) = cgroup.add(pid) {
        let _ = child.kill();
        let _ = child.wait();
        return Err((125, format!("joining the cgroup: {e}")));
    }
    // A bundle's first hooks: its namespaces exist and it is in its cgroup, nothing of its
    // root filesystem is built yet (a network hook configures its namespace now).
    if let Some(h) = &cfg.hooks {
        let state = crate::hooks::state_of(cfg, "created", Some(pid));
        let ran = crate::hooks::run("prestart", &h.prestart, &state, None)
            .and_then(|()| crate::hooks::run("createRuntime", &h.create_runtime, &state, None));
        if let Err(e) = ran {
            let _ = child.kill();
            let _ = child.wait();
            return Err((125, e.to_string()));
        }
    }
    if let Err(e) = std::fs::File::from(sync_w).write_all(b"g") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e125("starting the container", e));
    }
    Ok(Launched { child, status })
}
