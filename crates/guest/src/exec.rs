//! `Exec`: spawning a session's process, pumping its stdio, reporting its end.
//!
//! The program is looked up here, before the fork, so that "not found" (127) and "cannot
//! execute" (126) are answered precisely. The child becomes a session leader (setsid), and
//! with a tty takes the pty's slave as its controlling terminal: both in a `pre_exec` hook,
//! which runs only async-signal-safe syscalls between fork and exec.
//!
//! Per session: one thread per output stream (pty master, or stdout and stderr pipes), one
//! that writes Stdin frames into the process, and one that waits for the exit status from
//! the [`reaper`](crate::reaper), wakes and joins the output threads, then sends `Exit`: the
//! exit frame always comes after all the output the process wrote. Output that a background
//! child writes after the process ended is read for at most [`DRAIN_AFTER_EXIT`] while it
//! keeps coming, then dropped: a daemon started by `exec` does not hold the session open.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_guest::proto::{Exec, Exit, Frame, Kind, Response};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::Pid;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

use crate::server::{lock, spawn_thread, Agent, Out, Proc, Session};

/// `PATH` for the lookup when the request's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a path is, for the program lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nothing there.
    Missing,
    /// A file (or directory) that cannot be executed.
    NotExecutable,
    /// An executable file.
    Executable,
}

/// Why a program cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    /// Not found on `PATH` (or at its path).
    #[error("{0}: not found")]
    NotFound(String),
    /// Found, but not executable.
    #[error("{0}: permission denied (not an executable file)")]
    NotExecutable(String),
}

impl LookupError {
    /// The shell's exit code for it.
    pub fn code(&self) -> i32 {
        match self {
            LookupError::NotFound(_) => 127,
            LookupError::NotExecutable(_) => 126,
        }
    }
}

/// Finds `program` as a shell does: as a path when it has a `/` (relative to `cwd`), else
/// in each directory of `path` (an empty entry is the current directory). A directory
/// entry that holds a non-executable file of that name makes the error 126 unless a later
/// one holds an executable.
pub fn lookup(
    program: &str,
    path: &str,
    cwd: &Path,
    probe: impl Fn(&Path) -> Probe,
) -> Result<PathBuf, LookupError> {
    if program.is_empty() {
        return Err(LookupError::NotFound(String::new()));
    }
    let found_at = |p: PathBuf| match probe(&p) {
        Probe::Executable => Ok(p),
        Probe::NotExecutable => Err(LookupError::NotExecutable(program.into())),
        Probe::Missing => Err(LookupError::NotFound(program.into())),
    };
    if program.contains('/') {
        return found_at(cwd.join(program));
    }
    let mut err = LookupError::NotFound(program.into());
    for dir in path.split(':') {
        let dir = if dir.is_empty() { cwd } else { Path::new(dir) };
        match found_at(cwd.join(dir).join(program)) {
            Ok(p) => return Ok(p),
            Err(e @ LookupError::NotExecutable(_)) => err = e,
            Err(LookupError::NotFound(_)) => {}
        }
    }
    Err(err)
}

/// What is at `p` on this machine.
fn probe_fs(p: &Path) -> Probe {
    match std::fs::metadata(p) {
        Err(_) => Probe::Missing,
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Probe::Executable,
        Ok(_) => Probe::NotExecutable,
    }
}

