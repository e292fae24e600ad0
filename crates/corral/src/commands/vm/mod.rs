//! `corral vm ...`: flags to corral-vm's lifecycle and client, results to the terminal; the
//! verbs that move or copy VMs (snapshots, templates, clones, export, import) are in
//! [`mobility`].

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use corral_engine::{Engine, EngineError};
use corral_guest::proto;
use corral_vm::client::{Client, ClientError, Sinks};
use corral_vm::lifecycle::{self, CreateSpec, Source, VmError};
use corral_vm::store::{Accel, NetRequest, Status, Vms};

mod disks;
mod mobility;

use mobility::{clone, export, import, snapshot, template};

use crate::cli::{VmCommand, VmRunArgs};
use crate::exit::Code;

/// Runs a `corral vm` verb.
pub fn run(engine: &Engine, cmd: VmCommand) -> Result<()> {
    let root = engine.root();
    match cmd {
        VmCommand::Run(a) => run_vm(engine, a, true),
        VmCommand::Create(a) => run_vm(engine, a, false),
        VmCommand::Start { attach, vms } => {
            for v in &vms {
                start(engine, v, attach && vms.len() == 1)?;
            }
            Ok(())
        }
        VmCommand::Stop { time, vms } => for_each(root, &vms, |id| {
            engine.stop_vm(id, Duration::from_secs(time))?;
            Ok(())
        }),
        VmCommand::Restart { time, vms } => for_each(root, &vms, |id| {
            engine.stop_vm(id, Duration::from_secs(time))?;
            engine.start_vm(id, false).map_err(start_error)?;
            Ok(())
        }),
        VmCommand::Kill { vms } => for_each(root, &vms, |id| Ok(lifecycle::kill(root, id)?)),
        VmCommand::Rm { force, vms } => for_each(root, &vms, |id| {
            engine.remove_vm(id, force)?;
            Ok(())
        }),
        VmCommand::Ls { quiet, json } => ls(root, quiet, json),
        VmCommand::Inspect { vms } => inspect(root, &vms),
        VmCommand::Exec {
            interactive,
            tty,
            env,
            workdir,
            user,
            vm,
            command,
        } => exec(root, &vm, interactive, tty, env, workdir, user, command),
        VmCommand::Cp {
            source,
            destination,
        } => cp(root, &source, &destination),
        VmCommand::Logs {
            follow,
            tail,
            timestamps,
            console,
            vm,
        } => logs(root, &vm, follow, tail, timestamps, console),
        VmCommand::Console { vm } => console(root, &vm),
        VmCommand::Vnc { json, vm } => {
            let id = vms(root).resolve(&vm)?;
            let a = lifecycle::vnc_access(root, &id)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"address": format!("127.0.0.1:{}", a.port), "port": a.port, "password": a.password})
                );
            } else {
                println!("vnc://127.0.0.1:{}", a.port);
                println!("password: {}", a.password);
                println!(
                    "connect on this host: vncviewer 127.0.0.1::{} (from elsewhere: ssh -L {}:127.0.0.1:{} THIS-HOST)",
                    a.port, a.port, a.port
                );
            }
            Ok(())
        }
        VmCommand::Export {
            output,
            quiet,
            memory,
            vm,
        } => {
            if memory {
                let v = vms(root);
                let id = v.resolve(&vm)?;
                let tag = format!(
                    "export-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                );
                corral_vm::snapshot::create(root, &id, &tag, true)?;
                // The snapshot holds the machine: what runs after it is not exported.
                lifecycle::kill(root, &id)?;
                eprintln!("snapshot {tag} taken, VM stopped; on the other host: corral vm snapshot restore {vm} {tag}");
            }
            export(root, &vm, &output, quiet)
        }
        VmCommand::Import {
            name,
            network,
            quiet,
            file,
        } => import(root, &file, name, network, quiet),
        VmCommand::Snapshot(cmd) => snapshot(engine, cmd),
        VmCommand::Disk(cmd) => disks::run(root, cmd),
        VmCommand::Migrate {
            to,
            qemu_defaults,
            json,
            vm,
        } => {
            let v = vms(root);
            let id = v.resolve(&vm)?;
            let tuning = if qemu_defaults {
                corral_vm::migrate::Tuning::QemuDefaults
            } else {
                corral_vm::migrate::Tuning::Corral
            };
            if let Some(hazard) = corral_vm::migrate::known_hazard(root, &id) {
                eprintln!("warning: {hazard}");
            }
            let r = corral_vm::migrate::migrate(root, &id, &to, tuning)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} moved to {} in {} ms (destination ready {} ms, disk {} ms, memory {} ms, {} MiB sent, source cleaned {} ms); the guest paused {} ms (QEMU's own measure: {} ms)",
                    r.name,
                    r.to,
                    r.total_ms,
                    r.prepare_ms,
                    r.disk_ms,
                    r.memory_ms,
                    r.ram_bytes >> 20,
                    r.cleanup_ms,
                    r.downtime_ms,
                    r.qemu_downtime_ms
                );
            }
            Ok(())
        }
        VmCommand::Receive { listen } => {
            let exe = std::env::current_exe()?;
            Ok(corral_vm::migrate::receive(root, &listen, &exe)?)
        }
        VmCommand::Template { cmd, vm, name } => template(root, cmd, vm, name),
        VmCommand::Clone {
            start,
            network,
            source,
            name,
        } => clone(engine, start, network, source, name),
        VmCommand::Stats {
            no_stream,
            json,
            vms,
        } => stats(root, &vms, no_stream || json, json),
        VmCommand::Set {
            memory,
            cpus,
            cdrom,
            vm,
        } => {
            let v = vms(root);
            let id = v.resolve(&vm)?;
            if let Some(c) = cdrom {
                let iso = match c.as_str() {
                    "none" | "" => None,
                    f => Some(absolute_path(Path::new(f))?),
                };
                lifecycle::set_cdrom(root, &id, iso)?;
                if memory.is_none() && cpus.is_none() {
                    println!("{vm}");
                    return Ok(());
                }
            }
            let memory_mib = memory
                .map(|m| size("memory", &m).map(|b| b.div_ceil(1 << 20)))
                .transpose()?;
            match lifecycle::set(root, &id, &lifecycle::SetSpec { memory_mib, cpus })? {
                lifecycle::SetOutcome::Recorded => println!("{vm}"),
                lifecycle::SetOutcome::Ballooned { mib } => {
                    println!("{vm}: the guest now has {mib}M (balloon)")
                }
            }
            Ok(())
        }
    }
}

