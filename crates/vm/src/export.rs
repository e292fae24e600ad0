//! Moving a stopped VM to another corral host: `vm export` writes one archive, `vm import`
//! makes a new VM of it.
//!
//! The archive is a tar stream compressed with zstd (with its frame checksum). Its first entry
//! is `manifest.json` ([`Manifest`]: format and version, the VM's config, and every other
//! entry's name, size and sha256); then the files, each a regular file with a name from a
//! closed set ([`Part`]): the writable disk (`upper.qcow2`, flattened with `qemu-img convert`
//! when it has a backing file, so a clone exports whole), the image disk, the kernel and the
//! initramfs (so the other host needs neither the image nor the same kernel), the boot disk
//! and the cloud-init seed of a disk VM. Export reads each file twice (once to hash it for the
//! manifest, once to write it, checking it did not change between); nothing is held in memory.
//!
//! An archive is hostile input. [`unpack`] reads it as a stream into a staging directory and
//! refuses: an unknown format or version or field, a first entry other than the manifest, any
//! entry that is not a regular file (links, devices, directories), any name outside the closed
//! set (so no `..` and no absolute path), a duplicate, an entry the manifest does not list or
//! one it lists that is missing, a size or sha256 other than the manifest's, more bytes than
//! the disk has free, and a qcow2 disk that points at another file (a backing file or an
//! external data file would let the guest read a file of the host). [`import`] stages under
//! `vms/.import-*`, and only once everything checked does it move the kernel, initramfs and
//! image disk into the content-addressed cache (`vm-cache/imported/<sha256>/`, reused when
//! present) and rename the staging directory to `vms/<id>`; on any error the staging
//! directory is removed, so a truncated or corrupted archive leaves nothing behind.
//!
//! Limits: a running VM is refused (no memory snapshot in the archive); raw disks are written
//! back sparse (runs of zeros become holes), but the free-space check counts their full size.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use corral_image::digest::Hasher;
use corral_image::progress::Progress;
use serde::{Deserialize, Serialize};

use crate::lifecycle::{self, VmError};
use crate::store::{BootSource, Status, StoreError, VmConfig, VmState, Vms};

/// The `format` field of every manifest.
pub const FORMAT: &str = "corral-vm-export";
/// The manifest version this corral writes and reads.
pub const VERSION: u32 = 1;
/// The archive's first entry.
pub const MANIFEST_NAME: &str = "manifest.json";
/// The largest manifest accepted.
const MAX_MANIFEST: u64 = 1 << 20;
/// The largest file accepted in an archive (16 TiB).
const MAX_FILE: u64 = 1 << 44;
/// Bytes accepted after the tar stream's end (the tar crate pads to 1 KiB; other writers to
/// 10 KiB records).
const MAX_TRAILER: u64 = 1 << 20;
/// Where imported kernels, initramfs and image disks live, under the VM cache.
pub const IMPORTED_DIR: &str = "imported";

