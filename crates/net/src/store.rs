//! Durable network definitions, one directory per network under `<root>/networks`:
//!
//! ```text
//! networks/.lock                      flock: creations and removals, one at a time
//! networks/<name>/network.json        the Network: id, subnet, gateway, bridge, options
//! networks/<name>/ipam.json, ipam.lock  address allocations (crate::ipam)
//! networks/<name>/endpoints/<owner>.json  one per connected container or VM (crate::endpoint)
//! networks/<name>/lock                flock: shared by connect/disconnect, exclusive by remove
//! ```
//!
//! This module is state only, no kernel objects: [`crate::Networks`] adds the bridge and the
//! firewall rules around it. A network is created under the global lock, after checking
//! its name, its subnet against every other network and every route on the host (given by
//! the caller, from netlink), so two creations racing for a name or a subnet cannot both win.
//!
//! A network exists when its directory holds `network.json`. The directory is built under a
//! temporary name and renamed into place (one atomic step); removal renames it to a trash
//! name first, then deletes it. What a crash leaves of either is swept by the next listing
//! ([`crate::fsutil::sweep`]); a directory without `network.json` (left by an older version)
//! counts as absent and is replaced by the next creation of that name.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::fsutil::{io_err, read_json, write_json, FsError, Lock};
use crate::netlink::Route;
use crate::subnet::{Subnet, SubnetError};

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "corral";
/// The default network's subnet.
pub const DEFAULT_SUBNET: &str = "10.120.0.0/16";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "crl-br-default";
/// The pool from which networks created without a subnet get a /24.
pub const AUTO_POOL: &str = "10.121.0.0/16";
/// Prefix of every bridge corral creates.
pub const BRIDGE_PREFIX: &str = "crl-br-";

/// Errors of the network store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A driver option (`-o`) that is unknown or has a bad value.
    #[error("network option {0}")]
    BadOption(String),
    /// The name does not match `[a-zA-Z0-9][a-zA-Z0-9_.-]*` or is longer than 64 bytes.
    #[error("invalid network name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 characters")]
    InvalidName(String),
    /// The subnet is not valid CIDR.
    #[error("invalid --subnet")]
    InvalidSubnet(#[source] SubnetError),
    /// The gateway is not a host address of the subnet.
    #[error("gateway {gateway} is not a host address of subnet {subnet}: choose one inside it, or leave it out to use {default}")]
    GatewayOutside {
        /// The gateway given.
        gateway: Ipv4Addr,
        /// The subnet.
        subnet: Subnet,
        /// The default gateway.
        default: Ipv4Addr,
    },
    /// `--ip-range` is not inside the subnet.
    #[error("--ip-range {range} is not inside the subnet {subnet}: give a part of it, such as {subnet} itself")]
    RangeOutside {
        /// The range given.
        range: Subnet,
        /// The network's subnet.
        subnet: Subnet,
    },
    /// The parent interface's name is not a valid interface name.
    #[error("--parent {0:?} is not a valid interface name")]
    BadParent(String),
    /// The gateway does not parse as an IPv4 address.
    #[error("invalid gateway {0:?}: expected an IPv4 address such as 10.121.0.1")]
    InvalidGateway(String),
    /// A network of this name exists.
    #[error("network {0:?} already exists: remove it first or choose another name")]
    Exists(String),
    /// The subnet overlaps another corral network.
    #[error(
        "subnet {subnet} overlaps network {other:?} ({other_subnet}): choose a subnet outside it"
    )]
    OverlapsNetwork {
        /// The subnet asked for.
        subnet: Subnet,
        /// The other network.
        other: String,
        /// Its subnet.
        other_subnet: Subnet,
    },
    /// The subnet overlaps a route on the host.
    #[error("subnet {subnet} overlaps the host route {route}{}: choose a subnet that the host does not already reach", dev.as_ref().map(|d| format!(" on {d}")).unwrap_or_default())]
    OverlapsRoute {
        /// The subnet asked for.
        subnet: Subnet,
        /// The route's destination.
        route: Subnet,
        /// Its device, if it has one.
        dev: Option<String>,
    },
    /// Every /24 of the automatic pool is taken.
    #[error("no free /24 left in {AUTO_POOL}: give a subnet with --subnet")]
    PoolExhausted,
    /// No network of this name.
    #[error("no such network: {0}")]
    NotFound(String),
    /// Reading or writing state failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

type Result<T> = std::result::Result<T, StoreError>;

