//! Containers: the busybox image a container test runs, `ps`/`inspect` parsed, a guard that
//! removes the containers a test made, and the host-side checks that a container left nothing
//! behind — cgroup directories, processes, mounts.
//!
//! Where corral puts things (docs/cli-containers.md): state under `ROOT/containers/<id>/`,
//! cgroups v1 under `/sys/fs/cgroup/<controller>/corral/<id>` and v2 under
//! `/sys/fs/cgroup/corral/<id>`. The leak checks look there, and also search the cgroup tree a
//! few levels deep for any directory named after the id, so that a cgroup made in the wrong
//! place is found too.
//!
//! Signals and process inspection go through `kill(1)` and `/proc`, so that no `unsafe` libc
//! call is needed (the workspace forbids `unsafe_code`). The guard's `Drop` never panics: a
//! panic while a failing test unwinds would abort the whole test binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::busybox_rootfs_tar;
use crate::mounts::{mount_table, MountEntry};
use crate::process::{run_bounded, wait_deadline};
use crate::world::expect_failure;
use crate::{path_str, Corral};

/// The name [`Corral::busybox_image`] imports the busybox rootfs under.
pub const BUSYBOX_IMAGE: &str = "busybox:test";

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How long the guard waits for one `rm -f` before giving up on it.
const GUARD_RM_TIMEOUT: Duration = Duration::from_secs(60);

/// How deep below each hierarchy [`cgroup_dirs_anywhere`] looks for a stray cgroup.
const CGROUP_SEARCH_DEPTH: usize = 4;

impl Corral {
    /// Imports the busybox rootfs as [`BUSYBOX_IMAGE`] the first time it is called in this
    /// world (a marker file in the scratch dir remembers it), and returns that name.
    ///
    /// # Panics
    /// If the import fails.
    pub fn busybox_image(&self) -> &'static str {
        let marker = self.path(".busybox-image-imported");
        if !marker.exists() {
            let tar = self.path("busybox-rootfs.tar");
            busybox_rootfs_tar(&tar);
            self.ok(&["image", "import", path_str(&tar), BUSYBOX_IMAGE]);
            fs::write(&marker, BUSYBOX_IMAGE).expect("write busybox image marker");
        }
        BUSYBOX_IMAGE
    }

    /// `CORRAL_ROOT/containers`.
    pub fn containers_dir(&self) -> PathBuf {
        self.root().join("containers")
    }

    /// `CORRAL_ROOT/containers/<id>`, a container's state dir.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// `corral ps --json` (with `-a` when `all`), parsed.
    ///
    /// # Panics
    /// If the command fails or prints anything but a JSON array.
    pub fn ps(&self, all: bool) -> Vec<ListedContainer> {
        let args: &[&str] = if all {
            &["ps", "-a", "--json"]
        } else {
            &["ps", "--json"]
        };
        let text = self.ok(args);
        let value: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("corral {args:?} printed invalid JSON ({e}):\n{text}"));
        value
            .as_array()
            .unwrap_or_else(|| panic!("corral {args:?} is not a JSON array:\n{text}"))
            .iter()
            .map(ListedContainer::from_json)
            .collect()
    }

    /// The row of `ps -a --json` whose name or id is `name_or_id`, if any.
    pub fn listed_container(&self, name_or_id: &str) -> Option<ListedContainer> {
        self.ps(true)
            .into_iter()
            .find(|c| c.name == name_or_id || c.id == name_or_id)
    }

    /// `corral inspect C`, parsed.
    ///
    /// # Panics
    /// If the command fails or does not print a JSON object.
    pub fn inspect_container(&self, name_or_id: &str) -> ContainerInfo {
        let text = self.ok(&["inspect", "--json", name_or_id]);
        ContainerInfo::parse(&text)
            .unwrap_or_else(|e| panic!("corral inspect {name_or_id}: {e}:\n{text}"))
    }

    /// Runs `corral args...` and panics unless it fails with corral's own exit code (125);
    /// returns stderr.
    pub fn fail_125(&self, args: &[&str]) -> String {
        let (code, stderr) = expect_failure(&format!("corral {args:?}"), self.cmd(args));
        assert_eq!(
            code, 125,
            "corral {args:?}: expected corral's own failure (125), stderr:\n{stderr}"
        );
        stderr
    }
}

