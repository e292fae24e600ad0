//! The wire protocol between corral on the host and `corral-guest` inside a VM.
//!
//! One byte stream (a virtio-serial port in the guest, a unix socket on the host) carries
//! frames. Every frame is:
//!
//! ```text
//! len: u32 big-endian   length of what follows (kind + session + payload), 5 ..= MAX_FRAME
//! kind: u8              see [`Kind`]
//! session: u32 BE       which exchange the frame belongs to; 0 is the VM's main process
//! payload               JSON for Request/Response/Exit, raw bytes for Stdin/Stdout/Stderr
//! ```
//!
//! A session starts with a [`Request`] from the host and ends with a [`Response`] (for
//! requests without a process) or an [`Exit`] frame (for [`Request::Exec`]). Both sides treat
//! what they read as hostile: [`FrameReader`] refuses frames longer than [`MAX_FRAME`] or of
//! an unknown kind, and JSON payloads are parsed into closed types.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The longest frame either side accepts (kind + session + payload).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest data chunk a writer puts in one Stdin/Stdout/Stderr frame.
pub const CHUNK: usize = 64 * 1024;
/// The name of the virtio-serial port the agent listens on.
pub const PORT_NAME: &str = "corral.agent";
/// The protocol version both sides announce in [`Request::Boot`] / [`Response::Ready`].
pub const VERSION: u32 = 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Host to guest: a JSON [`Request`].
    Request = 1,
    /// Guest to host: a JSON [`Response`].
    Response = 2,
    /// Host to guest: bytes for the session's stdin (or a file being copied in); empty = EOF.
    Stdin = 3,
    /// Guest to host: bytes the session's process wrote to stdout (or a file being copied out).
    Stdout = 4,
    /// Guest to host: bytes the session's process wrote to stderr.
    Stderr = 5,
    /// Guest to host: the session's process ended; JSON [`Exit`].
    Exit = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Stdin,
            4 => Kind::Stdout,
            5 => Kind::Stderr,
            6 => Kind::Exit,
            _ => return None,
        })
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: Kind,
    /// The session it belongs to.
    pub session: u32,
    /// JSON or raw bytes, by kind.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame with a JSON payload.
    pub fn json<T: Serialize>(kind: Kind, session: u32, value: &T) -> Frame {
        let payload = serde_json::to_vec(value).expect("protocol types serialize");
        Frame {
            kind,
            session,
            payload,
        }
    }

    /// Parses the JSON payload into `T`.
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ProtoError> {
        serde_json::from_slice(&self.payload).map_err(|e| ProtoError::BadPayload {
            kind: self.kind,
            reason: e.to_string(),
        })
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.payload.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let len = (5 + self.payload.len()) as u32;
        out.extend_from_slice(&len.to_be_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// Writes the frame in one `write_all`.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())
    }
}

/// Why a stream could not be read as frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The peer announced a frame outside 5 ..= [`MAX_FRAME`] bytes.
    #[error("frame of {0} bytes is outside the allowed 5..={MAX_FRAME}")]
    BadLength(usize),
    /// The peer sent a kind byte this side does not know.
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    /// A JSON payload did not parse.
    #[error("malformed {kind:?} payload: {reason}")]
    BadPayload {
        /// The frame's kind.
        kind: Kind,
        /// What serde said.
        reason: String,
    },
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Splits a byte stream into frames, from a reader or from bytes pushed in.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame among the bytes pushed so far, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtoError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if !(5..=MAX_FRAME).contains(&len) {
            return Err(ProtoError::BadLength(len));
        }
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = Kind::from_u8(self.buf[4]).ok_or(ProtoError::BadKind(self.buf[4]))?;
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let session = u32::from_be_bytes(self.buf[5..9].try_into().expect("4 bytes"));
        let payload = self.buf[9..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(Frame {
            kind,
            session,
            payload,
        }))
    }

    /// Reads from `r` until a whole frame is there; `Ok(None)` at a clean end of stream.
    pub fn read_from(&mut self, r: &mut impl Read) -> Result<Option<Frame>, ProtoError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(f) = self.next_frame()? {
                return Ok(Some(f));
            }
            let n = match r.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ProtoError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame",
                )));
            }
            self.push(&chunk[..n]);
        }
    }
}

