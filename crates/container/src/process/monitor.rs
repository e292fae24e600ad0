//! The per-container monitor: `corral __monitor ROOT ID NOTIFY_FD [--attach]`.
//!
//! A small single-threaded process that outlives the CLI. It creates the cgroup, enters a new
//! PID namespace (so its one child is PID 1 there), starts the init, puts it in the cgroup,
//! gives it the go, and learns from the status pipe whether the exec succeeded. It tells the
//! CLI through the notify pipe (`OK` or `ERR CODE MESSAGE`), then writes the container's output
//! to `ctr.log` (docker's json-file lines; also to its own stdout/stderr when attached), reaps
//! the exit status, records OOM kills, removes the cgroup, and records the end.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::pipe::{pipe_with, PipeFlags};

use crate::cgroups::Cgroup;
use crate::state::{now, process_start_time, Containers, State, Status};

/// What the monitor needs to know.
pub struct MonitorArgs<'a> {
    /// The containers directory.
    pub containers: &'a Containers,
    /// The container.
    pub id: &'a str,
    /// Where to report the start's outcome.
    pub notify: Option<OwnedFd>,
    /// Copy the output to the monitor's own stdout/stderr.
    pub attach: bool,
    /// The cgroup root (normally /sys/fs/cgroup).
    pub cgroup_root: &'a Path,
    /// The network namespace the container joins ([`crate::config::NetworkMode::Networks`]).
    pub netns: Option<OwnedFd>,
    /// What the caller does around the container's life: its events, and the clean-up of
    /// what it made around an `--rm` container (network endpoints, volumes).
    pub hooks: Option<&'a dyn MonitorHooks>,
    /// Attached to a terminal the user types into: where to say `D` when they type the
    /// detach keys (the monitor then lets go of the terminal and runs on).
    pub detach: Option<OwnedFd>,
}

/// Calls from the monitor at the turns of a container's life. The monitor is single-threaded
/// and forks the init: a hook must not start threads.
pub trait MonitorHooks {
    /// The container's process started (again, after a restart: `state.restart_count`).
    fn started(&self, _state: &State) {}
    /// The container's process ended (`state.exit_code`, `state.oom_killed`).
    fn exited(&self, _state: &State) {}
    /// An `--rm` container is about to be removed.
    fn removing(&self, _state: &State) {}
    /// An `--rm` container was removed (what it held, such as its volumes, is free now).
    fn removed(&self, _state: &State) {}
}

fn notify(n: &mut Option<OwnedFd>, msg: &str) {
    if let Some(fd) = n.take() {
        // One line: the reader stops at its newline, not at the pipe's end — a process
        // started concurrently by another thread of the caller may hold a copy of the
        // pipe's write end, and EOF would wait for that process to exit.
        let _ = File::from(fd).write_all(format!("{msg}\n").as_bytes());
    }
}

/// The monitor's command line: `CONTAINERS_DIR ID NOTIFY_FD CGROUP_ROOT [--attach]
/// [--netns-fd N]` (what [`crate::container_start`] passes); returns the exit code.
pub fn main_from_args(args: &[std::ffi::OsString], hooks: Option<&dyn MonitorHooks>) -> i32 {
    let s = |i: usize| {
        args.get(i)
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
    };
    let Ok(containers) = Containers::open(s(0)) else {
        return 125;
    };
    let id = s(1).display().to_string();
    let notify_fd = s(2).to_str().and_then(|f| f.parse().ok()).unwrap_or(-1);
    let fd_arg = |flag: &str| -> Option<i32> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1)?.to_str()?.parse().ok())
    };
    let netns_fd = fd_arg("--netns-fd");
    let detach_fd = fd_arg("--detach-fd");
    main(MonitorArgs {
        containers: &containers,
        id: &id,
        notify: super::inherited(notify_fd),
        attach: args.iter().any(|a| a == "--attach"),
        cgroup_root: &s(3),
        netns: netns_fd.and_then(super::inherited),
        hooks,
        detach: detach_fd.and_then(super::inherited),
    })
}

