//! corral's containers on a pure cgroup v2 host — the host being a VM: the development and CI
//! machines are cgroup v1 ("hybrid"), where the v2 hierarchy holds no controller, so the v2
//! code (limits in `memory.max`, `cpu.max`, `cpu.weight`, `cpuset.cpus`, `pids.max`; the device
//! policy as an eBPF program; the container's own cgroup2 at `/sys/fs/cgroup`) runs for real in a
//! guest: Debian's kernel booted by corral, cgroup2 mounted at `/sys/fs/cgroup`, and corral
//! itself (this build, with its libraries) in the VM's image, running containers there — a
//! container inside a VM, with what a user checks on each limit.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use corral_e2e::containers::BUSYBOX_IMAGE;
use corral_e2e::fixtures::add_busybox_rootfs;
use corral_e2e::process::describe;
use corral_e2e::tarball::TarWriter;
use corral_e2e::vms::{assert_no_vm_leftovers, skip_without_guest_kernel};
use corral_e2e::{corral_bin, path_str, skip_unless_tools, Corral};

/// What the guest runs: set up cgroup2 and a state root, load the busybox image into the
/// inner corral, then one container per check, each printing `key=value` lines.
const GUEST_SCRIPT: &str = r#"
set -u
mount -t cgroup2 none /sys/fs/cgroup || { echo setup=cgroup2; exit 90; }
mount -t tmpfs -o size=300m none /var/lib/corral || { echo setup=tmpfs; exit 91; }
export CORRAL_ROOT=/var/lib/corral PATH=/bin
C=/corral/corral
$C image load -i /busybox.tar >/dev/null || { echo setup=load; exit 92; }
r() { $C run --rm --network none "$@"; }
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
r BUSYBOX sh -c 'echo own_cgroup=$(cat /proc/self/cgroup); touch /sys/fs/cgroup/x 2>/dev/null && echo cgroupfs=rw || echo cgroupfs=ro'
r -m 16m BUSYBOX sh -c 'echo memory_max=$(cat /sys/fs/cgroup/memory.max)'
$C run --name hog --network none -m 8m BUSYBOX sh -c 'x=a; while true; do x=$x$x; done'
echo "oom_exit=$?"
$C inspect --json hog | grep -q '"oom_killed": *true' && echo oom_killed=true || echo oom_killed=false
$C rm hog >/dev/null
r --cpus 0.5 --cpu-shares 512 --cpuset-cpus 1 BUSYBOX sh -c 'echo cpu_max=$(cat /sys/fs/cgroup/cpu.max); echo cpu_weight=$(cat /sys/fs/cgroup/cpu.weight); echo cpuset=$(cat /sys/fs/cgroup/cpuset.cpus)'
r --pids-limit 10 BUSYBOX sh -c 'echo pids_max=$(cat /sys/fs/cgroup/pids.max); for i in $(seq 1 30); do sleep 5 & done 2>/dev/null; wait; echo all_forked=yes'
echo "pids_exit=$?"
try='f() { if (exec 3>"$1") 2>/tmp/err; then echo open; elif grep -q "not permitted" /tmp/err; then echo denied; else echo "failed: $(cat /tmp/err)"; fi; }'
r --cap-add MKNOD BUSYBOX sh -c "$try"'; mknod /tmp/k c 1 11 && echo mknod=ok; echo kmsg_default=$(f /tmp/k)'
r --cap-add MKNOD --device-cgroup-rule 'c 1:11 w' BUSYBOX sh -c "$try"'; mknod /tmp/k c 1 11; echo kmsg_rule=$(f /tmp/k)'
r --device /dev/kmsg:/dev/hostkmsg:w BUSYBOX sh -c "$try"'; echo kmsg_device=$(f /dev/hostkmsg)'
echo "left=$(ls /sys/fs/cgroup/corral 2>/dev/null | wc -l)"
"#;

