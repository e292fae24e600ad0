//! A VM's resources while it exists: its usage (`vm stats`: QEMU's cgroup, the guest's
//! memory from the agent or the balloon), its size changes (`vm set`: the balloon, or the
//! config for the next start), and the host's memory budget that starts are checked against
//! (overcommit).

use std::path::Path;
use std::time::Duration;

use crate::lifecycle::{current_state, host_memory_mib, VmError};
use crate::monitor;
use crate::qmp::Qmp;
use crate::store::{Status, Vms};

type Result<T> = std::result::Result<T, VmError>;

/// A VM's usage: QEMU's cgroup on the host, and the guest's own view from the agent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmStats {
    /// The VM's name.
    pub name: String,
    /// CPU time QEMU used, nanoseconds (all vCPU and device threads).
    pub cpu_usage_ns: u64,
    /// Host memory QEMU's cgroup uses, bytes.
    pub memory_usage: u64,
    /// Its limit, bytes.
    pub memory_limit: Option<u64>,
    /// The guest's total memory (after the balloon), KiB, when the agent answers.
    pub guest_mem_total_kib: Option<u64>,
    /// The guest's available memory, KiB.
    pub guest_mem_available_kib: Option<u64>,
    /// The balloon's target: the memory the guest may use now, bytes.
    pub balloon_bytes: Option<u64>,
}

/// Reads a running VM's usage.
pub fn stats(root: &Path, id: &str) -> Result<VmStats> {
    let vms = Vms::open(root);
    let cfg = vms.config(id)?;
    let st = current_state(&vms, id)?;
    if st.status != Status::Running {
        return Err(VmError::State(format!("VM {} is not running", cfg.name)));
    }
    let cgroot = Path::new(monitor::CGROUP_ROOT);
    let dirs = corral_container::cgroups::Cgroup::dirs_for(cgroot, &monitor::cgroup_name(&vms, id));
    let cg = corral_container::cgroups::Cgroup::from_dirs(cgroot, dirs).stats();
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let guest = if st.agent_ready {
        guest_info(&vms, id)
    } else {
        None
    };
    let mut qmp = Qmp::connect(&paths.qmp_cli, Duration::from_secs(2)).ok();
    let balloon = qmp
        .as_mut()
        .and_then(|q| q.execute("query-balloon", None).ok())
        .and_then(|v| v["actual"].as_u64());
    // Without the agent (a disk-booted guest), the guest's memory as its balloon driver
    // reports it.
    let (total, available) = match (&guest, qmp.as_mut()) {
        (Some(g), _) => (Some(g.mem_total_kib), Some(g.mem_available_kib)),
        (None, Some(q)) => balloon_memory(q),
        (None, None) => (None, None),
    };
    Ok(VmStats {
        name: cfg.name,
        cpu_usage_ns: cg.cpu_usage_ns,
        memory_usage: cg.memory_usage,
        memory_limit: cg.memory_limit,
        guest_mem_total_kib: total,
        guest_mem_available_kib: available,
        balloon_bytes: balloon,
    })
}

/// The guest's own view (memory, uptime, addresses) from the agent of a running VM, if it
/// answers within 5 s.
pub fn guest_info(vms: &Vms, id: &str) -> Option<corral_guest::proto::GuestInfo> {
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    crate::client::Client::connect(&paths.ctl)
        .and_then(|mut c| {
            c.set_timeout(Some(Duration::from_secs(5)))?;
            c.info()
        })
        .ok()
}

/// The balloon's QOM path (its device id in `qemu::args`).
const BALLOON: &str = "/machine/peripheral/balloon0";

/// Asks the balloon to collect the guest's memory statistics every second.
pub(crate) fn poll_guest_stats(q: &mut Qmp) {
    let _ = q.execute(
        "qom-set",
        Some(serde_json::json!({
            "path": BALLOON, "property": "guest-stats-polling-interval", "value": 1
        })),
    );
}

/// The guest's total and available memory in KiB from its balloon driver's last report;
/// `None` until it has reported (no driver, or polling just turned on, which it is here).
fn balloon_memory(q: &mut Qmp) -> (Option<u64>, Option<u64>) {
    let interval = q
        .execute(
            "qom-get",
            Some(serde_json::json!({"path": BALLOON, "property": "guest-stats-polling-interval"})),
        )
        .ok()
        .and_then(|v| v.as_u64());
    if interval == Some(0) {
        poll_guest_stats(q);
    }
    let Ok(v) = q.execute(
        "qom-get",
        Some(serde_json::json!({"path": BALLOON, "property": "guest-stats"})),
    ) else {
        return (None, None);
    };
    // -1 (or absent) for what the driver did not report.
    let kib = |k: &str| {
        v["stats"][k]
            .as_i64()
            .filter(|&b| b > 0)
            .map(|b| b as u64 >> 10)
    };
    (kib("stat-total-memory"), kib("stat-available-memory"))
}

/// What `vm set` changes.
#[derive(Debug, Clone, Default)]
pub struct SetSpec {
    /// New memory, MiB.
    pub memory_mib: Option<u64>,
    /// New vCPU count.
    pub cpus: Option<u32>,
}

/// What `vm set` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// The config changed; it applies at the next start.
    Recorded,
    /// A running guest's memory was changed through its balloon (within its boot size).
    Ballooned {
        /// The balloon's target now, MiB.
        mib: u64,
    },
}