mod import;
pub use import::{import, ImportSpec, Imported};

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The VM's state.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The VM's lifecycle.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The VM runs.
    #[error("VM {0} is running: stop it first (`corral vm stop {0}`), then export it")]
    Running(String),
    /// The VM has data disks, which archives do not carry yet.
    #[error("VM {0} has data disks (`corral vm disk ls {0}`), which export does not carry yet: copy their data out and remove them (`corral vm disk rm`) first")]
    HasDataDisks(String),
    /// A file operation failed.
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
    /// Writing the archive failed.
    #[error("writing the archive")]
    Write(#[source] io::Error),
    /// Reading the archive failed (truncated, or not zstd-compressed tar).
    #[error("reading the archive (truncated or corrupted?)")]
    Read(#[source] io::Error),
    /// The archive breaks a rule.
    #[error("invalid VM archive: {0}")]
    Invalid(String),
    /// A file changed while it was exported.
    #[error("{0} changed during the export: try again")]
    Changed(PathBuf),
    /// `qemu-img` failed or is missing.
    #[error("qemu-img: {0}")]
    QemuImg(String),
    /// Not enough free space.
    #[error("the archive holds {need} bytes but {path} has {free} free: free some space")]
    NoSpace {
        /// Bytes needed.
        need: u64,
        /// Bytes free.
        free: u64,
        /// Where.
        path: PathBuf,
    },
    /// The VM joins networks this host does not have.
    #[error("the VM joins networks that do not exist on this host: {}: create them (`corral network create NAME`), or import with `--network NAME` (or `--network none`)", .0.join(", "))]
    MissingNetworks(Vec<String>),
}

type Result<T> = std::result::Result<T, ExportError>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ExportError + 'a {
    move |err| ExportError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

fn invalid(msg: impl Into<String>) -> ExportError {
    ExportError::Invalid(msg.into())
}

/// A file of the archive: the closed set of entry names besides the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// The VM's writable disk (qcow2, standalone).
    Upper,
    /// The image's ext4 disk (raw).
    ImageDisk,
    /// The guest kernel.
    Kernel,
    /// The initramfs.
    Initrd,
    /// A disk VM's boot disk (raw or qcow2, as the config says).
    BootDisk,
    /// A disk VM's cloud-init seed.
    Seed,
    /// The user-data its seed was made from (optional: VMs made before it was kept have
    /// none), to make the seed again for another name.
    UserData,
}

impl Part {
    const ALL: [Part; 7] = [
        Part::Upper,
        Part::ImageDisk,
        Part::Kernel,
        Part::Initrd,
        Part::BootDisk,
        Part::Seed,
        Part::UserData,
    ];

    /// The entry's name in the archive.
    pub fn name(self) -> &'static str {
        match self {
            Part::Upper => "upper.qcow2",
            Part::ImageDisk => "image.ext4",
            Part::Kernel => "kernel",
            Part::Initrd => "initrd",
            Part::BootDisk => "boot-disk",
            Part::Seed => "seed.iso",
            Part::UserData => crate::seed::USER_DATA,
        }
    }

    /// The part called `name`.
    pub fn from_name(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Shared, content-addressed on import (`vm-cache/imported/<sha256>/`), rather than the
    /// VM's own.
    fn cached(self) -> bool {
        matches!(self, Part::ImageDisk | Part::Kernel | Part::Initrd)
    }
}

/// One file of the archive, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The entry's name ([`Part::name`]).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, 64 lowercase hex digits.
    pub sha256: String,
}

/// The archive's first entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// When the export was made (RFC 3339).
    pub created: String,
    /// The VM's config on the exporting host (its paths are that host's).
    pub config: VmConfig,
    /// The other entries, in archive order.
    pub files: Vec<FileEntry>,
    /// The VM's snapshots that travel inside its writable disk (internal qcow2 snapshots:
    /// with `--memory` ones, the other host resumes the machine where it was). Empty when the
    /// disk had to be flattened (a clone's): flattening keeps only the current state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<crate::snapshot::Snapshot>,
}

/// The parts a VM of `cfg` has, with the paths its config names.
fn parts_of(cfg: &VmConfig) -> Vec<(Part, Option<PathBuf>)> {
    let mut parts = Vec::new();
    match &cfg.boot {
        BootSource::Image {
            image_disk,
            kernel,
            initrd,
            ..
        } => {
            parts.push((Part::ImageDisk, Some(image_disk.clone())));
            parts.push((Part::Kernel, Some(kernel.clone())));
            parts.push((Part::Initrd, Some(initrd.clone())));
        }
        BootSource::Kernel { kernel, initrd, .. } => {
            parts.push((Part::Kernel, Some(kernel.clone())));
            if let Some(i) = initrd {
                parts.push((Part::Initrd, Some(i.clone())));
            }
        }
        BootSource::Disk { path, .. } => parts.push((Part::BootDisk, Some(path.clone()))),
        // Refused by `export`; nothing of its own to carry.
        BootSource::Sandbox { .. } => {}
    }
    if let Some(u) = &cfg.upper_disk {
        parts.push((Part::Upper, Some(u.clone())));
    }
    if let Some(s) = &cfg.seed {
        parts.push((Part::Seed, Some(s.clone())));
    }
    parts.sort_by_key(|(p, _)| *p);
    parts
}

