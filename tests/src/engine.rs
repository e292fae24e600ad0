//! Helpers for the tests of corral-engine's docker-compatible behaviour (`tests/engine.rs`):
//! images with users, a stop signal, volumes and labels in their config; docker's `inspect`
//! shape read by path; `ps` tables read row by row; a child process killed on drop (an
//! `events` follower, a foreground `run`); a volume guard; corral run under a host wrapper
//! (`setpriv`) with the world's environment.
//!
//! Images are single-layer docker-archives (`docker save` layout) built here and loaded with
//! `corral image load`, so that their config carries what `image import` of a rootfs cannot:
//! `User`, `StopSignal`, `Volumes`, `Labels`, `ExposedPorts`.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fixtures::{APPLETS, BUSYBOX};
use crate::process::{describe, run_bounded, wait_deadline};
use crate::tarball::TarWriter;
use crate::{path_str, sha256_digest, sha256_hex, Corral};

/// `/etc/passwd` of [`user_rootfs`]: root, and `alice` (uid 1001, primary group 1002) with a
/// home of her own.
pub const USERS_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
     alice:x:1001:1002:Alice:/home/alice:/bin/sh\n";

/// `/etc/group` of [`user_rootfs`]: alice's own group `alice` (1002), and `wheel` (10) and
/// `staff` (50) that list her as a member; root is in none but its own.
pub const USERS_GROUP: &str = "root:x:0:\n\
     alice:x:1002:\n\
     wheel:x:10:alice\n\
     staff:x:50:bob,alice\n";

/// A busybox rootfs (as the harness's busybox image, `bin/` applets included) with
/// [`USERS_PASSWD`], [`USERS_GROUP`], `home/alice` (owned by root: no test writes there) and
/// `extra` files (`path`, content; parent directories must be listed in `extra_dirs`).
///
/// # Panics
/// If `/bin/busybox` cannot be read (install Debian's `busybox-static`).
pub fn user_rootfs(extra_dirs: &[&str], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let busybox = fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("read {BUSYBOX} (install busybox-static): {e}"));
    let mut tar = TarWriter::new();
    tar.dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, USERS_PASSWD.as_bytes())
        .file("etc/group", 0o644, USERS_GROUP.as_bytes())
        .dir("tmp", 0o1777)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("dev", 0o755)
        .dir("root", 0o700)
        .dir("home", 0o755)
        .dir("home/alice", 0o755);
    for applet in APPLETS {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    for dir in extra_dirs {
        tar.dir(dir, 0o755);
    }
    for (path, data) in extra {
        tar.file(path, 0o644, data);
    }
    tar.finish()
}

/// Writes a docker-archive at `path` of one image named `name` (`repo:tag`) whose only layer
/// is `layer` (a plain tar) and whose `config` section is `container_config` (docker's keys:
/// `Cmd`, `Env`, `User`, `StopSignal`, `Volumes`, `Labels`, `ExposedPorts`...), linux/amd64.
/// Returns the image id (`sha256:` of the config).
pub fn write_docker_archive(
    path: &Path,
    name: &str,
    layer: &[u8],
    container_config: &Value,
) -> String {
    let diff_id = sha256_digest(layer);
    let mut cfg = container_config.clone();
    if cfg.get("Env").is_none() {
        cfg["Env"] = json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    }
    if cfg.get("Cmd").is_none() {
        cfg["Cmd"] = json!(["/bin/sh"]);
    }
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": "corral-e2e engine" }],
    }))
    .expect("config json");
    let config_hex = sha256_hex(&config);
    let layer_dir = diff_id.trim_start_matches("sha256:").to_owned();
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [name],
        "Layers": [format!("{layer_dir}/layer.tar")],
    }]))
    .expect("manifest.json");
    let mut tar = TarWriter::new();
    tar.dir(&layer_dir, 0o755)
        .file(&format!("{layer_dir}/VERSION"), 0o644, b"1.0")
        .file(&format!("{layer_dir}/layer.tar"), 0o644, layer)
        .file(&format!("{config_hex}.json"), 0o644, &config)
        .file("manifest.json", 0o644, &manifest);
    fs::write(path, tar.finish()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    format!("sha256:{config_hex}")
}

impl Corral {
    /// Loads a one-layer image `name` built from `layer` with `container_config` (see
    /// [`write_docker_archive`]) into this world; returns its id.
    ///
    /// # Panics
    /// If `corral image load` fails.
    pub fn load_image(&self, name: &str, layer: &[u8], container_config: &Value) -> String {
        let archive = self.path(&format!("image-{}.tar", crate::unique_token()));
        let id = write_docker_archive(&archive, name, layer, container_config);
        self.ok(&["image", "load", "-i", path_str(&archive)]);
        let _ = fs::remove_file(&archive);
        id
    }

