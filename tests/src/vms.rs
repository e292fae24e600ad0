//! Virtual machines: the guest kernel the VM tests boot, a guard that removes the VMs a test
//! made, and the host-side check that no QEMU of a world is left.

use std::time::Duration;

use crate::process::wait_deadline;
use crate::Corral;

/// The newest Debian cloud kernel's version in /boot (what corral boots image VMs with), or
/// `None` when setup did not install it.
pub fn guest_kernel() -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64"))
        .collect();
    found.sort();
    found
        .pop()
        .map(|n| n.trim_start_matches("vmlinuz-").to_owned())
}

/// Prints the loud SKIPPED line and returns true when setup did not install the guest kernel.
pub fn skip_without_guest_kernel(test: &str) -> bool {
    if guest_kernel().is_some() {
        return false;
    }
    crate::report_skip(
        test,
        "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
    );
    true
}

/// Removes (`vm rm -f`) the VMs a test made when dropped, even when the test fails; never
/// panics.
pub struct VmGuard<'a> {
    corral: &'a Corral,
    names: Vec<String>,
}

impl<'a> VmGuard<'a> {
    /// A guard over VMs of `corral`'s world, tracking none yet.
    pub fn new(corral: &'a Corral) -> Self {
        VmGuard {
            corral,
            names: Vec::new(),
        }
    }

    /// Tracks a VM by name.
    pub fn track(&mut self, name: &str) {
        self.names.push(name.to_owned());
    }
}

impl Drop for VmGuard<'_> {
    fn drop(&mut self) {
        for n in &self.names {
            let child = self
                .corral
                .command(&["vm", "rm", "-f", n])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            if let Ok(mut child) = child {
                let _ = wait_deadline(&mut child, Duration::from_secs(60));
            }
        }
    }
}

/// Pids of the QEMU processes whose command line names a file under `root` (a world's state
/// root): what a world's VMs left running.
pub fn qemu_processes_of(root: &str) -> Vec<u32> {
    processes_of("qemu-system", root)
}

/// Pids of the processes whose program's name starts with `program` and whose command line
/// names a file under `root`.
pub fn processes_of(program: &str, root: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        let argv0 = cmd.split('\0').next().unwrap_or_default();
        let name = argv0.rsplit('/').next().unwrap_or_default();
        if name.starts_with(program) && cmd.contains(root) {
            out.push(pid);
        }
    }
    out
}

/// Panics if a VM of `c`'s world left its state directory or a QEMU process behind.
pub fn assert_no_vm_leftovers(c: &Corral) {
    let vms = c.root().join("vms");
    let left: Vec<String> = std::fs::read_dir(&vms)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 64)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "VM directories left in {}: {left:?}",
        vms.display()
    );
    let qemus = qemu_processes_of(&c.root().to_string_lossy());
    assert!(
        qemus.is_empty(),
        "QEMU processes of this world still run: {qemus:?}"
    );
}
