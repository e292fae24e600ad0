//! `vm disk resize VM SIZE`: grows a VM's writable disk — an image VM's `upper.qcow2`, a
//! disk-booted VM's boot disk. A running VM's disk grows at once through QMP's
//! `block_resize` (the guest sees the new capacity; growing its partition and filesystem is
//! the guest's, as cloud-init's growpart does at boot); a stopped VM's file with `qemu-img
//! resize`. Disks only grow: shrinking one under its filesystem loses data, so it is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lifecycle::VmError;
use crate::qmp::Qmp;
use crate::store::{BootSource, Status, VmConfig, Vms};

type Result<T> = std::result::Result<T, VmError>;

/// What a resize did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resized {
    /// The size before, bytes.
    pub from: u64,
    /// The size now, bytes.
    pub to: u64,
    /// The VM was running: the guest saw the change at once.
    pub online: bool,
}

/// The disk `vm disk resize` grows — the writable disk, or data disk `data` —, its format
/// and its QEMU node.
fn disk_of(cfg: &VmConfig, data: Option<&str>) -> Result<(PathBuf, String, String)> {
    if let Some(name) = data {
        return cfg
            .data_disks
            .iter()
            .find(|d| d.name == name)
            .map(|d| (d.path.clone(), "qcow2".to_owned(), format!("n-{name}")))
            .ok_or_else(|| {
                VmError::Invalid(format!(
                    "VM {} has no data disk named {name} (`corral vm disk ls {}`)",
                    cfg.name, cfg.name
                ))
            });
    }
    match (&cfg.boot, &cfg.upper_disk) {
        (BootSource::Image { .. }, Some(u)) => Ok((u.clone(), "qcow2".into(), "n-upper".into())),
        (BootSource::Disk { path, format, .. }, _) => {
            Ok((path.clone(), format.clone(), "n-boot".into()))
        }
        _ => Err(VmError::Invalid(format!(
            "VM {} boots a kernel and has no disk of its own to grow",
            cfg.name
        ))),
    }
}

/// A disk file's virtual size (shared read: QEMU may hold it).
fn virtual_size(file: &Path) -> Result<u64> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(file)
        .output()
        .map_err(|e| VmError::Io("running qemu-img (apt-get install qemu-utils)".into(), e))?;
    if !out.status.success() {
        return Err(VmError::Invalid(format!(
            "qemu-img info {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["virtual-size"].as_u64().ok_or_else(|| {
        VmError::Invalid(format!("qemu-img info {}: no virtual size", file.display()))
    })
}

/// The size of VM `id`'s writable disk (or data disk `data`), bytes.
pub fn current_size(root: &Path, id: &str, data: Option<&str>) -> Result<u64> {
    let cfg = Vms::open(root).config(id)?;
    virtual_size(&disk_of(&cfg, data)?.0)
}

/// Grows VM `id`'s writable disk (or data disk `data`) to `size` bytes.
pub fn resize(root: &Path, id: &str, data: Option<&str>, size: u64) -> Result<Resized> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let cfg = vms.config(id)?;
    let (file, format, node) = disk_of(&cfg, data)?;
    let from = virtual_size(&file)?;
    if size < from {
        return Err(VmError::Invalid(format!(
            "disks only grow: {}'s disk is {} bytes and {size} is smaller (shrinking it under its filesystem would lose data)",
            cfg.name, from
        )));
    }
    if size == from {
        return Ok(Resized {
            from,
            to: size,
            online: false,
        });
    }
    let st = crate::lifecycle::current_state(&vms, id)?;
    if st.status == Status::Running {
        let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
        let mut q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(5))
            .map_err(|e| VmError::State(format!("VM {}'s QMP: {e}", cfg.name)))?;
        q.execute(
            "block_resize",
            Some(serde_json::json!({"node-name": node, "size": size})),
        )
        .map_err(|e| VmError::Invalid(format!("growing {}'s disk: {e}", cfg.name)))?;
        return Ok(Resized {
            from,
            to: size,
            online: true,
        });
    }
    if matches!(st.status, Status::Starting) {
        return Err(VmError::State(format!(
            "VM {} is starting: try again once it runs",
            cfg.name
        )));
    }
    let out = std::process::Command::new("qemu-img")
        .args(["resize", "-q", "-f", &format])
        .arg(&file)
        .arg(size.to_string())
        .output()
        .map_err(|e| VmError::Io("running qemu-img (apt-get install qemu-utils)".into(), e))?;
    if !out.status.success() {
        return Err(VmError::Invalid(format!(
            "growing {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Resized {
        from,
        to: size,
        online: false,
    })
}
