//! `network create`, `ls`, `inspect`, `rm`, `connect`, `disconnect`, `prune` (corral-net), and
//! the wiring of a container's networks around its start and removal.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use corral_container::config::NetworkMode;
use corral_container::{Containers, Status};
use corral_net::attach::{self, Attachment};
use corral_net::{Endpoint, NetError, Network, NetworkSpec, Networks};
use serde_json::json;

use crate::cli::NetworkCommand;
use crate::exit::{Code, CORRAL_FAILURE};

/// The networks of `root`.
pub fn networks(root: &Path) -> Networks {
    Networks::open(root)
}

fn containers(root: &Path) -> Result<Containers> {
    Containers::open(root.join("containers"))
        .with_context(|| format!("opening the container store under {}", root.display()))
}

/// Runs a `network` verb.
pub fn run(root: &Path, cmd: NetworkCommand) -> Result<()> {
    match cmd {
        NetworkCommand::Create {
            subnet,
            gateway,
            internal,
            parent,
            ip_range,
            name,
        } => {
            let n = networks(root).create(&NetworkSpec {
                name,
                subnet,
                gateway,
                internal,
                parent,
                ip_range,
                ..NetworkSpec::default()
            })?;
            println!("{}", n.name);
            Ok(())
        }
        NetworkCommand::Ls { json, quiet } => ls(root, json, quiet),
        NetworkCommand::Inspect { names } => inspect(root, &names),
        NetworkCommand::Rm { force, names } => rm(root, &names, force),
        NetworkCommand::Connect {
            alias,
            network,
            container,
        } => connect(root, &network, &container, alias),
        NetworkCommand::Disconnect { network, container } => disconnect(root, &network, &container),
        NetworkCommand::Prune { force: _ } => prune(root),
    }
}

fn endpoint_json(e: &Endpoint) -> serde_json::Value {
    json!({
        "container": e.container_name, "owner": e.owner, "ip": e.ip, "prefix": e.prefix,
        "gateway": e.gateway, "mac": e.mac, "aliases": e.aliases, "ports": ports_json(&e.ports),
        "interface": e.ifname, "host_interface": e.host_ifname,
    })
}

fn ports_json(ports: &[corral_net::PortMapping]) -> serde_json::Value {
    ports
        .iter()
        .map(|p| {
            json!({
                "host_ip": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                "host_port": p.host_port, "container_port": p.container_port,
                "protocol": p.protocol,
            })
        })
        .collect()
}

fn network_json(n: &Network, endpoints: &[Endpoint], full: bool) -> serde_json::Value {
    let mut v = json!({
        "name": n.name, "id": n.id, "subnet": n.subnet.to_string(), "gateway": n.gateway,
        "internal": n.internal, "bridge": n.bridge, "created": n.created,
        "containers": endpoints.len(),
    });
    if full {
        v["endpoints"] = endpoints.iter().map(endpoint_json).collect();
        v["labels"] = json!(n.labels);
    }
    v
}

fn ls(root: &Path, as_json: bool, quiet: bool) -> Result<()> {
    let nets = networks(root);
    let list = nets.list()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for n in &list {
            writeln!(out, "{}", n.name)?;
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for n in &list {
        rows.push(network_json(n, &nets.endpoints(&n.name)?, false));
    }
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:12}  {:20}  {:18}  {:15}  {:8}  CONTAINERS",
        "NETWORK ID", "NAME", "SUBNET", "BRIDGE", "INTERNAL"
    )?;
    for (n, r) in list.iter().zip(&rows) {
        writeln!(
            out,
            "{:12}  {:20}  {:18}  {:15}  {:8}  {}",
            &n.id[..12.min(n.id.len())],
            n.name,
            n.subnet.to_string(),
            n.bridge,
            n.internal,
            r["containers"]
        )?;
    }
    Ok(())
}

/// Runs `f` for each name, reporting failures one by one; fails (125) if any failed.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("error: {n}: {e:#}");
            failed = true;
        }
    }
    if failed {
        return Err(Code(CORRAL_FAILURE).into());
    }
    Ok(())
}

