//! `diff` and the layer of `commit`: what a container changed, read from its overlay's upper
//! directory.
//!
//! overlayfs records a deletion as a character device 0/0 and a directory that replaces the
//! lower one as an "opaque" directory (`trusted.overlay.opaque = y`); OCI layers say the same
//! with `.wh.NAME` files and `.wh..wh..opq` (image-spec `layer.md`). The walk never follows a
//! symlink (entries are read with `lstat`, directories listed by path under the upper dir that
//! corral made, files opened with `O_NOFOLLOW`). With a user namespace, the upper directory
//! holds shifted host ids: they are shifted back, so the layer holds the container's own ids.
//! The mount points corral makes (`/proc`, `/sys`, `/dev`, and `/etc/hosts` and
//! `/etc/resolv.conf` on corral's networks) are not changes. Devices, fifos and sockets made in
//! the container are not carried into a layer.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::NetworkMode;
use crate::state::{Containers, StateError};
use crate::userns::IdMap;

/// Why the changes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DiffError + 'a {
    move |err| DiffError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

/// One change, as `docker diff` prints it (`A`, `C`, `D` and the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new file or directory.
    Added(String),
    /// A file or directory that the image has and the container changed (or one below it).
    Changed(String),
    /// A file or directory of the image that the container removed.
    Deleted(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added(p) => write!(f, "A {p}"),
            Change::Changed(p) => write!(f, "C {p}"),
            Change::Deleted(p) => write!(f, "D {p}"),
        }
    }
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut buf),
        Ok(n) if n >= 1 && buf[0] == b'y'
    )
}

/// Whether `rel` exists in any of the image's layers (resolved inside each layer).
fn in_layers(layers: &[PathBuf], rel: &str) -> bool {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
    layers.iter().any(|l| {
        let Ok(root) = rustix::fs::open(l, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) else {
            return false;
        };
        openat2(
            &root,
            rel,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .is_ok()
    })
}

/// The paths under the upper directory that are not the container's own changes: the mount
/// points of `/proc`, `/sys` and `/dev` (always mounted over: nothing the container writes
/// there reaches the upper directory), and of the files corral binds over (`/etc/hosts` and
/// `/etc/resolv.conf` on corral's networks, `/etc/hosts` when the engine wrote one).
fn excluded(network: NetworkMode, state_dir: &Path) -> &'static [&'static str] {
    if network == NetworkMode::Networks {
        &["proc", "sys", "dev", "etc/hosts", "etc/resolv.conf"]
    } else if state_dir.join("hosts").is_file() {
        &["proc", "sys", "dev", "etc/hosts"]
    } else {
        &["proc", "sys", "dev"]
    }
}

/// Lists the container's changes, sorted by path.
pub fn changes(containers: &Containers, id: &str) -> Result<Vec<Change>, DiffError> {
    let cfg = containers.config(id)?;
    let dir = containers.dir(id);
    let upper = dir.join("upper");
    let layers: Vec<PathBuf> = cfg.layers.iter().rev().cloned().collect();
    let skip = excluded(cfg.network, &dir);
    let mut out = Vec::new();
    changes_below(&upper, "", &layers, skip, &mut out)?;
    out.sort_by(|a, b| path_of(a).cmp(path_of(b)));
    Ok(out)
}

/// The changes under `rel`. A directory of the image is listed as changed only when something
/// below it changed (or it replaced the image's, opaque): one that holds nothing but corral's
/// mount points is not a change.
fn changes_below(
    upper: &Path,
    rel: &str,
    layers: &[PathBuf],
    skip: &[&str],
    out: &mut Vec<Change>,
) -> Result<(), DiffError> {
    for (_, r) in entries(upper, rel, skip)? {
        let path = upper.join(&r);
        let md = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
        let shown = format!("/{r}");
        if is_whiteout(&md) {
            out.push(Change::Deleted(shown));
        } else if in_layers(layers, &r) {
            if md.is_dir() && !is_opaque(&path) {
                let before = out.len();
                changes_below(upper, &r, layers, skip, out)?;
                if out.len() > before {
                    out.push(Change::Changed(shown));
                }
            } else {
                out.push(Change::Changed(shown));
            }
        } else {
            out.push(Change::Added(shown));
            if md.is_dir() {
                // Everything below a new directory is new: listed as docker lists it.
                changes_below(upper, &r, layers, skip, out)?;
            }
        }
    }
    Ok(())
}

