//! `Boot` and `Shutdown`: the guest's root filesystem, names, network and clock, and the
//! orderly end of the machine.
//!
//! The root is an overlay of two virtio disks found by their serial numbers: the image's
//! ext4 read-only as the lower layer, a writable ext4 holding `upper/` and `work/` (kept
//! across restarts of the VM). The agent mounts the kernel filesystems inside it, then
//! switches root as switch_root(8) does for an initramfs, whose rootfs cannot be
//! pivot_root'ed away: chdir into the new root, move its mount onto `/`, chroot to `.`.
//! Every later process (and thread of the agent: chroot is per process) lives in it.
//!
//! At shutdown the upper disk must be left clean: after the processes are gone the agent
//! remounts the overlay and then the upper disk read-only, the latter through an `O_PATH`
//! fd taken before the switch (its mount point is no longer reachable by path).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_guest::proto::{Boot, RootDisks};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::process::{Pid, Signal};
use rustix::system::RebootCommand;
use rustix::time::{ClockId, Timespec};

use crate::server::{lock, Agent, Session};
use crate::{log, netconf};

/// Where the disks and the overlay are mounted before the switch.
const LOWER: &str = "/run/corral/lower";
const UPPER_DISK: &str = "/run/corral/upperdisk";
const NEW_ROOT: &str = "/run/corral/root";

/// What `Shutdown` needs to undo.
#[derive(Default)]
pub struct Mounted {
    /// `Boot` ran (it is not repeated when the host reconnects and sends it again).
    pub booted: bool,
    /// The upper disk's mount, opened `O_PATH` before the root switch.
    upper_disk: Option<OwnedFd>,
    /// Whether `/` is the overlay.
    overlay_root: bool,
}

/// `Boot` failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A disk with the given serial did not appear.
    #[error("no virtio disk with serial {0:?} (looked in /sys/block/vd*/serial for 5 s)")]
    NoDisk(String),
    /// A system call on a path failed.
    #[error("{what} {}", path.display())]
    Sys {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        err: io::Error,
    },
    /// The network could not be set up.
    #[error("network")]
    Net(#[from] netconf::NetError),
    /// This agent is not PID 1 of a VM.
    #[error("root disks and interfaces need the agent to be PID 1 of a VM")]
    NotInit,
}

fn sys<T>(
    what: &'static str,
    path: impl AsRef<Path>,
    r: Result<T, impl Into<io::Error>>,
) -> Result<T, BootError> {
    r.map_err(|e| BootError::Sys {
        what,
        path: path.as_ref().to_path_buf(),
        err: e.into(),
    })
}

/// Sets the guest up as `b` asks.
pub fn boot(agent: &Agent, b: &Boot) -> Result<(), BootError> {
    if !agent.pid1 {
        if b.root.is_some() || !b.interfaces.is_empty() {
            return Err(BootError::NotInit);
        }
        return Ok(());
    }
    let mut mounted = lock(&agent.mounts);
    if mounted.booted {
        log!("boot requested again: the guest is already set up");
        return Ok(());
    }
    if let Some(root) = &b.root {
        mount_root(root, &mut mounted)?;
        log!(
            "root is the overlay of disks {} and {}",
            root.image_serial,
            root.upper_serial
        );
    }
    write_etc(Path::new("/etc"), b)?;
    if !b.hostname.is_empty() {
        sys(
            "set hostname to",
            &b.hostname,
            rustix::system::sethostname(b.hostname.as_bytes()),
        )?;
    }
    netconf::configure(&b.interfaces)?;
    for share in &b.shares {
        mount_share(share)?;
        log!("mounted share {} on {}", share.tag, share.at);
    }
    if b.time_ms != 0 {
        set_clock(b.time_ms);
    }
    mounted.booted = true;
    Ok(())
}

/// Mounts a host directory the VM exports over virtio-fs (virtiofsd on the host, which caches
/// nothing: the host changes the directory while the guest runs, a pod's new members appear
/// in it).
fn mount_share(share: &corral_guest::proto::Share) -> Result<(), BootError> {
    if !share.at.starts_with('/') || share.at.split('/').any(|c| c == "..") {
        return Err(BootError::Sys {
            what: "mount a share on",
            path: PathBuf::from(&share.at),
            err: io::Error::new(io::ErrorKind::InvalidInput, "not an absolute path"),
        });
    }
    mkdir_p(&share.at)?;
    mount(&share.tag, &share.at, "virtiofs", MountFlags::NODEV, "")
}

