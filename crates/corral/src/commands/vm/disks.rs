//! `vm disk ls|add|rm|resize`: a VM's writable disk and its data disks.

use std::path::Path;

use anyhow::{anyhow, Result};

use super::vms;

/// `vm disk ...`.
pub(super) fn run(root: &Path, cmd: crate::cli::VmDiskCommand) -> Result<()> {
    use crate::cli::VmDiskCommand;
    let v = vms(root);
    match cmd {
        VmDiskCommand::Resize { disk, vm, size } => {
            let id = v.resolve(&vm)?;
            let (add, spec) = match size.strip_prefix('+') {
                Some(s) => (true, s),
                None => (false, size.as_str()),
            };
            let bytes = corral_vm::disk::parse_size(spec)
                .map_err(|e| anyhow!("size {size:?}: {e} (e.g. 20G, or +5G)"))?;
            let target = if add {
                corral_vm::resize::current_size(root, &id, disk.as_deref())? + bytes
            } else {
                bytes
            };
            let r = corral_vm::resize::resize(root, &id, disk.as_deref(), target)?;
            if r.from == r.to {
                println!("{vm}: the disk is already {}", human_bytes(r.to));
            } else {
                println!(
                    "{vm}: disk grown from {} to {}{}",
                    human_bytes(r.from),
                    human_bytes(r.to),
                    if r.online {
                        " (the running guest sees it now)"
                    } else {
                        ""
                    }
                );
            }
        }
        VmDiskCommand::Add { vm, name, size } => {
            let id = v.resolve(&vm)?;
            let bytes = corral_vm::disk::parse_size(&size)
                .map_err(|e| anyhow!("size {size:?}: {e} (e.g. 10G)"))?;
            corral_vm::data_disks::add(root, &id, &name, bytes)?;
            println!("{name}");
        }
        VmDiskCommand::Rm { vm, name } => {
            let id = v.resolve(&vm)?;
            corral_vm::data_disks::remove(root, &id, &name)?;
            println!("{name}");
        }
        VmDiskCommand::Ls { json, vm } => {
            let id = v.resolve(&vm)?;
            let cfg = v.config(&id)?;
            let mut rows = Vec::new();
            if let Ok(size) = corral_vm::resize::current_size(root, &id, None) {
                rows.push(("(writable)".to_owned(), size));
            }
            for d in &cfg.data_disks {
                let size = corral_vm::resize::current_size(root, &id, Some(&d.name)).unwrap_or(0);
                rows.push((d.name.clone(), size));
            }
            if json {
                let list: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(n, s)| serde_json::json!({"name": n, "size": s}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:20}  {:>10}", "DISK", "SIZE");
                for (n, s) in rows {
                    println!("{n:20}  {:>10}", human_bytes(s));
                }
            }
        }
    }
    Ok(())
}

/// Bytes in binary units as sizes are given (`20G`): whole GiB or MiB when they are.
fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b => format!("{b} bytes"),
    }
}
