//! The devices policy: v1 writes the rules into `devices.deny`/`devices.allow` in order; v2
//! attaches an eBPF program ([`super::device_filter`]).

use std::io;
use std::path::{Path, PathBuf};

use super::{device_filter, write, CgroupError, Layout};
use crate::config::DeviceRule;

/// Makes `rules` the device policy of the container's devices cgroup `dir` (v1) or its cgroup
/// (v2). In v1 the rules replace what was there: everything is denied first (the kernel's
/// "a" clears the allow list), so that a rule list not starting with a deny-all is still
/// read as one.
pub fn apply(layout: Layout, dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    if dir.as_os_str().is_empty() {
        return Err(CgroupError {
            what: "controller not mounted:",
            path: PathBuf::from("devices"),
            err: io::Error::from(io::ErrorKind::NotFound),
        });
    }
    match layout {
        Layout::V1 => {
            write(dir, "devices.deny", "a")?;
            for r in rules {
                let file = if r.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                for line in r.v1_lines() {
                    write(dir, file, &line)?;
                }
            }
            Ok(())
        }
        Layout::V2 => device_filter::apply(dir, rules).map_err(|err| CgroupError {
            what: "attaching the device filter (eBPF) to",
            path: dir.to_owned(),
            err,
        }),
    }
}
