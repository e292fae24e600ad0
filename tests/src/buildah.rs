//! buildah with a private, throw-away store: the peer `corral build` is compared with.
//!
//! Every call passes `--root`/`--runroot` in a temp dir and `--storage-driver vfs` (no
//! overlay mounts to leak); builds use `--isolation chroot`, which needs no OCI runtime and no
//! cgroup manager, and `--layers --format docker`, as the issue compares.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::process::{describe, run_bounded};

const BUILDAH_TIMEOUT: Duration = Duration::from_secs(300);

/// A buildah store in a temp dir; removed (after unmounting anything in it) on drop.
pub struct Buildah {
    dir: Option<tempfile::TempDir>,
}

impl Default for Buildah {
    fn default() -> Self {
        Self::new()
    }
}

impl Buildah {
    /// A fresh, empty store.
    pub fn new() -> Self {
        Buildah {
            dir: Some(crate::test_tempdir("buildah")),
        }
    }

    fn base(&self) -> &Path {
        self.dir.as_ref().expect("buildah dir").path()
    }

    /// Runs `buildah <store flags> args...` in `cwd` (or the store's dir).
    pub fn cmd_in(&self, cwd: Option<&Path>, args: &[&str]) -> Output {
        let base = self.base();
        let mut cmd = Command::new("buildah");
        cmd.arg("--root")
            .arg(base.join("root"))
            .arg("--runroot")
            .arg(base.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("TMPDIR", base)
            .current_dir(cwd.unwrap_or(base));
        run_bounded(&mut cmd, None, BUILDAH_TIMEOUT)
    }

    /// Runs buildah and returns its stdout; panics with its output if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd_in(None, args);
        assert!(
            out.status.success(),
            "buildah {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `buildah bud --format docker --layers --isolation chroot -t TAG [extra] CONTEXT`.
    pub fn bud(&self, context: &Path, tag: &str, extra: &[&str]) -> Output {
        let ctx = context.to_string_lossy().into_owned();
        let mut args = vec![
            "bud",
            "--format",
            "docker",
            "--layers",
            "--isolation",
            "chroot",
            "-t",
            tag,
        ];
        args.extend_from_slice(extra);
        args.push(&ctx);
        // buildah re-executes itself through runc's nsenter, which copies the binary into a
        // memfd and seals it; under load the kernel can refuse the seal while pages are pinned
        // (EBUSY, "sealing memfd copy"), failing a RUN step before it starts. That is the
        // peer's transient fault, not a build result, so it alone is retried, loudly.
        let mut attempt = 1;
        loop {
            let out = self.cmd_in(Some(context), &args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || attempt == 3 || !stderr.contains("sealing memfd copy") {
                return out;
            }
            eprintln!(
                "!!!!!!!! RETRY: buildah bud of {tag} hit runc-nsenter's memfd seal EBUSY \
                 (attempt {attempt}): {} !!!!!!!!",
                stderr.trim()
            );
            attempt += 1;
        }
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        if self.dir.is_some() {
            let _ = self.cmd_in(None, &["rm", "--all"]);
        }
        if let Some(dir) = self.dir.take() {
            for e in crate::mounts::unmount_all_under(dir.path()) {
                eprintln!("warning: {e}");
            }
            if let Err(e) = dir.close() {
                eprintln!("warning: removing buildah store: {e}");
            }
        }
    }
}
