//! The cpu controller: CFS quota (`--cpus`) and weight (`--cpu-shares`).

use std::path::Path;

use super::{write, CgroupController, CgroupError, Layout};
use crate::config::Resources;

pub struct Cpu;

/// docker's shares (2..262144, default 1024) to cgroup v2's weight (1..10000, default 100),
/// the conversion runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

impl CgroupController for Cpu {
    const NAME: &'static str = "cpu";

    fn needed(r: &Resources) -> bool {
        r.cpu_quota.is_some() || r.cpu_shares.is_some()
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        let period = r.cpu_period.unwrap_or(100_000);
        match layout {
            Layout::V1 => {
                if let Some(q) = r.cpu_quota {
                    write(dir, "cpu.cfs_period_us", &period.to_string())?;
                    write(dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
                if let Some(s) = r.cpu_shares {
                    write(dir, "cpu.shares", &s.to_string())?;
                }
            }
            Layout::V2 => {
                if let Some(q) = r.cpu_quota {
                    write(dir, "cpu.max", &format!("{q} {period}"))?;
                }
                if let Some(s) = r.cpu_shares {
                    write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_to_weight_like_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn quota_is_written_in_each_layout() {
        let d = tempfile::tempdir().unwrap();
        let r = Resources {
            cpu_quota: Some(50_000),
            cpu_shares: Some(512),
            ..Default::default()
        };
        Cpu::apply(Layout::V2, d.path(), &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("cpu.weight")).unwrap(),
            "20"
        );
        Cpu::apply(Layout::V1, d.path(), &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("cpu.cfs_quota_us")).unwrap(),
            "50000"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("cpu.shares")).unwrap(),
            "512"
        );
    }
}