/// [`parts_of`], and the seed's user-data where the VM kept it (what an export carries).
fn parts_to_export(cfg: &VmConfig) -> Vec<(Part, Option<PathBuf>)> {
    let mut parts = parts_of(cfg);
    if let Some(s) = &cfg.seed {
        let ud = s.with_file_name(crate::seed::USER_DATA);
        if ud.is_file() {
            parts.push((Part::UserData, Some(ud)));
        }
    }
    parts
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Manifest {
    /// Parses and checks a manifest: format, version, no unknown field, a sane config, and
    /// exactly the files that config needs.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        // Peek at the version first, so that a newer archive says so rather than failing
        // on a field this version does not know.
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            version: Option<u32>,
        }
        let head: Head = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("{MANIFEST_NAME} is not valid JSON: {e}")))?;
        if head.format.as_deref() != Some(FORMAT) {
            return Err(invalid(format!(
                "{MANIFEST_NAME} is not a corral VM export (format {:?}, expected {FORMAT:?})",
                head.format.unwrap_or_default()
            )));
        }
        if head.version != Some(VERSION) {
            return Err(invalid(format!(
                "format version {:?}: this corral reads version {VERSION} (upgrade corral on this host?)",
                head.version
            )));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("{MANIFEST_NAME}: {e}")))?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        let cfg = &self.config;
        crate::store::check_name(&cfg.name)?;
        if cfg.cpus == 0 || cfg.cpus > 255 {
            return Err(invalid(format!("config: cpus {}", cfg.cpus)));
        }
        if cfg.memory_mib < 64 || cfg.memory_mib > 1 << 30 {
            return Err(invalid(format!("config: memory {}M", cfg.memory_mib)));
        }
        if let BootSource::Disk { format, .. } = &cfg.boot {
            if format != "raw" && format != "qcow2" {
                return Err(invalid(format!("config: disk format {format:?}")));
            }
        }
        if let BootSource::Image { .. } = &cfg.boot {
            if cfg.upper_disk.is_none() {
                return Err(invalid("config: an image VM without its writable disk"));
            }
        }
        let mut seen = BTreeSet::new();
        let mut total: u64 = 0;
        for f in &self.files {
            let part = Part::from_name(&f.name).ok_or_else(|| {
                invalid(format!("the manifest lists an unknown file {:?}", f.name))
            })?;
            if !seen.insert(part) {
                return Err(invalid(format!("the manifest lists {} twice", f.name)));
            }
            if !is_hex64(&f.sha256) {
                return Err(invalid(format!("{}: sha256 {:?}", f.name, f.sha256)));
            }
            if f.size > MAX_FILE {
                return Err(invalid(format!("{}: size {}", f.name, f.size)));
            }
            total = total.saturating_add(f.size);
        }
        let mut want: BTreeSet<Part> = parts_of(cfg).into_iter().map(|(p, _)| p).collect();
        // The seed's user-data comes with the seed, when the VM kept it.
        if want.contains(&Part::Seed) && seen.contains(&Part::UserData) {
            want.insert(Part::UserData);
        }
        if seen != want {
            let names =
                |s: &BTreeSet<Part>| s.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
            return Err(invalid(format!(
                "the manifest lists [{}] but a VM of this config needs [{}]",
                names(&seen),
                names(&want)
            )));
        }
        Ok(())
    }

    /// The sum of the files' sizes.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.size)
            .fold(0, u64::saturating_add)
    }

    fn entry(&self, part: Part) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == part.name())
    }
}

// ---------------------------------------------------------------------------------------
// Export

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The manifest written.
    pub manifest: Manifest,
}

