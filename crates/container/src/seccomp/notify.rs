//! Seccomp user notification: the listener of a filter's `SCMP_ACT_NOTIFY` rules goes to the
//! agent listening at the profile's `listenerPath`, with the runtime spec's container process
//! state (`ociVersion`, `fds: ["seccompFd"]`, `pid`, `metadata`, `state`) in the same message.
//!
//! The init connects before it builds the root filesystem, while the host's path is still in
//! reach, and sends once the filter is installed.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Connects to the agent at `path`, waiting up to two seconds for it to listen.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("connecting to the seccomp agent at {}: {e}", path.display()),
                ))
            }
        }
    }
}

/// Sends `listener` and the container process state to the agent.
pub fn send(
    conn: &UnixStream,
    listener: &OwnedFd,
    pid: Option<i32>,
    metadata: Option<&str>,
    state: serde_json::Value,
) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let msg = serde_json::json!({
        "ociVersion": "1.0.2",
        "fds": ["seccompFd"],
        "pid": pid.unwrap_or(0),
        "metadata": metadata.unwrap_or(""),
        "state": state,
    })
    .to_string();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [listener.as_fd()];
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("no room for the listener descriptor"));
    }
    let sent = rustix::net::sendmsg(
        conn,
        &[io::IoSlice::new(msg.as_bytes())],
        &mut cmsg,
        SendFlags::NOSIGNAL,
    )?;
    if sent != msg.len() {
        return Err(io::Error::other(
            "the seccomp agent took part of the message",
        ));
    }
    Ok(())
}
