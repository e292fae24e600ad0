//! corral as an OCI runtime: bundles, the runc-compatible command line, and podman driving
//! corral through conmon.
//!
//! - [`Bundle`]: an OCI bundle in a temp dir — the busybox rootfs unpacked into `rootfs/`, and
//!   the `config.json` that `corral runtime spec` writes, edited (`process.args`, a writable
//!   root) the way a user edits runc's;
//! - [`RuntimeRoot`]: `corral runtime --root <temp dir> ...`; its `Drop` deletes (`--force`)
//!   every container still in that root, and as a last resort kills what is left in cgroups
//!   named after their ids;
//! - [`PodmanOnCorral`]: podman with a private store in a temp dir and `--runtime` pointing at a
//!   link named `corral-runtime` to the corral binary (corral picks its runtime command line
//!   from `argv[0]`); its `Drop` removes every container and image, deletes what podman left
//!   in corral's default state dir, unmounts anything under the temp dir and removes it.
//!
//! Commands here never use pipes for stdout and stderr, but files: a container created by
//! `create` (or started by conmon) inherits the runtime's stdio and keeps it open for as long as
//! it lives, so a reader waiting for a pipe's end would wait for the container, not the command.
//! Every command runs with a deadline; the guards' `Drop`s never panic.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::containers::{cgroup_dirs_anywhere, cgroup_procs, poll_until, signal};
use crate::process::{describe, wait_deadline};
use crate::world::expect_failure;
use crate::{corral_bin, path_str, test_tempdir, unique_token};

/// Deadline of one runtime command: create, start, kill and delete take milliseconds.
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(60);

/// Deadline of one podman command.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// What podman is given on this host for every container: its defaults for root (1048576 open
/// files, 4194304 processes) are above the hard limits of a root without `CAP_SYS_RESOURCE`
/// (ARCHITECTURE.md), which neither runc nor corral raise.
pub const PODMAN_ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

/// corral's runtime state dir when no `--root` is given: where containers podman made are.
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/corral-runtime";

/// Runs `cmd` with stdin from `/dev/null` and stdout and stderr to files in `scratch`; `None`
/// if it could not start or was still running after `timeout` (it is killed then).
fn run_to_files(cmd: &mut Command, scratch: &Path, timeout: Duration) -> Option<Output> {
    let token = unique_token();
    let out_path = scratch.join(format!("cmd-{token}.out"));
    let err_path = scratch.join(format!("cmd-{token}.err"));
    let out = fs::File::create(&out_path).ok()?;
    let err = fs::File::create(&err_path).ok()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .ok()?;
    let status = wait_deadline(&mut child, timeout);
    let stdout = fs::read(&out_path).unwrap_or_default();
    let stderr = fs::read(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    Some(Output {
        status: status?,
        stdout,
        stderr,
    })
}

/// As [`run_to_files`], panicking (with the command) when it cannot start or times out.
fn run_to_files_or_panic(cmd: &mut Command, scratch: &Path, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    run_to_files(cmd, scratch, timeout).unwrap_or_else(|| {
        panic!("{shown} could not start or did not finish within {timeout:?} (killed)")
    })
}

/// Stdout of a command as text.
pub fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCI bundle: `rootfs/` (busybox) and `config.json`, in its own temp dir.
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle whose rootfs is the busybox fixture and whose `config.json` is the one `corral
    /// runtime spec` writes, with `process.args` set to `args` and the root made writable.
    ///
    /// # Panics
    /// If unpacking the rootfs, `corral runtime spec` or editing the config fails.
    pub fn busybox(args: &[&str]) -> Self {
        let bundle = Self::busybox_without_config();
        let dir = bundle.path();
        let out = run_to_files_or_panic(
            Command::new(corral_bin())
                .args(["runtime", "spec"])
                .current_dir(dir),
            dir,
            RUNTIME_TIMEOUT,
        );
        assert!(
            out.status.success(),
            "corral runtime spec in {}: {}",
            dir.display(),
            describe(&out)
        );
        bundle.edit_config(|config| {
            config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
            config["root"]["readonly"] = Value::Bool(false);
        });
        bundle
    }

    /// A bundle with the busybox rootfs and no `config.json` yet.
    pub fn busybox_without_config() -> Self {
        let dir = test_tempdir("bundle");
        let rootfs = dir.path().join("rootfs");
        fs::create_dir(&rootfs).expect("create bundle rootfs");
        let tar = crate::fixtures::busybox_rootfs_bytes();
        tar::Archive::new(tar.as_slice())
            .unpack(&rootfs)
            .unwrap_or_else(|e| panic!("unpack busybox into {}: {e}", rootfs.display()));
        Bundle { dir }
    }

    /// The bundle directory (`-b` of create and run).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// Reads `config.json`, lets `edit` change it, writes it back.
    pub fn edit_config(&self, edit: impl FnOnce(&mut Value)) {
        let path = self.config_path();
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut config: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "corral runtime spec wrote invalid JSON to {} ({e}):\n{text}",
                path.display()
            )
        });
        edit(&mut config);
        let text = serde_json::to_string_pretty(&config).expect("serialize config.json");
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// `corral runtime --root <temp dir> ...`: the runtime with a state dir of its own, which it
/// empties on drop.
pub struct RuntimeRoot {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    scratch: PathBuf,
    bin: PathBuf,
}

