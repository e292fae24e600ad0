//! Named volumes, under `CORRAL_ROOT/volumes`:
//!
//! ```text
//! volumes/<name>/_data         what containers see (bound onto their mount point)
//! volumes/<name>/volume.json   name, creation time, labels
//! volumes/<name>/copy-up       present until the volume is first mounted: the first container
//!                              to mount it copies its image's content at the mount point in
//! volumes/.<name>.tmp-*, .rm-*  a volume being made or removed (never listed)
//! ```
//!
//! A volume appears whole or not at all: it is built in a temporary directory and renamed
//! into place, so two `run -v NAME:/x` racing to make the same volume both succeed and share
//! one. Removal renames it away first, then deletes it. What a crash leaves of either is swept
//! by the next [`Volumes::open`] once its process is gone ([`crate::staging`]). A volume is in
//! use while a container that exists (see [`crate::state`]) binds it.
//!
//! Copy-up follows docker: a fresh volume mounted over a directory of the image gets that
//! directory's content (and its owner and mode) once, on its first mount, if it is still empty.
//! The init does it in the container's mount namespace ([`claim_copy_up`], [`copy_up`]),
//! walking the image side with `openat2(RESOLVE_IN_ROOT)` and `O_NOFOLLOW`, so no symlink in
//! the image can make it read host files; symlinks are copied as symlinks, device nodes,
//! fifos and sockets are skipped.
//!
//! Limits: only the `local` driver; no per-volume lock, so a `volume rm` racing with a `run`
//! that mounts the same volume may remove it under that container (docker holds a lock).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::state::Containers;

/// Errors of the volume store.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A filesystem operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// `volume.json` does not parse.
    #[error("corrupt volume file {path}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: serde_json::Error,
    },
    /// The name has characters docker refuses.
    #[error("invalid volume name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
    /// No volume has this name.
    #[error("no such volume: {0}")]
    NotFound(String),
    /// A driver option (`-o`) that is unknown or does not mount.
    #[error("volume option {0}")]
    BadOption(String),
    /// The container store could not be read.
    #[error("checking which containers use the volume")]
    Containers(#[from] crate::state::StateError),
    /// Containers use the volume.
    #[error("volume {name} is in use by container {}: remove the container first", containers.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// Names of the containers that mount it.
        containers: Vec<String>,
    },
}

/// Result of volume operations.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |err| VolumeError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

/// A volume's record (`volume.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    /// Name.
    pub name: String,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The local driver's options (`type`, `device`, `o`): a filesystem mounted on `_data`
    /// (see [`crate::volume_mounts`]); empty for a plain directory.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The data file that marks a volume never mounted yet.
const COPY_UP: &str = "copy-up";
const DATA: &str = "_data";
const RECORD: &str = "volume.json";

/// True if `name` is a valid volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 255 bytes.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The volumes directory.
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

