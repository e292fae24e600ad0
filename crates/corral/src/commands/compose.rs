//! `corral compose ...`: flags to corral-compose's calls, and its output as docker compose
//! prints it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use corral_compose::ops::{self, Out};
use corral_compose::plan::{NUMBER, SERVICE};
use corral_compose::up::UpOptions;
use corral_compose::{LoadOptions, Project};
use corral_engine::containers::ExecSpec;
use corral_engine::logs::LogOptions;
use corral_engine::Engine;
use serde_json::json;

use crate::cli::{ComposeArgs, ComposeCommand};
use crate::exit::Code;

/// Progress on stderr, as docker compose prints it.
struct Stderr;

impl Out for Stderr {
    fn line(&self, text: &str) {
        eprintln!(" \u{2714} {text}");
    }
    fn warn(&self, text: &str) {
        eprintln!("WARN[0000] {text}");
    }
}

fn load(a: &ComposeArgs) -> Result<(Project, LoadOptions)> {
    let cwd = match &a.project_directory {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("the working directory")?,
    };
    let o = LoadOptions {
        files: a.file.clone(),
        project_name: a.project_name.clone(),
        env_files: a.env_file.clone(),
        profiles: a.profile.clone(),
        cwd,
    };
    let p = corral_compose::load(&o)?;
    Ok((p, o))
}

/// The labels every container of the project carries besides its own.
fn project_labels(o: &LoadOptions) -> BTreeMap<String, String> {
    let files: Vec<String> = if o.files.is_empty() {
        corral_compose::load::DEFAULT_FILES
            .iter()
            .map(|f| o.cwd.join(f))
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string())
            .collect()
    } else {
        o.files
            .iter()
            .map(|f| o.cwd.join(f).display().to_string())
            .collect()
    };
    BTreeMap::from([
        (corral_compose::plan::FILES.to_owned(), files.join(",")),
        (
            corral_compose::plan::WORKDIR.to_owned(),
            o.cwd.display().to_string(),
        ),
        (
            "com.docker.compose.version".to_owned(),
            format!("corral-{}", env!("CARGO_PKG_VERSION")),
        ),
    ])
}

