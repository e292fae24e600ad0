//! `version` and `info`.
//!
//! The host probes here read /proc and /sys only; they move into corral-container (cgroups)
//! and corral-vm (KVM) when those crates arrive.

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

/// Whether KVM can run a full guest: /dev/kvm opens and the CPU has vmx or svm.
fn kvm_state(cpuinfo: &str) -> (&'static str, &'static str) {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    match (dev, hw) {
        (true, true) => ("usable", "kvm"),
        (true, false) => ("present, but the CPU shows no vmx/svm (nested or paravirtualized KVM): it cannot run a stock Linux guest", "tcg"),
        (false, _) => ("absent", "tcg"),
    }
}

pub fn info(root: &Path, as_json: bool) -> Result<()> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroups = cgroup_layout(&mountinfo);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (kvm, accel) = kvm_state(&cpuinfo);
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
        println!("/dev/kvm:        {kvm}");
        println!("VM accelerator:  {accel}");
        println!("state root:      {}", root.display());
        println!("images:          {images} ({})", super::image::human(usage));
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
