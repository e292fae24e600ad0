//! A real Debian 12 disk for VM tests: debootstrap from Debian's packages, with systemd,
//! cloud-init, openssh-server and systemd-networkd, as a qcow2 that `vm create --boot-disk`
//! boots through SeaBIOS.
//!
//! The recipe is one shell script, `tests/src/debian12-disk.sh` (also run by
//! `benches/vm_debian.sh`), which builds the disk once per machine under [`CACHE_DIR`], named
//! after the script's own hash, behind a file lock so that parallel tests wait for one builder.
//! The first build takes a couple of minutes (mostly debootstrap); afterwards the disk is
//! found at once. corral imports a `--boot-disk` into the VM's directory (a reflink or a
//! sparse copy), so tests boot the cached file directly and never change it.
//!
//! A machine where the disk cannot be built (no debootstrap, no Debian mirror) gets an `Err`
//! with the reason, which the test reports as a loud SKIPPED line.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{describe, run_bounded};

/// Where the disk (and the packages it is built from) are cached between runs.
pub const CACHE_DIR: &str = "/var/cache/corral-test";

/// The recipe.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/debian12-disk.sh");

/// The script's exit code for "cannot be built on this machine".
const CANNOT_BUILD: i32 = 77;

/// Bound on a build: debootstrap downloads ~150 MB and configures ~250 packages; a builder
/// that waits on another's lock waits as long.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

/// The cached Debian 12 disk's path, built first if this machine has none of this recipe.
///
/// `Err(why)` when it cannot be built here (not root, a tool missing, no mirror reachable):
/// report it with [`crate::report_skip`].
///
/// # Panics
/// If the build fails for another reason (the recipe is broken): with its output.
pub fn debian12_disk() -> Result<PathBuf, String> {
    let mut cmd = Command::new("bash");
    cmd.arg(SCRIPT).arg(CACHE_DIR);
    let out = run_bounded(&mut cmd, None, BUILD_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            assert!(
                path.is_file(),
                "{SCRIPT} printed no disk: {}",
                describe(&out)
            );
            Ok(path)
        }
        Some(CANNOT_BUILD) => Err(stderr
            .lines()
            .rfind(|l| l.contains("cannot build here"))
            .unwrap_or("the Debian 12 disk cannot be built here")
            .to_owned()),
        _ => panic!("{SCRIPT} failed: {}", describe(&out)),
    }
}