/// One row of `corral ps --json`.
#[derive(Debug, Clone)]
pub struct ListedContainer {
    /// The full id (64 hex).
    pub id: String,
    /// The container's name.
    pub name: String,
    /// `created`, `running` or `exited`.
    pub status: String,
    /// The exit code, when it has exited.
    pub exit_code: Option<i64>,
    /// Whether the OOM killer killed it.
    pub oom_killed: bool,
    /// Its init's host pid, when running (`0` and `null` both read as none).
    pub pid: Option<u32>,
    /// The raw JSON object.
    pub raw: Value,
}

impl ListedContainer {
    fn from_json(value: &Value) -> Self {
        ListedContainer {
            id: str_at(value, "id"),
            name: str_at(value, "name"),
            status: str_at(value, "status"),
            exit_code: value.get("exit_code").and_then(Value::as_i64),
            oom_killed: value
                .get("oom_killed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            pid: pid_at(value.get("pid")),
            raw: value.clone(),
        }
    }
}

/// `corral inspect C`, the fields tests check, and the raw object for the rest.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// The full id.
    pub id: String,
    /// The name.
    pub name: String,
    /// `state.status`.
    pub status: String,
    /// `state.running`.
    pub running: bool,
    /// `state.pid`: the init's host pid while running.
    pub pid: Option<u32>,
    /// `state.exit_code`.
    pub exit_code: Option<i64>,
    /// `state.oom_killed`.
    pub oom_killed: bool,
    /// `cgroup_paths`.
    pub cgroup_paths: Vec<PathBuf>,
    /// `log_path`.
    pub log_path: PathBuf,
    /// The raw JSON object.
    pub raw: Value,
}

impl ContainerInfo {
    fn parse(text: &str) -> Result<Self, String> {
        let value: Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("invalid JSON ({e})"))?;
        // Accept docker's habit of an array of one, though the contract is one object.
        let raw = match value {
            Value::Array(mut items) if items.len() == 1 => items.swap_remove(0),
            other => other,
        };
        if !raw.is_object() {
            return Err("not a JSON object".to_owned());
        }
        let state = raw.get("state").cloned().unwrap_or(Value::Null);
        Ok(ContainerInfo {
            id: str_at(&raw, "id"),
            name: str_at(&raw, "name"),
            status: str_at(&state, "status"),
            running: state
                .get("running")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            pid: pid_at(state.get("pid")),
            exit_code: state.get("exit_code").and_then(Value::as_i64),
            oom_killed: state
                .get("oom_killed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            cgroup_paths: raw
                .get("cgroup_paths")
                .and_then(Value::as_array)
                .map(|paths| {
                    paths
                        .iter()
                        .filter_map(Value::as_str)
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
            log_path: PathBuf::from(str_at(&raw, "log_path")),
            raw,
        })
    }
}

fn str_at(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn pid_at(value: Option<&Value>) -> Option<u32> {
    value
        .and_then(Value::as_u64)
        .filter(|&p| p > 0)
        .and_then(|p| u32::try_from(p).ok())
}

/// True if `s` is a full container id: 64 lowercase hex digits.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The container id a command (`run -d`, `create`) printed: its last non-empty stdout line.
///
/// # Panics
/// If that line is not 64 lowercase hex digits.
pub fn printed_container_id(stdout: &str) -> String {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("expected a container id, got no output"));
    assert!(
        is_container_id(line),
        "expected a 64-hex container id as the last line, got {line:?} in:\n{stdout}"
    );
    line.to_owned()
}

/// Removes, when dropped, every container it tracks and every container `ps -a` still lists in
/// its world (`rm -f`, bounded), even when the test failed. Should corral fail to remove one, it kills what is left in the container's cgroups
/// (processes this test started) and removes those cgroups, so that nothing outlives the test;
/// it warns on stderr when it had to.
///
/// Declare it after the [`Corral`] it borrows, so that it drops first.
pub struct ContainerGuard<'a> {
    corral: &'a Corral,
    tracked: Vec<String>,
}

impl<'a> ContainerGuard<'a> {
    /// A guard over containers of `corral`'s world, tracking none yet.
    pub fn new(corral: &'a Corral) -> Self {
        ContainerGuard {
            corral,
            tracked: Vec::new(),
        }
    }

