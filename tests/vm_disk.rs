//! End-to-end tests of corral's full-disk-image VMs (`corral vm run --boot-disk FILE`): the
//! disk boots through firmware (SeaBIOS; OVMF with `--uefi`) and gets its cloud-init
//! user-data from a NoCloud seed, an ISO labelled `cidata` on a second virtio disk.
//!
//! The bootable disk is built at test time, without network: an MBR with syslinux's boot
//! code, one ext2 partition with extlinux, Debian's cloud kernel and a small initramfs
//! (busybox-static, the virtio and iso9660 modules, an `/init` script). The script prints a
//! marker, finds the seed disk by its serial, prints its `user-data` and powers off; the test
//! checks both came through the console. A disk that does not boot must fail clearly and fast.

use std::collections::{HashMap, HashSet};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_e2e::containers::poll_until;
use corral_e2e::process::{describe, run_bounded, run_ok};
use corral_e2e::vms::{assert_no_vm_leftovers, guest_kernel, VmGuard};
use corral_e2e::{path_str, report_skip, skip_unless_tools, unique_token, Corral};

/// Every VM command here is bounded by this (the disk boots in 3–5 s under TCG; parallel tests
/// share two cores).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// Bound for the disk-building tools.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the test disk's `/init` prints first.
const MARKER: &str = "corral-disk-test: init runs";

/// syslinux's MBR boot code (syslinux-common).
const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";

/// Where the partition starts: 1 MiB, in bytes.
const PART_OFFSET: u64 = 1 << 20;

/// The modules the initramfs loads to see virtio disks and mount an ISO, before their
/// dependencies (which come from modules.dep).
const MODULES: [&str; 12] = [
    "pvpanic",
    "pvpanic_mmio",
    "virtio",
    "virtio_ring",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
    "cdrom",
    "isofs",
    "virtio_balloon",
    "virtio_net",
];

/// The busybox applets `/init` uses, as links in `/bin`.
const APPLETS: [&str; 11] = [
    "sh", "mount", "insmod", "cat", "sleep", "mkdir", "poweroff", "ls", "reboot", "ip", "udhcpc",
];

/// udhcpc's script in the test disk: configures the address and route it was given, as a
/// distribution's DHCP client does, and prints them.
const DHCP_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via "$router"
    echo "corral-disk-test: dhcp bound $ip/$mask router $router dns $dns host $hostname domain $domain"
    ;;
esac
"#;

/// A world for disk-VM tests, or `None` after a loud SKIPPED line.
fn world(test: &str, tools: &[&str]) -> Option<Corral> {
    let mut needed = vec!["qemu-system-x86_64", "genisoimage"];
    needed.extend_from_slice(tools);
    if skip_unless_tools(test, &needed) {
        return None;
    }
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    Some(c)
}

/// A loop mount of the disk's partition, unmounted on drop (the loop device goes with it:
/// `mount -o loop` sets autoclear).
struct PartitionMount {
    dir: PathBuf,
    mounted: bool,
}

impl PartitionMount {
    fn new(disk: &Path, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let opts = format!("loop,offset={PART_OFFSET}");
        run_ok(
            "mount",
            &["-o", &opts, path_str(disk), path_str(dir)],
            TOOL_TIMEOUT,
        );
        PartitionMount {
            dir: dir.to_owned(),
            mounted: true,
        }
    }

    fn unmount(&mut self) {
        if self.mounted {
            run_ok("umount", &[path_str(&self.dir)], TOOL_TIMEOUT);
            self.mounted = false;
        }
    }
}

impl Drop for PartitionMount {
    fn drop(&mut self) {
        if self.mounted {
            let mut umount = Command::new("umount");
            umount.arg(&self.dir);
            if !run_bounded(&mut umount, None, TOOL_TIMEOUT)
                .status
                .success()
            {
                let mut lazy = Command::new("umount");
                lazy.arg("-l").arg(&self.dir);
                let _ = run_bounded(&mut lazy, None, TOOL_TIMEOUT);
            }
        }
    }
}

/// The module files for `names` and their dependencies, dependencies first, from the kernel's
/// modules.dep.
fn modules_with_deps(kver: &str, names: &[&str]) -> Vec<PathBuf> {
    let base = Path::new("/lib/modules").join(kver);
    let dep = std::fs::read_to_string(base.join("modules.dep")).expect("modules.dep");
    let mut by_name: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in dep.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let file = path.rsplit('/').next().unwrap_or(path);
        let name = file.split(".ko").next().unwrap_or(file).replace('-', "_");
        by_name.insert(
            name,
            (
                path.to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            ),
        );
    }
    let path_name = |p: &str| {
        let file = p.rsplit('/').next().unwrap_or(p);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    fn visit(
        name: &str,
        by_name: &HashMap<String, (String, Vec<String>)>,
        path_name: &dyn Fn(&str) -> String,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        let (path, deps) = by_name
            .get(name)
            .unwrap_or_else(|| panic!("module {name} is not in modules.dep"));
        for d in deps {
            visit(&path_name(d), by_name, path_name, seen, out);
        }
        out.push(path.clone());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in names {
        visit(n, &by_name, &path_name, &mut seen, &mut out);
    }
    out.into_iter()
        .map(|p| {
            assert!(
                p.ends_with(".ko"),
                "{p}: a compressed module; busybox insmod wants plain .ko files"
            );
            base.join(p)
        })
        .collect()
}

/// The initramfs's `/init`: loads `modules` in order, prints the marker, finds the seed disk
/// by its serial, prints its user-data and powers off.
fn init_script(modules: &[String]) -> String {
    format!(
        r#"#!/bin/sh
mkdir -p /proc /sys /dev /seed
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "{MARKER}"
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "corral-disk-test: insmod $m failed"
done
seed=
for try in 1 2 3 4 5 6 7 8 9 10; do
  for b in /sys/block/vd*; do
    if [ "$(cat $b/serial 2>/dev/null)" = cidata ]; then seed=/dev/${{b##*/}}; fi
  done
  if [ -n "$seed" ] && [ -b "$seed" ]; then break; fi
  sleep 1
done
echo "corral-disk-test: seed disk ${{seed:-none}}"
if [ -n "$seed" ] && mount -t iso9660 -o ro "$seed" /seed; then
  cat /seed/user-data
  cat /seed/meta-data
fi
echo "corral-disk-test: done"
# What the user-data asks the test guest to do at the end: reboot or panic (else power off).
case "$(cat /seed/user-data 2>/dev/null)" in
  *corral-action-reboot*) reboot -f ;;
  *corral-action-panic*) echo c > /proc/sysrq-trigger ;;
  *corral-action-shell*) echo "corral-disk-test: shell"; exec sh ;;
  *corral-action-dhcp*)
    echo "corral-disk-test: network-config follows"
    cat /seed/network-config
    ip link set lo up
    ip link set eth0 up
    udhcpc -i eth0 -n -q -f -t 20 -T 1 -s /bin/dhcp-script || echo "corral-disk-test: no lease"
    echo "corral-disk-test: shell"
    exec sh ;;
esac
poweroff -f
"#,
        modules = modules.join(" ")
    )
}