fn inspect(root: &Path, names: &[String]) -> Result<()> {
    let nets = networks(root);
    let mut out = Vec::new();
    each(names, |n| {
        let net = nets.get(n)?;
        out.push(network_json(&net, &nets.endpoints(n)?, true));
        Ok(())
    })?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn rm(root: &Path, names: &[String], force: bool) -> Result<()> {
    let nets = networks(root);
    let cs = containers(root)?;
    each(names, |n| {
        let eps = nets.endpoints(n).unwrap_or_default();
        match nets.remove(n, force) {
            Ok(()) => {}
            Err(e @ NetError::InUse { .. }) => {
                bail!("{e} (corral network rm -f {n} disconnects them)")
            }
            Err(e) => return Err(e.into()),
        }
        // The disconnected containers' /etc/hosts lose the network's line.
        for ep in eps {
            let _ = write_hosts(&nets, &cs, &ep.owner);
        }
        println!("{n}");
        Ok(())
    })
}

fn prune(root: &Path) -> Result<()> {
    let nets = networks(root);
    for n in nets.list()? {
        if n.name != corral_net::store::DEFAULT_NETWORK
            && nets.endpoints(&n.name)?.is_empty()
            && nets.remove(&n.name, false).is_ok()
        {
            println!("{}", n.name);
        }
    }
    Ok(())
}

fn connect(root: &Path, network: &str, c: &str, aliases: Vec<String>) -> Result<()> {
    let nets = networks(root);
    let cs = containers(root)?;
    let id = cs.resolve(c)?;
    let s = cs.load(&id)?;
    let cfg = cs.config(&id)?;
    nets.get(network)?;
    let wanted = Attachment {
        network: network.to_owned(),
        aliases,
        ports: Vec::new(),
    };
    match (s.status, s.pid) {
        (Status::Running, Some(pid)) if cfg.network == NetworkMode::Networks => {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .with_context(|| format!("opening the network namespace of {}", s.name))?;
            let first = nets.endpoints_of(&id)?.len();
            nets.attach_container(&id, &s.name, ns.as_fd(), &[wanted], first, &exe()?)?;
            write_hosts(&nets, &cs, &id)?;
        }
        (Status::Created, _) if cfg.network == NetworkMode::Networks => {
            let dir = cs.dir(&id);
            let mut reqs = attach::load_requests(&dir)?;
            if reqs.iter().any(|r| r.network == network) {
                bail!("{} is already connected to network {network:?}", s.name);
            }
            reqs.push(wanted);
            attach::save_requests(&dir, &reqs)?;
        }
        (Status::Exited, _) => bail!("{} is not running: start a new container instead", s.name),
        _ => bail!(
            "{} was made with --network {:?}: only a container on corral's networks can join one",
            s.name,
            cfg.network
        ),
    }
    Ok(())
}

fn disconnect(root: &Path, network: &str, c: &str) -> Result<()> {
    let nets = networks(root);
    let cs = containers(root)?;
    let id = cs.resolve(c)?;
    let s = cs.load(&id)?;
    if nets.endpoint(network, &id)?.is_none() {
        // A created container: drop the request.
        let dir = cs.dir(&id);
        let mut reqs = attach::load_requests(&dir)?;
        let before = reqs.len();
        reqs.retain(|r| r.network != network);
        if reqs.len() == before {
            bail!("{} is not connected to network {network:?}", s.name);
        }
        attach::save_requests(&dir, &reqs)?;
        return Ok(());
    }
    nets.release_one(network, &id, &s.name, s.status == Status::Running)?;
    write_hosts(&nets, &cs, &id)?;
    Ok(())
}

fn exe() -> Result<std::path::PathBuf> {
    std::env::current_exe().context("finding the corral binary")
}

/// Rewrites a container's `/etc/hosts` in place (it is bind-mounted: a rename would not
/// reach the container).
fn write_hosts(nets: &Networks, cs: &Containers, id: &str) -> Result<()> {
    let s = cs.load(id)?;
    let cfg = cs.config(id)?;
    let eps = nets.endpoints_of(id)?;
    let path = cs.dir(id).join("hosts");
    std::fs::write(&path, attach::hosts_file(&cfg.hostname, &s.name, &eps))
        .with_context(|| format!("writing {}", path.display()))
}

/// Before a container on corral's networks starts: its network namespace, connected to the
/// networks it asked for, and its `/etc/hosts` and `/etc/resolv.conf`. `None` for a container
/// with `--network none|host`.
pub fn attach_for_start(root: &Path, cs: &Containers, id: &str) -> Result<Option<OwnedFd>> {
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
    let nets = networks(root);
    let ns = attach::new_netns().context("making the container's network namespace")?;
    let eps = nets.attach_container(id, &s.name, ns.as_fd(), &reqs, 0, &exe()?)?;
    let files = (|| -> Result<()> {
        std::fs::write(
            dir.join("hosts"),
            attach::hosts_file(&cfg.hostname, &s.name, &eps),
        )?;
        if let Some(r) = attach::resolv_conf(&eps) {
            std::fs::write(dir.join("resolv.conf"), r)?;
        }
        Ok(())
    })();
    if let Err(e) = files {
        let _ = nets.release(id);
        return Err(e);
    }
    Ok(Some(ns))
}

/// When a container goes: its endpoints, addresses, published ports and DNS names.
pub fn release(root: &Path, id: &str) -> Result<()> {
    networks(root).release(id).with_context(|| {
        format!(
            "disconnecting {} from its networks",
            &id[..12.min(id.len())]
        )
    })
}

/// What `corral inspect` shows of a container's networks.
pub fn settings_json(root: &Path, id: &str) -> serde_json::Value {
    let eps = networks(root).endpoints_of(id).unwrap_or_default();
    let mut nets = serde_json::Map::new();
    let mut ports = Vec::new();
    for e in &eps {
        nets.insert(
            e.network.clone(),
            json!({"ip": e.ip, "prefix": e.prefix, "gateway": e.gateway, "mac": e.mac,
                   "aliases": e.aliases, "interface": e.ifname}),
        );
        if let serde_json::Value::Array(p) = ports_json(&e.ports) {
            ports.extend(p);
        }
    }
    json!({"networks": nets, "ports": ports})
}

/// `corral __dns NETWORK_DIR ADDRESS`: a network's DNS server process. Prints `ready` once it
/// listens on ADDRESS:53, or the reason it cannot.
pub fn dns(args: &[std::ffi::OsString]) -> i32 {
    let dir = args
        .first()
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let Some(addr) = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse().ok())
    else {
        println!("usage: corral __dns NETWORK_DIR ADDRESS");
        return 125;
    };
    let ready = || {
        println!("ready");
        let _ = std::io::stdout().flush();
    };
    match corral_net::dns::serve(&dir, addr, 53, ready) {
        Ok(()) => 0,
        Err(e) => {
            println!("{e}");
            125
        }
    }
}

/// The networks `--network` flags name (repeatable, or comma-separated), or the default one
/// (`$CORRAL_DEFAULT_NETWORK`, else `corral`) when none is given: for containers and VMs.
pub fn requested(flags: &[String]) -> Vec<String> {
    let mut names: Vec<String> = flags
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        names.push(
            std::env::var("CORRAL_DEFAULT_NETWORK")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| corral_net::store::DEFAULT_NETWORK.to_owned()),
        );
    }
    names
}
