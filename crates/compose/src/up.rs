//! `up`: networks and volumes made, images built or pulled, then each service in dependency
//! order — after its dependencies' conditions hold (`service_started`, `service_healthy`,
//! `service_completed_successfully`) — brought to its replicas: containers whose change hash
//! matches are kept (started if stopped), the others recreated, and so are the services that
//! depend on a recreated one (a service left out of this `up` that depends on it with
//! `restart: true` is restarted). Orphans (containers of services no longer in the files) are
//! removed with `--remove-orphans`, reported otherwise. `--wait` waits for every service to be
//! running, and healthy when it has a health check.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use corral_engine::containers::PullOptions;
use corral_engine::events::Event;
use corral_engine::views::ContainerView;
use corral_engine::Engine;

use crate::model::{Project, Service};
use crate::ops::{self, Out};
use crate::plan::{self, HASH, NUMBER, SERVICE};
use crate::ComposeError;

/// `up`'s flags.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Only these services (and, unless `no_deps`, what they depend on).
    pub services: Vec<String>,
    /// Do not start dependencies.
    pub no_deps: bool,
    /// Recreate every container.
    pub force_recreate: bool,
    /// Never recreate (start what exists).
    pub no_recreate: bool,
    /// Remove containers of services no longer in the files.
    pub remove_orphans: bool,
    /// `--scale SERVICE=N`.
    pub scale: BTreeMap<String, u32>,
    /// Build images before starting (`--build`).
    pub build: bool,
    /// Wait for running (and healthy) services.
    pub wait: bool,
    /// How long `--wait` and `service_healthy` dependencies wait.
    pub timeout: Duration,
    /// Labels for every container (the config files, the working directory).
    pub labels: BTreeMap<String, String>,
    /// Where the inline configs and secrets are (set by `up` itself).
    pub files_dir: Option<std::path::PathBuf>,
}