/// `p` made absolute (the monitor, and a later start, may run from another directory), and
/// checked to be a file.
fn absolute_path(p: &Path) -> Result<std::path::PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| anyhow!("--cdrom {}: {e}", p.display()))?;
    if !abs.is_file() {
        bail!("--cdrom {}: no such file (give an ISO image)", p.display());
    }
    Ok(abs)
}

fn vms(root: &Path) -> Vms {
    Vms::open(root)
}

/// A size flag in bytes.
fn size(flag: &str, v: &str) -> Result<u64> {
    corral_vm::disk::parse_size(v).map_err(|e| anyhow!("--{flag}: {e}"))
}

fn start_error(e: impl Into<EngineError>) -> anyhow::Error {
    match e.into() {
        EngineError::Vm(VmError::Start { code, message }) => {
            eprintln!("error: the VM did not start: {message}");
            anyhow::Error::new(Code(code))
        }
        other => other.into(),
    }
}

fn networks(a: &VmRunArgs) -> Result<Vec<NetRequest>> {
    let names = corral_engine::networks::requested(&a.network);
    if names.iter().any(|n| n == "none") {
        if names.len() > 1 {
            bail!("--network none cannot be combined with other networks");
        }
        if !a.network_alias.is_empty()
            || !a.publish.is_empty()
            || a.ip.is_some()
            || a.mac_address.is_some()
        {
            bail!("--network-alias, -p, --ip and --mac-address need a network, not --network none");
        }
        return Ok(Vec::new());
    }
    if names.iter().any(|n| n == "host") {
        bail!("--network host: a VM has its own kernel and cannot share the host's network stack; use a corral network");
    }
    for p in &a.publish {
        p.parse::<corral_net::PortSpec>()
            .map_err(|e| anyhow!("-p {p:?}: {e}"))?;
    }
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, network)| NetRequest {
            network,
            aliases: a.network_alias.clone(),
            ports: if i == 0 {
                a.publish.clone()
            } else {
                Vec::new()
            },
            ip: a.ip.filter(|_| i == 0),
            mac: a.mac_address.clone().filter(|_| i == 0),
        })
        .collect())
}