/// Removes an `--rm` container: first what the caller made around it, with the network
/// namespace closed so that its devices are already going.
fn auto_remove(a: &mut MonitorArgs<'_>, state: &State) {
    drop(a.netns.take());
    if let Some(h) = a.hooks {
        h.removing(state);
    }
    let _ = a.containers.remove(state);
    if let Some(h) = a.hooks {
        h.removed(state);
    }
}

/// Runs the monitor; returns its exit code (the container's).
pub fn main(mut a: MonitorArgs<'_>) -> i32 {
    let mut notify_fd = a.notify.take();
    let mut state = match a.containers.load_raw(a.id) {
        Ok(s) => s,
        Err(e) => {
            notify(&mut notify_fd, &format!("ERR 125 {e}"));
            return 125;
        }
    };
    // Our own PID namespace, to return to before each restart: a new child needs a new
    // namespace, and unshare(CLONE_NEWPID) works only from the namespace one lives in.
    let own_pidns = File::open("/proc/self/ns/pid").ok();
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match start(&a, &mut state) {
            Ok((child, out, err, cgroup)) => {
                notify(&mut notify_fd, "OK");
                if let Some(h) = a.hooks {
                    // What a hook starts is a host process: back in our own PID namespace for
                    // children first (the init's was made for the container alone; a restart
                    // makes a new one).
                    if let Some(ns) = &own_pidns {
                        let _ = rustix::thread::move_into_link_name_space(
                            ns.as_fd(),
                            Some(rustix::thread::LinkNameSpaceType::ProcessID),
                        );
                    }
                    h.started(&state);
                }
                let code = supervise(&mut a, &mut state, child, out, err, cgroup);
                let policy = a
                    .containers
                    .config(a.id)
                    .map(|c| c.restart)
                    .unwrap_or_default();
                let asked = a
                    .containers
                    .load_raw(a.id)
                    .map(|s| s.stop_requested)
                    .unwrap_or(true);
                if asked || !policy.wants_restart(code, state.restart_count) {
                    if state.auto_remove {
                        auto_remove(&mut a, &state);
                    }
                    return code;
                }
                // docker's back-off: 100 ms, doubling, at most a minute.
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
                if a.containers.load_raw(a.id).is_ok_and(|s| s.stop_requested) {
                    return code;
                }
                if let Some(ns) = &own_pidns {
                    let _ = rustix::thread::move_into_link_name_space(
                        ns.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::ProcessID),
                    );
                }
                state.restart_count += 1;
                state.oom_killed = false;
                state.error = None;
            }
            Err((code, msg)) => {
                state.status = Status::Exited;
                state.exit_code = Some(code);
                state.error = Some(msg.clone());
                state.finished_at = Some(now());
                state.pid = None;
                let _ = a.containers.save(&state);
                notify(&mut notify_fd, &format!("ERR {code} {msg}"));
                if state.auto_remove {
                    auto_remove(&mut a, &state);
                }
                return code;
            }
        }
    }
}

type Started = (super::InitChild, OwnedFd, Option<OwnedFd>, Cgroup);

fn start(a: &MonitorArgs<'_>, state: &mut State) -> Result<Started, (i32, String)> {
    let own = |what: &str, e: &dyn std::fmt::Display| (125, format!("{what}: {e}"));
    let cfg = a
        .containers
        .config(a.id)
        .map_err(|e| own("reading config", &e))?;
    let cgroup = Cgroup::create(a.cgroup_root, a.id, &cfg.resources).map_err(|e| {
        let mut m = e.to_string();
        if let Some(s) = std::error::Error::source(&e) {
            m.push_str(&format!(": {s}"));
        }
        (125, format!("creating the cgroup: {m}"))
    })?;
    state.cgroup_paths = cgroup.dirs.clone();
    let res = spawn_init(a, &cfg, &cgroup);
    if res.is_err() {
        cgroup.destroy();
    }
    let (child, out, err) = res?;
    state.status = Status::Running;
    state.pid = Some(child.id() as i32);
    state.started_at = Some(now());
    state.monitor_pid = Some(std::process::id() as i32);
    state.monitor_start = process_start_time(std::process::id() as i32);
    a.containers
        .save(state)
        .map_err(|e| own("recording the start", &e))?;
    Ok((child, out, err, cgroup))
}