/// Changes a VM's memory or CPUs. A stopped VM's config changes. A running VM's memory moves
/// through its balloon, between 64 MiB and the size it booted with; a running VM's CPU count
/// and memory beyond its boot size need a restart (refused with that advice).
pub fn set(root: &Path, id: &str, spec: &SetSpec) -> Result<SetOutcome> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let mut cfg = vms.config(id)?;
    if let Some(c) = spec.cpus {
        if c == 0 || c > 255 {
            return Err(VmError::Invalid(format!("--cpus {c}: give 1 to 255")));
        }
    }
    if let Some(m) = spec.memory_mib {
        if m < 64 {
            return Err(VmError::Invalid(format!(
                "--memory {m}M: give at least 64M"
            )));
        }
        if host_memory_mib().is_some_and(|h| m > h) {
            return Err(VmError::Invalid(format!(
                "--memory {m}M is more than this host has: give less"
            )));
        }
    }
    let st = current_state(&vms, id)?;
    if !matches!(st.status, Status::Running | Status::Starting) {
        if let Some(m) = spec.memory_mib {
            cfg.memory_mib = m;
        }
        if let Some(c) = spec.cpus {
            cfg.cpus = c;
        }
        vms.save_config(&cfg)?;
        return Ok(SetOutcome::Recorded);
    }
    if spec.cpus.is_some_and(|c| c != cfg.cpus) {
        return Err(VmError::State(format!(
            "VM {} is running: its CPU count changes at the next start (`corral vm stop`, `vm set --cpus`, `vm start`)",
            cfg.name
        )));
    }
    let Some(m) = spec.memory_mib else {
        return Ok(SetOutcome::Recorded);
    };
    if m > cfg.memory_mib {
        return Err(VmError::State(format!(
            "VM {} booted with {}M: a running guest can shrink and grow back up to that through its balloon; more needs a restart",
            cfg.name, cfg.memory_mib
        )));
    }
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let mut q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(5))
        .map_err(|e| VmError::State(format!("cannot reach VM {}'s QEMU: {e}", cfg.name)))?;
    q.execute("balloon", Some(serde_json::json!({ "value": m << 20 })))
        .map_err(|e| VmError::State(format!("the balloon of VM {} refused: {e}", cfg.name)))?;
    Ok(SetOutcome::Ballooned { mib: m })
}

/// corral's settings for VMs, from `CORRAL_ROOT/config.json` (all optional).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct VmSettings {
    /// How much memory the VMs of this host may be promised, as a multiple of the host's:
    /// above 1, guests are expected to give memory back through their balloons
    /// (`vm set --memory`). Default 1.5.
    #[serde(default = "default_overcommit")]
    pub vm_memory_overcommit: f64,
}

fn default_overcommit() -> f64 {
    1.5
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            vm_memory_overcommit: default_overcommit(),
        }
    }
}

/// Reads the settings; a missing file gives the defaults, a malformed one an error naming it.
pub fn settings(root: &Path) -> Result<VmSettings> {
    let path = root.join("config.json");
    match std::fs::read(&path) {
        Ok(data) => {
            let s: VmSettings = serde_json::from_slice(&data)
                .map_err(|e| VmError::Invalid(format!("{}: {e}", path.display())))?;
            if !(s.vm_memory_overcommit > 0.0 && s.vm_memory_overcommit <= 100.0) {
                return Err(VmError::Invalid(format!(
                    "{}: vm_memory_overcommit must be above 0 and at most 100",
                    path.display()
                )));
            }
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VmSettings::default()),
        Err(e) => Err(VmError::Io(path.display().to_string(), e)),
    }
}

/// Memory promised to VMs against what the host has.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryBudget {
    /// The host's memory, MiB.
    pub host_mib: u64,
    /// The overcommit ratio in force.
    pub overcommit: f64,
    /// What may be promised: host × ratio, MiB.
    pub limit_mib: u64,
    /// What the running VMs were promised (their boot sizes), MiB.
    pub promised_mib: u64,
    /// What their QEMUs use now (their cgroups), MiB.
    pub used_mib: u64,
    /// Running VMs.
    pub running: usize,
}

/// The memory budget of this state root's VMs.
pub fn memory_budget(root: &Path) -> Result<MemoryBudget> {
    let vms = Vms::open(root);
    let s = settings(root)?;
    let host_mib = host_memory_mib().unwrap_or(0);
    let mut promised_mib = 0;
    let mut used = 0u64;
    let mut running = 0;
    for id in vms.ids()? {
        let Ok(st) = current_state(&vms, &id) else {
            continue;
        };
        if !matches!(st.status, Status::Running | Status::Starting) {
            continue;
        }
        let Ok(cfg) = vms.config(&id) else { continue };
        running += 1;
        promised_mib += cfg.memory_mib;
        let cgroot = Path::new(monitor::CGROUP_ROOT);
        let dirs =
            corral_container::cgroups::Cgroup::dirs_for(cgroot, &monitor::cgroup_name(&vms, &id));
        used += corral_container::cgroups::Cgroup::from_dirs(cgroot, dirs)
            .stats()
            .memory_usage;
    }
    Ok(MemoryBudget {
        host_mib,
        overcommit: s.vm_memory_overcommit,
        limit_mib: (host_mib as f64 * s.vm_memory_overcommit) as u64,
        promised_mib,
        used_mib: used >> 20,
        running,
    })
}

/// Refuses to start a VM of `mib` MiB when that would promise more than the budget allows.
pub(crate) fn check_budget(root: &Path, name: &str, mib: u64) -> Result<()> {
    let b = memory_budget(root)?;
    if b.host_mib > 0 && b.promised_mib + mib > b.limit_mib {
        return Err(VmError::State(format!(
            "starting VM {name} ({mib}M) would promise {}M of memory to VMs, more than this host's {}M × {} (vm_memory_overcommit in {}) allows: stop a VM, start this one smaller (`vm set --memory`), or raise the ratio",
            b.promised_mib + mib,
            b.host_mib,
            b.overcommit,
            root.join("config.json").display()
        )));
    }
    Ok(())
}