/// Writes the initramfs (an uncompressed newc cpio) to `out`, staged in `stage`.
fn build_initramfs(kver: &str, stage: &Path, out: &Path) {
    std::fs::create_dir_all(stage.join("bin")).unwrap();
    std::fs::create_dir_all(stage.join("lib/modules")).unwrap();
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet)).unwrap();
    }
    let mut names = Vec::new();
    for m in modules_with_deps(kver, &MODULES) {
        let file = m.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&m, stage.join("lib/modules").join(&file)).unwrap();
        names.push(file.trim_end_matches(".ko").to_owned());
    }
    let init = stage.join("init");
    std::fs::write(&init, init_script(&names)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = stage.join("bin/dhcp-script");
    std::fs::write(&script, DHCP_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cpio = Command::new("sh")
        .args(["-c", "find . -print0 | cpio --null -o -H newc --quiet"])
        .current_dir(stage)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(cpio.status.success(), "cpio: {}", describe(&cpio));
}

/// Builds a 64 MiB raw disk that SeaBIOS boots: syslinux's MBR, one bootable ext2 partition
/// with extlinux, the guest kernel and the test initramfs. Returns its path.
fn build_boot_disk(dir: &Path, kver: &str) -> PathBuf {
    let initrd = dir.join("initrd.img");
    build_initramfs(kver, &dir.join("initramfs"), &initrd);
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk");
    sfdisk.args(["-q", path_str(&disk)]);
    let out = run_bounded(
        &mut sfdisk,
        Some(format!("start={}, type=83, bootable\n", PART_OFFSET / 512).into_bytes()),
        TOOL_TIMEOUT,
    );
    assert!(out.status.success(), "sfdisk: {}", describe(&out));
    // ext2: extlinux knows it, and the guest never mounts it (the initramfs is the root).
    let offset = format!("offset={PART_OFFSET}");
    let size = format!("{}k", ((64 << 20) - PART_OFFSET) / 1024);
    run_ok(
        "mkfs.ext2",
        &["-q", "-F", "-E", &offset, path_str(&disk), &size],
        TOOL_TIMEOUT,
    );
    let mut mnt = PartitionMount::new(&disk, &dir.join("mnt"));
    std::fs::copy(format!("/boot/vmlinuz-{kver}"), mnt.dir.join("vmlinuz")).unwrap();
    std::fs::copy(&initrd, mnt.dir.join("initrd.img")).unwrap();
    std::fs::write(
        mnt.dir.join("extlinux.conf"),
        "SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  \
         INITRD /initrd.img\n  APPEND console=ttyS0 quiet panic=-1\n",
    )
    .unwrap();
    let mut extlinux = Command::new("extlinux");
    extlinux.arg("--install").arg(&mnt.dir);
    let out = run_bounded(&mut extlinux, None, TOOL_TIMEOUT);
    assert!(out.status.success(), "extlinux: {}", describe(&out));
    mnt.unmount();
    // The MBR's boot code: its first 440 bytes, before the disk signature and partition table.
    let mbr = std::fs::read(MBR_BIN).unwrap();
    assert!(mbr.len() >= 440, "{MBR_BIN}: {} bytes", mbr.len());
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&mbr[..440]).unwrap();
    f.sync_all().unwrap();
    disk
}

/// A disk-VM world with the test's bootable disk built in it, or `None` after a loud SKIPPED.
fn world_with_disk(test: &str) -> Option<(Corral, PathBuf)> {
    let c = world(
        test,
        &[
            "sfdisk",
            "mkfs.ext2",
            "extlinux",
            "cpio",
            "/bin/busybox",
            MBR_BIN,
        ],
    )?;
    let Some(kver) = guest_kernel() else {
        report_skip(
            test,
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
        return None;
    };
    let build = c.path("build");
    std::fs::create_dir_all(&build).unwrap();
    let disk = build_boot_disk(&build, &kver);
    Some((c, disk))
}

/// `vm run -d` of the test disk whose user-data asks its init for `action` (reboot, panic,
/// shell) at the end, with `flags`, tracked by `guard`; the VM's name.
fn run_action_vm(
    c: &Corral,
    guard: &mut VmGuard<'_>,
    disk: &Path,
    action: &str,
    flags: &[&str],
) -> String {
    let ud = c.path(&format!("user-data-{action}-{}.yaml", unique_token()));
    std::fs::write(&ud, format!("#cloud-config\n# corral-action-{action}\n")).unwrap();
    let name = format!("{action}{}", &unique_token()[..5].replace('x', "0"));
    guard.track(&name);
    let mut args = vec!["vm", "run", "-d", "--name", &name];
    if !flags.contains(&"--network") {
        args.extend_from_slice(&["--network", "none"]);
    }
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--boot-disk", path_str(disk), "--cloud-init", path_str(&ud)]);
    let run = run_bounded(&mut c.command(&args), None, COMMAND_TIMEOUT);
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));
    name
}

