//! The request loop: splits the stream into frames, answers requests, routes Stdin frames to
//! their session.
//!
//! The reading thread only ever does short work (parse, spawn, look up a session, write a
//! file chunk); anything that can wait on a process or a large file runs on a thread of the
//! session's own, so a request is never held up behind another session's output.
//!
//! Hostile input: a frame whose JSON does not parse is answered with `Error` on its session;
//! a stream that cannot be split into frames (bad length or kind) is logged and every byte
//! buffered so far is dropped, then reading goes on with what comes next.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

use corral_guest::proto::{self, Frame, FrameReader, Kind, Request, Response};
use rustix::process::{Pid, Signal};

use crate::files::CopyIn;
use crate::reaper::Reaper;
use crate::{boot, exec, files, info, log};

/// Locks a mutex, ignoring poisoning: a panicked pump thread must not stop the agent.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The one writer of frames: every thread sends through it, one whole frame at a time.
#[derive(Default)]
pub struct Out {
    w: Mutex<Option<Box<dyn Write + Send>>>,
    failing: std::sync::atomic::AtomicBool,
}

impl Out {
    /// Makes `w` the stream frames go to.
    pub fn attach(&self, w: Box<dyn Write + Send>) {
        *lock(&self.w) = Some(w);
    }

    /// Drops the stream; frames are discarded until the next [`Out::attach`].
    pub fn detach(&self) {
        *lock(&self.w) = None;
    }

    /// Writes one frame; a failure is logged once per run of failures, never fatal.
    pub fn send(&self, frame: &Frame) {
        use std::sync::atomic::Ordering;
        let bytes = frame.encode();
        let mut g = lock(&self.w);
        let Some(w) = g.as_mut() else { return };
        match w.write_all(&bytes).and_then(|()| w.flush()) {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log!("writing to the host failed: {e}");
                }
            }
        }
    }

    /// Sends a JSON response on `session`.
    pub fn respond(&self, session: u32, r: &Response) {
        self.send(&Frame::json(Kind::Response, session, r));
    }

    /// Sends `Error{message, code}` on `session`.
    pub fn error(&self, session: u32, code: i32, message: impl Into<String>) {
        self.respond(
            session,
            &Response::Error {
                message: message.into(),
                code,
            },
        );
    }

    /// Sends `data` as frames of `kind`, at most [`proto::CHUNK`] bytes each.
    pub fn data(&self, kind: Kind, session: u32, data: &[u8]) {
        for chunk in data.chunks(proto::CHUNK) {
            self.send(&Frame {
                kind,
                session,
                payload: chunk.to_vec(),
            });
        }
    }
}

/// A session's process, as the request loop needs to reach it.
pub struct Proc {
    /// Its pid (also its process group and session: it is a session leader).
    pub pid: Pid,
    /// Where its Stdin frames go; `None` once closed or when it has no stdin.
    pub stdin: Option<Sender<Vec<u8>>>,
    /// The pty master, for `Resize`.
    pub pty: Option<Arc<OwnedFd>>,
}

/// What a live session is doing.
pub enum Session {
    /// Running a process.
    Proc(Proc),
    /// Receiving a file.
    CopyIn(CopyIn),
    /// Sending a file (the session id is taken until it is sent).
    CopyOut,
}

/// The agent: its writer, sessions and reaper.
pub struct Agent {
    /// Frames to the host.
    pub out: Out,
    /// Live sessions by id.
    pub sessions: Mutex<HashMap<u32, Session>>,
    /// Exit statuses of children.
    pub reaper: Reaper,
    /// PID 1 of a VM (mounts, network, power off) or a test agent.
    pub pid1: bool,
    /// What `Shutdown` must unmount.
    pub mounts: Mutex<boot::Mounted>,
}

impl Agent {
    /// A new agent; starts the reaper thread.
    pub fn new(pid1: bool) -> Agent {
        Agent {
            out: Out::default(),
            sessions: Mutex::new(HashMap::new()),
            reaper: Reaper::start(),
            pid1,
            mounts: Mutex::new(boot::Mounted::default()),
        }
    }

