//! The guest's network, over rtnetlink(7): loopback up, each NIC found by its MAC address,
//! renamed, given its MTU, address and default route, and the IPv4 addresses for `Info`.
//!
//! Synchronous, as corral-net's netlink layer: one `send` and the `recv`s of its answer per
//! request, messages built and parsed by `netlink-packet-route`. No async runtime in the
//! agent.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use corral_guest::proto::Interface;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A network setup step failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request failed.
    #[error("netlink: {op}")]
    Netlink {
        /// What was being done.
        op: String,
        /// The kernel's answer.
        #[source]
        err: io::Error,
    },
    /// The request named something that is not there or does not parse.
    #[error("interface {name}: {reason}")]
    Config {
        /// The interface's requested name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

fn ctx<T>(r: io::Result<T>, op: impl FnOnce() -> String) -> Result<T, NetError> {
    r.map_err(|err| NetError::Netlink { op: op(), err })
}

/// A link of the guest.
#[derive(Debug, Clone)]
struct Link {
    index: u32,
    name: String,
    mac: Vec<u8>,
}

/// A NETLINK_ROUTE socket.
struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    fn open() -> Result<Netlink, NetError> {
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

    /// Sends one request; returns the messages of a dump, or nothing for an acknowledged
    /// request. A negative acknowledgement becomes the errno.
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

    fn links(&mut self) -> Result<Vec<Link>, NetError> {
        let msgs = ctx(
            self.request(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
            ),
            || "list links".into(),
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let mut link = Link {
                        index: l.header.index,
                        name: String::new(),
                        mac: Vec::new(),
                    };
                    for a in l.attributes {
                        match a {
                            LinkAttribute::IfName(n) => link.name = n,
                            LinkAttribute::Address(m) => link.mac = m,
                            _ => {}
                        }
                    }
                    Some(link)
                }
                _ => None,
            })
            .collect())
    }

    /// Changes link `index`: its up flag, name, MTU, each when given.
    fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        name: Option<&str>,
        mtu: Option<u32>,
    ) -> Result<(), NetError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some(up) = up {
            m.header.flags = if up {
                LinkFlags::Up
            } else {
                LinkFlags::empty()
            };
            m.header.change_mask = LinkFlags::Up;
        }
        if let Some(n) = name {
            m.attributes.push(LinkAttribute::IfName(n.to_string()));
        }
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        ctx(self.ack(RouteNetlinkMessage::SetLink(m), 0), || {
            format!("set link {index} (up {up:?}, name {name:?}, mtu {mtu:?})")
        })
    }

    /// Adds `ip/prefix` to link `index`; one already there is not an error.
    fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        m.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix < 31 {
            m.attributes
                .push(AddressAttribute::Broadcast(broadcast(ip, prefix)));
        }
        match self.ack(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => Ok(()),
            r => ctx(r, || format!("add address {ip}/{prefix} to link {index}")),
        }
    }

    /// Adds the default route via `gateway` out of link `index`; an existing one is kept.
    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        match self.ack(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => Ok(()),
            r => ctx(r, || format!("add default route via {gateway}")),
        }
    }

    /// Every IPv4 address: (link index, address, prefix).
    fn addresses(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>, NetError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let msgs = ctx(
            self.request(RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP),
            || "list addresses".into(),
        )?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.family != AddressFamily::Inet {
                continue;
            }
            let mut local = None;
            let mut address = None;
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
                    AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(*ip),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(address) {
                out.push((a.header.index, ip, a.header.prefix_len));
            }
        }
        Ok(out)
    }
}

/// The broadcast address of `ip/prefix`.
fn broadcast(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let host_bits = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
    Ipv4Addr::from(u32::from(ip) | host_bits)
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
fn parse_mac(s: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect::<Option<_>>()?;
    (bytes.len() == 6).then_some(bytes)
}

/// `A.B.C.D/P`.
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, p) = s.split_once('/')?;
    let prefix: u8 = p.parse().ok()?;
    (prefix <= 32).then_some(())?;
    Some((ip.parse().ok()?, prefix))
}

/// Brings `lo` up and configures each interface.
pub fn configure(interfaces: &[Interface]) -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        nl.set_link(lo.index, Some(true), None, None)?;
    }
    for i in interfaces {
        let bad = |reason: &str| NetError::Config {
            name: i.name.clone(),
            reason: reason.into(),
        };
        let mac = parse_mac(&i.mac).ok_or_else(|| bad(&format!("bad MAC address {:?}", i.mac)))?;
        let (ip, prefix) = parse_cidr(&i.address)
            .ok_or_else(|| bad(&format!("bad address {:?} (want A.B.C.D/P)", i.address)))?;
        let gateway = match &i.gateway {
            Some(g) => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| bad(&format!("bad gateway {g:?}")))?,
            ),
            None => None,
        };
        if i.name.is_empty() || i.name.len() > 15 || i.name.contains(['/', ':', ' ']) {
            return Err(bad("bad interface name"));
        }
        let link = links
            .iter()
            .find(|l| l.mac == mac)
            .ok_or_else(|| bad(&format!("no device has MAC address {}", i.mac)))?;
        if link.name != i.name {
            nl.set_link(link.index, Some(false), None, None)?;
            nl.set_link(link.index, None, Some(&i.name), None)?;
        }
        if let Some(mtu) = i.mtu {
            nl.set_link(link.index, None, None, Some(mtu))?;
        }
        nl.add_address(link.index, ip, prefix)?;
        nl.set_link(link.index, Some(true), None, None)?;
        if let Some(gw) = gateway {
            nl.add_default_route(link.index, gw)?;
        }
    }
    Ok(())
}

/// `IFACE A.B.C.D/P` of every IPv4 address but loopback's.
pub fn ipv4_addresses() -> Result<Vec<String>, NetError> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let mut out = Vec::new();
    for (index, ip, prefix) in nl.addresses()? {
        let name = links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| index.to_string(), |l| l.name.clone());
        if name == "lo" || ip.is_loopback() {
            continue;
        }
        out.push(format!("{name} {ip}/{prefix}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_strings_parse() {
        assert_eq!(
            parse_mac("52:54:00:AB:cd:01"),
            Some(vec![0x52, 0x54, 0, 0xab, 0xcd, 1])
        );
        assert_eq!(parse_mac("52:54:00:ab:cd"), None);
        assert_eq!(parse_mac("52:54:00:ab:cd:1"), None);
        assert_eq!(
            parse_cidr("10.0.0.2/24"),
            Some((Ipv4Addr::new(10, 0, 0, 2), 24))
        );
        assert_eq!(parse_cidr("10.0.0.2/33"), None);
        assert_eq!(parse_cidr("10.0.0.2"), None);
        assert_eq!(
            broadcast(Ipv4Addr::new(10, 0, 0, 2), 24),
            Ipv4Addr::new(10, 0, 0, 255)
        );
    }
}
