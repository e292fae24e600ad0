//! Bringing up `lo` in a container's new network namespace, so that 127.0.0.1 works with
//! `--network none` as it does under docker.
//!
//! One RTM_NEWLINK request over a NETLINK_ROUTE socket (rtnetlink(7)), written out by hand:
//! 32 bytes on the start path do not justify an async netlink stack in the init.

use std::io;

use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_ERROR: u16 = 2;
const IFF_UP: u32 = 0x1;
/// The loopback device is always interface 1 in a new namespace.
const LO_INDEX: i32 = 1;

/// The request: nlmsghdr (16 bytes) + ifinfomsg (16 bytes), native endian.
fn request() -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0..4].copy_from_slice(&32u32.to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // ifinfomsg: family AF_UNSPEC (0), pad, type 0, index, flags, change.
    m[20..24].copy_from_slice(&LO_INDEX.to_ne_bytes());
    m[24..28].copy_from_slice(&IFF_UP.to_ne_bytes());
    m[28..32].copy_from_slice(&IFF_UP.to_ne_bytes());
    m
}

/// Sets `lo` up in the calling process's network namespace.
pub fn up() -> io::Result<()> {
    let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    send(&fd, &request(), SendFlags::empty())?;
    let mut buf = [0u8; 256];
    let (n, _) = recv(&fd, &mut buf, RecvFlags::empty())?;
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
        return Ok(());
    }
    Err(io::Error::other("no acknowledgement from the kernel"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_32_byte_newlink_for_lo() {
        let r = request();
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(i32::from_ne_bytes(r[20..24].try_into().unwrap()), 1);
    }
}
