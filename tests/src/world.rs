//! [`Corral`]: one test's world — a fresh `CORRAL_ROOT` and the binary run against it.
//!
//! Layout of the temp dir (`/var/tmp/corral-test-world-XXXX/`):
//! - `root/`: `CORRAL_ROOT` (optionally a size-limited tmpfs, [`Corral::with_tmpfs_root`]);
//! - `work/`: the test's own files: fixtures, saved archives, mount targets.
//!
//! Every command runs with a deadline ([`Corral::timeout`]) and `CORRAL_ROOT` in its
//! environment. `Drop` unmounts whatever is still mounted anywhere in the temp dir (deepest
//! first) before removing it, so a failing test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::mounts::{self, TmpfsMount};
use crate::process::{describe, run_bounded};

/// Default deadline for one corral command: generous for a debug build hashing tens of MB.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A test's world: a temp `CORRAL_ROOT`, a scratch dir, and the binary.
pub struct Corral {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    work: PathBuf,
    bin: PathBuf,
    tmpfs: Option<TmpfsMount>,
    default_network: bool,
    /// Deadline for each command; a command still running then is killed and the test fails.
    pub timeout: Duration,
}

impl Default for Corral {
    fn default() -> Self {
        Self::new()
    }
}

impl Corral {
    /// A fresh, empty `CORRAL_ROOT`.
    ///
    /// # Panics
    /// If the corral binary is missing ([`crate::corral_bin`]).
    pub fn new() -> Self {
        let bin = crate::corral_bin();
        let dir = crate::test_tempdir("world");
        let root = dir.path().join("root");
        let work = dir.path().join("work");
        std::fs::create_dir(&root).expect("create root");
        std::fs::create_dir(&work).expect("create work");
        Corral {
            dir: Some(dir),
            root,
            work,
            bin,
            tmpfs: None,
            default_network: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A fresh `CORRAL_ROOT` whose containers join the default network `corral` unless told
    /// otherwise, as a user's do. The default network is one per host: only one test at a
    /// time may use it.
    pub fn with_default_network() -> Self {
        let mut world = Self::new();
        world.default_network = true;
        world
    }

    /// A fresh `CORRAL_ROOT` on its own tmpfs of `size` (`mount -o size=`, e.g. `8m`), for
    /// tests of a full disk. The scratch dir stays on the real disk.
    pub fn with_tmpfs_root(size: &str) -> Self {
        let mut world = Self::new();
        world.tmpfs = Some(TmpfsMount::new(&world.root, size));
        world
    }

    /// `CORRAL_ROOT`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `CORRAL_ROOT/images`, the image store.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The scratch dir for the test's own files.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// A path in the scratch dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// The whole temp dir (root and scratch): where a containment check looks.
    pub fn base(&self) -> &Path {
        self.dir.as_ref().expect("world dir").path()
    }

    /// A `Command` for the binary with this world's environment, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("CORRAL_ROOT", &self.root)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .args(args);
        // The default network `corral` (10.120.0.0/16, bridge crl-br-default) is one per
        // host: worlds of parallel tests, each with its own state root, cannot share it. A
        // container without --network is isolated (`none`) in tests, unless the test asks
        // for the default network ([`Corral::with_default_network`]).
        if !self.default_network {
            cmd.env("CORRAL_DEFAULT_NETWORK", "none");
        }
        cmd
    }

    /// Runs `corral args...` to completion (bounded by [`Corral::timeout`]).
    pub fn cmd(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args), None, self.timeout)
    }

    /// As [`Corral::cmd`], with `stdin` fed to the command.
    pub fn cmd_with_stdin(&self, args: &[&str], stdin: Vec<u8>) -> Output {
        run_bounded(&mut self.command(args), Some(stdin), self.timeout)
    }

    /// Runs `corral args...`, panics with stdout and stderr unless it succeeds, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "corral {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `corral args...`, panics if it succeeds (or dies by a signal), returns the exit
    /// code and stderr.
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        expect_failure(&format!("corral {args:?}"), self.cmd(args))
    }

    /// Starts `corral args...` in the background, stdout and stderr to files in the scratch
    /// dir (`<label>.out`, `<label>.err`), for tests that kill it midway.
    pub fn spawn(&self, label: &str, args: &[&str]) -> Child {
        let out = std::fs::File::create(self.path(&format!("{label}.out"))).expect("spawn out");
        let err = std::fs::File::create(self.path(&format!("{label}.err"))).expect("spawn err");
        self.command(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn corral {args:?}: {e}"))
    }

    /// `corral image ls --json`, parsed.
    pub fn images(&self) -> Vec<ListedImage> {
        let text = self.ok(&["image", "ls", "--json"]);
        let value: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!("corral image ls --json printed invalid JSON ({e}):\n{text}")
        });
        let items = value
            .as_array()
            .unwrap_or_else(|| panic!("image ls --json is not an array:\n{text}"));
        items.iter().map(ListedImage::from_json).collect()
    }

    /// True if `image ls --json` lists `name` (see [`ListedImage::is_named`]).
    pub fn has_image(&self, name: &str) -> bool {
        self.images().iter().any(|i| i.is_named(name))
    }

    /// `corral image inspect NAME|ID`, parsed.
    pub fn inspect(&self, name: &str) -> ImageInfo {
        let text = self.ok(&["image", "inspect", name]);
        let value: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!("corral image inspect {name} printed invalid JSON ({e}):\n{text}")
        });
        // Accept docker's habit of an array of one, though the contract is one object.
        let value = match value {
            Value::Array(mut items) if items.len() == 1 => items.swap_remove(0),
            other => other,
        };
        ImageInfo::from_json(value)
    }

    /// Mounts under `CORRAL_ROOT` left behind (a tmpfs root itself excluded): empty when
    /// nothing leaked. See [`crate::leak_check`].
    pub fn leaked_mounts(&self) -> Vec<PathBuf> {
        mounts::leak_check(&self.root)
    }

    /// Panics if anything is still mounted under `CORRAL_ROOT`.
    pub fn assert_no_leaks(&self) {
        let leaked = self.leaked_mounts();
        assert!(
            leaked.is_empty(),
            "mounts left under CORRAL_ROOT: {leaked:?}"
        );
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return;
        };
        for e in mounts::unmount_all_under(dir.path()) {
            eprintln!("warning: {e}");
        }
        // The tmpfs (if any) was unmounted above; its guard then finds nothing left to do.
        drop(self.tmpfs.take());
        if let Err(e) = dir.close() {
            eprintln!("warning: removing test dir: {e}");
        }
    }
}