    /// Reads frames from `r` until end of stream or a read error.
    pub fn serve(self: &Arc<Self>, mut r: impl Read) {
        let mut reader = FrameReader::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            loop {
                match reader.next_frame() {
                    Ok(Some(f)) => self.handle(f),
                    Ok(None) => break,
                    Err(e) => {
                        log!("unreadable stream from the host, dropping what was buffered: {e}");
                        reader = FrameReader::new();
                        break;
                    }
                }
            }
            let n = match r.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log!("reading from the host: {e}");
                    return;
                }
            };
            reader.push(&buf[..n]);
        }
    }

    fn handle(self: &Arc<Self>, f: Frame) {
        match f.kind {
            Kind::Request => match f.parse::<Request>() {
                Ok(req) => self.request(f.session, req),
                Err(e) => self.out.error(f.session, 125, e.to_string()),
            },
            Kind::Stdin => self.stdin(f.session, f.payload),
            k => self.out.error(
                f.session,
                125,
                format!("a {k:?} frame is not something the host sends"),
            ),
        }
    }

    fn stdin(&self, session: u32, data: Vec<u8>) {
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(&session) {
            Some(Session::Proc(p)) => {
                let eof = data.is_empty();
                if let Some(tx) = &p.stdin {
                    // A closed channel means the writer gave up (the process closed its
                    // stdin); the bytes have nowhere to go.
                    let _ = tx.send(data);
                }
                if eof {
                    p.stdin = None;
                }
            }
            Some(Session::CopyIn(c)) => {
                let done = data.is_empty();
                let result = if done { None } else { c.write(&data).err() };
                if done || result.is_some() {
                    let Some(Session::CopyIn(c)) = sessions.remove(&session) else {
                        unreachable!("looked up above")
                    };
                    drop(sessions);
                    match result.map_or_else(|| c.finish(), Err) {
                        Ok(()) => self.out.respond(session, &Response::Ok),
                        Err(e) => self.out.error(session, 125, error_chain(&e)),
                    }
                }
            }
            // Data for a session that ended (or failed at its start): nothing wants it.
            Some(Session::CopyOut) | None => {}
        }
    }

    fn request(self: &Arc<Self>, session: u32, req: Request) {
        match req {
            Request::Ping => self.out.respond(
                session,
                &Response::Pong {
                    uptime_ms: info::uptime_ms(),
                },
            ),
            Request::Info => self
                .out
                .respond(session, &Response::Info(info::guest_info())),
            Request::Sync => {
                rustix::fs::sync();
                self.out.respond(session, &Response::Ok)
            }
            Request::Boot(b) => match boot::boot(self, &b) {
                Ok(()) => self.out.respond(
                    session,
                    &Response::Ready {
                        version: proto::VERSION,
                        uptime_ms: info::uptime_ms(),
                    },
                ),
                Err(e) => self.out.error(session, 125, error_chain(&e)),
            },
            Request::Exec(e) => {
                if self.busy(session) {
                    return;
                }
                exec::start(self, session, e);
            }
            Request::Resize { rows, cols } => {
                let pty = match lock(&self.sessions).get(&session) {
                    Some(Session::Proc(p)) => p.pty.clone(),
                    _ => return self.no_process(session),
                };
                if let Some(pty) = pty {
                    if let Err(e) = exec::resize(&pty, rows, cols) {
                        self.out.error(session, 125, format!("resize: {e}"));
                    }
                }
            }
            Request::Signal { signal } => {
                let pid = match lock(&self.sessions).get(&session) {
                    Some(Session::Proc(p)) => p.pid,
                    _ => return self.no_process(session),
                };
                let result = match Signal::from_named_raw(signal) {
                    // The whole process group: a shell's children go with it, so its
                    // output ends and the session can end (the process is a group leader).
                    Some(sig) => rustix::process::kill_process_group(pid, sig)
                        .or_else(|_| rustix::process::kill_process(pid, sig))
                        .map_err(io::Error::from),
                    None => Err(io::Error::other(format!("no signal {signal}"))),
                };
                if let Err(e) = result {
                    self.out
                        .error(session, 125, format!("signal {signal} to {pid:?}: {e}"));
                }
            }
            Request::CopyIn { path, mode } => {
                if self.busy(session) {
                    return;
                }
                match CopyIn::open(&path, mode) {
                    Ok(c) => {
                        lock(&self.sessions).insert(session, Session::CopyIn(c));
                    }
                    Err(e) => self.out.error(session, 125, error_chain(&e)),
                }
            }
            Request::CopyOut { path } => {
                if self.busy(session) {
                    return;
                }
                lock(&self.sessions).insert(session, Session::CopyOut);
                let agent = Arc::clone(self);
                let started = spawn_thread("copy-out", move || {
                    let result = files::copy_out(&agent.out, session, &path);
                    // Free the id before the answer, so the host may reuse it at once.
                    lock(&agent.sessions).remove(&session);
                    match result {
                        Ok(()) => agent.out.respond(session, &Response::Ok),
                        Err(e) => agent.out.error(session, 125, error_chain(&e)),
                    }
                });
                if started.is_none() {
                    lock(&self.sessions).remove(&session);
                    self.out
                        .error(session, 125, "cannot start a thread for the copy");
                }
            }
            Request::Attach => self.out.error(
                session,
                125,
                "attach is answered by the VM's monitor on the host, not by the agent",
            ),
            Request::Shutdown { reboot } => {
                self.out.respond(session, &Response::Ok);
                boot::shutdown(self, reboot);
            }
        }
    }

    /// Answers `Error` and returns true if `session` is already in use.
    fn busy(&self, session: u32) -> bool {
        let busy = lock(&self.sessions).contains_key(&session);
        if busy {
            self.out
                .error(session, 125, format!("session {session} is already in use"));
        }
        busy
    }

    fn no_process(&self, session: u32) {
        self.out
            .error(session, 125, format!("session {session} has no process"));
    }
}

/// Starts a named thread with a small stack; pumps hold their buffers on the heap.
pub fn spawn_thread<F>(name: &str, f: F) -> Option<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    match std::thread::Builder::new()
        .name(name.into())
        .stack_size(256 * 1024)
        .spawn(f)
    {
        Ok(h) => Some(h),
        Err(e) => {
            log!("cannot start a {name} thread: {e}");
            None
        }
    }
}

/// An error and its causes, `: `-separated, for an `Error` message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
