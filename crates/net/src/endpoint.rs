//! Endpoints: a container's veth or a VM's TAP device on a network, recorded in
//! `<root>/networks/<name>/endpoints/<owner>.json` with everything the engine needs to
//! write `/etc/hosts` and `/etc/resolv.conf` and to undo the connection.
//!
//! The record is written before the kernel objects are made ([`Endpoint::pending`]) and again
//! once they are: whatever a crash leaves of a connection — address, device, published ports —
//! is named by a record of its owner, and so can be undone.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ports::{PortMapping, PortSpec};

/// What kind of device an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A veth pair: the host end on the bridge, the peer in the container's namespace.
    Veth,
    /// A persistent TAP device on the bridge, opened by the VM engine (QEMU).
    Tap,
}

/// One container's or VM's attachment to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The network's name.
    pub network: String,
    /// The network's id.
    pub network_id: String,
    /// The owner: the container's or VM's id.
    pub owner: String,
    /// The container's or VM's name, for `/etc/hosts` and DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// veth or TAP.
    pub kind: EndpointKind,
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// The DNS server to put in `/etc/resolv.conf` (the gateway, where corral's DNS answers).
    pub dns_server: Ipv4Addr,
    /// Its network has no DNS server of corral's (`--disable-dns`): `/etc/resolv.conf` lists
    /// the host's resolvers instead of `dns_server`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dns_disabled: bool,
    /// The endpoint's MAC address, `xx:xx:xx:xx:xx:xx` (for a TAP, the guest NIC's).
    pub mac: String,
    /// The host-side device: the veth's host end or the TAP device.
    pub host_ifname: String,
    /// The interface name inside the container (`None` for a TAP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// Extra DNS names on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Whether the network is internal (no default route, no NAT).
    #[serde(default)]
    pub internal: bool,
    /// Still being connected: its device and ports may not exist yet, or may be left by a
    /// connection that crashed (then undone by the next connect of its owner, its release, or
    /// a reconcile).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// The group whose endpoints share their published host ports (compose's replicas of one
    /// service): each of its ports is load-balanced over the group's endpoints that serve
    /// ([`crate::shared`]) rather than mapped to this one alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_group: Option<String>,
    /// A grouped endpoint that takes no new connections on its shared ports: a replica not
    /// healthy yet, or one being drained before it stops.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl Endpoint {
    /// `ip/prefix`, as `ip addr` shows it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }
}

/// What [`crate::Networks::connect`] and [`crate::Networks::create_tap_endpoint`] take
/// besides the network and the owner.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The container's or VM's name (recorded for DNS and `/etc/hosts`).
    pub container_name: Option<String>,
    /// The interface name inside the container (`eth0`, `eth1` ...); unused for a TAP.
    pub ifname: String,
    /// Extra DNS names.
    pub aliases: Vec<String>,
    /// Ports to publish (`-p`).
    pub ports: Vec<PortSpec>,
    /// A fixed address (`--ip`); `None` takes the lowest free one.
    pub ip: Option<Ipv4Addr>,
    /// A fixed MAC address; `None` derives one from the address (`02:42:` and its 4 bytes,
    /// as docker does, so that a reused address keeps its MAC and neighbours' caches stay
    /// right).
    pub mac: Option<[u8; 6]>,
    /// Share the published host ports with the other endpoints of this group
    /// ([`Endpoint::port_group`]).
    pub port_group: Option<String>,
    /// Start held ([`Endpoint::held`]): the shared ports send it nothing until
    /// [`crate::Networks::set_held`] lets it serve.
    pub held: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            container_name: None,
            ifname: "eth0".into(),
            aliases: Vec::new(),
            ports: Vec::new(),
            ip: None,
            mac: None,
            port_group: None,
            held: false,
        }
    }
}

/// The MAC address derived from an IPv4 address: locally administered, unicast.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `xx:xx:xx:xx:xx:xx`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses `xx:xx:xx:xx:xx:xx`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The host device name of `owner` on network `network_id`: `crl` + a kind letter (`v` for
/// veth, `t` for TAP) + 11 hex digits of a hash of both, 15 characters, the same on every
/// retry so that a leftover of a crashed connect is found and replaced.
pub fn host_ifname(kind: EndpointKind, network_id: &str, owner: &str) -> String {
    let d = Sha256::digest(format!("{network_id}/{owner}").as_bytes());
    let letter = match kind {
        EndpointKind::Veth => 'v',
        EndpointKind::Tap => 't',
    };
    format!("crl{letter}{}", &hex::encode(d)[..11])
}

/// Checks an owner id, which names a file: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 bytes.
pub fn valid_owner(owner: &str) -> bool {
    let b = owner.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_and_derives_from_ip() {
        let m = mac_for("10.121.0.2".parse().unwrap());
        assert_eq!(format_mac(m), "02:42:0a:79:00:02");
        assert_eq!(parse_mac("02:42:0a:79:00:02"), Some(m));
        assert_eq!(parse_mac("02:42:0a:79:00"), None);
        assert_eq!(parse_mac("02:42:0a:79:00:02:03"), None);
        assert_eq!(parse_mac("zz:42:0a:79:00:02"), None);
    }

    #[test]
    fn host_ifnames_fit_and_differ() {
        let a = host_ifname(EndpointKind::Veth, "net1", "c1");
        let b = host_ifname(EndpointKind::Veth, "net2", "c1");
        let t = host_ifname(EndpointKind::Tap, "net1", "c1");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("crlv") && t.starts_with("crlt"));
        assert_ne!(a, b);
        assert_eq!(a, host_ifname(EndpointKind::Veth, "net1", "c1"));
    }

    #[test]
    fn owners_are_file_names() {
        assert!(valid_owner("0123abcd"));
        assert!(valid_owner("vm-1.x_y"));
        for bad in ["", ".x", "a/b", "..", &"a".repeat(129)] {
            assert!(!valid_owner(bad), "{bad:?}");
        }
    }
}
