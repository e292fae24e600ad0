//! `export`: a container's root filesystem as one tar stream (docker's `export`): the image's
//! files with the container's changes, without what is mounted on it (volumes, binds,
//! `/proc`, `/sys`, `/dev`: their mount points are written as empty directories or files).
//!
//! The tree is read through the container's root as `cp` opens it (a running container's
//! through its process, a stopped one's as a detached overlay), one component at a time with
//! `O_NOFOLLOW`: a symlink in the container is archived as a symlink and never followed.
//! A file that changes size while a running container writes it is cut or padded to the
//! size it had when it was listed, so the stream stays a valid archive.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::container_cp::{open_root, CpError};
use crate::state::Containers;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CpError + 'a {
    move |err| CpError::Io {
        what,
        path: path.display().to_string(),
        err,
    }
}

/// Writes the root filesystem of container `id` to `out` as a tar stream.
pub fn export(containers: &Containers, id: &str, out: impl Write) -> Result<(), CpError> {
    let root = open_root(containers, id)?;
    let dir = rfs::openat(
        &root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("opening the root of", Path::new(id))(e.into()))?;
    let st = rfs::fstat(&dir).map_err(|e| io_err("reading", Path::new("/"))(e.into()))?;
    let mut w = Walker {
        tar: tar::Builder::new(out),
        root_dev: st.st_dev,
        links: HashMap::new(),
    };
    w.dir(dir.as_fd(), Path::new(""))?;
    w.tar
        .into_inner()
        .and_then(|mut o| o.flush())
        .map_err(io_err("writing the archive of", Path::new(id)))
}

struct Walker<W: Write> {
    tar: tar::Builder<W>,
    /// The root's filesystem: anything on another is mounted on it.
    root_dev: u64,
    /// Files with several names already written: (dev, inode) -> the first name.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walker<W> {
    fn dir(&mut self, dir: BorrowedFd<'_>, at: &Path) -> Result<(), CpError> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let listing = rfs::Dir::read_from(dir).map_err(|e| io_err("listing", at)(e.into()))?;
        for e in listing {
            let e = e.map_err(|e| io_err("listing", at)(e.into()))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        // A stable order: the same tree gives the same archive.
        names.sort();
        for n in names {
            let name = std::ffi::OsStr::from_bytes(&n);
            let path = at.join(name);
            let Ok(st) = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                // Gone since it was listed (a running container deletes files).
                continue;
            };
            self.entry(dir, name, &path, &st)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::OsStr,
        path: &Path,
        st: &rfs::Stat,
    ) -> Result<(), CpError> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid.into());
        h.set_gid(st.st_gid.into());
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        let mounted = st.st_dev != self.root_dev;
        let fail = |e: io::Error| CpError::Io {
            what: "writing the archive entry of",
            path: path.display().to_string(),
            err: e,
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                self.tar
                    .append_data(&mut h, path, io::empty())
                    .map_err(fail)?;
                if mounted {
                    return Ok(());
                }
                let Ok(sub) = rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) else {
                    return Ok(());
                };
                self.dir(sub.as_fd(), path)?;
            }
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 && !mounted {
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        return self.tar.append_link(&mut h, path, first).map_err(fail);
                    }
                    self.links.insert(key, path.to_owned());
                }
                h.set_entry_type(tar::EntryType::Regular);
                if mounted {
                    // A file bound on the root (/etc/hosts ...): its place, not its content.
                    return self
                        .tar
                        .append_data(&mut h, path, io::empty())
                        .map_err(fail);
                }
                let size = st.st_size.max(0) as u64;
                h.set_size(size);
                let file: OwnedFd = match rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(f) => f,
                    Err(_) => return Ok(()),
                };
                let data = std::fs::File::from(file)
                    .take(size)
                    .chain(io::repeat(0))
                    .take(size);
                self.tar.append_data(&mut h, path, data).map_err(fail)?;
            }
            FileType::Symlink => {
                let Ok(target) = rfs::readlinkat(dir, name, Vec::new()) else {
                    return Ok(());
                };
                h.set_entry_type(tar::EntryType::Symlink);
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                self.tar.append_link(&mut h, path, target).map_err(fail)?;
            }
            t @ (FileType::CharacterDevice | FileType::BlockDevice) => {
                h.set_entry_type(if t == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                let dev = st.st_rdev;
                h.set_device_major(rustix::fs::major(dev)).map_err(fail)?;
                h.set_device_minor(rustix::fs::minor(dev)).map_err(fail)?;
                self.tar
                    .append_data(&mut h, path, io::empty())
                    .map_err(fail)?;
            }
            FileType::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                self.tar
                    .append_data(&mut h, path, io::empty())
                    .map_err(fail)?;
            }
            // Sockets live only while their process does: docker leaves them out too.
            _ => {}
        }
        Ok(())
    }
}