fn spec(a: &VmRunArgs) -> Result<CreateSpec> {
    let source = match (&a.image, &a.boot_disk, &a.kernel) {
        (None, None, None) if a.cdrom.is_some() => Source::BlankDisk {
            size: size("disk", a.disk.as_deref().unwrap_or("20G"))?,
            uefi: a.uefi,
        },
        (Some(image), None, k) => Source::Image { image: image.clone(), kernel: k.clone() },
        (None, Some(path), None) => Source::BootDisk {
            path: path.clone(),
            uefi: a.uefi,
            in_place: a.boot_disk_in_place,
        },
        (None, None, Some(k)) => Source::Kernel {
            kernel: k.clone(),
            initrd: a.initrd.clone(),
            cmdline: a.cmdline.clone().unwrap_or_else(|| "console=ttyS0".into()),
        },
        _ => bail!("say what the VM boots: --image IMAGE, --boot-disk FILE, --cdrom FILE.iso [--disk SIZE] (an installer onto an empty disk), or --kernel FILE [--initrd FILE --cmdline S]"),
    };
    if !a.command.is_empty() && !matches!(source, Source::Image { .. }) {
        bail!("a command after `--` needs --image: only image VMs run corral's agent");
    }
    let accel = match a.accel.as_str() {
        "auto" => None,
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        other => bail!("--accel {other:?}: give kvm, tcg or auto"),
    };
    let memory = size("memory", &a.memory)?;
    let restart = corral_container::config::RestartPolicy::parse(&a.restart).ok_or_else(|| {
        anyhow!(
            "--restart {:?}: expected no, on-failure[:N], always or unless-stopped",
            a.restart
        )
    })?;
    Ok(CreateSpec {
        restart,
        name: a.name.clone(),
        cpus: a.cpus,
        memory_mib: memory.div_ceil(1 << 20),
        accel,
        source,
        disk_bytes: match (&a.disk, &a.image) {
            (Some(d), Some(_)) => size("disk", d)?,
            (None, _) => size("disk", "2G")?,
            // The empty disk to install onto (sized above).
            (Some(_), None) if a.cdrom.is_some() && a.boot_disk.is_none() => 0,
            (Some(_), None) => bail!(
                "--disk sizes the writable disk of an --image VM; a --boot-disk's size is its file's: grow it with `corral vm disk resize VM SIZE` (a --kernel VM has no disk)"
            ),
        },
        networks: networks(a)?,
        command: a.command.clone(),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        auto_remove: a.rm,
        cloud_init: a.cloud_init.clone(),
        boot_timeout_secs: a.boot_timeout,
        tty: a.tty,
        interactive: a.interactive,
        cdrom: a.cdrom.as_ref().map(|p| absolute_path(p)).transpose()?,
        vnc: a.graphics == "vnc",
    })
}

fn run_vm(engine: &Engine, a: VmRunArgs, start_it: bool) -> Result<()> {
    let spec = spec(&a)?;
    create_and_start(engine, &spec, a.detach, start_it)
}

/// `corral run --isolation vm`: the container spec as a VM of its own.
pub fn run_isolated(
    engine: &Engine,
    spec: &corral_engine::ContainerSpec,
    detach: bool,
    start_it: bool,
) -> Result<()> {
    let vm = corral_engine::vms::isolated_spec(spec)?;
    create_and_start(engine, &vm, detach, start_it)
}

fn create_and_start(
    engine: &Engine,
    spec: &CreateSpec,
    detach: bool,
    start_it: bool,
) -> Result<()> {
    let root = engine.root();
    let cfg = engine.create_vm(spec)?;
    if !start_it {
        println!("{}", cfg.id);
        return Ok(());
    }
    let attach = !detach && cfg.main.is_some();
    let started = match engine.start_vm(&cfg.id, attach) {
        Ok(s) => s,
        Err(e) => {
            if spec.auto_remove {
                let _ = engine.remove_vm(&cfg.id, true);
            }
            return Err(start_error(e));
        }
    };
    if detach {
        println!("{}", cfg.id);
        return Ok(());
    }
    foreground(root, &cfg.id, started, spec.interactive, spec.tty)
}

