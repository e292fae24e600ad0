//! Durable files: atomic replacement (temporary file, fsync, rename, fsync of the directory)
//! and advisory locks (flock(2) on a lock file), the two rules of corral's state.
//!
//! Two kinds of state: definitions that outlive a reboot (a network: [`write_json`], with the
//! fsyncs), and the state of running things — addresses in use, endpoints, DNS records — that
//! describes kernel objects and processes a power cut ends anyway ([`write_json_runtime`]:
//! atomic against a crashed process by the rename, without the fsyncs that would cost a
//! container start several milliseconds).
//!
//! Temporary files and directories (and trash, a directory renamed away before it is deleted)
//! are named `.<what>.tmp-<pid>-<start>-<n>` (`.rm-` for trash): the process that writes them
//! and its start time, so that [`sweep`] removes what a crashed writer left and never a file
//! another command is still writing (a running pid with another start time is a reused pid).

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
    // Unique per process and call: writers of one file hold its lock, but a stale temporary
    // file of a crashed writer must not be appended to; the writer's tag lets a sweep take it.
    let tmp = temp_path(dir, &name, TMP);
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

/// A temporary entry (being written).
pub const TMP: &str = "tmp";
/// A trash entry (being deleted).
pub const RM: &str = "rm";

/// How old an entry without a writer's tag (an older version's) must be before a sweep takes it.
const UNTAGGED_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A process's start time in clock ticks since boot (`/proc/PID/stat` field 22); `None` if it
/// does not run (or is a zombie).
pub fn process_start(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.nth(18)?.parse().ok()
}

/// `<pid>-<start>` of this process.
fn own_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id() as i32;
        format!("{pid}-{}", process_start(pid).unwrap_or(0))
    })
}

/// A fresh path `dir/.<what>.<kind>-<pid>-<start>-<n>` for a temporary ([`TMP`]) or trash
/// ([`RM`]) entry of this process.
pub fn temp_path(dir: &Path, what: &str, kind: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".{what}.{kind}-{}-{n}", own_tag()))
}

/// The writer's pid and start time in a tagged name.
fn tag_of(name: &str) -> Option<(i32, u64)> {
    let at = [".tmp-", ".rm-"]
        .iter()
        .filter_map(|m| name.rfind(m).map(|i| i + m.len()))
        .max()?;
    let mut parts = name[at..].split('-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether directory entry `name` (at `path`) is a temporary or trash entry whose writer is
/// gone.
pub fn is_stale(name: &str, path: &Path) -> bool {
    if !name.starts_with('.') || !(name.contains(".tmp") || name.contains(".rm-")) {
        return false;
    }
    match tag_of(name) {
        Some((pid, start)) => process_start(pid) != Some(start),
        None => {
            use std::os::unix::fs::MetadataExt;
            fs::symlink_metadata(path).is_ok_and(|m| {
                let changed =
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.ctime().max(0) as u64);
                std::time::SystemTime::now()
                    .duration_since(changed)
                    .is_ok_and(|a| a >= UNTAGGED_AGE)
            })
        }
    }
}

/// Removes a file or a directory tree; a missing one is not an error.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes the temporary and trash entries of `dir` whose writer is gone (see the module's
/// doc); returns them. Each is renamed to a trash name of this process first, so that two
/// sweeps never delete one tree together and a sweep killed midway leaves one the next takes.
pub fn sweep(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let Some(n) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let p = e.path();
        if !is_stale(&n, &p) {
            continue;
        }
        let what = n.trim_start_matches('.');
        let what = what.split(".tmp").next().unwrap_or(what);
        let what = what.split(".rm-").next().unwrap_or(what);
        let mine = temp_path(dir, what, RM);
        if fs::rename(&p, &mine).is_err() {
            continue;
        }
        match remove_any(&mine) {
            Ok(()) => {
                tracing::info!(path = %p.display(), "removed what a crashed command left");
                removed.push(p);
            }
            Err(err) => tracing::warn!(path = %mine.display(), %err, "removing a leftover"),
        }
    }
    removed
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
    fn sweep_takes_only_what_a_gone_writer_left() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A crashed writer's temporary file and trash directory.
        fs::write(d.join(".ipam.json.tmp-999999999-1-0"), b"{").unwrap();
        fs::create_dir_all(d.join(".web.rm-999999999-1-3/endpoints")).unwrap();
        // One of this process, still being written.
        let live = temp_path(d, "dns.json", TMP);
        fs::write(&live, b"").unwrap();
        // State, and a young temporary file of an older version.
        fs::write(d.join("ipam.json"), b"{}").unwrap();
        fs::write(d.join(".x.json.tmp-12-ThreadId(1)"), b"").unwrap();
        let mut gone = sweep(d);
        gone.sort();
        assert_eq!(
            gone,
            vec![
                d.join(".ipam.json.tmp-999999999-1-0"),
                d.join(".web.rm-999999999-1-3")
            ]
        );
        let mut left: Vec<PathBuf> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        let mut want = vec![
            live,
            d.join("ipam.json"),
            d.join(".x.json.tmp-12-ThreadId(1)"),
        ];
        want.sort();
        assert_eq!(left, want);
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
