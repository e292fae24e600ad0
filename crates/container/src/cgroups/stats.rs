//! Reading a cgroup's usage (`stats`) and freezing it (`pause`).

use std::path::{Path, PathBuf};

use super::{write, CgroupError, Layout};

/// A snapshot of a container's usage.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Memory in use, bytes.
    pub memory_usage: u64,
    /// Memory limit, bytes (None: unlimited).
    pub memory_limit: Option<u64>,
    /// CPU time used, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Tasks in the cgroup.
    pub pids: u64,
    /// Of `memory_usage`, page cache the kernel can drop at once (inactive file pages):
    /// docker's MEM USAGE leaves it out.
    pub memory_inactive_file: u64,
    /// Bytes read from and written to block devices, when the cgroup counts them (v2's io
    /// controller; v1's blkio hierarchy, joined only when asked for).
    pub block_io: Option<(u64, u64)>,
}

/// The value of `key` in a flat-keyed cgroup file (`memory.stat`: `key value` lines).
fn keyed(dirs: &[PathBuf], file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(find(dirs, file)?).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Bytes read and written as v1's `blkio.throttle.io_service_bytes_recursive` counts them
/// (`MAJ:MIN Read N` lines).
fn blkio_v1(dirs: &[PathBuf]) -> Option<(u64, u64)> {
    let text =
        std::fs::read_to_string(find(dirs, "blkio.throttle.io_service_bytes_recursive")?).ok()?;
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, n] = f[..] {
            let n: u64 = n.parse().unwrap_or(0);
            match op {
                "Read" => r += n,
                "Write" => w += n,
                _ => {}
            }
        }
    }
    Some((r, w))
}

/// Bytes read and written as v2's `io.stat` counts them (`MAJ:MIN rbytes=N wbytes=N ...`).
fn io_v2(dirs: &[PathBuf]) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(find(dirs, "io.stat")?).ok()?;
    let (mut r, mut w) = (0, 0);
    for kv in text.split_whitespace() {
        match kv.split_once('=') {
            Some(("rbytes", n)) => r += n.parse().unwrap_or(0),
            Some(("wbytes", n)) => w += n.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some((r, w))
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn find(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(file)).find(|p| p.exists())
}

/// Reads usage from the cgroup's directories.
pub fn read(layout: Layout, dirs: &[PathBuf]) -> Stats {
    let mut s = Stats::default();
    match layout {
        Layout::V1 => {
            s.memory_usage = find(dirs, "memory.usage_in_bytes")
                .and_then(|p| read_u64(&p))
                .unwrap_or(0);
            // v1 reports "no limit" as a huge page-aligned number.
            s.memory_limit = find(dirs, "memory.limit_in_bytes")
                .and_then(|p| read_u64(&p))
                .filter(|&l| l < (1 << 62));
            s.cpu_usage_ns = find(dirs, "cpuacct.usage")
                .and_then(|p| read_u64(&p))
                .unwrap_or(0);
            s.memory_inactive_file = keyed(dirs, "memory.stat", "total_inactive_file").unwrap_or(0);
            s.block_io = blkio_v1(dirs);
        }
        Layout::V2 => {
            s.memory_usage = find(dirs, "memory.current")
                .and_then(|p| read_u64(&p))
                .unwrap_or(0);
            s.memory_limit = find(dirs, "memory.max").and_then(|p| read_u64(&p));
            s.cpu_usage_ns = find(dirs, "cpu.stat")
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
                })
                .map_or(0, |us| us * 1000);
            s.memory_inactive_file = keyed(dirs, "memory.stat", "inactive_file").unwrap_or(0);
            s.block_io = io_v2(dirs);
        }
    }
    s.pids = find(dirs, "pids.current")
        .and_then(|p| read_u64(&p))
        .unwrap_or_else(|| {
            dirs.first()
                .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
                .map_or(0, |t| t.lines().count() as u64)
        });
    s
}

/// Freezes (or thaws) every task of the cgroup.
pub fn freeze(layout: Layout, dirs: &[PathBuf], frozen: bool) -> Result<(), CgroupError> {
    match layout {
        Layout::V1 => {
            let dir = dirs
                .iter()
                .find(|d| d.join("freezer.state").exists())
                .ok_or_else(|| CgroupError {
                    what: "no freezer hierarchy for",
                    path: dirs.first().cloned().unwrap_or_default(),
                    err: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
            write(
                dir,
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            )
        }
        Layout::V2 => {
            let dir = dirs.first().cloned().unwrap_or_default();
            write(&dir, "cgroup.freeze", if frozen { "1" } else { "0" })
        }
    }
}
