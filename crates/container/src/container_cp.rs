//! `cp`: copy files between the host and a container, running or stopped.
//!
//! The container's side is reached through `/proc/PID/root` of its process, and every path on
//! that side is resolved by the kernel with `openat2(RESOLVE_IN_ROOT)`: a symlink planted in
//! the container resolves inside the container, never to the host (the class of
//! CVE-2018-15664 and CVE-2019-14271, both in `docker cp`). Below the named path, trees are
//! walked with `O_NOFOLLOW` one component at a time; symlinks are copied as symlinks;
//! devices, fifos and sockets are skipped.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::state::{Containers, StateError, Status};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The container does not run.
    #[error("container {0} is not running: cp reaches a container through its running process")]
    NotRunning(String),
    /// A file operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: String,
        /// The cause.
        #[source]
        err: io::Error,
    },
}

fn io_err<E: Into<io::Error>>(
    what: &'static str,
    path: impl AsRef<Path>,
) -> impl FnOnce(E) -> CpError {
    let path = path.as_ref().display().to_string();
    move |e| CpError::Io {
        what,
        path,
        err: e.into(),
    }
}

/// Opens the root of a container: a running one's through its process; a stopped one's as a
/// detached overlay of its layers and its own upper directory (the new mount API: mounted in
/// no namespace's tree, gone when the descriptor closes), or its bundle's root directory.
pub fn open_root(containers: &Containers, id: &str) -> Result<OwnedFd, CpError> {
    let s = containers.load(id)?;
    if let (Status::Running, Some(pid)) = (s.status, s.pid) {
        let p = format!("/proc/{pid}/root");
        return rfs::open(
            &p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("opening", &p));
    }
    let cfg = containers.config(id)?;
    if let Some(dir) = &cfg.rootfs {
        return rfs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("opening", dir));
    }
    if !cfg.uid_map.is_empty() {
        // Its layers are seen through idmapped mounts only while it runs.
        return Err(CpError::NotRunning(s.name));
    }
    detached_overlay(&cfg, &containers.dir(id))
}

/// The overlay a stopped container runs on, mounted nowhere (a VM pod's member's root is
/// this, moved into the pod's share).
pub fn detached_overlay(cfg: &crate::ContainerConfig, dir: &Path) -> Result<OwnedFd, CpError> {
    use rustix::mount::{
        fsconfig_create, fsconfig_set_string, fsmount, fsopen, FsMountFlags, FsOpenFlags,
        MountAttrFlags,
    };
    let mut lower: Vec<String> = cfg
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    if lower.is_empty() {
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(io_err("creating", &empty))?;
        lower.push(empty.display().to_string());
    }
    let fs =
        fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(io_err("opening", "overlay"))?;
    let set = |k: &str, v: &str| fsconfig_set_string(&fs, k, v);
    // One layer a call: an option string would hit the page-size limit of many layers.
    for l in &lower {
        set("lowerdir+", l)
            .or_else(|_| set("lowerdir", &lower.join(":")))
            .map_err(io_err("overlay lowerdir", l))?;
    }
    let upper = dir.join("upper");
    let work = dir.join("work");
    set("upperdir", &upper.display().to_string()).map_err(io_err("overlay upperdir", &upper))?;
    set("workdir", &work.display().to_string()).map_err(io_err("overlay workdir", &work))?;
    fsconfig_create(&fs).map_err(io_err("mounting the stopped container's root", dir))?;
    fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(io_err("mounting the stopped container's root", dir))
}

