//! Disks made for guests: an OCI image's merged filesystem as a raw ext4 image, and empty
//! ext4 disks for a guest's writable upper layer.
//!
//! An image disk is built without mounting any ext4: the image's unpacked layers (overlayfs
//! lower directories in the image store, whiteouts in overlay form) are mounted read-only as
//! one overlay, so whiteouts and opaque directories are applied by the kernel, and
//! `mkfs.ext4 -d` (e2fsprogs) copies that merged tree into a new file system image. The
//! overlay is unmounted whatever happens. Image disks are read-only lowers shared by every VM
//! of the image, so they have no journal; they are cached per image id (config digest) at
//! `<cache>/<hex>.ext4`, built under a lock file (`<cache>/<hex>.lock`, left in place) into a
//! temporary file and renamed.
//!
//! Both kinds are sparse files formatted with `assume_storage_prezeroed` (e2fsprogs 1.47):
//! a fresh file reads as zeros, so mke2fs writes no inode tables and the guest kernel runs no
//! lazy init; older e2fsprogs get `lazy_itable_init` instead.
//!
//! Limits: the overlay's mount options must fit in a page (about 40 layers at the store's
//! path lengths); building needs root (mounting overlayfs).

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use corral_image::{Digest, Image, Store};
use rustix::fs::FlockOperation;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// Smallest upper disk accepted: below this ext4's own metadata and journal crowd out data.
pub const MIN_UPPER_DISK: u64 = 64 << 20;
/// Free space added to an image disk beyond 1.3 times what its files use.
const IMAGE_SLACK: u64 = 64 << 20;
/// The label of image disks.
pub const IMAGE_LABEL: &str = "corral-image";
/// The label of upper disks.
pub const UPPER_LABEL: &str = "corral-upper";

