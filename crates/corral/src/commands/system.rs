//! `system df`, `system prune`, and the man pages.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use corral_engine::list::ContainerFilter;
use corral_engine::Engine;
use serde_json::json;

use crate::cli::SystemCommand;
use crate::output::human;

/// Bytes under `path` (symlinks not followed; unreadable parts skipped).
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            n += du(&e.path());
        }
    }
    n
}

/// Runs a `system` verb.
pub fn run(engine: &Engine, cmd: SystemCommand) -> Result<()> {
    match cmd {
        SystemCommand::Df { json } => df(engine, json),
        SystemCommand::Prune {
            all,
            volumes,
            force: _,
        } => prune(engine, all, volumes),
    }
}

fn df(engine: &Engine, as_json: bool) -> Result<()> {
    let store = engine.images()?;
    let cs = engine.containers()?;
    let views = engine.list(true, &ContainerFilter::default())?;
    let used_images: std::collections::BTreeSet<String> =
        views.iter().map(|v| v.state.image_id.clone()).collect();
    let images = store.images()?;
    let layer_sum = |img: &corral_image::Image| -> u64 {
        img.diff_ids()
            .unwrap_or_default()
            .iter()
            .map(|d| store.layer_size(d).unwrap_or(0))
            .sum()
    };
    let images_size: u64 = store.disk_usage();
    let unused_images: u64 = images
        .iter()
        .filter(|i| !used_images.contains(&i.id.to_string()))
        .map(layer_sum)
        .sum();
    let active = views
        .iter()
        .filter(|v| v.state.status == corral_container::Status::Running)
        .count();
    let mut containers_size = 0;
    let mut stopped_size = 0;
    for v in &views {
        let n = du(&cs.dir(&v.state.id).join("upper"));
        containers_size += n;
        if v.state.status != corral_container::Status::Running {
            stopped_size += n;
        }
    }
    let vols = corral_container::volumes::Volumes::open(engine.root().join("volumes"))?;
    let vlist = vols.list()?;
    let mut vol_size = 0;
    let mut vol_unused = 0;
    let mut vol_active = 0;
    for v in &vlist {
        let n = du(&vols.mountpoint(&v.name));
        vol_size += n;
        if vols.users(&v.name, &cs)?.is_empty() {
            vol_unused += n;
        } else {
            vol_active += 1;
        }
    }
    let rows = [
        (
            "Images",
            images.len(),
            images
                .iter()
                .filter(|i| used_images.contains(&i.id.to_string()))
                .count(),
            images_size,
            unused_images,
        ),
        (
            "Containers",
            views.len(),
            active,
            containers_size,
            stopped_size,
        ),
        (
            "Local Volumes",
            vlist.len(),
            vol_active,
            vol_size,
            vol_unused,
        ),
    ];
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(t, total, act, size, rec)| {
                json!({"type": t, "total": total, "active": act, "size": size, "reclaimable": rec})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:15}  {:>6}  {:>6}  {:>10}  RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    )?;
    for (t, total, act, size, rec) in rows {
        let pct = (rec * 100).checked_div(size).unwrap_or(0);
        writeln!(
            out,
            "{t:15}  {total:>6}  {act:>6}  {:>10}  {} ({pct}%)",
            human(size),
            human(rec)
        )?;
    }
    Ok(())
}

fn prune(engine: &Engine, all: bool, volumes: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // Stopped containers.
    let f = ContainerFilter::parse(&["status=exited".into(), "status=created".into()])?;
    let mut removed = Vec::new();
    for v in engine.list(true, &f)? {
        if engine.remove(&v.state.id, false, true).is_ok() {
            removed.push(v.state.id);
        }
    }
    if !removed.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for id in &removed {
            writeln!(out, "{id}")?;
        }
        writeln!(out)?;
    }
    // Networks without endpoints (not the default one).
    let nets = engine.networks();
    let mut gone = Vec::new();
    for n in nets.list()? {
        if n.name != corral_net::store::DEFAULT_NETWORK
            && nets.endpoints(&n.name)?.is_empty()
            && engine.remove_network(&n.name, false).is_ok()
        {
            gone.push(n.name);
        }
    }
    if !gone.is_empty() {
        writeln!(out, "Deleted Networks:")?;
        for n in &gone {
            writeln!(out, "{n}")?;
        }
        writeln!(out)?;
    }
    // Images no container uses: with -a all of them, else only unnamed (dangling) ones.
    let store = engine.images()?;
    let before = store.disk_usage();
    {
        let used: std::collections::BTreeSet<String> = engine
            .list(true, &ContainerFilter::default())?
            .into_iter()
            .map(|v| v.state.image_id)
            .collect();
        for img in store.images()? {
            let dangling = img
                .names
                .iter()
                .all(|n| n.starts_with(corral_image::store::DANGLING_PREFIX));
            if (all || dangling) && !used.contains(&img.id.to_string()) {
                if let Ok((untagged, deleted)) = engine.remove_image(&img.id.to_string(), true) {
                    for u in untagged.iter().filter(|u| !u.starts_with('@')) {
                        writeln!(out, "untagged: {u}")?;
                    }
                    for d in deleted {
                        writeln!(out, "deleted: {d}")?;
                    }
                }
            }
        }
    }
    store.gc_keeping(&engine.layers_in_use()?)?;
    let freed = before.saturating_sub(store.disk_usage());
    if volumes {
        let vols = corral_container::volumes::Volumes::open(engine.root().join("volumes"))?;
        let (names, bytes) = vols.prune(&engine.containers()?)?;
        if !names.is_empty() {
            writeln!(out, "Deleted Volumes:")?;
            for n in &names {
                writeln!(out, "{n}")?;
            }
            writeln!(out)?;
        }
        writeln!(out, "Total reclaimed space: {}", human(freed + bytes))?;
    } else {
        writeln!(out, "Total reclaimed space: {}", human(freed))?;
    }
    Ok(())
}

/// `corral man DIR`: one page per command, from the same definitions as `--help`.
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(())
}