/// Sets the terminal size of a pty.
pub fn resize(pty: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        pty,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// Why an `Exec` could not start; `code` is the CLI's exit code.
struct StartError {
    code: i32,
    message: String,
}

impl StartError {
    fn internal(what: &str, e: impl std::fmt::Display) -> StartError {
        StartError {
            code: 125,
            message: format!("{what}: {e}"),
        }
    }
}

/// The process's ends of its stdio, held by the agent.
enum Ends {
    Pipes {
        stdin: Option<std::process::ChildStdin>,
        stdout: std::process::ChildStdout,
        stderr: std::process::ChildStderr,
    },
    Pty(Arc<OwnedFd>),
}

/// Handles `Exec` on `session`: answers `Started` or `Error`, then runs the session.
pub fn start(agent: &Arc<Agent>, session: u32, req: Exec) {
    let (pid, ends, exited) = match spawn(agent, &req) {
        Ok(x) => x,
        Err(e) => return agent.out.error(session, e.code, e.message),
    };
    let (stdin_tx, stdin_rx) = channel::<Vec<u8>>();
    let pty = match &ends {
        Ends::Pty(m) => Some(Arc::clone(m)),
        Ends::Pipes { .. } => None,
    };
    lock(&agent.sessions).insert(
        session,
        Session::Proc(Proc {
            pid,
            stdin: req.stdin.then_some(stdin_tx),
            pty,
        }),
    );
    agent.out.respond(
        session,
        &Response::Started {
            pid: pid.as_raw_nonzero().get(),
        },
    );
    // The waiter drops `exited_wr` when the process has ended, which wakes the pumps.
    let (exited_rd, exited_wr) = match rustix::pipe::pipe_with(PipeFlags::CLOEXEC) {
        Ok((r, w)) => (Arc::new(r), w),
        Err(e) => {
            crate::log!("session {session}: pipe: {e}");
            return;
        }
    };
    let mut pumps = Vec::new();
    match ends {
        Ends::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            if let Some(w) = stdin {
                feed_stdin(stdin_rx, w, None);
            }
            pumps.extend(pump(
                agent,
                session,
                Kind::Stdout,
                stdout.into(),
                Arc::clone(&exited_rd),
            ));
            pumps.extend(pump(
                agent,
                session,
                Kind::Stderr,
                stderr.into(),
                Arc::clone(&exited_rd),
            ));
        }
        Ends::Pty(master) => {
            match master.try_clone() {
                Ok(fd) if req.stdin => feed_stdin(stdin_rx, File::from(fd), Some(0x04)),
                Ok(_) => {}
                Err(e) => crate::log!("session {session}: cannot clone the pty: {e}"),
            }
            match master.try_clone() {
                Ok(fd) => pumps.extend(pump(
                    agent,
                    session,
                    Kind::Stdout,
                    fd,
                    Arc::clone(&exited_rd),
                )),
                Err(e) => crate::log!("session {session}: cannot clone the pty: {e}"),
            }
        }
    }
    let a = Arc::clone(agent);
    let waiter = move || {
        let ended = exited.recv().unwrap_or(crate::reaper::Ended {
            code: 125,
            signal: None,
        });
        drop(exited_wr);
        for p in pumps {
            let _ = p.join();
        }
        lock(&a.sessions).remove(&session);
        a.out.send(&Frame::json(
            Kind::Exit,
            session,
            &Exit {
                code: ended.code,
                signal: ended.signal,
            },
        ));
    };
    if spawn_thread("exec-wait", waiter).is_none() {
        crate::log!("session {session}: its exit will not be reported");
    }
}

