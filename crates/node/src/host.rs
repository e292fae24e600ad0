//! What the Node object says about this host, read from the kernel's files: CPUs, memory
//! (`/proc/meminfo`), the disk under the corral root (statvfs), the kernel and OS
//! (`uname`, `/etc/os-release`), the machine's ids, and the address other nodes reach it at
//! (the source address of the default route, found by connecting a UDP socket: nothing is
//! sent).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;

/// Facts about the host that do not change while the agent runs.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    /// Logical CPUs.
    pub cpus: u32,
    /// `MemTotal`, KiB.
    pub memory_kib: u64,
    /// The node's InternalIP.
    pub ip: IpAddr,
    /// `uname -r`.
    pub kernel: String,
    /// `/etc/os-release`'s `PRETTY_NAME`.
    pub os_image: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// This boot's id.
    pub boot_id: String,
    /// The firmware's system UUID (the machine id where it cannot be read).
    pub system_uuid: String,
    /// Go's name of the architecture (`amd64`, `arm64`).
    pub arch: &'static str,
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl HostInfo {
    /// Reads the host; `ip` overrides the address found.
    pub fn gather(ip: Option<IpAddr>) -> HostInfo {
        let uname = rustix::system::uname();
        let machine_id = read_trim("/etc/machine-id");
        let uuid = read_trim("/sys/class/dmi/id/product_uuid").to_lowercase();
        HostInfo {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_kib: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| meminfo_kib(&m, "MemTotal"))
                .unwrap_or(0),
            ip: ip
                .or_else(primary_ip)
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            kernel: uname.release().to_string_lossy().into_owned(),
            os_image: std::fs::read_to_string("/etc/os-release")
                .map(|t| pretty_name(&t))
                .unwrap_or_else(|_| "Linux".into()),
            system_uuid: if uuid.is_empty() {
                machine_id.clone()
            } else {
                uuid
            },
            machine_id,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            arch: go_arch(std::env::consts::ARCH),
        }
    }
}

/// Go's GOARCH for Rust's architecture name.
pub(crate) fn go_arch(rust: &'static str) -> &'static str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A `/proc/meminfo` line's value in KiB.
pub(crate) fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, rest) = l.split_once(':')?;
        (k == key).then(|| rest.split_whitespace().next()?.parse().ok())?
    })
}

/// `PRETTY_NAME` of an os-release file (unquoted), else "Linux".
pub(crate) fn pretty_name(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".into())
}

/// The source address of the default route (IPv4, else IPv6).
fn primary_ip() -> Option<IpAddr> {
    let probe = |bind: &str, to: &str| -> Option<IpAddr> {
        let s = UdpSocket::bind(bind).ok()?;
        s.connect(to).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    };
    probe("0.0.0.0:0", "192.0.2.1:9").or_else(|| probe("[::]:0", "[2001:db8::1]:9"))
}

/// The memory the kernel can still give, KiB.
pub(crate) fn mem_available_kib() -> Option<u64> {
    meminfo_kib(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable",
    )
}

/// (total, available) bytes of the filesystem holding `path`.
pub(crate) fn disk(path: &Path) -> Option<(u64, u64)> {
    let mut p = path.to_path_buf();
    // The root may not exist yet: its nearest existing ancestor's filesystem.
    while !p.exists() {
        if !p.pop() {
            return None;
        }
    }
    let s = rustix::fs::statvfs(&p).ok()?;
    Some((s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
}

/// (processes now, the most there can be).
pub(crate) fn pids() -> Option<(u64, u64)> {
    let load = std::fs::read_to_string("/proc/loadavg").ok()?;
    let total = load
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()?;
    let max = read_trim("/proc/sys/kernel/pid_max").parse().ok()?;
    Some((total, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_parse() {
        let m = "MemTotal:       24683664 kB\nMemFree:        23739956 kB\nMemAvailable:   2 kB\n";
        assert_eq!(meminfo_kib(m, "MemTotal"), Some(24_683_664));
        assert_eq!(meminfo_kib(m, "MemAvailable"), Some(2));
        assert_eq!(meminfo_kib(m, "Nope"), None);
        assert_eq!(
            pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n"),
            "Debian GNU/Linux 13 (trixie)"
        );
        assert_eq!(pretty_name("NAME=x\n"), "Linux");
        assert_eq!(go_arch("x86_64"), "amd64");
        let h = HostInfo::gather(None);
        assert!(h.cpus >= 1 && h.memory_kib > 0);
        assert!(disk(Path::new("/tmp/no/such/dir")).is_some());
    }
}
