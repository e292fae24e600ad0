//! The API the engines call: networks with their kernel objects, and endpoints.
//!
//! [`Networks::connect`] is the container start path and costs a few hundred microseconds
//! without published ports: state files, one netlink socket on the host and one inside the
//! container's namespace, no process. Publishing ports adds one nft run (milliseconds).
//! Every multi-step operation is all-or-nothing: a failure undoes the steps done, in reverse.
//!
//! A crash cannot run the undo; instead, every resource is recorded with its owner before it
//! is made (the address in the allocator, then the endpoint record, marked pending until its
//! device and ports exist), so what a crashed command left is found by owner:
//! [`Networks::release`] frees everything of one owner, [`Networks::reconcile`] everything of
//! the owners a caller says are gone.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use crate::endpoint::{
    format_mac, host_ifname, mac_for, valid_owner, ConnectOptions, Endpoint, EndpointKind,
};
use crate::firewall::{resolve_ports, Firewall, FirewallError};
use crate::fsutil::{io_err, read_json, write_json_runtime, FsError, Lock};
use crate::ipam::{Ipam, IpamError};
use crate::netlink::{Netlink, NetlinkError};

/// The lock that makes picking a subnet and making its bridge one step across the host.
const HOST_LOCK: &str = "/run/lock/corral-networks.lock";
use crate::ports::PortMapping;
use crate::store::{Network, NetworkSpec, NetworkStore, StoreError, DEFAULT_NETWORK};

/// Errors of network and endpoint operations.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A state or validation error of the network store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--parent` names an interface this host does not have.
    #[error("the parent interface {0} does not exist on this host (see `ip link`)")]
    ParentMissing(String),
    /// An address allocation error.
    #[error("network {network}")]
    Ipam {
        /// The network.
        network: String,
        /// The cause.
        #[source]
        err: IpamError,
    },
    /// A kernel device operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// A firewall or port publishing error.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// A state file error.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The network has endpoints.
    #[error("network {network:?} is in use by {}: disconnect or remove them first, or force", users.join(", "))]
    InUse {
        /// The network.
        network: String,
        /// The containers' or VMs' names (or ids).
        users: Vec<String>,
    },
    /// The owner is already connected to the network.
    #[error("{owner} is already connected to network {network:?}")]
    AlreadyConnected {
        /// The owner.
        owner: String,
        /// The network.
        network: String,
    },
    /// The owner id cannot name a file.
    #[error("invalid endpoint owner id {0:?}: use letters, digits, '_', '.' and '-'")]
    InvalidOwner(String),
    /// The network's DNS records could not be updated.
    #[error("the DNS records of network {0:?}")]
    Dns(String, #[source] crate::dns::DnsError),
    /// The network's DNS server did not start.
    #[error("the DNS server of network {0:?} did not start: {1}")]
    DnsServer(String, String),
    /// Ports cannot be published on an internal network.
    #[error("cannot publish ports on internal network {0:?}: it has no route to the outside")]
    InternalPorts(String),
}

pub(crate) type Result<T> = std::result::Result<T, NetError>;

/// A kernel object corral made that no state of this root accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Interfaces named `crl*` that are neither a network's bridge nor an endpoint's device.
    pub links: Vec<String>,
    /// Firewall objects (chains, set and map elements) of no network or endpoint.
    pub firewall: Vec<String>,
}

impl Leftovers {
    /// Whether nothing is left over.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.firewall.is_empty()
    }
}

/// What [`Networks::reconcile`] freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// The endpoints removed: network and owner.
    pub endpoints: Vec<(String, String)>,
    /// The addresses freed that had no endpoint: network, address and owner.
    pub addresses: Vec<(String, Ipv4Addr, String)>,
}

impl Reconciled {
    /// Whether nothing was freed.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.addresses.is_empty()
    }
}

/// corral's networks under one state root, with their bridges, firewall rules and endpoints.
#[derive(Debug, Clone)]
pub struct Networks {
    store: NetworkStore,
    firewall: Firewall,
}

