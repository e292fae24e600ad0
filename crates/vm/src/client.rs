//! The CLI's side of a running VM: a connection to its monitor's socket, speaking the guest
//! agent's protocol (the monitor maps sessions onto the agent's). `vm exec`, `vm cp`, the
//! attached main process of `vm run`, `vm stop`'s clean shutdown and `vm inspect`'s guest
//! facts all go through here.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use corral_guest::proto::{self, Frame, FrameReader, Kind, Request, Response};

/// A client of one VM's monitor.
pub struct Client {
    stream: UnixStream,
    reader: FrameReader,
    next: AtomicU32,
}

/// The error of a request the agent refused, or of the channel.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The VM's socket is not there or refuses: the VM is not running (or has no agent).
    #[error("cannot reach the VM's agent ({path}): {source}; is the VM running, and booted from an image?")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The agent said no.
    #[error("{message}")]
    Refused {
        /// Its message.
        message: String,
        /// The exit code it suggests (126, 127, 125).
        code: i32,
    },
    /// The channel broke or said something unexpected.
    #[error("the VM's agent channel: {0}")]
    Channel(String),
}

type Result<T> = std::result::Result<T, ClientError>;

impl From<proto::ProtoError> for ClientError {
    fn from(e: proto::ProtoError) -> Self {
        ClientError::Channel(e.to_string())
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Channel(e.to_string())
    }
}

/// Where an exec's output goes.
pub struct Sinks<'a> {
    /// Stdout frames (and a terminal's output).
    pub stdout: &'a mut dyn Write,
    /// Stderr frames.
    pub stderr: &'a mut dyn Write,
}

impl Client {
    /// Connects to the monitor's socket `ctl`.
    pub fn connect(ctl: &Path) -> Result<Client> {
        let stream = UnixStream::connect(ctl).map_err(|source| ClientError::Connect {
            path: ctl.display().to_string(),
            source,
        })?;
        Ok(Client {
            stream,
            reader: FrameReader::new(),
            next: AtomicU32::new(1),
        })
    }

    fn session(&self) -> u32 {
        self.next.fetch_add(1, Ordering::SeqCst)
    }

    fn send(&mut self, f: &Frame) -> Result<()> {
        Ok(f.write_to(&mut self.stream)?)
    }

    fn read(&mut self) -> Result<Frame> {
        match self.reader.read_from(&mut self.stream)? {
            Some(f) => Ok(f),
            None => Err(ClientError::Channel(
                "the VM's monitor closed the connection (the VM stopped?)".into(),
            )),
        }
    }

    /// Waits for the one response of session `s`.
    fn response(&mut self, s: u32) -> Result<Response> {
        loop {
            let f = self.read()?;
            if f.session == s && f.kind == Kind::Response {
                return match f.parse::<Response>()? {
                    Response::Error { message, code } => {
                        Err(ClientError::Refused { message, code })
                    }
                    r => Ok(r),
                };
            }
        }
    }

    /// A request with one answer.
    pub fn request(&mut self, req: &Request) -> Result<Response> {
        let s = self.session();
        self.send(&Frame::json(Kind::Request, s, req))?;
        self.response(s)
    }

    /// The guest's facts.
    pub fn info(&mut self) -> Result<proto::GuestInfo> {
        match self.request(&Request::Info)? {
            Response::Info(i) => Ok(i),
            other => Err(ClientError::Channel(format!("unexpected answer {other:?}"))),
        }
    }

    /// Asks the agent to power the guest off cleanly.
    pub fn shutdown(&mut self) -> Result<()> {
        self.request(&Request::Shutdown { reboot: false })
            .map(|_| ())
    }

    /// Runs `exec` in the guest, feeding `stdin` (when the exec asks for it) and writing the
    /// output to `sinks`; returns the exit code (128 + signal for a signal).
    pub fn exec(
        &mut self,
        exec: proto::Exec,
        stdin: Option<Box<dyn Read + Send>>,
        sinks: Sinks<'_>,
    ) -> Result<i32> {
        let s = self.session();
        let wants_stdin = exec.stdin;
        self.send(&Frame::json(Kind::Request, s, &Request::Exec(exec)))?;
        self.pump(s, wants_stdin.then_some(stdin).flatten(), sinks, true)
    }

    /// Starts `exec` in the guest and waits until it runs (or is refused): its session and
    /// its pid in the guest. [`Self::exec_finish`] then relays the session to its end.
    pub fn exec_begin(&mut self, exec: proto::Exec) -> Result<(u32, i32)> {
        let s = self.session();
        self.send(&Frame::json(Kind::Request, s, &Request::Exec(exec)))?;
        match self.response(s)? {
            Response::Started { pid } => Ok((s, pid)),
            other => Err(ClientError::Channel(format!("unexpected answer {other:?}"))),
        }
    }

