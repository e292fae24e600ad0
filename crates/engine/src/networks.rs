//! A container's networks around its life: which it asked for (checked before anything
//! exists), its network namespace connected before the start, its `/etc/hosts` and
//! `/etc/resolv.conf`, `connect`/`disconnect` while it runs, and the release of its
//! addresses, ports and names when it goes.

use std::os::fd::{AsFd, OwnedFd};

use corral_container::config::NetworkMode;
use corral_container::{Containers, Status};
use corral_net::attach::{self, Attachment};
use corral_net::NetError;

use crate::spec::Networking;
use crate::{Engine, EngineError, Result};

/// The marker in a container's directory that holds its DNS names back at its next start
/// (`ContainerSpec::dns_hold`), until [`Engine::publish_names`].
pub const DNS_HELD: &str = "dns-held";

/// The networks `names` asks for (each may hold several, comma-separated), or the default
/// one (`$CORRAL_DEFAULT_NETWORK`, else `corral`) when none is given: for containers and VMs.
pub fn requested(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if out.is_empty() {
        out.push(
            std::env::var("CORRAL_DEFAULT_NETWORK")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| corral_net::store::DEFAULT_NETWORK.to_owned()),
        );
    }
    out
}

/// `--mac-address`: six hexadecimal bytes, `:`-separated, a unicast address.
fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mac = corral_net::endpoint::parse_mac(s).ok_or_else(|| {
        EngineError::invalid(format!(
            "--mac-address {s:?}: six hexadecimal bytes separated by ':', as 02:42:ac:11:00:02"
        ))
    })?;
    if mac[0] & 1 == 1 {
        return Err(EngineError::invalid(format!(
            "--mac-address {s}: a multicast address (the first byte is odd); use a unicast one"
        )));
    }
    Ok(mac)
}

/// The container's network mode and the corral networks it joins, checked now so that a bad
/// name or port fails before anything exists. `exposed`: the image's `EXPOSE`d ports, for
/// `-P`.
pub fn requested_attachments(
    engine: &Engine,
    n: &Networking,
    exposed: &[String],
) -> Result<(NetworkMode, Vec<Attachment>)> {
    let names = requested(&n.networks);
    let mut ports = Vec::new();
    for p in &n.publish {
        ports.push(
            p.parse::<corral_net::PortSpec>()
                .map_err(|e| EngineError::invalid(format!("-p {p:?}: {e}")))?,
        );
    }
    for e in exposed {
        // The image's `EXPOSE 80/tcp`: to a free host port.
        let spec = e.trim_end_matches("/tcp");
        ports.push(
            spec.parse::<corral_net::PortSpec>().map_err(|err| {
                EngineError::invalid(format!("-P: the image exposes {e:?}: {err}"))
            })?,
        );
    }
    let special = |n: &str| n == "none" || n == "host";
    if names.iter().any(|n| special(n)) {
        if names.len() > 1 {
            return Err(EngineError::invalid(format!(
                "--network {}: none and host cannot be combined with other networks",
                names.join(",")
            )));
        }
        if !ports.is_empty() {
            return Err(EngineError::invalid(format!("-p/-P need a network: with --network {}, nothing can be published (use a corral network)", names[0])));
        }
        if n.ip.is_some() || n.mac.is_some() {
            return Err(EngineError::invalid(format!(
                "--ip and --mac-address need a corral network, not --network {}",
                names[0]
            )));
        }
        if !n.aliases.is_empty() {
            return Err(EngineError::invalid(format!(
                "--network-alias needs a corral network, not --network {}",
                names[0]
            )));
        }
        let mode = if names[0] == "none" {
            NetworkMode::None
        } else {
            NetworkMode::Host
        };
        return Ok((mode, Vec::new()));
    }
    let mac = n.mac.as_deref().map(parse_mac).transpose()?;
    let nets = engine.networks();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if !seen.insert(name.clone()) {
            return Err(EngineError::invalid(format!(
                "--network {name}: given twice"
            )));
        }
        if name != corral_net::store::DEFAULT_NETWORK && nets.get(name).is_err() {
            return Err(EngineError::NotFound(format!(
                "--network {name}: no such network (corral network create {name} makes it)"
            )));
        }
        for al in &n.aliases {
            corral_net::store::validate_name(al)
                .map_err(|e| EngineError::invalid(format!("--network-alias {al:?}: {e}")))?;
        }
        out.push(Attachment {
            network: name.clone(),
            aliases: n.aliases.clone(),
            // Published through the first network, as docker does; the fixed address and MAC
            // are on it too.
            ports: if i == 0 { ports.clone() } else { Vec::new() },
            ip: if i == 0 { n.ip } else { None },
            mac: if i == 0 { mac } else { None },
            port_group: if i == 0 { n.port_group.clone() } else { None },
        });
    }
    Ok((NetworkMode::Networks, out))
}