/// Steps of a connect done so far, undone in reverse on failure.
struct Undo<'a> {
    ipam: Option<(&'a Ipam, &'a str)>,
    record: Option<PathBuf>,
    link: Option<String>,
    ports: Option<(Ipv4Addr, Vec<PortMapping>)>,
    /// The shared ports' rules were rewritten with this endpoint in.
    shared: Option<&'a Networks>,
    firewall: &'a Firewall,
}

impl Undo<'_> {
    fn run(self) {
        if let Some((ip, ports)) = self.ports {
            if let Err(e) = self.firewall.remove_endpoint_rules(ip, &ports) {
                tracing::warn!(error = %e, "undo: removing published ports");
            }
        }
        if let Some(link) = self.link {
            if let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link(&link)) {
                tracing::warn!(error = %e, "undo: deleting {link}");
            }
        }
        if let Some(record) = self.record {
            if let Err(e) = fs::remove_file(&record) {
                tracing::warn!(error = %e, "undo: removing {}", record.display());
            }
        }
        if let Some(nets) = self.shared {
            if let Err(e) = nets.sync_shared() {
                tracing::warn!(error = %e, "undo: rewriting the shared ports");
            }
        }
        if let Some((ipam, owner)) = self.ipam {
            if let Err(e) = ipam.release(owner) {
                tracing::warn!(error = %e, "undo: releasing the address of {owner}");
            }
        }
    }
}

impl Networks {
    /// The networks under `root` (CORRAL_ROOT), with the host's firewall.
    pub fn open(root: &Path) -> Networks {
        Networks::with_firewall(root, Firewall::new())
    }

    /// The networks under `root`, with a given firewall driver.
    pub fn with_firewall(root: &Path, firewall: Firewall) -> Networks {
        Networks {
            store: NetworkStore::open(root),
            firewall,
        }
    }

    /// The state store.
    pub fn store(&self) -> &NetworkStore {
        &self.store
    }

    /// The firewall.
    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    /// The network called `name`.
    pub fn get(&self, name: &str) -> Result<Network> {
        Ok(self.store.get(name)?)
    }

    /// Every network.
    pub fn list(&self) -> Result<Vec<Network>> {
        Ok(self.store.list()?)
    }

    /// Creates a network: its definition (checked against the other networks and the host's
    /// routes), its bridge and its firewall rules. Undone entirely on failure.
    pub fn create(&self, spec: &NetworkSpec) -> Result<Network> {
        // Host-wide, not per state root: the subnet is picked from the host's routes, and two
        // creations (two roots, or two processes) must not both pick a subnet before either
        // bridge holds it.
        let _host = Lock::exclusive(Path::new(HOST_LOCK))?;
        let mut nl = Netlink::open()?;
        if let (_, Some(b)) = crate::store::parse_options(&spec.options)? {
            // corral touches only devices it made: a name the host already uses is refused,
            // never adopted (the network's removal would delete it).
            if nl.link(&b)?.is_some() {
                return Err(StoreError::BadOption(format!(
                    "com.docker.network.bridge.name={b}: a device of that name exists on this host; pick another name"
                ))
                .into());
            }
        }
        let routes = nl.routes()?;
        let n = self.store.create(spec, &routes)?;
        if let Err(e) = self.setup(&n) {
            self.teardown(&n);
            let _lock = self.store.lock();
            let _ = self.store.remove_state(&n.name);
            return Err(e);
        }
        Ok(n)
    }

    /// Creates the default network `corral` (10.120.0.0/16, bridge `crl-br-default`) unless
    /// it exists, and makes sure its bridge and rules are in place.
    pub fn ensure_default(&self) -> Result<Network> {
        if let Ok(n) = self.store.get(DEFAULT_NETWORK) {
            // The usual case, on every start: no need for the host's routes.
            self.ensure_up(&n)?;
            return Ok(n);
        }
        let routes = Netlink::open()?.routes()?;
        let n = self.store.ensure_default(&routes)?;
        self.ensure_up(&n)?;
        Ok(n)
    }