impl Volumes {
    /// Opens (creating) `CORRAL_ROOT/volumes`. The path is made absolute and canonical, so
    /// that containers' bind sources compare equal however the root was spelled.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
        let root = fs::canonicalize(&root).map_err(io_err("resolving", &root))?;
        crate::staging::sweep(&root);
        Ok(Volumes { root })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where a volume's content lives on the host: what containers bind.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir(name).join(DATA)
    }

    fn check(name: &str) -> Result<()> {
        if valid_name(name) {
            Ok(())
        } else {
            Err(VolumeError::BadName(name.to_owned()))
        }
    }

    /// Reads a volume's record.
    pub fn get(&self, name: &str) -> Result<Volume> {
        Self::check(name)?;
        let path = self.dir(name).join(RECORD);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        serde_json::from_slice(&data).map_err(|err| VolumeError::Corrupt { path, err })
    }

    /// Makes the volume unless it exists; returns it and whether this call made it. Safe
    /// against concurrent callers: exactly one makes it, all get it.
    pub fn create(&self, name: &str) -> Result<(Volume, bool)> {
        self.create_labelled(name, BTreeMap::new())
    }

    /// [`Self::create`] with labels (`volume create --label`); an existing volume keeps its
    /// own.
    pub fn create_labelled(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        self.create_with(name, labels, BTreeMap::new())
    }

    /// [`Self::create_labelled`] with the local driver's options (`volume create -o`): the
    /// filesystem they describe is mounted before this returns, or nothing is made. An
    /// existing volume is returned as it is when the options are the same, refused when not.
    pub fn create_with(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let mount = crate::volume_mounts::parse(&options)?;
        match self.get(name) {
            // `run -v NAME:/x` takes the volume as it is; `volume create -o` of an existing
            // one must not silently keep other options.
            Ok(v) if options.is_empty() || v.options == options => return Ok((v, false)),
            Ok(_) => {
                return Err(VolumeError::BadOption(format!(
                    "{name}: a volume of that name exists with other options; remove it first"
                )))
            }
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let vol = Volume {
            name: name.to_owned(),
            created: crate::state::now(),
            labels,
            options,
        };
        let made = self.build(name, &vol)?;
        if let (true, Some(m)) = (made.1, &mount) {
            if let Err(e) = crate::volume_mounts::ensure(m, &self.mountpoint(name)) {
                let _ = self.remove_unused(name);
                return Err(e);
            }
        }
        Ok(made)
    }

    /// Mounts a volume's filesystem if it has options and nothing is mounted (before a
    /// container that uses it starts: after a reboot it is gone).
    pub fn ensure_mounted(&self, name: &str) -> Result<()> {
        let v = self.get(name)?;
        match crate::volume_mounts::parse(&v.options)? {
            Some(m) => crate::volume_mounts::ensure(&m, &self.mountpoint(name)),
            None => Ok(()),
        }
    }

    /// The volume whose `_data` is `source` (a container's bind source), if it is one.
    pub fn volume_of(&self, source: &Path) -> Option<String> {
        let dir = source.strip_prefix(&self.root).ok()?;
        let mut parts = dir.components();
        let name = parts.next()?.as_os_str().to_str()?.to_owned();
        (parts.next()?.as_os_str() == DATA && valid_name(&name)).then_some(name)
    }

    fn build(&self, name: &str, vol: &Volume) -> Result<(Volume, bool)> {
        let vol = vol.clone();
        let tmp = crate::staging::path(&self.root, name, crate::staging::TMP);
        let built = (|| {
            fs::create_dir(&tmp)?;
            fs::create_dir(tmp.join(DATA))?;
            fs::set_permissions(tmp.join(DATA), fs::Permissions::from_mode(0o755))?;
            File::create(tmp.join(COPY_UP))?;
            File::create(tmp.join(RECORD))?.write_all(&serde_json::to_vec(&vol)?)?;
            Ok::<_, io::Error>(())
        })();
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&tmp);
            return Err(io_err("creating", &tmp)(e));
        }
        let dir = self.dir(name);
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok((vol, true)),
            // Another caller won the race (rename refuses a non-empty target): use theirs.
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    || e.kind() == io::ErrorKind::DirectoryNotEmpty =>
            {
                let _ = fs::remove_dir_all(&tmp);
                Ok((self.get(name)?, false))
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(io_err("creating", &dir)(e))
            }
        }
    }

    /// All volumes, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(io_err("listing", &self.root))? {
            let e = e.map_err(io_err("listing", &self.root))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                // Removed meanwhile, or a stray directory without a record.
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Names of the containers (of `containers`) whose binds use the volume.
    pub fn users(&self, name: &str, containers: &Containers) -> Result<Vec<String>> {
        let dir = self.dir(name);
        let mut users = Vec::new();
        for id in containers.ids()? {
            let Ok(cfg) = containers.config(&id) else {
                // Removed meanwhile.
                continue;
            };
            if cfg.binds.iter().any(|b| b.source.starts_with(&dir)) {
                let name = containers
                    .load_raw(&id)
                    .map(|s| s.name)
                    .unwrap_or_else(|_| id[..12].to_owned());
                users.push(name);
            }
        }
        users.sort();
        Ok(users)
    }

    /// Removes a volume unless a container uses it; returns the bytes it held.
    pub fn remove(&self, name: &str, containers: &Containers) -> Result<u64> {
        self.get(name)?;
        let users = self.users(name, containers)?;
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                containers: users,
            });
        }
        self.remove_unused(name)
    }

    /// Removes a volume without asking who uses it: its mounts first, so that deleting its
    /// files never reaches into a mounted filesystem.
    fn remove_unused(&self, name: &str) -> Result<u64> {
        let dir = self.dir(name);
        crate::volume_mounts::unmount_all(&dir.join(DATA))?;
        // Gone at once for everyone (rename), then deleted at leisure.
        let gone = crate::staging::path(&self.root, name, crate::staging::RM);
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_owned()))
            }
            Err(e) => return Err(io_err("removing", &dir)(e)),
        }
        let size = disk_use(&gone);
        // The volume is gone: what cannot be deleted now is swept later.
        if let Err(err) = crate::staging::remove_any(&gone) {
            tracing::warn!(volume = name, path = %gone.display(), %err, "deleting a removed volume's files");
        }
        Ok(size)
    }

    /// Removes every volume no container uses; returns their names and the bytes freed.
    pub fn prune(&self, containers: &Containers) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut total = 0;
        for v in self.list()? {
            match self.remove(&v.name, containers) {
                Ok(n) => {
                    total += n;
                    removed.push(v.name);
                }
                Err(VolumeError::InUse { .. } | VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((removed, total))
    }
}

/// Bytes held by the files under `path` (symlinks not followed; unreadable parts skipped).
fn disk_use(path: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(path) else {
        return 0;
    };
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        for e in fs::read_dir(path).into_iter().flatten().flatten() {
            n += disk_use(&e.path());
        }
    }
    n
}

