//! Guest disks and boot files against the real tools: image disks built from busybox images
//! (checked with e2fsprogs' `debugfs`, no mount), upper disks, the initramfs (checked with GNU
//! `cpio -t`) and module resolution on the installed Debian cloud kernel.
//!
//! Run as root: `cargo test -p corral-vm --test disks -- --nocapture` prints the timings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use corral_e2e::fixtures::{
    busybox_rootfs_bytes, three_layer_docker_archive, REMOVED_CONTENT, REPLACED_NEW,
};
use corral_e2e::{skip_unless_root, skip_unless_tools, test_tempdir};
use corral_image::{ImageName, Store};
use corral_vm::disk::{create_upper_disk, image_disk};
use corral_vm::initramfs::{agent_path, build_initramfs, check_static};
use corral_vm::kernel::GuestKernel;

/// `debugfs -R CMD FILE` (read-only), its stdout.
fn debugfs(file: &Path, cmd: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", cmd])
        .arg(file)
        .output()
        .expect("run debugfs");
    assert!(out.status.success(), "debugfs {cmd}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names in a `debugfs ls -l` listing.
fn names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// Nothing of an image disk build is left: no overlay mounted, no build directory.
fn assert_no_build_leftovers(cache: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cache_s = cache.to_str().unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains(cache_s)),
        "a build overlay is still mounted under {cache_s}"
    );
    for e in std::fs::read_dir(cache).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(
            !n.starts_with(".corral-build") && !n.ends_with(".tmp"),
            "left behind: {n}"
        );
    }
}

#[test]
fn image_disk_holds_busybox_and_second_build_is_cached() {
    if skip_unless_tools(
        "image_disk_holds_busybox_and_second_build_is_cached",
        &["debugfs", "/usr/sbin/mkfs.ext4", "/bin/busybox"],
    ) {
        return;
    }
    let dir = test_tempdir("vm-disk");
    let store = Store::open(dir.path().join("images")).unwrap();
    let name = ImageName::parse("busybox:test").unwrap();
    corral_image::import::import(&store, &busybox_rootfs_bytes()[..], &name).unwrap();
    let image = store.resolve("busybox:test").unwrap();
    let cache = dir.path().join("disks");

    let t = Instant::now();
    let disk = image_disk(&store, &image, &cache).unwrap();
    let built = t.elapsed();
    assert_eq!(disk, cache.join(format!("{}.ext4", image.id.hex())));
    assert_no_build_leftovers(&cache);

    let bin = debugfs(&disk, "ls -l /bin");
    let bin_names = names(&bin);
    assert!(bin_names.iter().any(|n| n == "busybox"), "{bin}");
    assert!(bin_names.iter().any(|n| n == "sh"), "{bin}");
    let stat = debugfs(&disk, "stat /bin/busybox");
    let size = std::fs::metadata("/bin/busybox").unwrap().len();
    assert!(stat.contains(&format!("Size: {size}")), "{stat}");
    assert!(stat.contains("Mode:  0755"), "{stat}");
    let tmp = debugfs(&disk, "stat /tmp");
    assert!(tmp.contains("Mode:  01777"), "{tmp}");
    let root = debugfs(&disk, "stat /root");
    assert!(
        root.contains("Mode:  0700") && root.contains("User:     0"),
        "{root}"
    );
    let label = debugfs(&disk, "stats");
    assert!(
        label.contains("Filesystem volume name:   corral-image"),
        "{label}"
    );

    let t = Instant::now();
    let again = image_disk(&store, &image, &cache).unwrap();
    let cached = t.elapsed();
    assert_eq!(again, disk);
    assert!(cached.as_millis() < 50, "cached call took {cached:?}");
    let meta = std::fs::metadata(&disk).unwrap();
    eprintln!(
        "busybox image disk: built in {built:?}, cached call {cached:?}, file {} MiB apparent, {} KiB allocated",
        meta.len() >> 20,
        std::os::unix::fs::MetadataExt::blocks(&meta) / 2
    );
}