/// The user-data file, with a token only this test knows.
fn user_data(c: &Corral) -> (PathBuf, String) {
    let token = format!("token-{}", unique_token());
    let path = c.path("user-data.yaml");
    std::fs::write(&path, format!("#cloud-config\n# corral-test {token}\n")).unwrap();
    (path, token)
}

#[test]
fn built_disk_boots_through_firmware_and_reads_its_cloud_init_seed() {
    let test = "built_disk_boots_through_firmware_and_reads_its_cloud_init_seed";
    let Some(c) = world(
        test,
        &[
            "sfdisk",
            "mkfs.ext2",
            "extlinux",
            "cpio",
            "qemu-img",
            "/bin/busybox",
            MBR_BIN,
        ],
    ) else {
        return;
    };
    let Some(kver) = guest_kernel() else {
        report_skip(
            test,
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
        return;
    };
    let build = c.path("build");
    std::fs::create_dir_all(&build).unwrap();
    let t = Instant::now();
    let disk = build_boot_disk(&build, &kver);
    eprintln!("built the boot disk in {:?}", t.elapsed());
    let (ud, token) = user_data(&c);

    // Raw, in the foreground: the console is the output; the guest's power-off ends it.
    let t = Instant::now();
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--network",
        "none",
        "--boot-disk",
        path_str(&disk),
        "--cloud-init",
        path_str(&ud),
    ]);
    eprintln!("raw disk: booted and powered off in {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(console.contains("SeaBIOS"), "{}", describe(&out));
    assert!(console.contains(MARKER), "{}", describe(&out));
    assert!(
        console.contains("corral-disk-test: seed disk /dev/vd"),
        "the seed is a virtio disk with serial cidata: {}",
        describe(&out)
    );
    assert!(
        console.contains(&token),
        "the user-data came through the seed: {}",
        describe(&out)
    );
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    assert_no_vm_leftovers(&c);

    // qcow2, detached, named by a relative path: the VM imports it at create, so it starts
    // again from another directory.
    let qcow = build.join("disk.qcow2");
    run_ok(
        "qemu-img",
        &["convert", "-O", "qcow2", path_str(&disk), path_str(&qcow)],
        TOOL_TIMEOUT,
    );
    let name = format!("d{}", &unique_token()[..8].replace('x', "0"));
    let mut guard = VmGuard::new(&c);
    guard.track(&name);
    let run = run_bounded(
        c.command(&[
            "vm",
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--boot-disk",
            "disk.qcow2",
            "--cloud-init",
            path_str(&ud),
        ])
        .current_dir(&build),
        None,
        COMMAND_TIMEOUT,
    );
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim().len(),
        64,
        "vm run -d prints the id: {}",
        describe(&run)
    );
    let info: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "inspect", &name])).unwrap();
    // The VM boots its own copy, in corral's store: the user's file is left as it was.
    let id = info[0]["id"].as_str().unwrap_or_default().to_owned();
    let copy = c.root().join("vms").join(&id).join("boot.qcow2");
    assert_eq!(
        info[0]["config"]["boot"]["path"],
        path_str(&copy),
        "the VM's copy: {info}"
    );
    assert_eq!(info[0]["config"]["boot"]["format"], "qcow2", "{info}");
    let user_sha = corral_e2e::sha256_hex(&std::fs::read(&qcow).unwrap());
    let mut console = String::new();
    let booted = poll_until(Duration::from_secs(120), || {
        console = c.ok(&["vm", "logs", "--console", &name]);
        console.contains(&token) && console.contains("corral-disk-test: done")
    });
    assert!(booted, "the qcow2 disk boots and reads its seed: {console}");
    assert!(console.contains(MARKER), "{console}");
    let stopped = poll_until(Duration::from_secs(60), || {
        let ls: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "ls", "--json"])).unwrap();
        ls[0]["status"] == "stopped"
    });
    assert!(stopped, "the guest powered itself off");
    // Again, from here.
    c.ok(&["vm", "start", &name]);
    let again = poll_until(Duration::from_secs(120), || {
        c.ok(&["vm", "logs", "--console", &name])
            .matches("corral-disk-test: done")
            .count()
            >= 2
    });
    assert!(
        again,
        "the VM boots its disk again: {}",
        c.ok(&["vm", "logs", "--console", &name])
    );
    // A second VM from the same file boots beside it (each has its own copy); one that uses
    // the file in place shares it with nobody else here.
    let twin = format!("t{}", &unique_token()[..8].replace('x', "0"));
    guard.track(&twin);
    let out = c.cmd(&[
        "vm",
        "run",
        "-d",
        "--name",
        &twin,
        "--network",
        "none",
        "--boot-disk",
        path_str(&qcow),
        "--cloud-init",
        path_str(&ud),
    ]);
    assert!(
        out.status.success(),
        "a second VM from one file: {}",
        describe(&out)
    );
    let booted = poll_until(Duration::from_secs(120), || {
        c.ok(&["vm", "logs", "--console", &twin])
            .contains("corral-disk-test: done")
    });
    assert!(booted, "{}", c.ok(&["vm", "logs", "--console", &twin]));
    c.ok(&["vm", "rm", "-f", &name, &twin]);
    assert!(!copy.exists(), "vm rm removes the VM's copy");
    assert_eq!(
        corral_e2e::sha256_hex(&std::fs::read(&qcow).unwrap()),
        user_sha,
        "the user's file never changed"
    );
    let inplace = format!("p{}", &unique_token()[..8].replace('x', "0"));
    guard.track(&inplace);
    c.ok(&[
        "vm",
        "create",
        "--name",
        &inplace,
        "--network",
        "none",
        "--boot-disk-in-place",
        "--boot-disk",
        path_str(&qcow),
    ]);
    let info: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "inspect", &inplace])).unwrap();
    assert_eq!(
        info[0]["config"]["boot"]["path"],
        path_str(&qcow),
        "in place: {info}"
    );
    c.ok(&["vm", "rm", "-f", &inplace]);
    assert!(qcow.exists(), "vm rm leaves a disk used in place");
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    assert_no_vm_leftovers(&c);
}

