//! The verbs that move or copy VMs: `vm snapshot`, `vm template`, `vm clone`, `vm export`,
//! `vm import`.

use super::*;
use crate::cli::VmSnapshotCommand;

pub(super) fn snapshot(engine: &Engine, cmd: VmSnapshotCommand) -> Result<()> {
    use corral_vm::snapshot;
    let root = engine.root();
    let v = vms(root);
    match cmd {
        VmSnapshotCommand::Create { memory, vm, name } => {
            let id = v.resolve(&vm)?;
            let s = engine.snapshot_vm(&id, &name, memory)?;
            println!("{}", s.name);
        }
        VmSnapshotCommand::Ls { json, vm } => {
            let id = v.resolve(&vm)?;
            let list = snapshot::list(&v, &id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{:24}  {:8}  {:>8}  CREATED", "NAME", "KIND", "TOOK")?;
                for s in list {
                    let kind = if s.memory { "memory" } else { "disk" };
                    writeln!(
                        out,
                        "{:24}  {kind:8}  {:>6}ms  {}",
                        s.name, s.took_ms, s.created
                    )?;
                }
            }
        }
        VmSnapshotCommand::Restore { vm, name } => {
            let id = v.resolve(&vm)?;
            engine
                .restore_vm_snapshot(&id, &name, true)
                .map_err(start_error)?;
            println!("{name}");
        }
        VmSnapshotCommand::Rm { vm, name } => {
            let id = v.resolve(&vm)?;
            engine.remove_vm_snapshot(&id, &name)?;
            println!("{name}");
        }
    }
    Ok(())
}

/// `vm template VM NAME`, `vm template ls`, `vm template rm NAME...` (corral_vm::clone).
pub(super) fn template(
    root: &Path,
    cmd: Option<crate::cli::VmTemplateCommand>,
    vm: Option<String>,
    name: Option<String>,
) -> Result<()> {
    use crate::cli::VmTemplateCommand;
    use corral_vm::clone;
    match cmd {
        None => {
            let (Some(vm), Some(name)) = (vm, name) else {
                bail!("give the stopped VM and the template's name: `corral vm template VM NAME`");
            };
            let t = clone::make_template(root, &vm, &name)?;
            println!("{}", t.name);
            Ok(())
        }
        Some(VmTemplateCommand::Ls { json }) => {
            let list = clone::list(root)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:20}  {:20}  {:24}  {:>8}  {:>8}  {:20}  USED BY",
                "NAME", "FROM VM", "IMAGE", "SIZE", "DISK", "CREATED"
            )?;
            for t in list {
                let image = match &t.template.boot {
                    corral_vm::store::BootSource::Image { image, .. } => image.as_str(),
                    _ => "",
                };
                writeln!(
                    out,
                    "{:20}  {:20}  {:24}  {:>7}M  {:>7}M  {:20}  {}",
                    t.template.name,
                    t.template.source_vm,
                    image,
                    t.template.disk_bytes >> 20,
                    t.disk_allocated >> 20,
                    t.template.created,
                    t.used_by.join(", ")
                )?;
            }
            Ok(())
        }
        Some(VmTemplateCommand::Rm { names }) => {
            let mut failed = false;
            for n in &names {
                match clone::remove_template(root, n) {
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
    }
}

/// `vm clone SOURCE NEW [--start] [--network ...]`.
pub(super) fn clone(
    engine: &Engine,
    start_it: bool,
    network: Vec<String>,
    source: String,
    name: String,
) -> Result<()> {
    let root = engine.root();
    let names: Vec<&str> = network
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.contains(&"host") {
        bail!("--network host: a VM has its own kernel and cannot share the host's network stack; use a corral network");
    }
    let networks = if names.is_empty() {
        None
    } else if names.contains(&"none") {
        if names.len() > 1 {
            bail!("--network none cannot be combined with other networks");
        }
        Some(Vec::new())
    } else {
        Some(
            names
                .iter()
                .map(|n| NetRequest {
                    network: (*n).to_owned(),
                    aliases: Vec::new(),
                    ports: Vec::new(),
                    ip: None,
                    mac: None,
                })
                .collect(),
        )
    };
    let spec = corral_vm::clone::CloneSpec {
        source,
        name,
        networks,
    };
    let cfg = corral_vm::clone::clone(root, &spec)?;
    if start_it {
        engine.start_vm(&cfg.id, false).map_err(start_error)?;
    }
    println!("{}", cfg.id);
    Ok(())
}

/// `vm export VM -o FILE|-`.
pub(super) fn export(root: &Path, vm: &str, output: &str, quiet: bool) -> Result<()> {
    let id = vms(root).resolve(vm)?;
    let bars = crate::progress::Bars::new(quiet);
    if output == "-" {
        if rustix::termios::isatty(std::io::stdout()) {
            bail!("refusing to write an archive to a terminal: redirect standard output, or give -o FILE");
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        corral_vm::export::export(root, &id, &mut out, &bars)?;
        out.flush()?;
    } else {
        corral_vm::export::export_to_path(root, &id, Path::new(output), &bars)?;
    }
    Ok(())
}

/// `vm import FILE|- [--name NAME] [--network NAME]`: prints the new VM's id.
pub(super) fn import(
    root: &Path,
    file: &str,
    name: Option<String>,
    network: Option<String>,
    quiet: bool,
) -> Result<()> {
    let bars = crate::progress::Bars::new(quiet);
    let spec = corral_vm::export::ImportSpec { name, network };
    let done = if file == "-" {
        corral_vm::export::import(root, std::io::stdin().lock(), &spec, &bars)?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
        corral_vm::export::import(root, std::io::BufReader::new(f), &spec, &bars)?
    };
    if let Some(old) = done.renamed_from {
        eprintln!(
            "note: the name {old:?} is taken on this host: the VM is called {}",
            done.config.name
        );
    }
    println!("{}", done.config.id);
    Ok(())
}