/// The entries of `rel` under the upper directory, sorted, as (name, path from the top),
/// without those `skip` names.
fn entries(upper: &Path, rel: &str, skip: &[&str]) -> Result<Vec<(String, String)>, DiffError> {
    let dir = upper.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err("listing", &dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            (name, r)
        })
        .filter(|(_, r)| !skip.contains(&r.as_str()))
        .collect())
}

fn path_of(c: &Change) -> &str {
    match c {
        Change::Added(p) | Change::Changed(p) | Change::Deleted(p) => p,
    }
}

/// A host id back to the container's, through a map (`None`: not mapped, left as it is).
fn unshift(map: &[IdMap], host: u32) -> u32 {
    map.iter()
        .find(|m| host >= m.host_id && host - m.host_id < m.size)
        .map_or(host, |m| m.container_id + (host - m.host_id))
}

/// Writes the container's changes as an OCI layer: an uncompressed tar with whiteouts.
pub fn write_layer<W: Write>(containers: &Containers, id: &str, out: W) -> Result<(), DiffError> {
    let cfg = containers.config(id)?;
    let upper = containers.dir(id).join("upper");
    let skip = excluded(cfg.network, &containers.dir(id));
    write_upper(&upper, skip, &cfg.uid_map, &cfg.gid_map, out)
}

/// Writes an overlayfs upper directory (a VM's, read from its upper disk) as an OCI layer,
/// leaving out the paths in `skip` (relative, no leading `/`).
pub fn write_dir_layer<W: Write>(upper: &Path, skip: &[&str], out: W) -> Result<(), DiffError> {
    write_upper(upper, skip, &[], &[], out)
}

fn write_upper<W: Write>(
    upper: &Path,
    skip: &[&str],
    uid_map: &[IdMap],
    gid_map: &[IdMap],
    out: W,
) -> Result<(), DiffError> {
    let upper = upper.to_path_buf();
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let mut stack = vec![String::new()];
    // Hard links among the changed files stay hard links: the first path of each inode.
    let mut inodes: std::collections::HashMap<(u64, u64), String> =
        std::collections::HashMap::new();
    let fail = |p: &Path| {
        let p = p.to_owned();
        move |err: io::Error| DiffError::Io {
            what: "writing the layer at",
            path: p,
            err,
        }
    };
    while let Some(rel) = stack.pop() {
        for (name, r) in entries(&upper, &rel, skip)? {
            let path = upper.join(&r);
            let md = fs::symlink_metadata(&path).map_err(io_err("reading", &path))?;
            let mut h = tar::Header::new_gnu();
            h.set_mtime(md.mtime().max(0) as u64);
            h.set_uid(unshift(uid_map, md.uid()).into());
            h.set_gid(unshift(gid_map, md.gid()).into());
            h.set_mode(md.mode() & 0o7777);
            if is_whiteout(&md) {
                let wh = match rel.is_empty() {
                    true => format!(".wh.{name}"),
                    false => format!("{rel}/.wh.{name}"),
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                tar.append_data(&mut h, &wh, io::empty())
                    .map_err(fail(&path))?;
            } else if md.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{r}/"), io::empty())
                    .map_err(fail(&path))?;
                if is_opaque(&path) {
                    let mut o = tar::Header::new_gnu();
                    o.set_entry_type(tar::EntryType::Regular);
                    o.set_size(0);
                    o.set_mode(0o644);
                    tar.append_data(&mut o, format!("{r}/.wh..wh..opq"), io::empty())
                        .map_err(fail(&path))?;
                }
                stack.push(r);
            } else if md.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(io_err("reading", &path))?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, &r, &target).map_err(fail(&path))?;
            } else if md.is_file() && md.nlink() > 1 && inodes.contains_key(&(md.dev(), md.ino())) {
                let first = &inodes[&(md.dev(), md.ino())];
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                tar.append_link(&mut h, &r, first).map_err(fail(&path))?;
            } else if md.is_file() {
                if md.nlink() > 1 {
                    inodes.insert((md.dev(), md.ino()), r.clone());
                }
                // Never through a symlink swapped in meanwhile.
                use std::os::unix::fs::OpenOptionsExt;
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io_err("reading", &path))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(md.len());
                tar.append_data(&mut h, &r, f).map_err(fail(&path))?;
            }
            // Devices, fifos and sockets a container made are not carried into an image.
        }
    }
    tar.finish().map_err(fail(&upper))?;
    Ok(())
}
