//! The content-addressed image store under `CORRAL_ROOT/images`.
//!
//! ```text
//! images/
//!   blobs/sha256/<hex>        manifests, configs and layer blobs, by digest; verified before rename
//!   layers/<diff hex>/diff/   each layer unpacked once, by diff id: an overlayfs lower directory
//!   layers/<diff hex>/layer.json   its unpacked size
//!   ingest/<hex>.partial      downloads in progress, kept to resume
//!   tmp/                      files and directories being written (removed on failure and by gc)
//!   repositories.json         name -> manifest digest
//!   content.lock, names.lock  flock(2) locks
//! ```
//!
//! Every write is a temporary file or directory in `tmp/` renamed into place once complete and
//! verified, so a crash leaves the old state or the new, never a torn one, and nothing is visible
//! under a digest it does not have. Writers of content hold `content.lock` shared; garbage
//! collection holds it exclusive, so it never deletes what an import or pull is still writing.
//! `names.lock` serializes changes to `repositories.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::compression;
use crate::digest::{Digest, Hasher, HashingReader};
use crate::reference::{self, ImageName};
use crate::unpack::{self, UnpackError, UnpackStats};

/// Key prefix of images without a name in `repositories.json`.
pub const DANGLING_PREFIX: &str = "@";

/// Largest manifest, index or config accepted: real ones are a few KiB.
pub const MAX_METADATA_BYTES: u64 = 4 << 20;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// Content did not hash to the digest it was declared with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The declared digest.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A blob the store needs is absent.
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    /// A manifest or config does not parse.
    #[error("invalid {what} {digest}")]
    Invalid {
        /// manifest, config ...
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// The cause.
        #[source]
        err: serde_json::Error,
    },
    /// Metadata larger than [`MAX_METADATA_BYTES`].
    #[error("{what} is too large ({size} bytes)")]
    TooLarge {
        /// manifest, config ...
        what: &'static str,
        /// Its size.
        size: u64,
    },
    /// A layer could not be unpacked.
    #[error("unpacking layer{}", .0.as_ref().map(|d| format!(" {d}")).unwrap_or_default())]
    Unpack(Option<Digest>, #[source] UnpackError),
    /// No image has this name or id.
    #[error("image not known: {0}")]
    NotFound(String),
    /// An id prefix names several images.
    #[error("{0} names more than one image: give more of the id")]
    Ambiguous(String),
    /// The name does not parse.
    #[error(transparent)]
    Name(#[from] reference::NameError),
    /// A request the store cannot carry out as asked (a `commit --change` it cannot apply).
    #[error("{0}")]
    Refused(String),
    /// Removing an image by id that has several names needs force.
    #[error("image {id} has several names ({names}): remove them by name, or force")]
    MultipleNames {
        /// The image id.
        id: String,
        /// Its names.
        names: String,
    },
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |err| StoreError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

/// Whether an error means the disk is full, to say so plainly.
pub fn is_disk_full(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(28) || io.kind() == io::ErrorKind::StorageFull {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// The image store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held flock; released on drop.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

/// A manifest in the store, with its config.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config digest: the image id.
    pub id: Digest,
    /// The config.
    pub config: ImageConfiguration,
    /// The names that point at this manifest (full form).
    pub names: Vec<String>,
}

impl Image {
    /// The layer blob digests, bottom first.
    pub fn layer_digests(&self) -> Result<Vec<Digest>> {
        self.manifest
            .layers()
            .iter()
            .map(|l| parse_digest(l.digest().as_ref(), &self.digest))
            .collect()
    }

    /// The diff ids, bottom first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| parse_digest(d, &self.id))
            .collect()
    }
}

pub(crate) fn parse_digest(s: &str, within: &Digest) -> Result<Digest> {
    s.parse().map_err(|_| StoreError::Invalid {
        what: "digest in",
        digest: within.clone(),
        err: serde::de::Error::custom(format!("bad digest {s:?}")),
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Names {
    names: BTreeMap<String, Digest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerMeta {
    size: u64,
    entries: u64,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating) the store at `root` (`CORRAL_ROOT/images`).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["blobs/sha256", "layers", "ingest", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        Ok(Store { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self, name: &str, op: FlockOperation) -> Result<Lock> {
        let p = self.root.join(name);
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("opening lock", &p))?;
        rustix::fs::flock(&f, op).map_err(|e| StoreError::Io {
            what: "locking",
            path: p,
            err: e.into(),
        })?;
        Ok(Lock(f))
    }

    /// Held shared while writing content, so garbage collection waits.
    pub fn content_lock(&self) -> Result<Lock> {
        self.lock_file("content.lock", FlockOperation::LockShared)
    }

    /// A fresh path in `tmp/`.
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}-{t}", std::process::id()))
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    /// Size of a stored blob.
    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(d.clone()))
            }
            Err(e) => Err(io_err("reading", &p)(e)),
        }
    }

    /// Reads a small blob (manifest, config), at most [`MAX_METADATA_BYTES`].
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob(d.clone()))
            }
            Err(e) => return Err(io_err("opening", &p)(e)),
        };
        let mut buf = Vec::new();
        f.take(MAX_METADATA_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(io_err("reading", &p))?;
        if buf.len() as u64 > MAX_METADATA_BYTES {
            return Err(StoreError::TooLarge {
                what: "blob",
                size: buf.len() as u64,
            });
        }
        Ok(buf)
    }

    /// Starts writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let path = self.tmp_path("blob");
        let file = File::create(&path).map_err(io_err("creating", &path))?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            path,
            hasher: Hasher::default(),
        })
    }

    /// Stores `data` as a blob, verified against `expected` when given.
    pub fn put_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let actual = Digest::of(data);
        if let Some(e) = expected {
            if *e != actual {
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
        }
        if self.has_blob(&actual) {
            return Ok(actual);
        }
        let mut w = self.blob_writer()?;
        w.write_all(data)
            .map_err(io_err("writing", &w.path.clone()))?;
        w.commit(Some(&actual))
    }

    /// Moves a finished file into the blob store under its digest.
    fn install_blob(&self, tmp: &Path, d: &Digest) -> Result<()> {
        let dst = self.blob_path(d);
        fs::rename(tmp, &dst).map_err(io_err("storing blob", &dst))
    }

    /// The directory a layer unpacks into (an overlay lowerdir).
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex()).join("diff")
    }

    /// Whether the layer with this diff id is unpacked.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.root
            .join("layers")
            .join(diff_id.hex())
            .join("layer.json")
            .exists()
    }

    /// Unpacked size of a layer, if known.
    pub fn layer_size(&self, diff_id: &Digest) -> Option<u64> {
        let p = self
            .root
            .join("layers")
            .join(diff_id.hex())
            .join("layer.json");
        let meta: LayerMeta = serde_json::from_slice(&fs::read(p).ok()?).ok()?;
        Some(meta.size)
    }

    /// Unpacks a (possibly compressed) layer stream, checking its uncompressed digest against
    /// `expected` (the diff id) when given; returns the diff id.
    pub fn unpack_layer<R: Read>(&self, reader: R, expected: Option<&Digest>) -> Result<Digest> {
        let label = expected.cloned();
        let tmp = self.tmp_path("layer");
        let diff = tmp.join("diff");
        fs::create_dir_all(&diff).map_err(io_err("creating", &diff))?;
        let guard = TmpDir(Some(tmp.clone()));
        let (_, plain) = compression::decompress(reader)
            .map_err(|e| StoreError::Unpack(label.clone(), UnpackError::Read(e)))?;
        let mut hashing = HashingReader::new(plain);
        let stats: UnpackStats = unpack::unpack(&mut hashing, &diff)
            .map_err(|e| StoreError::Unpack(label.clone(), e))?;
        hashing
            .drain()
            .map_err(|e| StoreError::Unpack(label.clone(), UnpackError::Read(e)))?;
        let actual = hashing.hasher.finish();
        if let Some(e) = expected {
            if *e != actual {
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
        }
        let meta = serde_json::to_vec(&LayerMeta {
            size: stats.bytes,
            entries: stats.entries,
        })
        .expect("serializable");
        let mp = tmp.join("layer.json");
        fs::write(&mp, meta).map_err(io_err("writing", &mp))?;
        let dst = self.root.join("layers").join(actual.hex());
        match fs::rename(&tmp, &dst) {
            Ok(()) => {
                std::mem::forget(guard);
            }
            // Another process unpacked the same layer first: keep theirs.
            Err(e) if dst.join("layer.json").exists() => {
                tracing::debug!(layer = %actual, err = %e, "layer already unpacked");
            }
            Err(e) => {
                // A leftover without layer.json (crash before rename cannot leave one, but a
                // foreign hand can): replace it.
                let _ = remove_dir_all_if_exists(&dst);
                fs::rename(&tmp, &dst).map_err(|_| io_err("installing layer", &dst)(e))?;
                std::mem::forget(guard);
            }
        }
        Ok(actual)
    }

    /// Removes an unpacked layer (best effort: used to undo a failed load).
    pub fn remove_layer(&self, diff_id: &Digest) {
        let _ = remove_dir_all_if_exists(&self.root.join("layers").join(diff_id.hex()));
    }

    /// Unpacks the layer stored as blob `blob`, unless the diff id is already unpacked.
    pub fn ensure_layer(&self, blob: &Digest, diff_id: &Digest) -> Result<()> {
        if self.has_layer(diff_id) {
            return Ok(());
        }
        let p = self.blob_path(blob);
        let f = File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(blob.clone())
            } else {
                io_err("opening", &p)(e)
            }
        })?;
        self.unpack_layer(f, Some(diff_id)).map(drop)
    }

    // ---- names ----

    fn names_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }

    fn read_names(&self) -> Result<Names> {
        let p = self.names_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|err| StoreError::Io {
                what: "parsing (delete it to start afresh)",
                path: p.clone(),
                err: err.into(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Names::default()),
            Err(e) => Err(io_err("reading", &p)(e)),
        }
    }

    fn write_names(&self, names: &Names) -> Result<()> {
        let data = serde_json::to_vec_pretty(names).expect("serializable");
        write_atomic(&self.names_path(), &data, &self.tmp_path("names"))
    }

    /// Applies `f` to the name table under its lock.
    fn update_names<T>(&self, f: impl FnOnce(&mut Names) -> Result<T>) -> Result<T> {
        let _l = self.lock_file("names.lock", FlockOperation::LockExclusive)?;
        let mut names = self.read_names()?;
        let out = f(&mut names)?;
        self.write_names(&names)?;
        Ok(out)
    }

    /// Points `name` at the manifest `digest` (which must be stored).
    pub fn set_name(&self, name: &ImageName, digest: &Digest) -> Result<()> {
        if !self.has_blob(digest) {
            return Err(StoreError::MissingBlob(digest.clone()));
        }
        self.update_names(|n| {
            n.names.remove(&format!("{DANGLING_PREFIX}{digest}"));
            n.names.insert(name.full(), digest.clone());
            Ok(())
        })
    }

    /// Records an image that has no name (listed as `<none>`, reachable by id), unless a name
    /// already points at it.
    pub fn set_dangling(&self, digest: &Digest) -> Result<()> {
        if !self.has_blob(digest) {
            return Err(StoreError::MissingBlob(digest.clone()));
        }
        self.update_names(|n| {
            if !n.names.values().any(|d| d == digest) {
                n.names
                    .insert(format!("{DANGLING_PREFIX}{digest}"), digest.clone());
            }
            Ok(())
        })
    }

    /// All names and the manifests they point at.
    pub fn names(&self) -> Result<BTreeMap<String, Digest>> {
        Ok(self.read_names()?.names)
    }

    /// Loads a stored manifest and its config.
    pub fn image(&self, digest: &Digest) -> Result<Image> {
        let mbytes = self.read_blob(digest)?;
        let manifest: ImageManifest =
            serde_json::from_slice(&mbytes).map_err(|err| StoreError::Invalid {
                what: "manifest",
                digest: digest.clone(),
                err,
            })?;
        let id = parse_digest(manifest.config().digest().as_ref(), digest)?;
        let cbytes = self.read_blob(&id)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&cbytes).map_err(|err| StoreError::Invalid {
                what: "config",
                digest: id.clone(),
                err,
            })?;
        let names = self
            .names()?
            .into_iter()
            .filter(|(_, d)| d == digest)
            .map(|(n, _)| n)
            .collect();
        Ok(Image {
            digest: digest.clone(),
            manifest,
            id,
            config,
            names,
        })
    }

    /// Every named image, one entry per manifest.
    pub fn images(&self) -> Result<Vec<Image>> {
        let digests: BTreeSet<Digest> = self.names()?.into_values().collect();
        digests.iter().map(|d| self.image(d)).collect()
    }

    /// Finds an image by name, by `sha256:` id or by an id prefix (at least 4 hex digits).
    pub fn resolve(&self, what: &str) -> Result<Image> {
        let names = self.names()?;
        if let Ok(name) = ImageName::parse(what) {
            if let Some(d) = names.get(&name.full()) {
                return self.image(d);
            }
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        // A whole manifest digest finds an unnamed image too (a build step's).
        if what.starts_with("sha256:") && hex.len() == 64 {
            if let Ok(d) = what.parse::<Digest>() {
                if let Ok(img) = self.image(&d) {
                    return Ok(img);
                }
            }
        }
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<Image> = Vec::new();
            for img in self.images()? {
                if img.id.hex().starts_with(hex) || img.digest.hex().starts_with(hex) {
                    found.push(img);
                }
            }
            match found.len() {
                0 => {}
                1 => return Ok(found.pop().expect("one")),
                _ => return Err(StoreError::Ambiguous(what.to_owned())),
            }
        }
        Err(StoreError::NotFound(what.to_owned()))
    }

    /// The build cache's entry `key` (a hex string): the image a build step made, when it is
    /// still whole in the store.
    pub fn cache_get(&self, key: &str) -> Option<Image> {
        let raw = fs::read_to_string(self.root.join("build-cache").join(key)).ok()?;
        let d: Digest = raw.trim().parse().ok()?;
        let img = self.image(&d).ok()?;
        let whole = img.layer_digests().ok()?.iter().all(|l| self.has_blob(l))
            && img.diff_ids().ok()?.iter().all(|l| self.has_layer(l));
        whole.then_some(img)
    }

    /// Records that build step `key` made the image with manifest `digest`. A cache entry
    /// keeps its image's content from garbage collection, as a name does, without being
    /// listed.
    pub fn cache_put(&self, key: &str, digest: &Digest) -> Result<()> {
        let dir = self.root.join("build-cache");
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let tmp = self.tmp_path("cache");
        write_atomic(&dir.join(key), digest.to_string().as_bytes(), &tmp)
    }

    /// Forgets the whole build cache; returns the entries dropped. What only the cache kept is
    /// deleted by the next [`Store::gc_keeping`].
    pub fn cache_prune(&self) -> Result<usize> {
        let dir = self.root.join("build-cache");
        let n = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err("removing", &dir)(e)),
        }
    }

    /// The manifests the build cache refers to.
    fn cache_roots(&self) -> Vec<Digest> {
        let Ok(dir) = fs::read_dir(self.root.join("build-cache")) else {
            return Vec::new();
        };
        dir.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    /// Removes a name, or all names of an id (several only with `force`); content that no
    /// name refers to any more is deleted. Returns what was untagged and what was deleted.
    pub fn remove(&self, what: &str, force: bool) -> Result<(Vec<String>, Vec<Digest>)> {
        self.remove_keeping(what, force, &BTreeSet::new())
    }

    /// [`Store::remove`], never deleting the unpacked layers named in `in_use` (see
    /// [`Store::gc_keeping`]).
    pub fn remove_keeping(
        &self,
        what: &str,
        force: bool,
        in_use: &BTreeSet<String>,
    ) -> Result<(Vec<String>, Vec<Digest>)> {
        let img = self.resolve(what)?;
        let by_name = ImageName::parse(what)
            .ok()
            .map(|n| n.full())
            .filter(|n| img.names.contains(n));
        let untag: Vec<String> = match by_name {
            Some(n) => vec![n],
            None if img.names.len() > 1 && !force => {
                return Err(StoreError::MultipleNames {
                    id: img.id.short().to_owned(),
                    names: img
                        .names
                        .iter()
                        .map(|n| reference::short(n))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
            None => img.names.clone(),
        };
        self.update_names(|n| {
            for name in &untag {
                n.names.remove(name);
            }
            Ok(())
        })?;
        let still_named = self.names()?.values().any(|d| *d == img.digest);
        let deleted = if still_named {
            Vec::new()
        } else {
            self.gc_keeping(in_use)?;
            vec![img.id.clone()]
        };
        Ok((untag.iter().map(|n| reference::short(n)).collect(), deleted))
    }

    /// Deletes every blob, unpacked layer and temporary file that no name needs; returns the
    /// bytes reclaimed.
    pub fn gc(&self) -> Result<u64> {
        self.gc_keeping(&BTreeSet::new())
    }

    /// [`Store::gc`], keeping also the unpacked layers named in `in_use` (by their directory
    /// names: the diff ids' hex) — those that containers mount, whatever became of their
    /// images' names.
    pub fn gc_keeping(&self, in_use: &BTreeSet<String>) -> Result<u64> {
        let _l = self.lock_file("content.lock", FlockOperation::LockExclusive)?;
        let mut keep_blobs = BTreeSet::new();
        let mut keep_layers = in_use.clone();
        let roots: BTreeSet<Digest> = self
            .names()?
            .into_values()
            .chain(self.cache_roots())
            .collect();
        for d in roots {
            keep_blobs.insert(d.hex().to_owned());
            // An unreadable manifest keeps nothing else alive; report it rather than guess.
            match self.image(&d) {
                Ok(img) => {
                    keep_blobs.insert(img.id.hex().to_owned());
                    for l in img.layer_digests()? {
                        keep_blobs.insert(l.hex().to_owned());
                    }
                    for l in img.diff_ids()? {
                        keep_layers.insert(l.hex().to_owned());
                    }
                }
                Err(e) => tracing::warn!(manifest = %d, err = %e, "unreadable image kept"),
            }
        }
        let mut freed = 0;
        freed += sweep(&self.root.join("blobs/sha256"), |n| keep_blobs.contains(n))?;
        freed += sweep(&self.root.join("layers"), |n| keep_layers.contains(n))?;
        freed += sweep(&self.root.join("ingest"), |_| false)?;
        freed += sweep(&self.root.join("tmp"), |_| false)?;
        Ok(freed)
    }

    /// Bytes the store occupies on disk.
    pub fn disk_usage(&self) -> u64 {
        du(&self.root)
    }

    /// Takes the lock of one download, blocking until another process downloading the same
    /// blob is done (then the caller finds the blob present).
    pub fn ingest_lock(&self, d: &Digest) -> Result<Lock> {
        self.lock_file(
            &format!("ingest/{}.lock", d.hex()),
            FlockOperation::LockExclusive,
        )
    }

    /// Path of a partial download of `d`.
    pub fn ingest_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}.partial", d.hex()))
    }

    /// Syncs a finished download whose digest the caller verified, and moves it into the blob
    /// store.
    pub fn install_verified_ingest(&self, d: &Digest) -> Result<()> {
        let p = self.ingest_path(d);
        File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing", &p))?;
        self.install_blob(&p, d)
    }
}

/// A blob being written: hashed as it goes, visible only after [`BlobWriter::commit`].
pub struct BlobWriter {
    store: Store,
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Hasher,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// Verifies against `expected` (when given), syncs and makes the blob visible.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Digest> {
        let staged = self.finish()?;
        staged.verify(expected)?;
        staged.commit()
    }

    /// Flushes and syncs the blob, keeping it staged (invisible) until committed.
    pub fn finish(mut self) -> Result<StagedBlob> {
        let file = self.file.take().expect("not finished twice");
        let file = file
            .into_inner()
            .map_err(|e| io_err("writing", &self.path)(e.into_error()))?;
        file.sync_all().map_err(io_err("syncing", &self.path))?;
        Ok(StagedBlob {
            store: self.store.clone(),
            path: Some(std::mem::take(&mut self.path)),
            digest: self.hasher.clone().finish(),
            size: self.hasher.len(),
        })
    }
}