    /// Tracks a container by name or id: it is `rm -f`ed on drop.
    pub fn track(&mut self, name_or_id: &str) {
        if !self.tracked.iter().any(|t| t == name_or_id) {
            self.tracked.push(name_or_id.to_owned());
        }
    }

    /// Runs `corral args...` without ever panicking, stdout and stderr to files in the scratch
    /// dir; `None` if it could not start or did not finish in time (it is killed then).
    fn quiet_cmd(&self, args: &[&str]) -> Option<String> {
        let token = crate::unique_token();
        let out_path = self.corral.path(&format!("guard-{token}.out"));
        let out = fs::File::create(&out_path).ok()?;
        let err = fs::File::create(self.corral.path(&format!("guard-{token}.err"))).ok()?;
        let mut child = self
            .corral
            .command(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .ok()?;
        let status = wait_deadline(&mut child, GUARD_RM_TIMEOUT)?;
        if !status.success() {
            return None;
        }
        fs::read_to_string(out_path).ok()
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        // The world is this test's own: whatever `ps -a` still lists was made by the test (a
        // `run --rm` that did not remove its container, say) and goes too.
        let mut all = std::mem::take(&mut self.tracked);
        if let Some(listed) = self.quiet_cmd(&["ps", "-a", "-q"]) {
            all.extend(listed.split_whitespace().map(str::to_owned));
        }
        for name in all {
            // Learn the id and cgroups first: after `rm` they can no longer be asked for.
            let info = self
                .quiet_cmd(&["inspect", "--json", &name])
                .and_then(|text| ContainerInfo::parse(&text).ok());
            let removed = self.quiet_cmd(&["rm", "-f", &name]).is_some();
            let Some(info) = info else {
                // Never created, or already removed by the test itself.
                continue;
            };
            let mut leftovers = info.cgroup_paths.clone();
            if is_container_id(&info.id) {
                leftovers.extend(cgroup_dirs(&info.id));
            }
            leftovers.retain(|p| p.is_dir());
            leftovers.sort();
            leftovers.dedup();
            if !removed || !leftovers.is_empty() {
                eprintln!(
                    "warning: container {name} ({}) was not cleanly removed (rm -f ok: \
                     {removed}); killing what is left in {leftovers:?}",
                    info.id
                );
                kill_and_remove_cgroups(&leftovers);
            }
        }
    }
}

/// Last resort of the guard: SIGKILL every process in `dirs` (and their sub-cgroups), then
/// remove the cgroup directories, deepest first. Never panics.
fn kill_and_remove_cgroups(dirs: &[PathBuf]) {
    let mut all_dirs: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        all_dirs.push(dir.clone());
        all_dirs.extend(
            crate::files::walk(dir)
                .into_iter()
                .filter(|(_, m)| m.is_dir())
                .map(|(p, _)| p),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<u32> = all_dirs.iter().flat_map(|d| cgroup_procs(d)).collect();
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = signal(pid, "KILL");
        }
        thread::sleep(Duration::from_millis(100));
    }
    all_dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in all_dirs {
        if let Err(e) = fs::remove_dir(&dir) {
            eprintln!("warning: rmdir {}: {e}", dir.display());
        }
    }
}

/// The pids listed in a cgroup's `cgroup.procs` (empty if it cannot be read).
pub fn cgroup_procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The cgroup directories of container `id` where the contract puts them and that exist:
/// `/sys/fs/cgroup/*/corral/<id>` (v1, and the hybrid v2 mount) and `/sys/fs/cgroup/corral/<id>`
/// (v2).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    let mut found = Vec::new();
    let v2 = root.join("corral").join(id);
    if v2.is_dir() {
        found.push(v2);
    }
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let candidate = entry.path().join("corral").join(id);
            if candidate.is_dir() {
                found.push(candidate);
            }
        }
    }
    found.sort();
    found
}

