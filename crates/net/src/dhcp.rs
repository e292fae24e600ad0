//! DHCP (v4) on a network: a guest that asks for an address gets the one corral gave it.
//!
//! corral allocates every endpoint's address itself (IPAM, [`crate::ipam`]) and keeps a VM's
//! for its lifetime; a container or an image VM is configured with it directly. A stock
//! distribution (a disk-booted VM, a cloud image) asks DHCP instead. This server answers those
//! requests on the network's bridge from the endpoint records (`endpoints/<owner>.json`):
//! the MAC in the request names the endpoint, and the answer is its address with the
//! network's prefix, gateway, DNS server (corral's, at the gateway), the endpoint's name as the
//! hostname, the network's name as the domain and the MTU. It runs inside the network's DNS
//! process ([`crate::dns::serve`]), on UDP port 67 of the bridge only (`SO_BINDTODEVICE`, so
//! that every network's server shares the port).
//!
//! A MAC that is not one of the network's endpoints gets no answer: there is no pool, and no
//! address is ever handed out that IPAM did not allocate. Leases are long (a day) because the
//! address is the endpoint's until it is removed; RELEASE and DECLINE change nothing.
//! Replies are broadcast on the bridge (the client has no address yet), or sent to `ciaddr`
//! when the client has one (renewals, INFORM). Relayed requests (`giaddr`) are ignored.
//!
//! Requests come from guests and are hostile: [`Message::parse`] bounds every read and
//! rejects what is malformed; nothing a request says is echoed but its `xid`, `flags` and
//! `chaddr`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::endpoint::Endpoint;

/// The server's port.
pub const SERVER_PORT: u16 = 67;
/// The client's port.
pub const CLIENT_PORT: u16 = 68;
/// Lease time given, in seconds.
pub const LEASE_SECS: u32 = 86_400;
/// The fixed BOOTP header's length, before the magic cookie.
const HEADER: usize = 236;
/// RFC 2131's magic cookie.
const COOKIE: [u8; 4] = [99, 130, 83, 99];

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A client looks for servers.
    Discover,
    /// A server's offer.
    Offer,
    /// A client asks for (or renews) an address.
    Request,
    /// A client found the address in use.
    Decline,
    /// A server's yes.
    Ack,
    /// A server's no.
    Nak,
    /// A client gives its address back.
    Release,
    /// A client with an address asks for the other settings.
    Inform,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Discover,
            2 => Kind::Offer,
            3 => Kind::Request,
            4 => Kind::Decline,
            5 => Kind::Ack,
            6 => Kind::Nak,
            7 => Kind::Release,
            8 => Kind::Inform,
            _ => return None,
        })
    }

    fn byte(self) -> u8 {
        match self {
            Kind::Discover => 1,
            Kind::Offer => 2,
            Kind::Request => 3,
            Kind::Decline => 4,
            Kind::Ack => 5,
            Kind::Nak => 6,
            Kind::Release => 7,
            Kind::Inform => 8,
        }
    }
}

/// What a client's request says (only what the server uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The transaction id.
    pub xid: [u8; 4],
    /// The flags (the broadcast bit).
    pub flags: [u8; 2],
    /// The client's current address, if it has one.
    pub ciaddr: Ipv4Addr,
    /// A relay agent's address (requests through a relay are not served).
    pub giaddr: Ipv4Addr,
    /// The client's hardware address.
    pub mac: [u8; 6],
    /// The message type.
    pub kind: Kind,
    /// Option 50: the address the client asks for.
    pub requested: Option<Ipv4Addr>,
    /// Option 54: the server the client chose.
    pub server: Option<Ipv4Addr>,
}

/// Why a packet is not a request this server reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than a BOOTP header and cookie.
    #[error("too short ({0} bytes)")]
    Short(usize),
    /// Not a BOOTREQUEST from an Ethernet client.
    #[error("not a BOOTREQUEST over Ethernet")]
    NotRequest,
    /// No DHCP magic cookie (a plain BOOTP packet).
    #[error("no DHCP magic cookie")]
    NoCookie,
    /// An option's length runs past the packet.
    #[error("option {0} runs past the end")]
    Truncated(u8),
    /// No (or an unknown) message type.
    #[error("no valid message type")]
    NoType,
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

