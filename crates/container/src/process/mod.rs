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
