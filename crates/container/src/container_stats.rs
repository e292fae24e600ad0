//! `stats` and `top`: what a container uses, and its processes, read from its cgroup and /proc.

use std::path::Path;

use crate::cgroups::stats::Stats;
use crate::cgroups::Cgroup;
use crate::state::{Containers, StateError, Status};

/// A container's usage now.
pub fn stats(
    containers: &Containers,
    id: &str,
    cgroup_root: &Path,
) -> Result<Option<Stats>, StateError> {
    let s = containers.load(id)?;
    if s.status != Status::Running {
        return Ok(None);
    }
    Ok(Some(Cgroup::from_dirs(cgroup_root, s.cgroup_paths).stats()))
}

/// One process of a container, as `top` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Process {
    /// Host pid.
    pub pid: i32,
    /// Parent's host pid.
    pub ppid: i32,
    /// Real uid.
    pub uid: u32,
    /// CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Command line.
    pub command: String,
}

/// The processes of a running container (host pids).
pub fn top(
    containers: &Containers,
    id: &str,
    cgroup_root: &Path,
) -> Result<Vec<Process>, StateError> {
    let s = containers.load(id)?;
    if s.status != Status::Running {
        return Ok(Vec::new());
    }
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let mut out = Vec::new();
    for pid in Cgroup::from_dirs(cgroup_root, s.cgroup_paths).procs() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let command = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("Uid:")?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
            })
            .unwrap_or(0);
        out.push(Process {
            pid,
            ppid: num(1) as i32,
            uid,
            cpu_seconds: (num(11) + num(12)) as f64 / ticks,
            rss: num(21) * page,
            command,
        });
    }
    Ok(out)
}