#[test]
fn disk_that_does_not_boot_fails_clearly_and_fast() {
    let Some(c) = world("disk_that_does_not_boot_fails_clearly_and_fast", &[]) else {
        return;
    };
    let zeros = c.path("zeros.img");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    // SeaBIOS finds no boot sector.
    let t = Instant::now();
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--network",
        "none",
        "--boot-timeout",
        "30",
        "--boot-disk",
        path_str(&zeros),
    ]);
    let took = t.elapsed();
    eprintln!("zeros under SeaBIOS failed in {took:?}");
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not boot"), "{}", describe(&out));
    // SeaBIOS prints "Boot failed" for each device it tries, then "No bootable device";
    // which of them the watcher reads first depends on when it looks.
    assert!(
        err.contains("No bootable device") || err.contains("Boot failed"),
        "{}",
        describe(&out)
    );
    assert!(took < Duration::from_secs(20), "bounded: {took:?}");
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    assert_no_vm_leftovers(&c);

    // OVMF finds no EFI system partition and opens its shell: that is a failure too.
    if !Path::new("/usr/share/qemu/OVMF.fd").is_file() {
        report_skip(
            "disk_that_does_not_boot_fails_clearly_and_fast (--uefi part)",
            "no /usr/share/qemu/OVMF.fd (apt-get install ovmf)",
        );
        return;
    }
    let t = Instant::now();
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--network",
        "none",
        "--uefi",
        "--boot-timeout",
        "90",
        "--boot-disk",
        path_str(&zeros),
    ]);
    let took = t.elapsed();
    eprintln!("zeros under OVMF failed in {took:?}");
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not boot"), "{}", describe(&out));
    assert!(err.contains("UEFI shell"), "{}", describe(&out));
    assert!(took < Duration::from_secs(80), "bounded: {took:?}");
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    assert_no_vm_leftovers(&c);
}

/// A distribution's reboot reboots the VM (its firmware boots the disk again, the VM stays
/// running), and a kernel panic ends it with the reason said (QEMU's pvpanic device).
#[test]
fn guest_reboot_reboots_and_a_panic_is_reported_as_one() {
    let Some((c, disk)) = world_with_disk("guest_reboot_reboots_and_a_panic_is_reported_as_one")
    else {
        return;
    };
    let mut guard = VmGuard::new(&c);
    let start =
        |action: &str, guard: &mut VmGuard<'_>| run_action_vm(&c, guard, &disk, action, &[]);
    let status = |name: &str| -> serde_json::Value {
        let info: serde_json::Value =
            serde_json::from_str(&c.ok(&["vm", "inspect", name])).unwrap();
        info[0]["state"].clone()
    };

    // The guest reboots itself: the disk boots again and the VM is still running.
    let rebooting = start("reboot", &mut guard);
    let mut console = String::new();
    let twice = poll_until(Duration::from_secs(150), || {
        console = c.ok(&["vm", "logs", "--console", &rebooting]);
        console.matches(MARKER).count() >= 2
    });
    assert!(twice, "a reboot boots the disk again: {console}");
    assert_eq!(
        status(&rebooting)["status"],
        "running",
        "the VM keeps running across its guest's reboot: {}",
        status(&rebooting)
    );
    c.ok(&["vm", "rm", "-f", &rebooting]);

    // The guest's kernel panics: the VM stops, and says why.
    let panicking = start("panic", &mut guard);
    let mut st = serde_json::Value::Null;
    let stopped = poll_until(Duration::from_secs(120), || {
        st = status(&panicking);
        st["status"] == "stopped"
    });
    assert!(stopped, "a panicked guest ends the VM: {st}");
    let error = st["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("panicked"),
        "the reason is the panic, not a reset: {st}"
    );
    c.ok(&["vm", "rm", "-f", &panicking]);
    assert_no_vm_leftovers(&c);
}