/// Follows a started VM in the foreground: its main process's streams (or its console), then
/// its exit code.
fn foreground(
    root: &Path,
    id: &str,
    mut started: lifecycle::Started,
    interactive: bool,
    tty: bool,
) -> Result<()> {
    let v = vms(root);
    let cfg = v.config(id)?;
    if cfg.main.is_none() {
        // A disk or kernel boot: the console is the VM's terminal.
        // The foreground run of a disk or kernel boot: its console until the VM stops.
        console_relay(root, id, false)?;
        let _ = started.monitor.wait();
        if let Some(e) = started.error(root) {
            eprintln!("error: {e}");
            return Err(Code(crate::exit::CORRAL_FAILURE).into());
        }
        return Ok(());
    }
    let paths = corral_vm::qemu::Paths::new(&v.run_dir(id), &v.dir(id));
    let mut client = Client::connect(&paths.ctl)?;
    let _raw = if tty {
        corral_container::tty::RawMode::enter(std::io::stdin().as_fd())
    } else {
        None
    };
    let stdin: Option<Box<dyn Read + Send>> =
        interactive.then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>);
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let res = client.attach(
        stdin,
        Sinks {
            stdout: &mut out,
            stderr: &mut err,
        },
    );
    drop(_raw);
    // The monitor exits once QEMU has; its code is the main process's.
    let status = started.monitor.wait()?;
    let code = match res {
        Ok(c) => c,
        Err(ClientError::Refused { message, code }) => {
            eprintln!("error: {message}");
            code
        }
        Err(_) => status.code().unwrap_or(125),
    };
    if code == 125 {
        if let Some(e) = started.error(root) {
            eprintln!("error: {e}");
        }
    }
    if code != 0 {
        return Err(Code(code).into());
    }
    Ok(())
}

fn start(engine: &Engine, what: &str, attach: bool) -> Result<()> {
    let root = engine.root();
    let v = vms(root);
    let id = v.resolve(what)?;
    let cfg = v.config(&id)?;
    let attach = attach && cfg.main.is_some();
    let started = engine.start_vm(&id, attach).map_err(start_error)?;
    if attach {
        let tty = cfg.main.as_ref().is_some_and(|m| m.tty);
        let interactive = cfg.main.as_ref().is_some_and(|m| m.stdin);
        return foreground(root, &id, started, interactive, tty);
    }
    println!("{}", cfg.name);
    Ok(())
}

