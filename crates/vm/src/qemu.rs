//! The QEMU engine: which accelerator the host can use, and the command line of a VM.
//!
//! The machine is `q35` (under TCG, `microvm` hangs in a few percent of boots on these
//! hosts; see ARCHITECTURE.md), with no default devices, the serial console on a socket
//! that QEMU also logs to a file, two QMP sockets (the monitor's and the CLI's), the agent's
//! virtio-serial port, virtio-blk disks found by serial number, virtio-net NICs on TAP
//! devices, a balloon and an entropy source.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::store::{Accel, BootSource, VmConfig};

/// The UEFI firmware for `--uefi` (Debian's `ovmf`).
pub const OVMF: &str = "/usr/share/qemu/OVMF.fd";

/// The QEMU executable: `$CORRAL_QEMU`, or `qemu-system-x86_64` on `PATH`.
pub fn qemu_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CORRAL_QEMU") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join("qemu-system-x86_64");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err("qemu-system-x86_64 not found: install QEMU (`apt-get install qemu-system-x86`, or run scripts/setup.sh)".into())
}

/// virtiofsd, which serves a sandbox VM's share: `$CORRAL_VIRTIOFSD`, else the first found in
/// `PATH`, `/usr/libexec` or `/usr/lib/qemu`.
pub fn virtiofsd_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CORRAL_VIRTIOFSD") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    let dirs = std::env::split_paths(&path).chain([
        PathBuf::from("/usr/libexec"),
        PathBuf::from("/usr/lib/qemu"),
    ]);
    for dir in dirs {
        let p = dir.join("virtiofsd");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err("virtiofsd not found: a pod's VM shares its members' files through it; install it (`cargo install --locked virtiofsd`, or run scripts/setup.sh)".into())
}

/// What the host offers for running guests' CPUs, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelSupport {
    /// The accelerator corral picks by itself.
    pub best: Accel,
    /// Why (for `corral info` and errors).
    pub reason: String,
}

/// Picks KVM when `/dev/kvm` opens and the CPU has hardware virtualization (vmx or svm):
/// a nested paravirtual KVM without those flags cannot run a stock Linux kernel.
pub fn detect_accel() -> AccelSupport {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    match (kvm, hw) {
        (Ok(_), true) => AccelSupport { best: Accel::Kvm, reason: "/dev/kvm with hardware virtualization".into() },
        (Ok(_), false) => AccelSupport {
            best: Accel::Tcg,
            reason: "/dev/kvm is present but the CPU shows no vmx/svm flag (a paravirtualized nested KVM cannot run a stock kernel): using QEMU's TCG".into(),
        },
        (Err(e), _) => AccelSupport { best: Accel::Tcg, reason: format!("/dev/kvm: {e}: using QEMU's TCG") },
    }
}

/// The sockets and files of a running VM.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The monitor's QMP socket.
    pub qmp: PathBuf,
    /// The CLI's QMP socket.
    pub qmp_cli: PathBuf,
    /// The agent's virtio-serial port, host side.
    pub agent: PathBuf,
    /// The serial console.
    pub console: PathBuf,
    /// What the console printed.
    pub console_log: PathBuf,
    /// The monitor's socket for clients (`vm exec`, attach).
    pub ctl: PathBuf,
    /// virtiofsd's socket (a sandbox VM's share).
    pub share: PathBuf,
}

impl Paths {
    /// The files of a VM with runtime directory `run` and state directory `dir`.
    pub fn new(run: &Path, dir: &Path) -> Paths {
        Paths {
            qmp: run.join("qmp.sock"),
            qmp_cli: run.join("qmp-cli.sock"),
            agent: run.join("agent.sock"),
            console: run.join("console.sock"),
            console_log: dir.join("console.log"),
            ctl: run.join("ctl.sock"),
            share: run.join("share.sock"),
        }
    }
}

/// A NIC: the TAP device and the guest's MAC.
#[derive(Debug, Clone)]
pub struct Nic {
    /// The host's TAP device.
    pub tap: String,
    /// The guest NIC's MAC.
    pub mac: String,
}