/// Errors making disks.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
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
    /// The image's metadata is unusable.
    #[error("reading image {0}")]
    Image(String, #[source] corral_image::StoreError),
    /// A layer of the image is not unpacked in the store.
    #[error(
        "layer {0} of the image is not unpacked in the image store: pull or load the image again"
    )]
    LayerMissing(Digest),
    /// Mounting the layers as an overlay failed.
    #[error("mounting the image's layers as an overlay on {path} (needs root and overlayfs)")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// `mkfs.ext4` is not installed.
    #[error("mkfs.ext4 not found: install e2fsprogs (apt-get install e2fsprogs)")]
    MkfsMissing,
    /// `mkfs.ext4` failed.
    #[error("mkfs.ext4 failed for {path} ({status}): {stderr}")]
    MkfsFailed {
        /// The image file.
        path: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An upper disk below [`MIN_UPPER_DISK`].
    #[error("a disk of {0} bytes is too small: give at least 64M")]
    TooSmall(u64),
    /// The upper disk's file already exists.
    #[error("{0} already exists: remove it first, corral does not overwrite a disk")]
    Exists(PathBuf),
    /// `qemu-img` failed or is missing.
    #[error("qemu-img: {0}")]
    QemuImg(String),
    /// A size that does not parse.
    #[error(
        "invalid size {0:?}: give bytes or a number with a suffix K, M, G or T (e.g. 512M, 1.5G)"
    )]
    InvalidSize(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DiskError + 'a {
    move |err| DiskError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_name(dir: &Path, what: &str) -> PathBuf {
    dir.join(format!(
        ".{what}-{}-{}.tmp",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The ext4 disk of `image`'s merged filesystem, built once and cached at
/// `cache_dir/<image id hex>.ext4`; returns its path. Concurrent callers for the same image
/// wait for the first one's build.
pub fn image_disk(store: &Store, image: &Image, cache_dir: &Path) -> Result<PathBuf, DiskError> {
    let hex = image.id.hex();
    let out = cache_dir.join(format!("{hex}.ext4"));
    if out.is_file() {
        return Ok(out);
    }
    fs::create_dir_all(cache_dir).map_err(io_err("creating", cache_dir))?;
    let lock_path = cache_dir.join(format!("{hex}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("opening lock", &lock_path))?;
    rustix::fs::flock(&lock, FlockOperation::LockExclusive)
        .map_err(|e| io_err("locking", &lock_path)(e.into()))?;
    if out.is_file() {
        return Ok(out);
    }

    let mut layers = Vec::new();
    for d in image
        .diff_ids()
        .map_err(|e| DiskError::Image(image.id.to_string(), e))?
    {
        if !store.has_layer(&d) {
            return Err(DiskError::LayerMissing(d));
        }
        layers.push(store.layer_path(&d));
    }

    let started = std::time::Instant::now();
    let mut build = BuildDir::new(cache_dir, &hex[..16])?;
    let source = if layers.is_empty() {
        build.empty()
    } else {
        build.mount_overlay(&layers)?
    };
    let (bytes, inodes) = tree_usage(&source)?;
    let size = (bytes * 13 / 10 + IMAGE_SLACK).next_multiple_of(1 << 20);
    let inodes = inodes + inodes / 4 + 1024;

    let tmp = tmp_name(cache_dir, &hex[..16]);
    let res = (|| {
        sparse_file(&tmp, size)?;
        let mut args: Vec<String> = [
            "-q",
            "-F",
            "-b",
            "4096",
            "-I",
            "256",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-L",
            IMAGE_LABEL,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["-N".into(), inodes.to_string()]);
        args.extend(["-d".into(), source.display().to_string()]);
        mkfs(&args, "root_owner=0:0,", &tmp, size)?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, &out).map_err(io_err("renaming into place", &out))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    drop(build);
    res?;
    tracing::info!(image = %image.id, path = %out.display(), size, elapsed_ms = started.elapsed().as_millis() as u64, "built image disk");
    drop(lock);
    Ok(out)
}

/// Creates `path` as [`create_upper_disk`] does, from an empty disk of the same size made
/// once under `cache_dir` and copied (a 2 MiB copy instead of `mkfs.ext4` and `qemu-img
/// convert`: tens of milliseconds off every VM's creation).
pub fn create_upper_disk_cached(
    cache_dir: &Path,
    path: &Path,
    size_bytes: u64,
) -> Result<(), DiskError> {
    if size_bytes < MIN_UPPER_DISK {
        return Err(DiskError::TooSmall(size_bytes));
    }
    if path.symlink_metadata().is_ok() {
        return Err(DiskError::Exists(path.to_owned()));
    }
    let size = size_bytes / 4096 * 4096;
    fs::create_dir_all(cache_dir).map_err(io_err("creating", cache_dir))?;
    let blank = cache_dir.join(format!("empty-{size}.qcow2"));
    if !blank.is_file() {
        // Made aside and linked into place: concurrent makers do not see half a disk.
        let tmp = tmp_name(cache_dir, "empty");
        create_upper_disk(&tmp, size)?;
        let linked = fs::hard_link(&tmp, &blank);
        let _ = fs::remove_file(&tmp);
        if let Err(e) = linked {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_err("creating", &blank)(e));
            }
        }
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tmp_name(dir, "upper");
    let res = (|| {
        fs::copy(&blank, &tmp).map_err(io_err("copying", &blank))?;
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                DiskError::Exists(path.to_owned())
            } else {
                io_err("creating", path)(e)
            }
        })
    })();
    let _ = fs::remove_file(&tmp);
    res
}

/// Creates `path`, a qcow2 disk of `size_bytes` (rounded down to 4 KiB) holding an empty ext4
/// filesystem labelled `corral-upper`: formatted sparse and converted in milliseconds. Refuses sizes below 64 MiB and an
/// existing `path`.
pub fn create_upper_disk(path: &Path, size_bytes: u64) -> Result<(), DiskError> {
    if size_bytes < MIN_UPPER_DISK {
        return Err(DiskError::TooSmall(size_bytes));
    }
    if path.symlink_metadata().is_ok() {
        return Err(DiskError::Exists(path.to_owned()));
    }
    let size = size_bytes / 4096 * 4096;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tmp_name(dir, "upper");
    let res = (|| {
        sparse_file(&tmp, size)?;
        let args: Vec<String> = ["-q", "-F", "-b", "4096", "-m", "0", "-L", UPPER_LABEL]
            .iter()
            .map(|s| s.to_string())
            .collect();
        mkfs(&args, "", &tmp, size)?;
        // qcow2 on disk: internal snapshots (with or without the machine's memory) and
        // copy-on-write clones need it. The conversion of a fresh sparse filesystem copies
        // only its few metadata blocks.
        let qcow = tmp_name(dir, "upper-qcow2");
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&tmp)
            .arg(&qcow)
            .output();
        let _ = fs::remove_file(&tmp);
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let _ = fs::remove_file(&qcow);
                return Err(DiskError::QemuImg(
                    String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                ));
            }
            Err(e) => {
                return Err(DiskError::QemuImg(format!(
                    "cannot run qemu-img ({e}): apt-get install qemu-utils"
                )))
            }
        }
        let tmp = qcow;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing", &tmp))?;
        // A hard link refuses to replace an existing file, where rename would not.
        let linked = fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                DiskError::Exists(path.to_owned())
            } else {
                io_err("creating", path)(e)
            }
        });
        let _ = fs::remove_file(&tmp);
        linked
    })();
    let _ = fs::remove_file(&tmp);
    res
}

