//! A small, deterministic tar writer for fixtures.
//!
//! Every entry is owned by root with a fixed mtime, so the same calls give the same bytes and so
//! the same digests: a test can compute the diff id it expects before corral sees the tarball.
//! [`TarWriter::raw`] writes a header whose name and link name are set byte for byte, which is
//! how the hostile fixtures get `../` and absolute paths past the `tar` crate's own checks.

use std::io::Write;

/// The mtime of every fixture entry (2023-11-14T22:13:20Z).
pub const FIXED_MTIME: u64 = 1_700_000_000;

/// The kind of a raw entry, see [`TarWriter::raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawKind {
    /// A regular file with data.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the link name.
    Symlink,
    /// A hard link to the link name.
    Hardlink,
    /// A character device `(major, minor)`.
    CharDevice(u32, u32),
    /// A block device `(major, minor)`.
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
}

/// Builds a tar archive in memory.
pub struct TarWriter {
    inner: tar::Builder<Vec<u8>>,
}

impl Default for TarWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl TarWriter {
    /// An empty archive.
    pub fn new() -> Self {
        TarWriter {
            inner: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(FIXED_MTIME);
        // GNU headers carry user and group names; fixed too, for reproducible bytes.
        h.set_username("root").expect("username");
        h.set_groupname("root").expect("groupname");
        h
    }

    /// Adds a directory (`path` without a trailing slash).
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.inner
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .expect("append dir");
        self
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.inner
            .append_data(&mut h, path, data)
            .expect("append file");
        self
    }

    /// Adds a symbolic link `path -> target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.inner
            .append_link(&mut h, path, target)
            .expect("append symlink");
        self
    }

    /// Adds an OCI whiteout deleting `path` from the layers below (`dir/.wh.name`).
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let entry = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&entry, 0o644, b"")
    }

    /// Makes `dir` opaque: entries of the layers below are hidden (`dir/.wh..wh..opq`).
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    /// Adds an entry with `name` and `link` written byte for byte into the header (at most 100
    /// bytes each), bypassing every path check, for hostile fixtures.
    pub fn raw(&mut self, name: &[u8], kind: RawKind, link: &[u8], data: &[u8]) -> &mut Self {
        let (entry_type, mode) = match kind {
            RawKind::File => (tar::EntryType::Regular, 0o644),
            RawKind::Dir => (tar::EntryType::Directory, 0o755),
            RawKind::Symlink => (tar::EntryType::Symlink, 0o777),
            RawKind::Hardlink => (tar::EntryType::Link, 0o644),
            RawKind::CharDevice(..) => (tar::EntryType::Char, 0o600),
            RawKind::BlockDevice(..) => (tar::EntryType::Block, 0o600),
            RawKind::Fifo => (tar::EntryType::Fifo, 0o644),
        };
        let mut h = Self::header(entry_type, mode, data.len() as u64);
        if let RawKind::CharDevice(major, minor) | RawKind::BlockDevice(major, minor) = kind {
            h.set_device_major(major).expect("device major");
            h.set_device_minor(minor).expect("device minor");
        }
        let old = h.as_old_mut();
        assert!(name.len() <= old.name.len(), "raw name too long");
        assert!(link.len() <= old.linkname.len(), "raw link name too long");
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.inner.append(&h, data).expect("append raw entry");
        self
    }

    /// The finished archive (with its two zero end blocks).
    pub fn finish(self) -> Vec<u8> {
        self.inner.into_inner().expect("finish tar")
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (deterministic: no name, mtime 0).
    Gzip,
    /// zstd, level 3.
    Zstd,
}

impl Compression {
    /// Compresses `data`.
    pub fn apply(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(data).expect("gzip");
                enc.finish().expect("gzip finish")
            }
            Compression::Zstd => zstd::encode_all(data, 3).expect("zstd"),
        }
    }

    /// The OCI layer media type for a tar compressed this way.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// `len` bytes from a fixed-seed xorshift generator: incompressible, reproducible, fast.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