fn inheritable_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(pipe_with(PipeFlags::CLOEXEC)?)
}

fn spawn_init(
    a: &MonitorArgs<'_>,
    cfg: &crate::config::ContainerConfig,
    cgroup: &Cgroup,
) -> Result<(super::InitChild, OwnedFd, Option<OwnedFd>), (i32, String)> {
    let e125 = |what: &str, e: io::Error| (125, format!("{what}: {e}"));
    use super::Stdio as S;
    // With a terminal, its slave is all three streams and the master the one output; without,
    // two pipes.
    let (stdio, out_r, err_r) = if cfg.tty {
        let out = std::io::stdout();
        let like = a.attach.then(|| out.as_fd());
        let pty = crate::tty::open(like).map_err(|e| e125("opening a terminal", e))?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| e125("dup", e));
        let stdio = [
            S::Fd(dup(&pty.slave)?),
            S::Fd(dup(&pty.slave)?),
            S::Fd(pty.slave),
        ];
        (stdio, pty.master, None)
    } else {
        let (out_r, out_w) = inheritable_pipe().map_err(|e| e125("pipe", e))?;
        let (err_r, err_w) = inheritable_pipe().map_err(|e| e125("pipe", e))?;
        let stdin = if cfg.interactive { S::Inherit } else { S::Null };
        ([stdin, S::Fd(out_w), S::Fd(err_w)], out_r, Some(err_r))
    };
    let [stdin, stdout, stderr] = stdio;
    let super::Launched { mut child, status } = super::launch_init(
        &a.containers.dir(a.id),
        cfg,
        a.netns.as_ref().map(|f| f.as_fd()),
        cgroup,
        stdin,
        stdout,
        stderr,
    )?;
    let status_r = status;
    let mut report = String::new();
    let mut status_r = status_r;
    let _ = status_r.read_to_string(&mut report);
    if !report.is_empty() {
        let _ = child.wait();
        let (code, msg) = report.split_once(' ').unwrap_or(("125", report.as_str()));
        return Err((code.parse().unwrap_or(125), msg.to_owned()));
    }
    Ok((child, out_r, err_r))
}

/// Splits a stream into log lines.
struct LogStream {
    fd: Option<OwnedFd>,
    name: &'static str,
    pending: Vec<u8>,
}

