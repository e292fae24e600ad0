//! Terminals: a pseudo-terminal for `run -t` and for an OCI bundle's `process.terminal`.
//!
//! The slave side becomes the container's stdin, stdout and stderr and its controlling
//! terminal (the init calls `setsid` and `TIOCSCTTY`). The master side stays with the monitor,
//! which logs it and relays the user's keystrokes; or, in runtime mode, it is handed to the
//! caller (conmon, containerd's shim) over `--console-socket` as an `SCM_RIGHTS` message, as
//! runc does.

use std::io;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};

/// A pseudo-terminal pair.
pub struct Pty {
    /// The side the monitor (or the runtime's caller) keeps.
    pub master: OwnedFd,
    /// The container's side.
    pub slave: OwnedFd,
}

/// Opens a pseudo-terminal, sized like `like` when that is a terminal.
pub fn open(like: Option<std::os::fd::BorrowedFd<'_>>) -> io::Result<Pty> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_noctty())
        .open(std::ffi::OsStr::from_bytes(name.as_bytes()))?
        .into();
    if let Some(fd) = like {
        if let Ok(ws) = tcgetwinsize(fd) {
            let _ = tcsetwinsize(&slave, ws);
        }
    }
    Ok(Pty { master, slave })
}

fn libc_noctty() -> i32 {
    rustix::fs::OFlags::NOCTTY.bits() as i32
}

/// Makes `fd` (the slave, already stdin) the controlling terminal of a new session.
pub fn make_controlling(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    rustix::process::setsid()?;
    rustix::process::ioctl_tiocsctty(fd)?;
    Ok(())
}

/// Sends `master` over the unix socket at `path` (runc's `--console-socket` protocol).
pub fn send_master(path: &Path, master: &OwnedFd) -> io::Result<()> {
    send_master_on(&std::os::unix::net::UnixStream::connect(path)?, master)
}

/// Sends `master` over an already connected console socket.
pub fn send_master_on(sock: &std::os::unix::net::UnixStream, master: &OwnedFd) -> io::Result<()> {
    let fds = [master.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("control buffer too small"));
    }
    // runc sends the terminal's name as the payload; conmon only needs the descriptor.
    sendmsg(
        sock,
        &[IoSlice::new(b"/dev/ptmx")],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// Relays between the user's terminal and the master side until the other side closes.
pub fn relay(master: &OwnedFd, input: bool) {
    relay_detachable(master, input, &[]);
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// No process holds the terminal any more.
    Closed,
    /// The user typed the detach keys.
    Detached,
}

/// docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// Reads docker's `--detach-keys` form: comma-separated keys, each a single character or
/// `ctrl-X` (X one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`); empty: no detach keys.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>, String> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for k in spec.split(',') {
        let lower = k.to_ascii_lowercase();
        let byte = match lower.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let c = c.as_bytes()[0];
                match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' | b'\\' | b']' | b'^' | b'_' => c - b'@',
                    _ => return Err(format!("{k}: ctrl- takes a letter or one of @[\\]^_")),
                }
            }
            None if k.len() == 1 => k.as_bytes()[0],
            _ => {
                return Err(format!(
                    "{k}: a key is one character or ctrl-X (as ctrl-p,ctrl-q)"
                ))
            }
        };
        out.push(byte);
    }
    Ok(out)
}

/// Watches the user's input for the detach keys: the keys themselves never reach the
/// container; a partial match that breaks off is sent on.
pub struct DetachKeys<'a> {
    keys: &'a [u8],
    matched: usize,
}

impl<'a> DetachKeys<'a> {
    /// Watches for `keys` (none when empty).
    pub fn new(keys: &'a [u8]) -> Self {
        DetachKeys { keys, matched: 0 }
    }

    /// Appends to `send` what of `input` goes to the container; true once the keys were
    /// typed (what came after them in `input` is dropped).
    pub fn feed(&mut self, input: &[u8], send: &mut Vec<u8>) -> bool {
        let keys = self.keys;
        for &b in input {
            if !keys.is_empty() && b == keys[self.matched] {
                self.matched += 1;
                if self.matched == keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            if self.matched > 0 {
                send.extend_from_slice(&keys[..self.matched]);
                self.matched = 0;
                if b == keys[0] {
                    self.matched = 1;
                    continue;
                }
            }
            send.push(b);
        }
        false
    }
}

/// As [`relay`], ending early when the user types `keys` (see [`DetachKeys`]).
pub fn relay_detachable(master: &OwnedFd, mut input: bool, keys: &[u8]) -> RelayEnd {
    use rustix::event::{poll, PollFd, PollFlags};
    use std::io::Write;
    let stdin = io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    let mut detach = DetachKeys::new(keys);
    loop {
        let mut fds = vec![PollFd::new(master, PollFlags::IN)];
        if input {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let out_ready = !fds[0].revents().is_empty();
        let in_ready = input && !fds[1].revents().is_empty();
        drop(fds);
        if in_ready {
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => input = false,
                Ok(n) => {
                    let mut send = Vec::with_capacity(n);
                    let detached = detach.feed(&buf[..n], &mut send);
                    let _ = rustix::io::write(master, &send);
                    if detached {
                        return RelayEnd::Detached;
                    }
                }
            }
        }
        if out_ready {
            // EIO: no process holds the other side any more.
            match rustix::io::read(master, &mut buf) {
                Ok(0) | Err(_) => return RelayEnd::Closed,
                Ok(n) => {
                    let mut o = io::stdout().lock();
                    let _ = o.write_all(&buf[..n]).and_then(|()| o.flush());
                }
            }
        }
    }
}

/// A terminal put in raw mode, restored on drop.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode (None when it is not a terminal).
    pub fn enter(fd: std::os::fd::BorrowedFd<'_>) -> Option<Self> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
        Some(RawMode {
            fd: fd.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod detach_key_tests {
    use super::parse_detach_keys;

    #[test]
    fn detach_keys_are_held_back_and_partial_matches_sent_on() {
        let mut d = super::DetachKeys::new(&[0x10, 0x11]);
        let mut out = Vec::new();
        assert!(!d.feed(b"ab\x10c", &mut out));
        assert_eq!(out, b"ab\x10c");
        out.clear();
        // Split across reads, with a false start.
        assert!(!d.feed(b"x\x10\x10", &mut out));
        assert!(d.feed(b"\x11after", &mut out));
        assert_eq!(out, b"x\x10", "the keys never reach the container");
        let mut none = super::DetachKeys::new(&[]);
        out.clear();
        assert!(!none.feed(b"\x10\x11", &mut out));
        assert_eq!(out, b"\x10\x11");
    }

    #[test]
    fn detach_keys_read_as_docker_reads_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), [0x01, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@,ctrl-_").unwrap(), [0x00, 0x1f]);
        assert_eq!(parse_detach_keys("").unwrap(), Vec::<u8>::new());
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }
}