/// A container's `/etc/hosts`: corral-net's lines, then `--add-host`'s (`host-gateway` is the
/// first network's gateway).
fn hosts_file(
    hostname: &str,
    name: &str,
    eps: &[corral_net::Endpoint],
    r: &crate::record::Record,
) -> String {
    let mut s = attach::hosts_file(hostname, name, eps);
    for (host, ip) in &r.extra_hosts {
        let ip = if ip == "host-gateway" {
            eps.first()
                .map_or_else(|| "127.0.0.1".to_owned(), |e| e.gateway.to_string())
        } else {
            ip.clone()
        };
        s.push_str(&format!("{ip}\t{host}\n"));
    }
    s
}

/// A container's `/etc/resolv.conf`: its network's DNS server, or `--dns`'s, with
/// `--dns-search` and `--dns-option`.
fn resolv_conf(eps: &[corral_net::Endpoint], r: &crate::record::Record) -> Option<String> {
    if r.dns.is_empty() && r.dns_search.is_empty() && r.dns_options.is_empty() {
        return attach::resolv_conf(eps);
    }
    let mut s = String::from("# written by corral\n");
    if !r.dns_search.is_empty() {
        s.push_str(&format!("search {}\n", r.dns_search.join(" ")));
    }
    if r.dns.is_empty() {
        if let Some(e) = eps.first() {
            for ns in attach::nameservers(e) {
                s.push_str(&format!("nameserver {ns}\n"));
            }
        }
    }
    for d in &r.dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    let mut opts = r.dns_options.clone();
    if !opts.iter().any(|o| o.starts_with("ndots:")) {
        opts.push("ndots:0".into());
    }
    s.push_str(&format!("options {}\n", opts.join(" ")));
    Some(s)
}

impl Engine {
    /// Before a container on corral's networks starts: its network namespace, connected to
    /// the networks it asked for, and its `/etc/hosts` and `/etc/resolv.conf`. `None` for a
    /// container with `--network none|host`.
    pub(crate) fn attach_for_start(&self, cs: &Containers, id: &str) -> Result<Option<OwnedFd>> {
        let cfg = cs.config(id)?;
        if cfg.network != NetworkMode::Networks {
            return Ok(None);
        }
        let s = cs.load(id)?;
        if s.status != Status::Created {
            // `start` refuses it with the reason.
            return Ok(None);
        }
        let dir = cs.dir(id);
        let reqs = attach::load_requests(&dir)?;
        let nets = self.networks();
        let ns =
            attach::new_netns().map_err(crate::io_err("making the network namespace of", &dir))?;
        // A replica started with its names held (`ContainerSpec::dns_hold`) gets no DNS names
        // until `publish_names`.
        let held = dir.join(DNS_HELD).exists();
        let eps =
            nets.attach_container_with(id, &s.name, ns.as_fd(), &reqs, 0, &self.exe, !held)?;
        let record = crate::record::Record::load(&dir);
        let files = (|| -> std::io::Result<()> {
            std::fs::write(
                dir.join("hosts"),
                hosts_file(&cfg.hostname, &s.name, &eps, &record),
            )?;
            if let Some(r) = resolv_conf(&eps, &record) {
                std::fs::write(dir.join("resolv.conf"), r)?;
            }
            Ok(())
        })();
        if let Err(e) = files {
            let _ = nets.release(id);
            return Err(crate::io_err("writing the hosts files of", &dir)(e));
        }
        Ok(Some(ns))
    }

    /// Frees the endpoints, addresses and ports of owners (containers, VMs, pods) that no
    /// longer exist — what a command killed between removing an owner and releasing its
    /// networks left. Failures are logged: this is housekeeping on the way of another command.
    pub fn reconcile_networks(&self) {
        let Ok(cs) = self.containers() else { return };
        let vms = self.vms();
        let pods = self.root.join("pods");
        let alive = |owner: &str| {
            cs.exists(owner)
                || vms.exists(owner)
                || (!owner.contains('/') && pods.join(owner).join("pod.json").is_file())
        };
        if let Err(e) = self.networks().reconcile(&alive) {
            tracing::warn!("reconciling the networks' endpoints: {e}");
        }
    }

    /// Puts a container started with its names held into its networks' DNS (and forgets the
    /// hold: its next starts register them as usual).
    pub fn publish_names(&self, id: &str) -> Result<()> {
        let cs = self.containers()?;
        let dir = cs.dir(id);
        let s = cs.load(id)?;
        let reqs = attach::load_requests(&dir)?;
        self.networks()
            .register_names(id, &s.name, &reqs, &self.exe)?;
        let _ = std::fs::remove_file(dir.join(DNS_HELD));
        Ok(())
    }

