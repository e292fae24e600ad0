//! Attaching a container to its networks, the part the engine calls around a start: a network
//! namespace of its own held by a descriptor ([`new_netns`]), one endpoint per network with
//! `eth0`, `eth1` ... ([`Networks::attach_container`]), its name and aliases in each network's DNS
//! server (started on first use, one process per network: [`Networks::ensure_dns`]), the
//! contents of its `/etc/hosts` and `/etc/resolv.conf` ([`hosts_file`], [`resolv_conf`]),
//! and the way back ([`Networks::release`]).
//!
//! The namespace is made on a short-lived thread (`unshare(CLONE_NEWNET)` changes only the
//! calling thread, so this is safe in a multi-threaded caller) and lives as long as a
//! descriptor of it is open: the container's monitor holds it, so it survives restarts of the
//! container's process and goes away, with the veth pair in it, when the container stops.

use std::io::{self, BufRead};
use std::net::Ipv4Addr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dns::{self, Record};
use crate::fsutil::{process_start as start_time, read_json, write_json_runtime, FsError, Lock};
use crate::networks::NetError;
use crate::ports::PortSpec;
use crate::store::DEFAULT_NETWORK;
use crate::{ConnectOptions, Endpoint, Networks};

/// Makes a new network namespace and returns a descriptor that keeps it alive.
pub fn new_netns() -> io::Result<OwnedFd> {
    std::thread::spawn(|| -> io::Result<OwnedFd> {
        // SAFETY: CLONE_FILES is not among the flags; the new namespace belongs to this
        // thread only, which ends right after.
        #[allow(unsafe_code)]
        unsafe {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)?
        };
        Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// One network a container joins (kept in the container's directory between `create` and
/// `start`: [`save_requests`], [`load_requests`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// Its DNS aliases there.
    pub aliases: Vec<String>,
    /// Ports to publish through it.
    pub ports: Vec<PortSpec>,
    /// A fixed address there (`--ip`); `None`: the lowest free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// A fixed MAC address there (`--mac-address`); `None`: derived from the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
    /// The group it shares its published host ports with ([`crate::Endpoint::port_group`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_group: Option<String>,
}

/// The file in a container's directory that lists the networks it asked for.
pub const REQUESTS: &str = "networks.json";

/// Records in a container's directory the networks it is to join.
pub fn save_requests(container_dir: &Path, to: &[Attachment]) -> Result<(), NetError> {
    Ok(write_json_runtime(&container_dir.join(REQUESTS), &to)?)
}

/// The networks a container is to join; empty when it joins none of corral's networks.
pub fn load_requests(container_dir: &Path) -> Result<Vec<Attachment>, NetError> {
    Ok(read_json(&container_dir.join(REQUESTS))?.unwrap_or_default())
}

/// The pid of a network's DNS server process and its start time, to recognize it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct DnsPid {
    pid: i32,
    start: u64,
}

const DNS_PID: &str = "dns.pid";

/// Records the calling process as the DNS server of the network in `network_dir`. The server
/// does it itself once it listens, before it says so: a command killed between starting it and
/// hearing back leaves a server that the next one finds (and `network rm` stops) rather than
/// an orphan that holds port 53 of the gateway.
pub(crate) fn record_dns_server(network_dir: &Path) -> Result<(), FsError> {
    let pid = std::process::id() as i32;
    let start = start_time(pid).unwrap_or_default();
    write_json_runtime(&network_dir.join(DNS_PID), &DnsPid { pid, start })
}

impl Networks {
    /// Connects `owner` (a container named `name`) to each network of `to` inside `netns`:
    /// interfaces `eth<first>`, `eth<first+1>` ... in that order (`first` is 0 at a start, the
    /// number of interfaces it has for `network connect`), its name (and aliases) in each network's
    /// DNS, whose server is started with `exe __dns` if it is not running. The default
    /// network is created on first use. All or nothing.
    pub fn attach_container(
        &self,
        owner: &str,
        name: &str,
        netns: BorrowedFd<'_>,
        to: &[Attachment],
        first: usize,
        exe: &Path,
    ) -> Result<Vec<Endpoint>, NetError> {
        self.attach_container_with(owner, name, netns, to, first, exe, true)
    }

