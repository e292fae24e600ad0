//! corral-net: corral's virtual networks.
//!
//! Owns durable network definitions ([`store`]), address allocation ([`ipam`]), the
//! kernel's network devices through a small synchronous netlink layer ([`netlink`]), NAT,
//! isolation and published ports through nftables ([`firewall`]), and the endpoint API the
//! container and VM engines call ([`Networks::connect`], [`Networks::create_tap_endpoint`]).
//!
//! The parts: [`subnet`] (CIDR arithmetic), [`store`] (network definitions on disk), [`ipam`],
//! [`netlink`] (bridges, veth, TAP, addresses, routes), [`firewall`] (table `ip corral`),
//! [`ports`] (`-p` syntax), [`endpoint`] (what a connection records), [`dns`] (the embedded
//! DNS server of each network, which also answers DHCP: [`dhcp`]), [`attach`] (a container's namespace, endpoints, names, hosts
//! and resolv.conf), and [`Networks`], the synchronous API over them.
//! It also owns the data path of Kubernetes Services: [`services`] (table `ip corral-svc`, and
//! the [`conntrack`] entries a change of endpoints leaves stale), and
//! the host ports that a group of endpoints share (`shared`: table `ip corral-pub-*`, through the
//! same load balancer).
//!
//! Does not own: the command line, where a container's `/etc/hosts` and `/etc/resolv.conf` are
//! mounted (the engine's), which services and endpoints exist (the node agent's).
//!
//! Limits: IPv4 only; see [`firewall`] for what the rules do not cover.

#![warn(missing_docs)]

pub mod attach;
pub mod conntrack;
pub mod dhcp;
pub mod dns;
pub mod endpoint;
pub mod firewall;
pub mod fsutil;
pub mod ipam;
pub mod netlink;
mod networks;
pub mod ports;
pub mod services;
mod shared;
pub mod store;
pub mod subnet;

pub use attach::Attachment;
pub use endpoint::{ConnectOptions, Endpoint, EndpointKind};
pub use fsutil::FsError;
pub use networks::{Leftovers, NetError, Networks, Reconciled};
pub use ports::{PortMapping, PortSpec, Protocol};
pub use store::{Network, NetworkSpec};