#[test]
fn image_disk_applies_whiteouts_and_opaque_directories() {
    if skip_unless_tools(
        "image_disk_applies_whiteouts_and_opaque_directories",
        &["debugfs", "/usr/sbin/mkfs.ext4", "/bin/busybox"],
    ) {
        return;
    }
    let dir = test_tempdir("vm-disk-layers");
    let store = Store::open(dir.path().join("images")).unwrap();
    let archive = dir.path().join("three.tar");
    three_layer_docker_archive(&archive, "three:test");
    corral_image::archive::load(&store, std::fs::File::open(&archive).unwrap()).unwrap();
    let image = store.resolve("three:test").unwrap();
    assert_eq!(image.diff_ids().unwrap().len(), 3);
    let cache = dir.path().join("disks");
    let disk = image_disk(&store, &image, &cache).unwrap();
    assert_no_build_leftovers(&cache);

    let etc = debugfs(&disk, "ls -l /etc");
    let etc_names = names(&etc);
    assert!(etc_names.iter().any(|n| n == "replaced"), "{etc}");
    assert!(
        !etc_names.iter().any(|n| n == "removed"),
        "whiteout ignored: {etc}"
    );
    assert_eq!(debugfs(&disk, "cat /etc/replaced").as_bytes(), REPLACED_NEW);
    assert_ne!(REMOVED_CONTENT, REPLACED_NEW);
    let opaque = names(&debugfs(&disk, "ls -l /data/opaque"));
    let files: Vec<&String> = opaque.iter().filter(|n| *n != "." && *n != "..").collect();
    assert_eq!(files, ["c"], "opaque directory not applied");
    // Overlay's own attributes must not leak into the disk.
    let ea = debugfs(&disk, "ea_list /data/opaque");
    assert!(!ea.contains("overlay"), "{ea}");
}

#[test]
fn upper_disk_is_sparse_and_never_overwritten() {
    if skip_unless_tools(
        "upper_disk_is_sparse_and_never_overwritten",
        &["debugfs", "qemu-img"],
    ) {
        return;
    }
    let dir = test_tempdir("vm-upper");
    let path = dir.path().join("upper.qcow2");
    let t = Instant::now();
    create_upper_disk(&path, 4 << 30).unwrap();
    let took = t.elapsed();
    let meta = std::fs::metadata(&path).unwrap();
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(allocated < 64 << 20, "allocated {allocated} bytes");
    // A qcow2 file of 4 GiB virtual size holding an ext4 filesystem.
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"], 4u64 << 30, "{info}");
    let raw = test_tempdir("vm-upper-raw");
    let raw_path = raw.path().join("upper.raw");
    let conv = std::process::Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&path)
        .arg(&raw_path)
        .status()
        .unwrap();
    assert!(conv.success());
    let stats = debugfs(&raw_path, "stats");
    assert!(
        stats.contains("Filesystem volume name:   corral-upper"),
        "{stats}"
    );
    assert!(stats.contains("has_journal"), "{stats}");
    let err = create_upper_disk(&path, 1 << 30).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), meta.len());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "temporary files left: {left:?}");
    eprintln!(
        "upper disk 4 GiB: created in {took:?}, {} KiB allocated",
        allocated >> 10
    );
}

fn kernel_or_skip(test: &str) -> Option<GuestKernel> {
    match GuestKernel::find(None) {
        Ok(k) if k.modules.is_dir() => Some(k),
        Ok(k) => {
            corral_e2e::report_skip(test, &format!("no {}", k.modules.display()));
            None
        }
        Err(e) => {
            corral_e2e::report_skip(test, &e.to_string());
            None
        }
    }
}

