//! A client of QEMU's machine protocol (QMP), over its unix socket.
//!
//! Synchronous: every caller (the CLI for one command, the VM monitor for the VM's life)
//! talks to one QEMU over one socket, in turn; there is nothing to multiplex. Each socket
//! serves one client at a time, so QEMU is started with two: one the monitor keeps, one
//! for the CLI (taken under the VM's lock).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What went wrong talking to QEMU.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached in time.
    #[error("cannot reach QEMU's QMP socket {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing failed (QEMU went away, or a timeout).
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    /// QEMU said something that is not QMP.
    #[error("QMP: unexpected answer from QEMU: {0}")]
    Protocol(String),
    /// QEMU refused a command.
    #[error("QEMU refused {command}: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP's error class.
        class: String,
        /// QMP's description.
        desc: String,
    },
}

type Result<T> = std::result::Result<T, QmpError>;

/// One QMP session, in command mode.
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    events: Vec<Value>,
    next_id: u64,
}

impl Qmp {
    /// Connects to `path`, retrying until `timeout` while QEMU is still creating it, reads the
    /// greeting and leaves capabilities negotiation.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(source) => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        };
        stream.set_read_timeout(Some(timeout.max(Duration::from_secs(5))))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut qmp = Qmp {
            writer: stream,
            reader,
            events: Vec::new(),
            next_id: 1,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Sets how long a read may wait (`None`: for ever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        Ok(self.writer.set_read_timeout(t)?)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line)?;
        if n == 0 {
            return Err(QmpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QEMU closed the QMP socket",
            )));
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {line}")))
    }

    /// Runs `command` with `arguments` and returns its `return` value. Events that arrive in
    /// between are kept for [`Qmp::take_events`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(b'\n');
        self.writer.write_all(&bytes)?;
        loop {
            let v = self.read_message()?;
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    class: e["class"].as_str().unwrap_or("?").to_owned(),
                    desc: e["desc"].as_str().unwrap_or("?").to_owned(),
                });
            }
            return Err(QmpError::Protocol(v.to_string()));
        }
    }

    /// Waits for the next event (first those already read), up to the read timeout.
    pub fn next_event(&mut self) -> Result<Value> {
        if !self.events.is_empty() {
            return Ok(self.events.remove(0));
        }
        loop {
            let v = self.read_message()?;
            if v.get("event").is_some() {
                return Ok(v);
            }
        }
    }

    /// The events read so far while waiting for answers.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    /// `query-status`: the run state (`running`, `paused`, `shutdown`, `guest-panicked` ...).
    pub fn status(&mut self) -> Result<String> {
        let v = self.execute("query-status", None)?;
        Ok(v["status"].as_str().unwrap_or("unknown").to_owned())
    }

    /// `quit`: QEMU exits at once.
    pub fn quit(&mut self) -> Result<()> {
        match self.execute("quit", None) {
            Ok(_) => Ok(()),
            // QEMU may close the socket before answering.
            Err(QmpError::Io(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
