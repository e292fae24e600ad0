//! Host ports shared by a group of endpoints: compose's replicas of one service publishing
//! `8080:80` together, with new connections spread over the replicas that serve.
//!
//! An endpoint connected with a port group ([`crate::Endpoint::port_group`]) publishes its
//! ports here rather than in [`crate::firewall`]'s per-endpoint maps: each (group, host
//! address, protocol, host port) is one port of [`crate::services`]' load balancer, with no
//! virtual IP, answering on that host port with a random choice among the group's endpoints
//! that are connected and not held ([`crate::Endpoint::held`]). A group whose endpoints are
//! all held answers with a TCP reset (or ICMP port unreachable), as a stopped service does.
//!
//! The rules live in table `ip corral-pub-<8 hex digits of the state root's path>`, one per
//! state root (two roots on one host keep apart, as their `corral` entries do), and are
//! recomputed from the endpoint records under the root's port lock at every change — a
//! connect, a release, a hold or a serve — and written in one nft transaction that replaces
//! the table whole (a connection already made keeps its endpoint: conntrack holds its NAT).
//! No grouped endpoint left: no table.
//!
//! The port's ownership is the group's: any endpoint of the group may publish it, no endpoint
//! outside the group can (the usual "already published" error names an owner).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::fsutil::Lock;
use crate::networks::Result;
use crate::services::{Backend, ServiceProxy, ServiceRule};
use crate::Networks;

impl Networks {
    /// The nftables table (family `ip`) of this state root's shared ports.
    pub fn shared_table(&self) -> String {
        let digest = Sha256::digest(self.store().dir().as_os_str().as_encoded_bytes());
        format!("corral-pub-{}", hex::encode(&digest[..4]))
    }

    /// The lock that orders the choice of host ports and the shared ports' rules.
    pub(crate) fn ports_lock(&self) -> Result<Lock> {
        Ok(Lock::exclusive(&self.store().dir().join(".ports.lock"))?)
    }

    /// The shared ports' rules as the endpoint records say they should be.
    fn shared_rules(&self) -> Result<Vec<ServiceRule>> {
        let mut rules: BTreeMap<String, ServiceRule> = BTreeMap::new();
        for n in self.list()? {
            for ep in self.endpoints(&n.name)? {
                let Some(group) = &ep.port_group else {
                    continue;
                };
                for m in &ep.ports {
                    let host_ip = m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    let id = format!("{group}/{host_ip}/{}/{}", m.protocol, m.host_port);
                    let rule = rules.entry(id.clone()).or_insert_with(|| ServiceRule {
                        id,
                        vip: None,
                        port: m.host_port,
                        protocol: m.protocol,
                        node_port: Some(m.host_port),
                        node_ip: m.host_ip,
                        backends: Vec::new(),
                        affinity_seconds: None,
                        keep_client: false,
                    });
                    if !ep.pending && !ep.held {
                        rule.backends.push(Backend {
                            ip: ep.ip,
                            port: m.container_port,
                        });
                    }
                }
            }
        }
        Ok(rules.into_values().collect())
    }

    /// Rewrites the shared ports' table from the endpoint records; the caller holds
    /// [`Self::ports_lock`].
    pub(crate) fn sync_shared_locked(&self) -> Result<()> {
        let rules = self.shared_rules()?;
        let mut proxy = ServiceProxy::with_table(&self.shared_table());
        if rules.is_empty() {
            proxy.remove()?;
        } else {
            proxy.sync(&rules)?;
        }
        Ok(())
    }

    /// [`Self::sync_shared_locked`] under the port lock.
    pub(crate) fn sync_shared(&self) -> Result<()> {
        let _lock = self.ports_lock()?;
        self.sync_shared_locked()
    }

    /// Holds `owner`'s grouped endpoints back from their shared ports (`held`: new
    /// connections go to the group's other endpoints) or lets them serve again. Endpoints of
    /// no group are left as they are.
    pub fn set_held(&self, owner: &str, held: bool) -> Result<()> {
        let _lock = self.ports_lock()?;
        let mut changed = false;
        for mut ep in self.endpoints_of(owner)? {
            if ep.port_group.is_none() || ep.held == held {
                continue;
            }
            ep.held = held;
            self.write_endpoint(&ep)?;
            changed = true;
        }
        if changed {
            self.sync_shared_locked()?;
        }
        Ok(())
    }
}
