//! The end-to-end harness: drives the real `corral` binary as root against the real kernel and
//! the real peers (podman, skopeo, Debian's `docker-registry`).
//!
//! What lives here, one module per concern:
//! - [`world`]: [`Corral`], one test's world — a fresh `CORRAL_ROOT` in a temp dir, helpers that
//!   run the binary with a time bound and parse its JSON, and a `Drop` that unmounts whatever is
//!   left under the root before removing it;
//! - [`process`]: running any command with a deadline and collected output;
//! - [`mounts`]: `/proc/self/mountinfo`, leak checks, and guards for overlay and tmpfs mounts;
//! - [`tarball`]: a deterministic tar writer, and raw headers for entries the `tar` crate refuses;
//! - [`fixtures`]: images built at test time from Debian's busybox-static, no network: a rootfs
//!   tarball and the same three-layer image as OCI and docker archives;
//! - [`containers`]: the busybox image containers run, `ps`/`inspect` parsed, a guard that
//!   removes a test's containers, and checks that a removed container left no cgroup, process
//!   or mount behind;
//! - [`networks`]: test networks on subnets of their own, `network inspect` parsed, a guard
//!   that removes a test's networks, and checks that a removed network left no link, nft rule
//!   or DNS server behind;
//! - [`netns`]: a network namespace playing the outside world, for NAT checks;
//! - [`hostile`]: tarballs that try to write outside the layer they are unpacked into;
//! - [`registry`]: Debian's `docker-registry` on loopback and a throttling TCP proxy in front;
//! - [`podman`]: podman with a private, throw-away store;
//! - [`podman_compose`]: podman-compose over podman on netavark, with a private store and
//!   network config, whose guard also removes what netavark leaves on the host;
//! - [`debian`]: a real Debian 12 disk (debootstrap: systemd, cloud-init, sshd), built once per
//!   machine and cached, for VM tests as a sysadmin runs them;
//! - [`engine`]: images with users, stop signals and volumes in their config, docker's
//!   `inspect` shape, `ps` rows, children killed on drop — for the engine's docker behaviour;
//! - [`files`]: walking trees, disk use and content searches used by assertions;
//! - [`admin`]: worlds, names, states and log polling for the commit and admin-verb tests;
//! - [`serve`]: a `corral serve` of a test's own, driven with the real `kubectl`;
//! - [`checks`]: pods guarded and inspected, host processes found by their command line, JSON
//!   as an array or one object per line, and podman on runc as the peer for `run` flags.
//!
//! Conventions every test follows:
//! - it needs root, and returns early after printing a loud `SKIPPED:` line when it is not root
//!   or a tool is missing ([`skip_unless_root`], [`skip_unless_tools`]) — a skip is never silent;
//! - everything it creates lives in a temp dir under `/var/tmp` whose name contains
//!   `corral-test`, owned by a guard whose `Drop` cleans up even when the test panics;
//! - tests of one binary run in parallel threads, so nothing is shared: temp dirs and ports are
//!   unique per test.

#![forbid(unsafe_code)]

pub mod admin;
pub mod build_corpus;
pub mod buildah;
pub mod checks;
pub mod containerd;
pub mod containers;
pub mod debian;
pub mod engine;
pub mod files;
pub mod fixtures;
pub mod hostile;
pub mod mounts;
pub mod netns;
pub mod networks;
pub mod podman;
pub mod podman_compose;
pub mod process;
pub mod registry;
pub mod runtime;
pub mod serve;
pub mod tarball;
pub mod vms;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use containers::{ContainerGuard, ContainerInfo, ListedContainer};
pub use mounts::{leak_check, OverlayMount, TmpfsMount};
pub use podman::Podman;
pub use registry::{Registry, ThrottleProxy};
pub use world::{Corral, ImageInfo, LayerInfo, ListedImage};

/// Where the test temp dirs go: `/var/tmp` is on disk (not a tmpfs) and survives nothing
/// interesting, so a leaked dir is easy to find by its `corral-test` prefix.
pub const TEMP_PARENT: &str = "/var/tmp";

/// Path of the `corral` binary under test.
///
/// `$CORRAL_BIN` if set; otherwise derived from the test executable, which cargo puts in
/// `target/<profile>/deps/`, next to which the binary is `target/<profile>/corral`.
///
/// # Panics
/// If the binary does not exist: build it first with `cargo build -p corral`.
pub fn corral_bin() -> PathBuf {
    let path = match std::env::var_os("CORRAL_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("test executable lives in target/<profile>/deps/");
            profile_dir.join("corral")
        }
    };
    assert!(
        path.is_file(),
        "corral binary not found at {}: build it first: cargo build -p corral \
         (or point CORRAL_BIN at it)",
        path.display()
    );
    path
}

/// The effective uid of this process, read from `/proc/self/status` (no `unsafe` needed).
pub fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .expect("Uid: line in /proc/self/status")
}

/// Prints `SKIPPED: <test>: <why>` to stderr, loud enough to be seen in `cargo test` output.
///
/// It writes to the stderr handle directly rather than with `eprintln!`: libtest captures the
/// print macros of passing tests and would hide the line; a skip must never be silent.
pub fn report_skip(test: &str, why: &str) {
    use std::io::Write;
    let line = format!("\n!!!!!!!! SKIPPED: {test}: {why} !!!!!!!!\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// True (after printing a loud `SKIPPED` line) when the test cannot run because we are not root.
///
/// Use as `if skip_unless_root("my_test") { return; }`.
pub fn skip_unless_root(test: &str) -> bool {
    if effective_uid() == 0 {
        false
    } else {
        report_skip(test, "needs root");
        true
    }
}

/// True (after printing a loud `SKIPPED` line) when we are not root or one of `tools` is not on
/// `PATH` (or, for an absolute path, does not exist).
pub fn skip_unless_tools(test: &str, tools: &[&str]) -> bool {
    if skip_unless_root(test) {
        return true;
    }
    for tool in tools {
        if find_tool(tool).is_none() {
            report_skip(test, &format!("{tool} not installed"));
            return true;
        }
    }
    false
}

/// Looks a program up on `PATH` (an absolute path is checked as is).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let candidate = Path::new(tool);
    if candidate.is_absolute() {
        return candidate.is_file().then(|| candidate.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// A fresh temp dir under [`TEMP_PARENT`] named `corral-test-<label>-XXXX`, removed on drop.
pub fn test_tempdir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("corral-test-{label}-"))
        .tempdir_in(TEMP_PARENT)
        .expect("create temp dir under /var/tmp")
}

/// A string unique to this process and call, for file names that must not collide between
/// parallel tests or runs (`<pid>x<counter>x<nanos>`).
pub fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}x{n}x{nanos}", std::process::id())
}

/// A name unique to this run, usable as a container, network, pod or DNS name:
/// `<prefix>-<token>`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", unique_token())
}

/// A command's standard output, lossily.
pub fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, lossily.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as `&str`, for command-line arguments; temp paths made by this harness are UTF-8.
pub fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display()))
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// `sha256:<hex>` of `data`, the form digests and diff ids take in manifests and configs.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}
