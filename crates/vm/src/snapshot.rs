//! VM snapshots: internal qcow2 snapshots of a VM's writable disk, with or without the whole
//! running machine (memory, CPUs, devices).
//!
//! - `--memory` on a running VM: QEMU's `snapshot-save` job writes the machine's state into the
//!   writable disk beside its blocks; a restore (`snapshot-load` on a running VM, `-loadvm` on a
//!   stopped one) resumes every process where it was.
//! - Without it: the disk alone, crash-consistent: a running guest is asked to `sync` through
//!   the agent, its CPUs paused for the instant of
//!   `blockdev-snapshot-internal-sync`, and resumed; a stopped VM's disk is snapshotted by
//!   `qemu-img snapshot`. A disk-only restore needs the VM stopped.
//!
//! Which snapshots a VM has is recorded in `vms/<id>/snapshots.json` (names, times, kind, the
//! VM's id), so that a snapshot is only ever restored into the VM it was taken of.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::lifecycle::{current_state, VmError};
use crate::qmp::Qmp;
use crate::store::{BootSource, Status, Vms};

type Result<T> = std::result::Result<T, VmError>;

/// One snapshot, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its name (unique per VM).
    pub name: String,
    /// The VM it was taken of.
    pub vm_id: String,
    /// When (RFC 3339).
    pub created: String,
    /// Whether it holds the running machine (memory, CPUs, devices).
    pub memory: bool,
    /// Milliseconds it took.
    #[serde(default)]
    pub took_ms: u64,
    /// The guest's addresses when it was taken (`IFACE ADDR/PREFIX`), which a guest resumed
    /// from it still has.
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl Snapshot {
    /// Per NIC, the address to take again when the guest resumes from this snapshot.
    pub fn keep(&self) -> Vec<(Option<std::net::Ipv4Addr>, Option<[u8; 6]>)> {
        self.addresses
            .iter()
            .map(|a| {
                let ip = a
                    .split_whitespace()
                    .last()
                    .and_then(|cidr| cidr.split('/').next())
                    .and_then(|ip| ip.parse().ok());
                (ip, None)
            })
            .collect()
    }
}

/// The QEMU node name of a writable disk (see `qemu::drive`).
pub fn node_name(serial: &str) -> String {
    format!("n-{serial}")
}

/// The VM's snapshottable disk: its path and the serial QEMU knows it by.
fn writable_disk(vms: &Vms, id: &str) -> Result<(PathBuf, &'static str)> {
    let cfg = vms.config(id)?;
    match (&cfg.boot, &cfg.upper_disk) {
        (BootSource::Image { .. }, Some(upper)) => Ok((upper.clone(), "upper")),
        (BootSource::Disk { path, format, .. }, _) if format == "qcow2" => {
            Ok((path.clone(), "boot"))
        }
        (BootSource::Disk { .. }, _) => Err(VmError::Invalid(format!(
            "VM {}'s disk is raw: snapshots need qcow2 (`qemu-img convert -O qcow2`, then boot that)",
            cfg.name
        ))),
        _ => Err(VmError::Invalid(format!(
            "VM {} has no writable disk of corral's to snapshot (booted from --kernel)",
            cfg.name
        ))),
    }
}

fn records_path(vms: &Vms, id: &str) -> PathBuf {
    vms.dir(id).join("snapshots.json")
}

/// The VM's snapshots, oldest first.
pub fn list(vms: &Vms, id: &str) -> Result<Vec<Snapshot>> {
    Ok(corral_net::fsutil::read_json(&records_path(vms, id))
        .map_err(crate::store::StoreError::from)?
        .unwrap_or_default())
}

fn save(vms: &Vms, id: &str, list: &[Snapshot]) -> Result<()> {
    corral_net::fsutil::write_json(&records_path(vms, id), &list)
        .map_err(crate::store::StoreError::from)?;
    Ok(())
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn qmp(vms: &Vms, id: &str) -> Result<Qmp> {
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(5))
        .map_err(|e| VmError::State(format!("cannot reach the VM's QEMU: {e}")))?;
    // While it writes the machine's state QEMU may answer slowly (seen above 5 s on a loaded
    // host); the job itself is bounded by `run_job`.
    q.set_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| VmError::State(e.to_string()))?;
    Ok(q)
}

