//! What descriptors a container's process starts with: stdio, the `--preserve-fds` the caller
//! asked for, nothing else.
//!
//! The runtime is started by conmon, containerd's shim or a shell with whatever they hold open;
//! a descriptor without close-on-exec would otherwise reach the container, and one naming a
//! host directory is a way out of it (CVE-2024-21626: runc leaked a descriptor of the host's
//! `/sys/fs/cgroup`, and a workdir of `/proc/self/fd/7` escaped). As runc does just before its
//! exec, every descriptor from `3 + preserve` up is marked close-on-exec — one
//! `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11), or each entry of `/proc/self/fd` where
//! that fails — and the preserved ones are made inheritable.
//!
//! Marking rather than closing leaves the calling process's own descriptors (its status pipe,
//! the exec FIFO) usable until the exec.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};

/// Marks every descriptor from `3 + preserve` up close-on-exec, and clears the flag on
/// descriptors 3 to `3 + preserve - 1` that are open, but for `holes` (the placeholders of
/// [`hold_missing`], which stay close-on-exec).
pub fn only_stdio_and_preserved(preserve: u32, holes: &[RawFd]) -> io::Result<()> {
    let first = 3u32.saturating_add(preserve);
    cloexec_from(first)?;
    for fd in 3..first {
        let Ok(fd) = RawFd::try_from(fd) else { break };
        if holes.contains(&fd) {
            continue;
        }
        // SAFETY: borrowed for the two fcntl calls only; a descriptor that is not open makes
        // them fail with EBADF, which is skipped.
        #[allow(unsafe_code)]
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl_getfd(b) {
            fcntl_setfd(b, flags - FdFlags::CLOEXEC)?;
        }
    }
    Ok(())
}

/// Fills each of descriptors 3 to `3 + preserve - 1` that is not open with a close-on-exec
/// placeholder (`/dev/null`), held for the life of the process, and returns their numbers.
/// Called by the runtime before it opens anything itself: none of its own descriptors can then
/// take the number of one the caller said it passes (and reach the container), and the
/// container gets only those the caller really passed (`--preserve-fds 100` with three open
/// passes three, as youki and crun do).
pub fn hold_missing(preserve: u32) -> io::Result<Vec<RawFd>> {
    let mut holes = Vec::new();
    let mut null = None;
    for fd in 3..3u32.saturating_add(preserve) {
        let Ok(fd) = RawFd::try_from(fd) else { break };
        // SAFETY: borrowed for the fcntl only; EBADF is what is looked for.
        #[allow(unsafe_code)]
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        if fcntl_getfd(b).is_ok() {
            continue;
        }
        let src: &std::os::fd::OwnedFd = match &null {
            Some(n) => n,
            None => {
                // Opened where it may land on a hole, then moved above the range.
                let first = std::fs::File::open("/dev/null")?;
                let above = RawFd::try_from(3u32.saturating_add(preserve)).unwrap_or(RawFd::MAX);
                null.insert(rustix::io::fcntl_dupfd_cloexec(&first, above)?)
            }
        };
        // The lowest free number at or above `fd` is `fd` itself: it is free.
        let held = rustix::io::fcntl_dupfd_cloexec(src, fd)?;
        if std::os::fd::AsRawFd::as_raw_fd(&held) != fd {
            return Err(io::Error::other(format!(
                "descriptor {fd} was taken while the missing ones were held"
            )));
        }
        std::mem::forget(held);
        holes.push(fd);
    }
    Ok(holes)
}

/// Marks every descriptor from `first` up close-on-exec.
fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors of this
    // process; it reads no memory of ours.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            libc::c_uint::from(first),
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // ENOSYS before Linux 5.9, EINVAL for the flag before 5.11, or a seccomp filter of the
    // bundle's (installed before this when no_new_privs is off) that refuses it: walk the
    // table instead.
    // Collected first: marking while reading the directory would mark its own descriptor.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd: &RawFd| u32::try_from(fd).is_ok_and(|fd| fd >= first))
        .collect();
    for fd in fds {
        // SAFETY: as in only_stdio_and_preserved; the read_dir descriptor listed above is
        // closed by now, so its EBADF is skipped.
        #[allow(unsafe_code)]
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl_getfd(b) {
            fcntl_setfd(b, flags | FdFlags::CLOEXEC)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn descriptors_above_the_preserved_ones_close_on_exec() {
        // Every descriptor std opens is close-on-exec: clear the flag on two, then mark from
        // the higher one up.
        let a = std::fs::File::open("/dev/null").unwrap();
        let b = std::fs::File::open("/dev/null").unwrap();
        let (lo, hi) = if a.as_raw_fd() < b.as_raw_fd() {
            (a, b)
        } else {
            (b, a)
        };
        for f in [&lo, &hi] {
            fcntl_setfd(f.as_fd(), FdFlags::empty()).unwrap();
        }
        cloexec_from(hi.as_raw_fd() as u32).unwrap();
        assert!(!fcntl_getfd(lo.as_fd()).unwrap().contains(FdFlags::CLOEXEC));
        assert!(fcntl_getfd(hi.as_fd()).unwrap().contains(FdFlags::CLOEXEC));
    }
}
