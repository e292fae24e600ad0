//! The project's objects in the engine: its containers (found by their labels), networks and
//! volumes made and removed, images built through corral-build, and the verbs on containers
//! (`stop`, `start`, `restart`, `kill`, `rm`, `down`), each through the engine.

use std::collections::BTreeMap;

use corral_engine::containers::PullOptions;
use corral_engine::events::Event;
use corral_engine::list::ContainerFilter;
use corral_engine::spec::ContainerSpec;
use corral_engine::views::ContainerView;
use corral_engine::Engine;

use crate::model::{Project, Service};
use crate::plan::{self, NETWORK, PROJECT, SERVICE, VOLUME};
use crate::ComposeError;

/// Where `up`, `down` and the others report.
pub trait Out: Sync {
    /// A line of progress (`Container web-1  Started`).
    fn line(&self, text: &str);
    /// A warning.
    fn warn(&self, text: &str);
}

/// The project's containers (of `services` when given), by replica number; with `all`, the
/// stopped ones too.
pub fn containers(
    engine: &Engine,
    project: &str,
    services: Option<&[String]>,
    all: bool,
) -> Result<Vec<ContainerView>, ComposeError> {
    let filter = ContainerFilter::parse(&[format!("label={PROJECT}={project}")])
        .map_err(ComposeError::engine)?;
    let mut v = engine.list(all, &filter).map_err(ComposeError::engine)?;
    if let Some(svcs) = services.filter(|s| !s.is_empty()) {
        v.retain(|c| {
            c.record
                .labels
                .get(SERVICE)
                .is_some_and(|s| svcs.contains(s))
        });
    }
    v.sort_by(|a, b| a.state.name.cmp(&b.state.name));
    Ok(v)
}

/// Makes the project's networks that do not exist; an external one must exist.
pub fn ensure_networks(engine: &Engine, p: &Project, out: &dyn Out) -> Result<(), ComposeError> {
    let nets = engine.networks();
    let have: Vec<String> = nets
        .list()
        .map_err(|e| ComposeError::Engine(e.to_string()))?
        .into_iter()
        .map(|n| n.name)
        .collect();
    for (key, n) in &p.networks {
        if have.contains(&n.name) {
            continue;
        }
        if n.external {
            return Err(ComposeError::Invalid(format!(
                "network {} is declared external but does not exist: create it with `corral network create {}`",
                n.name, n.name
            )));
        }
        let mut labels = n.labels.clone();
        labels.insert(PROJECT.into(), p.name.clone());
        labels.insert(NETWORK.into(), key.clone());
        nets.create(&corral_net::NetworkSpec {
            name: n.name.clone(),
            subnet: n.subnet.clone(),
            internal: n.internal,
            labels,
            ..Default::default()
        })
        .map_err(|e| ComposeError::Engine(format!("creating network {}: {e}", n.name)))?;
        engine.emit(Event::new("network", "create", &n.name).attr("name", &n.name));
        out.line(&format!("Network {}  Created", n.name));
    }
    Ok(())
}

/// Makes the project's volumes that do not exist; an external one must exist.
pub fn ensure_volumes(engine: &Engine, p: &Project, out: &dyn Out) -> Result<(), ComposeError> {
    let vols = engine.volumes().map_err(ComposeError::engine)?;
    let have: Vec<String> = vols
        .list()
        .map_err(|e| ComposeError::Engine(e.to_string()))?
        .into_iter()
        .map(|v| v.name)
        .collect();
    for (key, v) in &p.volumes {
        if have.contains(&v.name) {
            continue;
        }
        if v.external {
            return Err(ComposeError::Invalid(format!(
                "volume {} is declared external but does not exist: create it with `corral volume create {}`",
                v.name, v.name
            )));
        }
        let mut labels = v.labels.clone();
        labels.insert(PROJECT.into(), p.name.clone());
        labels.insert(VOLUME.into(), key.clone());
        vols.create_labelled(&v.name, labels)
            .map_err(|e| ComposeError::Engine(format!("creating volume {}: {e}", v.name)))?;
        engine.emit(Event::new("volume", "create", &v.name).attr("name", &v.name));
        out.line(&format!("Volume {}  Created", v.name));
    }
    Ok(())
}

