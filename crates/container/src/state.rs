//! Container state on disk, under `CORRAL_ROOT/containers`:
//!
//! ```text
//! containers/<id>/config.json   the ContainerConfig
//! containers/<id>/state.json    status, pids, exit code; rewritten atomically
//! containers/<id>/ctr.log       output, docker json-file lines
//! containers/<id>/{upper,work,rootfs}   overlay dirs and mount point (mounted only inside
//!                               the container's mount namespace)
//! containers/names/<name>       symlink to `<id>` (`<id>@<pid>-<start>` until the container
//!                               exists: with the process that reserved the name)
//! containers/.<id>.tmp-*, .rm-*  a container being made or removed (never listed)
//! ```
//!
//! A container exists when its directory `containers/<id>` does: the directory is built under
//! a temporary name and renamed into place, one atomic step, so a crash leaves either no
//! container or a whole one. Removal is the reverse: the directory is renamed to a trash name
//! (from then on the container does not exist), then its name is released and the trash
//! deleted. Temporary and trash directories whose process is gone are swept by the next
//! [`Containers::open`] ([`crate::staging`]).
//!
//! A name is reserved before the directory is made, by a symlink (created with one atomic
//! syscall that fails if the name is taken, so one name has one owner). Until the container
//! exists it also names the reserving process. A name whose container does not exist and
//! whose reserver (if it names one) is gone was left by a crash. It is freed by whoever meets it — a `run --name`
//! that wants it, a lookup by name, a listing — with a log line.
//!
//! A container whose monitor died is reconciled on read: it is reported as exited with an
//! unknown code (255) and the error says so.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ContainerConfig;

/// Errors of the container state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
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
    #[error("corrupt state file {path} (remove the container with `corral rm -f`)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: serde_json::Error,
    },
    /// No container has this id or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// The id prefix is not unique.
    #[error("{0} names more than one container: give more of the id")]
    Ambiguous(String),
    /// The name is taken.
    #[error(
        "the name {name:?} is already in use by container {id}: remove it or choose another name"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The id that has it.
        id: String,
    },
    /// The name has characters docker refuses.
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
}

/// Result of state operations.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |err| StateError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

/// Lifecycle status.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
}

/// The mutable state of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Full id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Image as the user named it.
    pub image: String,
    /// Image id.
    pub image_id: String,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Status.
    pub status: Status,
    /// Host pid of the container's process, while it runs.
    pub pid: Option<i32>,
    /// Host pid of the monitor.
    pub monitor_pid: Option<i32>,
    /// The monitor's start time (clock ticks since boot, /proc/PID/stat field 22): tells a
    /// reused pid from the monitor.
    pub monitor_start: Option<u64>,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// Killed by the OOM killer.
    pub oom_killed: bool,
    /// Start time.
    pub started_at: Option<String>,
    /// End time.
    pub finished_at: Option<String>,
    /// Why it failed to start, or why its end is unknown.
    pub error: Option<String>,
    /// Remove when it exits.
    pub auto_remove: bool,
    /// cgroup directories it used.
    pub cgroup_paths: Vec<PathBuf>,
    /// The entrypoint part of the command, as the user or image gave it (for inspect).
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The cmd part of the command.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Frozen by `pause`.
    #[serde(default)]
    pub paused: bool,
    /// Times the restart policy started it again.
    #[serde(default)]
    pub restart_count: u32,
    /// Set by `stop` and `kill`: the restart policy does not apply to an exit someone asked for.
    #[serde(default)]
    pub stop_requested: bool,
    /// The OCI bundle, for containers made through the runtime command line.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// The process's start time (/proc/PID/stat field 22), to tell it from a reused pid.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// The config has something `start` or `delete` must act on (an OCI bundle's hooks, a
    /// root bound in the caller's mount namespace): only then do they read it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub teardown_config: bool,
}