    /// `corral inspect ARGS...` in docker's shape: checks it is a JSON array of one object and
    /// returns that object.
    ///
    /// # Panics
    /// If the command fails or prints anything else.
    pub fn docker_inspect(&self, args: &[&str]) -> Value {
        let mut full = vec!["inspect"];
        full.extend_from_slice(args);
        let text = self.ok(&full);
        let value: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("corral {full:?} printed invalid JSON ({e}):\n{text}"));
        let items = value
            .as_array()
            .unwrap_or_else(|| panic!("corral {full:?}: docker's shape is an array:\n{text}"));
        assert_eq!(
            items.len(),
            1,
            "corral {full:?}: one object per target:\n{text}"
        );
        assert!(
            items[0].is_object(),
            "corral {full:?}: not an object:\n{text}"
        );
        items[0].clone()
    }

    /// `corral ARGS...` run from `dir` (for relative paths on the command line).
    pub fn cmd_in(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        cmd.current_dir(dir);
        run_bounded(&mut cmd, None, self.timeout)
    }

    /// `corral ARGS...` run as the arguments of a host wrapper, e.g. `setpriv --groups 4242`:
    /// `wrapper[0] wrapper[1..] corral ARGS...`, with the world's environment.
    pub fn cmd_wrapped(&self, wrapper: &[&str], args: &[&str]) -> Output {
        let inner = self.command(args);
        let (program, rest) = wrapper.split_first().expect("a wrapper program");
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        run_bounded(&mut cmd, None, self.timeout)
    }

    /// Spawns `corral ARGS...` (stdout and stderr to `<label>.out` and `<label>.err` in the
    /// scratch dir), killed when the returned guard drops.
    pub fn spawn_guarded(&self, label: &str, args: &[&str]) -> KillOnDrop {
        KillOnDrop {
            child: Some(self.spawn(label, args)),
        }
    }

    /// What a [`Corral::spawn`]ed command labelled `label` printed so far on stdout.
    pub fn spawned_stdout(&self, label: &str) -> String {
        fs::read_to_string(self.path(&format!("{label}.out"))).unwrap_or_default()
    }

    /// What a [`Corral::spawn`]ed command labelled `label` printed so far on stderr.
    pub fn spawned_stderr(&self, label: &str) -> String {
        fs::read_to_string(self.path(&format!("{label}.err"))).unwrap_or_default()
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, unless it was waited for.
pub struct KillOnDrop {
    child: Option<Child>,
}

impl KillOnDrop {
    /// Its pid.
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Waits up to `timeout` for it to exit; `None` (after killing it) if it did not.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        wait_deadline(&mut child, timeout)
    }

    /// Whether it has exited (and so was reaped).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) | None => true,
            Some(_) => false,
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `path` in a JSON value: keys separated by `.`, array indices as numbers (`Ports.80/tcp.0`
/// is written `["Ports", "80/tcp", "0"]` — hence a slice, since keys may hold dots and
/// slashes). Panics with the whole value when a step is missing.
pub fn json_at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| {
        let next = match v {
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => v.get(key),
        };
        next.unwrap_or_else(|| panic!("JSON lacks {path:?} (at {key:?}):\n{value:#}"))
    })
}

/// The row of a `ps` table (header skipped) whose last column is `name`.
pub fn table_row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().last() == Some(name))
}

/// Removes, when dropped, the volumes it tracks (`volume rm -f`, bounded); never panics.
pub struct VolumeGuard<'a> {
    corral: &'a Corral,
    names: Vec<String>,
}

impl<'a> VolumeGuard<'a> {
    /// A guard over volumes of `corral`'s world, tracking none yet.
    pub fn new(corral: &'a Corral) -> Self {
        VolumeGuard {
            corral,
            names: Vec::new(),
        }
    }

    /// Tracks `name`: it is removed on drop.
    pub fn track(&mut self, name: &str) {
        self.names.push(name.to_owned());
    }
}

impl Drop for VolumeGuard<'_> {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.names) {
            let child = self
                .corral
                .command(&["volume", "rm", "-f", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = child {
                let _ = wait_deadline(&mut child, Duration::from_secs(60));
            }
        }
    }
}

/// `volume ls -q` of `corral`'s world: the names.
pub fn volume_names(corral: &Corral) -> Vec<String> {
    corral
        .ok(&["volume", "ls", "-q"])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Panics with the output unless `out` is a success; returns stdout.
pub fn ok_output(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{what} failed: {}", describe(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