/// `vm console` with piped input: the lines reach the guest's console, the answers come
/// back, and the end of the input ends the console (it does not hang); Ctrl-] in the input
/// detaches there and what follows it is never sent.
#[test]
fn console_with_piped_input_ends_at_the_end_of_input() {
    let Some((c, disk)) = world_with_disk("console_with_piped_input_ends_at_the_end_of_input")
    else {
        return;
    };
    let mut guard = VmGuard::new(&c);
    let name = run_action_vm(&c, &mut guard, &disk, "shell", &[]);
    let up = poll_until(Duration::from_secs(120), || {
        c.ok(&["vm", "logs", "--console", &name])
            .contains("corral-disk-test: shell")
    });
    assert!(
        up,
        "the guest's shell: {}",
        c.ok(&["vm", "logs", "--console", &name])
    );
    let t = Instant::now();
    let out = run_bounded(
        &mut c.command(&["vm", "console", &name]),
        Some(b"echo answer-$((6*7))\n".to_vec()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("answer-42"),
        "the guest's answer comes back before the console ends: {}",
        describe(&out)
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "it ended at the end of input: {:?}",
        t.elapsed()
    );
    // Ctrl-] in piped input detaches; what follows is never sent.
    let console = |input: &[u8]| {
        let out = run_bounded(
            &mut c.command(&["vm", "console", &name]),
            Some(input.to_vec()),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", describe(&out));
        eprintln!(
            "DEBUG console {:?}: {}",
            String::from_utf8_lossy(input),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // From a pipe, Ctrl-] ends the input there.
    let first = console(b"echo first-$((1+1)); touch /before\n\x1dtouch /never\n");
    assert!(
        first.contains("first-2"),
        "what came before Ctrl-] is answered: {first}"
    );
    let check = console(
        b"test -e /before && echo before-$((2+2)); test -e /never && echo never-$((3+3)) || echo absent-$((3+3))\n",
    );
    assert!(
        check.contains("before-4"),
        "what came before Ctrl-] was sent: {check}"
    );
    assert!(
        check.contains("absent-6"),
        "nothing after Ctrl-] reached the guest: {check}"
    );
    // Without the agent, `vm stats` reads the guest's memory from its balloon driver, and
    // --no-stream measures CPU % over half a second.
    let mut stats = serde_json::Value::Null;
    let reported = poll_until(Duration::from_secs(20), || {
        stats = serde_json::from_str(&c.ok(&["vm", "stats", "--json", &name])).unwrap();
        stats[0]["guest_mem_total_kib"].is_u64()
    });
    assert!(reported, "the balloon reports the guest's memory: {stats}");
    let total = stats[0]["guest_mem_total_kib"].as_u64().unwrap();
    assert!(
        (100_000..=600_000).contains(&total),
        "about the VM's memory: {stats}"
    );
    assert!(
        stats[0]["guest_mem_available_kib"]
            .as_u64()
            .is_some_and(|a| a <= total),
        "{stats}"
    );
    assert!(
        stats[0]["cpu_percent"].is_f64(),
        "CPU % from two readings: {stats}"
    );
    let table = c.ok(&["vm", "stats", "--no-stream", &name]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_default();
    assert!(
        !row.contains("--"),
        "no unknown column for a disk-booted guest: {table}"
    );
    c.ok(&["vm", "rm", "-f", &name]);
    assert_no_vm_leftovers(&c);
}

/// `--restart`: a guest that panics is started again by its restart policy, at most N times
/// with `on-failure:N`, the count in `vm inspect`; a VM stopped by the user stays stopped even
/// with `always`.
#[test]
fn restart_policy_restarts_a_panicked_guest_and_not_a_stopped_one() {
    let Some((c, disk)) =
        world_with_disk("restart_policy_restarts_a_panicked_guest_and_not_a_stopped_one")
    else {
        return;
    };
    let mut guard = VmGuard::new(&c);
    let state = |name: &str| -> serde_json::Value {
        let info: serde_json::Value =
            serde_json::from_str(&c.ok(&["vm", "inspect", name])).unwrap();
        info[0]["state"].clone()
    };
    let start = |action: &str, restart: &str, guard: &mut VmGuard<'_>| {
        run_action_vm(&c, guard, &disk, action, &["--restart", restart])
    };

    let panicking = start("panic", "on-failure:2", &mut guard);
    let mut st = serde_json::Value::Null;
    let done = poll_until(Duration::from_secs(150), || {
        st = state(&panicking);
        let boots = c
            .ok(&["vm", "logs", "--console", &panicking])
            .matches(MARKER)
            .count();
        boots >= 3 && st["restart_count"] == 2 && st["status"] == "stopped"
    });
    assert!(done, "two restarts, then it stays stopped: {st}");
    assert!(
        st["error"]
            .as_str()
            .unwrap_or_default()
            .contains("panicked"),
        "{st}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&panicking)["status"], "stopped", "no third restart");
    let boots = c
        .ok(&["vm", "logs", "--console", &panicking])
        .matches(MARKER)
        .count();
    assert_eq!(boots, 3, "the first boot and two restarts");
    c.ok(&["vm", "rm", "-f", &panicking]);

    // Stopped by the user: not restarted, even with `always`.
    let shell = start("shell", "always", &mut guard);
    let up = poll_until(Duration::from_secs(120), || {
        c.ok(&["vm", "logs", "--console", &shell])
            .contains("corral-disk-test: shell")
    });
    assert!(up, "{}", c.ok(&["vm", "logs", "--console", &shell]));
    c.ok(&["vm", "stop", "-t", "2", &shell]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        state(&shell)["status"],
        "stopped",
        "vm stop is final: {}",
        state(&shell)
    );
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--restart",
        "always",
        "--network",
        "none",
        "--boot-disk",
        path_str(&disk),
    ]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "--rm with --restart: {}",
        describe(&out)
    );
    c.ok(&["vm", "rm", "-f", &shell]);
    assert_no_vm_leftovers(&c);
}

#[test]
fn a_stock_guest_gets_its_address_by_dhcp() {
    let Some((c, disk)) = world_with_disk("a_stock_guest_gets_its_address_by_dhcp") else {
        return;
    };
    let t = unique_token();
    let mut nets = corral_e2e::networks::NetworkGuard::new(&c);
    let net = format!("dh{}", &t[t.len() - 6..]);
    nets.create(&net, 24, &[]);
    let mut guard = VmGuard::new(&c);
    // A guest without corral's agent, whose init asks DHCP for its address.
    let name = run_action_vm(&c, &mut guard, &disk, "dhcp", &["--network", &net]);
    let bound = poll_until(Duration::from_secs(120), || {
        c.ok(&["vm", "logs", "--console", &name])
            .contains("corral-disk-test: shell")
    });
    let console = c.ok(&["vm", "logs", "--console", &name]);
    assert!(bound, "the guest's init did not finish: {console}");
    let inspect: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "inspect", &name])).expect("vm inspect is JSON");
    let text = inspect.to_string();
    let line = console
        .lines()
        .find(|l| l.contains("corral-disk-test: dhcp bound"))
        .unwrap_or_else(|| panic!("no DHCP lease in the console: {console}"));
    // The address corral allocated to the VM, with the network's gateway and DNS.
    let ip = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.split('/').next())
        .expect("address")
        .to_owned();
    assert!(
        text.contains(&format!("\"{ip}\"")) || text.contains(&format!("\"{ip}/")),
        "the leased address {ip} is the VM's: {text}"
    );
    assert!(line.contains(&format!("host {name}")), "{line}");
    assert!(line.contains(&format!("domain {net}")), "{line}");
    let gateway = format!("{}.1", ip.rsplit_once('.').unwrap().0);
    assert!(line.contains(&format!("router {gateway}")), "{line}");
    assert!(line.contains(&format!("dns {gateway}")), "{line}");
    // The seed says the same, by MAC, for images that read it rather than ask DHCP.
    let mac = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("macaddress: "))
        .unwrap_or_else(|| panic!("no network-config in the seed: {console}"))
        .trim_matches('"')
        .to_owned();
    assert!(
        console.contains(&format!("addresses: [\"{ip}/24\"]")),
        "the seed's network-config gives the VM's address: {console}"
    );
    assert!(
        text.contains(&mac),
        "the seed's MAC {mac} is the VM's NIC's: {text}"
    );
    // The guest configured it: the host reaches it there.
    let ping = run_bounded(
        Command::new("/bin/busybox").args(["ping", "-c", "1", "-W", "5", &ip]),
        None,
        Duration::from_secs(30),
    );
    assert!(ping.status.success(), "ping {ip}: {}", describe(&ping));
    c.ok(&["vm", "rm", "-f", &name]);
    assert_no_vm_leftovers(&c);
}

