//! OCI lifecycle hooks: programs a bundle names, run at fixed points of a container's life
//! with the container's state as JSON on their stdin (runtime spec, `config.md#posix-platform-hooks`).
//!
//! Where each runs, as runc runs it:
//! - `prestart` (deprecated) and `createRuntime`: by the runtime's `create`, in the runtime's
//!   namespaces, once the container's namespaces exist and its init is in its cgroup, before
//!   the root filesystem is built. A failure fails `create`.
//! - `createContainer`: by the init, in the container's mount namespace, after the mounts and
//!   before `pivot_root`. A failure fails `create`.
//! - `startContainer`: by the init, inside the container, when `start` released it, right
//!   before the user's program. A failure ends the container with an error.
//! - `poststart`: by `start`, after the program was released; `poststop`: by `delete`, after
//!   the container is gone. A failure there is a warning (the spec says so; runc 1.1 kills the
//!   container on a `poststart` failure instead).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One hook of the spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Hook {
    /// Absolute path of the program.
    pub path: PathBuf,
    /// argv, `args[0]` included (the program's path when empty).
    pub args: Vec<String>,
    /// Its whole environment, `K=V`; absent: the environment of whoever runs it (the
    /// runtime's, or the container process's for `startContainer`), as runc has it.
    pub env: Option<Vec<String>>,
    /// Seconds before it is killed and counted a failure.
    pub timeout: Option<i64>,
}

/// The spec's `hooks` object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Hooks {
    /// Deprecated by the spec; run with `createRuntime`, before it.
    pub prestart: Vec<Hook>,
    /// In the runtime's namespaces, during `create`.
    #[serde(rename = "createRuntime")]
    pub create_runtime: Vec<Hook>,
    /// In the container's mount namespace, before `pivot_root`.
    #[serde(rename = "createContainer")]
    pub create_container: Vec<Hook>,
    /// Inside the container, before the user's program.
    #[serde(rename = "startContainer")]
    pub start_container: Vec<Hook>,
    /// After `start` released the program.
    pub poststart: Vec<Hook>,
    /// After `delete`.
    pub poststop: Vec<Hook>,
}

/// What an OCI container is to the programs told its state (hooks, a seccomp agent): filled
/// by the runtime from the bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Identity {
    /// The container's id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The spec's annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Identity {
    /// The runtime spec's state object, as JSON.
    pub fn state(&self, status: &str, pid: Option<i32>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": status,
            "bundle": self.bundle,
            "annotations": self.annotations,
        });
        if let Some(p) = pid {
            v["pid"] = p.into();
        }
        v
    }
}

/// The state a hook of the container of `cfg` reads on stdin.
pub fn state_of(cfg: &crate::ContainerConfig, status: &str, pid: Option<i32>) -> String {
    cfg.identity
        .clone()
        .unwrap_or_default()
        .state(status, pid)
        .to_string()
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The program could not be started.
    #[error("{phase} hook {path}: cannot be run: {err}")]
    Spawn {
        /// The hook point.
        phase: &'static str,
        /// The program.
        path: PathBuf,
        /// Why.
        #[source]
        err: std::io::Error,
    },
    /// It ran longer than its timeout and was killed.
    #[error("{phase} hook {path}: killed after its timeout of {secs} s")]
    Timeout {
        /// The hook point.
        phase: &'static str,
        /// The program.
        path: PathBuf,
        /// The timeout.
        secs: i64,
    },
    /// It exited unsuccessfully.
    #[error("{phase} hook {path}: {status}{}", if output.is_empty() { String::new() } else { format!(": {output}") })]
    Failed {
        /// The hook point.
        phase: &'static str,
        /// The program.
        path: PathBuf,
        /// How it ended.
        status: std::process::ExitStatus,
        /// What it printed (its first 4 KiB).
        output: String,
    },
    /// A timeout that is not positive (the spec requires > 0).
    #[error("{phase} hook {path}: timeout must be greater than zero, not {secs}")]
    BadTimeout {
        /// The hook point.
        phase: &'static str,
        /// The program.
        path: PathBuf,
        /// The timeout given.
        secs: i64,
    },
}

