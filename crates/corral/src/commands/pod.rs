//! `pod ...`: flags to the engine's pods, results to the terminal.

use std::io::Write;

use anyhow::Result;
use corral_engine::pods::{Pod, PodSpec};
use corral_engine::Engine;
use serde_json::json;

use crate::cli::PodCommand;
use crate::exit::{Code, CORRAL_FAILURE};

/// Runs a `pod` verb.
pub fn run(engine: &Engine, cmd: PodCommand) -> Result<()> {
    match cmd {
        PodCommand::Create(create) => {
            let crate::cli::PodCreate {
                name,
                hostname,
                label,
                network,
                network_alias,
                publish,
                dns_search,
                dns_option,
                start,
                isolation,
                cpus,
                memory,
            } = *create;
            let isolation = match isolation.as_str() {
                "container" | "default" => corral_engine::spec::Isolation::Container,
                "vm" => corral_engine::spec::Isolation::Vm,
                other => anyhow::bail!("--isolation {other:?}: expected container or vm"),
            };
            let memory =
                match memory {
                    None => None,
                    Some(m) => Some(corral_container::config::parse_size(&m).ok_or_else(|| {
                        anyhow::anyhow!("--memory {m:?}: a size such as 512m or 2g")
                    })?),
                };
            let mut labels = std::collections::BTreeMap::new();
            corral_engine::spec::parse_labels(&mut labels, label.iter().map(String::as_str))?;
            let pod = engine.create_pod(&PodSpec {
                name,
                hostname,
                labels,
                networking: corral_engine::spec::Networking {
                    networks: network,
                    aliases: network_alias,
                    publish,
                    publish_all: false,
                    expose: Vec::new(),
                    ip: None,
                    mac: None,
                    port_group: None,
                },
                isolation,
                cpus,
                memory,
                dns_search,
                dns_options: dns_option,
            })?;
            if start {
                if let Err(e) = engine.start_pod(&pod.id) {
                    let _ = engine.remove_pod(&pod.id, true);
                    return Err(e.into());
                }
            }
            println!("{}", pod.id);
            Ok(())
        }
        PodCommand::Ls { json, quiet } => ls(engine, json, quiet),
        PodCommand::Inspect { pods } => {
            let mut out = Vec::new();
            each(&pods, false, |p| {
                let pod = engine.resolve_pod(p)?;
                out.push(pod_json(engine, &pod)?);
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        PodCommand::Start { pods } => each(&pods, true, |p| {
            let pod = engine.start_pod(p)?;
            for id in engine.pod_members(&pod.id)? {
                let s = engine.containers()?.load(&id)?;
                if s.status != corral_container::Status::Running {
                    engine.start(&id, false)?;
                }
            }
            Ok(())
        }),
        PodCommand::Stop { time, pods } => each(&pods, true, |p| Ok(engine.stop_pod(p, time)?)),
        PodCommand::Rm { force, pods } => each(&pods, true, |p| Ok(engine.remove_pod(p, force)?)),
    }
}

fn each(names: &[String], echo: bool, mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => {
                if echo {
                    println!("{n}");
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {n}: {e:#}");
            }
        }
    }
    if failed {
        return Err(Code(CORRAL_FAILURE).into());
    }
    Ok(())
}

fn pod_json(engine: &Engine, p: &Pod) -> Result<serde_json::Value> {
    let cs = engine.containers()?;
    let members: Vec<_> = engine
        .pod_members(&p.id)?
        .iter()
        .filter_map(|id| cs.load(id).ok())
        .map(|s| {
            json!({"Id": s.id, "Name": s.name, "State": match s.status {
                corral_container::Status::Created => "created",
                corral_container::Status::Running => "running",
                corral_container::Status::Exited => "exited",
            }})
        })
        .collect();
    // A VM pod's endpoints are its VM's.
    let owner = p.vm.as_deref().unwrap_or(&p.id);
    let eps = engine.networks().endpoints_of(owner).unwrap_or_default();
    Ok(json!({
        "Id": p.id, "Name": p.name, "Created": p.created, "Hostname": p.hostname,
        "State": if p.running() { "Running" } else if p.sandbox.is_some() || p.started { "Exited" } else { "Created" },
        "Labels": p.labels,
        "Isolation": p.isolation,
        "VM": p.vm,
        "SharedNamespaces": ["net", "ipc", "uts"],
        "InfraPid": p.sandbox.filter(|s| s.alive()).map(|s| s.pid),
        "NumContainers": members.len(),
        "Containers": members,
        "Networks": p.networking.networks,
        "Ports": corral_engine::views::ports_column(&eps),
        "IPAddress": eps.first().map(|e| e.ip.to_string()),
    }))
}

fn ls(engine: &Engine, as_json: bool, quiet: bool) -> Result<()> {
    let pods = engine.pods()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for p in &pods {
            writeln!(out, "{}", &p.id[..12])?;
        }
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = pods
        .iter()
        .map(|p| pod_json(engine, p))
        .collect::<Result<_>>()?;
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:12}  {:20}  {:8}  {:25}  {:>10}  PORTS",
        "POD ID", "NAME", "STATUS", "CREATED", "CONTAINERS"
    )?;
    for (p, r) in pods.iter().zip(&rows) {
        writeln!(
            out,
            "{:12}  {:20}  {:8}  {:25}  {:>10}  {}",
            &p.id[..12],
            p.name,
            r["State"].as_str().unwrap_or(""),
            p.created,
            r["NumContainers"],
            r["Ports"].as_str().unwrap_or("")
        )?;
    }
    Ok(())
}