/// Runs a QMP job command and waits (bounded) for it to conclude; its error, if any.
fn run_job(q: &mut Qmp, command: &str, args: serde_json::Value, limit: Duration) -> Result<()> {
    let job = args["job-id"].as_str().unwrap_or_default().to_owned();
    q.execute(command, Some(args))
        .map_err(|e| VmError::State(e.to_string()))?;
    let deadline = Instant::now() + limit;
    loop {
        let jobs = q
            .execute("query-jobs", None)
            .map_err(|e| VmError::State(e.to_string()))?;
        let mine = jobs
            .as_array()
            .and_then(|a| a.iter().find(|j| j["id"] == job.as_str()).cloned());
        match mine {
            Some(j) if j["status"] == "concluded" => {
                let _ = q.execute("job-dismiss", Some(json!({ "id": job })));
                if let Some(e) = j["error"].as_str() {
                    return Err(VmError::State(format!("QEMU's {command} failed: {e}")));
                }
                return Ok(());
            }
            Some(_) => {}
            None => return Err(VmError::State(format!("QEMU's {command} job vanished"))),
        }
        if Instant::now() >= deadline {
            let _ = q.execute("job-cancel", Some(json!({ "id": job })));
            return Err(VmError::State(format!(
                "QEMU's {command} did not finish within {}s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn qemu_img(args: &[&str], disk: &Path) -> Result<()> {
    let out = Command::new("qemu-img")
        .args(args)
        .arg(disk)
        .output()
        .map_err(|e| VmError::Io("qemu-img (apt-get install qemu-utils)".into(), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(VmError::State(format!(
            "qemu-img {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Takes snapshot `name` of VM `id` (see the module's doc for what `memory` means).
pub fn create(root: &Path, id: &str, name: &str, memory: bool) -> Result<Snapshot> {
    let vms = Vms::open(root);
    crate::store::check_name(name).map_err(|_| {
        VmError::Invalid(format!(
            "invalid snapshot name {name:?}: letters, digits, '_', '.', '-', at most 63"
        ))
    })?;
    let _lock = vms.lock(id)?;
    let cfg = vms.config(id)?;
    let (disk, serial) = writable_disk(&vms, id)?;
    let mut records = list(&vms, id)?;
    if records.iter().any(|s| s.name == name) {
        return Err(VmError::Invalid(format!(
            "VM {} already has a snapshot {name}: choose another name or remove it (`corral vm snapshot rm {} {name}`)",
            cfg.name, cfg.name
        )));
    }
    let st = current_state(&vms, id)?;
    let running = st.status == Status::Running;
    let started = Instant::now();
    let node = node_name(serial);
    if running {
        if !memory && st.agent_ready {
            // The guest's dirty pages reach the disk first (then its CPUs pause for the
            // snapshot): what the guest wrote before is in it.
            let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
            if let Ok(mut c) = crate::client::Client::connect(&paths.ctl) {
                let _ = c.set_timeout(Some(Duration::from_secs(30)));
                let _ = c.request(&corral_guest::proto::Request::Sync);
            }
        }
        let mut q = qmp(&vms, id)?;
        if memory {
            run_job(
                &mut q,
                "snapshot-save",
                json!({ "job-id": format!("save-{name}"), "tag": name, "vmstate": node, "devices": [node] }),
                Duration::from_secs(600),
            )?;
        } else {
            q.execute("stop", None)
                .map_err(|e| VmError::State(e.to_string()))?;
            let r = q.execute(
                "blockdev-snapshot-internal-sync",
                Some(json!({ "device": node, "name": name })),
            );
            let _ = q.execute("cont", None);
            r.map_err(|e| VmError::State(format!("the disk snapshot failed: {e}")))?;
        }
    } else if memory {
        return Err(VmError::State(format!(
            "VM {} is not running: a snapshot with --memory needs a running machine (take a disk snapshot without --memory)",
            cfg.name
        )));
    } else {
        qemu_img(&["snapshot", "-c", name], &disk)?;
    }
    let snap = Snapshot {
        name: name.to_owned(),
        vm_id: id.to_owned(),
        created: now(),
        memory,
        took_ms: started.elapsed().as_millis() as u64,
        addresses: if memory {
            st.addresses.clone()
        } else {
            Vec::new()
        },
    };
    records.push(snap.clone());
    save(&vms, id, &records)?;
    Ok(snap)
}

/// How a restore went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The running machine was put back in place (memory snapshot of a running VM).
    InPlace,
    /// The stopped VM's disk was rolled back; it starts from there next time.
    Disk,
    /// The stopped VM must be started from the snapshot: the caller starts it with
    /// `loadvm` (see [`crate::lifecycle::start_from_snapshot`]).
    NeedsStart,
}

/// Finds snapshot `name` of VM `id`, or says whose it is.
fn find(vms: &Vms, id: &str, name: &str) -> Result<Snapshot> {
    if let Some(s) = list(vms, id)?.into_iter().find(|s| s.name == name) {
        return Ok(s);
    }
    let vm = vms.config(id)?.name;
    for other in vms.ids()?.into_iter().filter(|o| o != id) {
        if list(vms, &other)?.iter().any(|s| s.name == name) {
            let owner = vms.config(&other).map(|c| c.name).unwrap_or(other);
            return Err(VmError::Invalid(format!(
                "snapshot {name} is VM {owner}'s, not {vm}'s: a snapshot restores only into the VM it was taken of"
            )));
        }
    }
    Err(VmError::Invalid(format!(
        "VM {vm} has no snapshot {name} (see `corral vm snapshot ls {vm}`)"
    )))
}

/// Snapshot `name` of VM `id`.
pub fn get(root: &Path, id: &str, name: &str) -> Result<Snapshot> {
    find(&Vms::open(root), id, name)
}

/// Restores snapshot `name` into VM `id`.
pub fn restore(root: &Path, id: &str, name: &str) -> Result<Restored> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let snap = find(&vms, id, name)?;
    let (disk, serial) = writable_disk(&vms, id)?;
    let st = current_state(&vms, id)?;
    let running = matches!(st.status, Status::Running | Status::Starting);
    match (snap.memory, running) {
        (true, true) => {
            let node = node_name(serial);
            let mut q = qmp(&vms, id)?;
            run_job(
                &mut q,
                "snapshot-load",
                json!({ "job-id": format!("load-{name}"), "tag": name, "vmstate": node, "devices": [node] }),
                Duration::from_secs(600),
            )?;
            // The guest resumes where it was when the snapshot was taken.
            let status = q.status().unwrap_or_default();
            if status != "running" {
                q.execute("cont", None)
                    .map_err(|e| VmError::State(e.to_string()))?;
            }
            Ok(Restored::InPlace)
        }
        (true, false) => Ok(Restored::NeedsStart),
        (false, true) => Err(VmError::State(format!(
            "{name} is a disk snapshot: stop the VM first (`corral vm stop`), then restore"
        ))),
        (false, false) => {
            qemu_img(&["snapshot", "-a", name], &disk)?;
            Ok(Restored::Disk)
        }
    }
}

/// Puts back the disk of snapshot `name` (disk or memory) into stopped VM `id`: the next
/// start boots from what the disk held then; a memory snapshot's machine is not resumed.
pub fn revert_disk(root: &Path, id: &str, name: &str) -> Result<()> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let snap = find(&vms, id, name)?;
    let (disk, _) = writable_disk(&vms, id)?;
    let st = current_state(&vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        return Err(VmError::State(format!(
            "the VM runs: stop it before putting back the disk of {}",
            snap.name
        )));
    }
    qemu_img(&["snapshot", "-a", name], &disk)
}

/// Deletes snapshot `name` of VM `id`.
pub fn remove(root: &Path, id: &str, name: &str) -> Result<()> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let snap = find(&vms, id, name)?;
    let (disk, serial) = writable_disk(&vms, id)?;
    let st = current_state(&vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        let mut q = qmp(&vms, id)?;
        run_job(
            &mut q,
            "snapshot-delete",
            json!({ "job-id": format!("delete-{name}"), "tag": name, "devices": [node_name(serial)] }),
            Duration::from_secs(600),
        )?;
    } else {
        qemu_img(&["snapshot", "-d", name], &disk)?;
    }
    let mut records = list(&vms, id)?;
    records.retain(|s| s.name != snap.name);
    save(&vms, id, &records)
}
