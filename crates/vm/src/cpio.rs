//! A writer of cpio archives in the "newc" format, the one the Linux kernel unpacks as an
//! initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Each entry is a 110-byte ASCII header (`070701` then thirteen 8-digit hexadecimal fields),
//! the path NUL-terminated and padded to a multiple of 4 bytes, then the data padded the same
//! way; the archive ends with an entry named `TRAILER!!!`.
//!
//! The output is deterministic: mtimes are 0, owners root, and inode numbers count up from 1 in
//! the order entries are added, so the same inputs give the same bytes (and cache keys stay
//! meaningful). Parent directories are written (mode 0755) before any entry under them that
//! was added without its parent, since the kernel's unpacker creates no missing parents.
//!
//! Limits: directories, regular files and symbolic links only (the guest gets its device
//! nodes from devtmpfs); no hard links; files up to 4 GiB - 1 (the size field is 32 bits).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File type bits of `st_mode` (`<sys/stat.h>`).
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The magic of a newc header without checksums.
const MAGIC: &[u8; 6] = b"070701";
/// The name of the last entry.
const TRAILER: &str = "TRAILER!!!";
/// Length of a newc header.
const HEADER_LEN: usize = 110;

/// Errors of the cpio writer.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// An archive path that is empty, absolute after trimming, or climbs with `..`.
    #[error("invalid path in archive: {0:?} (give a relative path without `..` or NUL)")]
    InvalidPath(String),
    /// The same path was added twice.
    #[error("{0:?} is already in the archive")]
    Duplicate(String),
    /// A file too large for the format's 32-bit size field.
    #[error("{path:?} is {size} bytes: cpio newc holds files below 4 GiB")]
    TooLarge {
        /// The archive path.
        path: String,
        /// Its size.
        size: u64,
    },
    /// Reading a source file failed.
    #[error("reading {path}")]
    Read {
        /// The source file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The source file changed size while it was copied.
    #[error("{path} changed size while it was being archived")]
    Changed {
        /// The source file.
        path: PathBuf,
    },
    /// Writing the archive failed.
    #[error("writing the cpio archive")]
    Write(#[source] io::Error),
}

/// Writes a newc cpio archive to `W`. Call [`CpioWriter::finish`] to write the trailer.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
    paths: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl<W: Write> CpioWriter<W> {
    /// A writer that appends entries to `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
            paths: BTreeSet::new(),
            dirs: BTreeSet::new(),
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Adds directory `path` (relative, `/`-separated; a leading `/` is ignored) with
    /// permission bits `mode`. Adding a directory that was already added as a parent is a no-op.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self, CpioError> {
        let path = normalize(path)?;
        if self.dirs.contains(&path) {
            return Ok(self);
        }
        self.parents(&path)?;
        self.claim(&path)?;
        self.header(&path, S_IFDIR | (mode & 0o7777), 2, 0)?;
        self.dirs.insert(path);
        Ok(self)
    }

    /// Adds regular file `path` with permission bits `mode` and content `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<&mut Self, CpioError> {
        let path = normalize(path)?;
        let size = data.len() as u64;
        let size = u32::try_from(size).map_err(|_| CpioError::TooLarge {
            path: path.clone(),
            size,
        })?;
        self.parents(&path)?;
        self.claim(&path)?;
        self.header(&path, S_IFREG | (mode & 0o7777), 1, size)?;
        self.raw(data)?;
        self.pad()?;
        Ok(self)
    }

    /// Adds regular file `path` with permission bits `mode`, its content streamed from `src`.
    pub fn file_from(&mut self, path: &str, mode: u32, src: &Path) -> Result<&mut Self, CpioError> {
        let read_err = |err| CpioError::Read {
            path: src.to_owned(),
            err,
        };
        let path = normalize(path)?;
        let f = File::open(src).map_err(read_err)?;
        let size = f.metadata().map_err(read_err)?.len();
        let size32 = u32::try_from(size).map_err(|_| CpioError::TooLarge {
            path: path.clone(),
            size,
        })?;
        self.parents(&path)?;
        self.claim(&path)?;
        self.header(&path, S_IFREG | (mode & 0o7777), 1, size32)?;
        let mut buf = vec![0u8; 64 << 10];
        let mut left = size;
        let mut f = f.take(size);
        while left > 0 {
            let n = f.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                return Err(CpioError::Changed {
                    path: src.to_owned(),
                });
            }
            self.raw(&buf[..n])?;
            left -= n as u64;
        }
        self.pad()?;
        Ok(self)
    }

    /// Adds symbolic link `path` pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, CpioError> {
        let path = normalize(path)?;
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath(target.to_owned()));
        }
        self.parents(&path)?;
        self.claim(&path)?;
        // The size check cannot fail for any real target; keep it honest anyway.
        let size = u32::try_from(target.len()).map_err(|_| CpioError::TooLarge {
            path: path.clone(),
            size: target.len() as u64,
        })?;
        self.header(&path, S_IFLNK | 0o777, 1, size)?;
        self.raw(target.as_bytes())?;
        self.pad()?;
        Ok(self)
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.write_header(TRAILER, 0, 0, 1, 0)?;
        self.out.flush().map_err(CpioError::Write)?;
        Ok(self.out)
    }

    /// Writes the missing ancestors of `path`, outermost first.
    fn parents(&mut self, path: &str) -> Result<(), CpioError> {
        let mut missing = Vec::new();
        let mut cur = path;
        while let Some((parent, _)) = cur.rsplit_once('/') {
            if self.dirs.contains(parent) {
                break;
            }
            missing.push(parent.to_owned());
            cur = parent;
        }
        for p in missing.into_iter().rev() {
            self.claim(&p)?;
            self.header(&p, S_IFDIR | 0o755, 2, 0)?;
            self.dirs.insert(p);
        }
        Ok(())
    }

    fn claim(&mut self, path: &str) -> Result<(), CpioError> {
        if !self.paths.insert(path.to_owned()) {
            return Err(CpioError::Duplicate(path.to_owned()));
        }
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32) -> Result<(), CpioError> {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.write_header(name, ino, mode, nlink, size)
    }

    fn write_header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        size: u32,
    ) -> Result<(), CpioError> {
        let namesize = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
        let mut h = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        h.extend_from_slice(MAGIC);
        for f in fields {
            h.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        debug_assert_eq!(h.len(), HEADER_LEN);
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        self.raw(&h)?;
        self.pad()
    }

    fn raw(&mut self, data: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(data).map_err(CpioError::Write)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Pads the output to a multiple of 4 bytes (headers start at 0, so offsets align).
    fn pad(&mut self) -> Result<(), CpioError> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.raw(&[0u8; 3][..n])
    }
}

