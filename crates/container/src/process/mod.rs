//! The processes of a running container, each in a file named after the process that runs
//! the code (youki's shape):
//!
//! - [`monitor`]: `corral __monitor`, one per container, outliving the CLI: creates the cgroup,
//!   starts the init in a new PID namespace, logs its output, reaps it, records the exit.
//! - [`init`]: `corral __init`, PID 1 of the container until it execs the workload: enters the
//!   remaining namespaces, builds the root filesystem, drops privileges, execs.
//!
//! Both are the corral binary re-executed: nothing forks from a multi-threaded process, and
//! between fork and exec nothing runs at all (std's spawn), so no code has to be
//! async-signal-safe.

pub mod init;
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

/// The init, started and in its cgroup, running its setup.
pub(crate) struct Launched {
    /// The init process (PID 1 of its new PID namespace).
    pub child: std::process::Child,
    /// Its status pipe: `CODE MESSAGE` on failure, `ready` when waiting for `start`, EOF when
    /// the workload was exec'd.
    pub status: std::fs::File,
}

/// Starts `corral __init` for the container in `state_dir` as PID 1 of a new PID namespace,
/// puts it in `cgroup`, and gives it the go.
pub(crate) fn launch_init(
    exe: &std::path::Path,
    state_dir: &std::path::Path,
    cgroup: &crate::cgroups::Cgroup,
    stdin: std::process::Stdio,
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
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
    // The init's ends of the sync and status pipes survive its exec of corral.
    for fd in [&sync_r, &status_w] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())
            .map_err(|e| e125("fcntl", e.into()))?;
    }
    // Our next child is PID 1 of a new PID namespace; the caller itself stays outside.
    // SAFETY: CLONE_FILES is not among the flags, and the caller has one thread (the monitor,
    // or the runtime's `create`).
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) }
        .map_err(|e| e125("new PID namespace", e.into()))?;
    let mut child = std::process::Command::new(exe)
        .arg("__init")
        .arg(state_dir)
        .arg(sync_r.as_raw_fd().to_string())
        .arg(status_w.as_raw_fd().to_string())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .env_clear()
        .spawn()
        .map_err(|e| e125("starting the container init", e))?;
    drop(sync_r);
    drop(status_w);
    if let Err(e) = cgroup.add(child.id() as i32) {
        let _ = child.kill();
        let _ = child.wait();
        return Err((125, format!("joining the cgroup: {e}")));
    }
    if let Err(e) = std::fs::File::from(sync_w).write_all(b"g") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e125("starting the container", e));
    }
    Ok(Launched {
        child,
        status: std::fs::File::from(status_r),
    })
}
