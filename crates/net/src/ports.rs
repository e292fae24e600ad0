//! Published ports: the parser of docker's `-p` syntax and the resolved mappings.
//!
//! Forms: `PORT` (a random free host port), `HOSTPORT:PORT`, `IP:HOSTPORT:PORT`, `IP::PORT`,
//! ranges `HOST1-HOST2:PORT1-PORT2` (same length, mapped in order), `HOST1-HOST2:PORT` (one
//! free port of the host range), each with an optional `/tcp` (the default) or `/udp`.
//! IPv4 host addresses only: corral's networks are IPv4 (the firewall table is `ip corral`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A `-p` value that does not parse; the text says what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port specification {spec:?}: {reason} (expected [IP:][HOSTPORT:]PORT[/tcp|udp], e.g. 8080:80, 127.0.0.1:8080:80/udp, 8000-8001:80-81)")]
pub struct PortSpecError {
    /// The specification given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed `-p` value, before host ports are chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address to listen on; `None` is every address.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port range (inclusive); `None` picks free ports.
    pub host_ports: Option<(u16, u16)>,
    /// The container port range (inclusive).
    pub container_ports: (u16, u16),
    /// The protocol.
    pub protocol: Protocol,
}

/// One published port: traffic to `host_ip:host_port` goes to the endpoint's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address; `None` is every address.
    pub host_ip: Option<Ipv4Addr>,
    /// The host port.
    pub host_port: u16,
    /// The port inside the endpoint.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl PortMapping {
    /// Whether the two mappings claim the same host port (same protocol and port, and the
    /// same address or either one on every address).
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
                _ => true,
            }
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

fn parse_range(
    s: &str,
    what: &str,
    err: &dyn Fn(String) -> PortSpecError,
) -> Result<(u16, u16), PortSpecError> {
    let port = |p: &str| -> Result<u16, PortSpecError> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(format!("{what} {p:?} is not a number")));
        }
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(err(format!("{what} {p} is not between 1 and 65535"))),
        }
    };
    match s.split_once('-') {
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(err(format!("{what} range {s} ends before it starts")));
            }
            Ok((a, b))
        }
    }
}

impl FromStr for PortSpec {
    type Err = PortSpecError;

    fn from_str(spec: &str) -> Result<PortSpec, PortSpecError> {
        let err = |reason: String| PortSpecError {
            spec: spec.to_string(),
            reason,
        };
        if spec.is_empty() {
            return Err(err("it is empty".into()));
        }
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((r, "tcp")) => (r, Protocol::Tcp),
            Some((r, "udp")) => (r, Protocol::Udp),
            Some((_, p)) => return Err(err(format!("protocol {p:?} is not tcp or udp"))),
            None => (spec, Protocol::Tcp),
        };
        if rest.starts_with('[') {
            return Err(err("IPv6 host addresses are not supported".into()));
        }
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match parts[..] {
            [c] => (None, None, c),
            [h, c] => (None, Some(h), c),
            [ip, h, c] => (Some(ip), Some(h), c),
            _ => return Err(err("too many ':'".into())),
        };
        let host_ip = ip
            .map(|ip| {
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| err(format!("host address {ip:?} is not an IPv4 address")))
            })
            .transpose()?;
        let container_ports = parse_range(container, "container port", &err)?;
        let host_ports = match host {
            None | Some("") => None,
            Some(h) => Some(parse_range(h, "host port", &err)?),
        };
        let len = |r: (u16, u16)| r.1 - r.0;
        if host_ports.is_none() && ip.is_none() && parts.len() == 2 {
            return Err(err("the host port is empty".into()));
        }
        if let Some(h) = host_ports {
            let single_container = container_ports.0 == container_ports.1;
            if len(h) != len(container_ports) && !single_container {
                return Err(err(format!(
                    "the host range has {} ports and the container range {}",
                    len(h) + 1,
                    len(container_ports) + 1
                )));
            }
        }
        Ok(PortSpec {
            host_ip,
            host_ports,
            container_ports,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn container_port_only() {
        let s = p("80");
        assert_eq!(s.host_ports, None);
        assert_eq!(s.container_ports, (80, 80));
        assert_eq!(s.protocol, Protocol::Tcp);
        assert_eq!(p("80-82").container_ports, (80, 82));
    }

    #[test]
    fn host_and_container_port() {
        let s = p("8080:80/udp");
        assert_eq!(s.host_ports, Some((8080, 8080)));
        assert_eq!(s.container_ports, (80, 80));
        assert_eq!(s.protocol, Protocol::Udp);
        assert_eq!(p("8080:80/tcp").protocol, Protocol::Tcp);
    }

    #[test]
    fn host_ip_forms() {
        let s = p("127.0.0.1:8080:80");
        assert_eq!(s.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(s.host_ports, Some((8080, 8080)));
        let s = p("127.0.0.1::80");
        assert_eq!(s.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(s.host_ports, None);
    }

    #[test]
    fn ranges() {
        let s = p("8000-8002:80-82");
        assert_eq!(s.host_ports, Some((8000, 8002)));
        assert_eq!(s.container_ports, (80, 82));
        let s = p("8000-8010:80");
        assert_eq!(s.host_ports, Some((8000, 8010)));
        assert_eq!(s.container_ports, (80, 80));
    }

    #[test]
    fn invalid_forms_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("abc", "\"abc\" is not a number"),
            ("0", "not between 1 and 65535"),
            ("70000", "not between 1 and 65535"),
            ("8080:80/sctp", "protocol \"sctp\""),
            ("1.2.3:8080:80", "not an IPv4 address"),
            ("[::1]:8080:80", "IPv6"),
            ("8010-8000:80", "ends before it starts"),
            (
                "8000-8002:80-81",
                "host range has 3 ports and the container range 2",
            ),
            ("1:2:3:4", "too many ':'"),
            (":80", "host port is empty"),
            ("8080:", "container port \"\""),
            ("-1:80", "not a number"),
        ] {
            let e = bad.parse::<PortSpec>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.contains("expected [IP:][HOSTPORT:]PORT"), "{e}");
        }
    }

    #[test]
    fn conflicts() {
        let m = |ip: Option<&str>, port, proto| PortMapping {
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: port,
            container_port: 80,
            protocol: proto,
        };
        let any = m(None, 8080, Protocol::Tcp);
        assert!(any.conflicts_with(&m(Some("127.0.0.1"), 8080, Protocol::Tcp)));
        assert!(!any.conflicts_with(&m(None, 8080, Protocol::Udp)));
        assert!(!any.conflicts_with(&m(None, 8081, Protocol::Tcp)));
        assert!(!m(Some("127.0.0.1"), 1, Protocol::Tcp).conflicts_with(&m(
            Some("127.0.0.2"),
            1,
            Protocol::Tcp
        )));
        assert_eq!(
            m(Some("127.0.0.1"), 8080, Protocol::Udp).to_string(),
            "127.0.0.1:8080->80/udp"
        );
    }
}
