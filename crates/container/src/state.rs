//! Container state on disk, under `CORRAL_ROOT/containers`:
//!
//! ```text
//! containers/<id>/config.json   the ContainerConfig
//! containers/<id>/state.json    status, pids, exit code; rewritten atomically
//! containers/<id>/ctr.log       output, docker json-file lines
//! containers/<id>/{upper,work,rootfs}   overlay dirs and mount point (mounted only inside
//!                               the container's mount namespace)
//! containers/names/<name>       the id; created with O_EXCL, so one name has one owner
//! ```
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
            pid_start: None,
        }
    }
}

/// The containers directory.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
}

impl Containers {
    /// Opens (creating) `CORRAL_ROOT/containers`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let names = root.join("names");
        fs::create_dir_all(&names).map_err(io_err("creating", &names))?;
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

    /// Reserves `name` for `id`; exactly one of two racing callers wins.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        check_name(name)?;
        let p = self.root.join("names").join(name);
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(mut f) => f.write_all(id.as_bytes()).map_err(io_err("writing", &p)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let id = fs::read_to_string(&p).unwrap_or_default();
                Err(StateError::NameInUse {
                    name: name.to_owned(),
                    id: id.chars().take(12).collect(),
                })
            }
            Err(e) => Err(io_err("creating", &p)(e)),
        }
    }

    /// Frees a name.
    pub fn release_name(&self, name: &str) {
        let _ = fs::remove_file(self.root.join("names").join(name));
    }

    /// Writes a new container's directory, config and state.
    pub fn create(&self, state: &State, config: &ContainerConfig) -> Result<()> {
        let dir = self.dir(&state.id);
        for sub in ["upper", "work", "rootfs"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
        }
        write_json(&dir.join("config.json"), config)?;
        self.save(state)
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
        read_json(&self.dir(id).join("config.json"))
    }

    /// Reads a state as stored, without reconciling.
    pub fn load_raw(&self, id: &str) -> Result<State> {
        read_json(&self.dir(id).join("state.json"))
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

    /// All container ids.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(io_err("listing", &self.root))? {
            let e = e.map_err(io_err("listing", &self.root))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Finds a container by full id, unique id prefix or name.
    pub fn resolve(&self, what: &str) -> Result<String> {
        let by_name = self.root.join("names").join(what);
        if !what.contains('/') && !what.is_empty() {
            if let Ok(id) = fs::read_to_string(&by_name) {
                if self.dir(&id).join("state.json").exists() {
                    return Ok(id);
                }
            }
        }
        if what.len() >= 3 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<String> = self
                .ids()?
                .into_iter()
                .filter(|id| id.starts_with(what))
                .collect();
            match found.len() {
                1 => return Ok(found.into_iter().next().expect("one")),
                0 => {}
                _ => return Err(StateError::Ambiguous(what.to_owned())),
            }
        }
        Err(StateError::NotFound(what.to_owned()))
    }

    /// Removes what is left of a container whose state cannot be read: its directory and any
    /// name that points at it. Its processes and cgroups are found by id by the caller.
    pub fn remove_broken(&self, id: &str) -> Result<()> {
        if let Ok(rd) = fs::read_dir(self.root.join("names")) {
            for e in rd.flatten() {
                if fs::read_to_string(e.path()).is_ok_and(|v| v == id) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &dir)(e)),
            _ => Ok(()),
        }
    }

    /// Removes a container's directory and name.
    pub fn remove(&self, state: &State) -> Result<()> {
        self.release_name(&state.name);
        let dir = self.dir(&state.id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &dir)(e)),
            _ => Ok(()),
        }
    }
}

/// Checks a name as docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
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
    let tmp = path.with_extension("json.tmp");
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&data)?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(io_err("writing", path))
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

fn monitor_alive(s: &State) -> bool {
    match (s.monitor_pid, s.monitor_start) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
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