fn in_root(root: BorrowedFd<'_>, path: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    rfs::openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Whether `path` is a directory in the running container (resolved inside its root).
pub fn is_dir(containers: &Containers, id: &str, path: &str) -> Result<bool, CpError> {
    let root = open_root(containers, id)?;
    Ok(in_root(root.as_fd(), path, OFlags::PATH | OFlags::DIRECTORY).is_ok())
}

/// Copies `path` in the container to `dest` on the host (into it, if it is a directory).
pub fn copy_out(containers: &Containers, id: &str, path: &str, dest: &Path) -> Result<(), CpError> {
    let root = open_root(containers, id)?;
    let src = in_root(root.as_fd(), path, OFlags::PATH | OFlags::NOFOLLOW)
        .map_err(io_err("opening", path))?;
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| PathBuf::from("root"), PathBuf::from);
    let target = if dest.is_dir() {
        dest.join(name)
    } else {
        dest.to_owned()
    };
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let pdir = rfs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("opening", parent))?;
    let tname = target
        .file_name()
        .ok_or_else(|| io_err("naming", &target)(io::Error::other("no file name")))?;
    copy_node(src.as_fd(), pdir.as_fd(), tname.as_bytes(), path)
}

/// Copies `src` on the host to `path` in the container (into it, if it is a directory there).
pub fn copy_in(containers: &Containers, id: &str, src: &Path, path: &str) -> Result<(), CpError> {
    let root = open_root(containers, id)?;
    let s = rfs::open(
        src,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("opening", src))?;
    let name = src
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"root".to_vec());
    let (pdir, tname) = match in_root(root.as_fd(), path, OFlags::RDONLY | OFlags::DIRECTORY) {
        Ok(d) => (d, name),
        Err(Errno::NOENT | Errno::NOTDIR) => {
            let p = Path::new(path);
            let parent = p
                .parent()
                .map_or("/".to_owned(), |p| p.display().to_string());
            let d = in_root(root.as_fd(), &parent, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(io_err("opening", &parent))?;
            let n = p
                .file_name()
                .ok_or_else(|| io_err("naming", path)(io::Error::other("no file name")))?;
            (d, n.as_bytes().to_vec())
        }
        Err(e) => return Err(io_err("opening", path)(e)),
    };
    copy_node(s.as_fd(), pdir.as_fd(), &tname, &src.display().to_string())
}

/// Copies the node `src` (an O_PATH fd) to `name` in `dst_dir`.
fn copy_node(
    src: BorrowedFd<'_>,
    dst_dir: BorrowedFd<'_>,
    name: &[u8],
    label: &str,
) -> Result<(), CpError> {
    let st = rfs::fstat(src).map_err(io_err("reading", label))?;
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    let n = OsStr::from_bytes(name);
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let mut from = File::from(
                rfs::open(
                    format!("/proc/self/fd/{}", fd_num(src)),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err("opening", label))?,
            );
            let _ = rfs::unlinkat(dst_dir, n, AtFlags::empty());
            let to = rfs::openat(
                dst_dir,
                n,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                mode,
            )
            .map_err(io_err("creating", label))?;
            let mut to = File::from(to);
            io::copy(&mut from, &mut to).map_err(io_err("copying", label))?;
            rfs::fchmod(&to, mode).map_err(io_err("chmod", label))?;
        }
        FileType::Directory => {
            match rfs::mkdirat(dst_dir, n, mode) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io_err("creating", label)(e)),
            }
            let to = rfs::openat(
                dst_dir,
                n,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("opening", label))?;
            let from = rfs::open(
                format!("/proc/self/fd/{}", fd_num(src)),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("opening", label))?;
            for ent in rfs::Dir::read_from(&from).map_err(io_err("listing", label))? {
                let ent = ent.map_err(io_err("listing", label))?;
                let en = ent.file_name().to_bytes();
                if en == b"." || en == b".." {
                    continue;
                }
                let child = rfs::openat(
                    &from,
                    OsStr::from_bytes(en),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err("opening", label))?;
                let sub = format!("{label}/{}", String::from_utf8_lossy(en));
                copy_node(child.as_fd(), to.as_fd(), en, &sub)?;
            }
        }
        FileType::Symlink => {
            let target =
                rfs::readlinkat(src, "", Vec::new()).map_err(io_err("reading link", label))?;
            let _ = rfs::unlinkat(dst_dir, n, AtFlags::empty());
            rfs::symlinkat(target.as_c_str(), dst_dir, n)
                .map_err(io_err("creating link", label))?;
        }
        // Devices, fifos and sockets are not copied.
        _ => {}
    }
    Ok(())
}

fn fd_num(fd: BorrowedFd<'_>) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}
