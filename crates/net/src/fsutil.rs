//! Durable files: atomic replacement (temporary file, fsync, rename, fsync of the directory)
//! and advisory locks (flock(2) on a lock file), the two rules of corral's state.
//!
//! Two kinds of state: definitions that outlive a reboot (a network: [`write_json`], with the
//! fsyncs), and the state of running things — addresses in use, endpoints, DNS records — that
//! describes kernel objects and processes a power cut ends anyway ([`write_json_runtime`]:
//! atomic against a crashed process by the rename, without the fsyncs that would cost a
//! container start several milliseconds).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A filesystem operation on corral's network state failed, or a state file does not parse.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
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
    /// A state file does not parse.
    #[error("corrupt state file {path} (fix or remove it)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: serde_json::Error,
    },
}

/// Maps an I/O error on `path` during `what` to an [`FsError`].
pub fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |err| FsError::Io {
        what,
        path: path.to_path_buf(),
        err,
    }
}

/// Replaces `path` with `data` so that a crash leaves the old or the new content, never a torn
/// one: write a temporary file next to it, fsync (if `durable`), rename over, fsync the
/// directory (if `durable`).
pub fn write_atomic(path: &Path, data: &[u8], durable: bool) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // Unique per process and thread: writers of one file hold its lock, but a stale temporary
    // file of a crashed writer must not be appended to.
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        if durable {
            f.sync_all().map_err(io_err("fsync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        if !durable {
            return Ok(());
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), FsError> {
    let data = serde_json::to_vec_pretty(value).map_err(|err| FsError::Corrupt {
        path: path.to_path_buf(),
        err,
    })?;
    write_atomic(path, &data, true)
}

/// Writes `value` as JSON, atomically against a crash of this process, without fsync (see the
/// module's doc).
pub fn write_json_runtime<T: Serialize>(path: &Path, value: &T) -> Result<(), FsError> {
    let data = serde_json::to_vec(value).map_err(|err| FsError::Corrupt {
        path: path.to_path_buf(),
        err,
    })?;
    write_atomic(path, &data, false)
}

/// Reads a JSON state file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FsError> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|err| FsError::Corrupt {
                path: path.to_path_buf(),
                err,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// An flock(2) held on a lock file until dropped (closing the file releases it, also when the
/// process dies, so a crash never leaves a lock behind).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes an exclusive lock on `path`, creating the file (and its directory) if needed.
    pub fn exclusive(path: &Path) -> Result<Lock, FsError> {
        Self::take(path, FlockOperation::LockExclusive)
    }

    /// Takes a shared lock on `path`, creating the file (and its directory) if needed.
    pub fn shared(path: &Path) -> Result<Lock, FsError> {
        Self::take(path, FlockOperation::LockShared)
    }

    fn take(path: &Path, op: FlockOperation) -> Result<Lock, FsError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err("open lock file", path))?;
        flock(&file, op).map_err(|e| io_err("lock", path)(e.into()))?;
        Ok(Lock { _file: file })
    }
}

/// Random bytes from the kernel, for ids.
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    // /dev/urandom never blocks once the pool is initialized, which it is long after boot;
    // falling back to time and pid keeps ids unique if it is missing in a chroot.
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = format!("{t}-{}", std::process::id());
        use sha2::Digest;
        let d = sha2::Sha256::digest(seed.as_bytes());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = d[i % d.len()];
        }
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_json(&p, &vec![1, 2]).unwrap();
        write_json(&p, &vec![3]).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&p).unwrap(), Some(vec![3]));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(read_json::<Vec<i32>>(&dir.path().join("none"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn corrupt_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.json");
        fs::write(&p, "{").unwrap();
        let e = read_json::<Vec<i32>>(&p).unwrap_err();
        assert!(e.to_string().contains("bad.json"), "{e}");
    }
}