#[test]
fn modules_come_dependencies_first() {
    let Some(k) = kernel_or_skip("modules_come_dependencies_first") else {
        return;
    };
    let mods = k
        .modules_for(&[
            "virtio_blk",
            "virtio_net",
            "virtio_console",
            "virtio_pci",
            "overlay",
            "ext4",
        ])
        .unwrap();
    let stems: Vec<String> = mods
        .iter()
        .map(|p| corral_vm::kernel::module_name(p.to_str().unwrap()).unwrap())
        .collect();
    let at = |n: &str| {
        stems
            .iter()
            .position(|s| s == n)
            .unwrap_or_else(|| panic!("{n} missing from {stems:?}"))
    };
    for (dep, user) in [
        ("virtio_ring", "virtio"),
        ("virtio", "virtio_blk"),
        ("virtio", "virtio_net"),
        ("failover", "net_failover"),
        ("net_failover", "virtio_net"),
        ("virtio", "virtio_console"),
        ("virtio_pci_modern_dev", "virtio_pci"),
        ("virtio_pci_legacy_dev", "virtio_pci"),
        ("virtio", "virtio_pci"),
    ] {
        assert!(at(dep) < at(user), "{dep} after {user}: {stems:?}");
    }
    at("overlay");
    let mut unique = stems.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stems.len(), "duplicates in {stems:?}");
    assert!(mods.iter().all(|p| p.is_file()));
    eprintln!("module load order: {stems:?}");
}

/// The agent if built, else busybox-static (any static binary checks the archive).
fn agent_or_busybox() -> Option<PathBuf> {
    match agent_path() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("no guest agent ({e}); using /bin/busybox as /init");
            let b = PathBuf::from("/bin/busybox");
            (b.is_file() && check_static(&b).is_ok()).then_some(b)
        }
    }
}

#[test]
fn initramfs_lists_init_and_modules_and_is_cached() {
    let test = "initramfs_lists_init_and_modules_and_is_cached";
    if skip_unless_root(test) {
        return;
    }
    if skip_unless_tools(test, &["cpio"]) {
        return;
    }
    let Some(k) = kernel_or_skip(test) else {
        return;
    };
    let Some(agent) = agent_or_busybox() else {
        corral_e2e::report_skip(test, "no static agent nor /bin/busybox");
        return;
    };
    let dir = test_tempdir("vm-initramfs");
    let t = Instant::now();
    let img = build_initramfs(dir.path(), &k, &agent).unwrap();
    let built = t.elapsed();
    let t = Instant::now();
    assert_eq!(build_initramfs(dir.path(), &k, &agent).unwrap(), img);
    let cached = t.elapsed();
    assert!(cached.as_millis() < 100, "cached call took {cached:?}");

    let out = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(std::fs::File::open(&img).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8(out.stdout).unwrap();
    let entries: Vec<&str> = listing.lines().collect();
    for want in [
        "init",
        "corral/modules",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
    ] {
        assert!(entries.contains(&want), "{want} missing: {entries:?}");
    }
    assert!(!entries.contains(&"dev/console"));

    let x = tempfile::tempdir().unwrap();
    let st = Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
        .current_dir(x.path())
        .stdin(std::fs::File::open(&img).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read(x.path().join("init")).unwrap(),
        std::fs::read(&agent).unwrap()
    );
    let list = std::fs::read_to_string(x.path().join("corral/modules")).unwrap();
    let listed: Vec<&str> = list.lines().collect();
    assert!(listed.len() >= 10, "{listed:?}");
    for m in &listed {
        let rel = m.strip_prefix('/').expect("absolute path");
        assert!(entries.contains(&rel), "{m} listed but not archived");
        assert!(m.starts_with(&format!("/lib/modules/{}/", k.version)));
    }
    let pos = |n: &str| listed.iter().position(|m| m.ends_with(n)).unwrap();
    assert!(pos("/virtio_ring.ko") < pos("/virtio.ko"));
    assert!(pos("/virtio.ko") < pos("/virtio_blk.ko"));
    let size = std::fs::metadata(&img).unwrap().len();
    eprintln!(
        "initramfs: {} KiB ({} modules, /init {} KiB), built in {built:?}, cached call {cached:?}",
        size >> 10,
        listed.len(),
        std::fs::metadata(&agent).unwrap().len() >> 10
    );
}
