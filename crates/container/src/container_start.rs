//! `start`: launch the monitor (corral re-executed), which outlives the CLI, and learn from it
//! whether the workload's exec succeeded.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::state::{Containers, StateError, Status};

/// Why a start failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// What the caller makes around the start (the container's networks) failed; nothing
    /// ran.
    #[error("{0}")]
    Prepare(String),
    /// The container is not in a state to start.
    #[error("container {0} is {1}: only a created container can be started")]
    NotCreated(String, &'static str),
    /// The monitor could not be launched.
    #[error("launching the container monitor")]
    Spawn(#[source] std::io::Error),
    /// The container's process could not be started; `code` is docker's (125, 126, 127).
    #[error("{message}")]
    Failed {
        /// 125: corral's failure; 126: cannot run; 127: not found.
        code: i32,
        /// What went wrong.
        message: String,
    },
}

/// How the CLI stays connected.
pub enum Attach {
    /// Returns once the workload runs.
    Detached,
    /// Streams the workload's output (and stdin if interactive) and waits for its end.
    Attached,
    /// As [`Attach::Attached`], with only these of the output streams shown (docker's `run
    /// -a stdout`); the log has both.
    Streams {
        /// Show stdout.
        stdout: bool,
        /// Show stderr.
        stderr: bool,
    },
}

/// Starts a created container. Attached, returns the workload's exit code once it ended.
/// `netns`: for [`crate::config::NetworkMode::Networks`], the network namespace the caller
/// made and connected.
pub fn start(
    containers: &Containers,
    id: &str,
    exe: &Path,
    cgroup_root: &Path,
    attach: Attach,
    netns: Option<std::os::fd::OwnedFd>,
) -> Result<Option<i32>, StartError> {
    let state = containers.load(id)?;
    if state.status != Status::Created {
        let s = match state.status {
            Status::Running => "running",
            _ => "exited",
        };
        return Err(StartError::NotCreated(state.name, s));
    }
    let (mut notify_r, notify_w) = {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| StartError::Spawn(e.into()))?;
        rustix::io::fcntl_setfd(&w, rustix::io::FdFlags::empty())
            .map_err(|e| StartError::Spawn(e.into()))?;
        (std::fs::File::from(r), w)
    };
    let attached = !matches!(attach, Attach::Detached);
    // The small monitor executable beside corral when it is there (it maps a fraction of
    // corral's pages: less memory per container, and less for the init forked from it);
    // otherwise corral itself.
    let small = exe.with_file_name("corral-monitor");
    let mut cmd = if small.is_file() {
        Command::new(small)
    } else {
        let mut c = Command::new(exe);
        c.arg("__monitor");
        c
    };
    cmd.arg(containers.dir(id).parent().unwrap_or(Path::new("/")))
        .arg(id)
        .arg(notify_w.as_raw_fd().to_string())
        .arg(cgroup_root);
    // The network namespace the caller made and connected: the monitor holds it from now on.
    if let Some(ns) = &netns {
        rustix::io::fcntl_setfd(ns, rustix::io::FdFlags::empty())
            .map_err(|e| StartError::Spawn(e.into()))?;
        cmd.arg("--netns-fd").arg(ns.as_raw_fd().to_string());
    }
    // Its own process group, so that the terminal's ^C reaches the CLI, not the monitor —
    // except when it relays a terminal session: then it must stay in the foreground group to
    // read the terminal (a background group is stopped by SIGTTIN), and ^C is a byte for the
    // container (the user's terminal is raw).
    let tty_session = attached && containers.config(id).is_ok_and(|c| c.tty);
    if !tty_session {
        cmd.process_group(0);
    }
    // A terminal session the user types into can be detached from (ctrl-p ctrl-q): the
    // monitor says so on this pipe and runs on; its end (EOF) means it exited.
    let mut detach_r = None;
    let mut detach_w = None;
    if tty_session && containers.config(id).is_ok_and(|c| c.interactive) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| StartError::Spawn(e.into()))?;
        rustix::io::fcntl_setfd(&w, rustix::io::FdFlags::empty())
            .map_err(|e| StartError::Spawn(e.into()))?;
        cmd.arg("--detach-fd").arg(w.as_raw_fd().to_string());
        detach_r = Some(std::fs::File::from(r));
        detach_w = Some(w);
    }
    if attached {
        cmd.arg("--attach");
        if let Attach::Streams { stdout, stderr } = attach {
            // The monitor copies the container's streams to its own: one not attached goes
            // nowhere (the monitor reports its own failures through the notify pipe).
            if !stdout {
                cmd.stdout(Stdio::null());
            }
            if !stderr {
                cmd.stderr(Stdio::null());
            }
        }
    } else {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(StartError::Spawn)?;
    drop(notify_w);
    drop(detach_w);
    drop(netns);
    let msg = read_line(&mut notify_r);
    if let Some(rest) = msg.strip_prefix("ERR ") {
        let _ = child.wait();
        let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
        return Err(StartError::Failed {
            code: code.parse().unwrap_or(125),
            message: message.to_owned(),
        });
    }
    if msg != "OK" {
        let _ = child.wait();
        return Err(StartError::Failed {
            code: 125,
            message: "the container monitor exited before starting the container".into(),
        });
    }
    if !attached {
        return Ok(None);
    }
    if let Some(mut r) = detach_r {
        let mut said = [0u8; 1];
        if matches!(r.read(&mut said), Ok(1)) && said[0] == b'D' {
            // Detached: the container and its monitor run on.
            return Ok(None);
        }
    }
    // The monitor exits with the container's code (and with --rm the state is gone).
    let st = child.wait().map_err(StartError::Spawn)?;
    Ok(Some(st.code().unwrap_or(255)))
}

/// The monitor's one-line message: read up to its newline (or the pipe's end, if the monitor
/// died before it said anything), never waiting for an end that a copy of the pipe's write
/// end, inherited by a process another thread started meanwhile, would hold off.
fn read_line(r: &mut std::fs::File) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 256];
    loop {
        match r.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&b[..n]);
                if out.contains(&b'\n') {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split('\n').next().unwrap_or("").trim_end().to_string()
}