impl Default for RuntimeRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl RuntimeRoot {
    /// A fresh, empty state dir.
    pub fn new() -> Self {
        let dir = test_tempdir("runtime");
        let root = dir.path().join("root");
        let scratch = dir.path().join("scratch");
        fs::create_dir(&root).expect("create runtime root");
        fs::create_dir(&scratch).expect("create runtime scratch");
        RuntimeRoot {
            dir: Some(dir),
            root,
            scratch,
            bin: corral_bin(),
        }
    }

    /// The state dir (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path in the scratch dir, for pid files and logs.
    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }

    /// A `Command` for `corral runtime --root ROOT args...`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["runtime", "--root", path_str(&self.root)])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        cmd
    }

    /// A `Command` for `corral runtime --root ROOT args...` started by a shell that first
    /// opens each file of `held` on its descriptor number, without close-on-exec, as a caller
    /// that hands down what it holds would (numbers 3 to 9).
    pub fn command_holding(&self, held: &[(u32, &Path)], args: &[&str]) -> Command {
        let mut script = String::new();
        for (fd, path) in held {
            assert!((3..10).contains(fd), "descriptor {fd}: use 3 to 9");
            script.push_str(&format!("exec {fd}<'{}'; ", path.display()));
        }
        script.push_str("exec \"$0\" \"$@\"");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg(&self.bin)
            .args(["runtime", "--root", path_str(&self.root)])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs a command made by [`Self::command`] or [`Self::command_holding`] (bounded by
    /// [`RUNTIME_TIMEOUT`]).
    pub fn run(&self, cmd: &mut Command) -> Output {
        run_to_files_or_panic(cmd, &self.scratch, RUNTIME_TIMEOUT)
    }

    /// Runs `corral runtime --root ROOT args...` (bounded by [`RUNTIME_TIMEOUT`]).
    pub fn cmd(&self, args: &[&str]) -> Output {
        run_to_files_or_panic(&mut self.command(args), &self.scratch, RUNTIME_TIMEOUT)
    }

    /// Runs the command, panics with its output unless it succeeds, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "corral runtime {args:?} failed: {}",
            describe(&out)
        );
        stdout_text(&out)
    }

    /// Runs the command, panics if it succeeds (or dies by a signal); returns the exit code and
    /// stderr.
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        expect_failure(&format!("corral runtime {args:?}"), self.cmd(args))
    }

    /// `state ID`, parsed.
    pub fn state(&self, id: &str) -> Value {
        let text = self.ok(&["state", id]);
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("corral runtime state {id}: invalid JSON ({e}):\n{text}"))
    }

    /// The ids of the containers in the state dir (its subdirectories other than corral's
    /// `names` index).
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != "names")
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

impl Drop for RuntimeRoot {
    fn drop(&mut self) {
        for id in self.ids() {
            let deleted = run_to_files(
                &mut self.command(&["delete", "--force", &id]),
                &self.scratch,
                RUNTIME_TIMEOUT,
            )
            .is_some_and(|out| out.status.success());
            if !deleted {
                eprintln!("warning: corral runtime delete --force {id} failed");
            }
            kill_leftover_cgroups(&id);
        }
        if let Some(dir) = self.dir.take() {
            for e in crate::mounts::unmount_all_under(dir.path()) {
                eprintln!("warning: {e}");
            }
            if let Err(e) = dir.close() {
                eprintln!("warning: removing runtime dir: {e}");
            }
        }
    }
}

/// Last resort of the guards: SIGKILLs what is left in cgroups named after `id` and removes
/// them, deepest first, warning when there was anything. Never panics.
fn kill_leftover_cgroups(id: &str) {
    let mut dirs = cgroup_dirs_anywhere(id);
    if dirs.is_empty() {
        return;
    }
    eprintln!("warning: cgroups of {id} left behind, removing: {dirs:?}");
    poll_until(Duration::from_secs(10), || {
        let pids: Vec<u32> = dirs.iter().flat_map(|d| cgroup_procs(d)).collect();
        for pid in &pids {
            signal(*pid, "KILL");
        }
        pids.is_empty()
    });
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in dirs {
        if let Err(e) = fs::remove_dir(&dir) {
            eprintln!("warning: rmdir {}: {e}", dir.display());
        }
    }
}