/// What `up` did, per container: (name, what: Created, Recreated, Started, Running, Removed,
/// Restarted).
pub type Report = Vec<(String, &'static str)>;

fn number(v: &ContainerView) -> u32 {
    v.record
        .labels
        .get(NUMBER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits for `s`'s containers to meet a dependency `condition`.
pub fn wait_condition(
    engine: &Engine,
    p: &Project,
    service: &str,
    condition: &str,
    timeout: Duration,
) -> Result<(), ComposeError> {
    let deadline = Instant::now() + timeout;
    if p.services.get(service).and_then(|s| s.isolation.as_deref()) == Some("vm") {
        // A VM service's replicas are VMs: started is running; they have no health check or
        // exit code here, so `service_healthy` waits for running and `completed` for stopped.
        loop {
            let vms = ops::vms(engine, p, Some(&[service.to_owned()]))?;
            let done = condition == "service_completed_successfully";
            if !vms.is_empty() && vms.iter().all(|v| v.running != done) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ComposeError::Dependency(format!(
                    "service {service} (VMs) was not {} within {}s",
                    if done { "stopped" } else { "running" },
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    loop {
        let cs = ops::containers(engine, &p.name, Some(&[service.to_owned()]), true)?;
        let met = !cs.is_empty()
            && cs.iter().all(|c| match condition {
                "service_healthy" => c.health.as_ref().is_some_and(|h| h.status == "healthy"),
                "service_completed_successfully" => {
                    c.state.status == corral_container::Status::Exited
                        && c.state.exit_code == Some(0)
                }
                _ => {
                    c.state.status == corral_container::Status::Running
                        || c.state.status == corral_container::Status::Exited
                }
            });
        if met {
            return Ok(());
        }
        for c in &cs {
            if condition == "service_completed_successfully"
                && c.state.status == corral_container::Status::Exited
                && c.state.exit_code != Some(0)
            {
                return Err(ComposeError::Dependency(format!(
                    "service {service} did not complete successfully: {} exited with code {}",
                    c.state.name,
                    c.state.exit_code.unwrap_or(-1)
                )));
            }
            if condition == "service_healthy" {
                if c.state.status == corral_container::Status::Exited
                    && c.state.restart_count == 0
                    && !c.state.stop_requested
                {
                    let may_restart =
                        c.config.restart != corral_container::config::RestartPolicy::No;
                    if !may_restart {
                        return Err(ComposeError::Dependency(format!(
                            "service {service} exited (code {}) before it was healthy",
                            c.state.exit_code.unwrap_or(-1)
                        )));
                    }
                }
                if c.record.healthcheck.is_none() {
                    return Err(ComposeError::Dependency(format!(
                        "service {service} has no healthcheck: depends_on condition service_healthy cannot be met"
                    )));
                }
            }
        }
        if Instant::now() >= deadline {
            let what = match condition {
                "service_healthy" => "healthy",
                "service_completed_successfully" => "completed",
                _ => "running",
            };
            return Err(ComposeError::Dependency(format!(
                "service {service} was not {what} within {}s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Brings the project up.
pub fn up(
    engine: &Engine,
    p: &Project,
    o: &UpOptions,
    out: &dyn Out,
) -> Result<Report, ComposeError> {
    let mut report = Report::new();
    for s in &o.services {
        if !p.services.contains_key(s) {
            return Err(ComposeError::Invalid(format!("no such service: {s}")));
        }
    }
    let wanted: Vec<String> = if o.services.is_empty() {
        p.services.keys().cloned().collect()
    } else {
        o.services.clone()
    };
    let order = if o.no_deps {
        wanted.clone()
    } else {
        crate::order::order(p, &wanted)?
    };
    plan::check_external(p, &order)?;
    ops::ensure_networks(engine, p, out)?;
    ops::ensure_volumes(engine, p, out)?;
    let mut o = o.clone();
    o.files_dir = Some(ops::write_files(engine, p)?);
    let o = &o;
    for name in &order {
        let s = &p.services[name];
        if s.build.is_some()
            && (o.build
                || engine
                    .images()
                    .map_err(ComposeError::engine)?
                    .resolve(&plan::image_of(p, s))
                    .is_err())
        {
            ops::build_service(engine, p, s, false, out)?;
        }
    }
    let existing = ops::containers(engine, &p.name, None, true)?;
    // Orphans: containers of services the files no longer have.
    for c in &existing {
        let svc = c.record.labels.get(SERVICE).cloned().unwrap_or_default();
        if !p.services.contains_key(&svc)
            && c.record.labels.get(plan::ONEOFF).map(String::as_str) != Some("True")
        {
            if o.remove_orphans {
                ops::remove_container(engine, c, true)?;
                out.line(&format!("Container {}  Removed", c.state.name));
                report.push((c.state.name.clone(), "Removed"));
            } else {
                out.warn(&format!(
                    "found orphan container ({}) for this project: remove it with --remove-orphans",
                    c.state.name
                ));
            }
        }
    }
    let mut recreated: BTreeSet<String> = BTreeSet::new();
    for name in &order {
        let s = &p.services[name];
        for (dep, d) in &s.depends_on {
            if !p.services.contains_key(dep) {
                continue;
            }
            wait_condition(engine, p, dep, &d.condition, o.timeout).map_err(|e| {
                ComposeError::Dependency(format!("service {name} depends on {dep}: {e}"))
            })?;
        }
        let dep_recreated = crate::order::dependencies(p, name)
            .iter()
            .any(|d| recreated.contains(d));
        let changed = converge(engine, p, s, o, dep_recreated, &existing, out, &mut report)?;
        if changed {
            recreated.insert(name.clone());
        }
    }
    // Services left out of this `up` that depend on a recreated one with `restart: true`
    // are restarted (docker compose's rule); those in it were recreated with it already.
    let recreated: Vec<String> = recreated.into_iter().collect();
    for name in ops::with_restart_dependents(p, &recreated) {
        if order.contains(&name) || recreated.contains(&name) {
            continue;
        }
        for c in ops::containers(engine, &p.name, Some(std::slice::from_ref(&name)), false)? {
            engine
                .restart(&c.state.id, None)
                .map_err(|e| ComposeError::Engine(format!("restarting {}: {e}", c.state.name)))?;
            out.line(&format!("Container {}  Restarted", c.state.name));
            report.push((c.state.name.clone(), "Restarted"));
        }
    }
    if o.wait {
        for name in &order {
            let s = &p.services[name];
            let cond =
                if s.healthcheck.as_ref().is_some_and(|h| {
                    !h.disable && h.test.first().map(String::as_str) != Some("NONE")
                }) {
                    "service_healthy"
                } else {
                    "service_started"
                };
            wait_condition(engine, p, name, cond, o.timeout)?;
        }
    }
    Ok(report)
}

/// Brings one service to its replicas; returns whether any container was (re)created.
#[allow(clippy::too_many_arguments)]
fn converge(
    engine: &Engine,
    p: &Project,
    s: &Service,
    o: &UpOptions,
    dep_recreated: bool,
    existing: &[ContainerView],
    out: &dyn Out,
    report: &mut Report,
) -> Result<bool, ComposeError> {
    let image = plan::image_of(p, s);
    let (_, img) = engine
        .image_for_run(
            &image,
            if s.build.is_some() {
                corral_engine::spec::PullPolicy::Never
            } else {
                corral_engine::spec::PullPolicy::Missing
            },
            &PullOptions::default(),
        )
        .map_err(|e| ComposeError::Engine(format!("service {}: image {image}: {e}", s.name)))?;
    let hash = plan::config_hash(s, &format!("{}/{}", img.id, plan::files_digest(p, s)));
    let replicas = o.scale.get(&s.name).copied().unwrap_or(s.replicas);
    let mut mine: Vec<&ContainerView> = existing
        .iter()
        .filter(|c| {
            c.record.labels.get(SERVICE) == Some(&s.name)
                && c.record.labels.get(plan::ONEOFF).map(String::as_str) != Some("True")
        })
        .collect();
    mine.sort_by_key(|c| number(c));
    let mut changed = false;
    let mut rolling: Vec<(u32, &ContainerView)> = Vec::new();
    // Scale down: the highest numbers go.
    for c in mine.iter().filter(|c| number(c) > replicas) {
        ops::remove_container(engine, c, true)?;
        out.line(&format!("Container {}  Removed", c.state.name));
        report.push((c.state.name.clone(), "Removed"));
    }
    // A VM service's replicas are VMs, found by name; they carry no hash, so they are kept
    // (started if stopped) unless --force-recreate.
    let vms = ops::vms(engine, p, Some(std::slice::from_ref(&s.name)))?;
    for vm in vms.iter().filter(|v| v.number > replicas) {
        ops::remove_vm(engine, vm, None)?;
        out.line(&format!("Container {}  Removed", vm.name));
        report.push((vm.name.clone(), "Removed"));
    }
    for n in 1..=replicas {
        let current = mine.iter().find(|c| number(c) == n);
        let spec = plan::container_spec_in(p, s, n, &hash, &o.labels, o.files_dir.as_deref())?;
        if let Some(vm) = vms.iter().find(|v| v.number == n) {
            if o.force_recreate && !o.no_recreate {
                ops::remove_vm(engine, vm, None)?;
                ops::create_and_start(engine, &spec)?;
                out.line(&format!("Container {}  Recreated", vm.name));
                report.push((vm.name.clone(), "Recreated"));
                changed = true;
            } else if vm.running {
                out.line(&format!("Container {}  Running", vm.name));
                report.push((vm.name.clone(), "Running"));
            } else {
                engine
                    .start_vm(&vm.id, false)
                    .map_err(|e| ComposeError::Engine(format!("starting {}: {e}", vm.name)))?;
                out.line(&format!("Container {}  Started", vm.name));
                report.push((vm.name.clone(), "Started"));
            }
            continue;
        }
        match current {
            Some(c) => {
                let same = c.record.labels.get(HASH) == Some(&hash);
                if o.no_recreate || (same && !o.force_recreate && !dep_recreated) {
                    if c.state.status != corral_container::Status::Running {
                        engine.start(&c.state.id, false).map_err(|e| {
                            ComposeError::Engine(format!("starting {}: {e}", c.state.name))
                        })?;
                        out.line(&format!("Container {}  Started", c.state.name));
                        report.push((c.state.name.clone(), "Started"));
                    } else {
                        out.line(&format!("Container {}  Running", c.state.name));
                        report.push((c.state.name.clone(), "Running"));
                    }
                    continue;
                }
                if s.update.is_some() {
                    // Replaced by the rolling update below, a batch at a time.
                    rolling.push((n, *c));
                    changed = true;
                    continue;
                }
                ops::remove_container(engine, c, false)?;
                ops::create_and_start(engine, &spec)?;
                out.line(&format!("Container {}  Recreated", c.state.name));
                report.push((c.state.name.clone(), "Recreated"));
                changed = true;
            }
            None => {
                let name = spec.name.clone().unwrap_or_default();
                ops::create_and_start(engine, &spec)?;
                out.line(&format!("Container {name}  Started"));
                report.push((name, "Created"));
                changed = true;
            }
        }
    }
    if !rolling.is_empty() {
        crate::rolling::update(engine, p, s, &hash, o, &rolling, out, report)?;
    }
    if changed {
        engine.emit(Event::new("container", "compose-up", &s.name).attr("project", &p.name));
    }
    Ok(changed)
}
