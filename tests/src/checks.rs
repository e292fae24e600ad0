//! Helpers for the tests of pods and of `run`'s newer flags (`tests/pods.rs`,
//! `tests/run_flags.rs`): a guard that removes a test's pods, `pod inspect` parsed, host
//! processes found by their command line, JSON printed either as an array or as one object per
//! line, and podman on runc with a private store, the peer whose answers corral's are set
//! beside.
//!
//! A pod's sandbox is `corral __pod HOSTNAME`: its command line names neither the pod nor the
//! state root, so the guard finds a leftover one by the `InfraPid` that `pod inspect` gave
//! before the removal, and ends only that pid, and only if it still is a `__pod` process.
//!
//! podman here (ARCHITECTURE.md, "Virtualization on these machines"): the host's cgroups are
//! v1 with a hybrid cgroup2 mount, which crun (podman's default) refuses, so [`PodmanPeer`]
//! runs podman with `--runtime runc`; root lacks `CAP_SYS_RESOURCE`, so every container gets
//! [`PODMAN_ULIMITS`]. The store is vfs in a temp dir, as [`crate::Podman`]'s.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::containers::{process_alive, process_cmdline, signal};
use crate::process::{describe, run_bounded, wait_deadline};
use crate::{find_tool, path_str, report_skip, Corral};

/// How long a guard waits for one command before giving up on it.
const GUARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of one podman command.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// The rlimits podman must ask for on these machines (its defaults exceed root's hard limits).
pub const PODMAN_ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

/// Runs `corral args...` for a guard: never panics; stdout when it exits 0 in time.
fn quiet(c: &Corral, args: &[&str]) -> Option<String> {
    let token = crate::unique_token();
    let out_path = c.path(&format!("quiet-{token}.out"));
    let out = fs::File::create(&out_path).ok()?;
    let mut child = c
        .command(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let status = wait_deadline(&mut child, GUARD_TIMEOUT)?;
    let text = fs::read_to_string(&out_path).ok();
    let _ = fs::remove_file(&out_path);
    status.success().then_some(text).flatten()
}

/// The first object of a JSON array (or the value itself when it is not an array).
fn first_object(value: Value) -> Value {
    match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    }
}

/// The `InfraPid` of a `pod inspect` object, when its sandbox runs.
pub fn infra_pid(pod: &Value) -> Option<u32> {
    pod.get("InfraPid")
        .and_then(Value::as_u64)
        .filter(|&p| p > 0)
        .and_then(|p| u32::try_from(p).ok())
}

/// Whether `pid` is a live `corral __pod` sandbox.
pub fn is_live_sandbox(pid: u32) -> bool {
    process_alive(pid) && process_cmdline(pid).contains(" __pod ")
}

/// `corral pod inspect NAME`, parsed: checks it is an array of one object and returns it.
///
/// # Panics
/// If the command fails or prints anything else.
pub fn pod_inspect(c: &Corral, name: &str) -> Value {
    let text = c.ok(&["pod", "inspect", name]);
    let value: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("pod inspect {name} printed invalid JSON ({e}):\n{text}"));
    let items = value
        .as_array()
        .unwrap_or_else(|| panic!("pod inspect {name}: podman's shape is an array:\n{text}"));
    assert_eq!(items.len(), 1, "pod inspect {name}: one object:\n{text}");
    items[0].clone()
}

/// Removes, when dropped, the pods it tracks and every pod `pod ls` still lists in its world
/// (`pod rm -f`, bounded), then ends any sandbox that outlived its pod (by the pid `pod
/// inspect` gave before). Never panics.
///
/// Declare it after the [`crate::ContainerGuard`] and the [`crate::networks::NetworkGuard`]
/// of the same world, so that it drops first: removing a pod removes its containers and
/// releases its addresses.
pub struct PodGuard<'a> {
    corral: &'a Corral,
    names: Vec<String>,
}

impl<'a> PodGuard<'a> {
    /// A guard over pods of `corral`'s world, tracking none yet.
    pub fn new(corral: &'a Corral) -> Self {
        PodGuard {
            corral,
            names: Vec::new(),
        }
    }

