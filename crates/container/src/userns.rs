//! User namespaces: `--userns`, `--uidmap`/`--gidmap`, and a bundle's `uidMappings`.
//!
//! A container with a user namespace has its root mapped to an unprivileged range of host ids.
//! How it is built (see `process::init` for the order):
//! - the caller of the init (single-threaded) makes the namespace beforehand: a short-lived
//!   child unshares it, the caller writes its `uid_map`/`gid_map` and keeps
//!   `/proc/CHILD/ns/user` open ([`create`]);
//! - the init, still fully privileged in the host's user namespace, builds the root
//!   filesystem: each image layer becomes an **idmapped mount** ([`idmapped_tree`]), so the
//!   layers stay on disk once, owned by root, and are seen by the container as its own —
//!   no chown of a copy as podman needs without idmapped mounts; the per-container upper
//!   directory holds the shifted ids on disk;
//! - then it joins the namespace (`setns`) and unshares a mount namespace owned by it, so that
//!   every mount made before is locked beneath the container (a user namespace cannot undo
//!   them), and a privileged container may still mount its own things.
//!
//! `auto` ranges come from [`AUTO_BASE`] upward, [`AUTO_SIZE`] ids each, the lowest range no
//! other container holds (decided under the containers' lock by the caller).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of a uid or gid map: `size` ids from `container_id` inside are `host_id` outside.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the container.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// How many.
    pub size: u32,
}

/// Where `--userns=auto` ranges start on the host (above the usual `/etc/subuid` ranges of
/// login users, which start at 100000 and grow by 65536 per user).
pub const AUTO_BASE: u32 = 1 << 30;
/// The size of an `auto` range: a whole 16-bit id space, as podman's default.
pub const AUTO_SIZE: u32 = 65536;
/// How many `auto` ranges fit below 2^32 - 2^16 (ids near 2^32 are special).
const AUTO_SLOTS: u32 = ((u32::MAX - (1 << 16)) - AUTO_BASE) / AUTO_SIZE;

impl IdMap {
    /// Parses docker's and podman's `CONTAINER:HOST:SIZE`.
    pub fn parse(s: &str) -> Result<IdMap, String> {
        let bad = || {
            format!("invalid id map {s:?}: expected CONTAINER_ID:HOST_ID:SIZE, e.g. 0:100000:65536")
        };
        let mut it = s.split(':').map(|p| p.trim().parse::<u32>());
        let (Some(Ok(c)), Some(Ok(h)), Some(Ok(n)), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        if n == 0 || c.checked_add(n - 1).is_none() || h.checked_add(n - 1).is_none() {
            return Err(format!("{}: the range is empty or runs past 2^32", bad()));
        }
        Ok(IdMap {
            container_id: c,
            host_id: h,
            size: n,
        })
    }

    /// The host id of `id` inside, if this line maps it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.container_id)?;
        (off < self.size).then(|| self.host_id + off)
    }
}

/// The host id of container id `id` under `map`, if mapped.
pub fn host_id(map: &[IdMap], id: u32) -> Option<u32> {
    map.iter().find_map(|m| m.to_host(id))
}

/// The container id of host id `id` under `map`, if mapped.
pub fn container_id(map: &[IdMap], id: u32) -> Option<u32> {
    map.iter().find_map(|m| {
        let off = id.checked_sub(m.host_id)?;
        (off < m.size).then(|| m.container_id + off)
    })
}