fn supervise(
    a: &mut MonitorArgs<'_>,
    state: &mut State,
    mut child: super::InitChild,
    out: OwnedFd,
    err: Option<OwnedFd>,
    cgroup: Cgroup,
) -> i32 {
    let (tty, interactive, log_cfg, keys) = a
        .containers
        .config(a.id)
        .map(|c| (c.tty, c.interactive, c.log, c.detach_keys))
        .unwrap_or_default();
    let keys = keys.unwrap_or_else(|| crate::tty::DEFAULT_DETACH_KEYS.to_vec());
    let mut detach = crate::tty::DetachKeys::new(if a.detach.is_some() { &keys } else { &[] });
    // Cleared when the user detaches: the output then goes to the log only.
    let mut attached = a.attach;
    let mut log =
        super::logsink::LogSink::open(&log_cfg, &a.containers.dir(a.id), a.id, &state.name);
    let mut streams = [
        LogStream {
            fd: Some(out),
            name: "stdout",
            pending: Vec::new(),
        },
        LogStream {
            fd: err,
            name: "stderr",
            pending: Vec::new(),
        },
    ];
    let mut buf = vec![0u8; 64 * 1024];
    // With a terminal and an attached user, their keystrokes go to the container's terminal,
    // and theirs is raw while it does (restored when this returns).
    let tty_session = tty && a.attach;
    let mut raw = tty_session
        .then(|| crate::tty::RawMode::enter(io::stdin().as_fd()))
        .flatten();
    let mut relay = tty_session && interactive;
    let stdin = io::stdin();
    loop {
        let open: Vec<usize> = (0..2).filter(|&i| streams[i].fd.is_some()).collect();
        if open.is_empty() {
            break;
        }
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .map(|&i| PollFd::new(streams[i].fd.as_ref().expect("open"), PollFlags::IN))
            .collect();
        if relay {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if relay && ready[open.len()] {
            let n = rustix::io::read(&stdin, &mut buf).unwrap_or(0);
            match (n, streams[0].fd.as_ref()) {
                (0, _) | (_, None) => relay = false,
                (n, Some(master)) => {
                    let mut send = Vec::with_capacity(n);
                    let detached = detach.feed(&buf[..n], &mut send);
                    let _ = File::from(master.try_clone().expect("dup")).write_all(&send);
                    if detached {
                        relay = false;
                        attached = false;
                        drop(raw.take());
                        // docker's words.
                        eprintln!("\r\nread escape sequence");
                        let_go_of_terminal(a.detach.take());
                    }
                }
            }
        }
        for (k, &i) in open.iter().enumerate() {
            if !ready[k] {
                continue;
            }
            let s = &mut streams[i];
            let n = rustix::io::read(s.fd.as_ref().expect("open"), &mut buf).unwrap_or(0);
            if n == 0 {
                s.fd = None;
                flush_lines(s, &mut log, true);
                continue;
            }
            if attached {
                let _ = if i == 0 {
                    let mut o = io::stdout().lock();
                    o.write_all(&buf[..n]).and_then(|()| o.flush())
                } else {
                    io::stderr().write_all(&buf[..n])
                };
            }
            s.pending.extend_from_slice(&buf[..n]);
            flush_lines(s, &mut log, false);
        }
    }
    let status = child.wait();
    let code = match status {
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt;
            st.code()
                .or_else(|| st.signal().map(|s| 128 + s))
                .unwrap_or(255)
        }
        Err(_) => 255,
    };
    state.oom_killed = cgroup.oom_killed();
    cgroup.destroy();
    state.status = Status::Exited;
    state.exit_code = Some(code);
    state.pid = None;
    state.finished_at = Some(now());
    // Keep what `stop`/`kill` recorded meanwhile.
    if let Ok(disk) = a.containers.load_raw(a.id) {
        state.stop_requested |= disk.stop_requested;
    }
    // Before the state says it exited: whoever waits for that (`stop`) records its own
    // events after this one.
    if let Some(h) = a.hooks {
        h.exited(state);
    }
    let _ = a.containers.save(state);
    code
}

/// The user detached: say so to the waiting CLI, give the terminal back (stdio to /dev/null)
/// and leave its session, so that closing it does not end the container.
fn let_go_of_terminal(detach: Option<OwnedFd>) {
    if let Some(fd) = detach {
        let _ = rustix::io::write(&fd, b"D");
    }
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    let _ = rustix::process::setsid();
}

fn flush_lines(s: &mut LogStream, log: &mut super::logsink::LogSink, eof: bool) {
    let mut lines = Vec::new();
    while let Some(pos) = s.pending.iter().position(|&b| b == b'\n') {
        lines.push(s.pending.drain(..=pos).collect::<Vec<u8>>());
    }
    if eof && !s.pending.is_empty() {
        lines.push(std::mem::take(&mut s.pending));
    }
    if !lines.is_empty() {
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        log.write(s.name, &lines, &time);
    }
}