pub fn run(engine: &Engine, a: ComposeArgs) -> Result<()> {
    if let ComposeCommand::Ls { json, all } = &a.command {
        return ls(engine, *json, *all);
    }
    let (p, lo) = load(&a)?;
    match a.command {
        ComposeCommand::Up {
            detach,
            wait,
            wait_timeout,
            force_recreate,
            no_recreate,
            no_deps,
            remove_orphans,
            scale,
            build,
            abort_on_container_exit,
            exit_code_from,
            services,
        } => {
            let abort = abort_on_container_exit || exit_code_from.is_some();
            // docker compose: --wait implies -d.
            let detach = detach || wait;
            if abort && detach {
                bail!("--abort-on-container-exit and --exit-code-from follow the services: not with -d or --wait");
            }
            if let Some(s) = &exit_code_from {
                if !p.services.contains_key(s) {
                    bail!("--exit-code-from {s}: no such service");
                }
            }
            let mut sc = BTreeMap::new();
            for s in &scale {
                let (k, v) = s
                    .split_once('=')
                    .with_context(|| format!("--scale {s:?}: the form is SERVICE=N"))?;
                sc.insert(
                    k.to_owned(),
                    v.parse()
                        .with_context(|| format!("--scale {s:?}: N must be a number"))?,
                );
            }
            let o = UpOptions {
                services: services.clone(),
                no_deps,
                force_recreate,
                no_recreate,
                remove_orphans,
                scale: sc,
                build,
                wait,
                timeout: Duration::from_secs(wait_timeout),
                labels: project_labels(&lo),
                files_dir: None,
            };
            if let Err(e) = corral_compose::up::up(engine, &p, &o, &Stderr) {
                eprintln!("error: {e}");
                report_left(engine, &p);
                return Err(Code(1).into());
            }
            if abort {
                let code = abort_on_exit(engine, &p, &services, exit_code_from.as_deref())?;
                if code != 0 {
                    return Err(Code(code).into());
                }
            } else if !detach {
                follow(engine, &p, &services)?;
            }
        }
        ComposeCommand::Down {
            volumes,
            remove_orphans,
            timeout,
            rmi,
        } => ops::down(
            engine,
            &p,
            &ops::DownOptions {
                volumes,
                remove_orphans,
                timeout,
                rmi,
            },
            &Stderr,
        )?,
        ComposeCommand::Ps {
            all,
            quiet,
            services,
            json,
            service,
        } => {
            let list = ops::containers(engine, &p.name, Some(&service), all)?;
            // A service with `isolation: vm` runs as VMs, listed with the containers.
            let vms: Vec<ops::ProjectVm> = ops::vms(engine, &p, Some(&service))?
                .into_iter()
                .filter(|v| all || v.running)
                .collect();
            let vm_image = |v: &ops::ProjectVm| {
                p.services
                    .get(&v.service)
                    .map(|s| corral_compose::plan::image_of(&p, s))
                    .unwrap_or_default()
            };
            if quiet {
                for c in &list {
                    println!("{}", c.state.id);
                }
                for v in &vms {
                    println!("{}", v.id);
                }
            } else if services {
                let mut names: Vec<&String> = list
                    .iter()
                    .filter_map(|c| c.record.labels.get(SERVICE))
                    .chain(vms.iter().map(|v| &v.service))
                    .collect();
                names.sort();
                names.dedup();
                for n in names {
                    println!("{n}");
                }
            } else if json {
                let mut rows: Vec<_> = list
                    .iter()
                    .map(|c| {
                        json!({
                            "ID": c.state.id,
                            "Name": c.state.name,
                            "Image": c.state.image,
                            "Project": p.name,
                            "Service": c.record.labels.get(SERVICE),
                            "State": corral_engine::views::status_word(&c.state),
                            "Status": corral_engine::views::status_column(&c.state, c.health.as_ref()),
                            "Health": c.health.as_ref().map(|h| h.status.clone()).unwrap_or_default(),
                            "ExitCode": c.state.exit_code.unwrap_or(0),
                            "Publishers": corral_engine::views::ports_column(&c.endpoints),
                            "Labels": c.record.labels,
                        })
                    })
                    .collect();
                rows.extend(vms.iter().map(|v| {
                    json!({
                        "ID": v.id,
                        "Name": v.name,
                        "Image": vm_image(v),
                        "Project": p.name,
                        "Service": v.service,
                        "State": v.status,
                        "Status": format!("{} (vm)", v.status),
                        "Health": "",
                        "ExitCode": 0,
                        "Publishers": "",
                        "Labels": {},
                    })
                }));
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<24} {:<12} {:<28} PORTS",
                    "NAME", "IMAGE", "SERVICE", "STATUS"
                );
                for c in &list {
                    let status = corral_engine::views::status_column(&c.state, c.health.as_ref());
                    println!(
                        "{:<24} {:<24} {:<12} {:<28} {}",
                        c.state.name,
                        c.state.image,
                        c.record.labels.get(SERVICE).map_or("", String::as_str),
                        status,
                        corral_engine::views::ports_column(&c.endpoints)
                    );
                }
                for v in &vms {
                    println!(
                        "{:<24} {:<24} {:<12} {:<28} ",
                        v.name,
                        vm_image(v),
                        v.service,
                        format!("{} (vm)", v.status)
                    );
                }
            }
        }
        ComposeCommand::Logs {
            follow: f,
            tail,
            timestamps,
            no_log_prefix,
            services,
        } => logs(engine, &p, &services, f, tail, timestamps, !no_log_prefix)?,
        ComposeCommand::Config {
            format,
            services,
            volumes,
            quiet,
        } => {
            if quiet {
                return Ok(());
            }
            if services {
                for s in p.services.keys() {
                    println!("{s}");
                }
            } else if volumes {
                for v in p.volumes.keys() {
                    println!("{v}");
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else if format == "yaml" {
                print!("{}", serde_yaml::to_string(&p)?);
            } else {
                bail!("--format {format}: yaml or json");
            }
        }
        ComposeCommand::Stop { timeout, services } => {
            let o = ops::VerbOptions {
                timeout,
                ..Default::default()
            };
            ops::each_with(engine, &p, &services, "stop", &o, &Stderr)?
        }
        ComposeCommand::Start { services } => {
            ops::each(engine, &p, &services, "start", "", &Stderr)?
        }
        ComposeCommand::Restart { timeout, services } => {
            let o = ops::VerbOptions {
                timeout,
                ..Default::default()
            };
            ops::each_with(engine, &p, &services, "restart", &o, &Stderr)?
        }
        ComposeCommand::Kill { signal, services } => {
            ops::each(engine, &p, &services, "kill", &signal, &Stderr)?
        }
        ComposeCommand::Pause { services } => {
            ops::each(engine, &p, &services, "pause", "", &Stderr)?
        }
        ComposeCommand::Unpause { services } => {
            ops::each(engine, &p, &services, "unpause", "", &Stderr)?
        }
        ComposeCommand::Rm {
            stop,
            volumes,
            services,
            ..
        } => {
            if stop {
                ops::each(engine, &p, &services, "stop", "", &Stderr)?;
            }
            let o = ops::VerbOptions {
                volumes,
                ..Default::default()
            };
            ops::each_with(engine, &p, &services, "rm", &o, &Stderr)?;
        }
        ComposeCommand::Exec {
            no_tty,
            detach,
            env,
            workdir,
            user,
            index,
            service,
            command,
        } => {
            let c = replica(engine, &p, &service, index)?;
            let tty = !no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
            let code = engine.exec(
                &c,
                ExecSpec {
                    command,
                    env,
                    workdir,
                    user,
                    interactive: !detach,
                    tty,
                    detach,
                    detach_keys: corral_container::tty::DEFAULT_DETACH_KEYS.to_vec(),
                    ..Default::default()
                },
            )?;
            if code != 0 {
                return Err(Code(code).into());
            }
        }
        ComposeCommand::Run {
            rm,
            detach,
            no_tty,
            env,
            name,
            no_deps,
            service_ports,
            workdir,
            user,
            entrypoint,
            service,
            command,
        } => {
            let s = p
                .services
                .get(&service)
                .with_context(|| format!("no such service: {service}"))?
                .clone();
            corral_compose::plan::check_external(&p, std::slice::from_ref(&service))?;
            if !no_deps {
                let deps = corral_compose::order::dependencies(&p, &service);
                if !deps.is_empty() {
                    let o = UpOptions {
                        services: deps,
                        timeout: Duration::from_secs(120),
                        labels: project_labels(&lo),
                        ..Default::default()
                    };
                    corral_compose::up::up(engine, &p, &o, &Stderr)?;
                }
            }
            // With or without dependencies, the one-off's networks and volumes exist.
            ops::ensure_networks(engine, &p, &Stderr)?;
            ops::ensure_volumes(engine, &p, &Stderr)?;
            let files = ops::write_files(engine, &p)?;
            let mut spec = corral_compose::plan::container_spec_in(
                &p,
                &s,
                1,
                "oneoff",
                &project_labels(&lo),
                Some(&files),
            )?;
            let suffix = &corral_container::state::new_id().context("a random name")?[..12];
            spec.name = Some(name.unwrap_or_else(|| format!("{}-{}-run-{suffix}", p.name, s.name)));
            spec.labels
                .insert(corral_compose::plan::ONEOFF.into(), "True".into());
            spec.labels.remove(NUMBER);
            if !command.is_empty() {
                spec.command = command;
            }
            if let Some(e) = entrypoint {
                spec.entrypoint = Some(if e.is_empty() {
                    Vec::new()
                } else {
                    corral_compose::syntax::shell_words(&e)
                        .map_err(|e| anyhow::anyhow!("--entrypoint: {e}"))?
                });
            }
            spec.env.extend(env);
            if workdir.is_some() {
                spec.workdir = workdir;
            }
            if user.is_some() {
                spec.user = user;
            }
            if !service_ports {
                spec.networking.publish.clear();
            }
            // A one-off publishes its ports alone (a port the service's replicas hold is
            // refused, as in docker compose), not as one more replica behind them.
            spec.networking.port_group = None;
            spec.restart.clear();
            spec.auto_remove = rm;
            spec.interactive = !detach;
            spec.tty = !no_tty
                && !detach
                && std::io::stdin().is_terminal()
                && std::io::stdout().is_terminal();
            let (created, started) = engine.run(&spec, detach, &Default::default())?;
            match started {
                corral_engine::Started::Detached => println!("{}", created.id),
                corral_engine::Started::Exited(0) => {}
                corral_engine::Started::Exited(code) => return Err(Code(code).into()),
            }
        }
        ComposeCommand::Build { no_cache, services } => {
            for s in p
                .services
                .values()
                .filter(|s| services.is_empty() || services.contains(&s.name))
            {
                if s.build.is_some() {
                    ops::build_service(engine, &p, s, no_cache, &Stderr)?;
                }
            }
        }
        ComposeCommand::Pull { services } => {
            for s in p
                .services
                .values()
                .filter(|s| services.is_empty() || services.contains(&s.name))
            {
                if s.build.is_some() && s.image.is_none() {
                    continue;
                }
                let image = corral_compose::plan::image_of(&p, s);
                engine
                    .image_for_run(
                        &image,
                        corral_engine::spec::PullPolicy::Always,
                        &Default::default(),
                    )
                    .with_context(|| format!("pulling {image} for service {}", s.name))?;
                Stderr.line(&format!("{}  Pulled", s.name));
            }
        }
        ComposeCommand::Top { service } => {
            let cs = engine.containers()?;
            let list = ops::containers(engine, &p.name, Some(&service), false)?;
            for (i, c) in list.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("{}", c.state.name);
                let procs = corral_container::container_stats::top(
                    &cs,
                    &c.state.id,
                    std::path::Path::new(corral_engine::CGROUP_ROOT),
                )?;
                crate::output::print_processes(&procs)?;
            }
        }
        ComposeCommand::Images {
            quiet,
            json,
            service,
        } => {
            let store = engine.images()?;
            let list = ops::containers(engine, &p.name, Some(&service), true)?;
            let mut rows = Vec::new();
            for c in &list {
                let Ok(img) = store.resolve(&c.state.image) else {
                    continue;
                };
                let size: u64 = img.manifest.layers().iter().map(|l| l.size()).sum();
                let (repo, tag) = split_reference(&c.state.image);
                rows.push((c.state.name.clone(), repo, tag, img.id.clone(), size));
            }
            if quiet {
                let mut seen = std::collections::BTreeSet::new();
                for r in &rows {
                    if seen.insert(r.3.to_string()) {
                        println!("{}", r.3.short());
                    }
                }
            } else if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(c, repo, tag, id, size)| {
                        json!({"ContainerName": c, "Repository": repo, "Tag": tag, "ID": id.to_string(), "Size": size})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let cw = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(9);
                let rw = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(10);
                let tw = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(3);
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:cw$}  {:rw$}  {:tw$}  {:12}  SIZE",
                    "CONTAINER", "REPOSITORY", "TAG", "IMAGE ID"
                )?;
                for (c, repo, tag, id, size) in &rows {
                    writeln!(
                        out,
                        "{c:cw$}  {repo:rw$}  {tag:tw$}  {:12}  {}",
                        id.short(),
                        crate::output::human(*size)
                    )?;
                }
            }
        }
        ComposeCommand::Port {
            service,
            port,
            index,
        } => {
            let id = replica(engine, &p, &service, index)?;
            let (num, proto) = port.split_once('/').unwrap_or((&port, "tcp"));
            let list =
                ops::containers(engine, &p.name, Some(std::slice::from_ref(&service)), false)?;
            let c = list
                .iter()
                .find(|c| c.state.id == id)
                .context("the container is not running")?;
            let found =
                c.endpoints.iter().flat_map(|e| e.ports.iter()).find(|m| {
                    m.container_port.to_string() == num && m.protocol.to_string() == proto
                });
            match found {
                Some(m) => println!(
                    "{}:{}",
                    m.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
                    m.host_port
                ),
                None => bail!("no port {port} of service {service} is published"),
            }
        }
        ComposeCommand::Ls { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// After a failed `up`: what it left (running or only created containers, VMs, networks,
/// volumes), so that nothing is silently left behind; `down` removes it all.
fn report_left(engine: &Engine, p: &Project) {
    let mut running = Vec::new();
    let mut created = Vec::new();
    for c in ops::containers(engine, &p.name, None, true).unwrap_or_default() {
        match c.state.status {
            corral_container::Status::Running => running.push(c.state.name),
            _ => created.push(format!(
                "{} ({})",
                c.state.name,
                corral_engine::views::status_word(&c.state)
            )),
        }
    }
    for vm in ops::vms(engine, p, None).unwrap_or_default() {
        if vm.running {
            running.push(vm.name);
        } else {
            created.push(format!("{} ({})", vm.name, vm.status));
        }
    }
    let nets: Vec<String> = engine
        .networks()
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|n| n.name)
        .filter(|n| p.networks.values().any(|d| !d.external && &d.name == n))
        .collect();
    let vols: Vec<String> = engine
        .volumes()
        .ok()
        .and_then(|v| v.list().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .filter(|n| p.volumes.values().any(|d| !d.external && &d.name == n))
        .collect();
    for (what, list) in [
        ("running now", &running),
        ("created, not running", &created),
        ("networks", &nets),
        ("volumes", &vols),
    ] {
        if !list.is_empty() {
            eprintln!("{what}: {}", list.join(", "));
        }
    }
    if !(running.is_empty() && created.is_empty() && nets.is_empty() && vols.is_empty()) {
        eprintln!("`corral compose down` removes them (`down -v` the volumes too)");
    }
}

/// The id of replica `index` of `service`.
fn replica(engine: &Engine, p: &Project, service: &str, index: u32) -> Result<String> {
    if !p.services.contains_key(service) {
        bail!("no such service: {service}");
    }
    let list = ops::containers(engine, &p.name, Some(&[service.to_owned()]), true)?;
    list.into_iter()
        .find(|c| c.record.labels.get(NUMBER).and_then(|n| n.parse::<u32>().ok()) == Some(index))
        .map(|c| c.state.id)
        .with_context(|| format!("service {service} has no container {index}: start it with `corral compose up -d {service}`"))
}

fn ls(engine: &Engine, json: bool, all: bool) -> Result<()> {
    let list = ops::projects(engine)?;
    let rows: Vec<_> = list
        .into_iter()
        .filter(|(_, running, _, _)| all || *running > 0)
        .collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, r, t, f)| json!({"Name": n, "Status": status(*r, *t), "ConfigFiles": f}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{:<24} {:<20} CONFIG FILES", "NAME", "STATUS");
    for (n, r, t, f) in rows {
        println!("{n:<24} {:<20} {f}", status(r, t));
    }
    Ok(())
}

fn status(running: usize, total: usize) -> String {
    if running == total {
        format!("running({running})")
    } else if running == 0 {
        format!("exited({total})")
    } else {
        format!("running({running}), exited({})", total - running)
    }
}

/// The services' logs, each line prefixed with its container's name; with `follow`, until
/// they all stop.
fn logs(
    engine: &Engine,
    p: &Project,
    services: &[String],
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
    prefix: bool,
) -> Result<()> {
    let list = ops::containers(engine, &p.name, Some(services), true)?;
    let width = list.iter().map(|c| c.state.name.len()).max().unwrap_or(0);
    let out = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        for c in &list {
            let out = &out;
            s.spawn(move || {
                let cs = match engine.containers() {
                    Ok(cs) => cs,
                    Err(_) => return,
                };
                let id = c.state.id.clone();
                let Ok(cfg) = cs.config(&id) else { return };
                let running = || {
                    cs.load(&id)
                        .is_ok_and(|s| s.status == corral_container::Status::Running)
                };
                let opts = LogOptions {
                    follow,
                    tail,
                    ..Default::default()
                };
                let mut emit = |l: &corral_engine::logs::LogLine| -> std::io::Result<()> {
                    let _g = out.lock().expect("not poisoned");
                    let mut o = std::io::stdout().lock();
                    if prefix {
                        write!(o, "{:<width$} | ", c.state.name)?;
                    }
                    if timestamps {
                        write!(o, "{} ", l.time)?;
                    }
                    o.write_all(l.text.as_bytes())?;
                    if !l.text.ends_with('\n') {
                        writeln!(o)?;
                    }
                    o.flush()
                };
                let _ = corral_engine::logs::follow_container(
                    &cs.dir(&id),
                    &id,
                    &cfg.log,
                    &opts,
                    &running,
                    &mut emit,
                );
            });
        }
    });
    Ok(())
}