/// A directory removed on drop (unless kept).
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn new(parent: &Path, prefix: &str) -> Result<TempDir> {
        fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        // Tagged with this process, so that what a crash leaves is swept (`Vms::ids`).
        let path = corral_net::fsutil::temp_path(parent, prefix, corral_net::fsutil::TMP);
        fs::create_dir(&path).map_err(io_err("creating", &path))?;
        Ok(TempDir { path, keep: false })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// What `qemu-img info` says of a qcow2 file: the files it points at.
fn qcow2_references(path: &Path) -> Result<Vec<String>> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2"])
        .arg(path)
        .output()
        .map_err(|e| {
            ExportError::QemuImg(format!(
                "cannot run qemu-img ({e}): apt-get install qemu-utils"
            ))
        })?;
    if !out.status.success() {
        return Err(ExportError::QemuImg(format!(
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| ExportError::QemuImg(format!("unreadable output of qemu-img info: {e}")))?;
    let mut refs = Vec::new();
    for key in ["backing-filename", "full-backing-filename"] {
        if let Some(b) = v[key].as_str() {
            refs.push(format!("backing file {b}"));
        }
    }
    if let Some(d) = v["format-specific"]["data"]["data-file"].as_str() {
        refs.push(format!("data file {d}"));
    }
    Ok(refs)
}

/// Hashes `path`: its size and sha256.
fn hash_file(path: &Path, progress: &dyn Progress, bar: &str) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        progress.advance(bar, n as u64);
    }
    Ok((h.len(), h.finish().hex().to_owned()))
}

/// Writes the archive of stopped VM `id` to `out`. Holds the VM's lock throughout, so the VM
/// cannot start meanwhile. `progress` sees a bar `hash` then a bar `write`, in bytes.
pub fn export(root: &Path, id: &str, out: impl Write, progress: &dyn Progress) -> Result<Exported> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let cfg = vms.config(id)?;
    let st = lifecycle::current_state(&vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        return Err(ExportError::Running(cfg.name.clone()));
    }
    if !cfg.data_disks.is_empty() {
        return Err(ExportError::HasDataDisks(cfg.name.clone()));
    }
    if matches!(cfg.boot, BootSource::Sandbox { .. }) {
        return Err(invalid(format!(
            "{} is a pod's VM: its containers live in the pod, export them (`corral commit`) instead",
            cfg.name
        )));
    }
    let _span = tracing::info_span!("vm_export", vm = %id).entered();
    let scratch = TempDir::new(&root.join("vms"), "export")?;
    let mut sources = Vec::new();
    let mut flattened = false;
    for (part, path) in parts_to_export(&cfg) {
        let Some(path) = path else { continue };
        let qcow2 = match (&cfg.boot, part) {
            (_, Part::Upper) => true,
            (BootSource::Disk { format, .. }, Part::BootDisk) => format == "qcow2",
            _ => false,
        };
        // A clone's disk is a thin layer over another: flatten it so the archive stands alone.
        let path = if qcow2 && !qcow2_references(&path)?.is_empty() {
            let flat = scratch.path.join(part.name());
            let o = Command::new("qemu-img")
                .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
                .arg(&path)
                .arg(&flat)
                .output()
                .map_err(|e| ExportError::QemuImg(format!("cannot run qemu-img: {e}")))?;
            if !o.status.success() {
                return Err(ExportError::QemuImg(
                    String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                ));
            }
            flattened |= part == Part::Upper;
            flat
        } else {
            path
        };
        sources.push((part, path));
    }
    let mut total = 0u64;
    for (_, p) in &sources {
        total += fs::metadata(p).map_err(io_err("reading", p))?.len();
    }
    progress.begin("hash", "hashing", Some(total));
    let mut files = Vec::new();
    for (part, path) in &sources {
        let (size, sha256) = hash_file(path, progress, "hash")?;
        files.push(FileEntry {
            name: part.name().to_owned(),
            size,
            sha256,
        });
    }
    progress.end("hash", "done");
    let snapshots = if flattened || cfg.upper_disk.is_none() {
        Vec::new()
    } else {
        crate::snapshot::list(&vms, id).map_err(|e| invalid(e.to_string()))?
    };
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: VERSION,
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        config: cfg,
        files,
        snapshots,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");

    let mut enc = zstd::Encoder::new(out, 3).map_err(ExportError::Write)?;
    enc.include_checksum(true).map_err(ExportError::Write)?;
    let mut tar = tar::Builder::new(enc);
    let header = |size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h
    };
    tar.append_data(&mut header(json.len() as u64), MANIFEST_NAME, &json[..])
        .map_err(ExportError::Write)?;
    progress.begin("write", "writing", Some(total));
    for ((_, path), entry) in sources.iter().zip(&manifest.files) {
        let f = File::open(path).map_err(io_err("opening", path))?;
        let mut reader = CountingHasher {
            inner: f.take(entry.size),
            hasher: Hasher::default(),
            progress,
        };
        tar.append_data(&mut header(entry.size), &entry.name, &mut reader)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    ExportError::Changed(path.clone())
                } else {
                    ExportError::Write(e)
                }
            })?;
        let h = reader.hasher;
        if h.len() != entry.size || h.finish().hex() != entry.sha256 {
            return Err(ExportError::Changed(path.clone()));
        }
    }
    progress.end("write", "done");
    let enc = tar.into_inner().map_err(ExportError::Write)?;
    let mut out = enc.finish().map_err(ExportError::Write)?;
    out.flush().map_err(ExportError::Write)?;
    Ok(Exported { manifest })
}