    /// Tracks a pod by name or id: it is removed (forced) on drop.
    pub fn track(&mut self, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
    }
}

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        let mut all = std::mem::take(&mut self.names);
        if let Some(listed) = quiet(self.corral, &["pod", "ls", "-q"]) {
            all.extend(listed.split_whitespace().map(str::to_owned));
        }
        for name in all {
            let pid = quiet(self.corral, &["pod", "inspect", &name])
                .and_then(|t| serde_json::from_str::<Value>(t.trim()).ok())
                .map(first_object)
                .and_then(|p| infra_pid(&p));
            let removed = quiet(self.corral, &["pod", "rm", "-f", &name]).is_some();
            if let Some(pid) = pid.filter(|&p| is_live_sandbox(p)) {
                eprintln!(
                    "warning: pod {name}'s sandbox {pid} outlived `pod rm -f` (ok: {removed}); \
                     killing it"
                );
                let _ = signal(pid, "KILL");
            }
        }
    }
}

/// Host pids (this process excluded) of live processes whose command line, arguments joined
/// by spaces, contains every one of `needles`.
pub fn live_processes_with(needles: &[&str]) -> Vec<u32> {
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
        let cmdline = process_cmdline(pid);
        if needles.iter().all(|n| cmdline.contains(n)) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}

/// JSON printed either as one document (an array is flattened into its items) or as one
/// document per line (docker's `--format json`); `Err` with the reason when it is neither.
pub fn json_documents(text: &str) -> Result<Vec<Value>, String> {
    if let Ok(value) = serde_json::from_str::<Value>(text.trim()) {
        return Ok(match value {
            Value::Array(items) => items,
            other => vec![other],
        });
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("line {l:?}: {e}")))
        .collect()
}

/// podman with a private store, on runc, as the peer that runs the same containers as corral.
/// Its `Drop` removes its containers and images, unmounts what is left under its temp dir and
/// removes it.
pub struct PodmanPeer {
    dir: Option<tempfile::TempDir>,
}

impl PodmanPeer {
    /// A fresh store, or `None` after a loud `SKIPPED` line for `test` when podman or runc is
    /// not installed.
    pub fn new(test: &str) -> Option<Self> {
        for tool in ["podman", "runc"] {
            if find_tool(tool).is_none() {
                report_skip(test, &format!("{tool} not installed (podman side)"));
                return None;
            }
        }
        Some(PodmanPeer {
            dir: Some(crate::test_tempdir("podman-peer")),
        })
    }

    fn base(&self) -> &Path {
        self.dir.as_ref().expect("podman dir").path()
    }

    /// A path in the scratch dir, for archives to load.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.base().join(name)
    }

    /// A `Command` for `podman <private store> --runtime runc args...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let base = self.base();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(base.join("root"))
            .arg("--runroot")
            .arg(base.join("runroot"))
            .arg("--tmpdir")
            .arg(base.join("tmp"))
            // Network definitions and netavark's lock in the temp dir, not /etc/containers.
            .arg("--network-config-dir")
            .arg(base.join("net"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
                "--runtime",
                "runc",
            ])
            .args(args)
            // conmon writes files (`oom`) into its working directory: the scratch dir.
            .current_dir(base);
        cmd
    }

    /// Runs podman (bounded).
    pub fn cmd(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args), None, PODMAN_TIMEOUT)
    }

    /// Runs podman, panics with its output unless it succeeds, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "podman --runtime runc {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Saves `image` from corral's world and loads it here; the name podman gives it
    /// (`docker.io/library/NAME` for a short name).
    pub fn load_from(&self, c: &Corral, image: &str) -> String {
        let archive = self.path("image.tar");
        c.ok(&["image", "save", image, "-o", path_str(&archive)]);
        self.ok(&["load", "-q", "-i", path_str(&archive)]);
        let _ = fs::remove_file(&archive);
        if image.contains('/') {
            image.to_owned()
        } else {
            format!("docker.io/library/{image}")
        }
    }

    fn quiet(&self, args: &[&str]) {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            if wait_deadline(&mut child, GUARD_TIMEOUT).is_none() {
                eprintln!("warning: podman {args:?} did not finish in time");
            }
        }
    }
}

impl Drop for PodmanPeer {
    fn drop(&mut self) {
        self.quiet(&["rm", "-a", "-f", "-t", "0"]);
        self.quiet(&["rmi", "-a", "-f"]);
        if let Some(dir) = self.dir.take() {
            for e in crate::mounts::unmount_all_under(dir.path()) {
                eprintln!("warning: {e}");
            }
            if let Err(e) = dir.close() {
                eprintln!("warning: removing podman store: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_documents_reads_arrays_and_lines() {
        let array = json_documents("[{\"a\":1},{\"a\":2}]\n").unwrap();
        assert_eq!(array.len(), 2);
        let lines = json_documents("{\"a\":1}\n{\"a\":2}\n").unwrap();
        assert_eq!(lines, array);
        assert!(json_documents("{\"a\":1}\nnot json\n").is_err());
    }
}
