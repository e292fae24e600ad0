//! `Ping` and `Info`: uptime, kernel, hostname, addresses, memory.

use corral_guest::proto::GuestInfo;
use rustix::time::{clock_gettime, ClockId};

use crate::netconf;

/// Milliseconds since the kernel started, suspend included (CLOCK_BOOTTIME, what
/// `/proc/uptime` shows).
pub fn uptime_ms() -> u64 {
    let t = clock_gettime(ClockId::Boottime);
    (t.tv_sec.max(0) as u64) * 1000 + (t.tv_nsec.max(0) as u64) / 1_000_000
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo` text, in KiB (0 when absent).
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let mut total = 0;
    let mut available = 0;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let value = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        match key {
            "MemTotal" => total = value,
            "MemAvailable" => available = value,
            _ => {}
        }
    }
    (total, available)
}

/// What `Info` answers.
pub fn guest_info() -> GuestInfo {
    let uname = rustix::system::uname();
    let (mem_total_kib, mem_available_kib) = std::fs::read_to_string("/proc/meminfo")
        .map(|t| parse_meminfo(&t))
        .unwrap_or_default();
    let addresses = match netconf::ipv4_addresses() {
        Ok(a) => a,
        Err(e) => {
            crate::log!("info: {}", crate::server::error_chain(&e));
            Vec::new()
        }
    };
    GuestInfo {
        uptime_ms: uptime_ms(),
        kernel: uname.release().to_string_lossy().into_owned(),
        hostname: uname.nodename().to_string_lossy().into_owned(),
        addresses,
        mem_total_kib,
        mem_available_kib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_total_and_available() {
        let text = "MemTotal:         492712 kB\nMemFree:          440000 kB\n\
                    MemAvailable:     451234 kB\nBuffers:            1024 kB\n";
        assert_eq!(parse_meminfo(text), (492712, 451234));
        assert_eq!(parse_meminfo("garbage\nMemTotal: x kB\n"), (0, 0));
    }
}