/// A sparse file of `size` bytes at `path` (created, replacing nothing).
fn sparse_file(path: &Path, size: u64) -> Result<(), DiskError> {
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("creating", path))?;
    f.set_len(size).map_err(io_err("sizing", path))
}

/// Runs `mkfs.ext4 ARGS -E <extended><prezeroed> FILE SIZE`; the file must be freshly created
/// (zeros). `extended` is empty or ends with a comma (mke2fs keeps only the last `-E`).
fn mkfs(args: &[String], extended: &str, file: &Path, size: u64) -> Result<(), DiskError> {
    let tool = find_tool("mkfs.ext4").ok_or(DiskError::MkfsMissing)?;
    let size_arg = format!("{}k", size / 1024);
    let run = |init: &str| {
        Command::new(&tool)
            .args(args)
            .arg("-E")
            .arg(format!("{extended}{init}"))
            .arg(file)
            .arg(&size_arg)
            .output()
            .map_err(io_err("running", &tool))
    };
    // A fresh sparse file is zeros: mke2fs need not write inode tables, nor the guest zero
    // them later (e2fsprogs 1.47). Older versions know only lazy init.
    let mut out = run("assume_storage_prezeroed=1,nodiscard")?;
    if !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("assume_storage_prezeroed")
    {
        out = run("lazy_itable_init=1,lazy_journal_init=1,nodiscard")?;
    }
    if !out.status.success() {
        return Err(DiskError::MkfsFailed {
            path: file.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// `name` in `PATH` or the sbin directories, which a non-login root shell may lack.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Bytes the files under `root` need in 4 KiB blocks, and the number of inodes.
fn tree_usage(root: &Path) -> Result<(u64, u64), DiskError> {
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut stack = vec![root.to_owned()];
    let mut seen_links = std::collections::HashSet::new();
    while let Some(dir) = stack.pop() {
        inodes += 1;
        bytes += 4096;
        for e in fs::read_dir(&dir).map_err(io_err("reading", &dir))? {
            let e = e.map_err(io_err("reading", &dir))?;
            let p = e.path();
            let m = fs::symlink_metadata(&p).map_err(io_err("reading", &p))?;
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            if m.nlink() > 1 && !seen_links.insert((m.dev(), m.ino())) {
                continue;
            }
            inodes += 1;
            // Symlinks up to 60 bytes live in the inode; larger ones and files take blocks.
            if !(m.file_type().is_symlink() && m.len() < 60) {
                bytes += m.len().next_multiple_of(4096);
            }
        }
    }
    Ok((bytes, inodes))
}

/// A temporary build directory `cache/.corral-build-*` holding the overlay mount point and an
/// empty lower; its `Drop` unmounts the overlay (lazily if busy) and removes the directory.
struct BuildDir {
    dir: PathBuf,
    mounted: bool,
}

impl BuildDir {
    fn new(cache_dir: &Path, tag: &str) -> Result<Self, DiskError> {
        let dir = cache_dir.join(format!(
            ".corral-build-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        for sub in ["mnt", "empty"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        Ok(BuildDir {
            dir,
            mounted: false,
        })
    }

    fn empty(&self) -> PathBuf {
        self.dir.join("empty")
    }

    /// Mounts `layers` (bottom first) read-only as one overlay; returns the mount point.
    fn mount_overlay(&mut self, layers: &[PathBuf]) -> Result<PathBuf, DiskError> {
        let mnt = self.dir.join("mnt");
        // lowerdir lists the top layer first. The empty directory at the bottom makes two
        // lowers even for one layer, which read-only overlays without upperdir required on
        // older kernels, and is otherwise invisible.
        let mut lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| escape_lowerdir(&p.display().to_string()))
            .collect();
        lower.push(escape_lowerdir(&self.empty().display().to_string()));
        let opts = format!("lowerdir={}", lower.join(":"));
        let opts = CString::new(opts).map_err(|e| DiskError::Mount {
            path: mnt.clone(),
            err: io::Error::other(e),
        })?;
        mount(
            "corral-image",
            &mnt,
            "overlay",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            Some(opts.as_c_str()),
        )
        .map_err(|e| DiskError::Mount {
            path: mnt.clone(),
            err: e.into(),
        })?;
        self.mounted = true;
        Ok(mnt)
    }
}

/// Escapes the characters overlayfs splits `lowerdir` on (`:` and `,`, and `\`).
fn escape_lowerdir(p: &str) -> String {
    let mut s = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, ':' | ',' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        let mnt = self.dir.join("mnt");
        if self.mounted {
            if let Err(e) = unmount(&mnt, UnmountFlags::empty()) {
                tracing::warn!(path = %mnt.display(), error = %e, "unmounting the build overlay; detaching it");
                if let Err(e) = unmount(&mnt, UnmountFlags::DETACH) {
                    // Never remove_dir_all through a mount.
                    tracing::error!(path = %mnt.display(), error = %e, "cannot unmount the build overlay");
                    return;
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Parses a size: bytes, or a number (fractions allowed) with a suffix `K`, `M`, `G` or `T`
/// (powers of 1024, any case, an optional trailing `B` or `iB`): `2G`, `512M`, `1.5g`,
/// `1073741824`.
pub fn parse_size(s: &str) -> Result<u64, DiskError> {
    let bad = || DiskError::InvalidSize(s.to_owned());
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 10),
        Some(b'm') => (&t[..t.len() - 1], 20),
        Some(b'g') => (&t[..t.len() - 1], 30),
        Some(b't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(1 << shift).ok_or_else(bad);
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = v * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size(" 64k ").unwrap(), 64 << 10);
        for bad in ["", "G", "-1G", "1.5.5G", "12X", "1e3", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_size("lots").unwrap_err().to_string().contains("512M"));
    }

    #[test]
    fn lowerdir_separators_are_escaped() {
        assert_eq!(escape_lowerdir("/a:b,c\\d"), "/a\\:b\\,c\\\\d");
    }

    #[test]
    fn small_upper_disks_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let err = create_upper_disk(&t.path().join("u.ext4"), 10 << 20).unwrap_err();
        assert!(err.to_string().contains("64M"), "{err}");
        assert!(!t.path().join("u.ext4").exists());
    }
}
