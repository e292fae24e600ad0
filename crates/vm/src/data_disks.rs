//! `vm disk add|rm|ls`: a VM's extra data disks, qcow2 files in its directory attached as
//! virtio disks whose serial is the disk's name (a Linux guest sees `/dev/disk/by-id/
//! virtio-NAME`). They are added and removed while the VM is stopped and attached at its
//! next start (q35's root bus has no hotplug without root ports; not done); `vm disk
//! resize --disk NAME` grows one, `vm rm` removes them with the VM.

use std::path::Path;

use crate::lifecycle::VmError;
use crate::store::{DataDisk, Status, Vms};

type Result<T> = std::result::Result<T, VmError>;

/// Names the boot drives already use (`qemu::args`).
const TAKEN: &[&str] = &["image", "upper", "boot", "cidata"];

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if !ok {
        return Err(VmError::Invalid(format!(
            "disk name {name:?}: use a-z, 0-9 and '-', at most 20 characters (it is the disk's serial in the guest)"
        )));
    }
    if TAKEN.contains(&name) {
        return Err(VmError::Invalid(format!(
            "disk name {name:?} is corral's own (one of {}): pick another",
            TAKEN.join(", ")
        )));
    }
    Ok(())
}

fn stopped(vms: &Vms, id: &str, what: &str) -> Result<crate::store::VmConfig> {
    let cfg = vms.config(id)?;
    let st = crate::lifecycle::current_state(vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        return Err(VmError::State(format!(
            "VM {} is running: stop it to {what} a data disk (attached at its next start)",
            cfg.name
        )));
    }
    Ok(cfg)
}

/// Makes an empty data disk of `size` bytes named `name` for stopped VM `id`.
pub fn add(root: &Path, id: &str, name: &str, size: u64) -> Result<DataDisk> {
    check_name(name)?;
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let mut cfg = stopped(&vms, id, "add")?;
    if cfg.data_disks.iter().any(|d| d.name == name) {
        return Err(VmError::Invalid(format!(
            "VM {} has a disk named {name} already",
            cfg.name
        )));
    }
    if size < 1 << 20 {
        return Err(VmError::Invalid(format!(
            "a data disk of {size} bytes is too small: give at least 1M"
        )));
    }
    let path = vms.dir(id).join(format!("disk-{name}.qcow2"));
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size.to_string())
        .output()
        .map_err(|e| VmError::Io("running qemu-img (apt-get install qemu-utils)".into(), e))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&path);
        return Err(VmError::Invalid(format!(
            "creating {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let disk = DataDisk {
        name: name.to_owned(),
        path: path.clone(),
    };
    cfg.data_disks.push(disk.clone());
    if let Err(e) = vms.save_config(&cfg) {
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    Ok(disk)
}

/// Removes data disk `name` (and its data) from stopped VM `id`.
pub fn remove(root: &Path, id: &str, name: &str) -> Result<()> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let mut cfg = stopped(&vms, id, "remove")?;
    let Some(i) = cfg.data_disks.iter().position(|d| d.name == name) else {
        return Err(VmError::Invalid(format!(
            "VM {} has no data disk named {name} (`corral vm disk ls {}`)",
            cfg.name, cfg.name
        )));
    };
    let disk = cfg.data_disks.remove(i);
    // The config first: a crash between the two leaves a file no config names, which `vm rm`
    // takes with the directory, never a config naming a missing file.
    vms.save_config(&cfg)?;
    let _ = std::fs::remove_file(&disk.path);
    Ok(())
}