impl State {
    /// A just-created container: nothing has run yet.
    pub fn new(id: &str, name: &str) -> Self {
        State {
            id: id.to_owned(),
            name: name.to_owned(),
            image: String::new(),
            image_id: String::new(),
            created: now(),
            status: Status::Created,
            pid: None,
            monitor_pid: None,
            monitor_start: None,
            exit_code: None,
            oom_killed: false,
            started_at: None,
            finished_at: None,
            error: None,
            auto_remove: false,
            cgroup_paths: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            paused: false,
            restart_count: 0,
            stop_requested: false,
            bundle: None,
            teardown_config: false,
            pid_start: None,
        }
    }
}

/// The containers directory.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
}

/// What a name's symlink says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NameRecord {
    /// The container that holds the name.
    id: String,
    /// The process that reserved it (`None` for a record of an older version: a plain file).
    reserver: Option<(i32, u64)>,
}

impl NameRecord {
    fn parse(text: &str) -> Option<NameRecord> {
        let (id, reserver) = match text.split_once('@') {
            Some((id, tag)) => {
                let (pid, start) = tag.split_once('-')?;
                (id, Some((pid.parse().ok()?, start.parse().ok()?)))
            }
            None => (text.trim(), None),
        };
        (!id.is_empty() && !id.contains('/') && !id.starts_with('.')).then(|| NameRecord {
            id: id.to_owned(),
            reserver,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Containers {
    /// Opens (creating) `CORRAL_ROOT/containers`, and sweeps what crashed commands left of
    /// containers being made or removed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let names = root.join("names");
        fs::create_dir_all(&names).map_err(io_err("creating", &names))?;
        crate::staging::sweep(&root);
        crate::staging::sweep(&names);
        Ok(Containers { root })
    }

    /// The containers directory itself.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// A container's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Whether container `id` exists (its directory is in place; see the module's doc): what
    /// the engine tells `corral_net::Networks::reconcile` an endpoint's owner is alive by.
    pub fn exists(&self, id: &str) -> bool {
        !id.is_empty()
            && id != "names"
            && !id.contains('/')
            && !id.starts_with('.')
            && self.dir(id).is_dir()
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.root.join("names").join(name)
    }

    /// The record of `name`, if it has one.
    fn name_record(&self, name: &str) -> Option<(String, NameRecord)> {
        let p = self.name_path(name);
        let raw = match fs::read_link(&p) {
            Ok(t) => t.to_string_lossy().into_owned(),
            // A plain file: a record of an older version, holding the id.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => fs::read_to_string(&p).ok()?,
            Err(_) => return None,
        };
        let rec = NameRecord::parse(&raw).unwrap_or(NameRecord {
            id: String::new(),
            reserver: None,
        });
        Some((raw, rec))
    }

    /// Whether a record was left by a crash: its container does not exist and the process
    /// that reserved it is gone (checked in this order: a reserver that ends has committed
    /// its container or never will).
    fn is_stale(&self, rec: &NameRecord) -> bool {
        let reserver_gone = rec
            .reserver
            .is_none_or(|(pid, start)| !crate::staging::alive(pid, start));
        reserver_gone && (rec.id.is_empty() || !self.dir(&rec.id).is_dir())
    }

    /// Frees `name` if its record is still `raw` and stale; under the names lock, so that two
    /// processes freeing one stale record never remove a fresh one.
    fn free_stale_name(&self, name: &str, raw: &str) -> Result<bool> {
        let lock_path = self.root.join("names").join(".lock");
        let lock = File::create(&lock_path).map_err(io_err("creating", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("locking", &lock_path)(e.into()))?;
        match self.name_record(name) {
            Some((now, rec)) if now == raw && self.is_stale(&rec) => {
                let p = self.name_path(name);
                match fs::remove_file(&p) {
                    Ok(()) => {
                        tracing::info!(
                            name,
                            id = %rec.id,
                            "freed a container name that a crashed command left reserved"
                        );
                        Ok(true)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                    Err(e) => Err(io_err("removing", &p)(e)),
                }
            }
            _ => Ok(false),
        }
    }

    /// Reserves `name` for `id`; exactly one of two racing callers wins. A name left reserved
    /// by a crashed command is freed and taken.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        check_name(name)?;
        let p = self.name_path(name);
        let pid = std::process::id() as i32;
        let target = format!("{id}@{pid}-{}", process_start_time(pid).unwrap_or(0));
        for _ in 0..3 {
            match std::os::unix::fs::symlink(&target, &p) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let Some((raw, rec)) = self.name_record(name) else {
                        // Released meanwhile: try again.
                        continue;
                    };
                    if self.is_stale(&rec) && self.free_stale_name(name, &raw)? {
                        continue;
                    }
                    return Err(StateError::NameInUse {
                        name: name.to_owned(),
                        id: rec.id.chars().take(12).collect(),
                    });
                }
                Err(e) => return Err(io_err("creating", &p)(e)),
            }
        }
        Err(StateError::NameInUse {
            name: name.to_owned(),
            id: String::new(),
        })
    }

    /// Frees a name.
    pub fn release_name(&self, name: &str) {
        let _ = fs::remove_file(self.name_path(name));
    }

    /// Frees `name` if container `id` holds it.
    pub fn release_name_of(&self, name: &str, id: &str) {
        if self.name_record(name).is_some_and(|(_, rec)| rec.id == id) {
            let _ = fs::remove_file(self.name_path(name));
        }
    }

    /// Writes a new container's directory, config and state: built under a temporary name and
    /// renamed into place, so that the container exists whole or not at all.
    pub fn create(&self, state: &State, config: &ContainerConfig) -> Result<()> {
        self.create_with_files(state, config, &[])
    }

    /// [`Containers::create`], with more files (name in the directory, content) written
    /// before the directory is renamed into place.
    pub fn create_with_files(
        &self,
        state: &State,
        config: &ContainerConfig,
        files: &[(&str, &[u8])],
    ) -> Result<()> {
        let dir = self.dir(&state.id);
        let tmp = crate::staging::path(&self.root, &state.id, crate::staging::TMP);
        let built = (|| {
            for sub in ["upper", "work", "rootfs"] {
                let p = tmp.join(sub);
                fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
            }
            for (name, data) in files {
                let p = tmp.join(name);
                if name.contains('/') || name.starts_with('.') {
                    return Err(io_err("creating", &p)(io::Error::other(
                        "not a plain file name",
                    )));
                }
                fs::write(&p, data).map_err(io_err("writing", &p))?;
            }
            write_json(&tmp.join("config.json"), config)?;
            write_json(&tmp.join("state.json"), state)?;
            fs::rename(&tmp, &dir).map_err(io_err("creating", &dir))
        })();
        if built.is_err() {
            let _ = crate::staging::remove_any(&tmp);
            return built;
        }
        self.settle_name(&state.name, &state.id);
        Ok(())
    }

    /// Once the container exists, its name record no longer needs to name the process that
    /// reserved it: replaced (atomically) by one that names only the container, so that a
    /// removal killed midway leaves a record that is stale whoever still runs. Best effort: a
    /// record that keeps its reserver is stale once that process ends.
    fn settle_name(&self, name: &str, id: &str) {
        if !self
            .name_record(name)
            .is_some_and(|(_, r)| r.id == id && r.reserver.is_some())
        {
            return;
        }
        let names = self.root.join("names");
        let tmp = crate::staging::path(&names, name, crate::staging::TMP);
        if std::os::unix::fs::symlink(id, &tmp).is_err()
            || fs::rename(&tmp, self.name_path(name)).is_err()
        {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Rewrites a state atomically.
    pub fn save(&self, state: &State) -> Result<()> {
        write_json(&self.dir(&state.id).join("state.json"), state)
    }

    /// Rewrites a config atomically (the engine updates a pod member's namespaces at start).
    pub fn save_config(&self, id: &str, config: &ContainerConfig) -> Result<()> {
        write_json(&self.dir(id).join("config.json"), config)
    }

    /// Reads a config.
    pub fn config(&self, id: &str) -> Result<ContainerConfig> {
        read_json(&self.dir(id).join("config.json")).map_err(|e| named(e, id))
    }

    /// Reads a state as stored, without reconciling.
    pub fn load_raw(&self, id: &str) -> Result<State> {
        read_json(&self.dir(id).join("state.json")).map_err(|e| named(e, id))
    }

    /// Reads a state, reconciling a running container whose monitor is gone.
    pub fn load(&self, id: &str) -> Result<State> {
        let mut s = self.load_raw(id)?;
        // Only containers that have a monitor (the engine's; the runtime's are supervised by
        // conmon or containerd's shim) can lose it.
        if s.status == Status::Running && s.monitor_pid.is_some() && !monitor_alive(&s) {
            s.status = Status::Exited;
            s.exit_code = Some(255);
            s.pid = None;
            s.error = Some("the container's monitor died; its exit code is unknown".into());
            let _ = self.save(&s);
        }
        Ok(s)
    }

    /// All container ids. Also frees the names that crashed commands left reserved.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(io_err("listing", &self.root))? {
            let e = e.map_err(io_err("listing", &self.root))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(n);
            }
        }
        self.sweep_names();
        Ok(out)
    }

    /// Frees every stale name (see the module's doc).
    fn sweep_names(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("names")) else {
            return;
        };
        for e in rd.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_name(&name) {
                continue;
            }
            if let Some((raw, rec)) = self.name_record(&name) {
                if self.is_stale(&rec) {
                    if let Err(err) = self.free_stale_name(&name, &raw) {
                        tracing::warn!(name, %err, "freeing a stale container name");
                    }
                }
            }
        }
    }

    /// Finds a container by full id, unique id prefix or name.
    pub fn resolve(&self, what: &str) -> Result<String> {
        if valid_name(what) {
            if let Some((raw, rec)) = self.name_record(what) {
                if self.dir(&rec.id).is_dir() {
                    return Ok(rec.id);
                }
                if self.is_stale(&rec) {
                    self.free_stale_name(what, &raw)?;
                }
            }
        }
        let ids = self.ids()?;
        if what.len() >= 3 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<&String> = ids.iter().filter(|id| id.starts_with(what)).collect();
            match found.len() {
                1 => return Ok(found[0].clone()),
                0 => {}
                _ => return Err(StateError::Ambiguous(what.to_owned())),
            }
        }
        // A container whose name record is missing (an older version removed the name before
        // the directory and was killed in between) is still found by its name.
        if valid_name(what) {
            if let Some(id) = ids
                .into_iter()
                .find(|id| self.load_raw(id).is_ok_and(|s| s.name == what))
            {
                return Ok(id);
            }
        }
        Err(StateError::NotFound(what.to_owned()))
    }

    /// Makes the container not exist (its directory renamed to a trash name), releases the
    /// names `names` that point at it, then deletes the trash. A failure to delete the trash
    /// is logged, not returned: the container is gone, and the next sweep finishes the job.
    fn remove_dir_and_names(&self, id: &str, names: &[String]) -> Result<()> {
        let dir = self.dir(id);
        let trash = crate::staging::path(&self.root, id, crate::staging::RM);
        let moved = match fs::rename(&dir, &trash) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err("removing", &dir)(e)),
        };
        for n in names {
            self.release_name_of(n, id);
        }
        if moved {
            if let Err(err) = crate::staging::remove_any(&trash) {
                tracing::warn!(id, path = %trash.display(), %err, "deleting a removed container's files");
            }
        }
        Ok(())
    }

    /// Removes what is left of a container whose state cannot be read: its directory and any
    /// name that points at it. Its processes and cgroups are found by id by the caller.
    pub fn remove_broken(&self, id: &str) -> Result<()> {
        let mut names = Vec::new();
        if let Ok(rd) = fs::read_dir(self.root.join("names")) {
            for e in rd.flatten() {
                let Some(n) = e.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if self.name_record(&n).is_some_and(|(_, r)| r.id == id) {
                    names.push(n);
                }
            }
        }
        self.remove_dir_and_names(id, &names)
    }

    /// Removes a container's directory and name.
    pub fn remove(&self, state: &State) -> Result<()> {
        self.remove_dir_and_names(&state.id, std::slice::from_ref(&state.name))
    }
}

