//! VMs through the engine: `corral vm create/run/start/stop/rm`, and a container spec run with
//! `--isolation vm` (a VM of its own whose agent runs the image's process), with their events.
//!
//! The VM's mechanics (disks, initramfs, QEMU, its monitor, snapshots, migration) are
//! corral-vm's; what is here is the door and the translation of a container spec.

use std::time::Duration;

use corral_vm::lifecycle::{self, CreateSpec, Source};
use corral_vm::store::{NetRequest, VmConfig};

use crate::containers::Created;
use crate::events::Event;
use crate::spec::ContainerSpec;
use crate::{Engine, EngineError, Result};

/// Memory of a VM made for `--isolation vm` without `-m`.
pub const ISOLATED_MEMORY_MIB: u64 = 512;
/// Writable disk of such a VM.
pub const ISOLATED_DISK_BYTES: u64 = 2 << 30;
/// How long such a VM may take to boot to its agent.
pub const ISOLATED_BOOT_TIMEOUT_SECS: u64 = 90;

impl Engine {
    /// Makes a VM (not started).
    pub fn create_vm(&self, spec: &CreateSpec) -> Result<VmConfig> {
        let cfg = lifecycle::create(&self.root, spec)?;
        self.emit(Event::new("vm", "create", &cfg.id).attr("name", &cfg.name));
        Ok(cfg)
    }

    /// Starts a VM; attached, the caller relays its main process or console.
    pub fn start_vm(&self, id: &str, attach: bool) -> Result<lifecycle::Started> {
        let started = lifecycle::start(&self.root, id, attach, &self.exe)?;
        let name = self.vms().config(id).map(|c| c.name).unwrap_or_default();
        self.emit(Event::new("vm", "start", id).attr("name", name));
        Ok(started)
    }

    /// Stops a VM (ACPI power-off, then QEMU ended after `timeout`).
    pub fn stop_vm(&self, id: &str, timeout: Duration) -> Result<()> {
        if lifecycle::stop(&self.root, id, timeout)? {
            self.emit(Event::new("vm", "stop", id));
        }
        Ok(())
    }

    /// Removes a VM (a running one only with `force`).
    pub fn remove_vm(&self, id: &str, force: bool) -> Result<()> {
        let name = self.vms().config(id).map(|c| c.name).unwrap_or_default();
        lifecycle::remove(&self.root, id, force)?;
        self.emit(Event::new("vm", "destroy", id).attr("name", name));
        Ok(())
    }

    /// Takes snapshot `name` of a VM (with the running machine's state when `memory`).
    pub fn snapshot_vm(
        &self,
        id: &str,
        name: &str,
        memory: bool,
    ) -> Result<corral_vm::snapshot::Snapshot> {
        let s = corral_vm::snapshot::create(&self.root, id, name, memory)?;
        self.emit(Event::new("vm", "snapshot", id).attr("snapshot", name));
        Ok(s)
    }

    /// Restores snapshot `name` into a VM. A running VM resumes a memory snapshot in place
    /// (a disk snapshot needs it stopped); a stopped VM gets the snapshot's disk back, and with
    /// `resume` a memory snapshot's machine is started where it was saved.
    pub fn restore_vm_snapshot(
        &self,
        id: &str,
        name: &str,
        resume: bool,
    ) -> Result<corral_vm::snapshot::Restored> {
        use corral_vm::snapshot::{self, Restored};
        let done = snapshot::restore(&self.root, id, name)?;
        match done {
            Restored::NeedsStart if resume => {
                let keep = snapshot::get(&self.root, id, name)?.keep();
                lifecycle::start_from_snapshot(&self.root, id, name, keep, &self.exe)?;
            }
            Restored::NeedsStart => snapshot::revert_disk(&self.root, id, name)?,
            Restored::InPlace | Restored::Disk => {}
        }
        self.emit(Event::new("vm", "snapshot-restore", id).attr("snapshot", name));
        Ok(done)
    }

    /// Deletes snapshot `name` of a VM.
    pub fn remove_vm_snapshot(&self, id: &str, name: &str) -> Result<()> {
        corral_vm::snapshot::remove(&self.root, id, name)?;
        self.emit(Event::new("vm", "snapshot-remove", id).attr("snapshot", name));
        Ok(())
    }