    /// Makes sure the network's bridge exists and is up (after a reboot it does not); when it
    /// has to be created, the firewall rules are installed again too. One netlink request
    /// when everything is in place.
    pub fn ensure_up(&self, n: &Network) -> Result<u32> {
        let mut nl = Netlink::open()?;
        match nl.link(&n.bridge)? {
            Some(l) if l.up && l.kind.as_deref() == Some("bridge") => Ok(l.index),
            _ => self.setup_with(&mut nl, n),
        }
    }

    fn setup(&self, n: &Network) -> Result<u32> {
        self.setup_with(&mut Netlink::open()?, n)
    }

    fn setup_with(&self, nl: &mut Netlink, n: &Network) -> Result<u32> {
        let index = nl.create_bridge(&n.bridge, n.gateway, n.subnet.prefix(), n.mtu)?;
        if let Some(parent) = &n.parent {
            // The host interface becomes a port of the bridge: the network reaches its LAN.
            let link = nl
                .link(parent)?
                .ok_or_else(|| NetError::ParentMissing(parent.clone()))?;
            nl.set_master_up(link.index, index)?;
        }
        self.firewall.setup_network(n)?;
        Ok(index)
    }

    /// Best effort removal of a network's kernel objects.
    fn teardown(&self, n: &Network) {
        if let Err(e) = self.firewall.remove_network_rules(n) {
            tracing::warn!(network = %n.name, error = %e, "removing firewall rules");
        }
        if let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link(&n.bridge)) {
            tracing::warn!(network = %n.name, error = %e, "deleting the bridge");
        }
    }

    /// The network's address allocator.
    pub fn ipam(&self, n: &Network) -> Ipam {
        Ipam::open(&self.store.network_dir(&n.name), n.subnet, n.gateway).with_range(n.ip_range)
    }

    /// Rewrites an endpoint's record.
    pub(crate) fn write_endpoint(&self, ep: &Endpoint) -> Result<()> {
        Ok(write_json_runtime(
            &self.endpoint_path(&ep.network, &ep.owner),
            ep,
        )?)
    }

    fn endpoint_path(&self, network: &str, owner: &str) -> PathBuf {
        self.store
            .network_dir(network)
            .join("endpoints")
            .join(format!("{owner}.json"))
    }

    /// The endpoints of network `name` (pending ones too). Sweeps the temporary files that
    /// crashed writers left in the network's directory.
    pub fn endpoints(&self, name: &str) -> Result<Vec<Endpoint>> {
        crate::fsutil::sweep(&self.store.network_dir(name));
        crate::fsutil::sweep(&self.store.network_dir(name).join("endpoints"));
        let dir = self.store.network_dir(name).join("endpoints");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read directory", &dir)(e).into()),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(io_err("read directory", &dir))?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Some(ep) = read_json::<Endpoint>(&p)? {
                    out.push(ep);
                }
            }
        }
        out.sort_by(|a, b| a.owner.cmp(&b.owner));
        Ok(out)
    }

    /// `owner`'s endpoint on network `name`, if connected.
    pub fn endpoint(&self, name: &str, owner: &str) -> Result<Option<Endpoint>> {
        if !valid_owner(owner) {
            return Err(NetError::InvalidOwner(owner.to_string()));
        }
        Ok(read_json(&self.endpoint_path(name, owner))?)
    }

    /// Every published port of every endpoint of every network, with its owner's name.
    pub fn published_ports(&self) -> Result<Vec<(String, PortMapping)>> {
        self.published_ports_outside(None)
    }

    /// [`Self::published_ports`] but those of the endpoints of port group `group`, which the
    /// group's next endpoint may share.
    fn published_ports_outside(&self, group: Option<&str>) -> Result<Vec<(String, PortMapping)>> {
        let mut out = Vec::new();
        for n in self.store.list()? {
            for ep in self.endpoints(&n.name)? {
                if group.is_some() && ep.port_group.as_deref() == group {
                    continue;
                }
                let who = ep
                    .container_name
                    .clone()
                    .unwrap_or_else(|| ep.owner.clone());
                out.extend(ep.ports.iter().map(|p| (who.clone(), *p)));
            }
        }
        Ok(out)
    }

    /// Removes network `name`: refuses while endpoints or allocated addresses remain
    /// ([`NetError::InUse`] names them) unless `force`, which disconnects them first.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let _global = self.store.lock()?;
        let n = self.store.get(name)?;
        let _lock = self.store.network_lock(name, true)?;
        let endpoints = self.endpoints(name)?;
        let owners = self.ipam(&n).owners().map_err(|err| NetError::Ipam {
            network: name.to_string(),
            err,
        })?;
        if !force && (!endpoints.is_empty() || !owners.is_empty()) {
            let mut users: BTreeSet<String> = endpoints
                .iter()
                .map(|e| e.container_name.clone().unwrap_or_else(|| e.owner.clone()))
                .collect();
            users.extend(
                owners
                    .values()
                    .filter(|o| !endpoints.iter().any(|e| &e.owner == *o))
                    .cloned(),
            );
            return Err(NetError::InUse {
                network: name.to_string(),
                users: users.into_iter().collect(),
            });
        }
        for ep in &endpoints {
            self.undo_endpoint(&n, ep, false)?;
        }
        self.stop_dns(name);
        self.firewall.remove_network_rules(&n)?;
        Netlink::open()?.delete_link(&n.bridge)?;
        self.store.remove_state(name)?;
        tracing::info!(network = %name, "network removed");
        Ok(())
    }

    fn check_owner(owner: &str) -> Result<()> {
        if valid_owner(owner) {
            Ok(())
        } else {
            Err(NetError::InvalidOwner(owner.to_string()))
        }
    }

    /// Connects a container to network `network`: allocates its address, creates the veth
    /// pair (host end on the bridge, peer `opts.ifname` in the namespace `netns`), configures
    /// the address, `lo`, and the default route (not on internal networks) inside, publishes
    /// `opts.ports` and records the endpoint. All or nothing.
    pub fn connect(
        &self,
        network: &str,
        owner: &str,
        netns: BorrowedFd<'_>,
        opts: &ConnectOptions,
    ) -> Result<Endpoint> {
        self.attach(network, owner, Some(netns), None, opts)
    }

    /// Creates a TAP endpoint for a VM on network `network`: a persistent TAP device (named
    /// `tap`, or `crlt` + a hash) on the bridge, for QEMU's `-netdev tap,ifname=...`,
    /// `script=no`, `vnet_hdr=on`. The guest configures [`Endpoint::ip`] itself (the agent
    /// or cloud-init), with [`Endpoint::mac`] on its NIC.
    pub fn create_tap_endpoint(
        &self,
        network: &str,
        owner: &str,
        tap: Option<&str>,
        opts: &ConnectOptions,
    ) -> Result<Endpoint> {
        self.attach(network, owner, None, tap, opts)
    }

    fn attach(
        &self,
        network: &str,
        owner: &str,
        netns: Option<BorrowedFd<'_>>,
        tap: Option<&str>,
        opts: &ConnectOptions,
    ) -> Result<Endpoint> {
        Self::check_owner(owner)?;
        let n = self.store.get(network)?;
        let _lock = self.store.network_lock(network, false)?;
        // The network may have been removed between the read and the lock.
        let n = match self.store.get(network) {
            Ok(again) if again.id == n.id => again,
            _ => return Err(StoreError::NotFound(network.to_string()).into()),
        };
        let path = self.endpoint_path(network, owner);
        if let Some(old) = read_json::<Endpoint>(&path)? {
            if !old.pending {
                return Err(NetError::AlreadyConnected {
                    owner: owner.to_string(),
                    network: network.to_string(),
                });
            }
            // A connection of this owner that crashed midway: undo what it made first.
            tracing::info!(
                network,
                owner,
                "undoing a connection that a crashed command left"
            );
            self.undo_endpoint(&n, &old, true)?;
        }
        if n.internal && !opts.ports.is_empty() {
            return Err(NetError::InternalPorts(network.to_string()));
        }
        let kind = if netns.is_some() {
            EndpointKind::Veth
        } else {
            EndpointKind::Tap
        };
        let host = match tap {
            Some(t) => t.to_string(),
            None => host_ifname(kind, &n.id, owner),
        };
        crate::netlink::check_ifname(&host)?;
        let bridge = self.ensure_up(&n)?;
        let ipam = self.ipam(&n);
        let mut undo = Undo {
            ipam: None,
            record: None,
            link: None,
            ports: None,
            shared: None,
            firewall: &self.firewall,
        };
        let ipam_err = |err| NetError::Ipam {
            network: network.to_string(),
            err,
        };
        let result = (|| -> Result<Endpoint> {
            // Host ports are chosen and recorded under one lock so two endpoints cannot both
            // take one.
            let ports_lock = if opts.ports.is_empty() {
                None
            } else {
                Some(self.ports_lock()?)
            };
            let ports = if opts.ports.is_empty() {
                Vec::new()
            } else {
                resolve_ports(
                    &opts.ports,
                    &self.published_ports_outside(opts.port_group.as_deref())?,
                )?
            };
            // An address the owner kept while it was stopped (a VM's, see
            // `release_keeping_addresses`) is taken again, and stays its own if this fails.
            let kept = ipam
                .owners()
                .map_err(ipam_err)?
                .into_iter()
                .find(|(_, o)| o == owner)
                .map(|(ip, _)| ip);
            let ip = match (opts.ip, kept) {
                (Some(ip), Some(k)) if ip != k => {
                    // Asked for another one (a snapshot's or a migrated guest's): that one.
                    ipam.release(owner).map_err(ipam_err)?;
                    ipam.allocate_specific(owner, ip)
                }
                (Some(ip), _) => ipam.allocate_specific(owner, ip),
                (None, _) => ipam.allocate(owner),
            }
            .map_err(ipam_err)?;
            if kept != Some(ip) {
                undo.ipam = Some((&ipam, owner));
            }
            let mac = opts.mac.unwrap_or_else(|| mac_for(ip));
            // Recorded before anything is made, so that a crash from here on leaves a record
            // that names the device and the ports to undo.
            let mut ep = Endpoint {
                network: n.name.clone(),
                network_id: n.id.clone(),
                owner: owner.to_string(),
                container_name: opts.container_name.clone(),
                kind,
                ip,
                prefix: n.subnet.prefix(),
                gateway: n.gateway,
                dns_server: n.gateway,
                dns_disabled: n.disable_dns,
                mac: format_mac(mac),
                host_ifname: host.clone(),
                ifname: netns.map(|_| opts.ifname.clone()),
                aliases: opts.aliases.clone(),
                ports: ports.clone(),
                internal: n.internal,
                pending: true,
                port_group: opts.port_group.clone().filter(|_| !ports.is_empty()),
                held: opts.held,
            };
            write_json_runtime(&path, &ep)?;
            undo.record = Some(path.clone());
            let mut nl = Netlink::open()?;
            match netns {
                Some(ns) => {
                    let create = |nl: &mut Netlink| {
                        nl.create_veth(&host, bridge, &opts.ifname, ns, Some(mac), n.mtu)
                    };
                    match create(&mut nl) {
                        // A leftover of a crashed connect of the same owner: its name is ours.
                        Err(e)
                            if e.errno() == Some(rustix::io::Errno::EXIST.raw_os_error())
                                && nl.link(&host)?.is_some() =>
                        {
                            nl.delete_link(&host)?;
                            create(&mut nl)?;
                        }
                        r => r?,
                    }
                    undo.link = Some(host.clone());
                    let mut inside = Netlink::open_in(ns)?;
                    inside.set_up(1)?; // lo is always index 1 in a namespace
                    let eth = inside.link(&opts.ifname)?.ok_or_else(|| NetlinkError {
                        op: format!("configure {} in the namespace", opts.ifname),
                        err: std::io::Error::other("the interface is missing after creation"),
                    })?;
                    inside.add_address(eth.index, ip, n.subnet.prefix())?;
                    inside.set_up(eth.index)?;
                    if !n.internal {
                        match inside.add_default_route(eth.index, n.gateway) {
                            // Another network already gave the namespace its default route:
                            // the first network connected is the primary one, as in docker.
                            Err(e)
                                if e.errno() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {}
                            r => r?,
                        }
                    }
                }
                None => {
                    if nl.link(&host)?.is_some() && tap.is_none() {
                        nl.delete_link(&host)?;
                    }
                    nl.create_tap(&host, bridge)?;
                    undo.link = Some(host.clone());
                }
            }
            if !ports.is_empty() && ep.port_group.is_none() {
                self.firewall.publish(ip, &ports)?;
                undo.ports = Some((ip, ports.clone()));
            }
            ep.pending = false;
            write_json_runtime(&path, &ep)?;
            if ep.port_group.is_some() {
                undo.shared = Some(self);
                self.sync_shared_locked()?;
            }
            drop(ports_lock);
            Ok(ep)
        })();
        match result {
            Ok(ep) => {
                tracing::debug!(network, owner, ip = %ep.ip, "endpoint connected");
                Ok(ep)
            }
            Err(e) => {
                undo.run();
                Err(e)
            }
        }
    }

    /// Undoes an endpoint's kernel objects and address (not its file).
    fn undo_endpoint(&self, n: &Network, ep: &Endpoint, keep_address: bool) -> Result<()> {
        self.firewall.remove_endpoint_rules(ep.ip, &ep.ports)?;
        // Deleting the host end also deletes the peer. When the owner's namespace is gone or
        // going (`forget`), the kernel deletes both as it cleans the namespace up — but a
        // namespace that a process still holds, or whose clean-up lags under load, keeps its
        // end on the bridge, answering for the address: the address must not go to the next
        // owner while it does (a new pod's probes met the old one's refusals). So the host
        // end goes whenever it is still there; this waits at most for the clean-up of a
        // dying namespace (20-40 ms).
        Netlink::open()?.delete_link(&ep.host_ifname)?;
        if !keep_address {
            self.ipam(n)
                .release(&ep.owner)
                .map_err(|err| NetError::Ipam {
                    network: n.name.clone(),
                    err,
                })?;
        }
        let p = self.endpoint_path(&n.name, &ep.owner);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &p)(e).into()),
        }
        if ep.port_group.is_some() {
            self.sync_shared()?;
        }
        Ok(())
    }

    /// Disconnects `owner` from network `network`: unpublishes its ports, deletes its device,
    /// releases its address, forgets the endpoint. Idempotent, and tolerant of a container
    /// namespace that is already gone; also cleans up after a connect that crashed before
    /// recording the endpoint. Returns the endpoint that was removed, if there was one.
    pub fn disconnect(&self, network: &str, owner: &str) -> Result<Option<Endpoint>> {
        self.disconnect_inner(network, owner, false)
    }

    /// [`Networks::disconnect`] that keeps the owner's address allocated to it (a stopped VM
    /// keeps its address and MAC for its lifetime; the next connect takes them again).
    pub fn disconnect_keeping_address(
        &self,
        network: &str,
        owner: &str,
    ) -> Result<Option<Endpoint>> {
        self.disconnect_inner(network, owner, true)
    }

    /// [`Networks::disconnect`] for an owner whose network namespace is gone or going (its
    /// container ended): the same work, the host end of the veth pair deleted if the kernel
    /// has not yet.
    pub fn forget(&self, network: &str, owner: &str) -> Result<Option<Endpoint>> {
        self.disconnect_inner(network, owner, false)
    }

    fn disconnect_inner(
        &self,
        network: &str,
        owner: &str,
        keep_address: bool,
    ) -> Result<Option<Endpoint>> {
        Self::check_owner(owner)?;
        let n = self.store.get(network)?;
        let _lock = self.store.network_lock(network, false)?;
        match self.endpoint(network, owner)? {
            Some(ep) => {
                self.undo_endpoint(&n, &ep, keep_address)?;
                tracing::debug!(network, owner, "endpoint disconnected");
                Ok(Some(ep))
            }
            None => {
                // A connect that crashed before writing the endpoint: its device has the
                // derived name, its address is in the allocator.
                let mut nl = Netlink::open()?;
                nl.delete_link(&host_ifname(EndpointKind::Veth, &n.id, owner))?;
                nl.delete_link(&host_ifname(EndpointKind::Tap, &n.id, owner))?;
                self.ipam(&n).release(owner).map_err(|err| NetError::Ipam {
                    network: network.to_string(),
                    err,
                })?;
                Ok(None)
            }
        }
    }

    /// Frees what owners that no longer exist still hold: for each network, the endpoints
    /// (device, published ports, DNS name, address) and the addresses without an endpoint of
    /// every owner for which `alive` is false. `alive` is the engine's: whether a container or
    /// VM of that id exists (not whether it runs: a stopped container keeps its address). The
    /// lazy reconciliation of what a crash between removing an owner and releasing its network
    /// resources left; idempotent, and safe while other commands run (an owner being created
    /// exists before it connects).
    pub fn reconcile(&self, alive: &dyn Fn(&str) -> bool) -> Result<Reconciled> {
        let mut done = Reconciled::default();
        let mut first = None;
        for n in self.store.list()? {
            for ep in self.endpoints(&n.name)? {
                if alive(&ep.owner) {
                    continue;
                }
                tracing::info!(network = %n.name, owner = %ep.owner, ip = %ep.ip,
                    "releasing the endpoint of an owner that no longer exists");
                let name = ep.container_name.clone().unwrap_or_default();
                match self.release_one(&n.name, &ep.owner, &name, true) {
                    Ok(()) => done.endpoints.push((n.name.clone(), ep.owner.clone())),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
            let owners = self.ipam(&n).owners().map_err(|err| NetError::Ipam {
                network: n.name.clone(),
                err,
            })?;
            for (ip, owner) in owners {
                if alive(&owner) || !valid_owner(&owner) {
                    continue;
                }
                tracing::info!(network = %n.name, %owner, %ip,
                    "freeing the address of an owner that no longer exists");
                match self.disconnect(&n.name, &owner) {
                    Ok(_) => done.addresses.push((n.name.clone(), ip, owner)),
                    Err(e) => {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Kernel objects corral made that no network or endpoint of this root accounts for:
    /// `crl*` links and firewall objects. On a host with one state root these are leaks;
    /// where several roots share the host (tests), filter by name.
    pub fn leftovers(&self) -> Result<Leftovers> {
        let mut known_links: BTreeSet<String> = BTreeSet::new();
        let mut known_fw: BTreeSet<String> = crate::firewall::BASE_CHAINS
            .iter()
            .map(|c| format!("chain {c}"))
            .collect();
        for n in self.store.list()? {
            known_links.insert(n.bridge.clone());
            known_fw.extend(crate::firewall::network_objects(&n));
            for ep in self.endpoints(&n.name)? {
                known_links.insert(ep.host_ifname.clone());
                known_fw.extend(crate::firewall::endpoint_objects(ep.ip, &ep.ports));
            }
        }
        let links = Netlink::open()?
            .links_with_prefix("crl")?
            .into_iter()
            .map(|l| l.name)
            .filter(|l| !known_links.contains(l))
            .collect();
        let firewall = self
            .firewall
            .leftovers()?
            .into_iter()
            .filter(|o| !known_fw.contains(o))
            .collect();
        Ok(Leftovers { links, firewall })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{self, Record};
    use std::collections::BTreeMap;

    fn endpoint(n: &Network, owner: &str, ip: Ipv4Addr, name: &str) -> Endpoint {
        Endpoint {
            network: n.name.clone(),
            network_id: n.id.clone(),
            owner: owner.into(),
            container_name: Some(name.into()),
            kind: EndpointKind::Veth,
            ip,
            prefix: n.subnet.prefix(),
            gateway: n.gateway,
            dns_server: n.gateway,
            dns_disabled: false,
            mac: format_mac(mac_for(ip)),
            host_ifname: host_ifname(EndpointKind::Veth, &n.id, owner),
            ifname: Some("eth0".into()),
            aliases: Vec::new(),
            ports: Vec::new(),
            internal: false,
            pending: owner.ends_with("pending"),
            port_group: None,
            held: false,
        }
    }

    #[test]
    fn reconcile_frees_what_owners_that_are_gone_hold() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED reconcile_frees_what_owners_that_are_gone_hold: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let nets = Networks::open(t.path());
        let spec = NetworkSpec {
            name: "web".into(),
            subnet: Some("10.125.9.0/24".into()),
            ..Default::default()
        };
        // State only: no bridge is needed to free addresses and records.
        let n = nets.store().create(&spec, &[]).unwrap();
        let ipam = nets.ipam(&n);
        let dir = nets.store().network_dir("web");
        let mut ips = BTreeMap::new();
        for owner in ["alive1", "gone1", "gone2", "alive2", "gone-pending"] {
            ips.insert(owner, ipam.allocate(owner).unwrap());
        }
        // gone1 and alive1 are connected; gone-pending crashed while connecting; gone2 and
        // alive2 hold an address without an endpoint (a connect killed in between).
        for (owner, name) in [("alive1", "a"), ("gone1", "g"), ("gone-pending", "p")] {
            let ep = endpoint(&n, owner, ips[owner], name);
            write_json_runtime(&nets.endpoint_path("web", owner), &ep).unwrap();
        }
        for (owner, name) in [("alive1", "a"), ("gone1", "g")] {
            let rec = Record {
                name: name.into(),
                aliases: Vec::new(),
                ipv4: ips[owner],
            };
            dns::add_record(&dir, rec).unwrap();
        }
        let alive = |o: &str| o.starts_with("alive");
        let done = nets.reconcile(&alive).unwrap();
        assert_eq!(
            done.endpoints,
            vec![
                ("web".to_string(), "gone-pending".to_string()),
                ("web".to_string(), "gone1".to_string())
            ]
        );
        assert_eq!(
            done.addresses,
            vec![("web".to_string(), ips["gone2"], "gone2".to_string())]
        );
        let owners: Vec<String> = ipam.owners().unwrap().into_values().collect();
        assert_eq!(owners, vec!["alive1", "alive2"]);
        let eps: Vec<String> = nets
            .endpoints("web")
            .unwrap()
            .into_iter()
            .map(|e| e.owner)
            .collect();
        assert_eq!(eps, vec!["alive1"]);
        let names: Vec<String> = dns::read_records(&dir)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["a"]);
        assert!(nets.reconcile(&alive).unwrap().is_empty(), "idempotent");
        // release() of one owner also frees an address it holds without an endpoint.
        ipam.allocate("half").unwrap();
        nets.release("half").unwrap();
        assert_eq!(ipam.owners().unwrap().len(), 2);
    }

    #[test]
    fn dns_records_of_a_reused_name_survive_the_old_owners_release() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED dns_records_of_a_reused_name_survive: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let nets = Networks::open(t.path());
        let spec = NetworkSpec {
            name: "web".into(),
            subnet: Some("10.125.10.0/24".into()),
            ..Default::default()
        };
        let n = nets.store().create(&spec, &[]).unwrap();
        let dir = nets.store().network_dir("web");
        let ipam = nets.ipam(&n);
        // The old owner of name "db" crashed away; a new container took the name.
        let old = ipam.allocate("old").unwrap();
        let new = ipam.allocate("new").unwrap();
        for (owner, ip) in [("old", old), ("new", new)] {
            write_json_runtime(
                &nets.endpoint_path("web", owner),
                &endpoint(&n, owner, ip, "db"),
            )
            .unwrap();
        }
        dns::add_record(
            &dir,
            Record {
                name: "db".into(),
                aliases: Vec::new(),
                ipv4: new,
            },
        )
        .unwrap();
        nets.reconcile(&|o: &str| o == "new").unwrap();
        let recs = dns::read_records(&dir).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].ipv4, new);
    }
}
