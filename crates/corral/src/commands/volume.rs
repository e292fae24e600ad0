//! `volume create`, `ls`, `inspect`, `rm`, `prune`: named volumes under `ROOT/volumes`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use corral_container::volumes::{Volume, VolumeError, Volumes};
use corral_container::Containers;
use serde_json::json;

use crate::cli::VolumeCommand;
use crate::exit::{Code, CORRAL_FAILURE};

/// The volume store of `root`.
pub fn volumes(root: &Path) -> Result<Volumes> {
    Volumes::open(root.join("volumes"))
        .with_context(|| format!("opening the volume store under {}", root.display()))
}

fn containers(root: &Path) -> Result<Containers> {
    Containers::open(root.join("containers"))
        .with_context(|| format!("opening the container store under {}", root.display()))
}

/// Runs a `volume` verb.
pub fn run(engine: &corral_engine::Engine, cmd: VolumeCommand) -> Result<()> {
    let root = engine.root();
    match cmd {
        VolumeCommand::Create { name, label, opt } => {
            let mut options = std::collections::BTreeMap::new();
            for o in &opt {
                let (k, v) = o.split_once('=').with_context(|| {
                    format!("-o {o:?}: the form is KEY=VALUE (type=, device=, o=)")
                })?;
                options.insert(k.to_owned(), v.to_owned());
            }
            let mut labels = std::collections::BTreeMap::new();
            corral_engine::spec::parse_labels(&mut labels, label.iter().map(String::as_str))?;
            // Without a name: an anonymous volume, named by a random id as docker does.
            let name = match name {
                Some(n) => n,
                None => corral_container::state::new_id().context("naming the volume")?,
            };
            let (_, made) = volumes(root)?.create_with(&name, labels, options)?;
            if made {
                engine.emit(
                    corral_engine::events::Event::new("volume", "create", &name)
                        .attr("name", &name),
                );
            }
            println!("{name}");
            Ok(())
        }
        VolumeCommand::Ls { json, quiet } => ls(root, json, quiet),
        VolumeCommand::Inspect { format, names } => inspect(root, &names, format.as_deref()),
        VolumeCommand::Rm { force, names } => rm(engine, &names, force),
        VolumeCommand::Prune { force: _ } => prune(root),
    }
}

fn to_json(vols: &Volumes, v: &Volume) -> serde_json::Value {
    json!({
        "name": v.name, "driver": "local", "mountpoint": vols.mountpoint(&v.name),
        "created": v.created, "labels": v.labels, "scope": "local",
    })
}

fn ls(root: &Path, as_json: bool, quiet: bool) -> Result<()> {
    let vols = volumes(root)?;
    let list = vols.list()?;
    let mut out = std::io::stdout().lock();
    if as_json {
        let v: Vec<_> = list.iter().map(|v| to_json(&vols, v)).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else if quiet {
        for v in &list {
            writeln!(out, "{}", v.name)?;
        }
    } else {
        writeln!(out, "{:8}  VOLUME NAME", "DRIVER")?;
        for v in &list {
            writeln!(out, "{:8}  {}", "local", v.name)?;
        }
    }
    Ok(())
}

/// Prints `error: NAME: cause: cause...` for one of several names.
fn report(name: &str, e: &dyn std::error::Error) {
    let mut m = format!("error: {name}: {e}");
    let mut cur = e.source();
    while let Some(c) = cur {
        m.push_str(&format!(": {c}"));
        cur = c.source();
    }
    eprintln!("{m}");
}

fn inspect(root: &Path, names: &[String], format: Option<&str>) -> Result<()> {
    let vols = volumes(root)?;
    let template = format.map(crate::output::template).transpose()?;
    let mut out = Vec::new();
    let mut failed = false;
    for n in names {
        match vols.get(n) {
            Ok(v) if template.is_some() => {
                let docker = json!({
                    "Name": v.name, "Driver": "local", "Mountpoint": vols.mountpoint(&v.name),
                    "CreatedAt": v.created, "Labels": v.labels, "Scope": "local", "Options": v.options,
                });
                if let Some(t) = &template {
                    println!("{}", t.render(&docker)?);
                }
            }
            Ok(v) => out.push(to_json(&vols, &v)),
            Err(e) => {
                failed = true;
                report(n, &e);
            }
        }
    }
    // One object for one name, as `corral inspect`; an array for several.
    if out.len() == 1 && names.len() == 1 {
        println!("{}", serde_json::to_string_pretty(&out[0])?);
    } else if !out.is_empty() {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if failed {
        return Err(Code(CORRAL_FAILURE).into());
    }
    Ok(())
}

fn rm(engine: &corral_engine::Engine, names: &[String], force: bool) -> Result<()> {
    let root = engine.root();
    let vols = volumes(root)?;
    let cs = containers(root)?;
    let mut failed = false;
    for n in names {
        match vols.remove(n, &cs) {
            Ok(_) => {
                engine.emit(
                    corral_engine::events::Event::new("volume", "destroy", n).attr("name", n),
                );
                println!("{n}");
            }
            Err(VolumeError::NotFound(_)) if force => {}
            Err(e) => {
                failed = true;
                report(n, &e);
            }
        }
    }
    if failed {
        return Err(Code(CORRAL_FAILURE).into());
    }
    Ok(())
}

fn prune(root: &Path) -> Result<()> {
    let vols = volumes(root)?;
    let cs = containers(root)?;
    let (removed, bytes) = vols.prune(&cs)?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for n in &removed {
            writeln!(out, "{n}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        crate::output::human(bytes)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::output::human;

    #[test]
    fn sizes_print_like_docker() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(4096), "4.096kB");
        assert_eq!(human(1_500_000), "1.5MB");
    }
}
