//! The container verbs: flags to a [`ContainerSpec`] and engine calls, results to the terminal.

use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use corral_container::container_start::Attach;
use corral_engine::containers::{ExecSpec, PullOptions};
use corral_engine::list::ContainerFilter;
use corral_engine::logs::LogOptions;
use corral_engine::spec::Isolation;
use corral_engine::{Engine, EngineError, Started};

use crate::cli::{ContainerCommand, EventsArgs, RunArgs};
use crate::exit::{Code, CORRAL_FAILURE};

use super::run_spec::{expand_env, read_env_files, spec_of};

/// Runs a container verb.
pub fn run(engine: &Engine, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Run(a) => run_container(engine, a, true),
        ContainerCommand::Create(a) => run_container(engine, a, false),
        ContainerCommand::Start {
            all_restartable: true,
            ..
        } => {
            let mut failed = false;
            for r in engine.start_restartable()? {
                match r.error {
                    None => println!("{} {}", r.kind, r.name),
                    Some(e) => {
                        failed = true;
                        eprintln!("error: {} {}: {e}", r.kind, r.name);
                    }
                }
            }
            if failed {
                return Err(Code(crate::exit::CORRAL_FAILURE).into());
            }
            Ok(())
        }
        ContainerCommand::Start {
            attach, containers, ..
        } => {
            let attach = attach && containers.len() == 1;
            for_each(engine, &containers, !attach, |id| {
                match engine.start(id, attach)? {
                    Started::Exited(0) | Started::Detached => Ok(()),
                    Started::Exited(code) => Err(Code(code).into()),
                }
            })
        }
        ContainerCommand::Restart { time, containers } => for_each(
            engine,
            &containers,
            true,
            |id| Ok(engine.restart(id, time)?),
        ),
        ContainerCommand::Rename { container, name } => {
            let id = engine.resolve(&container)?;
            engine.rename(&id, &name)?;
            Ok(())
        }
        ContainerCommand::Port { container, port } => ports(engine, &container, port.as_deref()),
        ContainerCommand::Commit {
            author,
            message,
            change,
            pause,
            container,
            image,
        } => {
            let id = engine.resolve(&container)?;
            let opts = corral_image::commit::CommitOptions {
                message,
                author,
                changes: change,
                created_by: String::new(),
            };
            println!("{}", engine.commit(&id, image.as_deref(), &opts, pause)?);
            Ok(())
        }
        ContainerCommand::Update {
            memory,
            cpus,
            cpu_shares,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            restart,
            containers,
        } => {
            let u = corral_engine::containers::UpdateSpec {
                memory: memory
                    .as_deref()
                    .map(|m| {
                        corral_container::config::parse_size(m)
                            .with_context(|| format!("-m {m:?}: expected a size such as 64m"))
                    })
                    .transpose()?,
                cpus,
                cpu_shares,
                cpuset_cpus,
                cpuset_mems,
                pids_limit,
                restart,
            };
            for_each(engine, &containers, true, |id| Ok(engine.update(id, &u)?))
        }
        ContainerCommand::Attach {
            sig_proxy,
            no_stdin: _,
            container,
        } => {
            let id = engine.resolve(&container)?;
            let cs = engine.containers()?;
            let s = cs.load(&id)?;
            if s.status != corral_container::Status::Running {
                bail!(
                    "container {} is not running: start it with `corral start -a`",
                    s.name
                );
            }
            let _proxy = sig_proxy.then(|| SignalProxy::start(engine, &id));
            let running = || {
                cs.load(&id)
                    .is_ok_and(|s| s.status == corral_container::Status::Running)
            };
            let opts = LogOptions {
                follow: true,
                tail: Some(0),
                ..Default::default()
            };
            crate::output::print_container_log(engine, &id, &opts, &running, false)?;
            match engine.wait(&id)? {
                Some(0) | None => Ok(()),
                Some(code) => Err(Code(code).into()),
            }
        }
        ContainerCommand::Diff { container } => {
            let id = engine.resolve(&container)?;
            let mut out = std::io::stdout().lock();
            for c in engine.diff(&id)? {
                writeln!(out, "{c}")?;
            }
            Ok(())
        }
        ContainerCommand::Ps {
            all,
            quiet,
            json,
            filter,
            last,
            latest,
            no_trunc,
            format,
        } => ps(
            engine,
            PsOptions {
                all,
                quiet,
                json,
                filter,
                last: last.or(latest.then_some(1)),
                no_trunc,
                format,
            },
        ),
        ContainerCommand::Exec {
            interactive,
            tty,
            detach,
            env,
            env_file,
            workdir,
            user,
            privileged,
            detach_keys,
            container,
            command,
        } => {
            let mut all_env = read_env_files(&env_file)?;
            all_env.extend(env.iter().map(|e| expand_env(e)));
            let id = engine.resolve(&container)?;
            let code = engine.exec(
                &id,
                ExecSpec {
                    command,
                    env: all_env,
                    workdir,
                    user,
                    interactive,
                    tty,
                    detach,
                    privileged,
                    detach_keys: match &detach_keys {
                        Some(k) => corral_container::tty::parse_detach_keys(k)
                            .map_err(|e| anyhow::anyhow!("--detach-keys {k:?}: {e}"))?,
                        None => corral_container::tty::DEFAULT_DETACH_KEYS.to_vec(),
                    },
                },
            )?;
            if code == 0 {
                Ok(())
            } else {
                Err(Code(code).into())
            }
        }
        ContainerCommand::Logs {
            follow,
            tail,
            since,
            until,
            timestamps,
            container,
        } => {
            let id = engine.resolve(&container)?;
            let opts = LogOptions {
                follow,
                tail: tail.and_then(|t| t.0),
                since: since
                    .as_deref()
                    .map(corral_engine::events::parse_time)
                    .transpose()?,
                until: until
                    .as_deref()
                    .map(corral_engine::events::parse_time)
                    .transpose()?,
            };
            let cs = engine.containers()?;
            let running = || {
                cs.load(&id)
                    .is_ok_and(|s| s.status == corral_container::Status::Running)
            };
            crate::output::print_container_log(engine, &id, &opts, &running, timestamps)
        }
        ContainerCommand::Stop {
            time,
            all,
            containers,
        } => {
            let names = if all { running(engine)? } else { containers };
            for_each(engine, &names, true, |id| Ok(engine.stop(id, time)?))
        }
        ContainerCommand::Kill {
            signal,
            all,
            containers,
        } => {
            let names = if all { running(engine)? } else { containers };
            for_each(engine, &names, true, |id| Ok(engine.kill(id, &signal)?))
        }
        ContainerCommand::Rm {
            force,
            volumes,
            all,
            filter,
            containers,
        } => {
            let mut names = containers;
            if all || !filter.is_empty() {
                let f = ContainerFilter::parse(&filter)?;
                names.extend(engine.list(true, &f)?.into_iter().map(|v| v.state.id));
            }
            for_each(engine, &names, true, |id| {
                Ok(engine.remove(id, force, volumes)?)
            })
        }
        ContainerCommand::Wait {
            condition,
            containers,
        } => {
            for n in &containers {
                let id = engine.resolve(n)?;
                match condition.as_str() {
                    "stopped" | "exited" => println!("{}", engine.wait(&id)?.unwrap_or(-1)),
                    c => {
                        engine.wait_for(&id, c)?;
                        println!("{c}");
                    }
                }
            }
            Ok(())
        }
        ContainerCommand::Healthcheck(crate::cli::HealthcheckCommand::Run { container }) => {
            let id = engine.resolve(&container)?;
            if engine.health_check_now(&id)? {
                println!("healthy");
                Ok(())
            } else {
                println!("unhealthy");
                Err(Code(1).into())
            }
        }
        ContainerCommand::Inspect {
            json,
            format,
            kind,
            targets,
        } => inspect(engine, &targets, json, format.as_deref(), kind.as_deref()),
        ContainerCommand::Cp {
            source,
            destination,
        } => cp(engine, &source, &destination),
        ContainerCommand::Export { output, container } => export(engine, &container, output),
        ContainerCommand::Pause { containers } => for_each(engine, &containers, true, |id| {
            Ok(engine.set_paused(id, true)?)
        }),
        ContainerCommand::Unpause { containers } => for_each(engine, &containers, true, |id| {
            Ok(engine.set_paused(id, false)?)
        }),
        ContainerCommand::Stats {
            all,
            no_stream,
            no_trunc,
            format,
            json,
            containers,
        } => super::stats::stats(
            engine,
            &super::stats::StatsOptions {
                names: containers,
                all,
                no_stream,
                no_trunc,
                format,
                json,
            },
        ),
        ContainerCommand::Top {
            container,
            json,
            ps_options,
        } => super::stats::top(engine, &container, json, &ps_options),
    }
}