impl Message {
    /// Reads a client's packet.
    pub fn parse(b: &[u8]) -> Result<Message, ParseError> {
        if b.len() < HEADER + COOKIE.len() {
            return Err(ParseError::Short(b.len()));
        }
        // op BOOTREQUEST, htype Ethernet, hlen 6.
        if b[0] != 1 || b[1] != 1 || b[2] != 6 {
            return Err(ParseError::NotRequest);
        }
        if b[HEADER..HEADER + 4] != COOKIE {
            return Err(ParseError::NoCookie);
        }
        let mut kind = None;
        let mut requested = None;
        let mut server = None;
        let mut i = HEADER + 4;
        while i < b.len() {
            let code = b[i];
            match code {
                0 => {
                    i += 1;
                    continue;
                }
                255 => break,
                _ => {}
            }
            let Some(&len) = b.get(i + 1) else {
                return Err(ParseError::Truncated(code));
            };
            let start = i + 2;
            let end = start + usize::from(len);
            let Some(data) = b.get(start..end) else {
                return Err(ParseError::Truncated(code));
            };
            match (code, data) {
                (53, [t]) => kind = Kind::from_byte(*t),
                (50, [a, b2, c, d]) => requested = Some(Ipv4Addr::new(*a, *b2, *c, *d)),
                (54, [a, b2, c, d]) => server = Some(Ipv4Addr::new(*a, *b2, *c, *d)),
                _ => {}
            }
            i = end;
        }
        let kind = kind.ok_or(ParseError::NoType)?;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[28..34]);
        Ok(Message {
            xid: [b[4], b[5], b[6], b[7]],
            flags: [b[10], b[11]],
            ciaddr: ip_at(b, 12),
            giaddr: ip_at(b, 24),
            mac,
            kind,
            requested,
            server,
        })
    }
}

/// What the server tells a client about its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The default gateway (none on an internal network).
    pub router: Option<Ipv4Addr>,
    /// The DNS server.
    pub dns: Ipv4Addr,
    /// The hostname.
    pub hostname: Option<String>,
    /// The domain (the network's name).
    pub domain: Option<String>,
    /// The MTU.
    pub mtu: Option<u16>,
}

/// What to send back, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The packet.
    pub packet: Vec<u8>,
    /// `None`: broadcast on the bridge; else this address (the client's `ciaddr`).
    pub unicast: Option<Ipv4Addr>,
}

/// The server's answer to `m`, given the lease of its MAC (`None`: not one of ours) and the
/// server's own address; `None` when it does not answer.
pub fn answer(m: &Message, lease: Option<&Lease>, server: Ipv4Addr) -> Option<Reply> {
    if m.giaddr != Ipv4Addr::UNSPECIFIED {
        return None;
    }
    let lease = lease?;
    let (kind, yiaddr, full) = match m.kind {
        Kind::Discover => (Kind::Offer, lease.ip, true),
        Kind::Request => {
            if m.server.is_some_and(|s| s != server) {
                // The client chose another server.
                return None;
            }
            let asked = m.requested.unwrap_or(m.ciaddr);
            if asked == lease.ip {
                (Kind::Ack, lease.ip, true)
            } else {
                (Kind::Nak, Ipv4Addr::UNSPECIFIED, false)
            }
        }
        Kind::Inform => (Kind::Ack, Ipv4Addr::UNSPECIFIED, false),
        _ => return None,
    };
    let mut p = vec![0u8; HEADER];
    p[0] = 2; // BOOTREPLY
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&m.xid);
    p[10..12].copy_from_slice(&m.flags);
    if m.kind == Kind::Inform {
        p[12..16].copy_from_slice(&m.ciaddr.octets());
    }
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[20..24].copy_from_slice(&server.octets());
    p[28..34].copy_from_slice(&m.mac);
    p.extend_from_slice(&COOKIE);
    let mut opt = |code: u8, data: &[u8]| {
        p.push(code);
        p.push(data.len() as u8);
        p.extend_from_slice(data);
    };
    opt(53, &[kind.byte()]);
    opt(54, &server.octets());
    if kind != Kind::Nak {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(lease.prefix.min(32)))
            .unwrap_or(0);
        opt(1, &mask.to_be_bytes());
        if let Some(r) = lease.router {
            opt(3, &r.octets());
        }
        opt(6, &lease.dns.octets());
        if let Some(d) = &lease.domain {
            opt(15, &d.as_bytes()[..d.len().min(255)]);
        }
        if let Some(mtu) = lease.mtu {
            opt(26, &mtu.to_be_bytes());
        }
        if full {
            opt(51, &LEASE_SECS.to_be_bytes());
            opt(58, &(LEASE_SECS / 2).to_be_bytes());
            opt(59, &(LEASE_SECS / 8 * 7).to_be_bytes());
            if let Some(h) = &lease.hostname {
                opt(12, &h.as_bytes()[..h.len().min(255)]);
            }
        }
    }
    p.push(255);
    // Some clients drop replies shorter than a BOOTP packet (300 bytes).
    if p.len() < 300 {
        p.resize(300, 0);
    }
    let unicast = (m.ciaddr != Ipv4Addr::UNSPECIFIED && kind != Kind::Nak).then_some(m.ciaddr);
    Some(Reply { packet: p, unicast })
}