/// Checks a name as docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters.
pub fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_owned()))
    }
}

/// Writes through a temporary file and a rename: a crash of any process leaves the old or the
/// new file. Not fsynced: this is runtime state (podman keeps its own in tmpfs), no container
/// survives a power cut, and an fsync costs milliseconds on every start and stop.
fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let data = serde_json::to_vec(v).expect("serializable");
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = crate::staging::path(dir, &file, crate::staging::TMP);
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(&data)?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(io_err("writing", path))
}

/// A missing file of container `id` is a missing container, named by its id.
fn named(e: StateError, id: &str) -> StateError {
    match e {
        StateError::NotFound(_) => StateError::NotFound(id.to_owned()),
        e => e,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StateError::NotFound(path.display().to_string())
            } else {
                io_err("reading", path)(e)
            }
        })?;
    serde_json::from_slice(&buf).map_err(|err| StateError::Corrupt {
        path: path.to_owned(),
        err,
    })
}

/// A process's start time in clock ticks since boot (/proc/PID/stat field 22).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether process `pid` still runs (not a zombie) and is the one that started at `start`.
pub fn process_running(pid: i32, start: Option<u64>) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut f = stat[close + 2..].split(' ');
    let state = f.next().unwrap_or("");
    state != "Z" && state != "X" && start.is_some() && process_start_time(pid) == start
}

