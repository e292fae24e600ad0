//! Unpacking one layer tarball into its own directory, in the form overlayfs reads as a lower
//! layer, without ever writing outside that directory.
//!
//! Layer tarballs are hostile input. Every path is resolved by the kernel with
//! `openat2(RESOLVE_IN_ROOT)` relative to the layer directory, so `..`, absolute paths and
//! symlinks (absolute or relative) all stay inside it (openat2(2); the class of bugs is
//! CVE-2018-15664 / CVE-2019-14271 in docker cp). Files are created with `O_EXCL|O_NOFOLLOW`
//! after removing whatever was there, so a symlink planted by an earlier entry is replaced, never
//! written through. Hard links are resolved the same way and made with `linkat` without
//! following, so they can only name files of this layer. Device nodes are skipped and counted:
//! a layer must not hand a container a host disk. Only `user.*` and `security.capability`
//! extended attributes are kept: `trusted.overlay.*` from a tarball could redirect overlay
//! lookups.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0:0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute on its directory
//! (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories").

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, Dev, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

/// The prefix of an OCI whiteout file name.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of an OCI opaque-directory marker.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What an unpack did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries written (files, directories, links, whiteouts).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes not created.
    pub skipped_devices: u64,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream itself is unreadable or corrupt.
    #[error("reading the layer tarball")]
    Read(#[source] io::Error),
    /// The stream does not start with a tar header.
    #[error("not a tar archive (or a corrupt one): its first header does not parse")]
    NotTar,
    /// One entry could not be written.
    #[error("layer entry {path:?}")]
    Entry {
        /// The entry's path as the tarball names it.
        path: String,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A hard link names a file that is not in this layer.
    #[error("layer entry {path:?}: hard link target {target:?} is not in the layer")]
    LinkTarget {
        /// The entry's path.
        path: String,
        /// The link's target.
        target: String,
    },
}

/// Unpacks the tar stream `reader` into the existing, empty directory `dest`.
///
/// The caller owns `reader`, so it can read on to the end (and finish a digest) afterwards.
pub fn unpack<R: Read>(reader: &mut R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Entry {
        path: dest.display().to_string(),
        err: e.into(),
    })?;
    let mut ex = Extractor {
        root,
        cache: None,
        dir_times: Vec::new(),
        stats: UnpackStats::default(),
        buf: vec![0u8; 256 * 1024],
    };
    let mut archive = tar::Archive::new(reader);
    for (i, entry) in archive.entries().map_err(UnpackError::Read)?.enumerate() {
        let mut entry = entry.map_err(|e| {
            if i == 0 {
                UnpackError::NotTar
            } else {
                UnpackError::Read(e)
            }
        })?;
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        match ex.entry(&mut entry, &raw) {
            Ok(()) => {}
            Err(EntryError::Io(err)) => {
                return Err(UnpackError::Entry { path: display, err });
            }
            Err(EntryError::LinkTarget(target)) => {
                return Err(UnpackError::LinkTarget {
                    path: display,
                    target,
                });
            }
        }
    }
    ex.finish().map_err(|err| UnpackError::Entry {
        path: "(directory times)".into(),
        err,
    })?;
    Ok(ex.stats)
}

enum EntryError {
    Io(io::Error),
    LinkTarget(String),
}

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError::Io(e)
    }
}

impl From<Errno> for EntryError {
    fn from(e: Errno) -> Self {
        EntryError::Io(e.into())
    }
}

