//! The memory controller: a hard limit, swap, a soft limit (reservation), swappiness, the OOM
//! killer switch, and the OOM-kill count.

use std::path::Path;

use super::{refuse as unsupported, write, CgroupController, CgroupError, Layout};
use crate::config::Resources;

pub struct Memory;

impl CgroupController for Memory {
    const NAME: &'static str = "memory";

    fn needed(r: &Resources) -> bool {
        r.memory.is_some()
            || r.memory_swap.is_some()
            || r.memory_reservation.is_some()
            || r.memory_swappiness.is_some()
            || r.oom_kill_disable
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        match layout {
            Layout::V1 => apply_v1(dir, r),
            Layout::V2 => apply_v2(dir, r),
        }
    }
}

fn apply_v1(dir: &Path, r: &Resources) -> Result<(), CgroupError> {
    let memsw_exists = dir.join("memory.memsw.limit_in_bytes").exists();
    // Without --memory-swap, a limit means no swap beyond it (docker's rule), where swap is
    // accounted.
    let memsw = match (r.memory_swap, r.memory) {
        (Some(s), _) => Some(s),
        (None, Some(l)) if memsw_exists => Some(l as i64),
        _ => None,
    };
    if memsw.is_some() && r.memory_swap.is_some() && !memsw_exists {
        return Err(unsupported(
            dir,
            "memory swap limit: this kernel does not account swap (boot with swapaccount=1)",
        ));
    }
    if let (Some(s), Some(l)) = (r.memory_swap, r.memory) {
        if s != -1 && s < l as i64 {
            return Err(unsupported(
                dir,
                "memory+swap limit below the memory limit: --memory-swap must be at least --memory (or -1)",
            ));
        }
    }
    // The kernel keeps memory <= memory+swap at every step: whichever order works now.
    match (r.memory, memsw) {
        (Some(l), Some(sw)) => {
            let (l, sw) = (l.to_string(), sw.to_string());
            if write(dir, "memory.memsw.limit_in_bytes", &sw).is_err() {
                write(dir, "memory.limit_in_bytes", &l)?;
                write(dir, "memory.memsw.limit_in_bytes", &sw)?;
            } else {
                write(dir, "memory.limit_in_bytes", &l)?;
            }
        }
        (Some(l), None) => write(dir, "memory.limit_in_bytes", &l.to_string())?,
        (None, Some(sw)) => write(dir, "memory.memsw.limit_in_bytes", &sw.to_string())?,
        (None, None) => {}
    }
    if let Some(res) = r.memory_reservation {
        write(dir, "memory.soft_limit_in_bytes", &res.to_string())?;
    }
    if let Some(sw) = r.memory_swappiness {
        if sw > 100 {
            return Err(unsupported(dir, "memory swappiness must be 0 to 100"));
        }
        write(dir, "memory.swappiness", &sw.to_string())?;
    }
    if r.oom_kill_disable {
        write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn apply_v2(dir: &Path, r: &Resources) -> Result<(), CgroupError> {
    if r.memory_swappiness.is_some() {
        return Err(unsupported(
            dir,
            "memory swappiness: cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if r.oom_kill_disable {
        return Err(unsupported(
            dir,
            "disabling the OOM killer: cgroup v2 cannot (set no memory limit instead)",
        ));
    }
    if let Some(limit) = r.memory {
        write(dir, "memory.max", &limit.to_string())?;
    }
    // v2 counts swap apart: memory.swap.max is memory+swap minus memory.
    if dir.join("memory.swap.max").exists() {
        match (r.memory_swap, r.memory) {
            (Some(-1), _) => write(dir, "memory.swap.max", "max")?,
            (Some(s), Some(l)) if s >= l as i64 => {
                write(dir, "memory.swap.max", &(s as u64 - l).to_string())?
            }
            (Some(_), _) => {
                return Err(unsupported(
                    dir,
                    "memory+swap limit without a memory limit at or below it",
                ))
            }
            (None, Some(_)) => write(dir, "memory.swap.max", "0")?,
            (None, None) => {}
        }
    } else if r.memory_swap.is_some_and(|s| s != -1) {
        return Err(unsupported(
            dir,
            "memory swap limit: no swap accounting here",
        ));
    }
    if let Some(res) = r.memory_reservation {
        write(dir, "memory.low", &res.to_string())?;
    }
    Ok(())
}

/// OOM kills recorded for the cgroup (v1 `memory.oom_control`, v2 `memory.events`).
pub fn oom_kills(layout: Layout, dir: &Path) -> u64 {
    let file = match layout {
        Layout::V1 => "memory.oom_control",
        Layout::V2 => "memory.events",
    };
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}