/// Forks and execs the request's process.
fn spawn(
    agent: &Agent,
    req: &Exec,
) -> Result<(Pid, Ends, Receiver<crate::reaper::Ended>), StartError> {
    let Some(program) = req.argv.first() else {
        return Err(StartError::internal("exec", "argv is empty"));
    };
    let cwd = if req.cwd.is_empty() {
        Path::new("/")
    } else {
        Path::new(&req.cwd)
    };
    // A container root (a pod member's): the lookups happen inside it.
    let root = if req.root.is_empty() {
        None
    } else {
        Some(crate::enter::Root::open(&req.root).map_err(|e| StartError::internal("exec", e))?)
    };
    let is_dir = match &root {
        Some(r) => r.is_dir(cwd),
        None => cwd.is_dir(),
    };
    if !is_dir {
        return Err(StartError::internal(
            "exec",
            format!("working directory {} is not a directory", cwd.display()),
        ));
    }
    let path_var = req
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let found = match &root {
        Some(r) => lookup(program, path_var, cwd, |p| r.probe(p)),
        None => lookup(program, path_var, cwd, probe_fs),
    };
    let resolved = found.map_err(|e| StartError {
        code: e.code(),
        message: e.to_string(),
    })?;

    let mut cmd = Command::new(&resolved);
    cmd.arg0(program).args(&req.argv[1..]).env_clear();
    for kv in &req.env {
        if let Some((k, v)) = kv.split_once('=') {
            if !k.is_empty() {
                cmd.env(k, v);
            }
        }
    }
    // The agent's own directory is `/`: setting it again would only keep std from its
    // posix_spawn path (a static binary cannot look up posix_spawn's chdir action). In a
    // container root, the hook below changes directory and ids once inside it.
    if cwd != Path::new("/") && root.is_none() {
        cmd.current_dir(cwd);
    }
    let (euid, egid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    // Root staying root (the common case) changes nothing: no setuid/setgid, so that std can
    // spawn with posix_spawn (a vfork, not a copy of the agent: under TCG that is most of an
    // exec's cost). PID 1 has no supplementary groups to drop. Any other user: as root,
    // always set both (std then drops the supplementary groups: setgroups([]) before
    // setuid); otherwise only a change, which fails without privilege as it should.
    let stays_root = root.is_some() || (euid == 0 && egid == 0 && req.uid == 0 && req.gid == 0);
    if !stays_root && (euid == 0 || req.gid != egid) {
        cmd.gid(req.gid);
    }
    if !stays_root && (euid == 0 || req.uid != euid) {
        cmd.uid(req.uid);
    }
    let mut master = None;
    if req.tty {
        let (m, slave) = open_pty(req.rows, req.cols)
            .map_err(|e| StartError::internal("open a pseudo-terminal", e))?;
        let (s1, s2) = (
            slave
                .try_clone()
                .map_err(|e| StartError::internal("pty", e))?,
            slave
                .try_clone()
                .map_err(|e| StartError::internal("pty", e))?,
        );
        // The terminal is stdin too even when the host sends no input, as `docker run -t`
        // without `-i`: programs ask stdin whether they are on a terminal.
        cmd.stdin(Stdio::from(slave))
            .stdout(Stdio::from(s1))
            .stderr(Stdio::from(s2));
        master = Some(m);
    } else {
        cmd.stdin(if req.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }
    let tty = req.tty;
    if !tty {
        // Its own process group, for `Signal` (std's posix_spawn path does this itself); a
        // terminal session needs a session of its own instead, below.
        cmd.process_group(0);
    }
    if tty {
        #[allow(unsafe_code)]
        // SAFETY: the hook runs in the child between fork and exec, where only
        // async-signal-safe work is allowed: it makes two raw syscalls (setsid, and the
        // TIOCSCTTY ioctl on fd 1, which std has already made the pty's slave) and allocates
        // nothing (the io::Error it may build from an errno holds no allocation).
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(rustix::stdio::stdout())?;
                Ok(())
            });
        }
    }
    if let Some(r) = root {
        r.install(&mut cmd, cwd, req.uid, req.gid)
            .map_err(|e| StartError::internal("exec", e))?;
    }
    let spawned = agent.reaper.spawn(|| {
        let child = cmd.spawn()?;
        Ok((child.id() as i32, child))
    });
    // Closes the agent's copies of the pty slave, so that the master sees EOF (EIO) when the
    // process and its children have closed theirs.
    drop(cmd);
    let (mut child, exited) = spawned.map_err(|e| StartError {
        code: match e.kind() {
            io::ErrorKind::NotFound => 127,
            io::ErrorKind::PermissionDenied => 126,
            _ => 125,
        },
        message: format!("{program}: {e}"),
    })?;
    let pid = Pid::from_raw(child.id() as i32).expect("a child's pid is positive");
    let ends = match master {
        Some(m) => Ends::Pty(Arc::new(m)),
        None => Ends::Pipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().expect("piped"),
            stderr: child.stderr.take().expect("piped"),
        },
    };
    // The Child is dropped without waiting: the reaper reports its end.
    Ok((pid, ends, exited))
}

/// A new pty pair: the master (close-on-exec) and its slave, sized `rows` x `cols` when
/// both are given.
fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        PathBuf::from(OsString::from_vec(name.into_bytes())),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    if rows > 0 && cols > 0 {
        resize(&master, rows, cols)?;
    }
    Ok((master, slave))
}