/// What the host asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The first request of a boot: how to set the guest up. Answered by [`Response::Ready`].
    Boot(Boot),
    /// Is the agent there? Answered by [`Response::Pong`].
    Ping,
    /// Run a process. Answered by [`Response::Started`] (or [`Response::Error`]), then
    /// Stdout/Stderr frames and one [`Exit`] frame; the host sends Stdin frames.
    Exec(Exec),
    /// Change the terminal size of the session's process (a session with `tty`).
    Resize {
        /// Terminal rows.
        rows: u16,
        /// Terminal columns.
        cols: u16,
    },
    /// Send a signal to the session's process.
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// Write a file in the guest from the session's Stdin frames (empty frame = end).
    /// Answered by [`Response::Ok`] once written.
    CopyIn {
        /// Absolute path in the guest's root.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// Read a file of the guest: Stdout frames with its bytes, then [`Response::Ok`].
    CopyOut {
        /// Absolute path in the guest's root.
        path: String,
    },
    /// The guest's addresses, uptime and kernel. Answered by [`Response::Info`].
    Info,
    /// Write every filesystem's dirty data to its disk (before a disk snapshot). Answered by
    /// [`Response::Ok`] once done.
    Sync,
    /// Host side only, to the VM's monitor (an agent answers [`Response::Error`]): join the
    /// main process's session, 0, as its terminal — its output, its stdin, its [`Exit`]; the
    /// monitor starts a main process that waits for this.
    Attach,
    /// Sync the disks and power off (or reboot). Answered by [`Response::Ok`] first.
    Shutdown {
        /// Reboot instead of powering off.
        #[serde(default)]
        reboot: bool,
    },
}

/// How the agent sets up the guest before it reports ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// The host's protocol version.
    pub version: u32,
    /// The guest's hostname.
    pub hostname: String,
    /// The root filesystem: read-only image disk plus writable disk, joined by overlayfs.
    pub root: Option<RootDisks>,
    /// Network interfaces, in the order of the VM's NICs.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Lines of `/etc/hosts` and the nameservers of `/etc/resolv.conf` to write.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Nameservers for `/etc/resolv.conf`.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// DNS search domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// The wall clock of the host, in milliseconds since the epoch, to set the guest's clock.
    #[serde(default)]
    pub time_ms: u64,
    /// The guest's `/etc/machine-id`: 32 lowercase hex digits derived from the VM's id, so
    /// that clones of one disk are distinct machines (systemd's machine-id(5)). Empty: left
    /// as the disk has it. Not sent when empty, so that older agents still accept the request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine_id: String,
    /// Host directories shared into the guest (virtio-fs) to mount, in order. Not sent when
    /// empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
}

/// A host directory the VM exports over virtio-fs, and where the guest mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// The export's tag.
    pub tag: String,
    /// The absolute directory in the guest to mount it on.
    pub at: String,
}

/// The disks that make the guest's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootDisks {
    /// The read-only ext4 disk with the image's files, by virtio serial number (`/dev/disk/by-id/virtio-<serial>`).
    pub image_serial: String,
    /// The writable ext4 disk for the overlay's upper and work directories.
    pub upper_serial: String,
}

/// One network interface to configure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// The MAC address of the NIC, `aa:bb:cc:dd:ee:ff`, to find it among the guest's devices.
    pub mac: String,
    /// The name to give it (`eth0` ...).
    pub name: String,
    /// `ADDRESS/PREFIX`.
    pub address: String,
    /// The default gateway through this interface, if any.
    pub gateway: Option<String>,
    /// The MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// A process to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// Program and arguments; the program is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs; the whole environment of the process.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory; `/` when empty.
    #[serde(default)]
    pub cwd: String,
    /// User id.
    #[serde(default)]
    pub uid: u32,
    /// Group id.
    #[serde(default)]
    pub gid: u32,
    /// Run on a pseudo-terminal (stdout carries both streams).
    #[serde(default)]
    pub tty: bool,
    /// Terminal size when `tty`.
    #[serde(default)]
    pub rows: u16,
    /// Terminal size when `tty`.
    #[serde(default)]
    pub cols: u16,
    /// The host will send stdin; otherwise the process's stdin is `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// A container's root directory in the guest (a pod member's, under a share): the process
    /// runs in a mount namespace of its own whose `/` is this directory, with the guest's
    /// `/proc`, `/sys` and `/dev` inside; `argv[0]` and `cwd` are looked up in it. Empty: the
    /// guest's own root. Not sent when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root: String,
}