/// The server's socket: UDP port 67 on `bridge` only, broadcast allowed.
pub fn socket(bridge: &str) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(bridge.as_bytes()))?;
    s.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Answers DHCP requests on `sock` for the endpoints of the network at `network_dir`, whose
/// gateway (this server's address) is `server`; runs until its task is dropped.
pub async fn serve(
    sock: tokio::net::UdpSocket,
    network_dir: PathBuf,
    server: Ipv4Addr,
    mtu: Option<u32>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, _from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let m = match Message::parse(&buf[..n]) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("DHCP: ignored a packet: {e}");
                continue;
            }
        };
        let lease = lease_for(&network_dir, &m.mac, mtu);
        if let Some(r) = answer(&m, lease.as_ref(), server) {
            let to =
                std::net::SocketAddr::from((r.unicast.unwrap_or(Ipv4Addr::BROADCAST), CLIENT_PORT));
            if let Err(e) = sock.send_to(&r.packet, to).await {
                tracing::warn!("DHCP: answering {}: {e}", mac_string(&m.mac));
            }
        }
    }
}

/// Formats a MAC as the endpoint records write it.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The lease of the endpoint whose MAC is `mac` among a network's endpoint records.
pub fn lease_for(network_dir: &Path, mac: &[u8; 6], mtu: Option<u32>) -> Option<Lease> {
    let want = mac_string(mac);
    let network = network_dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned);
    let rd = std::fs::read_dir(network_dir.join("endpoints")).ok()?;
    for e in rd.flatten() {
        let path: PathBuf = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(Some(ep)) = crate::fsutil::read_json::<Endpoint>(&path) else {
            continue;
        };
        if !ep.mac.eq_ignore_ascii_case(&want) {
            continue;
        }
        return Some(Lease {
            ip: ep.ip,
            prefix: ep.prefix,
            router: (!ep.internal).then_some(ep.gateway),
            dns: ep.dns_server,
            hostname: ep.container_name.clone(),
            domain: network,
            mtu: mtu.and_then(|m| u16::try_from(m).ok()),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: u8, extra: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER];
        p[0] = 1;
        p[1] = 1;
        p[2] = 6;
        p[4..8].copy_from_slice(&[1, 2, 3, 4]);
        p[10] = 0x80;
        p[28..34].copy_from_slice(&[0x02, 0x42, 10, 1, 0, 5]);
        p.extend_from_slice(&COOKIE);
        p.extend_from_slice(&[53, 1, kind]);
        p.extend_from_slice(extra);
        p.push(255);
        p
    }

    fn lease() -> Lease {
        Lease {
            ip: Ipv4Addr::new(10, 1, 0, 5),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 1, 0, 1)),
            dns: Ipv4Addr::new(10, 1, 0, 1),
            hostname: Some("vm1".into()),
            domain: Some("net1".into()),
            mtu: None,
        }
    }

    /// The options of a reply, by code.
    fn options(p: &[u8]) -> std::collections::BTreeMap<u8, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        let mut i = HEADER + 4;
        while i < p.len() && p[i] != 255 {
            if p[i] == 0 {
                i += 1;
                continue;
            }
            let len = usize::from(p[i + 1]);
            out.insert(p[i], p[i + 2..i + 2 + len].to_vec());
            i += 2 + len;
        }
        out
    }

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

    #[test]
    fn a_discover_gets_the_endpoints_address_offered() {
        let m = Message::parse(&request(1, &[])).unwrap();
        assert_eq!(m.kind, Kind::Discover);
        assert_eq!(m.mac, [0x02, 0x42, 10, 1, 0, 5]);
        let r = answer(&m, Some(&lease()), SERVER).unwrap();
        assert_eq!(r.unicast, None, "broadcast: the client has no address");
        let p = &r.packet;
        assert_eq!(p[0], 2);
        assert_eq!(&p[4..8], &[1, 2, 3, 4], "the xid comes back");
        assert_eq!(&p[16..20], &[10, 1, 0, 5], "yiaddr");
        assert_eq!(&p[28..34], &m.mac);
        let o = options(p);
        assert_eq!(o[&53], vec![2], "OFFER");
        assert_eq!(o[&54], vec![10, 1, 0, 1]);
        assert_eq!(o[&1], vec![255, 255, 255, 0]);
        assert_eq!(o[&3], vec![10, 1, 0, 1]);
        assert_eq!(o[&6], vec![10, 1, 0, 1]);
        assert_eq!(o[&12], b"vm1".to_vec());
        assert_eq!(o[&15], b"net1".to_vec());
        assert_eq!(o[&51], LEASE_SECS.to_be_bytes().to_vec());
        assert!(p.len() >= 300);
    }

    #[test]
    fn a_request_for_its_address_is_acked_and_another_naked() {
        let ours = request(3, &[50, 4, 10, 1, 0, 5, 54, 4, 10, 1, 0, 1]);
        let r = answer(&Message::parse(&ours).unwrap(), Some(&lease()), SERVER).unwrap();
        assert_eq!(options(&r.packet)[&53], vec![5], "ACK");
        let other = request(3, &[50, 4, 10, 1, 0, 99]);
        let r = answer(&Message::parse(&other).unwrap(), Some(&lease()), SERVER).unwrap();
        let o = options(&r.packet);
        assert_eq!(o[&53], vec![6], "NAK");
        assert!(!o.contains_key(&51), "a NAK gives no lease");
        // A request to another server is not ours to answer.
        let elsewhere = request(3, &[50, 4, 10, 1, 0, 5, 54, 4, 10, 9, 9, 9]);
        assert_eq!(
            answer(&Message::parse(&elsewhere).unwrap(), Some(&lease()), SERVER),
            None
        );
    }

    #[test]
    fn unknown_macs_relays_and_releases_get_no_answer() {
        let m = Message::parse(&request(1, &[])).unwrap();
        assert_eq!(answer(&m, None, SERVER), None);
        let mut relayed = request(1, &[]);
        relayed[24..28].copy_from_slice(&[10, 2, 0, 1]);
        assert_eq!(
            answer(&Message::parse(&relayed).unwrap(), Some(&lease()), SERVER),
            None
        );
        let release = Message::parse(&request(7, &[])).unwrap();
        assert_eq!(answer(&release, Some(&lease()), SERVER), None);
    }

    #[test]
    fn a_renewal_is_answered_to_the_clients_address() {
        let mut p = request(3, &[]);
        p[12..16].copy_from_slice(&[10, 1, 0, 5]);
        let r = answer(&Message::parse(&p).unwrap(), Some(&lease()), SERVER).unwrap();
        assert_eq!(r.unicast, Some(Ipv4Addr::new(10, 1, 0, 5)));
        assert_eq!(options(&r.packet)[&53], vec![5]);
    }

    #[test]
    fn hostile_packets_are_refused_without_panicking() {
        assert_eq!(Message::parse(&[1, 1, 6]), Err(ParseError::Short(3)));
        let mut reply = request(1, &[]);
        reply[0] = 2;
        assert_eq!(Message::parse(&reply), Err(ParseError::NotRequest));
        let mut bootp = request(1, &[]);
        bootp[HEADER] = 0;
        assert_eq!(Message::parse(&bootp), Err(ParseError::NoCookie));
        let mut cut = request(1, &[]);
        cut.pop();
        cut.extend_from_slice(&[12, 200, b'x']);
        assert_eq!(Message::parse(&cut), Err(ParseError::Truncated(12)));
        let mut dangling = request(1, &[]);
        dangling.pop();
        dangling.push(12);
        assert_eq!(Message::parse(&dangling), Err(ParseError::Truncated(12)));
        assert_eq!(Message::parse(&request(99, &[])), Err(ParseError::NoType));
        // Every prefix and every single-byte corruption of a valid packet parses or errs.
        let good = request(
            3,
            &[
                50, 4, 10, 1, 0, 5, 54, 4, 10, 1, 0, 1, 12, 3, b'a', b'b', b'c',
            ],
        );
        for n in 0..good.len() {
            let _ = Message::parse(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 4, 255] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Ok(m) = Message::parse(&bad) {
                    let _ = answer(&m, Some(&lease()), SERVER);
                }
            }
        }
    }
}