/// A network's durable definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its name, unique under one root.
    pub name: String,
    /// 64 hex digits, random.
    pub id: String,
    /// Its IPv4 subnet.
    pub subnet: Subnet,
    /// The bridge's address, the endpoints' default route and DNS server.
    pub gateway: Ipv4Addr,
    /// No traffic to or from outside the network (no NAT, no forwarding).
    pub internal: bool,
    /// The host bridge's name (`crl-br-` and 8 hex digits of the id).
    pub bridge: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// User labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A host interface enslaved to the bridge (Proxmox's vmbr0 style): the network is
    /// then one L2 segment with whatever that interface reaches — other hosts' bridges on
    /// the same LAN, so that a VM keeps its address when it moves between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Where this host allocates addresses, within the subnet (so that hosts sharing one
    /// LAN through `parent` do not hand out the same address); `None`: the whole subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Subnet>,
    /// The MTU of the bridge and of its containers' interfaces (`-o mtu=N`); `None`: the
    /// kernel's default (1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// No DNS server of corral's on it (`--disable-dns`): its members' names do not resolve
    /// and their `/etc/resolv.conf` lists the host's resolvers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_dns: bool,
    /// The driver options as given (`-o KEY=VALUE`), for `inspect`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The driver options `network create -o` takes: docker's names and podman's short ones.
pub const OPTION_KEYS: &[&str] = &[
    "mtu",
    "com.docker.network.driver.mtu",
    "com.docker.network.bridge.name",
];

/// What the driver options ask for: (MTU, bridge name).
pub fn parse_options(options: &BTreeMap<String, String>) -> Result<(Option<u32>, Option<String>)> {
    let (mut mtu, mut bridge) = (None, None);
    for (k, v) in options {
        match k.as_str() {
            "mtu" | "com.docker.network.driver.mtu" => {
                let m: u32 = v
                    .parse()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| {
                        StoreError::BadOption(format!(
                            "{k}={v}: an MTU is a number from 68 to 65535"
                        ))
                    })?;
                mtu = Some(m);
            }
            "com.docker.network.bridge.name" => {
                crate::netlink::check_ifname(v).map_err(|_| {
                    StoreError::BadOption(format!(
                        "{k}={v}: an interface name is 1 to 15 characters, without '/', ':' or spaces"
                    ))
                })?;
                bridge = Some(v.clone());
            }
            _ => {
                return Err(StoreError::BadOption(format!(
                    "{k}: not an option of corral's bridge driver (it takes {})",
                    OPTION_KEYS.join(", ")
                )))
            }
        }
    }
    Ok((mtu, bridge))
}

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    /// The name.
    pub name: String,
    /// CIDR; `None` picks the first free /24 of [`AUTO_POOL`].
    pub subnet: Option<String>,
    /// The gateway; `None` is the subnet's first host address.
    pub gateway: Option<String>,
    /// See [`Network::internal`].
    pub internal: bool,
    /// See [`Network::labels`].
    pub labels: BTreeMap<String, String>,
    /// See [`Network::parent`].
    pub parent: Option<String>,
    /// See [`Network::ip_range`] (CIDR).
    pub ip_range: Option<String>,
    /// Driver options (`-o`): see [`parse_options`].
    pub options: BTreeMap<String, String>,
    /// See [`Network::disable_dns`].
    pub disable_dns: bool,
}

/// Parses `g` as a host address of `subnet`.
fn gateway_in(subnet: Subnet, g: &str) -> Result<Ipv4Addr> {
    let gateway: Ipv4Addr = g
        .parse()
        .map_err(|_| StoreError::InvalidGateway(g.to_string()))?;
    if !subnet.is_host(gateway) {
        return Err(StoreError::GatewayOutside {
            gateway,
            subnet,
            default: subnet.first_host(),
        });
    }
    Ok(gateway)
}

/// Validates a network name as docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 bytes.
pub fn validate_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.to_string()))
    }
}

/// The network definitions under one root.
#[derive(Debug, Clone)]
pub struct NetworkStore {
    dir: PathBuf,
}

impl NetworkStore {
    /// The store under `<root>/networks` (created on first write).
    pub fn open(root: &Path) -> NetworkStore {
        NetworkStore {
            dir: root.join("networks"),
        }
    }

    /// `<root>/networks`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of network `name`.
    pub fn network_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Holds the store's global lock (creations and removals) until dropped.
    pub(crate) fn lock(&self) -> Result<Lock> {
        Ok(Lock::exclusive(&self.dir.join(".lock"))?)
    }

