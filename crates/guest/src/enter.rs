//! A process in a container root of the guest (`Exec.root`): a pod member's, whose files the
//! host shares into the VM.
//!
//! The program and working directory are looked up inside the root before the fork
//! (`openat2` with `RESOLVE_IN_ROOT`, so that the image's absolute symlinks such as
//! `/bin/sh -> /bin/busybox` resolve within it). Between fork and exec the child makes a mount
//! namespace of its own, mounts the guest's `/proc`, `/sys` and `/dev` into the root, moves the
//! root onto `/` and chroots into it (the agent's own root is the initramfs, which cannot be
//! pivoted away, so this is switch_root's way), then takes the user's ids: only syscalls, on
//! strings made before the fork.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::exec::Probe;

/// A container root to run a process in.
pub struct Root {
    fd: OwnedFd,
    path: CString,
    proc_: CString,
    sys: CString,
    dev: CString,
}

impl Root {
    /// Opens the root at `path` (an absolute directory of the guest).
    pub fn open(path: &str) -> io::Result<Root> {
        let p = Path::new(path);
        if !p.is_absolute() || p.components().any(|c| c.as_os_str() == "..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("container root {path:?} is not an absolute path"),
            ));
        }
        let fd = rustix::fs::open(
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("container root {path}: {e}"),
            )
        })?;
        let c =
            |sub: &str| CString::new(p.join(sub).as_os_str().as_bytes()).map_err(io::Error::other);
        Ok(Root {
            fd,
            path: c("")?,
            proc_: c("proc")?,
            sys: c("sys")?,
            dev: c("dev")?,
        })
    }

    /// What `p` (a path inside the root) is.
    pub fn probe(&self, p: &Path) -> Probe {
        let Ok(fd) = rustix::fs::openat2(
            &self.fd,
            p,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        ) else {
            return Probe::Missing;
        };
        match rustix::fs::fstat(&fd) {
            Ok(st)
                if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                    && st.st_mode & 0o111 != 0 =>
            {
                Probe::Executable
            }
            Ok(_) => Probe::NotExecutable,
            Err(_) => Probe::Missing,
        }
    }

    /// Whether `p` (inside the root) is a directory.
    pub fn is_dir(&self, p: &Path) -> bool {
        rustix::fs::openat2(
            &self.fd,
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .is_ok()
    }

    /// Makes `cmd` run in the root, in `cwd` (inside it), as `uid`:`gid` without
    /// supplementary groups.
    pub fn install(self, cmd: &mut Command, cwd: &Path, uid: u32, gid: u32) -> io::Result<()> {
        let cwd = CString::new(cwd.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let Root {
            fd,
            path,
            proc_,
            sys,
            dev,
        } = self;
        drop(fd);
        #[allow(unsafe_code)]
        // SAFETY: the hook runs in the child between fork and exec: it makes raw syscalls on
        // C strings built above, allocates nothing, and touches no lock (the io::Error it may
        // return from an errno holds no allocation).
        unsafe {
            cmd.pre_exec(move || {
                rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
                rustix::mount::mount_change(
                    c"/",
                    MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
                )?;
                // A mount point of its own, to move onto `/` below.
                rustix::mount::mount_bind_recursive(path.as_c_str(), path.as_c_str())?;
                rustix::mount::mount(
                    c"proc",
                    proc_.as_c_str(),
                    c"proc",
                    MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                    None,
                )?;
                rustix::mount::mount_bind_recursive(c"/sys", sys.as_c_str())?;
                rustix::mount::mount_bind_recursive(c"/dev", dev.as_c_str())?;
                rustix::process::chdir(path.as_c_str())?;
                rustix::mount::mount_move(c".", c"/")?;
                rustix::process::chroot(c".")?;
                rustix::process::chdir(c"/")?;
                rustix::process::chdir(cwd.as_c_str())?;
                if uid != 0 || gid != 0 {
                    rustix::thread::set_thread_groups(&[])?;
                    rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(gid))?;
                    rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))?;
                }
                Ok(())
            });
        }
        Ok(())
    }
}
