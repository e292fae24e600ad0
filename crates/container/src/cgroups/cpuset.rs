//! The cpuset controller: `--cpuset-cpus` and `--cpuset-mems`. In v1 a new cpuset starts empty and admits no task
//! until `cpuset.cpus` and `cpuset.mems` are set, so they are copied from the parent first.

use std::path::Path;

use super::{write, CgroupController, CgroupError, Layout};
use crate::config::Resources;

pub struct Cpuset;

impl CgroupController for Cpuset {
    const NAME: &'static str = "cpuset";

    fn needed(r: &Resources) -> bool {
        r.cpuset_cpus.is_some() || r.cpuset_mems.is_some()
    }

    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        let _ = layout;
        if let Some(cpus) = &r.cpuset_cpus {
            write(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = &r.cpuset_mems {
            write(dir, "cpuset.mems", mems)?;
        }
        Ok(())
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` from `parent` into `child` where the child's are
/// empty (v1).
pub fn inherit_if_empty(parent: &Path, child: &Path) -> Result<(), CgroupError> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let have = std::fs::read_to_string(child.join(f)).unwrap_or_default();
        if have.trim().is_empty() {
            let v = std::fs::read_to_string(parent.join(f)).unwrap_or_default();
            let v = v.trim();
            if !v.is_empty() {
                write(child, f, v)?;
            }
        }
    }
    Ok(())
}
