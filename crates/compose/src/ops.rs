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

/// A VM of the project (a service with `isolation: vm`). VMs carry no labels, so they are
/// found by name: `PROJECT-SERVICE-N` (or the service's `container_name`).
#[derive(Debug, Clone)]
pub struct ProjectVm {
    /// The VM's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The service it runs.
    pub service: String,
    /// The replica number.
    pub number: u32,
    /// Whether it runs (or boots).
    pub running: bool,
    /// `running`, `stopped`, `created` ..., as `corral vm ls` says.
    pub status: String,
}

/// The project's VMs (of `services` when given), by name.
pub fn vms(
    engine: &Engine,
    p: &Project,
    services: Option<&[String]>,
) -> Result<Vec<ProjectVm>, ComposeError> {
    let wanted: Vec<&Service> = p
        .services
        .values()
        .filter(|s| s.isolation.as_deref() == Some("vm"))
        .filter(|s| services.is_none_or(|l| l.is_empty() || l.contains(&s.name)))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let store = engine.vms();
    let mut out = Vec::new();
    for id in store
        .ids()
        .map_err(|e| ComposeError::Engine(e.to_string()))?
    {
        let Ok(cfg) = store.config(&id) else { continue };
        let Some((s, n)) = wanted.iter().find_map(|s| {
            if s.container_name.as_deref() == Some(cfg.name.as_str()) {
                return Some((s, 1));
            }
            let n = cfg
                .name
                .strip_prefix(&format!("{}-{}-", p.name, s.name))?
                .parse()
                .ok()?;
            Some((s, n))
        }) else {
            continue;
        };
        let st = corral_vm::lifecycle::current_state(&store, &id)
            .map_err(|e| ComposeError::Engine(e.to_string()))?;
        let status = st.status.as_str().to_owned();
        out.push(ProjectVm {
            id,
            name: cfg.name,
            service: s.name.clone(),
            number: n,
            running: matches!(status.as_str(), "running" | "starting"),
            status,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Stops (if it runs) and removes one of the project's VMs.
pub fn remove_vm(
    engine: &Engine,
    vm: &ProjectVm,
    timeout: Option<u64>,
) -> Result<(), ComposeError> {
    if vm.running {
        engine
            .stop_vm(
                &vm.id,
                std::time::Duration::from_secs(timeout.unwrap_or(10)),
            )
            .map_err(|e| ComposeError::Engine(format!("stopping {}: {e}", vm.name)))?;
    }
    engine
        .remove_vm(&vm.id, true)
        .map_err(|e| ComposeError::Engine(format!("removing {}: {e}", vm.name)))
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
    remove_container_within(engine, c, volumes, None)
}

/// [`remove_container`], stopping within `timeout` seconds (`None`: the grace period).
pub fn remove_container_within(
    engine: &Engine,
    c: &ContainerView,
    volumes: bool,
    timeout: Option<u64>,
) -> Result<(), ComposeError> {
    if c.state.status == corral_container::Status::Running {
        engine
            .stop(&c.state.id, timeout)
            .map_err(|e| ComposeError::Engine(format!("stopping {}: {e}", c.state.name)))?;
    }
    engine
        .remove(&c.state.id, true, volumes)
        .map_err(|e| ComposeError::Engine(format!("removing {}: {e}", c.state.name)))
}

/// `down`: the project's containers stopped and removed, its networks removed, and with
/// `volumes` its volumes (and the containers' anonymous ones).
/// `down`'s flags.
#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    /// `-v`: the project's volumes and the containers' anonymous ones.
    pub volumes: bool,
    /// `--remove-orphans`.
    pub remove_orphans: bool,
    /// `-t`: seconds each container has to stop (`None`: its grace period).
    pub timeout: Option<u64>,
    /// `--rmi`: `local` (images built for a service without an `image:` name) or `all`.
    pub rmi: Option<String>,
}

/// `down`: the project's containers and VMs stopped and removed, its networks removed, with
/// `volumes` its volumes (and the containers' anonymous ones), with `rmi` its images.
pub fn down(
    engine: &Engine,
    p: &Project,
    o: &DownOptions,
    out: &dyn Out,
) -> Result<(), ComposeError> {
    let (volumes, remove_orphans) = (o.volumes, o.remove_orphans);
    let mut images: Vec<String> = Vec::new();
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
        if !images.contains(&c.state.image) {
            images.push(c.state.image.clone());
        }
        doomed.push(c);
    }
    for vm in vms(engine, p, None)? {
        remove_vm(engine, &vm, o.timeout)?;
        out.line(&format!("Container {}  Removed", vm.name));
    }
    // All at once: each waits out its own grace period, not the sum of them.
    let results: Vec<Result<(), ComposeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = doomed
            .iter()
            .map(|c| {
                s.spawn(move || {
                    remove_container_within(engine, c, volumes, o.timeout)?;
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
    if let Some(rmi) = &o.rmi {
        if rmi != "local" && rmi != "all" {
            return Err(ComposeError::Invalid(format!("--rmi {rmi}: local or all")));
        }
        // The services' images, whether or not a container used them.
        for s in p.services.values() {
            if rmi == "local" && s.image.is_some() {
                continue;
            }
            let img = plan::image_of(p, s);
            if !images.contains(&img) {
                images.push(img);
            }
        }
        if rmi == "local" {
            let local: Vec<String> = p
                .services
                .values()
                .filter(|s| s.image.is_none())
                .map(|s| plan::image_of(p, s))
                .collect();
            images.retain(|i| local.contains(i));
        }
        let store = engine.images().map_err(ComposeError::engine)?;
        for img in images {
            if store.resolve(&img).is_err() {
                continue;
            }
            match engine.remove_image(&img, false) {
                Ok(_) => out.line(&format!("Image {img}  Removed")),
                Err(e) => out.warn(&format!("image {img} not removed: {e}")),
            }
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
    let o = VerbOptions {
        signal: signal.to_owned(),
        ..Default::default()
    };
    each_with(engine, p, services, verb, &o, out)
}

/// The flags of [`each_with`]'s verbs.
#[derive(Debug, Clone, Default)]
pub struct VerbOptions {
    /// `kill`'s signal.
    pub signal: String,
    /// `stop` and `restart`: seconds to wait before SIGKILL (`None`: the grace period).
    pub timeout: Option<u64>,
    /// `rm -v`: the containers' anonymous volumes too.
    pub volumes: bool,
}

/// The services that `restart` of `services` restarts: them, and the services that depend
/// on one of them with `restart: true`, transitively (docker compose's rule).
pub fn with_restart_dependents(p: &Project, services: &[String]) -> Vec<String> {
    let mut set: Vec<String> = services.to_vec();
    loop {
        let more: Vec<String> = p
            .services
            .values()
            .filter(|s| !set.contains(&s.name))
            .filter(|s| {
                s.depends_on
                    .iter()
                    .any(|(d, dep)| dep.restart && set.contains(d))
            })
            .map(|s| s.name.clone())
            .collect();
        if more.is_empty() {
            return set;
        }
        set.extend(more);
    }
}

/// A verb on the project's containers and VMs (of `services` when given): `stop`, `start`,
/// `restart`, `kill`, `rm`, `pause`, `unpause`. `restart` of named services restarts their
/// dependents with `restart: true` too.
pub fn each_with(
    engine: &Engine,
    p: &Project,
    services: &[String],
    verb: &str,
    o: &VerbOptions,
    out: &dyn Out,
) -> Result<(), ComposeError> {
    let expanded;
    let services = if verb == "restart" && !services.is_empty() {
        expanded = with_restart_dependents(p, services);
        &expanded[..]
    } else {
        services
    };
    let signal = o.signal.as_str();
    let all = !matches!(verb, "stop" | "kill" | "pause" | "unpause");
    each_vm(engine, p, services, verb, o, out)?;
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
            "stop" => engine.stop(id, o.timeout),
            "start" => {
                if c.state.status == corral_container::Status::Running {
                    continue;
                }
                engine.start(id, false).map(|_| ())
            }
            "restart" => engine.restart(id, o.timeout),
            "kill" => engine.kill(id, signal),
            "pause" => engine.set_paused(id, true),
            "unpause" => engine.set_paused(id, false),
            "rm" => {
                if c.state.status == corral_container::Status::Running {
                    continue;
                }
                engine.remove(id, false, o.volumes)
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

/// [`each_with`]'s verb on the project's VMs (pause and unpause are not done for VMs).
fn each_vm(
    engine: &Engine,
    p: &Project,
    services: &[String],
    verb: &str,
    o: &VerbOptions,
    out: &dyn Out,
) -> Result<(), ComposeError> {
    let grace = std::time::Duration::from_secs(o.timeout.unwrap_or(10));
    for vm in vms(engine, p, Some(services))? {
        let r = match verb {
            "stop" if vm.running => engine.stop_vm(&vm.id, grace),
            "kill" if vm.running => engine.stop_vm(&vm.id, std::time::Duration::ZERO),
            "start" if !vm.running => engine.start_vm(&vm.id, false).map(|_| ()),
            "restart" => {
                let stopped = if vm.running {
                    engine.stop_vm(&vm.id, grace)
                } else {
                    Ok(())
                };
                stopped.and_then(|_| engine.start_vm(&vm.id, false).map(|_| ()))
            }
            "rm" if !vm.running => engine.remove_vm(&vm.id, true),
            "pause" | "unpause" => {
                out.warn(&format!("{verb} {}: a VM is not paused", vm.name));
                continue;
            }
            _ => continue,
        };
        r.map_err(|e| ComposeError::Engine(format!("{verb} {}: {e}", vm.name)))?;
        let done = match verb {
            "stop" => "Stopped",
            "kill" => "Killed",
            "start" => "Started",
            "restart" => "Restarted",
            _ => "Removed",
        };
        out.line(&format!("Container {}  {done}", vm.name));
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