/// A complete, synced blob not yet visible in the store; removed on drop unless committed.
#[derive(Debug)]
pub struct StagedBlob {
    store: Store,
    path: Option<PathBuf>,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

impl StagedBlob {
    /// Where it is staged, to read it before committing.
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("staged")
    }

    /// Checks it against a declared digest.
    pub fn verify(&self, expected: Option<&Digest>) -> Result<()> {
        match expected {
            Some(e) if *e != self.digest => Err(StoreError::DigestMismatch {
                expected: e.clone(),
                actual: self.digest.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Makes it visible under its digest.
    pub fn commit(mut self) -> Result<Digest> {
        let p = self.path.take().expect("staged");
        if let Err(e) = self.store.install_blob(&p, &self.digest) {
            let _ = fs::remove_file(&p);
            return Err(e);
        }
        Ok(self.digest.clone())
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_mut().expect("open").write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() && !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes a temporary directory on drop unless forgotten.
struct TmpDir(Option<PathBuf>);

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = remove_dir_all_if_exists(&p);
        }
    }
}

fn remove_dir_all_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Writes `data` to `path` atomically through `tmp` (same filesystem).
pub fn write_atomic(path: &Path, data: &[u8], tmp: &Path) -> Result<()> {
    let res = (|| {
        let mut f = File::create(tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(tmp);
    }
    res.map_err(io_err("writing", path))
}

fn sweep(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<u64> {
    let mut freed = 0;
    let rd = fs::read_dir(dir).map_err(io_err("listing", dir))?;
    for ent in rd {
        let ent = ent.map_err(io_err("listing", dir))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if keep(&name) {
            continue;
        }
        let p = ent.path();
        freed += du(&p);
        let res = if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        res.map_err(io_err("removing", &p))?;
    }
    Ok(freed)
}

/// Disk use of a tree (allocated blocks), not following symlinks.
pub fn du(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    let mut total = m.blocks() * 512;
    if m.is_dir() {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                total += du(&e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_with_wrong_digest_is_never_visible() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let wrong = Digest::of(b"something else");
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"payload").unwrap();
        assert!(matches!(
            w.commit(Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!s.has_blob(&wrong));
        assert!(!s.has_blob(&Digest::of(b"payload")));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn put_blob_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_blob(b"{}", None).unwrap();
        assert_eq!(s.read_blob(&d).unwrap(), b"{}");
    }
}