fn run_container(engine: &Engine, a: RunArgs, start_it: bool) -> Result<()> {
    if let Some(f) = &a.cidfile {
        if f.exists() {
            bail!(
                "--cidfile {}: the file exists (remove it first)",
                f.display()
            );
        }
    }
    let spec = spec_of(&a)?;
    if a.detach && !a.attach.is_empty() {
        bail!("conflicting options: -a and -d (a detached container is attached to nothing)");
    }
    let streams = attach_streams(&a.attach)?;
    if let (true, Some(n)) = (a.replace, &a.name) {
        if let Ok(id) = engine.resolve(n) {
            engine.remove(&id, true, true)?;
        }
    }
    if spec.isolation == Isolation::Vm {
        return super::vm::run_isolated(engine, &spec, a.detach, start_it);
    }
    let pull = PullOptions {
        progress: Some(Arc::new(crate::progress::Bars::new(false))),
        registry: None,
    };
    let created = engine.create(&spec, &pull)?;
    if let Some(f) = &a.cidfile {
        std::fs::write(f, &created.id).with_context(|| format!("writing {}", f.display()))?;
    }
    if !start_it {
        println!("{}", created.id);
        return Ok(());
    }
    let attached = !a.detach;
    let _proxy =
        (attached && a.sig_proxy && !a.tty).then(|| SignalProxy::start(engine, &created.id));
    let mode = match (attached, streams) {
        (false, _) => Attach::Detached,
        (true, None) => Attach::Attached,
        (true, Some((stdout, stderr))) => Attach::Streams { stdout, stderr },
    };
    let detached = matches!(mode, Attach::Detached);
    match engine.start_with(&created.id, mode) {
        // An attached run the user detached from (ctrl-p ctrl-q) prints nothing.
        Ok(Started::Detached) => {
            if detached {
                println!("{}", created.id);
            }
            Ok(())
        }
        Ok(Started::Exited(0)) => Ok(()),
        Ok(Started::Exited(code)) => Err(Code(code).into()),
        Err(e) => {
            let prepared = matches!(
                e,
                EngineError::Start(corral_container::container_start::StartError::Prepare(_))
            );
            if prepared {
                // Nothing ran: `run` leaves nothing behind (`start` of a created one keeps it).
                let _ = engine.remove(&created.id, true, true);
            }
            let code = e.exit_code();
            eprintln!("error: {}", corral_engine::containers::chain(&e));
            if code == CORRAL_FAILURE && !prepared {
                eprintln!(
                    "hint: `corral inspect {}` shows the container's state",
                    created.name
                );
            }
            Err(Code(code).into())
        }
    }
}

