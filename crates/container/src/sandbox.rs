//! A pod's sandbox: one small process (`corral __pod HOSTNAME`) that makes and holds a
//! network, IPC and UTS namespace, which the pod's containers join — the role of podman's
//! infra container and Kubernetes' pause container, without an image: the namespaces need a
//! holder, not a root filesystem.
//!
//! It unshares the three namespaces (it is single-threaded: a fresh exec), sets the pod's
//! hostname, brings up `lo`, says `OK` on its standard output, and sleeps until it is killed.
//! It lives in its own process group, outlives the CLI that started it, and is ended by
//! its pid (checked against its start time, so a reused pid is never signalled).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::thread::UnshareFlags;

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The process could not be started.
    #[error("starting the pod's sandbox process")]
    Spawn(#[source] std::io::Error),
    /// It started and failed.
    #[error("the pod's sandbox failed: {0}")]
    Failed(String),
}

/// A running sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    /// Its pid.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), telling it from a reused pid.
    pub start_time: u64,
}

impl Sandbox {
    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        crate::state::process_running(self.pid, Some(self.start_time))
    }

    /// The path of one of its namespaces (`net`, `ipc`, `uts`).
    pub fn ns_path(&self, kind: &str) -> std::path::PathBuf {
        format!("/proc/{}/ns/{kind}", self.pid).into()
    }

    /// Ends it (SIGKILL: it has nothing to flush) and waits until it is gone.
    pub fn stop(&self) {
        if !self.alive() {
            return;
        }
        if let Some(p) = rustix::process::Pid::from_raw(self.pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
        for _ in 0..200 {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Starts a sandbox with `exe __pod HOSTNAME`; returns once its namespaces exist.
pub fn spawn(exe: &Path, hostname: &str) -> Result<Sandbox, SandboxError> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe)
        .arg("__pod")
        .arg(hostname)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(SandboxError::Spawn)?;
    let mut msg = String::new();
    if let Some(mut out) = child.stdout.take() {
        // `OK` (2 bytes), or a reason and EOF.
        let mut buf = [0u8; 512];
        let n = out.read(&mut buf).unwrap_or(0);
        msg = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
    }
    if msg != "OK" {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SandboxError::Failed(if msg.is_empty() {
            "it exited before making its namespaces".into()
        } else {
            msg
        }));
    }
    let pid = child.id() as i32;
    let start_time = crate::state::process_start_time(pid)
        .ok_or_else(|| SandboxError::Failed("it exited at once".into()))?;
    // Not waited for: it outlives this process, and init reaps it when it ends.
    std::mem::forget(child);
    Ok(Sandbox { pid, start_time })
}

/// `corral __pod HOSTNAME`: the sandbox process itself.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let hostname = args
        .first()
        .and_then(|h| h.to_str())
        .unwrap_or("")
        .to_owned();
    let mut out = std::io::stdout();
    let fail = |out: &mut std::io::Stdout, m: String| {
        let _ = out.write_all(m.as_bytes());
        125
    };
    // SAFETY: CLONE_FILES is not among the flags, and this process has one thread (a fresh
    // exec that has started none).
    #[allow(unsafe_code)]
    let r = unsafe {
        rustix::thread::unshare_unsafe(
            UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS,
        )
    };
    if let Err(e) = r {
        return fail(&mut out, format!("making the namespaces: {e}"));
    }
    if !hostname.is_empty() {
        if let Err(e) = rustix::system::sethostname(hostname.as_bytes()) {
            return fail(&mut out, format!("setting the hostname: {e}"));
        }
    }
    if let Err(e) = crate::loopback::up() {
        return fail(&mut out, format!("bringing up lo: {e}"));
    }
    if out.write_all(b"OK").and_then(|()| out.flush()).is_err() {
        return 125;
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
