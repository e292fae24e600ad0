//! The devices policy: v1 writes the rules into `devices.deny`/`devices.allow` in order; v2
//! attaches an eBPF program ([`super::device_filter`]).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{device_filter, CgroupError, Layout};
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
            // Each file opened once, one rule per write(2) (the controller reads one per call).
            let open = |name: &str| {
                let p = dir.join(name);
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map(|f| (f, p.clone()))
                    .map_err(|e| CgroupError {
                        what: "opening",
                        path: p,
                        err: e,
                    })
            };
            let (mut allow, mut deny) = (open("devices.allow")?, open("devices.deny")?);
            let put = |(f, p): &mut (fs::File, PathBuf), line: &str| {
                f.write_all(line.as_bytes()).map_err(|e| CgroupError {
                    what: "writing",
                    path: p.clone(),
                    err: e,
                })
            };
            put(&mut deny, "a")?;
            for r in rules {
                for line in r.v1_lines() {
                    put(if r.allow { &mut allow } else { &mut deny }, &line)?;
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
