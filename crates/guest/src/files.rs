//! `CopyIn` and `CopyOut`: files between the host and the guest's root.
//!
//! A file copied in is written to a temporary file in the same directory, synced, given
//! its mode, then renamed over the target: a reader never sees half a file, and a copy cut
//! short leaves the old file in place.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use corral_guest::proto::{Kind, CHUNK};

use crate::server::Out;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The path is not absolute or has no file name.
    #[error("{0}: not an absolute path to a file")]
    BadPath(String),
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        err: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |err| CopyError::Io {
        what,
        path: path.to_path_buf(),
        err,
    }
}

/// A file being received.
pub struct CopyIn {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    mode: u32,
    done: bool,
}

impl CopyIn {
    /// Starts receiving `path`, to be given permission bits `mode`.
    pub fn open(path: &str, mode: u32) -> Result<CopyIn, CopyError> {
        let target = PathBuf::from(path);
        let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(CopyError::BadPath(path.into()));
        };
        if !target.is_absolute() {
            return Err(CopyError::BadPath(path.into()));
        }
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".corral-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        Ok(CopyIn {
            file,
            tmp,
            path: target,
            mode: mode & 0o7777,
            done: false,
        })
    }

    /// Appends a chunk.
    pub fn write(&mut self, data: &[u8]) -> Result<(), CopyError> {
        self.file
            .write_all(data)
            .map_err(io_err("write", &self.tmp))
    }

    /// Syncs, sets the mode and renames the file into place.
    pub fn finish(mut self) -> Result<(), CopyError> {
        self.file.sync_all().map_err(io_err("sync", &self.tmp))?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(io_err("chmod", &self.tmp))?;
        std::fs::rename(&self.tmp, &self.path).map_err(io_err("rename into", &self.path))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for CopyIn {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Sends the bytes of `path` as Stdout frames of `session`.
pub fn copy_out(out: &Out, session: u32, path: &str) -> Result<(), CopyError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(CopyError::BadPath(path.into()));
    }
    let mut f = File::open(p).map_err(io_err("open", p))?;
    if f.metadata().map_err(io_err("stat", p))?.is_dir() {
        return Err(io_err("read", p)(io::Error::other("is a directory")));
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out.data(Kind::Stdout, session, &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("read", p)(e)),
        }
    }
}