/// podman with a private store, running its containers through corral.
pub struct PodmanOnCorral {
    dir: Option<tempfile::TempDir>,
    base: PathBuf,
    runtime: PathBuf,
}

impl Default for PodmanOnCorral {
    fn default() -> Self {
        Self::new()
    }
}

impl PodmanOnCorral {
    /// A fresh store, and the `corral-runtime` podman is pointed at: a link to the runtime's
    /// own executable built beside corral (what the docs install), or to corral itself (its
    /// `argv[0]` dispatch; containerd's test uses that one).
    pub fn new() -> Self {
        let dir = test_tempdir("podman-runtime");
        let base = dir.path().to_path_buf();
        let runtime = base.join("corral-runtime");
        let own = corral_bin().with_file_name("corral-runtime");
        let target = if own.is_file() { own } else { corral_bin() };
        std::os::unix::fs::symlink(&target, &runtime)
            .unwrap_or_else(|e| panic!("link {}: {e}", runtime.display()));
        fs::create_dir(base.join("scratch")).expect("create podman scratch");
        PodmanOnCorral {
            dir: Some(dir),
            base,
            runtime,
        }
    }

    /// The `corral-runtime` link given to podman as `--runtime`.
    pub fn runtime(&self) -> &Path {
        &self.runtime
    }

    /// A path in the scratch dir, for archives to load.
    pub fn path(&self, name: &str) -> PathBuf {
        self.base.join("scratch").join(name)
    }

    /// A `Command` for `podman <private store> --runtime corral-runtime args...`. A `run` or
    /// `create` gets [`PODMAN_ULIMITS`] first (a later `--ulimit` of the same kind wins).
    pub fn command(&self, args: &[&str]) -> Command {
        let args: Vec<&str> = match args.split_first() {
            Some((verb @ (&"run" | &"create"), rest)) => std::iter::once(*verb)
                .chain(PODMAN_ULIMITS.iter().copied())
                .chain(rest.iter().copied())
                .collect(),
            _ => args.to_vec(),
        };
        let args = args.as_slice();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.base.join("root"))
            .arg("--runroot")
            .arg(self.base.join("runroot"))
            .arg("--tmpdir")
            .arg(self.base.join("tmp"))
            // Network definitions and netavark's lock in the temp dir, not /etc/containers.
            .arg("--network-config-dir")
            .arg(self.base.join("net"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            // conmon writes a file named `oom` into its working directory when the container
            // is OOM-killed: the scratch dir, not the test's checkout.
            .current_dir(&self.base);
        cmd
    }

    /// Runs podman (bounded by [`PODMAN_TIMEOUT`]).
    pub fn cmd(&self, args: &[&str]) -> Output {
        run_to_files_or_panic(
            &mut self.command(args),
            &self.base.join("scratch"),
            PODMAN_TIMEOUT,
        )
    }

    /// Runs podman, panics with its output unless it succeeds, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "podman --runtime corral-runtime {args:?} failed: {}",
            describe(&out)
        );
        stdout_text(&out)
    }

    /// Runs podman for the guard: never panics, `None` on failure.
    fn quiet(&self, args: &[&str]) -> Option<String> {
        let out = run_to_files(
            &mut self.command(args),
            &self.base.join("scratch"),
            PODMAN_TIMEOUT,
        )?;
        out.status.success().then(|| stdout_text(&out))
    }
}

impl Drop for PodmanOnCorral {
    fn drop(&mut self) {
        let ids: Vec<String> = self
            .quiet(&["ps", "-a", "-q", "--no-trunc"])
            .map(|t| t.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if self.quiet(&["rm", "-a", "-f", "-t", "0"]).is_none() {
            eprintln!("warning: podman rm -af failed");
        }
        if self.quiet(&["rmi", "-a", "-f"]).is_none() {
            eprintln!("warning: podman rmi -af failed");
        }
        // podman leaves runtime containers in corral's default state dir should its own
        // cleanup have failed: delete them there (a no-op for those already gone).
        for id in ids {
            if Path::new(DEFAULT_RUNTIME_ROOT).join(&id).exists() {
                eprintln!("warning: {id} still in {DEFAULT_RUNTIME_ROOT}, deleting it");
                let mut cmd = Command::new(corral_bin());
                cmd.args(["runtime", "delete", "--force", &id]);
                let _ = run_to_files(&mut cmd, &self.base.join("scratch"), RUNTIME_TIMEOUT);
            }
            kill_leftover_cgroups(&id);
        }
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