fn for_each(root: &Path, names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<()> {
    let v = vms(root);
    let mut failed = false;
    for n in names {
        match v
            .resolve(n)
            .map_err(anyhow::Error::from)
            .and_then(|id| f(&id))
        {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("error: {n}: {e:#}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(Code(crate::exit::CORRAL_FAILURE).into());
    }
    Ok(())
}

fn boot_desc(cfg: &corral_vm::store::VmConfig) -> String {
    match &cfg.boot {
        corral_vm::store::BootSource::Image { image, .. } => image.clone(),
        corral_vm::store::BootSource::Disk { path, .. } => format!("disk:{}", path.display()),
        corral_vm::store::BootSource::Kernel { kernel, .. } => {
            format!("kernel:{}", kernel.display())
        }
        corral_vm::store::BootSource::Sandbox { .. } => "pod".into(),
    }
}

fn ls(root: &Path, quiet: bool, json: bool) -> Result<()> {
    let v = vms(root);
    let mut rows = Vec::new();
    for id in v.ids()? {
        let (Ok(cfg), Ok(st)) = (v.config(&id), lifecycle::current_state(&v, &id)) else {
            continue;
        };
        rows.push((cfg, st));
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for (c, _) in &rows {
            writeln!(out, "{}", &c.id[..12])?;
        }
        return Ok(());
    }
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(c, s)| {
                serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "boot": boot_desc(c),
                    "status": s.status.as_str(),
                    "cpus": c.cpus,
                    "memory_mib": c.memory_mib,
                    "accel": c.accel.as_str(),
                    "addresses": s.addresses,
                    "exit_code": s.exit_code,
                    "created": c.created,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:12}  {:16}  {:24}  {:10}  {:4}  {:7}  {:5}  ADDRESSES",
        "VM ID", "NAME", "BOOT", "STATUS", "CPUS", "MEMORY", "ACCEL"
    )?;
    for (c, s) in &rows {
        let status = match (s.status, s.exit_code) {
            (Status::Stopped, Some(code)) => format!("exited({code})"),
            (st, _) => st.as_str().to_owned(),
        };
        let addrs: Vec<&str> = s
            .addresses
            .iter()
            .map(|a| a.split_whitespace().last().unwrap_or(""))
            .collect();
        writeln!(
            out,
            "{:12}  {:16}  {:24}  {:10}  {:4}  {:7}  {:5}  {}",
            &c.id[..12],
            c.name,
            boot_desc(c),
            status,
            c.cpus,
            format!("{}M", c.memory_mib),
            c.accel.as_str(),
            addrs.join(",")
        )?;
    }
    Ok(())
}

fn inspect(root: &Path, names: &[String]) -> Result<()> {
    let v = vms(root);
    let mut out = Vec::new();
    for n in names {
        let id = v.resolve(n)?;
        let cfg = v.config(&id)?;
        let st = lifecycle::current_state(&v, &id)?;
        let guest = if st.status == Status::Running && st.agent_ready {
            corral_vm::resources::guest_info(&v, &id)
        } else {
            None
        };
        let endpoints = corral_net::Networks::open(root)
            .endpoints_of(&id)
            .unwrap_or_default();
        out.push(serde_json::json!({
            "id": cfg.id,
            "name": cfg.name,
            "config": cfg,
            "state": st,
            "accelerator": cfg.accel.as_str(),
            "guest": guest,
            "network_endpoints": endpoints,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn client_of(root: &Path, what: &str) -> Result<Client> {
    let v = vms(root);
    let id = v.resolve(what)?;
    let st = lifecycle::current_state(&v, &id)?;
    if st.status != Status::Running {
        bail!("VM {what} is not running (it is {})", st.status.as_str());
    }
    if !st.agent_ready {
        bail!("VM {what} has no corral agent (it was not booted from an image): use `corral vm console`");
    }
    let paths = corral_vm::qemu::Paths::new(&v.run_dir(&id), &v.dir(&id));
    Ok(Client::connect(&paths.ctl)?)
}

#[allow(clippy::too_many_arguments)]
fn exec(
    root: &Path,
    vm: &str,
    interactive: bool,
    tty: bool,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    command: Vec<String>,
) -> Result<()> {
    let mut client = client_of(root, vm)?;
    let (uid, gid) = lifecycle::parse_user(user.as_deref().unwrap_or(""))?;
    let mut envs =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
    if tty {
        envs.push("TERM=xterm".into());
    }
    for e in env {
        let key = e.split('=').next().unwrap_or("").to_owned();
        envs.retain(|x| x.split('=').next() != Some(key.as_str()));
        envs.push(e);
    }
    let (rows, cols) = if tty {
        rustix::termios::tcgetwinsize(std::io::stdout().as_fd())
            .map(|w| (w.ws_row, w.ws_col))
            .unwrap_or((24, 80))
    } else {
        (0, 0)
    };
    let req = proto::Exec {
        argv: command,
        env: envs,
        cwd: workdir.unwrap_or_default(),
        uid,
        gid,
        tty,
        rows,
        cols,
        stdin: interactive,
        root: String::new(),
    };
    let _raw = if tty {
        corral_container::tty::RawMode::enter(std::io::stdin().as_fd())
    } else {
        None
    };
    let stdin: Option<Box<dyn Read + Send>> =
        interactive.then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>);
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = match client.exec(
        req,
        stdin,
        Sinks {
            stdout: &mut out,
            stderr: &mut err,
        },
    ) {
        Ok(c) => c,
        Err(ClientError::Refused { message, code }) => {
            drop(_raw);
            eprintln!("error: {message}");
            if code == 0 {
                125
            } else {
                code
            }
        }
        Err(e) => return Err(e.into()),
    };
    if code != 0 {
        return Err(Code(code).into());
    }
    Ok(())
}

fn cp(root: &Path, source: &str, destination: &str) -> Result<()> {
    let split = |s: &str| -> Option<(String, String)> {
        let (vm, path) = s.split_once(':')?;
        (!vm.is_empty() && !vm.contains('/') && path.starts_with('/'))
            .then(|| (vm.to_owned(), path.to_owned()))
    };
    match (split(source), split(destination)) {
        (None, Some((vm, path))) => {
            let mut client = client_of(root, &vm)?;
            if source == "-" {
                client.copy_in(&path, 0o644, &mut std::io::stdin())?;
            } else {
                let mut f = std::fs::File::open(source).with_context(|| source.to_owned())?;
                let mode = {
                    use std::os::unix::fs::PermissionsExt;
                    f.metadata()?.permissions().mode() & 0o7777
                };
                client.copy_in(&path, mode, &mut f)?;
            }
        }
        (Some((vm, path)), None) => {
            let mut client = client_of(root, &vm)?;
            if destination == "-" {
                client.copy_out(&path, &mut std::io::stdout())?;
            } else {
                let tmp = format!("{destination}.corral-cp");
                let mut f = std::fs::File::create(&tmp).with_context(|| tmp.clone())?;
                match client.copy_out(&path, &mut f) {
                    Ok(()) => std::fs::rename(&tmp, destination)?,
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e.into());
                    }
                }
            }
        }
        _ => bail!("give one side as VM:/absolute/path and the other as a host path (or -)"),
    }
    Ok(())
}

fn logs(
    root: &Path,
    vm: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
    console: bool,
) -> Result<()> {
    let v = vms(root);
    let id = v.resolve(vm)?;
    let dir = v.dir(&id);
    let running = || {
        lifecycle::current_state(&v, &id)
            .is_ok_and(|s| matches!(s.status, Status::Running | Status::Starting))
    };
    let has_main = v.config(&id).is_ok_and(|c| c.main.is_some());
    let opts = corral_engine::logs::LogOptions {
        follow,
        tail,
        ..Default::default()
    };
    if console || !has_main {
        return crate::output::print_log(&dir.join("console.log"), &opts, &running, false, true);
    }
    crate::output::print_log(&dir.join("main.log"), &opts, &running, timestamps, false)
}

fn console(root: &Path, vm: &str) -> Result<()> {
    let v = vms(root);
    let id = v.resolve(vm)?;
    let st = lifecycle::current_state(&v, &id)?;
    if st.status != Status::Running {
        bail!("VM {vm} is not running");
    }
    console_relay(root, &id, true)
}

/// Relays the terminal to the VM's serial console until Ctrl-] or the VM stops. With piped
/// input (not a terminal) and `end_with_input` (`vm console`), the end of the input ends the
/// console too, once the guest has been quiet for [`CONSOLE_DRAIN`] (so that the answer to
/// the last line is printed).
fn console_relay(root: &Path, id: &str, end_with_input: bool) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let v = vms(root);
    let paths = corral_vm::qemu::Paths::new(&v.run_dir(id), &v.dir(id));
    let sock = std::os::unix::net::UnixStream::connect(&paths.console)
        .with_context(|| format!("the VM's console ({})", paths.console.display()))?;
    let is_tty = rustix::termios::isatty(std::io::stdin());
    if is_tty {
        eprintln!("(console of VM {}: detach with Ctrl-])", &id[..12]);
    }
    let _raw = if is_tty {
        corral_container::tty::RawMode::enter(std::io::stdin().as_fd())
    } else {
        None
    };
    let input_ended = std::sync::Arc::new(AtomicBool::new(false));
    let mut w = sock.try_clone()?;
    {
        let input_ended = input_ended.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin();
            loop {
                let n = stdin.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    if !is_tty && end_with_input {
                        input_ended.store(true, Ordering::SeqCst);
                    }
                    return;
                }
                // Ctrl-]: detach, from a terminal or a pipe alike (never sent to the guest).
                let (data, detach) = match buf[..n].iter().position(|&b| b == 0x1d) {
                    Some(p) => (&buf[..p], true),
                    None => (&buf[..n], false),
                };
                if w.write_all(data).is_err() {
                    return;
                }
                if detach && is_tty {
                    let _ = w.shutdown(std::net::Shutdown::Both);
                    return;
                }
                if detach {
                    // From a pipe it ends the input: what came before is still being read by
                    // QEMU as the guest takes it, so the connection stays until it is quiet.
                    input_ended.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
    }
    let mut r = sock;
    r.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    let started = std::time::Instant::now();
    let mut last_output: Option<std::time::Instant> = None;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.write_all(&buf[..n])?;
                out.flush()?;
                last_output = Some(std::time::Instant::now());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Once the input ended: the guest's answer is waited for (up to
                // CONSOLE_ANSWER), then until it is quiet for CONSOLE_DRAIN.
                let quiet = match last_output {
                    Some(t) => t.elapsed() >= CONSOLE_DRAIN,
                    None => started.elapsed() >= CONSOLE_ANSWER,
                };
                if input_ended.load(Ordering::SeqCst) && quiet {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Ok(())
}

/// How long a console whose piped input ended waits for the guest to go quiet.
const CONSOLE_DRAIN: Duration = Duration::from_secs(1);
/// How long it waits for the guest to say anything at all (a slow guest under emulation).
const CONSOLE_ANSWER: Duration = Duration::from_secs(10);

/// `corral run --isolation vm`: the container's image, command and flags, run in a VM of its
/// own. Flags that shape a container on the host's kernel (capabilities, seccomp, user
/// namespaces, cgroup shares) have no meaning there: the VM's boundary replaces them.
fn stats(root: &Path, names: &[String], once: bool, json: bool) -> Result<()> {
    let v = vms(root);
    let ids: Vec<String> = if names.is_empty() {
        v.ids()?
            .into_iter()
            .filter(|id| {
                lifecycle::current_state(&v, id).is_ok_and(|s| s.status == Status::Running)
            })
            .collect()
    } else {
        names
            .iter()
            .map(|n| v.resolve(n))
            .collect::<Result<_, _>>()?
    };
    let mut last: std::collections::HashMap<String, (u64, std::time::Instant)> =
        std::collections::HashMap::new();
    if once {
        // CPU % needs two readings: the first, half a second before (as `stats` does).
        for id in &ids {
            if let Ok(s) = lifecycle::stats(root, id) {
                last.insert(id.clone(), (s.cpu_usage_ns, std::time::Instant::now()));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    loop {
        let mut rows = Vec::new();
        for id in &ids {
            let s = lifecycle::stats(root, id)?;
            let now = std::time::Instant::now();
            let cpu = last.get(id).map(|(ns, t)| {
                let dt = now.duration_since(*t).as_nanos().max(1) as f64;
                (s.cpu_usage_ns.saturating_sub(*ns)) as f64 / dt * 100.0
            });
            last.insert(id.clone(), (s.cpu_usage_ns, now));
            rows.push((s, cpu));
        }
        if json {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|(s, cpu)| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["cpu_percent"] = serde_json::json!(cpu);
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{:16}  {:>7}  {:>21}  {:>21}  {:>9}",
            "NAME", "CPU %", "HOST MEM / LIMIT", "GUEST AVAIL / TOTAL", "BALLOON"
        )?;
        let mib = |b: u64| format!("{}MiB", b >> 20);
        for (s, cpu) in &rows {
            let cpu = cpu.map_or("--".to_owned(), |c| format!("{c:.1}%"));
            let host = format!(
                "{} / {}",
                mib(s.memory_usage),
                s.memory_limit.map_or("--".into(), mib)
            );
            let guest = match (s.guest_mem_available_kib, s.guest_mem_total_kib) {
                (Some(a), Some(t)) => format!("{} / {}", mib(a << 10), mib(t << 10)),
                _ => "--".into(),
            };
            let balloon = s.balloon_bytes.map_or("--".into(), mib);
            writeln!(
                out,
                "{:16}  {cpu:>7}  {host:>21}  {guest:>21}  {balloon:>9}",
                s.name
            )?;
        }
        drop(out);
        if once {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