/// [`export`] into the file `path`, written beside it under a temporary name and renamed, so
/// a failed export leaves no partial archive.
pub fn export_to_path(
    root: &Path,
    id: &str,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Exported> {
    let name = path
        .file_name()
        .ok_or_else(|| invalid(format!("{}: not a file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| {
        let f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        let done = export(root, id, &mut w, progress)?;
        let f = w
            .into_inner()
            .map_err(|e| ExportError::Write(e.into_error()))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("renaming into place", path))?;
        Ok(done)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// A reader that hashes and counts what passes, and reports progress.
struct CountingHasher<'a, R> {
    inner: R,
    hasher: Hasher,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for CountingHasher<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress.advance("write", n as u64);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// Import

/// Reads the archive `input` (zstd-compressed tar) into the directory `dir`, one file per
/// part named [`Part::name`], and returns its checked manifest. Refuses more than
/// `max_bytes` of files. Leaves partial files in `dir` on error: the caller removes it.
pub fn unpack(
    input: impl Read,
    dir: &Path,
    max_bytes: u64,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let dec = zstd::Decoder::new(input).map_err(ExportError::Read)?;
    let mut ar = tar::Archive::new(dec);
    let mut manifest: Option<Manifest> = None;
    let mut done = BTreeSet::new();
    for entry in ar.entries().map_err(ExportError::Read)? {
        let mut e = entry.map_err(ExportError::Read)?;
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if kind != tar::EntryType::Regular {
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_hard_link() {
                "a hard link"
            } else if kind.is_dir() {
                "a directory"
            } else if kind.is_character_special() || kind.is_block_special() {
                "a device"
            } else {
                "not a regular file"
            };
            return Err(invalid(format!("entry {shown:?} is {what}: refused")));
        }
        let name = std::str::from_utf8(&raw).ok();
        if raw.starts_with(b"/") || raw.split(|&b| b == b'/').any(|c| c == b"..") {
            return Err(invalid(format!(
                "entry {shown:?} points outside the archive: refused"
            )));
        }
        let size = e.size();
        let Some(m) = &manifest else {
            if name != Some(MANIFEST_NAME) {
                return Err(invalid(format!(
                    "the first entry is {shown:?}, not {MANIFEST_NAME}"
                )));
            }
            if size > MAX_MANIFEST {
                return Err(invalid(format!(
                    "{MANIFEST_NAME} of {size} bytes is too large"
                )));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut e)
                .take(MAX_MANIFEST)
                .read_to_end(&mut bytes)
                .map_err(ExportError::Read)?;
            let m = Manifest::parse(&bytes)?;
            let need = m.total_bytes();
            if need > max_bytes {
                return Err(ExportError::NoSpace {
                    need,
                    free: max_bytes,
                    path: dir.to_owned(),
                });
            }
            progress.begin("import", "importing", Some(need));
            manifest = Some(m);
            continue;
        };
        let part = name
            .and_then(Part::from_name)
            .ok_or_else(|| invalid(format!("unknown entry {shown:?}: refused")))?;
        let listed = m
            .entry(part)
            .ok_or_else(|| invalid(format!("entry {shown:?} is not in the manifest")))?;
        if !done.insert(part) {
            return Err(invalid(format!("entry {shown:?} appears twice")));
        }
        if size != listed.size {
            return Err(invalid(format!(
                "entry {shown:?} has {size} bytes, the manifest says {}",
                listed.size
            )));
        }
        let path = dir.join(part.name());
        let (got_size, sha) = write_sparse(&mut e, &path, progress)?;
        if got_size != listed.size {
            return Err(invalid(format!("entry {shown:?} is truncated")));
        }
        if sha != listed.sha256 {
            return Err(invalid(format!(
                "entry {shown:?} is corrupted: its sha256 is {sha}, the manifest says {}",
                listed.sha256
            )));
        }
    }
    let Some(m) = manifest else {
        return Err(invalid(format!(
            "no {MANIFEST_NAME}: not a corral VM export"
        )));
    };
    let missing: Vec<&str> = m
        .files
        .iter()
        .filter(|f| Part::from_name(&f.name).is_some_and(|p| !done.contains(&p)))
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "missing entries {} (truncated?)",
            missing.join(", ")
        )));
    }
    // Read the compressed stream to its end: zstd checks its frame checksum there.
    let mut rest = ar.into_inner();
    let n = io::copy(&mut (&mut rest).take(MAX_TRAILER + 1), &mut io::sink())
        .map_err(ExportError::Read)?;
    if n > MAX_TRAILER {
        return Err(invalid("data after the end of the archive"));
    }
    progress.end("import", "done");
    Ok(m)
}