/// The image the VM boots: busybox, corral and corral-monitor (without their debug info) with
/// the libraries they load, and the busybox image as an archive for the inner corral.
fn corral_image_tar(c: &Corral, dir: &Path) -> Vec<u8> {
    let mut tar = TarWriter::new();
    add_busybox_rootfs(&mut tar);
    tar.dir("corral", 0o755)
        .dir("var", 0o755)
        .dir("var/lib", 0o755)
        .dir("var/lib/corral", 0o755)
        .dir("run", 0o755);
    let bin = corral_bin();
    for name in ["corral", "corral-monitor"] {
        let stripped = dir.join(name);
        let out = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(bin.with_file_name(name))
            .arg(&stripped)
            .output()
            .expect("objcopy");
        assert!(out.status.success(), "objcopy {name}: {}", describe(&out));
        let bytes = std::fs::read(&stripped).expect("read stripped binary");
        tar.file(&format!("corral/{name}"), 0o755, &bytes);
    }
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
    let mut dirs = std::collections::BTreeSet::new();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let rel = lib.trim_start_matches('/');
        let mut parent = Path::new(rel).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_owned());
            parent = p.parent();
        }
        for p in chain.into_iter().rev() {
            if dirs.insert(p.clone()) {
                tar.dir(path_str(&p), 0o755);
            }
        }
        let bytes = std::fs::read(lib).unwrap_or_else(|e| panic!("read {lib}: {e}"));
        tar.file(rel, 0o755, &bytes);
    }
    let inner = dir.join("busybox.tar");
    c.ok(&["image", "save", BUSYBOX_IMAGE, "-o", path_str(&inner)]);
    tar.file(
        "busybox.tar",
        0o644,
        &std::fs::read(&inner).expect("read busybox.tar"),
    );
    tar.finish()
}

#[test]
fn containers_in_a_vm_are_limited_through_cgroup_v2() {
    let test = "containers_in_a_vm_are_limited_through_cgroup_v2";
    if skip_unless_tools(test, &["qemu-system-x86_64", "mkfs.ext4", "objcopy", "ldd"]) {
        return;
    }
    if skip_without_guest_kernel(test) {
        return;
    }
    let mut c = Corral::new();
    c.timeout = Duration::from_secs(300);
    c.busybox_image();
    let image_tar = c.path("corral-in-vm.tar");
    let scratch = c.path("corral-in-vm");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    std::fs::write(&image_tar, corral_image_tar(&c, &scratch)).expect("write image");
    c.ok(&["image", "import", path_str(&image_tar), "corral-in-vm:test"]);

    let script = GUEST_SCRIPT.replace("BUSYBOX", BUSYBOX_IMAGE);
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--network",
        "none",
        "--cpus",
        "2",
        "--memory",
        "1G",
        "--image",
        "corral-in-vm:test",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the guest's script: {}",
        describe(&out)
    );
    let get = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the guest printed no {key}=: {}", describe(&out)))
            .trim()
            .to_owned()
    };
    // A pure v2 host: every controller corral uses is there.
    let controllers = get("controllers");
    for ctl in ["cpu", "cpuset", "memory", "pids"] {
        assert!(
            controllers.split_whitespace().any(|c| c == ctl),
            "{controllers}"
        );
    }
    // The container is at the root of its own cgroup namespace, read-only.
    assert_eq!(get("own_cgroup"), "0::/");
    assert_eq!(get("cgroupfs"), "ro");
    // Memory: the limit, and the OOM kill that docker users know.
    assert_eq!(get("memory_max"), (16u64 << 20).to_string());
    assert_eq!(get("oom_exit"), "137", "{}", describe(&out));
    assert_eq!(get("oom_killed"), "true");
    // CPU: quota, weight (docker's shares mapped as runc maps them), cpuset.
    assert_eq!(get("cpu_max"), "50000 100000");
    assert_eq!(get("cpu_weight"), "20");
    assert_eq!(get("cpuset"), "1");
    // pids: the limit holds a fork bomb back.
    assert_eq!(get("pids_max"), "10");
    assert!(
        !text.contains("all_forked=yes"),
        "30 processes started under --pids-limit 10: {}",
        describe(&out)
    );
    // Devices through the eBPF filter: a node made inside cannot be opened, unless a rule or
    // --device allows it.
    assert_eq!(get("mknod"), "ok");
    assert_eq!(get("kmsg_default"), "denied");
    assert_eq!(get("kmsg_rule"), "open");
    assert_eq!(get("kmsg_device"), "open");
    // Nothing left in the guest's cgroup tree.
    assert_eq!(get("left"), "0", "cgroups left in the guest");
    assert_no_vm_leftovers(&c);
}