/// Builds a service's image with corral-build, tagged as the service's image.
pub fn build_service(
    engine: &Engine,
    p: &Project,
    s: &Service,
    no_cache: bool,
    out: &dyn Out,
) -> Result<(), ComposeError> {
    let Some(b) = &s.build else {
        return Ok(());
    };
    let tag = plan::image_of(p, s);
    out.line(&format!("Service {}  Building", s.name));
    struct Quiet;
    impl corral_build::Progress for Quiet {
        fn line(&self, _: &str) {}
    }
    let built = corral_build::build(
        engine,
        &corral_build::BuildOptions {
            context: b.context.clone().into(),
            dockerfile: b
                .dockerfile
                .as_ref()
                .map(|d| std::path::Path::new(&b.context).join(d)),
            build_args: b.args.clone(),
            target: b.target.clone(),
            no_cache,
            quiet: true,
            network: "host".into(),
            ..Default::default()
        },
        &Quiet,
    )
    .map_err(|e| ComposeError::Build(format!("service {}: {e}", s.name)))?;
    let store = engine.images().map_err(ComposeError::engine)?;
    let name = corral_image::ImageName::parse(&tag)
        .map_err(|e| ComposeError::Invalid(format!("service {}: image name {tag}: {e}", s.name)))?;
    store
        .set_name(&name, &built.manifest)
        .map_err(|e| ComposeError::Engine(e.to_string()))?;
    out.line(&format!("Service {}  Built", s.name));
    Ok(())
}

/// Writes the project's inline configs and secrets (`content:`, `environment:`) as files
/// under `ROOT/compose/PROJECT/{configs,secrets}/NAME` (secrets 0400, configs 0444), which
/// services bind read-only; returns that directory. `down` removes it.
pub fn write_files(engine: &Engine, p: &Project) -> Result<std::path::PathBuf, ComposeError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = engine.root().join("compose").join(&p.name);
    for (kind, defs, mode) in [
        ("configs", &p.configs, 0o444),
        ("secrets", &p.secrets, 0o400),
    ] {
        for (name, def) in defs.iter() {
            if let Some(var) = &def.missing {
                let used = p.services.values().any(|s| {
                    s.files
                        .iter()
                        .any(|u| &u.source == name && kind.starts_with(u.kind.as_str()))
                });
                if used {
                    return Err(ComposeError::Invalid(format!(
                        "{kind}.{name}.environment: the environment has no {var}"
                    )));
                }
                continue;
            }
            let Some(content) = &def.content else {
                continue;
            };
            let d = dir.join(kind);
            let io =
                |e: std::io::Error| ComposeError::Engine(format!("writing {kind} {name}: {e}"));
            std::fs::create_dir_all(&d).map_err(io)?;
            let path = d.join(name);
            let tmp = d.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).map_err(io)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
        }
    }
    Ok(dir)
}

/// Creates and starts one container.
pub fn create_and_start(engine: &Engine, spec: &ContainerSpec) -> Result<String, ComposeError> {
    let name = spec.name.clone().unwrap_or_default();
    if spec.isolation == corral_engine::spec::Isolation::Vm {
        let vm = corral_engine::vms::isolated_spec(spec).map_err(ComposeError::engine)?;
        let cfg = engine.create_vm(&vm).map_err(ComposeError::engine)?;
        engine
            .start_vm(&cfg.id, false)
            .map_err(|e| ComposeError::Engine(format!("starting {name}: {e}")))?;
        return Ok(cfg.id);
    }
    let c = engine
        .create(spec, &PullOptions::default())
        .map_err(|e| ComposeError::Engine(format!("creating {name}: {e}")))?;
    if let Err(e) = engine.start(&c.id, false) {
        return Err(ComposeError::Engine(format!("starting {name}: {e}")));
    }
    Ok(c.id)
}

/// Stops (with its grace period) and removes a container, with its anonymous volumes when
/// `volumes`.
pub fn remove_container(
    engine: &Engine,
    c: &ContainerView,
    volumes: bool,
) -> Result<(), ComposeError> {
    if c.state.status == corral_container::Status::Running {
        engine
            .stop(&c.state.id, None)
            .map_err(|e| ComposeError::Engine(format!("stopping {}: {e}", c.state.name)))?;
    }
    engine
        .remove(&c.state.id, true, volumes)
        .map_err(|e| ComposeError::Engine(format!("removing {}: {e}", c.state.name)))
}