/// The kernel command line of an image boot.
pub fn image_cmdline(extra: &str) -> String {
    // quiet: the console is a serial port under emulation, every line costs; panic=-1 with
    // -no-reboot makes a panicking guest end QEMU at once; the i8042 options skip probing a
    // keyboard controller nobody uses.
    let mut s = String::from(
        "console=ttyS0 quiet panic=-1 i8042.noaux i8042.nokbd i8042.nopnp tsc=reliable no_timer_check rdinit=/init",
    );
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

/// QEMU's arguments for `cfg` (without the executable).
pub fn args(
    cfg: &VmConfig,
    paths: &Paths,
    nics: &[Nic],
    loadvm: Option<&str>,
    incoming: Option<&str>,
    vnc_port: Option<u16>,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push("-name");
    push(&format!("corral-{},debug-threads=on", cfg.name));
    push("-machine");
    if matches!(cfg.boot, BootSource::Sandbox { .. }) {
        push("q35,memory-backend=mem");
        push("-object");
        push(&format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            cfg.memory_mib
        ));
    } else {
        push("q35");
    }
    push("-accel");
    match cfg.accel {
        Accel::Kvm => {
            push("kvm");
            push("-cpu");
            push("host");
        }
        Accel::Tcg => {
            // qemu64 boots faster than `max` under TCG (fewer features to emulate). The
            // translation cache is bounded (QEMU's default is 1 GiB) to keep QEMU within its
            // cgroup's share (monitor::QEMU_OVERHEAD_MIB).
            push("tcg,tb-size=128");
            push("-cpu");
            push("qemu64");
        }
    }
    push("-smp");
    push(&cfg.cpus.to_string());
    push("-m");
    push(&format!("{}M", cfg.memory_mib));
    match vnc_port {
        // A VGA card whose display only the VNC server shows, on loopback, behind the
        // password QEMU reads from the runtime directory (never on its command line).
        Some(port) => {
            for s in ["-nodefaults", "-no-user-config", "-display", "none"] {
                push(s);
            }
            push("-device");
            push("VGA");
            push("-object");
            push(&format!(
                "secret,id=vncpass,file={},format=raw",
                paths.qmp.with_file_name("vnc-password").display()
            ));
            push("-vnc");
            push(&format!(
                "127.0.0.1:{},password-secret=vncpass",
                port.saturating_sub(5900)
            ));
        }
        None => {
            for s in ["-nodefaults", "-no-user-config", "-nographic"] {
                push(s);
            }
        }
    }
    if matches!(cfg.boot, BootSource::Disk { .. }) {
        // A distribution's reboot resets the machine, as on real hardware, and its firmware
        // boots the disk again. A panic is told apart by the pvpanic device (Linux's pvpanic
        // driver reports it): QEMU stops with the reason `guest-panic`.
        push("-device");
        push("pvpanic");
        push("-action");
        push("reboot=reset,panic=shutdown");
    } else {
        // corral's agent is set up by the monitor once per boot: a reset (the kernel's
        // panic=-1, or a reboot) ends the VM with the reason `guest-reset`.
        push("-no-reboot");
    }
    push("-chardev");
    push(&format!(
        "socket,id=con,path={},server=on,wait=off,logfile={},logappend=on",
        paths.console.display(),
        paths.console_log.display()
    ));
    push("-serial");
    push("chardev:con");
    for (id, p) in [("qmp", &paths.qmp), ("qmpcli", &paths.qmp_cli)] {
        push("-chardev");
        push(&format!(
            "socket,id={id},path={},server=on,wait=off",
            p.display()
        ));
        push("-mon");
        push(&format!("chardev={id},mode=control"));
    }
    push("-device");
    push("virtio-serial-pci,id=vser");
    push("-chardev");
    push(&format!(
        "socket,id=agent,path={},server=on,wait=off",
        paths.agent.display()
    ));
    push("-device");
    push(&format!(
        "virtserialport,bus=vser.0,chardev=agent,name={}",
        corral_guest::proto::PORT_NAME
    ));
    match &cfg.boot {
        BootSource::Image {
            image_disk,
            kernel,
            initrd,
            ..
        } => {
            agent_kernel(&mut push, kernel, initrd, &cfg.extra_cmdline);
            drive(&mut push, "image", image_disk, "raw", true);
            if let Some(upper) = &cfg.upper_disk {
                drive(&mut push, "upper", upper, "qcow2", false);
            }
        }
        BootSource::Sandbox {
            kernel,
            initrd,
            share,
            ..
        } => {
            agent_kernel(&mut push, kernel, initrd, &cfg.extra_cmdline);
            // The members' roots, served by virtiofsd (started by the monitor before QEMU)
            // over vhost-user: the guest's memory must be shared with it.
            let _ = share;
            push("-chardev");
            push(&format!("socket,id=share,path={}", paths.share.display()));
            push("-device");
            push(&format!(
                "vhost-user-fs-pci,chardev=share,tag={}",
                crate::store::SANDBOX_SHARE_TAG
            ));
        }
        BootSource::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            push("-kernel");
            push(&kernel.display().to_string());
            if let Some(i) = initrd {
                push("-initrd");
                push(&i.display().to_string());
            }
            push("-append");
            push(cmdline);
        }
        BootSource::Disk { path, format, uefi } => {
            if *uefi {
                push("-bios");
                push(OVMF);
            }
            // With a CD, the boot order is this disk, then the CD (below); without, the
            // firmware's own order is kept (its "No bootable device" is what a bad disk says).
            let first = cfg.cdrom.is_some().then_some(1);
            drive_at(&mut push, "boot", path, format, false, first);
            if let Some(seed) = &cfg.seed {
                drive(&mut push, "cidata", seed, "raw", true);
            }
        }
    }
    for d in &cfg.data_disks {
        drive(&mut push, &d.name, &d.path, "qcow2", false);
    }
    if let (Some(iso), BootSource::Disk { .. }) = (&cfg.cdrom, &cfg.boot) {
        // Booted after the disk (bootindex 1): an empty disk falls through to the installer,
        // an installed one boots by itself.
        push("-drive");
        push(&format!(
            "file={},if=none,id=cd,media=cdrom,readonly=on",
            iso.display().to_string().replace(',', ",,")
        ));
        push("-device");
        push("ide-cd,drive=cd,bus=ide.2,bootindex=2");
    }
    for (i, nic) in nics.iter().enumerate() {
        push("-netdev");
        push(&format!(
            "tap,id=net{i},ifname={},script=no,downscript=no,vnet_hdr=on",
            nic.tap
        ));
        push("-device");
        push(&format!("virtio-net-pci,netdev=net{i},mac={}", nic.mac));
    }
    if let Some(uri) = incoming {
        // Paused until the migration's disk and memory are all here (`cont`), listening at
        // once (no `-incoming defer` + `migrate-incoming`: one step fewer).
        push("-S");
        push("-incoming");
        push(uri);
    }
    if let Some(tag) = loadvm {
        // Start from a snapshot with memory: the guest resumes where it was.
        push("-loadvm");
        push(tag);
    }
    push("-device");
    push("virtio-balloon-pci,id=balloon0");
    push("-object");
    push("rng-random,id=rng0,filename=/dev/urandom");
    push("-device");
    push("virtio-rng-pci,rng=rng0");
    a
}