#[test]
fn a_disk_vm_clones_with_an_identity_of_its_own() {
    let Some((c, raw)) = world_with_disk("a_disk_vm_clones_with_an_identity_of_its_own") else {
        return;
    };
    // Clones share a qcow2 base: the test disk as qcow2.
    let disk = c.path("boot.qcow2");
    run_ok(
        "qemu-img",
        &["convert", "-O", "qcow2", path_str(&raw), path_str(&disk)],
        TOOL_TIMEOUT,
    );
    let t = unique_token();
    let mut nets = corral_e2e::networks::NetworkGuard::new(&c);
    let net = format!("dc{}", &t[t.len() - 6..]);
    nets.create(&net, 24, &[]);
    let mut guard = VmGuard::new(&c);
    let src = format!("src{}", &t[..5].replace('x', "0"));
    let cl = format!("cl{}", &t[..5].replace('x', "0"));
    guard.track(&src);
    guard.track(&cl);
    let ud = c.path("user-data-clone.yaml");
    std::fs::write(&ud, "#cloud-config\n# corral-action-dhcp\n").unwrap();
    c.ok(&[
        "vm",
        "create",
        "--name",
        &src,
        "--network",
        &net,
        "--boot-disk",
        path_str(&disk),
        "--cloud-init",
        path_str(&ud),
    ]);
    c.ok(&["vm", "clone", &src, &cl]);
    for vm in [&src, &cl] {
        c.ok(&["vm", "start", vm]);
    }
    let console_of = |vm: &str| {
        let up = poll_until(Duration::from_secs(120), || {
            c.ok(&["vm", "logs", "--console", vm])
                .contains("corral-disk-test: shell")
        });
        let console = c.ok(&["vm", "logs", "--console", vm]);
        assert!(up, "{vm} did not boot: {console}");
        console
    };
    let lease = |console: &str| -> String {
        console
            .lines()
            .find(|l| l.contains("corral-disk-test: dhcp bound"))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or_else(|| panic!("no lease: {console}"))
            .to_owned()
    };
    let (a, b) = (console_of(&src), console_of(&cl));
    // Each is its own instance to cloud-init (a new machine-id, new SSH host keys), with the
    // source's user-data.
    assert!(a.contains(&format!("instance-id: {src}")), "{a}");
    assert!(b.contains(&format!("instance-id: {cl}")), "{b}");
    assert!(b.contains(&format!("local-hostname: {cl}")), "{b}");
    assert!(
        b.contains("corral-action-dhcp"),
        "the clone keeps the user-data: {b}"
    );
    // And its own address and MAC.
    let (ip_a, ip_b) = (lease(&a), lease(&b));
    assert_ne!(ip_a, ip_b, "the clone leased an address of its own");
    let mac = |console: &str| {
        console
            .lines()
            .find_map(|l| l.trim().strip_prefix("macaddress: "))
            .map(str::to_owned)
    };
    assert_ne!(mac(&a), mac(&b), "the clone has a MAC of its own");
    // The clone's disk is an overlay on a shared base, not a copy.
    let cl_inspect = c.ok(&["vm", "inspect", &cl]);
    assert!(cl_inspect.contains("boot.qcow2"), "{cl_inspect}");
    for vm in [&src, &cl] {
        c.ok(&["vm", "rm", "-f", vm]);
    }
    assert_no_vm_leftovers(&c);
    let bases: Vec<String> = std::fs::read_dir(c.root().join("vm-templates"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".base-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        bases.is_empty(),
        "the shared base went with its last VM: {bases:?}"
    );
}

/// isolinux's boot sector for an El Torito CD (Debian's isolinux package).
const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
/// syslinux's core module that isolinux loads (syslinux-common).
const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";

/// The installer's `/init`: loads `modules`, writes the disk image it carries onto the VM's
/// empty disk, and powers off.
fn installer_script(modules: &[String]) -> String {
    format!(
        r#"#!/bin/sh
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "corral-installer: runs"
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "corral-installer: insmod $m failed"
done
for try in 1 2 3 4 5 6 7 8 9 10; do
  [ -b /dev/vda ] && break
  sleep 1
done
if gunzip -c /disk.img.gz | dd of=/dev/vda bs=1M 2>/dev/null && sync; then
  echo "corral-installer: installed"
else
  echo "corral-installer: failed"
fi
poweroff -f
"#,
        modules = modules.join(" ")
    )
}

/// An installer ISO (isolinux, the guest kernel, an initramfs carrying `disk` gzipped) at
/// `out`, staged under `dir`.
fn build_installer_iso(dir: &Path, kver: &str, disk: &Path, out: &Path) {
    let stage = dir.join("installer-initramfs");
    std::fs::create_dir_all(stage.join("bin")).unwrap();
    std::fs::create_dir_all(stage.join("lib/modules")).unwrap();
    std::fs::copy("/bin/busybox", stage.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "mount", "insmod", "sleep", "mkdir", "poweroff", "gunzip", "dd", "sync", "echo",
    ] {
        std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet)).unwrap();
    }
    let mut names = Vec::new();
    for m in modules_with_deps(kver, &["virtio_pci", "virtio_blk"]) {
        let file = m.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&m, stage.join("lib/modules").join(&file)).unwrap();
        names.push(file.trim_end_matches(".ko").to_owned());
    }
    let gz = std::fs::File::create(stage.join("disk.img.gz")).unwrap();
    let zipped = Command::new("gzip")
        .args(["-1", "-c"])
        .arg(disk)
        .stdout(gz)
        .status()
        .unwrap();
    assert!(zipped.success(), "gzip the disk image");
    let init = stage.join("init");
    std::fs::write(&init, installer_script(&names)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tree = dir.join("iso");
    std::fs::create_dir_all(tree.join("isolinux")).unwrap();
    let cpio = Command::new("sh")
        .args(["-c", "find . -print0 | cpio --null -o -H newc --quiet"])
        .current_dir(&stage)
        .stdout(std::fs::File::create(tree.join("initrd.img")).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(cpio.status.success(), "cpio: {}", describe(&cpio));
    std::fs::copy(format!("/boot/vmlinuz-{kver}"), tree.join("vmlinuz")).unwrap();
    std::fs::copy(ISOLINUX_BIN, tree.join("isolinux/isolinux.bin")).unwrap();
    std::fs::copy(LDLINUX_C32, tree.join("isolinux/ldlinux.c32")).unwrap();
    std::fs::write(
        tree.join("isolinux/isolinux.cfg"),
        "DEFAULT install\nLABEL install\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0 quiet panic=-1\n",
    )
    .unwrap();
    run_ok(
        "genisoimage",
        &[
            "-quiet",
            "-o",
            path_str(out),
            "-b",
            "isolinux/isolinux.bin",
            "-c",
            "isolinux/boot.cat",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "-R",
            "-J",
            "-V",
            "INSTALLER",
            path_str(&tree),
        ],
        TOOL_TIMEOUT,
    );
}

#[test]
fn an_iso_installs_onto_an_empty_disk_which_then_boots() {
    let test = "an_iso_installs_onto_an_empty_disk_which_then_boots";
    if !Path::new(ISOLINUX_BIN).is_file() {
        report_skip(
            test,
            "no isolinux (apt-get install isolinux; scripts/setup.sh does)",
        );
        return;
    }
    let Some((c, disk)) = world_with_disk(test) else {
        return;
    };
    let kver = guest_kernel().expect("kernel");
    let iso = c.path("installer.iso");
    build_installer_iso(&c.path("iso-build"), &kver, &disk, &iso);
    let mut guard = VmGuard::new(&c);
    let name = format!("inst{}", &unique_token()[..5].replace('x', "0"));
    guard.track(&name);
    c.ok(&[
        "vm",
        "create",
        "--name",
        &name,
        "--network",
        "none",
        "--cdrom",
        path_str(&iso),
        "--disk",
        "128M",
    ]);
    let stopped_with = |marker: &str| {
        poll_until(Duration::from_secs(120), || {
            let v: serde_json::Value =
                serde_json::from_str(&c.ok(&["vm", "inspect", &name])).unwrap();
            v[0]["state"]["status"] == "stopped"
                && c.ok(&["vm", "logs", "--console", &name]).contains(marker)
        })
    };
    // The empty disk does not boot: the firmware goes on to the CD, whose installer writes
    // the disk and powers off.
    c.ok(&["vm", "start", &name]);
    assert!(
        stopped_with("corral-installer: installed"),
        "the installer ran: {}",
        c.ok(&["vm", "logs", "--console", &name])
    );
    // The next boot is the installed disk's (first in the boot order), CD still in.
    c.ok(&["vm", "start", &name]);
    assert!(
        stopped_with("corral-disk-test: done"),
        "the installed disk boots: {}",
        c.ok(&["vm", "logs", "--console", &name])
    );
    // Ejected: the config has no CD-ROM, and the disk still boots.
    c.ok(&["vm", "set", &name, "--cdrom", "none"]);
    let inspect = c.ok(&["vm", "inspect", &name]);
    assert!(!inspect.contains("installer.iso"), "{inspect}");
    // Bad input: a missing ISO is refused at create, and nothing is left of it.
    let (code, err) = c.fail(&[
        "vm",
        "create",
        "--name",
        "noiso",
        "--cdrom",
        "/nonexistent.iso",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("no such file"), "{err}");
    c.ok(&["vm", "rm", "-f", &name]);
    assert_no_vm_leftovers(&c);
}

/// The project's Python environment (scripts/setup.sh makes it): its vncdotool and Pillow.
fn venv_tool(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(name);
    p.is_file().then_some(p)
}

/// `vncdo -s 127.0.0.1::PORT -p PASSWORD capture OUT`.
fn vnc_capture(port: u64, password: &str, out: &Path) -> std::process::Output {
    run_bounded(
        Command::new(venv_tool("vncdo").expect("vncdo")).args([
            "-s",
            &format!("127.0.0.1::{port}"),
            "-p",
            password,
            "capture",
            path_str(out),
        ]),
        None,
        Duration::from_secs(60),
    )
}

/// A screenshot's width, height and count of lit (non-black) pixels, read with Pillow.
fn screen_facts(png: &Path) -> (u64, u64, u64) {
    let out = run_bounded(
        Command::new(venv_tool("python3").expect("python3")).args([
            "-c",
            "import sys; from PIL import Image; i = Image.open(sys.argv[1]).convert('L'); \
             print(i.width, i.height, sum(1 for p in i.getdata() if p > 64))",
            path_str(png),
        ]),
        None,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let n: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn a_vms_screen_is_shown_by_vnc_behind_its_password() {
    let test = "a_vms_screen_is_shown_by_vnc_behind_its_password";
    if venv_tool("vncdo").is_none() {
        report_skip(test, "no .venv/bin/vncdo (scripts/setup.sh makes the venv)");
        return;
    }
    let Some((c, disk)) = world_with_disk(test) else {
        return;
    };
    let mut guard = VmGuard::new(&c);
    let name = run_action_vm(&c, &mut guard, &disk, "shell", &["--graphics", "vnc"]);
    let up = poll_until(Duration::from_secs(120), || {
        c.ok(&["vm", "logs", "--console", &name])
            .contains("corral-disk-test: shell")
    });
    assert!(up, "{}", c.ok(&["vm", "logs", "--console", &name]));
    let access: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "vnc", "--json", &name])).expect("vm vnc --json");
    let port = access["port"].as_u64().expect("port");
    let password = access["password"].as_str().expect("password").to_owned();
    assert!((5900..6000).contains(&port), "{access}");
    assert_eq!(password.len(), 8, "{access}");
    // A wrong password is refused.
    let refused = vnc_capture(port, "wrong123", &c.path("refused.png"));
    assert!(!refused.status.success(), "{}", describe(&refused));
    // The guest's own screen: the firmware set VGA text mode (QEMU's "not initialized"
    // placeholder is 640x480).
    let before = c.path("before.png");
    let shot = vnc_capture(port, &password, &before);
    assert!(shot.status.success(), "{}", describe(&shot));
    let (w, h, lit_before) = screen_facts(&before);
    assert_eq!((w, h), (720, 400), "VGA text mode");
    // The guest fills its screen with text: what VNC shows changes with it.
    let fill = run_bounded(
        &mut c.command(&["vm", "console", &name]),
        Some(
            b"i=0; while [ $i -lt 20 ]; do echo XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX; i=$((i+1)); done > /dev/tty1\n"
                .to_vec(),
        ),
        Duration::from_secs(60),
    );
    assert!(fill.status.success(), "{}", describe(&fill));
    let filled = poll_until(Duration::from_secs(30), || {
        let after = c.path("after.png");
        vnc_capture(port, &password, &after).status.success()
            && screen_facts(&after).2 > lit_before + 10_000
    });
    assert!(
        filled,
        "the text the guest wrote to its screen shows through VNC"
    );
    c.ok(&["vm", "rm", "-f", &name]);
    assert_no_vm_leftovers(&c);
    // The VNC server went with the VM.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
        "nothing listens on {port} any more"
    );
}

