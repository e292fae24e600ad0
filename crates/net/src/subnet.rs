//! IPv4 subnets in CIDR notation (`10.121.3.0/24`): parsing, containment, overlap, and the
//! addresses a network may hand out.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A subnet string that is not `A.B.C.D/N` with a network address and N in 0..=32.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// Not of the form `A.B.C.D/N`.
    #[error("invalid subnet {0:?}: expected CIDR notation such as 10.121.0.0/24")]
    Syntax(String),
    /// The prefix length is not in 0..=32.
    #[error("invalid subnet {0:?}: the prefix length must be between 0 and 32")]
    Prefix(String),
    /// Host bits are set (`10.121.0.5/24`).
    #[error("invalid subnet {given:?}: host bits are set; did you mean {network}?")]
    HostBits {
        /// What was given.
        given: String,
        /// The subnet it lies in.
        network: Subnet,
    },
}

/// An IPv4 subnet: a network address whose host bits are zero and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The subnet `addr/prefix`; host bits of `addr` are cleared. Panics if `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        assert!(prefix <= 32, "prefix length {prefix} > 32");
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address (the last one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two subnets share an address (one contains the other).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// The first address a host may have (`.1` in a /24); for /31 and /32, the first address.
    pub fn first_host(&self) -> Ipv4Addr {
        if self.prefix >= 31 {
            self.addr
        } else {
            Ipv4Addr::from(u32::from(self.addr) + 1)
        }
    }

    /// Whether `ip` is an address a host may have: in the subnet, and neither its network
    /// nor its broadcast address (for prefixes up to /30).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix >= 31 || (ip != self.addr && ip != self.broadcast()))
    }

    /// The host addresses in order, from the first to the last before broadcast.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last) = if self.prefix >= 31 {
            (u32::from(self.addr), u32::from(self.broadcast()))
        } else {
            (u32::from(self.addr) + 1, u32::from(self.broadcast()) - 1)
        };
        (first..=last).map(Ipv4Addr::from)
    }

    /// The subnets of length `prefix` inside this one, in order.
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Subnet> {
        let prefix = prefix.clamp(self.prefix, 32);
        let count: u64 = 1 << (prefix - self.prefix);
        let step: u64 = 1 << (32 - prefix);
        let base = u64::from(u32::from(self.addr));
        (0..count).map(move |i| Subnet::new(Ipv4Addr::from((base + i * step) as u32), prefix))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| SubnetError::Syntax(s.to_string()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| SubnetError::Syntax(s.to_string()))?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SubnetError::Syntax(s.to_string()));
        }
        let prefix: u8 = p.parse().map_err(|_| SubnetError::Prefix(s.to_string()))?;
        if prefix > 32 {
            return Err(SubnetError::Prefix(s.to_string()));
        }
        let net = Subnet::new(addr, prefix);
        if net.addr != addr {
            return Err(SubnetError::HostBits {
                given: s.to_string(),
                network: net,
            });
        }
        Ok(net)
    }
}

impl TryFrom<String> for Subnet {
    type Error = SubnetError;
    fn try_from(s: String) -> Result<Subnet, SubnetError> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn parse_accepts_cidr_and_rejects_the_rest() {
        assert_eq!(n("10.121.3.0/24").to_string(), "10.121.3.0/24");
        assert_eq!(n("0.0.0.0/0").prefix(), 0);
        assert!(matches!(
            "10.1.2.3".parse::<Subnet>(),
            Err(SubnetError::Syntax(_))
        ));
        assert!(matches!(
            "10.1.2/24".parse::<Subnet>(),
            Err(SubnetError::Syntax(_))
        ));
        assert!(matches!(
            "10.1.2.0/".parse::<Subnet>(),
            Err(SubnetError::Syntax(_))
        ));
        assert!(matches!(
            "10.1.2.0/33".parse::<Subnet>(),
            Err(SubnetError::Prefix(_))
        ));
        let e = "10.1.2.3/24".parse::<Subnet>().unwrap_err();
        assert!(e.to_string().contains("did you mean 10.1.2.0/24"), "{e}");
    }

    #[test]
    fn overlap_and_containment() {
        assert!(n("10.121.0.0/16").overlaps(&n("10.121.5.0/24")));
        assert!(n("10.121.5.0/24").overlaps(&n("10.121.0.0/16")));
        assert!(!n("10.121.5.0/24").overlaps(&n("10.121.6.0/24")));
        assert!(n("10.121.5.0/24").contains("10.121.5.255".parse().unwrap()));
        assert!(!n("10.121.5.0/24").contains("10.121.6.0".parse().unwrap()));
    }

    #[test]
    fn hosts_exclude_network_and_broadcast() {
        let s = n("10.121.0.0/30");
        let h: Vec<_> = s.hosts().map(|a| a.to_string()).collect();
        assert_eq!(h, ["10.121.0.1", "10.121.0.2"]);
        assert_eq!(s.broadcast().to_string(), "10.121.0.3");
        assert!(!s.is_host("10.121.0.0".parse().unwrap()));
        assert!(!s.is_host("10.121.0.3".parse().unwrap()));
        assert_eq!(
            n("10.121.0.0/16").subnets(24).nth(3),
            Some(n("10.121.3.0/24"))
        );
        assert_eq!(n("10.121.0.0/16").subnets(24).count(), 256);
    }

    #[test]
    fn serde_is_the_cidr_string() {
        let s = serde_json::to_string(&n("10.121.0.0/24")).unwrap();
        assert_eq!(s, "\"10.121.0.0/24\"");
        assert!(serde_json::from_str::<Subnet>("\"10.121.0.1/24\"").is_err());
    }
}
