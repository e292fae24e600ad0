//! The kernel's connection tracking table, read and pruned over ctnetlink (netfilter's netlink
//! subsystem 1), as kube-proxy prunes it: a UDP flow has no end that the kernel sees, so its
//! entry, and the DNAT it recorded, outlives a change of the rules until it has been idle for
//! the UDP timeout (120 s for a flow that had replies). [`crate::services`] deletes the entries
//! that a change of endpoints leaves pointing at the wrong place.
//!
//! Only what that needs: a dump of the IPv4 entries of one protocol, and the deletion of one
//! entry by its original tuple. Messages are built and read here by hand (nfgenmsg and nested
//! attributes; `netlink-packet-route` does not know this family); the socket is
//! `netlink-sys`'s, in the network namespace of the thread that opens it.
//!
//! A deletion always carries a whole original tuple: a ctnetlink delete without one flushes the
//! whole table, so [`delete_message`] has no way to make one.

use std::io;
use std::net::Ipv4Addr;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// IP protocol number of UDP.
pub const UDP: u8 = 17;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

const AF_INET: u8 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 7;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// Header of a netlink message (16 bytes) and of a netfilter one after it (4 bytes).
const HEADERS: usize = 16 + 4;

/// One tracked IPv4 flow of a protocol with ports: its original direction, and the source of
/// its reply direction, which is where a DNAT sent it (the original destination when none
/// did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// IP protocol number ([`UDP`] is 17).
    pub protocol: u8,
    /// The client's address.
    pub src: Ipv4Addr,
    /// The address the client sent to (a service's VIP, a node address).
    pub dst: Ipv4Addr,
    /// The client's port.
    pub sport: u16,
    /// The port the client sent to.
    pub dport: u16,
    /// Who answers: the endpoint a DNAT chose, or `dst` itself.
    pub reply_src: Ipv4Addr,
    /// The port that answers.
    pub reply_sport: u16,
    /// The conntrack zone (0 unless a rule set one).
    pub zone: u16,
}

impl Flow {
    /// Whether the flow's destination was translated (its answer comes from elsewhere).
    pub fn translated(&self) -> bool {
        (self.reply_src, self.reply_sport) != (self.dst, self.dport)
    }
}

/// A ctnetlink socket of the calling thread's network namespace.
pub struct Conntrack {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Conntrack {
    /// Opens the socket.
    pub fn open() -> io::Result<Conntrack> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Conntrack {
            sock,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Every IPv4 entry of `protocol`.
    pub fn flows(&mut self, protocol: u8) -> io::Result<Vec<Flow>> {
        self.seq = self.seq.wrapping_add(1);
        let msg = message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, self.seq, &[]);
        let mut flows = Vec::new();
        self.exchange(&msg, |payload| {
            if let Some(f) = parse_flow(payload).filter(|f| f.protocol == protocol) {
                flows.push(f);
            }
        })?;
        Ok(flows)
    }

