//! A small synchronous netlink layer (rtnetlink(7)) for corral's devices: bridges, veth
//! pairs, TAP devices, addresses, routes.
//!
//! Messages are built and parsed by `netlink-packet-route`; the socket is `netlink-sys`'s
//! plain blocking one. No async runtime: a container start must add less than 5 ms in all,
//! and one request here is one `send` and one `recv` (tens of microseconds), where
//! `rtnetlink` would need a tokio runtime on the start path.
//!
//! A socket works in the network namespace it was created in, whatever thread uses it later
//! ([`Netlink::open_in`] creates one from a short-lived thread that entered the namespace
//! with setns(2), so the caller's threads never change namespace).
//!
//! TAP devices are created with the TUNSETIFF ioctl on `/dev/net/tun` (the tun driver does
//! not support creation over rtnetlink: `tun_newlink` returns EOPNOTSUPP); this is the one
//! `unsafe` block of the crate.

use std::fs::OpenOptions;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::subnet::Subnet;

/// A netlink operation failed; the source is the kernel's errno.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {op}")]
pub struct NetlinkError {
    /// What was being done, with the objects' names.
    pub op: String,
    /// The kernel's answer.
    #[source]
    pub err: io::Error,
}

impl NetlinkError {
    /// The errno, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        self.err.raw_os_error()
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

fn ctx<T>(r: io::Result<T>, op: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|err| NetlinkError { op: op(), err })
}

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// A route of the host, as the overlap check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Its destination.
    pub destination: Subnet,
    /// Its output device, if it has one.
    pub ifname: Option<String>,
    /// Its gateway, if it has one.
    pub gateway: Option<Ipv4Addr>,
    /// Its routing table.
    pub table: u32,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its kind (`bridge`, `veth`, `tun` ...), if it has one.
    pub kind: Option<String>,
    /// The index of the bridge it is attached to.
    pub master: Option<u32>,
    /// Whether it is administratively up.
    pub up: bool,
}