#[test]
fn a_disk_vm_imported_under_another_name_is_another_instance() {
    let Some((c, disk)) =
        world_with_disk("a_disk_vm_imported_under_another_name_is_another_instance")
    else {
        return;
    };
    let mut guard = VmGuard::new(&c);
    let t = unique_token();
    let (src, copy) = (
        format!("ex{}", &t[..5].replace('x', "0")),
        format!("im{}", &t[..5].replace('x', "0")),
    );
    guard.track(&src);
    guard.track(&copy);
    let ud = c.path("user-data-import.yaml");
    std::fs::write(&ud, "#cloud-config\n# corral-import-test\n").unwrap();
    c.ok(&[
        "vm",
        "create",
        "--name",
        &src,
        "--network",
        "none",
        "--boot-disk",
        path_str(&disk),
        "--cloud-init",
        path_str(&ud),
    ]);
    let archive = c.path("disk-vm.tar");
    c.ok(&["vm", "export", &src, "-o", path_str(&archive)]);
    c.ok(&["vm", "import", "--name", &copy, path_str(&archive)]);
    c.ok(&["vm", "start", &copy]);
    let done = poll_until(Duration::from_secs(120), || {
        c.ok(&["vm", "logs", "--console", &copy])
            .contains("corral-disk-test: done")
    });
    let console = c.ok(&["vm", "logs", "--console", &copy]);
    assert!(done, "{console}");
    assert!(
        console.contains(&format!("instance-id: {copy}")),
        "the copy is a new instance to cloud-init: {console}"
    );
    assert!(console.contains("corral-import-test"), "{console}");
    for vm in [&src, &copy] {
        c.ok(&["vm", "rm", "-f", vm]);
    }
    assert_no_vm_leftovers(&c);
}
