//! `version` and `info`.
//!
//! The host probes here read /proc and /sys; what concerns VMs (the accelerator, QEMU, the
//! guest kernel) is corral-vm's, asked here.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

pub fn version(as_json: bool) -> Result<()> {
    let v = env!("CARGO_PKG_VERSION");
    if as_json {
        println!(
            "{}",
            json!({ "version": v, "os": "linux", "arch": std::env::consts::ARCH })
        );
    } else {
        println!("corral {v} (linux/{})", std::env::consts::ARCH);
    }
    Ok(())
}

/// The cgroup layout: v1, hybrid (v1 with a cgroup2 mount at unified/) or v2.
fn cgroup_layout(mountinfo: &str) -> &'static str {
    let fstype_at = |mp: &str| {
        mountinfo.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (pre.split(' ').nth(4)? == mp).then(|| post.split(' ').next().unwrap_or("").to_owned())
        })
    };
    match fstype_at("/sys/fs/cgroup").as_deref() {
        Some("cgroup2") => "v2",
        Some(_) if fstype_at("/sys/fs/cgroup/unified").as_deref() == Some("cgroup2") => {
            "hybrid (v1 + cgroup2 at /sys/fs/cgroup/unified)"
        }
        Some(_) => "v1",
        None => "none mounted",
    }
}

pub fn info(root: &Path, as_json: bool) -> Result<()> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroups = cgroup_layout(&mountinfo);
    let support = corral_vm::qemu::detect_accel();
    let accel = support.best.as_str();
    let kvm = support.reason.as_str();
    let guest_kernel = corral_vm::kernel::GuestKernel::find(None)
        .map(|k| k.kernel.display().to_string())
        .unwrap_or_else(|e| format!("none ({e})"));
    let qemu = corral_vm::qemu::qemu_binary()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| e);
    let vms = corral_vm::store::Vms::open(root)
        .ids()
        .map(|v| v.len())
        .unwrap_or(0);
    let budget = corral_vm::lifecycle::memory_budget(root).ok();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let (images, usage) = match corral_image::Store::open(root.join("images")) {
        Ok(store) => (
            store.images().map(|i| i.len()).unwrap_or(0),
            store.disk_usage(),
        ),
        Err(_) => (0, 0),
    };
    if as_json {
        let v = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "kernel": kernel,
            "cpus": cpus,
            "memory_bytes": mem_kib * 1024,
            "cgroups": cgroups,
            "kvm": kvm,
            "vm_accelerator": accel,
            "qemu": qemu,
            "guest_kernel": guest_kernel,
            "vms": vms,
            "vm_memory": budget,
            "root": root,
            "images": images,
            "images_disk_bytes": usage,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("corral:          {}", env!("CARGO_PKG_VERSION"));
        println!("kernel:          {kernel}");
        println!("cpus:            {cpus}");
        println!("memory:          {:.1} GiB", mem_kib as f64 / 1048576.0);
        println!("cgroups:         {cgroups}");
        println!("VM accelerator:  {accel} ({kvm})");
        println!("QEMU:            {qemu}");
        println!("guest kernel:    {guest_kernel}");
        println!("VMs:             {vms}");
        if let Some(b) = &budget {
            println!(
                "VM memory:       {}M promised to {} running of {}M allowed ({}M × {} overcommit); {}M used",
                b.promised_mib, b.running, b.limit_mib, b.host_mib, b.overcommit, b.used_mib
            );
        }
        println!("state root:      {}", root.display());
        println!(
            "images:          {images} ({})",
            crate::output::human(usage)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_layout_recognises_hybrid() {
        let hybrid = "30 24 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(cgroup_layout(hybrid).starts_with("hybrid"));
        let v2 = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_layout(v2), "v2");
    }
}
