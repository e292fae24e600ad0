//! Address allocation, durable, one file per network:
//! `<root>/networks/<name>/ipam.json` maps each allocated address to its owner (a container
//! or VM id), rewritten atomically under an flock on `ipam.lock`.
//!
//! Allocation is read-modify-write under the lock, so concurrent allocators (threads or
//! processes) always get distinct addresses, and an address is durably recorded before it is
//! returned: a crash between allocation and use leaves the address owned (reclaimed by
//! [`Ipam::release`] when the owner is removed), never handed out twice. Allocating again for
//! an owner that has an address returns that address, so a retried start is idempotent.
//! The network address, the gateway and the broadcast address are never handed out.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{read_json, write_json_runtime, FsError, Lock};
use crate::subnet::Subnet;

/// Errors of address allocation.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every host address of the subnet is allocated.
    #[error("no free address left in {subnet} ({allocated} allocated): disconnect a container or create a network with a larger subnet")]
    Exhausted {
        /// The subnet.
        subnet: Subnet,
        /// How many addresses are allocated.
        allocated: usize,
    },
    /// The requested address belongs to another owner.
    #[error("address {ip} is already in use by {owner}")]
    InUse {
        /// The address.
        ip: Ipv4Addr,
        /// Its owner.
        owner: String,
    },
    /// The requested address is not a host address of the subnet.
    #[error("address {ip} is not a host address of the network's subnet {subnet}")]
    Outside {
        /// The address.
        ip: Ipv4Addr,
        /// The subnet.
        subnet: Subnet,
    },
    /// The requested address is the gateway.
    #[error("address {0} is the network's gateway")]
    Gateway(Ipv4Addr),
    /// The owner already has a different address on this network.
    #[error("{owner} already has address {ip} on this network")]
    OwnerHasAddress {
        /// The owner.
        owner: String,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// Reading or writing the allocation file failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

type Result<T> = std::result::Result<T, IpamError>;

#[derive(Debug, Default, Serialize, Deserialize)]
struct IpamState {
    /// Address -> owner.
    allocations: BTreeMap<Ipv4Addr, String>,
}

/// The allocator of one network.
#[derive(Debug, Clone)]
pub struct Ipam {
    state: PathBuf,
    lock: PathBuf,
    subnet: Subnet,
    gateway: Ipv4Addr,
    /// Where [`Ipam::allocate`] picks from (the subnet when `None`).
    range: Option<Subnet>,
}

impl Ipam {
    /// The allocator whose files live in `dir` (a network's directory).
    pub fn open(dir: &Path, subnet: Subnet, gateway: Ipv4Addr) -> Ipam {
        Ipam {
            state: dir.join("ipam.json"),
            lock: dir.join("ipam.lock"),
            subnet,
            gateway,
            range: None,
        }
    }

    /// Picks new addresses only from `range` (a part of the subnet); specific addresses may
    /// still be anywhere in the subnet.
    pub fn with_range(mut self, range: Option<Subnet>) -> Ipam {
        self.range = range;
        self
    }

    fn update<T>(&self, f: impl FnOnce(&mut IpamState) -> Result<(T, bool)>) -> Result<T> {
        let _lock = Lock::exclusive(&self.lock)?;
        let mut st: IpamState = read_json(&self.state)?.unwrap_or_default();
        let (out, changed) = f(&mut st)?;
        if changed {
            write_json_runtime(&self.state, &st)?;
        }
        Ok(out)
    }

    /// Allocates the lowest free address to `owner` (or returns the one it has).
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        let (subnet, gateway, range) = (self.subnet, self.gateway, self.range);
        self.update(|st| {
            if let Some((ip, _)) = st.allocations.iter().find(|(_, o)| *o == owner) {
                return Ok((*ip, false));
            }
            let ip = subnet
                .hosts()
                .filter(|ip| range.is_none_or(|r| r.contains(*ip)))
                .find(|ip| *ip != gateway && !st.allocations.contains_key(ip))
                .ok_or(IpamError::Exhausted {
                    subnet,
                    allocated: st.allocations.len(),
                })?;
            st.allocations.insert(ip, owner.to_string());
            Ok((ip, true))
        })
    }

    /// Allocates `ip` to `owner`; fails if another owner has it or it is not assignable.
    pub fn allocate_specific(&self, owner: &str, ip: Ipv4Addr) -> Result<Ipv4Addr> {
        if !self.subnet.is_host(ip) {
            return Err(IpamError::Outside {
                ip,
                subnet: self.subnet,
            });
        }
        if ip == self.gateway {
            return Err(IpamError::Gateway(ip));
        }
        self.update(|st| {
            if let Some(o) = st.allocations.get(&ip) {
                if o == owner {
                    return Ok((ip, false));
                }
                return Err(IpamError::InUse {
                    ip,
                    owner: o.clone(),
                });
            }
            if let Some((have, _)) = st.allocations.iter().find(|(_, o)| *o == owner) {
                return Err(IpamError::OwnerHasAddress {
                    owner: owner.to_string(),
                    ip: *have,
                });
            }
            st.allocations.insert(ip, owner.to_string());
            Ok((ip, true))
        })
    }

    /// Releases `owner`'s address; returns it, or `None` if it had none (idempotent).
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>> {
        self.update(|st| {
            let ip = st
                .allocations
                .iter()
                .find(|(_, o)| *o == owner)
                .map(|(ip, _)| *ip);
            if let Some(ip) = ip {
                st.allocations.remove(&ip);
            }
            Ok((ip, ip.is_some()))
        })
    }

    /// Every allocated address and its owner.
    pub fn owners(&self) -> Result<BTreeMap<Ipv4Addr, String>> {
        let _lock = Lock::shared(&self.lock)?;
        Ok(read_json::<IpamState>(&self.state)?
            .unwrap_or_default()
            .allocations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(dir: &Path, subnet: &str) -> Ipam {
        let s: Subnet = subnet.parse().unwrap();
        Ipam::open(dir, s, s.first_host())
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn allocate_gives_lowest_free_and_skips_gateway() {
        let d = tempfile::tempdir().unwrap();
        let a = ipam(d.path(), "10.121.0.0/24");
        assert_eq!(a.allocate("c1").unwrap(), ip("10.121.0.2"));
        assert_eq!(a.allocate("c2").unwrap(), ip("10.121.0.3"));
        assert_eq!(a.allocate("c1").unwrap(), ip("10.121.0.2"), "idempotent");
        assert_eq!(a.release("c1").unwrap(), Some(ip("10.121.0.2")));
        assert_eq!(a.release("c1").unwrap(), None);
        assert_eq!(
            a.allocate("c3").unwrap(),
            ip("10.121.0.2"),
            "lowest free again"
        );
        let o = a.owners().unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[&ip("10.121.0.3")], "c2");
    }

    #[test]
    fn exhausted_subnet_says_so() {
        let d = tempfile::tempdir().unwrap();
        let a = ipam(d.path(), "10.121.0.0/29"); // .1 gateway, .2-.6 free, .7 broadcast
        for i in 0..5 {
            a.allocate(&format!("c{i}")).unwrap();
        }
        let e = a.allocate("last").unwrap_err();
        assert!(
            matches!(e, IpamError::Exhausted { allocated: 5, .. }),
            "{e}"
        );
        assert!(e
            .to_string()
            .contains("no free address left in 10.121.0.0/29"));
    }

    #[test]
    fn allocate_specific_checks_the_address() {
        let d = tempfile::tempdir().unwrap();
        let a = ipam(d.path(), "10.121.0.0/24");
        assert_eq!(
            a.allocate_specific("c1", ip("10.121.0.50")).unwrap(),
            ip("10.121.0.50")
        );
        let e = a.allocate_specific("c2", ip("10.121.0.50")).unwrap_err();
        assert!(e.to_string().contains("already in use by c1"), "{e}");
        for bad in ["10.121.0.0", "10.121.0.255", "10.121.1.5"] {
            assert!(matches!(
                a.allocate_specific("c2", ip(bad)),
                Err(IpamError::Outside { .. })
            ));
        }
        assert!(matches!(
            a.allocate_specific("c2", ip("10.121.0.1")),
            Err(IpamError::Gateway(_))
        ));
        assert!(matches!(
            a.allocate_specific("c1", ip("10.121.0.51")),
            Err(IpamError::OwnerHasAddress { .. })
        ));
        assert_eq!(a.allocate("c2").unwrap(), ip("10.121.0.2"));
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let d = tempfile::tempdir().unwrap();
        let a = ipam(d.path(), "10.121.0.0/24");
        let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..20)
                .map(|i| {
                    let a = a.clone();
                    s.spawn(move || a.allocate(&format!("owner{i}")).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut uniq = ips.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 20, "{ips:?}");
        assert_eq!(a.owners().unwrap().len(), 20);
    }
}