/// `down`: the project's containers stopped and removed, its networks removed, and with
/// `volumes` its volumes (and the containers' anonymous ones).
pub fn down(
    engine: &Engine,
    p: &Project,
    volumes: bool,
    remove_orphans: bool,
    out: &dyn Out,
) -> Result<(), ComposeError> {
    let mut doomed = Vec::new();
    for c in containers(engine, &p.name, None, true)? {
        let svc = c.record.labels.get(SERVICE).cloned().unwrap_or_default();
        if !p.services.contains_key(&svc) && !remove_orphans {
            out.warn(&format!(
                "found orphan container ({}) for this project: remove it with --remove-orphans",
                c.state.name
            ));
            continue;
        }
        doomed.push(c);
    }
    // All at once: each waits out its own grace period, not the sum of them.
    let results: Vec<Result<(), ComposeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = doomed
            .iter()
            .map(|c| {
                s.spawn(move || {
                    remove_container(engine, c, volumes)?;
                    out.line(&format!("Container {}  Removed", c.state.name));
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ComposeError::Engine("a removal panicked".into())))
            })
            .collect()
    });
    results
        .into_iter()
        .collect::<Result<Vec<()>, ComposeError>>()?;
    for n in p.networks.values().filter(|n| !n.external) {
        let exists = engine
            .networks()
            .list()
            .map_err(|e| ComposeError::Engine(e.to_string()))?
            .iter()
            .any(|x| x.name == n.name);
        if exists {
            engine
                .remove_network(&n.name, false)
                .map_err(|e| ComposeError::Engine(format!("removing network {}: {e}", n.name)))?;
            out.line(&format!("Network {}  Removed", n.name));
        }
    }
    let _ = std::fs::remove_dir_all(engine.root().join("compose").join(&p.name));
    if volumes {
        let vols = engine.volumes().map_err(ComposeError::engine)?;
        let cs = engine.containers().map_err(ComposeError::engine)?;
        let have: Vec<String> = vols
            .list()
            .map_err(|e| ComposeError::Engine(e.to_string()))?
            .into_iter()
            .map(|v| v.name)
            .collect();
        for v in p
            .volumes
            .values()
            .filter(|v| !v.external && have.contains(&v.name))
        {
            vols.remove(&v.name, &cs)
                .map_err(|e| ComposeError::Engine(format!("removing volume {}: {e}", v.name)))?;
            engine.emit(Event::new("volume", "destroy", &v.name).attr("name", &v.name));
            out.line(&format!("Volume {}  Removed", v.name));
        }
    }
    Ok(())
}

/// A verb on the project's containers (of `services` when given): `stop`, `start`,
/// `restart`, `kill`, `rm`, `pause`, `unpause`.
pub fn each(
    engine: &Engine,
    p: &Project,
    services: &[String],
    verb: &str,
    signal: &str,
    out: &dyn Out,
) -> Result<(), ComposeError> {
    let all = !matches!(verb, "stop" | "kill" | "pause" | "unpause");
    let mut list = containers(engine, &p.name, Some(services), all)?;
    // Stop in reverse dependency order, start in order.
    let order = crate::order::order(p, &p.services.keys().cloned().collect::<Vec<_>>())?;
    let rank: BTreeMap<String, usize> =
        order.into_iter().enumerate().map(|(i, s)| (s, i)).collect();
    list.sort_by_key(|c| {
        rank.get(c.record.labels.get(SERVICE).map_or("", String::as_str))
            .copied()
            .unwrap_or(usize::MAX)
    });
    if matches!(verb, "stop" | "kill" | "rm") {
        list.reverse();
    }
    for c in list {
        let id = &c.state.id;
        let r = match verb {
            "stop" => engine.stop(id, None),
            "start" => {
                if c.state.status == corral_container::Status::Running {
                    continue;
                }
                engine.start(id, false).map(|_| ())
            }
            "restart" => engine.restart(id, None),
            "kill" => engine.kill(id, signal),
            "pause" => engine.set_paused(id, true),
            "unpause" => engine.set_paused(id, false),
            "rm" => {
                if c.state.status == corral_container::Status::Running {
                    continue;
                }
                engine.remove(id, false, true)
            }
            other => return Err(ComposeError::Invalid(format!("unknown verb {other}"))),
        };
        r.map_err(|e| ComposeError::Engine(format!("{verb} {}: {e}", c.state.name)))?;
        let done = match verb {
            "stop" => "Stopped",
            "start" => "Started",
            "restart" => "Restarted",
            "kill" => "Killed",
            "pause" => "Paused",
            "unpause" => "Unpaused",
            _ => "Removed",
        };
        out.line(&format!("Container {}  {done}", c.state.name));
    }
    Ok(())
}

/// The projects that have containers here: name, running and total containers, config files.
pub fn projects(engine: &Engine) -> Result<Vec<(String, usize, usize, String)>, ComposeError> {
    let all = engine
        .list(true, &ContainerFilter::default())
        .map_err(ComposeError::engine)?;
    let mut by: BTreeMap<String, (usize, usize, String)> = BTreeMap::new();
    for c in all {
        let Some(p) = c.record.labels.get(PROJECT) else {
            continue;
        };
        let e = by.entry(p.clone()).or_insert((0, 0, String::new()));
        e.1 += 1;
        if c.state.status == corral_container::Status::Running {
            e.0 += 1;
        }
        if let Some(f) = c.record.labels.get(plan::FILES) {
            e.2 = f.clone();
        }
    }
    Ok(by.into_iter().map(|(n, (r, t, f))| (n, r, t, f)).collect())
}