/// Splits a tar path into its components, lexically, as if rooted at the layer: leading `/`,
/// `.` and empty parts vanish and `..` never climbs above the root. The kernel enforces the same
/// again at resolution time; this only makes names canonical.
pub fn clean_components(raw: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

struct Extractor {
    root: OwnedFd,
    /// The last parent directory opened, by its cleaned path: tarballs list a directory's files
    /// together, so this saves one path walk per file.
    cache: Option<(Vec<u8>, OwnedFd)>,
    dir_times: Vec<(Vec<u8>, i64)>,
    stats: UnpackStats,
    buf: Vec<u8>,
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl Extractor {
    /// Opens directory `path` (cleaned components) inside the root, without creating it.
    fn lookup_dir(&self, path: &[u8]) -> Result<OwnedFd, Errno> {
        let p: &[u8] = if path.is_empty() { b"." } else { path };
        rfs::openat2(
            &self.root,
            os(p),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            in_root(),
        )
    }

    /// Opens (creating missing components of) the directory holding an entry.
    fn parent(&mut self, comps: &[&[u8]]) -> Result<BorrowedFd<'_>, EntryError> {
        let key = join(comps);
        let hit = matches!(&self.cache, Some((k, _)) if *k == key);
        if !hit {
            let fd = match self.lookup_dir(&key) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => self.create_dirs(comps)?,
                Err(e) => return Err(e.into()),
            };
            self.cache = Some((key, fd));
        }
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("cached"))
    }

    fn create_dirs(&mut self, comps: &[&[u8]]) -> Result<OwnedFd, EntryError> {
        let mut cur = self.lookup_dir(b"")?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            cur = match self.lookup_dir(&prefix) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&cur, os(comps[i]), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.lookup_dir(&prefix).map_err(|e| match e {
                        // mkdir found something, yet it does not resolve: a symlink to
                        // nothing inside the layer (its target may be a host path).
                        Errno::NOENT => bad(&format!(
                            "{:?} is a symlink whose target is not in the layer; refusing to write through it",
                            String::from_utf8_lossy(&prefix)
                        )),
                        e => e.into(),
                    })?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(cur)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<(), EntryError> {
        let comps = clean_components(raw);
        let header = entry.header();
        let kind = header.entry_type();
        let mode = Mode::from_raw_mode(header.mode().map_err(EntryError::Io)? & 0o7777);
        // An empty owner field (some writers leave it blank) means root, as GNU tar reads it.
        let uid = u32::try_from(header.uid().unwrap_or(0)).map_err(|_| bad("uid out of range"))?;
        let gid = u32::try_from(header.gid().unwrap_or(0)).map_err(|_| bad("gid out of range"))?;
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;

        let Some((&name, parent)) = comps.split_last() else {
            // The layer root itself ("./"): only its metadata applies.
            if kind == EntryType::Directory {
                meta(self.root.as_fd(), uid, gid, mode)?;
            }
            return Ok(());
        };

        if name == OPAQUE_MARKER {
            let dir = self.parent(parent)?;
            rfs::fsetxattr(dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())?;
            self.stats.entries += 1;
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(bad("whiteout without a name").into());
            }
            let dir = self.parent(parent)?;
            replace(dir, hidden)?;
            rfs::mknodat(dir, os(hidden), FileType::CharacterDevice, Mode::empty(), 0)?;
            self.stats.entries += 1;
            return Ok(());
        }

        let xattrs = wanted_xattrs(entry)?;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let dir = self.parent(parent)?;
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = match rfs::openat(dir, os(name), flags, Mode::from_raw_mode(0o600)) {
                    Err(Errno::EXIST) => {
                        replace(dir, name)?;
                        rfs::openat(dir, os(name), flags, Mode::from_raw_mode(0o600))?
                    }
                    r => r?,
                };
                let mut file = std::fs::File::from(fd);
                self.stats.bytes += copy_with(&mut self.buf, entry, &mut file)?;
                let fd = OwnedFd::from(file);
                set_xattrs(&fd, &xattrs)?;
                meta(fd.as_fd(), uid, gid, mode)?;
                rfs::futimens(&fd, &times(mtime))?;
            }
            EntryType::Directory => {
                let dir = self.parent(parent)?;
                match rfs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700)) {
                    Err(Errno::EXIST) => {
                        let st = rfs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            replace(dir, name)?;
                            rfs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700))?;
                        }
                    }
                    r => r?,
                }
                let fd = rfs::openat(
                    dir,
                    os(name),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                set_xattrs(&fd, &xattrs)?;
                meta(fd.as_fd(), uid, gid, mode)?;
                self.dir_times.push((join(&comps), mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad("symlink without a target"))?
                    .into_owned();
                let dir = self.parent(parent)?;
                replace(dir, name)?;
                rfs::symlinkat(os(&target), dir, os(name))?;
                let (u, g) = ids(uid, gid);
                rfs::chownat(dir, os(name), u, g, AtFlags::SYMLINK_NOFOLLOW)?;
                rfs::utimensat(dir, os(name), &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
                // A new symlink may change what a cached path resolves to.
                self.cache = None;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad("hard link without a target"))?
                    .into_owned();
                let tcomps = clean_components(&target_raw);
                let lossy = || String::from_utf8_lossy(&target_raw).into_owned();
                let Some((&tname, tparent)) = tcomps.split_last() else {
                    return Err(EntryError::LinkTarget(lossy()));
                };
                let tdir = match self.lookup_dir(&join(tparent)) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT | Errno::NOTDIR) => {
                        return Err(EntryError::LinkTarget(lossy()))
                    }
                    Err(e) => return Err(e.into()),
                };
                let dir = self.parent(parent)?;
                let link = |dir| rfs::linkat(&tdir, os(tname), dir, os(name), AtFlags::empty());
                match link(dir) {
                    Err(Errno::EXIST) => {
                        replace(dir, name)?;
                        link(dir)?;
                    }
                    Err(Errno::NOENT) => return Err(EntryError::LinkTarget(lossy())),
                    r => r?,
                }
            }
            EntryType::Fifo => {
                let dir = self.parent(parent)?;
                replace(dir, name)?;
                rfs::mknodat(dir, os(name), FileType::Fifo, mode, 0 as Dev)?;
                let (u, g) = ids(uid, gid);
                rfs::chownat(dir, os(name), u, g, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            EntryType::Char | EntryType::Block => {
                tracing::warn!(path = %String::from_utf8_lossy(raw), "device node in layer not created");
                self.stats.skipped_devices += 1;
                return Ok(());
            }
            other => {
                tracing::warn!(path = %String::from_utf8_lossy(raw), kind = ?other, "unsupported layer entry skipped");
                return Ok(());
            }
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// Sets directory times last: creating their children changed them.
    fn finish(&mut self) -> io::Result<()> {
        self.cache = None;
        for (path, mtime) in std::mem::take(&mut self.dir_times) {
            match self.lookup_dir(&path) {
                Ok(fd) => rfs::futimens(&fd, &times(mtime))?,
                // Replaced by a later entry: nothing to set.
                Err(Errno::NOENT | Errno::NOTDIR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn meta(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: Mode) -> Result<(), EntryError> {
    if uid != 0 || gid != 0 {
        let (u, g) = ids(uid, gid);
        rfs::fchown(fd, u, g)?;
    }
    // After chown, which clears set-id bits.
    rfs::fchmod(fd, mode)?;
    Ok(())
}

/// Copies file content through one reused buffer: large writes, no allocation per file.
fn copy_with(buf: &mut [u8], r: &mut impl Read, w: &mut impl io::Write) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        let k = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

fn ids(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Removes whatever is at `name` in `dir` (a later entry of a layer replaces an earlier one).
fn replace(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => {
            // Remove the directory tree through the fd, never through a path that could be
            // swapped for a symlink.
            let sub = rfs::openat(
                dir,
                os(name),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            remove_tree(&sub)?;
            rfs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn remove_tree(dir: &OwnedFd) -> io::Result<()> {
    let mut names = Vec::new();
    for ent in rfs::Dir::read_from(dir)? {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push((n.to_vec(), ent.file_type()));
        }
    }
    for (n, ft) in names {
        if ft == FileType::Directory {
            let sub = rfs::openat(
                dir,
                os(&n),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            remove_tree(&sub)?;
            rfs::unlinkat(dir, os(&n), AtFlags::REMOVEDIR)?;
        } else {
            rfs::unlinkat(dir, os(&n), AtFlags::empty())?;
        }
    }
    Ok(())
}

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

fn wanted_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Xattrs> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                if name.starts_with(b"user.") || name == b"security.capability" {
                    out.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

fn set_xattrs(fd: &OwnedFd, xattrs: &Xattrs) -> io::Result<()> {
    for (name, value) in xattrs {
        match rfs::fsetxattr(fd, os(name), value, XattrFlags::empty()) {
            // A filesystem without user xattrs loses them, as tar does with a warning.
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_components_never_climbs_out() {
        assert_eq!(
            clean_components(b"../../etc/passwd"),
            vec![&b"etc"[..], b"passwd"]
        );
        assert_eq!(
            clean_components(b"/abs/./x//y/"),
            vec![&b"abs"[..], b"x", b"y"]
        );
        assert_eq!(clean_components(b"a/../../b"), vec![&b"b"[..]]);
        assert!(clean_components(b"./").is_empty());
    }
}

#[cfg(test)]
mod hostile {
    //! Hostile layer tarballs: each must end contained inside the layer directory, or refused.
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn raw_entry(out: &mut Vec<u8>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        if kind == EntryType::Char {
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn finish(mut v: Vec<u8>) -> Vec<u8> {
        v.extend_from_slice(&[0u8; 1024]);
        v
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Unpacks into `base/layer`, with `base/outside` as a sentinel that must stay empty.
    fn unpack_in(tar: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("layer")).unwrap();
        std::fs::create_dir(base.path().join("outside")).unwrap();
        let res = unpack(&mut &tar[..], &base.path().join("layer"));
        (base, res)
    }

    fn outside_untouched(base: &tempfile::TempDir) {
        let n = std::fs::read_dir(base.path().join("outside"))
            .unwrap()
            .count();
        assert_eq!(n, 0, "something was written outside the layer");
        let top: Vec<_> = std::fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top.len(), 2, "unexpected files beside the layer: {top:?}");
    }

    #[test]
    fn dotdot_and_absolute_paths_stay_inside() {
        let mut t = Vec::new();
        raw_entry(&mut t, "../../escape", EntryType::Regular, "", b"x");
        raw_entry(&mut t, "/abs-escape", EntryType::Regular, "", b"y");
        let (base, res) = unpack_in(&finish(t));
        res.unwrap();
        outside_untouched(&base);
        assert!(base.path().join("layer/escape").is_file());
        assert!(base.path().join("layer/abs-escape").is_file());
    }

    #[test]
    fn writes_through_symlinks_stay_inside() {
        let mut t = Vec::new();
        raw_entry(&mut t, "up", EntryType::Symlink, "../outside", b"");
        raw_entry(&mut t, "root", EntryType::Symlink, "/", b"");
        raw_entry(&mut t, "up/through-relative", EntryType::Regular, "", b"x");
        raw_entry(
            &mut t,
            "root/through-absolute",
            EntryType::Regular,
            "",
            b"y",
        );
        let (base, res) = unpack_in(&finish(t));
        // Either refused or contained; never outside.
        if res.is_ok() {
            assert!(base.path().join("layer/through-absolute").is_file());
        }
        outside_untouched(&base);
    }

    #[test]
    fn symlink_is_replaced_not_written_through() {
        let base = tempfile::tempdir().unwrap();
        let victim = base.path().join("victim-target");
        std::fs::write(&victim, b"precious").unwrap();
        let mut t = Vec::new();
        raw_entry(
            &mut t,
            "victim",
            EntryType::Symlink,
            victim.to_str().unwrap(),
            b"",
        );
        raw_entry(&mut t, "victim", EntryType::Regular, "", b"overwritten?");
        let layer = base.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        unpack(&mut &finish(t)[..], &layer).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(
            std::fs::read(layer.join("victim")).unwrap(),
            b"overwritten?"
        );
    }

    #[test]
    fn hard_links_cannot_reach_outside() {
        let mut t = Vec::new();
        raw_entry(&mut t, "hl", EntryType::Link, "../../../etc/passwd", b"");
        let (base, res) = unpack_in(&finish(t));
        assert!(
            matches!(res, Err(UnpackError::LinkTarget { .. })),
            "{res:?}"
        );
        outside_untouched(&base);
        let mut t = Vec::new();
        raw_entry(&mut t, "inside", EntryType::Regular, "", b"data");
        raw_entry(&mut t, "hl", EntryType::Link, "/inside", b"");
        let (base, res) = unpack_in(&finish(t));
        res.unwrap();
        let a = std::fs::metadata(base.path().join("layer/inside")).unwrap();
        let b = std::fs::metadata(base.path().join("layer/hl")).unwrap();
        assert_eq!(a.ino(), b.ino());
    }

    #[test]
    fn device_nodes_are_not_created() {
        if !is_root() {
            eprintln!("SKIPPED: device_nodes_are_not_created: needs root");
            return;
        }
        let mut t = Vec::new();
        raw_entry(&mut t, "dev/sda-like", EntryType::Char, "", b"");
        let (base, res) = unpack_in(&finish(t));
        assert_eq!(res.unwrap().skipped_devices, 1);
        assert!(!base.path().join("layer/dev/sda-like").exists());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if !is_root() {
            eprintln!("SKIPPED: whiteouts_become_overlay_whiteouts: needs root");
            return;
        }
        let mut t = Vec::new();
        raw_entry(&mut t, "etc/.wh.removed", EntryType::Regular, "", b"");
        raw_entry(&mut t, "data/.wh..wh..opq", EntryType::Regular, "", b"");
        let (base, res) = unpack_in(&finish(t));
        res.unwrap();
        let m = std::fs::symlink_metadata(base.path().join("layer/etc/removed")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        let v = rustix::fs::getxattr(
            base.path().join("layer/data"),
            "trusted.overlay.opaque",
            &mut [0u8; 4],
        )
        .unwrap();
        assert_eq!(v, 1);
    }

    #[test]
    fn garbage_is_refused_cleanly() {
        let (_base, res) = unpack_in(&[0x42u8; 2000]);
        assert!(res.is_err());
    }
}