/// Whether the container's monitor runs. A zombie does not: a monitor killed a moment ago is
/// one until its new parent reaps it, and its container (which dies with it) is already gone.
fn monitor_alive(s: &State) -> bool {
    match (s.monitor_pid, s.monitor_start) {
        (Some(pid), start @ Some(_)) => process_running(pid, start),
        _ => false,
    }
}

/// Now as RFC 3339 UTC, nanoseconds precision (containers made in one second still sort).
pub fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// A fresh container id: 32 random bytes as hex.
pub fn new_id() -> io::Result<String> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD: &str = "999999999-1";

    fn store() -> (tempfile::TempDir, Containers) {
        let t = tempfile::tempdir().unwrap();
        let cs = Containers::open(t.path().join("containers")).unwrap();
        (t, cs)
    }

    fn make(cs: &Containers, name: &str) -> State {
        let s = State::new(&new_id().unwrap(), name);
        cs.reserve_name(name, &s.id).unwrap();
        cs.create(&s, &ContainerConfig::defaults(vec![], vec!["true".into()]))
            .unwrap();
        s
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn create_and_remove_leave_nothing_behind() {
        let (_t, cs) = store();
        let s = make(&cs, "web");
        assert_eq!(cs.ids().unwrap(), vec![s.id.clone()]);
        assert_eq!(cs.resolve("web").unwrap(), s.id);
        assert_eq!(cs.resolve(&s.id[..8]).unwrap(), s.id);
        assert!(matches!(
            cs.reserve_name("web", "other"),
            Err(StateError::NameInUse { .. })
        ));
        cs.remove(&s).unwrap();
        assert!(cs.ids().unwrap().is_empty());
        assert!(matches!(cs.resolve("web"), Err(StateError::NotFound(_))));
        assert_eq!(entries(cs.root()), vec!["names"]);
        assert!(entries(&cs.root().join("names")).is_empty());
    }

    #[test]
    fn a_name_left_by_a_crashed_create_is_freed() {
        let (_t, cs) = store();
        let names = cs.root().join("names");
        // Killed after reserving the name, before the directory was renamed into place.
        let id = new_id().unwrap();
        std::os::unix::fs::symlink(format!("{id}@{DEAD}"), names.join("web")).unwrap();
        fs::create_dir(cs.root().join(format!(".{id}.tmp-{DEAD}-00"))).unwrap();
        // Invisible, and the name is taken again at once.
        assert!(cs.ids().unwrap().is_empty());
        let s = make(&cs, "web");
        assert_eq!(cs.resolve("web").unwrap(), s.id);
        // The next open sweeps the temporary directory.
        let cs = Containers::open(cs.root()).unwrap();
        assert_eq!(entries(cs.root()), vec![s.id.clone(), "names".to_owned()]);
        // Lookups and listings free stale names too (here: an older version's plain file).
        fs::write(names.join("old"), new_id().unwrap()).unwrap();
        assert!(matches!(cs.resolve("old"), Err(StateError::NotFound(_))));
        assert!(!names.join("old").exists());
        std::os::unix::fs::symlink(format!("{id}@{DEAD}"), names.join("gen")).unwrap();
        cs.ids().unwrap();
        assert_eq!(entries(&names), vec![".lock", "web"]);
    }

    #[test]
    fn a_name_being_created_is_not_taken() {
        let (_t, cs) = store();
        // Reserved by a process that runs (this one) for a container not yet in place.
        cs.reserve_name("busy", &new_id().unwrap()).unwrap();
        assert!(matches!(
            cs.reserve_name("busy", &new_id().unwrap()),
            Err(StateError::NameInUse { .. })
        ));
        cs.ids().unwrap();
        assert!(cs.root().join("names/busy").symlink_metadata().is_ok());
    }

    #[test]
    fn a_removal_killed_midway_leaves_the_container_gone_and_swept() {
        let (_t, cs) = store();
        let s = make(&cs, "db");
        // Killed after the rename to trash, before the name was released and the files
        // deleted.
        let trash = cs.root().join(format!(".{}.rm-{DEAD}-00", s.id));
        fs::rename(cs.dir(&s.id), &trash).unwrap();
        assert!(cs.ids().unwrap().is_empty(), "gone at once");
        assert!(matches!(cs.resolve("db"), Err(StateError::NotFound(_))));
        make(&cs, "db");
        Containers::open(cs.root()).unwrap();
        assert!(!trash.exists());
    }

    #[test]
    fn extra_files_come_in_with_the_container() {
        let (_t, cs) = store();
        let s = State::new(&new_id().unwrap(), "f");
        let cfg = ContainerConfig::defaults(vec![], vec!["true".into()]);
        cs.create_with_files(&s, &cfg, &[("networks.json", b"[]")])
            .unwrap();
        assert_eq!(
            fs::read(cs.dir(&s.id).join("networks.json")).unwrap(),
            b"[]"
        );
        let t = State::new(&new_id().unwrap(), "g");
        assert!(cs.create_with_files(&t, &cfg, &[("../x", b"")]).is_err());
        assert!(!cs.exists(&t.id));
        assert_eq!(
            entries(cs.root()).len(),
            2,
            "no temporary directory is left"
        );
    }

    #[test]
    fn exists_only_once_in_place() {
        let (_t, cs) = store();
        let s = make(&cs, "x");
        assert!(cs.exists(&s.id));
        for bad in ["", "names", "../x", ".tmp"] {
            assert!(!cs.exists(bad), "{bad}");
        }
        cs.remove(&s).unwrap();
        assert!(!cs.exists(&s.id));
    }

    #[test]
    fn a_container_without_its_name_record_is_found_by_name() {
        let (_t, cs) = store();
        let s = make(&cs, "lost");
        fs::remove_file(cs.root().join("names/lost")).unwrap();
        assert_eq!(cs.resolve("lost").unwrap(), s.id);
    }
}