/// `-a STREAM...`: which output streams to show (`None`: both, the default).
fn attach_streams(streams: &[String]) -> Result<Option<(bool, bool)>> {
    if streams.is_empty() {
        return Ok(None);
    }
    let (mut out, mut err) = (false, false);
    for s in streams.iter().flat_map(|s| s.split(',')) {
        match s.to_ascii_lowercase().as_str() {
            "stdout" => out = true,
            "stderr" => err = true,
            // stdin is attached by -i; naming it alone shows no output, as docker.
            "stdin" => {}
            _ => bail!("-a {s}: expected stdin, stdout or stderr"),
        }
    }
    Ok(Some((out, err)))
}

/// Forwards the signals the CLI receives to an attached container (docker's `--sig-proxy`);
/// stops when dropped.
struct SignalProxy {
    handle: signal_hook::iterator::Handle,
}

impl SignalProxy {
    fn start(engine: &Engine, id: &str) -> Option<SignalProxy> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
        let mut signals = signal_hook::iterator::Signals::new([
            SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
        ])
        .ok()?;
        let handle = signals.handle();
        let (engine, id) = (engine.clone(), id.to_owned());
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if let Err(e) = engine.kill(&id, &sig.to_string()) {
                    tracing::debug!("forwarding signal {sig}: {e}");
                }
            }
        });
        Some(SignalProxy { handle })
    }
}