/// The map's text as `/proc/PID/uid_map` takes it.
fn map_text(map: &[IdMap]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// The range of `--userns=auto` for a container, the lowest not overlapping any of `taken`
/// (the host ranges of the other containers' maps).
pub fn auto_range(taken: &[IdMap], size: u32) -> Option<IdMap> {
    let size = size.clamp(1, AUTO_SIZE);
    (0..AUTO_SLOTS).find_map(|slot| {
        let host = AUTO_BASE + slot * AUTO_SIZE;
        let free = taken.iter().all(|t| {
            let (a0, a1) = (u64::from(host), u64::from(host) + u64::from(size));
            let (b0, b1) = (
                u64::from(t.host_id),
                u64::from(t.host_id) + u64::from(t.size),
            );
            a1 <= b0 || b1 <= a0
        });
        free.then_some(IdMap {
            container_id: 0,
            host_id: host,
            size,
        })
    })
}

/// Makes a user namespace with these maps and returns a descriptor of it.
///
/// The caller must be single-threaded (it forks, and the child runs Rust code): the monitor
/// and the runtime's `create` are.
pub fn create(uid_map: &[IdMap], gid_map: &[IdMap]) -> io::Result<OwnedFd> {
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (done_r, done_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the caller is single-threaded, so the child inherits no lock held by another
    // thread; it only unshares, writes and reads a pipe, and exits without returning.
    #[allow(unsafe_code)]
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop((ready_r, done_w));
        // SAFETY: CLONE_FILES is not among the flags, and this process has one thread.
        #[allow(unsafe_code)]
        let ok = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
            .is_ok();
        let _ = std::fs::File::from(ready_w).write_all(if ok { b"y" } else { b"n" });
        // Wait for the parent to have written the maps and opened the namespace.
        let _ = std::fs::File::from(done_r).read(&mut [0u8; 1]);
        // SAFETY: _exit ends the forked child without running the parent's destructors.
        #[allow(unsafe_code)]
        unsafe {
            libc::_exit(0)
        };
    }
    drop((ready_w, done_r));
    let result = (|| {
        let mut b = [0u8; 1];
        std::fs::File::from(ready_r).read_exact(&mut b)?;
        if b[0] != b'y' {
            return Err(io::Error::other(
                "the kernel refused a new user namespace (user.max_user_namespaces?)",
            ));
        }
        let proc = format!("/proc/{pid}");
        // Written by a privileged process of the parent namespace: setgroups stays allowed.
        std::fs::write(format!("{proc}/uid_map"), map_text(uid_map))
            .map_err(|e| io::Error::new(e.kind(), format!("writing the uid map: {e}")))?;
        std::fs::write(format!("{proc}/gid_map"), map_text(gid_map))
            .map_err(|e| io::Error::new(e.kind(), format!("writing the gid map: {e}")))?;
        Ok(OwnedFd::from(std::fs::File::open(format!(
            "{proc}/ns/user"
        ))?))
    })();
    drop(done_w);
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out pointer.
    #[allow(unsafe_code)]
    unsafe {
        libc::waitpid(pid, &mut status, 0)
    };
    result
}

/// A detached copy of the mount at `path`, with its ids shifted through `userns` (an idmapped
/// mount): a file owned by 0 on disk is owned by the namespace's root in the copy.
pub fn idmapped_tree(path: &Path, userns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    let r = crate::mount_attr::apply(
        tree.as_fd(),
        crate::mount_attr::Attrs::default(),
        Some(userns),
        false,
    );
    if let Err(e) = r {
        return Err(io::Error::new(
            e.kind(),
            format!(
                "idmapping {}: {e} (the filesystem must support idmapped mounts: ext4, xfs, btrfs, tmpfs on Linux 6.3+)",
                path.display()
            ),
        ));
    }
    Ok(tree)
}

/// Whether this process is in a user namespace other than `pid`'s.
pub fn differs_from(pid: impl std::fmt::Display) -> bool {
    let ino = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    match (
        ino("/proc/self/ns/user"),
        ino(&format!("/proc/{pid}/ns/user")),
    ) {
        (Ok(a), Ok(b)) => a != b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse_and_translate() {
        let m = IdMap::parse("0:100000:65536").unwrap();
        assert_eq!(m.to_host(0), Some(100000));
        assert_eq!(m.to_host(65535), Some(165535));
        assert_eq!(m.to_host(65536), None);
        for bad in ["", "0:1", "0:1:0", "a:1:2", "0:1:2:3", "4294967295:0:2"] {
            assert!(IdMap::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn auto_ranges_skip_taken_ones() {
        let a = auto_range(&[], AUTO_SIZE).unwrap();
        assert_eq!(a.host_id, AUTO_BASE);
        let b = auto_range(&[a], AUTO_SIZE).unwrap();
        assert_eq!(b.host_id, AUTO_BASE + AUTO_SIZE);
        // A hand-made map overlapping the second slot pushes to the third.
        let odd = IdMap {
            container_id: 0,
            host_id: AUTO_BASE + AUTO_SIZE + 5,
            size: 10,
        };
        assert_eq!(
            auto_range(&[a, odd], AUTO_SIZE).unwrap().host_id,
            AUTO_BASE + 2 * AUTO_SIZE
        );
    }
}