/// Checks that `out` is a failure with an exit code (not a signal) and returns the code and
/// stderr; panics with the output otherwise.
pub fn expect_failure(what: &str, out: Output) -> (i32, String) {
    assert!(
        !out.status.success(),
        "{what} succeeded but should have failed: {}",
        describe(&out)
    );
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{what} died by a signal: {}", describe(&out)));
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The image id a command printed: its last non-empty stdout line (`sha256:<64 hex>`).
///
/// # Panics
/// If that line is not `sha256:` and 64 hex digits.
pub fn printed_id(stdout: &str) -> String {
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("expected an image id, got no output"));
    let hex = line.strip_prefix("sha256:").unwrap_or("");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "expected `sha256:<64 hex>` as the last line, got {line:?} in:\n{stdout}"
    );
    line.to_owned()
}

/// One row of `corral image ls --json`.
#[derive(Debug, Clone)]
pub struct ListedImage {
    /// `sha256:<hex>` image id.
    pub id: String,
    /// Short repository (`busybox`, `127.0.0.1:5000/x`).
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// `repository:tag` as listings print it.
    pub name: String,
    /// The raw JSON object.
    pub raw: Value,
}

fn string_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl ListedImage {
    fn from_json(value: &Value) -> Self {
        ListedImage {
            id: string_field(value, "id"),
            repository: string_field(value, "repository"),
            tag: string_field(value, "tag"),
            name: string_field(value, "name"),
            raw: value.clone(),
        }
    }

    /// True if this row is the image `name` (`repo:tag`): by its `name` field, or by
    /// `repository` and `tag` together.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || format!("{}:{}", self.repository, self.tag) == name
    }
}

/// `corral image inspect`, the fields tests check.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// `sha256:<hex>` image id.
    pub id: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// The raw JSON object.
    pub raw: Value,
}

/// One layer of [`ImageInfo`].
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// Digest of the blob as stored/pushed.
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// The unpacked directory, ready as an overlay lowerdir.
    pub path: PathBuf,
}

impl ImageInfo {
    fn from_json(raw: Value) -> Self {
        let layers = raw
            .get("layers")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("image inspect has no `layers` array:\n{raw:#}"))
            .iter()
            .map(|l| LayerInfo {
                digest: string_field(l, "digest"),
                diff_id: string_field(l, "diff_id"),
                path: PathBuf::from(string_field(l, "path")),
            })
            .collect();
        ImageInfo {
            id: string_field(&raw, "id"),
            layers,
            raw,
        }
    }

    /// Diff ids, bottom first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Unpacked layer directories, bottom first.
    pub fn layer_paths(&self) -> Vec<PathBuf> {
        self.layers.iter().map(|l| l.path.clone()).collect()
    }
}