/// `path` without leading `/` or `./`, trailing `/`, empty or `.` components; refused if it
/// climbs with `..` or holds NUL.
fn normalize(path: &str) -> Result<String, CpioError> {
    let bad = || CpioError::InvalidPath(path.to_owned());
    if path.contains('\0') {
        return Err(bad());
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(bad()),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.dir("/tmp", 0o1777).unwrap();
        w.file("init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        w.file("lib/modules/x/a.ko", 0o644, b"abc").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.finish().unwrap()
    }

    fn parse(mut b: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let total = b.len();
        loop {
            assert_eq!(&b[..6], MAGIC);
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (ino, mode, size, namesize) = (field(0), field(1), field(6), field(11));
            let name = std::str::from_utf8(&b[HEADER_LEN..HEADER_LEN + namesize as usize - 1])
                .unwrap()
                .to_owned();
            let data_at = (HEADER_LEN + namesize as usize).next_multiple_of(4);
            let data = b[data_at..data_at + size as usize].to_vec();
            let next = (data_at + size as usize).next_multiple_of(4);
            assert_eq!((total - b.len() + next) % 4, 0);
            if name == TRAILER {
                assert_eq!(next, b.len());
                return out;
            }
            out.push((name, ino, mode, data));
            b = &b[next..];
        }
    }

    #[test]
    fn entries_parse_back_with_parents_first() {
        let got = parse(&sample());
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "tmp",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/x",
                "lib/modules/x/a.ko",
                "bin",
                "bin/sh"
            ]
        );
        let inos: Vec<u32> = got.iter().map(|e| e.1).collect();
        assert_eq!(inos, (1..=9).collect::<Vec<_>>());
        assert_eq!(got[1].2, S_IFDIR | 0o1777);
        assert_eq!(got[2].2, S_IFREG | 0o755);
        assert_eq!(got[2].3, b"#!/bin/sh\necho hi\n");
        assert_eq!(got[8].2, S_IFLNK | 0o777);
        assert_eq!(got[8].3, b"busybox");
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(matches!(
            w.file("../etc/passwd", 0o644, b""),
            Err(CpioError::InvalidPath(_))
        ));
        assert!(matches!(w.dir("/", 0o755), Err(CpioError::InvalidPath(_))));
        w.file("a", 0o644, b"").unwrap();
        assert!(matches!(
            w.file("a", 0o644, b""),
            Err(CpioError::Duplicate(_))
        ));
        // A directory added implicitly, then explicitly, is not a duplicate.
        w.file("d/x", 0o644, b"").unwrap();
        w.dir("d", 0o700).unwrap();
    }

    /// Checks the archive against Debian's `cpio` (GNU cpio), when it is installed.
    #[test]
    fn gnu_cpio_lists_and_extracts_the_archive() {
        if Command::new("cpio").arg("--version").output().is_err() {
            eprintln!(
                "SKIPPED: gnu_cpio_lists_and_extracts_the_archive: no cpio (apt-get install cpio)"
            );
            return;
        }
        let bytes = sample();
        let run = |args: &[&str], dir: &Path| {
            let mut c = Command::new("cpio")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(&bytes).unwrap();
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "cpio {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let listing = run(&["-t", "--quiet"], dir.path());
        assert_eq!(
            listing.lines().collect::<Vec<_>>(),
            [
                "dev",
                "tmp",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/x",
                "lib/modules/x/a.ko",
                "bin",
                "bin/sh"
            ]
        );
        run(
            &["-i", "-d", "--quiet", "--no-absolute-filenames"],
            dir.path(),
        );
        let d = dir.path();
        assert_eq!(
            std::fs::read(d.join("init")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(std::fs::read(d.join("lib/modules/x/a.ko")).unwrap(), b"abc");
        assert_eq!(
            std::fs::read_link(d.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("init"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }
}