    /// Makes a VM from a stopped VM or a template (a copy-on-write disk, a new identity); not
    /// started.
    pub fn clone_vm(&self, spec: &corral_vm::clone::CloneSpec) -> Result<VmConfig> {
        let cfg = corral_vm::clone::clone(&self.root, spec)?;
        self.emit(
            Event::new("vm", "clone", &cfg.id)
                .attr("name", &cfg.name)
                .attr("source", &spec.source),
        );
        Ok(cfg)
    }

    /// A container spec as a VM of its own (`--isolation vm`): the image boots with corral's
    /// agent as init, which runs the spec's process. What a VM cannot honour is refused, not
    /// ignored.
    pub(crate) fn create_isolated(&self, spec: &ContainerSpec) -> Result<Created> {
        let cfg = self.create_vm(&isolated_spec(spec)?)?;
        Ok(Created {
            id: cfg.id,
            name: cfg.name,
        })
    }
}

/// The VM that runs `spec` with `--isolation vm`.
pub fn isolated_spec(spec: &ContainerSpec) -> Result<CreateSpec> {
    let refuse = |what: &str, why: &str| {
        Err(EngineError::invalid(format!(
            "{what} is not supported with --isolation vm: {why}"
        )))
    };
    if !spec.mounts.is_empty() {
        return Err(EngineError::invalid("-v/--tmpfs are not supported with --isolation vm yet: copy files in with `corral vm cp`"));
    }
    if spec.networking.publish_all {
        return refuse("-P", "publish ports with -p");
    }
    if !spec.security.devices.is_empty() {
        return refuse(
            "--device",
            "the VM has its own devices (host device passthrough is not done)",
        );
    }
    if spec.pod.is_some() {
        return refuse(
            "--pod",
            "a pod's containers share the host's kernel; a pod inside one VM is not done yet",
        );
    }
    if !spec.group_add.is_empty() {
        return refuse("--group-add", "give the user's groups in the image");
    }
    let names = crate::networks::requested(&spec.networking.networks);
    let networks = if names.iter().any(|n| n == "none") {
        if names.len() > 1 {
            return Err(EngineError::invalid(
                "--network none cannot be combined with other networks",
            ));
        }
        let n = &spec.networking;
        if !n.aliases.is_empty() || !n.publish.is_empty() || n.ip.is_some() || n.mac.is_some() {
            return Err(EngineError::invalid(
                "--network-alias, -p, --ip and --mac-address need a network, not --network none",
            ));
        }
        Vec::new()
    } else {
        if names.iter().any(|n| n == "host") {
            return Err(EngineError::invalid("--network host: a VM has its own kernel and cannot share the host's network stack; use a corral network"));
        }
        for p in &spec.networking.publish {
            p.parse::<corral_net::PortSpec>()
                .map_err(|e| EngineError::invalid(format!("-p {p:?}: {e}")))?;
        }
        names
            .into_iter()
            .enumerate()
            .map(|(i, network)| NetRequest {
                network,
                aliases: spec.networking.aliases.clone(),
                ports: if i == 0 {
                    spec.networking.publish.clone()
                } else {
                    Vec::new()
                },
                ip: spec.networking.ip.filter(|_| i == 0),
                mac: spec.networking.mac.clone().filter(|_| i == 0),
            })
            .collect()
    };
    let restart = match spec.restart.as_str() {
        "" => corral_container::config::RestartPolicy::No,
        r => corral_container::config::RestartPolicy::parse(r).ok_or_else(|| {
            EngineError::invalid(format!(
                "--restart {r:?}: expected no, on-failure[:N], always or unless-stopped"
            ))
        })?,
    };
    Ok(CreateSpec {
        restart,
        name: spec.name.clone(),
        cpus: spec
            .resources
            .cpus
            .map(|c| c.ceil().max(1.0) as u32)
            .unwrap_or(1),
        memory_mib: spec
            .resources
            .memory
            .map_or(ISOLATED_MEMORY_MIB, |b| b.div_ceil(1 << 20)),
        accel: None,
        source: Source::Image {
            image: spec.image.clone(),
            kernel: None,
        },
        disk_bytes: ISOLATED_DISK_BYTES,
        networks,
        command: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: spec.env.clone(),
        workdir: spec.workdir.clone(),
        user: spec.user.clone(),
        auto_remove: spec.auto_remove,
        cloud_init: None,
        boot_timeout_secs: ISOLATED_BOOT_TIMEOUT_SECS,
        tty: spec.tty,
        interactive: spec.interactive,
        cdrom: None,
        vnc: false,
    })
}