    /// Deletes the entry of `flow`; `false` if there was none (it ended meanwhile).
    pub fn delete(&mut self, flow: &Flow) -> io::Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        match self.exchange(&delete_message(self.seq, flow), |_| {}) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends `msg` and reads the answers of its sequence number until the dump is done or the
    /// request is acknowledged, handing each entry's payload (after the netfilter header) to
    /// `each`. A negative acknowledgement becomes its errno.
    fn exchange(&mut self, msg: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let seq = self.seq;
        self.sock.send(msg, 0)?;
        loop {
            self.buf.clear();
            let n = self.sock.recv(&mut self.buf, 0)?;
            let data = &self.buf[..n.min(self.buf.len())];
            let mut off = 0;
            while off + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes(data[off..off + 4].try_into().expect("4 bytes")) as usize;
                if len < 16 || off + len > data.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated ctnetlink message",
                    ));
                }
                let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
                let mseq = u32::from_ne_bytes(data[off + 8..off + 12].try_into().expect("4 bytes"));
                let body = &data[off + 16..off + len];
                off += align(len);
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                            .unwrap_or(0);
                        return match code {
                            0 => Ok(()),
                            c => Err(io::Error::from_raw_os_error(-c)),
                        };
                    }
                    k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                        if let Some(p) = body.get(4..) {
                            each(p);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn libc_enoent() -> i32 {
    rustix::io::Errno::NOENT.raw_os_error()
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A ctnetlink message: netlink header, netfilter header (IPv4, version 0), attributes.
fn message(kind: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = HEADERS + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[AF_INET, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// Appends attribute `kind` with `payload`, padded to 4 bytes.
fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align(out.len()), 0);
}

/// The attributes of a tuple: addresses, protocol and ports (network byte order).
fn tuple(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut ip = Vec::new();
    attr(&mut ip, CTA_IP_V4_SRC, &src.octets());
    attr(&mut ip, CTA_IP_V4_DST, &dst.octets());
    let mut proto = Vec::new();
    attr(&mut proto, CTA_PROTO_NUM, &[protocol]);
    attr(&mut proto, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
    attr(&mut proto, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
    let mut t = Vec::new();
    attr(&mut t, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
    attr(&mut t, CTA_TUPLE_PROTO | NLA_F_NESTED, &proto);
    t
}

/// The request deleting exactly `flow`'s entry: its whole original tuple, and its zone.
fn delete_message(seq: u32, flow: &Flow) -> Vec<u8> {
    let mut attrs = Vec::new();
    attr(
        &mut attrs,
        CTA_TUPLE_ORIG | NLA_F_NESTED,
        &tuple(flow.src, flow.dst, flow.protocol, flow.sport, flow.dport),
    );
    if flow.zone != 0 {
        attr(&mut attrs, CTA_ZONE, &flow.zone.to_be_bytes());
    }
    message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, &attrs)
}

/// The attributes in `buf`: (type without flags, payload). Stops at the first malformed one.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            buf = &[];
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[align(len).min(buf.len())..];
        Some((kind, payload))
    })
}

/// A tuple's (source, destination, protocol, source port, destination port); `None` without
/// IPv4 addresses or ports.
fn parse_tuple(buf: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, u16, u16)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    let v4 = |p: &[u8]| <[u8; 4]>::try_from(p).ok().map(Ipv4Addr::from);
    let port = |p: &[u8]| <[u8; 2]>::try_from(p).ok().map(u16::from_be_bytes);
    for (kind, payload) in attrs(buf) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, p) in attrs(payload) {
                    match k {
                        CTA_IP_V4_SRC => src = v4(p),
                        CTA_IP_V4_DST => dst = v4(p),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, p) in attrs(payload) {
                    match k {
                        CTA_PROTO_NUM => proto = p.first().copied(),
                        CTA_PROTO_SRC_PORT => sport = port(p),
                        CTA_PROTO_DST_PORT => dport = port(p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((src?, dst?, proto?, sport?, dport?))
}

/// The flow of one entry (the attributes after the netfilter header); `None` for what is not
/// IPv4 with ports.
fn parse_flow(buf: &[u8]) -> Option<Flow> {
    let (mut orig, mut reply, mut zone) = (None, None, 0);
    for (kind, payload) in attrs(buf) {
        match kind {
            CTA_TUPLE_ORIG => orig = parse_tuple(payload),
            CTA_TUPLE_REPLY => reply = parse_tuple(payload),
            CTA_ZONE => {
                zone = <[u8; 2]>::try_from(payload)
                    .map(u16::from_be_bytes)
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    let (src, dst, protocol, sport, dport) = orig?;
    let (reply_src, _, _, reply_sport, _) = reply?;
    Some(Flow {
        protocol,
        src,
        dst,
        sport,
        dport,
        reply_src,
        reply_sport,
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            protocol: UDP,
            src: Ipv4Addr::new(10, 1, 0, 2),
            dst: Ipv4Addr::new(10, 96, 0, 10),
            sport: 40000,
            dport: 53,
            reply_src: Ipv4Addr::new(10, 1, 0, 7),
            reply_sport: 5353,
            zone: 3,
        }
    }

    #[test]
    fn a_delete_names_the_whole_original_tuple_and_reads_back() {
        let f = flow();
        let m = delete_message(9, &f);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (1 << 8) | 2);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(m[16], AF_INET);
        // The entry as the kernel would dump it: the same original tuple and a reply one.
        let mut body = m[HEADERS..].to_vec();
        attr(
            &mut body,
            CTA_TUPLE_REPLY | NLA_F_NESTED,
            &tuple(f.reply_src, f.src, UDP, f.reply_sport, f.sport),
        );
        assert_eq!(parse_flow(&body), Some(f));
        assert!(f.translated());
    }

    #[test]
    fn entries_without_ports_or_tuples_are_skipped() {
        let mut body = Vec::new();
        let mut ip = Vec::new();
        attr(&mut ip, CTA_IP_V4_SRC, &[10, 0, 0, 1]);
        attr(&mut ip, CTA_IP_V4_DST, &[10, 0, 0, 2]);
        let mut t = Vec::new();
        attr(&mut t, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
        attr(
            &mut t,
            CTA_TUPLE_PROTO | NLA_F_NESTED,
            &[5, 0, 1, 0, 1, 0, 0, 0],
        );
        attr(&mut body, CTA_TUPLE_ORIG | NLA_F_NESTED, &t);
        attr(&mut body, CTA_TUPLE_REPLY | NLA_F_NESTED, &t);
        assert_eq!(parse_flow(&body), None);
        assert_eq!(parse_flow(&[]), None);
    }

    #[test]
    fn malformed_attributes_end_the_walk() {
        // A length past the end, a length under the header, odd trailing bytes.
        for bad in [&[200u8, 0, 1, 0, 1, 2][..], &[2, 0, 1, 0], &[8, 0]] {
            assert_eq!(attrs(bad).count(), 0, "{bad:?}");
            assert_eq!(parse_flow(bad), None);
        }
        let f = flow();
        assert!(!Flow {
            reply_src: f.dst,
            reply_sport: f.dport,
            ..f
        }
        .translated());
    }
}