    /// Takes a running container's names out of its networks' DNS, keeping it connected (a
    /// replica drained before it stops).
    pub fn withdraw_names(&self, id: &str) -> Result<()> {
        Ok(self.networks().withdraw_names(id)?)
    }

    /// When a container goes: its endpoints, addresses, published ports and DNS names.
    pub fn release_networks(&self, id: &str) -> Result<()> {
        Ok(self.networks().release(id)?)
    }

    /// Rewrites a container's `/etc/hosts` in place (it is bind-mounted: a rename would not
    /// reach the container).
    pub fn write_hosts(&self, cs: &Containers, id: &str) -> Result<()> {
        let s = cs.load(id)?;
        let cfg = cs.config(id)?;
        let eps = self.networks().endpoints_of(id)?;
        let path = cs.dir(id).join("hosts");
        let record = crate::record::Record::load(&cs.dir(id));
        std::fs::write(&path, hosts_file(&cfg.hostname, &s.name, &eps, &record))
            .map_err(crate::io_err("writing", &path))
    }

    /// `network connect`: a running container gets its next interface now; a created one
    /// records the request for its start.
    pub fn connect(&self, network: &str, container: &str, aliases: Vec<String>) -> Result<()> {
        let nets = self.networks();
        let cs = self.containers()?;
        let id = cs.resolve(container)?;
        let s = cs.load(&id)?;
        let cfg = cs.config(&id)?;
        nets.get(network)?;
        let wanted = Attachment {
            network: network.to_owned(),
            aliases,
            ..Attachment::default()
        };
        match (s.status, s.pid) {
            (Status::Running, Some(pid)) if cfg.network == NetworkMode::Networks => {
                let path = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
                let ns = std::fs::File::open(&path)
                    .map_err(crate::io_err("opening the network namespace", &path))?;
                let first = nets.endpoints_of(&id)?.len();
                nets.attach_container(&id, &s.name, ns.as_fd(), &[wanted], first, &self.exe)?;
                self.write_hosts(&cs, &id)?;
            }
            (Status::Created, _) if cfg.network == NetworkMode::Networks => {
                let dir = cs.dir(&id);
                let mut reqs = attach::load_requests(&dir)?;
                if reqs.iter().any(|r| r.network == network) {
                    return Err(EngineError::Conflict(format!(
                        "{} is already connected to network {network:?}",
                        s.name
                    )));
                }
                reqs.push(wanted);
                attach::save_requests(&dir, &reqs)?;
            }
            (Status::Exited, _) => {
                return Err(EngineError::Conflict(format!(
                    "{} is not running: start it first",
                    s.name
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "{} was made with --network {:?}: only a container on corral's networks can join one",
                    s.name, cfg.network
                )))
            }
        }
        self.emit(
            crate::events::Event::new("network", "connect", network)
                .attr("name", network)
                .attr("container", &id),
        );
        Ok(())
    }

    /// `network disconnect`.
    pub fn disconnect(&self, network: &str, container: &str) -> Result<()> {
        let nets = self.networks();
        let cs = self.containers()?;
        let id = cs.resolve(container)?;
        let s = cs.load(&id)?;
        if nets.endpoint(network, &id)?.is_none() {
            // A created container: drop the request.
            let dir = cs.dir(&id);
            let mut reqs = attach::load_requests(&dir)?;
            let before = reqs.len();
            reqs.retain(|r| r.network != network);
            if reqs.len() == before {
                return Err(EngineError::Conflict(format!(
                    "{} is not connected to network {network:?}",
                    s.name
                )));
            }
            attach::save_requests(&dir, &reqs)?;
            return Ok(());
        }
        nets.release_one(network, &id, &s.name, s.status == Status::Running)?;
        self.write_hosts(&cs, &id)?;
        self.emit(
            crate::events::Event::new("network", "disconnect", network)
                .attr("name", network)
                .attr("container", &id),
        );
        Ok(())
    }

    /// `network rm`: a network in use is refused unless `force`, which disconnects its
    /// containers (their `/etc/hosts` lose its line).
    pub fn remove_network(&self, name: &str, force: bool) -> Result<()> {
        // Endpoints of owners a crash left gone must not keep the network in use.
        self.reconcile_networks();
        let nets = self.networks();
        let eps = nets.endpoints(name).unwrap_or_default();
        match nets.remove(name, force) {
            Ok(()) => {}
            Err(e @ NetError::InUse { .. }) => {
                return Err(EngineError::Conflict(format!(
                    "{e} (corral network rm -f {name} disconnects them)"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        if let Ok(cs) = self.containers() {
            for ep in eps {
                let _ = self.write_hosts(&cs, &ep.owner);
            }
        }
        self.emit(crate::events::Event::new("network", "destroy", name).attr("name", name));
        Ok(())
    }
}