/// Copies `r` into a new file at `path`, leaving holes where whole blocks are zero; returns
/// the bytes read and their sha256.
fn write_sparse(r: &mut impl Read, path: &Path, progress: &dyn Progress) -> Result<(u64, String)> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("creating", path))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        // Fill the block, so the zero test sees whole blocks.
        let mut n = 0;
        while n < buf.len() {
            let k = r.read(&mut buf[n..]).map_err(ExportError::Read)?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        let block = &buf[..n];
        h.update(block);
        if block.iter().all(|&b| b == 0) {
            f.seek(SeekFrom::Current(n as i64))
                .map_err(io_err("writing", path))?;
        } else {
            f.write_all(block).map_err(io_err("writing", path))?;
        }
        len += n as u64;
        progress.advance("import", n as u64);
    }
    f.set_len(len).map_err(io_err("writing", path))?;
    Ok((len, h.finish().hex().to_owned()))
}

/// Reads `input` fully as an archive into a scratch directory and discards it: the entry
/// point of the fuzz target (no qemu-img, no state root).
pub fn check_archive(input: impl Read, scratch: &Path, max_bytes: u64) -> Result<Manifest> {
    let r = BufReader::new(input);
    unpack(r, scratch, max_bytes, &corral_image::progress::NoProgress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Accel;

    fn config() -> VmConfig {
        VmConfig {
            id: "0".repeat(64),
            name: "web".into(),
            created: "2026-01-01T00:00:00Z".into(),
            cpus: 1,
            memory_mib: 256,
            accel: Accel::Tcg,
            boot: BootSource::Kernel {
                kernel: "/k".into(),
                initrd: None,
                cmdline: String::new(),
            },
            upper_disk: None,
            extra_cmdline: String::new(),
            networks: vec![],
            main: None,
            auto_remove: false,
            seed: None,
            boot_timeout_secs: 90,
            data_disks: Vec::new(),
            cdrom: None,
            vnc: false,
            restart: Default::default(),
        }
    }

    fn manifest_for(entries: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            created: "now".into(),
            config: config(),
            files: entries
                .iter()
                .map(|(n, d)| FileEntry {
                    name: n.to_string(),
                    size: d.len() as u64,
                    sha256: corral_image::Digest::of(d).hex().to_owned(),
                })
                .collect(),
            snapshots: Vec::new(),
        }
    }

    /// A zstd tar of `entries`, names written raw (the tar crate's writer refuses `..`).
    fn tar_zst(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            if kind.is_symlink() {
                h.set_link_name("/etc/shadow").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        zstd::encode_all(&b.into_inner().unwrap()[..], 1).unwrap()
    }

    fn archive(entries: &[(&str, &[u8])], manifest: Option<Manifest>) -> Vec<u8> {
        let listed: Vec<(&str, &[u8])> = entries
            .iter()
            .filter(|(n, _)| !n.contains(".."))
            .copied()
            .collect();
        let m = manifest.unwrap_or_else(|| manifest_for(&listed));
        let json = serde_json::to_vec(&m).unwrap();
        let mut all = vec![(MANIFEST_NAME, tar::EntryType::Regular, &json[..])];
        all.extend(
            entries
                .iter()
                .map(|(n, d)| (*n, tar::EntryType::Regular, *d)),
        );
        tar_zst(&all)
    }

    fn read(bytes: &[u8]) -> Result<Manifest> {
        let t = tempfile::tempdir().unwrap();
        check_archive(bytes, t.path(), 1 << 30)
    }

    #[test]
    fn a_good_archive_reads_back() {
        let kernel = vec![7u8; 100_000];
        let m = read(&archive(&[("kernel", &kernel)], None)).unwrap();
        assert_eq!(m.config.name, "web");
        assert_eq!(m.files[0].size, 100_000);
    }

    #[test]
    fn bad_archives_are_refused() {
        let good = archive(&[("kernel", b"k")], None);
        let cut = &good[..good.len() / 2];
        assert!(read(cut).is_err());
        let e = read(&archive(&[("kernel", b"k"), ("../kernel", b"k")], None)).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        let e = read(&archive(&[("kernel", b"k"), ("initrd", b"i")], None)).unwrap_err();
        assert!(e.to_string().contains("needs"), "{e}");
        let mut m = Manifest::parse(
            &serde_json::to_vec(&Manifest {
                format: FORMAT.into(),
                version: VERSION,
                created: String::new(),
                config: config(),
                files: vec![FileEntry {
                    name: "kernel".into(),
                    size: 1,
                    sha256: "0".repeat(64),
                }],
                snapshots: Vec::new(),
            })
            .unwrap(),
        )
        .unwrap();
        let e = read(&archive(&[("kernel", b"k")], Some(m.clone()))).unwrap_err();
        assert!(e.to_string().contains("corrupted"), "{e}");
        m.version = 2;
        let e = Manifest::parse(&serde_json::to_vec(&m).unwrap()).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let mut v = serde_json::to_value(&m).unwrap();
        v["version"] = 1.into();
        v["extra"] = 1.into();
        let e = Manifest::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let t = tempfile::tempdir().unwrap();
        let e = check_archive(&good[..], t.path(), 0).unwrap_err();
        assert!(matches!(e, ExportError::NoSpace { .. }), "{e}");
    }

    #[test]
    fn links_are_refused() {
        let json = serde_json::to_vec(&manifest_for(&[("kernel", b"")])).unwrap();
        for kind in [
            tar::EntryType::Symlink,
            tar::EntryType::Link,
            tar::EntryType::Char,
            tar::EntryType::Directory,
        ] {
            let bytes = tar_zst(&[
                (MANIFEST_NAME, tar::EntryType::Regular, &json),
                ("kernel", kind, b""),
            ]);
            let e = read(&bytes).unwrap_err();
            assert!(e.to_string().contains("refused"), "{kind:?}: {e}");
        }
        // Nor may the manifest itself be a link.
        let bytes = tar_zst(&[(MANIFEST_NAME, tar::EntryType::Symlink, b"")]);
        assert!(read(&bytes)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
    }

    #[test]
    fn zero_blocks_become_holes() {
        let t = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 1 << 20];
        data[5] = 1;
        let p = t.path().join("f");
        let (n, _) = write_sparse(&mut &data[..], &p, &corral_image::progress::NoProgress).unwrap();
        assert_eq!(n, 1 << 20);
        assert_eq!(fs::read(&p).unwrap(), data);
        use std::os::unix::fs::MetadataExt;
        assert!(fs::metadata(&p).unwrap().blocks() * 512 < 1 << 20);
    }
}
