//! Containers' usage as `docker stats` shows it: CPU %, memory used and its share of the
//! limit, network and block I/O, processes.
//!
//! A [`Sample`] is one reading of the counters (the cgroup's, the container's network
//! namespace's `/proc/PID/net/dev`); CPU % needs two, so [`Usage::between`] takes the one
//! before (docker's `precpu_stats`). The CPU share is of one CPU, as docker's is: a container
//! that keeps two CPUs busy shows 200%.

use std::path::Path;
use std::time::Instant;

use corral_container::{container_stats, Status};
use serde::Serialize;

use crate::{Engine, Result};

/// One reading of a running container's counters.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was read.
    pub at: Instant,
    /// CPU time used so far, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use without the page cache the kernel can drop (docker's MEM USAGE).
    pub memory: u64,
    /// The memory limit: the container's, else the host's memory.
    pub memory_limit: u64,
    /// Bytes received and sent on its interfaces (loopback left out).
    pub net: (u64, u64),
    /// Bytes read from and written to block devices.
    pub block: (u64, u64),
    /// Tasks.
    pub pids: u64,
}

/// Usage over an interval, ready to print.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// CPU used over the interval, in percent of one CPU.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_usage: u64,
    /// Memory limit, bytes (the host's memory without one).
    pub memory_limit: u64,
    /// `memory_usage` in percent of `memory_limit`.
    pub memory_percent: f64,
    /// Bytes received.
    pub net_rx: u64,
    /// Bytes sent.
    pub net_tx: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written to block devices.
    pub block_write: u64,
    /// Tasks.
    pub pids: u64,
}

impl Usage {
    /// The usage from `before` (the same container, earlier) to `now`; without `before`, CPU
    /// % is 0, as docker's first reading shows.
    pub fn between(before: Option<&Sample>, now: &Sample) -> Usage {
        let cpu_percent = before.filter(|b| b.id == now.id).map_or(0.0, |b| {
            let wall = now.at.duration_since(b.at).as_nanos() as f64;
            let cpu = now.cpu_ns.saturating_sub(b.cpu_ns) as f64;
            if wall > 0.0 {
                cpu / wall * 100.0
            } else {
                0.0
            }
        });
        Usage {
            id: now.id.clone(),
            name: now.name.clone(),
            cpu_percent,
            memory_usage: now.memory,
            memory_limit: now.memory_limit,
            memory_percent: if now.memory_limit > 0 {
                now.memory as f64 / now.memory_limit as f64 * 100.0
            } else {
                0.0
            },
            net_rx: now.net.0,
            net_tx: now.net.1,
            block_read: now.block.0,
            block_write: now.block.1,
            pids: now.pids,
        }
    }
}

/// The host's memory in bytes (`MemTotal`).
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let kb = l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes received and sent on the interfaces of `pid`'s network namespace, loopback left
/// out. The host's namespace (`--network host`) counts as none of the container's: 0.
fn net_io(pid: i32, own_netns: bool) -> (u64, u64) {
    if !own_netns {
        return (0, 0);
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    let (mut rx, mut tx) = (0, 0);
    // `  eth0: RX bytes packets errs drop fifo frame compressed multicast TX bytes ...`
    for l in text.lines().skip(2) {
        let Some((ifname, counters)) = l.split_once(':') else {
            continue;
        };
        if ifname.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

/// Block I/O of the processes alive now (`/proc/PID/io`), for a cgroup that does not count
/// it (cgroup v1 without the blkio hierarchy): what exited processes did is not in it.
fn proc_io(pids: &[i32]) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/io")) else {
            continue;
        };
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("read_bytes: ") {
                r += v.trim().parse::<u64>().unwrap_or(0);
            } else if let Some(v) = l.strip_prefix("write_bytes: ") {
                w += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    (r, w)
}

impl Engine {
    /// Reads the counters of the running containers among `ids` (the others are left out).
    pub fn sample(&self, ids: &[String]) -> Result<Vec<Sample>> {
        let cs = self.containers()?;
        let host = host_memory();
        let root = Path::new(crate::CGROUP_ROOT);
        let mut out = Vec::new();
        for id in ids {
            let Ok(s) = cs.load(id) else { continue };
            let (Status::Running, Some(pid)) = (s.status, s.pid) else {
                continue;
            };
            let Some(st) = container_stats::stats(&cs, id, root)? else {
                continue;
            };
            let own_netns = cs
                .config(id)
                .is_ok_and(|c| c.network != corral_container::config::NetworkMode::Host);
            let block = match st.block_io {
                Some(b) => b,
                None => {
                    let procs = container_stats::top(&cs, id, root)?;
                    proc_io(&procs.iter().map(|p| p.pid).collect::<Vec<_>>())
                }
            };
            out.push(Sample {
                id: s.id.clone(),
                name: s.name.clone(),
                at: Instant::now(),
                cpu_ns: st.cpu_usage_ns,
                memory: st.memory_usage.saturating_sub(st.memory_inactive_file),
                memory_limit: st.memory_limit.filter(|&l| l < host).unwrap_or(host),
                net: net_io(pid, own_netns),
                block,
                pids: st.pids,
            });
        }
        Ok(out)
    }
}