impl Hooks {
    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty()
            && self.start_container.is_empty()
            && self.poststart.is_empty()
            && self.poststop.is_empty()
    }

    /// Refuses what no hook point could run: a relative path or a timeout not above zero.
    pub fn check(&self) -> Result<(), String> {
        for (phase, list) in self.all() {
            for h in list {
                if !h.path.is_absolute() {
                    return Err(format!("hooks.{phase}: path {:?} must be absolute", h.path));
                }
                if let Some(t) = h.timeout.filter(|&t| t <= 0) {
                    return Err(format!(
                        "hooks.{phase}: timeout of {:?} must be greater than zero, not {t}",
                        h.path
                    ));
                }
            }
        }
        Ok(())
    }

    fn all(&self) -> [(&'static str, &[Hook]); 6] {
        [
            ("prestart", &self.prestart),
            ("createRuntime", &self.create_runtime),
            ("createContainer", &self.create_container),
            ("startContainer", &self.start_container),
            ("poststart", &self.poststart),
            ("poststop", &self.poststop),
        ]
    }
}

/// Runs `hooks` in order, each with `state` on stdin; the first failure stops the rest. A
/// hook without an environment gets `env`, or this process's when `None`.
pub fn run(
    phase: &'static str,
    hooks: &[Hook],
    state: &str,
    env: Option<&[String]>,
) -> Result<(), HookError> {
    for h in hooks {
        run_one(phase, h, state, env)?;
    }
    Ok(())
}

/// Runs every hook of `hooks`, each with `state`, and returns the failures (for the hook
/// points whose failures are only warnings).
pub fn run_all(phase: &'static str, hooks: &[Hook], state: &str) -> Vec<HookError> {
    hooks
        .iter()
        .filter_map(|h| run_one(phase, h, state, None).err())
        .collect()
}

fn run_one(
    phase: &'static str,
    h: &Hook,
    state: &str,
    inherit: Option<&[String]>,
) -> Result<(), HookError> {
    if let Some(secs) = h.timeout.filter(|&t| t <= 0) {
        return Err(HookError::BadTimeout {
            phase,
            path: h.path.clone(),
            secs,
        });
    }
    let mut cmd = std::process::Command::new(&h.path);
    if let Some((arg0, rest)) = h.args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    if let Some(env) = h.env.as_deref().or(inherit) {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    // Its output is read only once it ended: a temporary file, not a pipe it could fill.
    let out = tempfile_in_tmp().map_err(|err| HookError::Spawn {
        phase,
        path: h.path.clone(),
        err,
    })?;
    cmd.stdin(std::process::Stdio::piped())
        .stdout(out.try_clone().map_err(|err| HookError::Spawn {
            phase,
            path: h.path.clone(),
            err,
        })?)
        .stderr(out.try_clone().map_err(|err| HookError::Spawn {
            phase,
            path: h.path.clone(),
            err,
        })?);
    let mut child = cmd.spawn().map_err(|err| HookError::Spawn {
        phase,
        path: h.path.clone(),
        err,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading: EPIPE is not its failure.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = h
        .timeout
        .map(|s| Instant::now() + Duration::from_secs(s as u64));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(err) => {
                return Err(HookError::Spawn {
                    phase,
                    path: h.path.clone(),
                    err,
                })
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                phase,
                path: h.path.clone(),
                secs: h.timeout.unwrap_or_default(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    let mut f = out;
    use std::io::{Read, Seek};
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = (&mut f).take(4096).read_to_string(&mut output);
    Err(HookError::Failed {
        phase,
        path: h.path.clone(),
        status,
        output: output.trim().to_owned(),
    })
}

/// An unnamed file for a hook's output: `O_TMPFILE` in /tmp, or /dev/null where /tmp cannot
/// take one (inside a container whose /tmp is not writable).
fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open("/tmp")
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: Some(vec!["GREETING=hi".into()]),
            timeout,
        }
    }

    #[test]
    fn a_hook_reads_the_state_and_gets_only_its_environment() {
        let dir = std::env::temp_dir().join(format!("corral-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let h = hook(
            &format!("cat > {0}; echo \"$GREETING $HOME\" >> {0}", out.display()),
            Some(5),
        );
        run("prestart", &[h], "{\"id\":\"x\"}", None).unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, "{\"id\":\"x\"}hi \n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failing_hook_says_why_and_a_slow_one_is_killed() {
        let e = run(
            "createRuntime",
            &[hook("echo broken >&2; exit 3", None)],
            "{}",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("createRuntime hook /bin/sh") && e.contains("broken"),
            "{e}"
        );
        let t0 = Instant::now();
        let e = run("poststart", &[hook("sleep 30", Some(1))], "{}", None).unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn relative_paths_and_zero_timeouts_are_refused() {
        let mut hs = Hooks::default();
        hs.poststop.push(Hook {
            path: "bin/true".into(),
            ..Hook::default()
        });
        assert!(hs.check().unwrap_err().contains("absolute"));
        hs.poststop[0].path = "/bin/true".into();
        hs.poststop[0].timeout = Some(0);
        assert!(hs.check().unwrap_err().contains("greater than zero"));
    }
}