/// True once per volume, for the first mount of a volume never mounted before: `source` is a
/// volume's `_data` and its copy-up mark could be removed by this caller.
pub fn claim_copy_up(source: &Path) -> bool {
    if source.file_name() != Some(DATA.as_ref()) {
        return false;
    }
    let Some(dir) = source.parent() else {
        return false;
    };
    dir.join(RECORD).is_file() && fs::remove_file(dir.join(COPY_UP)).is_ok()
}

/// Copies the directory `path` of the root filesystem `root` (resolved inside it) into the
/// volume directory `to`, if `to` is empty; also gives `to` the directory's owner and mode.
/// Nothing to copy (the image has no such directory) is not an error. `ids` turns the owner
/// seen in `root` into the owner to write (the identity, except for an idmapped volume, whose
/// disk holds the container's ids).
pub fn copy_up(
    root: &OwnedFd,
    path: &str,
    to: &Path,
    ids: &dyn Fn(u32, u32) -> (u32, u32),
) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    let src = match rfs::openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if fs::read_dir(to)?.next().is_some() {
        return Ok(());
    }
    let st = rfs::fstat(&src)?;
    let (uid, gid) = ids(st.st_uid, st.st_gid);
    lchown(to, Some(uid), Some(gid))?;
    fs::set_permissions(to, fs::Permissions::from_mode(st.st_mode & 0o7777))?;
    copy_tree(&src, to, ids)
}