/// A NETLINK_ROUTE socket bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// Checks an interface name: 1 to 15 bytes, no '/', ':' or whitespace.
pub fn check_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(NetlinkError {
            op: format!("interface name {name:?}"),
            err: io::Error::new(
                io::ErrorKind::InvalidInput,
                "must be 1 to 15 characters without '/', ':' or spaces",
            ),
        })
    }
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let op = || "open socket".to_string();
        let mut sock = ctx(Socket::new(NETLINK_ROUTE), op)?;
        ctx(sock.bind_auto().map(drop), op)?;
        ctx(sock.connect(&SocketAddr::new(0, 0)), op)?;
        Ok(Netlink {
            sock,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// A socket in the network namespace `netns` (an fd of `/proc/<pid>/ns/net` or of a bind
    /// mount of it), created by a thread that enters the namespace and exits.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Netlink> {
        std::thread::scope(|s| {
            s.spawn(|| {
                ctx(
                    rustix::thread::move_into_link_name_space(
                        netns,
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .map_err(io::Error::from),
                    || "enter the network namespace".to_string(),
                )?;
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetlinkError {
                    op: "enter the network namespace".into(),
                    err: io::Error::other("thread panicked"),
                })
            })
        })
    }

    /// Sends one request and collects the answers: the messages of a dump, or nothing for an
    /// acknowledged request. A negative acknowledgement becomes the errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut out = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut out);
        self.sock.send(&out, 0)?;
        let mut answers = Vec::new();
        loop {
            self.buf.clear();
            let n = self.sock.recv(&mut self.buf, 0)?;
            let mut off = 0;
            while off + 16 <= n.min(self.buf.len()) {
                let len = u32::from_ne_bytes(self.buf[off..off + 4].try_into().expect("4 bytes"))
                    as usize;
                if len < 16 || off + len > self.buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    ));
                }
                let m =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..off + len])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                off += (len + 3) & !3;
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(answers),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    _ => {}
                }
            }
            if flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0 {
                return Ok(answers);
            }
        }
    }

    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(msg, flags | NLM_F_ACK).map(drop)
    }

    /// The link called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), NLM_F_ACK) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(&l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(None),
            Err(err) => Err(NetlinkError {
                op: format!("get link {name}"),
                err,
            }),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = ctx(
            self.request(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
            ),
            || "list links".into(),
        )?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })
            .collect())
    }

    /// The links whose name starts with `prefix` (`crl` finds everything corral made).
    pub fn links_with_prefix(&mut self, prefix: &str) -> Result<Vec<Link>> {
        Ok(self
            .links()?
            .into_iter()
            .filter(|l| l.name.starts_with(prefix))
            .collect())
    }

    /// Every IPv4 route of every table (including the local table's host addresses).
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let msgs = ctx(
            self.request(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP),
            || "list routes".into(),
        )?;
        let names: std::collections::HashMap<u32, String> = self
            .links()?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.address_family != AddressFamily::Inet {
                continue;
            }
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut oif = None;
            let mut gateway = None;
            let mut table = u32::from(r.header.table);
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
                    RouteAttribute::Table(t) => table = *t,
                    _ => {}
                }
            }
            out.push(Route {
                destination: Subnet::new(dst, r.header.destination_prefix_length.min(32)),
                ifname: oif.and_then(|i| names.get(&i).cloned()),
                gateway,
                table,
            });
        }
        Ok(out)
    }

    /// Creates bridge `name` with address `gateway/prefix` (and MTU `mtu`), up. Idempotent: an existing bridge
    /// of that name is kept (and given the address and brought up); an existing link of that
    /// name that is not a bridge is an error.
    pub fn create_bridge(
        &mut self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: Option<u32>,
    ) -> Result<u32> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        // A fixed MAC (02:42 and the gateway's address): a bridge without one takes its
        // lowest port's, which changes as containers come and go, and every container that
        // cached the gateway's old MAC cannot reach it (its DNS server) until its neighbour
        // entry goes stale. Found by compose's rolling updates.
        let g = gateway.octets();
        m.attributes.push(LinkAttribute::Address(vec![
            0x02, 0x42, g[0], g[1], g[2], g[3],
        ]));
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        match self.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc_eexist()) => {}
            Err(err) => {
                return Err(NetlinkError {
                    op: format!("create bridge {name}"),
                    err,
                })
            }
        }
        let link = self.link(name)?.ok_or_else(|| NetlinkError {
            op: format!("create bridge {name}"),
            err: io::Error::other("the bridge vanished after creation"),
        })?;
        if link.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError {
                op: format!("create bridge {name}"),
                err: io::Error::other(format!(
                    "a link of that name exists and is a {}, not a bridge: remove it",
                    link.kind.as_deref().unwrap_or("device without kind")
                )),
            });
        }
        self.add_address(link.index, gateway, prefix)?;
        if !link.up {
            self.set_up(link.index)?;
        }
        Ok(link.index)
    }

    /// Deletes link `name`; `Ok(false)` if there is none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.ack(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(false),
            Err(err) => Err(NetlinkError {
                op: format!("delete link {name}"),
                err,
            }),
        }
    }

    /// Creates the veth pair `host` (attached to bridge `master`, up) and `peer`, created
    /// directly in the namespace `peer_netns` (IFLA_NET_NS_FD) under its final name, down,
    /// with MAC address `peer_mac` if given, both ends with MTU `mtu` if given. One request: the kernel applies the master, the
    /// flags and the namespace as it creates the pair; the caller brings the peer up from a
    /// socket in its namespace.
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        peer_mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> Result<()> {
        check_ifname(host)?;
        check_ifname(peer)?;
        // The peer cannot be created up: veth_open() fails with ENOTCONN until both ends
        // exist (drivers/net/veth.c), and the kernel configures the peer first.
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        if let Some(mac) = peer_mac {
            p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut m = LinkMessage::default();
        if let Some(mtu) = mtu {
            p.attributes.push(LinkAttribute::Mtu(mtu));
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(host.to_string()));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        ctx(
            self.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL),
            || format!("create veth pair {host} / {peer}"),
        )
    }

    /// Brings link `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        ctx(self.ack(RouteNetlinkMessage::SetLink(m), 0), || {
            format!("bring link {index} up")
        })
    }

    /// Attaches link `index` to bridge `master` and brings it up.
    pub fn set_master_up(&mut self, index: u32, master: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::Controller(master));
        ctx(self.ack(RouteNetlinkMessage::SetLink(m), 0), || {
            format!("attach link {index} to bridge {master}")
        })
    }

    /// Renames link `index` to `name` (it must be down).
    pub fn rename(&mut self, index: u32, name: &str) -> Result<()> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        ctx(self.ack(RouteNetlinkMessage::SetLink(m), 0), || {
            format!("rename link {index} to {name}")
        })
    }

    /// Adds `ip/prefix` to link `index`; an address already there is not an error.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        m.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix < 31 {
            let b = Subnet::new(ip, prefix).broadcast();
            m.attributes.push(AddressAttribute::Broadcast(b));
        }
        match self.ack(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc_eexist()) => Ok(()),
            Err(err) => Err(NetlinkError {
                op: format!("add address {ip}/{prefix} to link {index}"),
                err,
            }),
        }
    }

    /// Adds the default route via `gateway` out of link `index` (main table).
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        ctx(
            self.ack(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL),
            || format!("add default route via {gateway}"),
        )
    }

    /// Creates the persistent TAP device `name` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), the
    /// form QEMU's `-netdev tap,ifname=` opens, attached to bridge `master`, up.
    pub fn create_tap(&mut self, name: &str, master: u32) -> Result<u32> {
        check_ifname(name)?;
        ctx(tun_create_persistent(name), || format!("create tap {name}"))?;
        let result = (|| {
            let link = self.link(name)?.ok_or_else(|| NetlinkError {
                op: format!("create tap {name}"),
                err: io::Error::other("the device vanished after creation"),
            })?;
            self.set_master_up(link.index, master)?;
            Ok(link.index)
        })();
        if result.is_err() {
            let _ = self.delete_link(name);
        }
        result
    }
}