    /// Relays session `s` (begun by [`Self::exec_begin`]) to its end: feeds `stdin`, writes
    /// the output to `sinks`; returns the exit code.
    pub fn exec_finish(
        &mut self,
        s: u32,
        stdin: Option<Box<dyn Read + Send>>,
        sinks: Sinks<'_>,
    ) -> Result<i32> {
        self.pump(s, stdin, sinks, false)
    }

    /// Joins the VM's main process (session 0): its output, its stdin, its exit code.
    pub fn attach(&mut self, stdin: Option<Box<dyn Read + Send>>, sinks: Sinks<'_>) -> Result<i32> {
        self.send(&Frame::json(Kind::Request, 0, &Request::Attach))?;
        self.pump(0, stdin, sinks, false)
    }

    /// A handle that sends terminal resizes and signals to session `s` while it runs.
    pub fn control(&self) -> Result<Control> {
        Ok(Control {
            stream: self.stream.try_clone()?,
        })
    }

    fn pump(
        &mut self,
        s: u32,
        stdin: Option<Box<dyn Read + Send>>,
        sinks: Sinks<'_>,
        expect_started: bool,
    ) -> Result<i32> {
        let mut feeding = None;
        let mut stdin = stdin;
        let mut started = !expect_started;
        if started {
            feeding = stdin.take().map(|r| self.feed(s, r));
        }
        loop {
            let f = self.read()?;
            if f.session != s {
                continue;
            }
            match f.kind {
                Kind::Response => match f.parse::<Response>()? {
                    Response::Started { .. } if !started => {
                        started = true;
                        feeding = stdin.take().map(|r| self.feed(s, r));
                    }
                    Response::Error { message, code } => {
                        return Err(ClientError::Refused { message, code })
                    }
                    _ => {}
                },
                Kind::Stdout => {
                    sinks.stdout.write_all(&f.payload)?;
                    sinks.stdout.flush()?;
                }
                Kind::Stderr => {
                    sinks.stderr.write_all(&f.payload)?;
                    sinks.stderr.flush()?;
                }
                Kind::Exit => {
                    let e: proto::Exit = f.parse()?;
                    drop(feeding);
                    return Ok(e.code);
                }
                _ => {}
            }
        }
    }

    /// Copies `stdin` into Stdin frames of session `s` on a thread; an empty frame at its end.
    fn feed(&self, s: u32, mut r: Box<dyn Read + Send>) -> Option<std::thread::JoinHandle<()>> {
        let mut w = self.stream.try_clone().ok()?;
        Some(std::thread::spawn(move || {
            let mut buf = vec![0u8; proto::CHUNK];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                let f = Frame {
                    kind: Kind::Stdin,
                    session: s,
                    payload: buf[..n].to_vec(),
                };
                if f.write_to(&mut w).is_err() || n == 0 {
                    return;
                }
            }
        }))
    }

    /// Writes `data` to `path` in the guest with permission bits `mode`.
    pub fn copy_in(&mut self, path: &str, mode: u32, data: &mut dyn Read) -> Result<()> {
        let s = self.session();
        self.send(&Frame::json(
            Kind::Request,
            s,
            &Request::CopyIn {
                path: path.to_owned(),
                mode,
            },
        ))?;
        let mut buf = vec![0u8; proto::CHUNK];
        loop {
            let n = data.read(&mut buf)?;
            self.send(&Frame {
                kind: Kind::Stdin,
                session: s,
                payload: buf[..n].to_vec(),
            })?;
            if n == 0 {
                break;
            }
        }
        self.response(s).map(|_| ())
    }

    /// Reads `path` of the guest into `out`.
    pub fn copy_out(&mut self, path: &str, out: &mut dyn Write) -> Result<()> {
        let s = self.session();
        self.send(&Frame::json(
            Kind::Request,
            s,
            &Request::CopyOut {
                path: path.to_owned(),
            },
        ))?;
        loop {
            let f = self.read()?;
            if f.session != s {
                continue;
            }
            match f.kind {
                Kind::Stdout => out.write_all(&f.payload)?,
                Kind::Response => {
                    return match f.parse::<Response>()? {
                        Response::Error { message, code } => {
                            Err(ClientError::Refused { message, code })
                        }
                        _ => Ok(()),
                    }
                }
                _ => {}
            }
        }
    }

    /// Sets a read timeout on the connection.
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        Ok(self.stream.set_read_timeout(t)?)
    }
}

/// Sends out-of-band requests to a running session: resize, signal.
pub struct Control {
    stream: UnixStream,
}

impl Control {
    /// Resizes session `s`'s terminal.
    pub fn resize(&mut self, s: u32, rows: u16, cols: u16) -> Result<()> {
        Ok(
            Frame::json(Kind::Request, s, &Request::Resize { rows, cols })
                .write_to(&mut self.stream)?,
        )
    }

    /// Sends `signal` to session `s`'s process.
    pub fn signal(&mut self, s: u32, signal: i32) -> Result<()> {
        Ok(
            Frame::json(Kind::Request, s, &Request::Signal { signal })
                .write_to(&mut self.stream)?,
        )
    }
}
