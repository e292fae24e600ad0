//! The memory controller: a hard limit, swap included, and the OOM-kill count.

use std::path::Path;

use super::{write, CgroupController, CgroupError, Layout};
use crate::config::Resources;

pub struct Memory;

impl CgroupController for Memory {
    const NAME: &'static str = "memory";

    fn needed(r: &Resources) -> bool {
        r.memory.is_some()
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        let Some(limit) = r.memory else { return Ok(()) };
        match layout {
            Layout::V1 => {
                // No swap beyond the limit, as docker does with -m alone ... when swap
                // accounting exists. The kernel keeps memory <= memory+swap at every step: a
                // raised limit (`update`) moves memsw first, a lowered one moves it last.
                let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
                let current: Option<u64> =
                    std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                let raising = current.is_some_and(|c| limit > c);
                if memsw && raising {
                    write(dir, "memory.memsw.limit_in_bytes", &limit.to_string())?;
                }
                write(dir, "memory.limit_in_bytes", &limit.to_string())?;
                if memsw && !raising {
                    write(dir, "memory.memsw.limit_in_bytes", &limit.to_string())?;
                }
            }
            Layout::V2 => {
                write(dir, "memory.max", &limit.to_string())?;
                if dir.join("memory.swap.max").exists() {
                    write(dir, "memory.swap.max", "0")?;
                }
            }
        }
        Ok(())
    }
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