impl Drop for SignalProxy {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// The ids of the running containers.
fn running(engine: &Engine) -> Result<Vec<String>> {
    Ok(engine
        .list(false, &ContainerFilter::default())?
        .into_iter()
        .map(|v| v.state.id)
        .collect())
}

/// Runs `f` for each container, printing each name as docker does (when `echo`), reporting
/// failures one by one; fails (125) if any failed.
fn for_each(
    engine: &Engine,
    names: &[String],
    echo: bool,
    mut f: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let mut failed = None;
    for n in names {
        match engine
            .resolve(n)
            .map_err(anyhow::Error::from)
            .and_then(|id| f(&id))
        {
            Ok(()) => {
                if echo {
                    println!("{n}");
                }
            }
            Err(e) => {
                if let Some(Code(c)) = e.downcast_ref::<Code>() {
                    failed = Some(*c);
                    continue;
                }
                failed = Some(CORRAL_FAILURE);
                let mut m = format!("error: {n}: {e}");
                for c in e.chain().skip(1) {
                    m.push_str(&format!(": {c}"));
                }
                eprintln!("{m}");
            }
        }
    }
    match failed {
        Some(c) => Err(Code(c).into()),
        None => Ok(()),
    }
}

/// `ps`'s flags.
struct PsOptions {
    all: bool,
    quiet: bool,
    json: bool,
    filter: Vec<String>,
    last: Option<usize>,
    no_trunc: bool,
    format: Option<String>,
}

fn ps(engine: &Engine, o: PsOptions) -> Result<()> {
    use corral_engine::views::{human_duration, ports_column, status_column};
    let template = match &o.format {
        Some(f) => {
            let f = f.replace("\\t", "\t").replace("\\n", "\n");
            Some((
                corral_engine::template::table_header(&f),
                corral_engine::template::Template::parse(corral_engine::template::table_body(&f))?,
            ))
        }
        None => None,
    };
    let f = ContainerFilter::parse(&o.filter)?;
    let mut rows = engine.list(o.all || o.last.is_some(), &f)?;
    if let Some(n) = o.last {
        rows.truncate(n);
    }
    let mut out = std::io::stdout().lock();
    if o.json {
        let v: Vec<_> = rows
            .iter()
            .map(|v| {
                let s = &v.state;
                serde_json::json!({
                    "id": s.id, "name": s.name, "image": s.image,
                    "command": v.config.args.join(" "),
                    "status": corral_engine::views::status_word(s),
                    "state": status_column(s, v.health.as_ref()),
                    "health": v.health.as_ref().map(|h| h.status.clone()),
                    "ports": ports_column(&v.endpoints),
                    "labels": v.record.labels,
                    "exit_code": s.exit_code,
                    "oom_killed": s.oom_killed, "pid": s.pid, "created": s.created,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let id_of = |id: &str| {
        if o.no_trunc {
            id.to_owned()
        } else {
            id[..12].to_owned()
        }
    };
    if o.quiet {
        for v in &rows {
            writeln!(out, "{}", id_of(&v.state.id))?;
        }
        return Ok(());
    }
    let created_ago = |t: &str| {
        humantime::parse_rfc3339_weak(t)
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map_or_else(String::new, |d| format!("{} ago", human_duration(d)))
    };
    if let Some((header, tpl)) = template {
        let docker_json = o.format.as_deref() == Some("json");
        if let Some(h) = header {
            writeln!(out, "{h}")?;
        }
        for v in &rows {
            let s = &v.state;
            let labels: Vec<String> = v
                .record
                .labels
                .iter()
                .map(|(k, x)| format!("{k}={x}"))
                .collect();
            let row = serde_json::json!({
                "ID": id_of(&s.id),
                "Image": s.image,
                "Command": format!("\"{}\"", v.config.args.join(" ")),
                "CreatedAt": s.created,
                "RunningFor": created_ago(&s.created),
                "Ports": ports_column(&v.endpoints),
                "Status": status_column(s, v.health.as_ref()),
                "State": corral_engine::views::status_word(s),
                "Names": s.name,
                "Labels": labels.join(","),
                "Networks": v.endpoints.iter().map(|e| e.network.clone()).collect::<Vec<_>>().join(","),
                "Mounts": v.config.binds.iter().map(|b| b.destination.clone()).collect::<Vec<_>>().join(","),
            });
            if docker_json {
                // docker's `--format json`: one object per line, its keys.
                writeln!(out, "{}", serde_json::to_string(&row)?)?;
            } else {
                writeln!(out, "{}", tpl.render(&row)?)?;
            }
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:12}  {:20}  {:22}  {:16}  {:26}  {:24}  NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"
    )?;
    for v in &rows {
        let s = &v.state;
        let mut cmd = format!("\"{}\"", v.config.args.join(" "));
        if !o.no_trunc && cmd.chars().count() > 22 {
            cmd = cmd.chars().take(19).collect::<String>() + "…\"";
        }
        writeln!(
            out,
            "{:12}  {:20}  {:22}  {:16}  {:26}  {:24}  {}",
            id_of(&s.id),
            s.image,
            cmd,
            created_ago(&s.created),
            status_column(s, v.health.as_ref()),
            ports_column(&v.endpoints),
            s.name
        )?;
    }
    Ok(())
}

fn ports(engine: &Engine, c: &str, only: Option<&str>) -> Result<()> {
    let id = engine.resolve(c)?;
    let v = engine.view(&id)?;
    let want = only.map(|p| {
        if p.contains('/') {
            p.to_owned()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut out = std::io::stdout().lock();
    let mut found = false;
    for e in &v.endpoints {
        for p in &e.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            if want.as_ref().is_some_and(|w| *w != key) {
                continue;
            }
            found = true;
            let host = format!(
                "{}:{}",
                p.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
                p.host_port
            );
            if want.is_some() {
                writeln!(out, "{host}")?;
            } else {
                writeln!(out, "{key} -> {host}")?;
            }
        }
    }
    if let (Some(w), false) = (want, found) {
        bail!("no public port {w} published for {}", v.state.name);
    }
    Ok(())
}

fn inspect(
    engine: &Engine,
    targets: &[String],
    corral_shape: bool,
    format: Option<&str>,
    kind: Option<&str>,
) -> Result<()> {
    let template = format.map(crate::output::template).transpose()?;
    let mut out = Vec::new();
    let mut failed = false;
    for t in targets {
        let container = if kind == Some("image") {
            None
        } else {
            match engine.resolve(t) {
                Ok(id) => Some(engine.view(&id)?),
                Err(EngineError::State(corral_container::state::StateError::NotFound(_))) => None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(v) = container {
            out.push(if corral_shape {
                v.corral_json()
            } else {
                v.docker_json()
            });
            continue;
        }
        if kind == Some("container") {
            eprintln!("error: no such container: {t}");
            failed = true;
            continue;
        }
        let store = engine.images()?;
        match store.resolve(t) {
            Ok(img) => out.push(corral_engine::views::image_json(&store, &img)),
            Err(_) => {
                eprintln!("error: no such container or image: {t}");
                failed = true;
            }
        }
    }
    if let Some(t) = template {
        let mut o = std::io::stdout().lock();
        for v in &out {
            writeln!(o, "{}", t.render(v)?)?;
        }
    } else {
        let v = if corral_shape && out.len() == 1 {
            out.pop().expect("one")
        } else {
            serde_json::Value::Array(out)
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if failed {
        return Err(Code(CORRAL_FAILURE).into());
    }
    Ok(())
}

/// `C:PATH` names a container's path; a part before `:` holding `/` is a host path (docker).
fn container_side(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

fn cp(engine: &Engine, source: &str, destination: &str) -> Result<()> {
    use corral_container::container_cp;
    let cs = engine.containers()?;
    match (container_side(source), container_side(destination)) {
        // `-`: a tar stream on standard output or input, as docker's.
        (Some((c, p)), None) if destination == "-" => {
            let id = cs.resolve(c)?;
            let out = std::io::stdout().lock();
            engine.copy_out_tar(&id, p, std::io::BufWriter::new(out))?;
        }
        (None, Some((c, p))) if source == "-" => {
            let id = cs.resolve(c)?;
            engine.copy_in_tar(&id, std::io::stdin().lock(), p)?;
        }
        (Some((c, p)), None) => {
            let id = cs.resolve(c)?;
            container_cp::copy_out(&cs, &id, p, Path::new(destination))?;
        }
        (None, Some((c, p))) => {
            let id = cs.resolve(c)?;
            container_cp::copy_in(&cs, &id, Path::new(source), p)?;
        }
        (Some(_), Some(_)) => {
            bail!("cp between two containers is not supported: copy through the host")
        }
        (None, None) => bail!("one side of cp must be CONTAINER:PATH"),
    }
    Ok(())
}

/// `export [-o FILE] C`: the archive to a file (through a temporary one, renamed when whole) or
/// to standard output, which must not be a terminal (docker's refusal).
fn export(engine: &Engine, container: &str, output: Option<PathBuf>) -> Result<()> {
    let id = engine.resolve(container)?;
    match output {
        Some(path) => {
            let name = path
                .file_name()
                .with_context(|| format!("-o {}: give a file name", path.display()))?;
            let tmp = path.with_file_name(format!(
                ".{}.corral-export-{}",
                name.to_string_lossy(),
                std::process::id()
            ));
            let write = || -> Result<()> {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                engine.export(&id, std::io::BufWriter::new(&f))?;
                f.sync_all()
                    .with_context(|| format!("writing {}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(())
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write a tar archive to a terminal: give -o FILE or redirect standard output");
            }
            engine.export(&id, std::io::BufWriter::new(std::io::stdout().lock()))?;
        }
    }
    Ok(())
}

/// `corral events`.
pub fn events(engine: &Engine, a: &EventsArgs) -> Result<()> {
    let filter = corral_engine::events::EventFilter::parse(&a.filter)?;
    let since = a
        .since
        .as_deref()
        .map(corral_engine::events::parse_time)
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(corral_engine::events::parse_time)
        .transpose()?;
    let json = match a.format.as_deref() {
        None => false,
        Some("json") | Some("{{json .}}") => true,
        Some(other) => bail!("--format {other:?}: give json"),
    };
    let since_nanos = since.map(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    });
    let keep = |e: &corral_engine::events::Event| {
        since_nanos.is_none_or(|s| e.time_nano >= s) && filter.matches(e)
    };
    let mut out = std::io::stdout();
    let mut emit = |e: &corral_engine::events::Event| -> bool {
        let line = if json {
            serde_json::to_string(e).unwrap_or_default()
        } else {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(e.time_nano as u64);
            let attrs: Vec<String> = e
                .actor
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "{} {} {} {} ({})",
                humantime::format_rfc3339_nanos(t),
                e.kind,
                e.action,
                e.actor.id,
                attrs.join(", ")
            )
        };
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    };
    engine
        .journal()
        .follow(since.is_some(), until, &keep, &mut emit)
        .context("reading the events journal")?;
    Ok(())
}