/// The device node of the virtio disk whose serial is `serial`, waiting up to 5 s for it.
fn find_disk(serial: &str) -> Result<PathBuf, BootError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(entries) = fs::read_dir("/sys/block") {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if !name.starts_with("vd") {
                    continue;
                }
                let s = fs::read_to_string(e.path().join("serial")).unwrap_or_default();
                if s.trim_end_matches(['\n', '\0']) == serial {
                    let dev = Path::new("/dev").join(name);
                    if dev.exists() {
                        return Ok(dev);
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(BootError::NoDisk(serial.into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mkdir_p(p: impl AsRef<Path>) -> Result<(), BootError> {
    sys(
        "create directory",
        p.as_ref(),
        fs::create_dir_all(p.as_ref()),
    )
}

fn mount(
    src: &str,
    target: impl AsRef<Path>,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), BootError> {
    let target = target.as_ref();
    let data = std::ffi::CString::new(data).map_err(|e| BootError::Sys {
        what: "mount options for",
        path: target.into(),
        err: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let data = if data.as_bytes().is_empty() {
        None
    } else {
        Some(data.as_c_str())
    };
    sys(
        "mount",
        target,
        rustix::mount::mount(src, target, fstype, flags, data),
    )
}

/// Mounts the overlay root and switches into it.
fn mount_root(root: &RootDisks, mounted: &mut Mounted) -> Result<(), BootError> {
    let image = find_disk(&root.image_serial)?;
    let upper = find_disk(&root.upper_serial)?;
    for d in [LOWER, UPPER_DISK, NEW_ROOT] {
        mkdir_p(d)?;
    }
    mount(
        image.to_str().unwrap_or_default(),
        LOWER,
        "ext4",
        MountFlags::RDONLY,
        "",
    )?;
    mount(
        upper.to_str().unwrap_or_default(),
        UPPER_DISK,
        "ext4",
        MountFlags::NOATIME,
        "",
    )?;
    mounted.upper_disk = Some(sys(
        "open",
        UPPER_DISK,
        rustix::fs::open(
            UPPER_DISK,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ),
    )?);
    // Existing upper/ and work/ are kept: they hold the VM's changes from earlier boots.
    mkdir_p(format!("{UPPER_DISK}/upper"))?;
    mkdir_p(format!("{UPPER_DISK}/work"))?;
    mount(
        "overlay",
        NEW_ROOT,
        "overlay",
        MountFlags::empty(),
        &format!("lowerdir={LOWER},upperdir={UPPER_DISK}/upper,workdir={UPPER_DISK}/work"),
    )?;
    mount_kernel_fs(Path::new(NEW_ROOT))?;
    sys("chdir to", NEW_ROOT, rustix::process::chdir(NEW_ROOT))?;
    sys("move onto /", NEW_ROOT, rustix::mount::mount_move(".", "/"))?;
    sys("chroot to", NEW_ROOT, rustix::process::chroot("."))?;
    sys("chdir to", "/", rustix::process::chdir("/"))?;
    mounted.overlay_root = true;
    Ok(())
}

/// Mounts /proc, /sys, /dev, /dev/pts, /dev/shm and /run under `root`.
pub fn mount_kernel_fs(root: &Path) -> Result<(), BootError> {
    let nosuid_noexec = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    let table: [(&str, &str, &str, MountFlags, &str); 6] = [
        ("proc", "proc", "proc", nosuid_noexec, ""),
        ("sysfs", "sys", "sysfs", nosuid_noexec, ""),
        (
            "devtmpfs",
            "dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        (
            "devpts",
            "dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        (
            "shm",
            "dev/shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
    ];
    for (src, dir, fstype, flags, data) in table {
        let target = root.join(dir);
        mkdir_p(&target)?;
        match mount(src, &target, fstype, flags, data) {
            // devtmpfs may already be there (CONFIG_DEVTMPFS_MOUNT); a second mount is fine.
            Err(BootError::Sys { err, .. })
                if err.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {}
            r => r?,
        }
    }
    Ok(())
}

/// The text of /etc/hosts: localhost, the host's lines, then the hostname unless a line
/// names it already.
pub fn hosts_text(hostname: &str, lines: &[String]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for l in lines {
        s.push_str(l.trim_end_matches('\n'));
        s.push('\n');
    }
    let named = lines
        .iter()
        .any(|l| l.split_whitespace().skip(1).any(|n| n == hostname));
    if !hostname.is_empty() && !named {
        s.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    s
}

/// The text of /etc/resolv.conf.
pub fn resolv_text(nameservers: &[String], search: &[String]) -> String {
    let mut s = String::new();
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    for n in nameservers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    s
}

/// Writes `path` atomically (temporary file, rename), replacing a symlink there.
fn write_file(path: &Path, text: &str) -> Result<(), BootError> {
    let tmp = path.with_extension("corral-tmp");
    sys("write", &tmp, fs::write(&tmp, text))?;
    sys("rename into", path, fs::rename(&tmp, path))
}

/// Writes hostname, hosts and resolv.conf into `etc` (created if absent).
fn write_etc(etc: &Path, b: &Boot) -> Result<(), BootError> {
    mkdir_p(etc)?;
    if !b.hostname.is_empty() {
        write_file(&etc.join("hostname"), &format!("{}\n", b.hostname))?;
    }
    write_file(&etc.join("hosts"), &hosts_text(&b.hostname, &b.hosts))?;
    if valid_machine_id(&b.machine_id) {
        write_file(&etc.join("machine-id"), &format!("{}\n", b.machine_id))?;
    } else if !b.machine_id.is_empty() {
        log!(
            "ignoring machine id {:?}: not 32 lowercase hex digits",
            b.machine_id
        );
    }
    if !b.nameservers.is_empty() || !b.search.is_empty() {
        write_file(
            &etc.join("resolv.conf"),
            &resolv_text(&b.nameservers, &b.search),
        )?;
    }
    Ok(())
}

/// machine-id(5): 32 lowercase hex digits, not all zeros.
pub fn valid_machine_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

/// Sets the wall clock to the host's when it is more than a second off.
fn set_clock(host_ms: u64) {
    let now = rustix::time::clock_gettime(ClockId::Realtime);
    let guest_ms = now.tv_sec as i128 * 1000 + now.tv_nsec as i128 / 1_000_000;
    if (guest_ms - host_ms as i128).abs() <= 1000 {
        return;
    }
    let t = Timespec {
        tv_sec: (host_ms / 1000) as i64,
        tv_nsec: ((host_ms % 1000) * 1_000_000) as _,
    };
    match rustix::time::clock_settime(ClockId::Realtime, t) {
        Ok(()) => log!(
            "clock set from the host's ({} ms off)",
            guest_ms - host_ms as i128
        ),
        Err(e) => log!("cannot set the clock: {e}"),
    }
}

/// The pids of every process but this one (kernel threads ignore the signals sent to them).
fn other_processes() -> Vec<Pid> {
    let me = rustix::process::getpid();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(Pid::from_raw)
        .filter(|p| *p != me)
        // Kernel threads have no command line; neither do zombies, which need no signal.
        .filter(|p| {
            fs::read(format!("/proc/{}/cmdline", p.as_raw_nonzero())).is_ok_and(|c| !c.is_empty())
        })
        .collect()
}

/// Powers off (or reboots) after replying: ends every process, syncs, leaves the disks
/// clean. As a test agent, ends its own sessions' processes and exits.
pub fn shutdown(agent: &Agent, reboot: bool) {
    if !agent.pid1 {
        for s in lock(&agent.sessions).values() {
            if let Session::Proc(p) = s {
                let _ = rustix::process::kill_process_group(p.pid, Signal::KILL);
            }
        }
        std::process::exit(0);
    }
    log!(
        "shutting down ({})",
        if reboot { "reboot" } else { "power off" }
    );
    for sig in [Signal::TERM, Signal::KILL] {
        for p in other_processes() {
            let _ = rustix::process::kill_process(p, sig);
        }
        let deadline =
            Instant::now() + Duration::from_secs(if sig == Signal::TERM { 3 } else { 1 });
        while !other_processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    rustix::fs::sync();
    let mounted = lock(&agent.mounts);
    if mounted.overlay_root {
        for dir in ["/run", "/dev/shm", "/dev/pts"] {
            let _ = rustix::mount::unmount(dir, UnmountFlags::DETACH);
        }
        if let Err(e) = rustix::mount::mount_remount("/", MountFlags::RDONLY, "") {
            log!("remount / read-only: {e}");
        }
    }
    if let Some(fd) = &mounted.upper_disk {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match rustix::mount::mount_remount(path.as_str(), MountFlags::RDONLY, "") {
            Ok(()) => log!("upper disk remounted read-only"),
            Err(e) => log!("remount the upper disk read-only: {e}"),
        }
    }
    drop(mounted);
    power_off(reboot);
}

/// Syncs and powers off (or reboots); never returns.
pub fn power_off(reboot: bool) -> ! {
    rustix::fs::sync();
    let cmd = if reboot {
        RebootCommand::Restart
    } else {
        RebootCommand::PowerOff
    };
    if let Err(e) = rustix::system::reboot(cmd) {
        log!("reboot(2) failed: {e}");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_has_localhost_lines_and_hostname() {
        let t = hosts_text("vm1", &["10.0.0.3\tdb".into()]);
        assert_eq!(
            t,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.3\tdb\n127.0.1.1\tvm1\n"
        );
        let t = hosts_text("vm1", &["10.0.0.2 vm1 vm1.corral".into()]);
        assert!(!t.contains("127.0.1.1"), "{t}");
        assert!(t.contains("10.0.0.2 vm1 vm1.corral\n"));
    }

    #[test]
    fn machine_ids_are_32_lowercase_hex_digits() {
        assert!(valid_machine_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef",
            "00000000000000000000000000000000",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(!valid_machine_id(bad), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_has_search_then_nameservers() {
        assert_eq!(
            resolv_text(
                &["10.0.0.1".into(), "1.1.1.1".into()],
                &["corral".into(), "lan".into()]
            ),
            "search corral lan\nnameserver 10.0.0.1\nnameserver 1.1.1.1\n"
        );
    }
}