/// corral's kernel and initramfs (the agent as init), booted directly.
fn agent_kernel(push: &mut impl FnMut(&str), kernel: &Path, initrd: &Path, extra_cmdline: &str) {
    let qboot = Path::new("/usr/share/qemu/qboot.rom");
    if qboot.is_file() {
        // A minimal firmware for direct kernel boot: faster than SeaBIOS.
        push("-bios");
        push(&qboot.display().to_string());
    }
    push("-kernel");
    push(&kernel.display().to_string());
    push("-initrd");
    push(&initrd.display().to_string());
    push("-append");
    push(&image_cmdline(extra_cmdline));
}

fn drive(push: &mut impl FnMut(&str), serial: &str, path: &Path, format: &str, ro: bool) {
    drive_at(push, serial, path, format, ro, None)
}

/// [`drive`], first in the firmware's boot order with `bootindex` (a disk VM with a CD).
fn drive_at(
    push: &mut impl FnMut(&str),
    serial: &str,
    path: &Path,
    format: &str,
    ro: bool,
    bootindex: Option<u8>,
) {
    push("-drive");
    push(&format!(
        "file={},if=none,id=d-{serial},node-name=n-{serial},format={format},readonly={},discard=unmap",
        path.display(),
        if ro { "on" } else { "off" }
    ));
    push("-device");
    let boot = bootindex.map_or(String::new(), |i| format!(",bootindex={i}"));
    push(&format!(
        "virtio-blk-pci,drive=d-{serial},serial={serial}{boot}"
    ));
}