/// Writes what arrives on `rx` into `w`; an empty chunk closes it (for a pty, where closing
/// one fd of the master ends nothing, it sends `eof_byte`, the terminal's ^D, instead).
fn feed_stdin(rx: Receiver<Vec<u8>>, mut w: impl Write + Send + 'static, eof_byte: Option<u8>) {
    spawn_thread("exec-stdin", move || {
        while let Ok(data) = rx.recv() {
            if data.is_empty() {
                if let Some(b) = eof_byte {
                    let _ = w.write_all(&[b]);
                }
                return;
            }
            if w.write_all(&data).is_err() {
                // The process closed its stdin: drop the rest.
                return;
            }
        }
    });
}

/// How long output is still read after the process ended, when more keeps coming (a
/// background child still writing): the session ends anyway.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// Reads `fd` until its end, sending the bytes as `kind` frames of `session`. Once `exited`
/// becomes readable (the waiter closed its other end: the process is gone), it reads only
/// what is already there — everything the process wrote — and stops at the first empty
/// poll, so that a background child holding the stream open cannot hold the session.
fn pump(
    agent: &Arc<Agent>,
    session: u32,
    kind: Kind,
    fd: OwnedFd,
    exited: Arc<OwnedFd>,
) -> Option<std::thread::JoinHandle<()>> {
    let a = Arc::clone(agent);
    spawn_thread("exec-output", move || {
        let out: &Out = &a.out;
        let mut buf = vec![0u8; corral_guest::proto::CHUNK];
        let mut drain_until: Option<Instant> = None;
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            let mut fds = [
                PollFd::new(&fd, PollFlags::IN),
                PollFd::new(&*exited, PollFlags::IN),
            ];
            let timeout = drain_until.map(|_| &zero);
            match rustix::event::poll(
                &mut fds[..if drain_until.is_some() { 1 } else { 2 }],
                timeout,
            ) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(_) => return,
            }
            let data_ready = !fds[0].revents().is_empty();
            let ended = drain_until.is_none() && !fds[1].revents().is_empty();
            if ended {
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            if !data_ready {
                if drain_until.is_some() && !ended {
                    return;
                }
                continue;
            }
            if drain_until.is_some_and(|t| Instant::now() > t) {
                return;
            }
            match rustix::io::read(&fd, &mut buf) {
                Ok(0) => return,
                Ok(n) => out.data(kind, session, &buf[..n]),
                Err(Errno::INTR) | Err(Errno::AGAIN) => {}
                // EIO: the pty's slave side is closed everywhere.
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(
        exec: &'static [&'static str],
        other: &'static [&'static str],
    ) -> impl Fn(&Path) -> Probe {
        move |p: &Path| {
            let s = p.to_str().unwrap();
            if exec.contains(&s) {
                Probe::Executable
            } else if other.contains(&s) {
                Probe::NotExecutable
            } else {
                Probe::Missing
            }
        }
    }

    #[test]
    fn lookup_walks_path_in_order() {
        let probe = fake(
            &["/usr/bin/ls", "/bin/ls", "/work/tool", "/work/./tool"],
            &["/sbin/ls"],
        );
        let cwd = Path::new("/work");
        assert_eq!(
            lookup("ls", "/sbin:/usr/bin:/bin", cwd, &probe).unwrap(),
            Path::new("/usr/bin/ls")
        );
        assert_eq!(
            lookup("tool", "/bin::/usr/bin", cwd, &probe).unwrap(),
            Path::new("/work/tool")
        );
        assert_eq!(
            lookup("./tool", "", cwd, &probe).unwrap(),
            Path::new("/work/./tool")
        );
    }

    #[test]
    fn lookup_errors_are_127_and_126() {
        let probe = fake(&[], &["/sbin/ls", "/etc/passwd"]);
        let cwd = Path::new("/");
        let e = lookup("nope", DEFAULT_PATH, cwd, &probe).unwrap_err();
        assert_eq!((e.code(), e.to_string()), (127, "nope: not found".into()));
        assert_eq!(
            lookup("ls", DEFAULT_PATH, cwd, &probe).unwrap_err().code(),
            126
        );
        assert_eq!(
            lookup("/etc/passwd", "", cwd, &probe).unwrap_err().code(),
            126
        );
        assert_eq!(lookup("/nope", "", cwd, &probe).unwrap_err().code(), 127);
        assert_eq!(lookup("", "", cwd, &probe).unwrap_err().code(), 127);
    }
}
