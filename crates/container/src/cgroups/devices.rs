//! The v1 devices controller: deny every device, then allow the ones a container's `/dev`
//! holds (docker's default list). In v2 this is an eBPF program (not yet done: see the
//! crate docs).

use std::path::Path;

use super::{write, CgroupError};

/// `type major:minor access` lines allowed by default.
const ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:1 rwm",   // console
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pts
];

/// Applies the default device policy to a v1 devices cgroup.
pub fn allow_default(dir: &Path) -> Result<(), CgroupError> {
    write(dir, "devices.deny", "a")?;
    for a in ALLOWED {
        write(dir, "devices.allow", a)?;
    }
    Ok(())
}
