//! podman with a private, throw-away store, as the peer that checks corral's archives.
//!
//! Every call passes `--root`/`--runroot` in a temp dir and `--storage-driver vfs`, so the
//! host's podman store is never touched and nothing needs overlay mounts; `--events-backend
//! none` and `--cgroup-manager cgroupfs` keep it from reaching for journald or systemd. Image
//! commands (`load`, `save`, `image inspect`, `tag`) need no OCI runtime, so the host's hybrid
//! cgroup layout (ARCHITECTURE.md) does not matter for them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{describe, run_bounded};

const PODMAN_TIMEOUT: Duration = Duration::from_secs(180);

/// A podman store in a temp dir; removed (after unmounting anything in it) on drop.
pub struct Podman {
    dir: Option<tempfile::TempDir>,
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Podman {
    /// A fresh, empty store.
    pub fn new() -> Self {
        Podman {
            dir: Some(crate::test_tempdir("podman")),
        }
    }

    fn base(&self) -> &Path {
        self.dir.as_ref().expect("podman dir").path()
    }

    /// Where scratch files for this podman (archives to load or save) can go.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.base().join(name)
    }

    /// Runs `podman <global flags> args...`.
    pub fn cmd(&self, args: &[&str]) -> Output {
        let base = self.base();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(base.join("root"))
            .arg("--runroot")
            .arg(base.join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend",
                "none",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .arg("--tmpdir")
            .arg(base.join("tmp"))
            // Network definitions and netavark's lock in the temp dir, not /etc/containers.
            .arg("--network-config-dir")
            .arg(base.join("net"))
            .args(args)
            // conmon writes a file named `oom` into its working directory when the container
            // is OOM-killed: the scratch dir, not the test's checkout.
            .current_dir(base);
        run_bounded(&mut cmd, None, PODMAN_TIMEOUT)
    }

    /// Runs podman and returns its stdout; panics with its output if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman image inspect NAME` parsed: the first (only) object of the array it prints.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let text = self.ok(&["image", "inspect", name]);
        let value: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("podman image inspect {name}: bad JSON ({e}):\n{text}"));
        match value {
            serde_json::Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
            other => other,
        }
    }

    /// The layer diff ids podman sees for an image (`RootFS.Layers`), bottom first.
    pub fn diff_ids(&self, name: &str) -> Vec<String> {
        let info = self.inspect(name);
        info["RootFS"]["Layers"]
            .as_array()
            .unwrap_or_else(|| panic!("no RootFS.Layers in podman inspect of {name}: {info}"))
            .iter()
            .map(|v| v.as_str().expect("diff id string").to_owned())
            .collect()
    }

    /// Full ids of the images in the store.
    pub fn image_ids(&self) -> Vec<String> {
        self.ok(&["images", "--quiet", "--no-trunc"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
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