/// Every directory under `/sys/fs/cgroup` (a few levels deep) whose name contains `id`,
/// wherever it is: finds cgroups made outside the contract's place too.
pub fn cgroup_dirs_anywhere(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::from(CGROUP_ROOT), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_string_lossy().contains(id) {
                found.push(path.clone());
            }
            if depth < CGROUP_SEARCH_DEPTH {
                stack.push((path, depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// Host pids whose command line or cgroup membership mentions `id` (this process excluded):
/// the container's processes and its monitor.
pub fn processes_of(id: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || !process_alive(pid) {
            continue;
        }
        let dir = entry.path();
        let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
        let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(id) || cgroup.contains(id) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}

/// Host mounts under `state_dir` or whose mount point or source names `id`.
pub fn mounts_of(id: &str, state_dir: &Path) -> Vec<MountEntry> {
    mount_table()
        .into_iter()
        .filter(|m| {
            m.mount_point.starts_with(state_dir)
                || m.mount_point.to_string_lossy().contains(id)
                || m.source.contains(id)
        })
        .collect()
}

/// The one-letter state of a process (`R`, `S`, `Z`...), from `/proc/<pid>/stat`.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ppid ...`: comm may hold spaces and parentheses; it ends at the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// True if `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    matches!(process_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The command line of `pid`, arguments joined by spaces.
pub fn process_cmdline(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends `sig` (`KILL`, `TERM`...) to `pid` with `kill(1)`; true if it was delivered.
pub fn signal(pid: u32, sig: &str) -> bool {
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{sig}")).arg(pid.to_string());
    let Ok(mut child) = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
        return false;
    };
    matches!(wait_deadline(&mut child, Duration::from_secs(10)), Some(s) if s.success())
}

/// Polls `done` every 100 ms until it is true or `timeout` passes; returns whether it became
/// true.
pub fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// As [`poll_until`], panicking with `what` when the time runs out.
pub fn wait_until(timeout: Duration, what: &str, done: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, done),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// Runs a host program with a deadline and returns its stdout (panics unless it succeeds).
pub fn host_output(program: &str, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new(program).args(args),
        None,
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        crate::process::describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `corral run --rm FLAGS busybox:test CMD...`, bounded by the world's deadline.
pub fn run_rm(c: &Corral, flags: &[&str], cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.push(BUSYBOX_IMAGE);
    args.extend_from_slice(cmd);
    c.cmd(&args)
}

/// As [`run_rm`], panicking unless the container exits 0; returns its stdout.
pub fn run_rm_ok(c: &Corral, flags: &[&str], cmd: &[&str]) -> String {
    let out = run_rm(c, flags, cmd);
    assert!(
        out.status.success(),
        "corral run --rm {flags:?} {BUSYBOX_IMAGE} {cmd:?}: {}",
        crate::process::describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `corral run -d --name NAME FLAGS busybox:test CMD...`: tracks it in `guard`, returns the id.
pub fn run_detached(
    c: &Corral,
    guard: &mut ContainerGuard<'_>,
    name: &str,
    flags: &[&str],
    cmd: &[&str],
) -> String {
    guard.track(name);
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.push(BUSYBOX_IMAGE);
    args.extend_from_slice(cmd);
    printed_container_id(&c.ok(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_container_ids() {
        assert!(is_container_id(&"ab12".repeat(16)));
        assert!(!is_container_id(&"AB12".repeat(16)));
        assert!(!is_container_id("abc"));
        assert_eq!(
            printed_container_id(&format!("noise\n{}\n\n", "0f".repeat(32))),
            "0f".repeat(32)
        );
    }

    #[test]
    fn reads_parent_and_state_of_this_process() {
        let me = std::process::id();
        assert!(process_alive(me));
        // The main thread of the test binary waits for this one: sleeping or running.
        assert!(matches!(process_state(me), Some('R' | 'S')));
        assert!(parent_pid(me).is_some());
    }

    #[test]
    fn parses_inspect_with_state() {
        let text = r#"{"id":"x","name":"n","state":{"status":"running","running":true,
            "pid":42,"exit_code":null,"oom_killed":false},"cgroup_paths":["/a"],"log_path":"/l"}"#;
        let info = ContainerInfo::parse(text).unwrap();
        assert_eq!(info.pid, Some(42));
        assert!(info.running);
        assert_eq!(info.exit_code, None);
        assert_eq!(info.cgroup_paths, [PathBuf::from("/a")]);
    }
}
