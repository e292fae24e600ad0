//! The pids controller: `--pids-limit`.

use std::path::Path;

use super::{write, CgroupController, CgroupError, Layout};
use crate::config::Resources;

pub struct Pids;

impl CgroupController for Pids {
    const NAME: &'static str = "pids";

    fn needed(r: &Resources) -> bool {
        r.pids_limit.is_some()
    }

    fn apply(_layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError> {
        match r.pids_limit {
            Some(n) if n > 0 => write(dir, "pids.max", &n.to_string()),
            Some(_) => write(dir, "pids.max", "max"),
            None => Ok(()),
        }
    }
}