    /// [`Networks::attach_container`], with its DNS names left out when `!register_dns` (a
    /// replica that gets traffic only once it is healthy: [`Networks::register_names`]).
    #[allow(clippy::too_many_arguments)]
    pub fn attach_container_with(
        &self,
        owner: &str,
        name: &str,
        netns: BorrowedFd<'_>,
        to: &[Attachment],
        first: usize,
        exe: &Path,
        register_dns: bool,
    ) -> Result<Vec<Endpoint>, NetError> {
        let mut done: Vec<Endpoint> = Vec::new();
        let result = (|| {
            for (i, a) in to.iter().enumerate() {
                let i = first + i;
                let n = if a.network == DEFAULT_NETWORK {
                    self.ensure_default()?
                } else {
                    let n = self.get(&a.network)?;
                    self.ensure_up(&n)?;
                    n
                };
                let opts = ConnectOptions {
                    container_name: Some(name.to_owned()),
                    ifname: format!("eth{i}"),
                    aliases: a.aliases.clone(),
                    ports: a.ports.clone(),
                    ip: a.ip,
                    mac: a.mac,
                    port_group: a.port_group.clone(),
                    // Held with its names: a replica takes no traffic until it serves.
                    held: !register_dns,
                };
                let ep = self.connect(&n.name, owner, netns, &opts)?;
                done.push(ep.clone());
                if n.disable_dns || !register_dns {
                    continue;
                }
                self.register(&n.name, owner, name, &a.aliases, &ep, exe)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(done),
            Err(e) => {
                for ep in &done {
                    let _ = self.release_one(&ep.network, owner, name, true);
                }
                Err(e)
            }
        }
    }

    /// Attaches a VM: a TAP device on network `network` with an address from its allocator,
    /// the VM's name (and aliases) in the network's DNS, the DNS server started if need be,
    /// and the ports of `opts` published to the VM's address (`opts.ip` and `opts.mac` keep a
    /// migrating VM's identity). The VM engine hands the TAP to QEMU and the address to the
    /// guest.
    pub fn attach_vm(
        &self,
        owner: &str,
        name: &str,
        network: &str,
        opts: ConnectOptions,
        exe: &Path,
    ) -> Result<Endpoint, NetError> {
        let n = if network == DEFAULT_NETWORK {
            self.ensure_default()?
        } else {
            let n = self.get(network)?;
            self.ensure_up(&n)?;
            n
        };
        let opts = ConnectOptions {
            container_name: Some(name.to_owned()),
            ..opts
        };
        let aliases = opts.aliases.clone();
        let ep = self.create_tap_endpoint(&n.name, owner, None, &opts)?;
        if n.disable_dns {
            return Ok(ep);
        }
        let dir = self.store().network_dir(&n.name);
        let named = dns::add_record(
            &dir,
            Record {
                name: name.to_owned(),
                aliases,
                ipv4: ep.ip,
            },
        )
        .map_err(|e| NetError::Dns(n.name.clone(), e))
        .and_then(|()| self.ensure_dns(&n.name, ep.gateway, exe));
        if let Err(e) = named {
            let _ = self.release_one(&n.name, owner, name, true);
            return Err(e);
        }
        Ok(ep)
    }

    /// `owner`'s endpoints on every network, in interface order.
    pub fn endpoints_of(&self, owner: &str) -> Result<Vec<Endpoint>, NetError> {
        let mut out = Vec::new();
        for n in self.list()? {
            if let Some(ep) = self.endpoint(&n.name, owner)? {
                out.push(ep);
            }
        }
        by_interface(&mut out);
        Ok(out)
    }

    /// Every owner's endpoints ([`Self::endpoints_of`] for all owners at once: one read of
    /// each network, for listings).
    pub fn endpoints_by_owner(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<Endpoint>>, NetError> {
        let mut out: std::collections::HashMap<String, Vec<Endpoint>> = Default::default();
        for n in self.list()? {
            for ep in self.endpoints(&n.name)? {
                out.entry(ep.owner.clone()).or_default().push(ep);
            }
        }
        for eps in out.values_mut() {
            by_interface(eps);
        }
        Ok(out)
    }

    /// Puts `owner`'s names (its container name, the aliases of `reqs`, its short id) into
    /// the DNS of each network it is connected to, as a connect does, and lets it take
    /// connections on the host ports its group shares ([`Networks::set_held`]).
    pub fn register_names(
        &self,
        owner: &str,
        name: &str,
        reqs: &[Attachment],
        exe: &Path,
    ) -> Result<(), NetError> {
        for a in reqs {
            let net = if a.network == DEFAULT_NETWORK {
                DEFAULT_NETWORK.to_owned()
            } else {
                a.network.clone()
            };
            let Some(ep) = self.endpoint(&net, owner)? else {
                continue;
            };
            let n = self.get(&ep.network)?;
            if n.disable_dns {
                continue;
            }
            self.register(&n.name, owner, name, &a.aliases, &ep, exe)?;
        }
        self.set_held(owner, false)
    }

    /// Puts `name`, `aliases` and `owner`'s short id for endpoint `ep` into network
    /// `network`'s DNS, and makes sure its server runs.
    fn register(
        &self,
        network: &str,
        owner: &str,
        name: &str,
        aliases: &[String],
        ep: &Endpoint,
        exe: &Path,
    ) -> Result<(), NetError> {
        let dir = self.store().network_dir(network);
        let mut aliases = aliases.to_vec();
        if owner.len() >= 12 {
            aliases.push(owner[..12].to_owned());
        }
        dns::add_record(
            &dir,
            Record {
                name: name.to_owned(),
                aliases,
                ipv4: ep.ip,
            },
        )
        .map_err(|e| NetError::Dns(network.to_owned(), e))?;
        self.ensure_dns(network, ep.gateway, exe)
    }

    /// Takes every DNS name of `owner`'s addresses out of its networks' DNS and holds it back
    /// from the host ports its group shares, leaving it connected: new lookups and new
    /// connections stop finding it while what it serves finishes (a rolling update drains a
    /// replica so).
    pub fn withdraw_names(&self, owner: &str) -> Result<(), NetError> {
        self.set_held(owner, true)?;
        for ep in self.endpoints_of(owner)? {
            let dir = self.store().network_dir(&ep.network);
            let records =
                dns::read_records(&dir).map_err(|e| NetError::Dns(ep.network.clone(), e))?;
            let kept: Vec<Record> = records
                .iter()
                .filter(|r| r.ipv4 != ep.ip)
                .cloned()
                .collect();
            if kept.len() != records.len() {
                dns::write_records(&dir, &kept)
                    .map_err(|e| NetError::Dns(ep.network.clone(), e))?;
            }
        }
        Ok(())
    }

    /// Disconnects `owner` (named `name`) from network `network` and takes its name out of the
    /// network's DNS. `running`: its network namespace lives on (else its devices are left to
    /// go with it, see [`Networks::forget`]).
    pub fn release_one(
        &self,
        network: &str,
        owner: &str,
        name: &str,
        running: bool,
    ) -> Result<(), NetError> {
        let dir = self.store().network_dir(network);
        // Only the record of this endpoint's address: a record of the same name for another
        // address is another container's, which took the name since (after a crash).
        if let Some(ep) = self.endpoint(network, owner)? {
            dns::remove_record_at(&dir, name, ep.ip)
                .map_err(|e| NetError::Dns(network.to_owned(), e))?;
        }
        if running {
            self.disconnect(network, owner)?;
        } else {
            self.forget(network, owner)?;
        }
        Ok(())
    }

    /// Reserves address `ip` of network `network` for `owner` before it connects (a VM's
    /// `--ip`, from its creation): refused if another owner has it or the network cannot give
    /// it. The owner's connects take it; `release` frees it.
    pub fn reserve(&self, network: &str, owner: &str, ip: Ipv4Addr) -> Result<(), NetError> {
        let n = if network == DEFAULT_NETWORK {
            self.ensure_default()?
        } else {
            self.get(network)?
        };
        self.ipam(&n)
            .allocate_specific(owner, ip)
            .map(|_| ())
            .map_err(|err| NetError::Ipam {
                network: n.name.clone(),
                err,
            })
    }

    /// A stopped VM's endpoints taken down — devices, published ports, DNS names — with its
    /// addresses kept allocated to it: it gets them (and the MACs derived from them) again at
    /// its next start, whoever started meanwhile, as Proxmox's and Incus's VMs do. `release`
    /// at its removal frees them.
    pub fn release_keeping_addresses(&self, owner: &str) -> Result<(), NetError> {
        let mut first = None;
        for ep in self.endpoints_of(owner)? {
            let name = ep.container_name.clone().unwrap_or_default();
            let dir = self.store().network_dir(&ep.network);
            if let Err(e) = dns::remove_record_at(&dir, &name, ep.ip)
                .map_err(|e| NetError::Dns(ep.network.clone(), e))
                .and_then(|_| {
                    self.disconnect_keeping_address(&ep.network, owner)
                        .map(|_| ())
                })
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Disconnects `owner`, whose container ended, from every network it is on, and frees
    /// the addresses it holds without an endpoint (a connect killed between allocating the
    /// address and recording the endpoint). Goes on past errors and returns the first.
    pub fn release(&self, owner: &str) -> Result<(), NetError> {
        let mut first = None;
        for ep in self.endpoints_of(owner)? {
            let name = ep.container_name.clone().unwrap_or_default();
            if let Err(e) = self.release_one(&ep.network, owner, &name, false) {
                first.get_or_insert(e);
            }
        }
        for n in self.list()? {
            let owns = match self.ipam(&n).owners() {
                Ok(o) => o.values().any(|o| o == owner),
                Err(err) => {
                    first.get_or_insert(NetError::Ipam {
                        network: n.name.clone(),
                        err,
                    });
                    continue;
                }
            };
            if owns {
                tracing::info!(network = %n.name, owner, "freeing an address a crashed connect left");
                if let Err(e) = self.forget(&n.name, owner) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Starts network `network`'s DNS server (`exe __dns NETWORK_DIR GATEWAY`, detached) unless
    /// it runs, and waits until it listens.
    pub fn ensure_dns(&self, network: &str, gateway: Ipv4Addr, exe: &Path) -> Result<(), NetError> {
        let dir = self.store().network_dir(network);
        let _lock = Lock::exclusive(&dir.join("dns-server.lock"))?;
        let pidfile = dir.join(DNS_PID);
        if let Some(p) = read_json::<DnsPid>(&pidfile)? {
            if start_time(p.pid) == Some(p.start) {
                return Ok(());
            }
        }
        let mut child = Command::new(exe)
            .arg("__dns")
            .arg(&dir)
            .arg(gateway.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| NetError::DnsServer(network.to_owned(), e.to_string()))?;
        let pid = child.id() as i32;
        // It prints one line once bound, or exits with the reason on failure.
        let mut line = String::new();
        let out = child.stdout.take().expect("piped");
        let read = std::thread::spawn(move || {
            let _ = io::BufReader::new(out).read_line(&mut line);
            line
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !read.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let line = if read.is_finished() {
            read.join().unwrap_or_default()
        } else {
            String::new()
        };
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            let why = if line.trim().is_empty() {
                "it did not come up".to_owned()
            } else {
                line.trim().to_owned()
            };
            return Err(NetError::DnsServer(network.to_owned(), why));
        }
        // The server recorded itself before it said ready; an older one may not have.
        if read_json::<DnsPid>(&pidfile)?.is_none_or(|p| p.pid != pid) {
            let start = start_time(pid).unwrap_or_default();
            write_json_runtime(&pidfile, &DnsPid { pid, start })?;
        }
        // Reaped by init once we are gone; it outlives this process on purpose.
        std::mem::forget(child);
        Ok(())
    }

    /// Stops network `network`'s DNS server, if it runs.
    pub fn stop_dns(&self, network: &str) {
        let dir = self.store().network_dir(network);
        if let Ok(Some(p)) = read_json::<DnsPid>(&dir.join(DNS_PID)) {
            if start_time(p.pid) == Some(p.start) {
                if let Some(pid) = rustix::process::Pid::from_raw(p.pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                    // Gone before the network's address goes, so that nothing listens on it.
                    for _ in 0..200 {
                        if start_time(p.pid) != Some(p.start) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        let _ = std::fs::remove_file(dir.join(DNS_PID));
    }
}

/// `/etc/hosts` of a container: localhost, then its address on each network with its hostname
/// and name.
pub fn hosts_file(hostname: &str, name: &str, endpoints: &[Endpoint]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ep in endpoints {
        let mut names = vec![hostname];
        if name != hostname {
            names.push(name);
        }
        s.push_str(&format!("{}\t{}\n", ep.ip, names.join(" ")));
    }
    s
}

/// `/etc/resolv.conf` of a container: the DNS server of its first network (its gateway), or
/// the host's resolvers when that network has none (`--disable-dns`); `None` when it has no
/// network.
pub fn resolv_conf(endpoints: &[Endpoint]) -> Option<String> {
    let first = endpoints.first()?;
    if first.dns_disabled {
        let mut s = format!(
            "# written by corral: network {} has no DNS server, these are the host's resolvers\n",
            first.network
        );
        for ns in nameservers(first) {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        return Some(s);
    }
    Some(format!(
        "# written by corral: the DNS server of network {}\nnameserver {}\noptions ndots:0\n",
        first.network, first.dns_server
    ))
}

/// The resolvers a member of an endpoint's network asks: the network's DNS server, or on a
/// network without one the host's (those a container can reach: not loopback), else docker's
/// fallback of Google's public resolvers.
pub fn nameservers(ep: &Endpoint) -> Vec<std::net::IpAddr> {
    if !ep.dns_disabled {
        return vec![ep.dns_server.into()];
    }
    let host: Vec<std::net::IpAddr> = dns::host_upstreams()
        .into_iter()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback())
        .collect();
    if host.is_empty() {
        vec![[8, 8, 8, 8].into(), [8, 8, 4, 4].into()]
    } else {
        host
    }
}

/// Sorts an owner's endpoints by interface: `eth0`, `eth1` ..., then the rest.
fn by_interface(eps: &mut [Endpoint]) {
    eps.sort_by_key(|e| {
        e.ifname
            .as_deref()
            .and_then(|i| i.strip_prefix("eth"))
            .and_then(|i| i.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_is_new_and_outlives_its_thread() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED netns_is_new_and_outlives_its_thread: needs root");
            return;
        }
        let fd = new_netns().unwrap();
        let mine = std::fs::metadata("/proc/self/ns/net").unwrap();
        let new = rustix::fs::fstat(&fd).unwrap();
        assert_ne!(std::os::unix::fs::MetadataExt::ino(&mine), new.st_ino);
    }
}
