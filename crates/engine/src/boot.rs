//! Bringing back, after the host restarted, what was running with a restart policy:
//! `corral start --all-restartable`, which a boot-time unit runs (docs/cli-containers.md has
//! one for systemd). corral has no daemon that would do it by itself, as dockerd does.
//!
//! What comes back: every container and VM whose restart policy is not `no`, that was running
//! when its monitor went away (the host went down, or the monitor was killed: its record says
//! so), and that nobody stopped. A container or VM stopped by `stop`/`kill`/`vm stop` stays
//! stopped (docker's `unless-stopped`, which corral's `always` is).

use corral_container::config::RestartPolicy;
use corral_container::Status;

use crate::events::Event;
use crate::{Engine, Result};

/// One workload brought back, or not.
#[derive(Debug)]
pub struct Restarted {
    /// `container` or `vm`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
}

/// The error a container's record carries when its monitor went away while it ran.
const CONTAINER_MONITOR_DIED: &str = "the container's monitor died";
/// The same for a VM.
const VM_MONITOR_DIED: &str = "the VM's monitor died";

impl Engine {
    /// Starts every container and VM that was running with a restart policy when the host
    /// went down (see the module's doc); what it started, and what failed.
    pub fn start_restartable(&self) -> Result<Vec<Restarted>> {
        let mut out = Vec::new();
        let cs = self.containers()?;
        for id in cs.ids()? {
            // `load` is what notices a dead monitor, and records it.
            let (Ok(s), Ok(cfg)) = (cs.load(&id), cs.config(&id)) else {
                continue;
            };
            let died = s
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(CONTAINER_MONITOR_DIED));
            if s.status != Status::Exited
                || cfg.restart == RestartPolicy::No
                || s.stop_requested
                || !died
            {
                continue;
            }
            let error = self.start(&id, false).err().map(|e| e.to_string());
            if error.is_none() {
                self.emit(Event::new("container", "restart", &id).attr("name", &s.name));
            }
            out.push(Restarted {
                kind: "container",
                name: s.name,
                error,
            });
        }
        let vms = self.vms();
        for id in vms.ids().map_err(corral_vm::lifecycle::VmError::from)? {
            let (Ok(st), Ok(cfg)) = (
                corral_vm::lifecycle::current_state(&vms, &id),
                vms.config(&id),
            ) else {
                continue;
            };
            let died = st
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(VM_MONITOR_DIED));
            if st.status != corral_vm::store::Status::Stopped
                || cfg.restart == RestartPolicy::No
                || !died
            {
                continue;
            }
            let error = self.start_vm(&id, false).err().map(|e| e.to_string());
            out.push(Restarted {
                kind: "vm",
                name: cfg.name,
                error,
            });
        }
        Ok(out)
    }
}