    /// The network's lock: shared by endpoint changes, exclusive by removal.
    pub(crate) fn network_lock(&self, name: &str, exclusive: bool) -> Result<Lock> {
        let p = self.network_dir(name).join("lock");
        Ok(if exclusive {
            Lock::exclusive(&p)?
        } else {
            Lock::shared(&p)?
        })
    }

    /// The network called `name`.
    pub fn get(&self, name: &str) -> Result<Network> {
        validate_name(name).map_err(|_| StoreError::NotFound(name.to_string()))?;
        read_json(&self.network_dir(name).join("network.json"))?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        crate::fsutil::sweep(&self.dir);
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read directory", &self.dir)(e).into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_name(&name).is_err() {
                continue;
            }
            if let Some(n) = read_json::<Network>(&entry.path().join("network.json"))? {
                out.push(n);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a network's definition after checking it against the others and against
    /// `host_routes` (routes on corral's own bridges of this store are skipped: those
    /// belong to the networks checked already).
    pub fn create(&self, spec: &NetworkSpec, host_routes: &[Route]) -> Result<Network> {
        self.create_with(spec, host_routes, None)
    }

    /// Creates the default network ([`DEFAULT_NETWORK`], [`DEFAULT_SUBNET`],
    /// [`DEFAULT_BRIDGE`]) unless it exists; returns it.
    pub fn ensure_default(&self, host_routes: &[Route]) -> Result<Network> {
        if let Ok(n) = self.get(DEFAULT_NETWORK) {
            return Ok(n);
        }
        let spec = NetworkSpec {
            name: DEFAULT_NETWORK.to_string(),
            subnet: Some(DEFAULT_SUBNET.to_string()),
            ..Default::default()
        };
        match self.create_with(&spec, host_routes, Some(DEFAULT_BRIDGE)) {
            Err(StoreError::Exists(_)) => self.get(DEFAULT_NETWORK),
            r => r,
        }
    }

    fn create_with(
        &self,
        spec: &NetworkSpec,
        host_routes: &[Route],
        bridge: Option<&str>,
    ) -> Result<Network> {
        validate_name(&spec.name)?;
        let requested = spec
            .subnet
            .as_deref()
            .map(|s| s.parse::<Subnet>())
            .transpose()
            .map_err(StoreError::InvalidSubnet)?;
        if let (Some(subnet), Some(g)) = (requested, spec.gateway.as_deref()) {
            gateway_in(subnet, g)?;
        }
        let (mtu, custom_bridge) = parse_options(&spec.options)?;
        let _lock = self.lock()?;
        let existing = self.list()?;
        if existing.iter().any(|n| n.name == spec.name) {
            return Err(StoreError::Exists(spec.name.clone()));
        }
        if let Some(b) = &custom_bridge {
            if let Some(o) = existing.iter().find(|n| &n.bridge == b) {
                return Err(StoreError::BadOption(format!(
                    "com.docker.network.bridge.name={b}: network {} has that bridge",
                    o.name
                )));
            }
        }
        let ours: Vec<&str> = existing.iter().map(|n| n.bridge.as_str()).collect();
        let routes: Vec<&Route> = host_routes
            .iter()
            .filter(|r| r.destination.prefix() > 0)
            .filter(|r| !r.ifname.as_deref().is_some_and(|d| ours.contains(&d)))
            .collect();
        let conflict = |subnet: Subnet| -> Option<StoreError> {
            if let Some(o) = existing.iter().find(|n| n.subnet.overlaps(&subnet)) {
                return Some(StoreError::OverlapsNetwork {
                    subnet,
                    other: o.name.clone(),
                    other_subnet: o.subnet,
                });
            }
            routes
                .iter()
                .find(|r| r.destination.overlaps(&subnet))
                .map(|r| StoreError::OverlapsRoute {
                    subnet,
                    route: r.destination,
                    dev: r.ifname.clone(),
                })
        };
        let subnet = match requested {
            Some(s) => {
                if let Some(e) = conflict(s) {
                    return Err(e);
                }
                s
            }
            None => AUTO_POOL
                .parse::<Subnet>()
                .expect("valid pool")
                .subnets(24)
                .find(|s| conflict(*s).is_none())
                .ok_or(StoreError::PoolExhausted)?,
        };
        let gateway = match spec.gateway.as_deref() {
            Some(g) => gateway_in(subnet, g)?,
            None => subnet.first_host(),
        };
        let ip_range = match spec.ip_range.as_deref() {
            Some(r) => {
                let range: Subnet = r.parse().map_err(StoreError::InvalidSubnet)?;
                if !subnet.contains(range.addr()) || range.prefix() < subnet.prefix() {
                    return Err(StoreError::RangeOutside { range, subnet });
                }
                Some(range)
            }
            None => None,
        };
        if let Some(p) = &spec.parent {
            crate::netlink::check_ifname(p).map_err(|_| StoreError::BadParent(p.clone()))?;
        }
        let id = crate::fsutil::random_hex(32);
        let network = Network {
            name: spec.name.clone(),
            bridge: bridge
                .map(str::to_string)
                .or(custom_bridge)
                .unwrap_or_else(|| format!("{BRIDGE_PREFIX}{}", &id[..8])),
            id,
            subnet,
            gateway,
            internal: spec.internal,
            created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            labels: spec.labels.clone(),
            parent: spec.parent.clone(),
            ip_range,
            mtu,
            disable_dns: spec.disable_dns,
            options: spec.options.clone(),
        };
        let dir = self.network_dir(&network.name);
        let tmp = crate::fsutil::temp_path(&self.dir, &network.name, crate::fsutil::TMP);
        let made = (|| {
            fs::create_dir_all(tmp.join("endpoints")).map_err(io_err("create directory", &tmp))?;
            write_json(&tmp.join("network.json"), &network)?;
            // A directory without network.json, left by an older version: not a network.
            if dir.exists() {
                tracing::info!(network = %network.name, "replacing the remains of a network");
                self.trash(&dir)?;
            }
            fs::rename(&tmp, &dir).map_err(io_err("rename into", &dir))?;
            sync_dir(&self.dir)
        })();
        if made.is_err() {
            let _ = crate::fsutil::remove_any(&tmp);
        }
        made?;
        tracing::info!(network = %network.name, subnet = %network.subnet, "network created");
        Ok(network)
    }

    /// Renames `dir` to a trash name (it stops existing), then deletes it; what cannot be
    /// deleted is left to the next sweep.
    fn trash(&self, dir: &Path) -> Result<()> {
        let what = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let trash = crate::fsutil::temp_path(&self.dir, &what, crate::fsutil::RM);
        fs::rename(dir, &trash).map_err(io_err("remove", dir))?;
        sync_dir(&self.dir)?;
        if let Err(err) = crate::fsutil::remove_any(&trash) {
            tracing::warn!(path = %trash.display(), %err, "deleting a removed network's files");
        }
        Ok(())
    }

    /// Removes the definition and everything under the network's directory. The caller has
    /// checked that no endpoint remains and removed the kernel objects.
    pub(crate) fn remove_state(&self, name: &str) -> Result<()> {
        let dir = self.network_dir(name);
        if !dir.join("network.json").is_file() {
            return Err(StoreError::NotFound(name.to_string()));
        }
        // One step makes it absent (the rename); a crash after it leaves trash to sweep.
        self.trash(&dir)
    }
}

/// fsyncs a directory, so that a rename in it outlives a power cut.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync", dir)(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, subnet: Option<&str>) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            subnet: subnet.map(Into::into),
            ..Default::default()
        }
    }

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn driver_options_take_docker_and_podman_names() {
        assert_eq!(
            parse_options(&opts(&[("mtu", "1400")])).unwrap(),
            (Some(1400), None)
        );
        assert_eq!(
            parse_options(&opts(&[
                ("com.docker.network.driver.mtu", "9000"),
                ("com.docker.network.bridge.name", "br-app"),
            ]))
            .unwrap(),
            (Some(9000), Some("br-app".to_string()))
        );
        for bad in [
            ("mtu", "67"),
            ("mtu", "x"),
            ("com.docker.network.bridge.name", "a/b"),
            ("com.docker.network.bridge.name", "sixteen-chars-xx"),
            ("isolate", "true"),
        ] {
            let e = parse_options(&opts(&[bad])).unwrap_err().to_string();
            assert!(e.contains(bad.0), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_bridge_name_two_networks_would_share_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        let mut a = spec("a", Some("10.77.1.0/24"));
        a.options = opts(&[("com.docker.network.bridge.name", "br-shared")]);
        let n = s.create(&a, &[]).unwrap();
        assert_eq!(n.bridge, "br-shared");
        let mut b = spec("b", Some("10.77.2.0/24"));
        b.options = a.options.clone();
        let e = s.create(&b, &[]).unwrap_err().to_string();
        assert!(e.contains("network a has that bridge"), "{e}");
        assert!(s.get("b").is_err(), "nothing recorded");
    }

    fn route(dst: &str, dev: &str) -> Route {
        Route {
            destination: dst.parse().unwrap(),
            ifname: Some(dev.into()),
            gateway: None,
            table: 254,
        }
    }

    #[test]
    fn names_are_validated_like_docker() {
        for ok in ["a", "web", "my_net.1-x", "0abc", &"x".repeat(64)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "_a", "a/b", "a b", "ü", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_defaults_gateway_and_bridge() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        let n = s.create(&spec("web", Some("10.125.7.0/24")), &[]).unwrap();
        assert_eq!(n.gateway.to_string(), "10.125.7.1");
        assert!(n.bridge.starts_with("crl-br-") && n.bridge.len() == 15);
        assert_eq!(s.get("web").unwrap(), n);
        assert_eq!(s.list().unwrap(), vec![n]);
    }

    #[test]
    fn create_rejects_conflicts_with_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        s.create(&spec("a", Some("10.125.0.0/16")), &[]).unwrap();
        let e = s
            .create(&spec("a", Some("10.126.0.0/24")), &[])
            .unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let e = s
            .create(&spec("b", Some("10.125.9.0/24")), &[])
            .unwrap_err();
        assert!(e.to_string().contains("overlaps network \"a\""), "{e}");
        let routes = [route("10.126.0.0/20", "eth9")];
        let e = s
            .create(&spec("b", Some("10.126.4.0/24")), &routes)
            .unwrap_err();
        assert!(
            e.to_string().contains("host route 10.126.0.0/20 on eth9"),
            "{e}"
        );
        let e = s
            .create(&spec("b", Some("10.126.4.0/33")), &[])
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidSubnet(_)), "{e}");
        let mut sp = spec("b", Some("10.126.4.0/24"));
        sp.gateway = Some("10.126.5.1".into());
        let e = s.create(&sp, &[]).unwrap_err();
        assert!(e.to_string().contains("not a host address"), "{e}");
        sp.gateway = Some("10.126.4.255".into());
        assert!(s.create(&sp, &[]).is_err());
        sp.gateway = Some("10.126.4.254".into());
        assert_eq!(
            s.create(&sp, &[]).unwrap().gateway.to_string(),
            "10.126.4.254"
        );
    }

    #[test]
    fn automatic_subnet_skips_taken_ones() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        s.create(&spec("a", Some("10.121.0.0/24")), &[]).unwrap();
        let routes = [route("10.121.1.0/24", "eth9"), route("0.0.0.0/0", "eth0")];
        let n = s.create(&spec("b", None), &routes).unwrap();
        assert_eq!(n.subnet.to_string(), "10.121.2.0/24");
    }

    #[test]
    fn ensure_default_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        let a = s.ensure_default(&[]).unwrap();
        let b = s.ensure_default(&[]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.bridge, DEFAULT_BRIDGE);
        assert_eq!(a.subnet.to_string(), DEFAULT_SUBNET);
    }

    #[test]
    fn concurrent_creations_of_one_name_have_one_winner() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        let wins: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    sc.spawn(move || {
                        s.create(&spec("same", Some(&format!("10.127.{i}.0/24"))), &[])
                            .is_ok()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap() as usize).sum()
        });
        assert_eq!(wins, 1);
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn crash_leftovers_are_absent_and_replaced() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        let dir = s.dir().to_path_buf();
        // What older versions left: a removal killed after network.json went, its
        // allocations still there; and a creation killed before the rename.
        fs::create_dir_all(dir.join("web/endpoints")).unwrap();
        fs::write(
            dir.join("web/ipam.json"),
            br#"{"allocations":{"10.125.0.2":"gone"}}"#,
        )
        .unwrap();
        fs::create_dir_all(dir.join(".web.tmp-999999999-1-0/endpoints")).unwrap();
        assert!(s.list().unwrap().is_empty());
        assert!(!dir.join(".web.tmp-999999999-1-0").exists(), "swept");
        s.create(&spec("web", Some("10.125.0.0/24")), &[]).unwrap();
        assert!(
            !dir.join("web/ipam.json").exists(),
            "a new network starts with no allocations"
        );
        s.remove_state("web").unwrap();
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(".lock")]);
    }

    #[test]
    fn remove_state_forgets_the_network() {
        let d = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(d.path());
        s.create(&spec("gone", Some("10.125.0.0/24")), &[]).unwrap();
        s.remove_state("gone").unwrap();
        assert!(matches!(s.get("gone"), Err(StoreError::NotFound(_))));
        assert!(matches!(
            s.remove_state("gone"),
            Err(StoreError::NotFound(_))
        ));
        assert!(s.list().unwrap().is_empty());
    }
}
