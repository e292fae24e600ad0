//! `network create`, `ls`, `inspect`, `rm`, `connect`, `disconnect`, `prune`: corral-net's
//! networks; what touches containers goes through the engine.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use corral_engine::Engine;
use corral_net::{Endpoint, Network, NetworkSpec, Networks};
use serde_json::json;

use crate::cli::NetworkCommand;
use crate::exit::{Code, CORRAL_FAILURE};

fn networks(root: &Path) -> Networks {
    Networks::open(root)
}

/// Runs a `network` verb.
pub fn run(engine: &Engine, cmd: NetworkCommand) -> Result<()> {
    let root = engine.root();
    match cmd {
        NetworkCommand::Create {
            subnet,
            gateway,
            internal,
            parent,
            ip_range,
            label,
            opt,
            disable_dns,
            name,
        } => {
            let mut labels = std::collections::BTreeMap::new();
            corral_engine::spec::parse_labels(&mut labels, label.iter().map(String::as_str))?;
            let mut options = std::collections::BTreeMap::new();
            for o in &opt {
                let (k, v) = o
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("-o {o:?}: the form is KEY=VALUE"))?;
                options.insert(k.to_owned(), v.to_owned());
            }
            let n = networks(root).create(&NetworkSpec {
                name,
                subnet,
                gateway,
                internal,
                parent,
                ip_range,
                labels,
                options,
                disable_dns,
            })?;
            engine.emit(
                corral_engine::events::Event::new("network", "create", &n.id).attr("name", &n.name),
            );
            println!("{}", n.name);
            Ok(())
        }
        NetworkCommand::Ls {
            json,
            quiet,
            filter,
            format,
        } => ls(root, json, quiet, &filter, format.as_deref()),
        NetworkCommand::Inspect { format, names } => inspect(root, &names, format.as_deref()),
        NetworkCommand::Rm { force, names } => each(&names, |n| {
            engine.remove_network(n, force)?;
            println!("{n}");
            Ok(())
        }),
        NetworkCommand::Connect {
            alias,
            network,
            container,
        } => Ok(engine.connect(&network, &container, alias)?),
        NetworkCommand::Disconnect { network, container } => {
            Ok(engine.disconnect(&network, &container)?)
        }
        NetworkCommand::Prune { force: _ } => prune(engine),
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

/// A network in the shape `docker network inspect` prints, for `--format` templates.
fn docker_network(n: &Network, endpoints: &[Endpoint]) -> serde_json::Value {
    let containers: serde_json::Map<String, serde_json::Value> = endpoints
        .iter()
        .map(|e| {
            (
                e.owner.clone(),
                json!({
                    "Name": e.container_name, "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                }),
            )
        })
        .collect();
    json!({
        "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": "bridge",
        "Internal": n.internal, "Labels": n.labels, "Options": n.options,
        "DNSEnabled": !n.disable_dns,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway}]},
        "Containers": containers,
    })
}

fn ls(
    root: &Path,
    as_json: bool,
    quiet: bool,
    filter: &[String],
    format: Option<&str>,
) -> Result<()> {
    let nets = networks(root);
    let mut list = nets.list()?;
    let mut by: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for f in filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--filter {f:?}: the form is KEY=VALUE"))?;
        if !matches!(k, "name" | "id" | "label") {
            anyhow::bail!("--filter {f:?}: unknown key {k:?} (use name, id, label)");
        }
        by.entry(k).or_default().push(v);
    }
    list.retain(|n| {
        by.iter().all(|(k, vs)| {
            vs.iter().any(|v| match *k {
                "name" => n.name.contains(v),
                "id" => n.id.starts_with(v),
                _ => match v.split_once('=') {
                    Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
                    None => n.labels.contains_key(*v),
                },
            })
        })
    });
    if let Some(f) = format.filter(|f| *f != "json") {
        let f = f.replace("\\t", "\t").replace("\\n", "\n");
        let tpl =
            corral_engine::template::Template::parse(corral_engine::template::table_body(&f))?;
        let mut out = std::io::stdout().lock();
        if let Some(h) = corral_engine::template::table_header(&f) {
            writeln!(out, "{h}")?;
        }
        for n in &list {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let row = json!({
                "Name": n.name, "ID": &n.id[..12.min(n.id.len())], "Subnet": n.subnet.to_string(),
                "Gateway": n.gateway.to_string(), "Driver": "bridge", "Internal": n.internal,
                "Labels": labels.join(","), "Containers": nets.endpoints(&n.name)?.len(),
            });
            writeln!(out, "{}", tpl.render(&row)?)?;
        }
        return Ok(());
    }
    let as_json = as_json || format == Some("json");
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

fn inspect(root: &Path, names: &[String], format: Option<&str>) -> Result<()> {
    let nets = networks(root);
    let template = format.map(crate::output::template).transpose()?;
    let mut out = Vec::new();
    each(names, |n| {
        let net = nets.get(n)?;
        let endpoints = nets.endpoints(n)?;
        match &template {
            Some(t) => println!("{}", t.render(&docker_network(&net, &endpoints))?),
            None => out.push(network_json(&net, &endpoints, true)),
        }
        Ok(())
    })?;
    if template.is_some() {
        return Ok(());
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn prune(engine: &Engine) -> Result<()> {
    // Endpoints of owners a crash left gone do not keep a network in use.
    engine.reconcile_networks();
    let nets = networks(engine.root());
    for n in nets.list()? {
        if n.name != corral_net::store::DEFAULT_NETWORK
            && nets.endpoints(&n.name)?.is_empty()
            && engine.remove_network(&n.name, false).is_ok()
        {
            println!("{}", n.name);
        }
    }
    Ok(())
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