/// The end of a session's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exit {
    /// The exit code as a shell reports it: the code, or 128 + signal.
    pub code: i32,
    /// The signal that ended it, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
}

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// The guest is set up and takes requests.
    Ready {
        /// The agent's protocol version.
        version: u32,
        /// Milliseconds since the guest kernel started.
        uptime_ms: u64,
    },
    /// Answer to [`Request::Ping`].
    Pong {
        /// Milliseconds since the guest kernel started.
        uptime_ms: u64,
    },
    /// The process of an [`Request::Exec`] runs.
    Started {
        /// Its pid in the guest.
        pid: i32,
    },
    /// Done.
    Ok,
    /// Answer to [`Request::Info`].
    Info(GuestInfo),
    /// The request failed.
    Error {
        /// What went wrong, for a person.
        message: String,
        /// The exit code a CLI should use: 126 cannot run, 127 not found, 125 otherwise.
        #[serde(default)]
        code: i32,
    },
}

/// What [`Request::Info`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GuestInfo {
    /// Milliseconds since the guest kernel started.
    pub uptime_ms: u64,
    /// `uname -r`.
    pub kernel: String,
    /// The guest's hostname.
    pub hostname: String,
    /// `IFACE ADDRESS/PREFIX` of every IPv4 address but loopback's.
    pub addresses: Vec<String>,
    /// Total and available memory in KiB, from `/proc/meminfo`.
    pub mem_total_kib: u64,
    /// Available memory in KiB.
    pub mem_available_kib: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_any_split() {
        let frames = vec![
            Frame::json(Kind::Request, 7, &Request::Ping),
            Frame {
                kind: Kind::Stdout,
                session: 7,
                payload: b"hello".to_vec(),
            },
            Frame {
                kind: Kind::Stdin,
                session: 0,
                payload: vec![],
            },
            Frame::json(
                Kind::Exit,
                7,
                &Exit {
                    code: 3,
                    signal: None,
                },
            ),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            f.encode_into(&mut wire);
        }
        for split in 1..wire.len() {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            for piece in wire.chunks(split) {
                r.push(piece);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "split {split}");
        }
    }

    #[test]
    fn hostile_lengths_and_kinds_are_refused() {
        let mut r = FrameReader::new();
        r.push(&(u32::MAX).to_be_bytes());
        assert!(matches!(r.next_frame(), Err(ProtoError::BadLength(_))));
        let mut r = FrameReader::new();
        r.push(&[0, 0, 0, 4, 1, 0]);
        assert!(matches!(r.next_frame(), Err(ProtoError::BadLength(4))));
        let mut r = FrameReader::new();
        r.push(&[0, 0, 0, 5, 99, 0, 0, 0, 0]);
        assert!(matches!(r.next_frame(), Err(ProtoError::BadKind(99))));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: random bytes in random chunks only ever give frames
        // or errors.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut r = FrameReader::new();
            r.push(&bytes);
            while let Ok(Some(f)) = r.next_frame() {
                let _ = f.parse::<Request>();
                let _ = f.parse::<Response>();
            }
        }
    }

    #[test]
    fn unknown_fields_and_ops_are_errors() {
        let f = Frame {
            kind: Kind::Request,
            session: 1,
            payload: br#"{"op":"rm_rf"}"#.to_vec(),
        };
        assert!(f.parse::<Request>().is_err());
        let f = Frame {
            kind: Kind::Request,
            session: 1,
            payload: br#"{"op":"exec","argv":["true"],"evil":1}"#.to_vec(),
        };
        assert!(f.parse::<Request>().is_err());
        let f = Frame {
            kind: Kind::Request,
            session: 1,
            payload: br#"{"op":"exec","argv":["true"]}"#.to_vec(),
        };
        assert_eq!(
            f.parse::<Request>().unwrap(),
            Request::Exec(Exec {
                argv: vec!["true".into()],
                ..Exec::default()
            })
        );
        let boot = Request::Boot(Boot {
            version: VERSION,
            hostname: "vm1".into(),
            ..Boot::default()
        });
        assert_eq!(
            Frame::json(Kind::Request, 0, &boot)
                .parse::<Request>()
                .unwrap(),
            boot
        );
        let info = Response::Info(GuestInfo {
            uptime_ms: 5,
            ..GuestInfo::default()
        });
        assert_eq!(
            Frame::json(Kind::Response, 0, &info)
                .parse::<Response>()
                .unwrap(),
            info
        );
    }
}