fn libc_enodev() -> i32 {
    rustix::io::Errno::NODEV.raw_os_error()
}

fn libc_eexist() -> i32 {
    rustix::io::Errno::EXIST.raw_os_error()
}

fn to_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        kind: None,
        master: None,
        up: l.header.flags.contains(LinkFlags::Up),
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(m) => link.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// `struct ifreq` as TUNSETIFF reads it: the name, the flags, padding to 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
/// `_IOW('T', 202, int)`, linux/if_tun.h.
const TUNSETIFF: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<i32>(b'T', 202);
/// `_IOW('T', 203, int)`, linux/if_tun.h.
const TUNSETPERSIST: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<i32>(b'T', 203);

fn tun_create_persistent(name: &str) -> io::Result<()> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    #[allow(unsafe_code)]
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (linux/if.h: 16-byte name, then a
    // union whose first member is the short flags, 40 bytes in all), which `IfReq` lays out
    // with repr(C); the name is NUL-terminated (checked to be at most 15 bytes). TUNSETPERSIST
    // takes its argument by value. The fd is a tun device opened just above.
    unsafe {
        rustix::ioctl::ioctl(
            tun.as_fd(),
            rustix::ioctl::Updater::<TUNSETIFF, IfReq>::new(&mut req),
        )?;
        rustix::ioctl::ioctl(
            tun.as_fd(),
            rustix::ioctl::IntegerSetter::<TUNSETPERSIST>::new_usize(1),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames_are_checked() {
        check_ifname("eth0").unwrap();
        check_ifname("crl-br-01234567").unwrap();
        for bad in ["", "crl-br-012345678", "a/b", "a b", "a:1", "."] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routes_include_loopback() {
        let mut nl = Netlink::open().unwrap();
        let routes = nl.routes().unwrap();
        assert!(
            routes
                .iter()
                .any(|r| r.destination.to_string() == "127.0.0.0/8"
                    && r.ifname.as_deref() == Some("lo")),
            "{routes:?}"
        );
        assert!(nl.link("lo").unwrap().is_some());
        assert!(nl.link("crl-none-here").unwrap().is_none());
    }
}