fn copy_tree(src: &OwnedFd, to: &Path, ids: &dyn Fn(u32, u32) -> (u32, u32)) -> io::Result<()> {
    for entry in rfs::Dir::read_from(src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let dst = to.join(std::ffi::OsStr::new(
            std::str::from_utf8(name.to_bytes()).map_err(io::Error::other)?,
        ));
        let st = rfs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let mode = st.st_mode & 0o7777;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let sub = rfs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                fs::create_dir(&dst)?;
                copy_tree(&sub, &dst, ids)?;
            }
            FileType::RegularFile => {
                let fd = rfs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let mut from = File::from(fd);
                let mut out = File::create_new(&dst)?;
                io::copy(&mut from, &mut out)?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(src, name, Vec::new())?;
                let target = std::ffi::OsStr::new(
                    std::str::from_utf8(target.to_bytes()).map_err(io::Error::other)?,
                );
                std::os::unix::fs::symlink(target, &dst)?;
            }
            // Devices, fifos, sockets: docker copies them; corral does not create device nodes
            // in volumes.
            _ => continue,
        }
        let (uid, gid) = ids(st.st_uid, st.st_gid);
        lchown(&dst, Some(uid), Some(gid))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            // After chown, which clears set-id bits.
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        for ok in ["a", "data", "my_vol.1-x", "0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".tmp-x", "_x", "a/b", "a b", "ü", "..", "a:b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_is_idempotent_and_remove_frees() {
        let t = tempfile::tempdir().unwrap();
        let vols = Volumes::open(t.path().join("volumes")).unwrap();
        let cs = Containers::open(t.path().join("containers")).unwrap();
        let (v, made) = vols.create("data").unwrap();
        assert!(made);
        assert!(vols.mountpoint("data").is_dir());
        let (again, made) = vols.create("data").unwrap();
        assert!(!made);
        assert_eq!(v, again);
        assert_eq!(vols.list().unwrap(), vec![v]);
        assert!(matches!(
            vols.create("bad/name"),
            Err(VolumeError::BadName(_))
        ));
        vols.remove("data", &cs).unwrap();
        assert!(vols.list().unwrap().is_empty());
        assert!(matches!(
            vols.remove("data", &cs),
            Err(VolumeError::NotFound(_))
        ));
    }

    #[test]
    fn racing_creates_share_one_volume() {
        let t = tempfile::tempdir().unwrap();
        let vols = Volumes::open(t.path()).unwrap();
        let made: Vec<bool> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| vols.create("race").unwrap().1))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.iter().filter(|m| **m).count(), 1);
        // No temporary directory is left.
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn crash_leftovers_neither_list_nor_hold_a_volume() {
        let t = tempfile::tempdir().unwrap();
        let vroot = t.path().join("volumes");
        // A `volume create` and a `volume rm` killed midway.
        fs::create_dir_all(vroot.join(".data.tmp-999999999-1-00/_data")).unwrap();
        fs::create_dir_all(vroot.join(".old.rm-999999999-1-00/_data")).unwrap();
        let vols = Volumes::open(&vroot).unwrap();
        assert_eq!(fs::read_dir(&vroot).unwrap().count(), 0, "swept");
        vols.create("data").unwrap();
        // A `run -v data:/d` killed before its container existed: its directory, not yet in
        // place, binds the volume but is no user of it.
        let cs = Containers::open(t.path().join("containers")).unwrap();
        let mut cfg = crate::ContainerConfig::defaults(vec![], vec!["true".into()]);
        cfg.binds.push(crate::config::Bind {
            source: vols.mountpoint("data"),
            destination: "/d".into(),
            readonly: false,
            idmap: true,
        });
        let half = cs.root().join(".abc.tmp-999999999-1-00");
        fs::create_dir_all(&half).unwrap();
        fs::write(half.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
        assert!(vols.users("data", &cs).unwrap().is_empty());
        // A container that exists is one.
        let s = crate::State::new(&crate::state::new_id().unwrap(), "user");
        cs.create(&s, &cfg).unwrap();
        assert_eq!(vols.users("data", &cs).unwrap(), vec!["user".to_owned()]);
        cs.remove(&s).unwrap();
        vols.remove("data", &cs).unwrap();
        assert_eq!(fs::read_dir(&vroot).unwrap().count(), 0);
    }

    #[test]
    fn copy_up_happens_once_and_copies_content() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc/app/sub")).unwrap();
        fs::write(rootfs.join("etc/app/sub/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", rootfs.join("etc/app/link")).unwrap();
        let vols = Volumes::open(t.path().join("volumes")).unwrap();
        vols.create("v").unwrap();
        let mp = vols.mountpoint("v");
        assert!(claim_copy_up(&mp));
        assert!(!claim_copy_up(&mp));
        let root = rfs::open(
            &rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        copy_up(&root, "/etc/app", &mp, &|u, g| (u, g)).unwrap();
        assert_eq!(fs::read(mp.join("sub/f")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(mp.join("link")).unwrap(),
            Path::new("/etc/shadow")
        );
        // Missing in the image: nothing to do.
        copy_up(&root, "/nope", &mp, &|u, g| (u, g)).unwrap();
    }
}