/// `up` without `-d`: the logs followed until every service stops; ^C stops them.
fn follow(engine: &Engine, p: &Project, services: &[String]) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("listening for ^C")?;
    let handle = signals.handle();
    let (e, proj, svcs) = (engine.clone(), p.clone(), services.to_vec());
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            let _ = ops::each(&e, &proj, &svcs, "stop", "", &Stderr);
        }
    });
    let r = logs(engine, p, services, true, None, false, true);
    handle.close();
    r
}

/// `up --abort-on-container-exit`: the logs followed until a container exits, then every
/// container stopped; the code of `from`'s container (or of the first that exited).
fn abort_on_exit(
    engine: &Engine,
    p: &Project,
    services: &[String],
    from: Option<&str>,
) -> Result<i32> {
    let watched = services.to_vec();
    let done = std::sync::atomic::AtomicBool::new(false);
    let code = std::thread::scope(|sc| -> Result<i32> {
        let logs_thread = sc.spawn(|| logs(engine, p, &watched, true, None, false, true));
        let first = loop {
            let list = ops::containers(engine, &p.name, Some(&watched), true)?;
            if let Some(c) = list
                .iter()
                .find(|c| c.state.status == corral_container::Status::Exited)
            {
                break (
                    c.record.labels.get(SERVICE).cloned().unwrap_or_default(),
                    c.state.exit_code.unwrap_or(0),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!("Aborting on container exit...");
        ops::each(engine, p, &watched, "stop", "", &Stderr)?;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = logs_thread.join();
        Ok(match from {
            Some(svc) if first.0 != svc => {
                ops::containers(engine, &p.name, Some(&[svc.to_owned()]), true)?
                    .first()
                    .and_then(|c| c.state.exit_code)
                    .unwrap_or(0)
            }
            _ => first.1,
        })
    })?;
    Ok(code)
}

/// `REPOSITORY` and `TAG` of an image reference as written (`busybox:1` -> `busybox`, `1`;
/// no tag: `latest`; a digest: `<none>`).
fn split_reference(r: &str) -> (String, String) {
    if let Some((repo, _)) = r.split_once('@') {
        return (repo.to_owned(), "<none>".to_owned());
    }
    let slash = r.rfind('/').map_or(0, |i| i + 1);
    match r[slash..].rfind(':') {
        Some(i) => (r[..slash + i].to_owned(), r[slash + i + 1..].to_owned()),
        None => (r.to_owned(), "latest".to_owned()),
    }
}
