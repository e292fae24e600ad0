//! Mounts: reading `/proc/self/mountinfo`, finding what is left mounted under a path, and
//! guards that unmount what a test mounted, even when it panics.
//!
//! Mounting and unmounting go through util-linux's `mount`/`umount` programs, so that no
//! `unsafe` syscall wrapper is needed here (the workspace forbids `unsafe_code`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{describe, run_bounded};

const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// One line of `/proc/self/mountinfo`, the fields tests care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (field 5), octal escapes decoded.
    pub mount_point: PathBuf,
    /// Filesystem type (the first field after the ` - ` separator).
    pub fstype: String,
    /// Mount source (after the type), e.g. `overlay` or `tmpfs`.
    pub source: String,
}

/// Every mount this process sees, in mount order.
pub fn mount_table() -> Vec<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point options [optional...] - fstype source super_opts
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fstype = right.next()?.to_owned();
    let source = unescape(right.next().unwrap_or(""));
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype,
        source,
    })
}

/// Decodes the `\ooo` octal escapes the kernel uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, b| acc.wrapping_mul(8) + (b - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at `path` or below it (`path` itself included), deepest first — the order in
/// which they can be unmounted.
pub fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mount_table()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| mp.starts_with(path))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// The leak check run at the end of tests: mounts strictly below `root` (the root itself is
/// excluded, since a test may have mounted a tmpfs there on purpose). Empty means no leak.
pub fn leak_check(root: &Path) -> Vec<PathBuf> {
    mounts_under(root)
        .into_iter()
        .filter(|mp| mp != root)
        .collect()
}

/// Unmounts one mount point; falls back to a lazy unmount when it is busy. Errors are returned,
/// not raised, so that `Drop` impls can use it.
pub fn unmount(path: &Path) -> Result<(), String> {
    let out = run_bounded(Command::new("umount").arg(path), None, MOUNT_TIMEOUT);
    if out.status.success() {
        return Ok(());
    }
    let lazy = run_bounded(
        Command::new("umount").arg("--lazy").arg(path),
        None,
        MOUNT_TIMEOUT,
    );
    if lazy.status.success() {
        Ok(())
    } else {
        Err(format!(
            "umount {}: {}\nlazy: {}",
            path.display(),
            describe(&out),
            describe(&lazy)
        ))
    }
}

/// Unmounts everything at or below `path`, deepest first (each mount point as many times as it
/// is stacked). Returns the failures.
pub fn unmount_all_under(path: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    // Stacked mounts appear once per layer: loop until none is left or no progress is made.
    for _ in 0..16 {
        let found = mounts_under(path);
        if found.is_empty() {
            break;
        }
        for mp in found {
            if let Err(e) = unmount(&mp) {
                errors.push(e);
            }
        }
        if !errors.is_empty() {
            break;
        }
    }
    errors
}

fn mount(args: &[&str]) {
    let out = run_bounded(Command::new("mount").args(args), None, MOUNT_TIMEOUT);
    assert!(
        out.status.success(),
        "mount {args:?} failed: {}",
        describe(&out)
    );
}

/// A read-only overlay of image layers, unmounted on drop.
pub struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    /// Mounts the layers, given bottom layer first (the order `corral image inspect` lists
    /// them), on `target` (created if missing). overlayfs wants the top layer first in
    /// `lowerdir`, so the list is reversed here.
    ///
    /// # Panics
    /// If the mount fails.
    pub fn new(layers_bottom_first: &[PathBuf], target: &Path) -> Self {
        assert!(!layers_bottom_first.is_empty(), "overlay needs a layer");
        std::fs::create_dir_all(target).expect("create overlay target");
        let lower: Vec<&str> = layers_bottom_first
            .iter()
            .rev()
            .map(|p| crate::path_str(p))
            .collect();
        let options = format!("ro,lowerdir={}", lower.join(":"));
        mount(&[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &options,
            crate::path_str(target),
        ]);
        OverlayMount {
            target: target.to_path_buf(),
        }
    }

    /// Where the merged view is.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.target) {
            eprintln!("warning: {e}");
        }
    }
}

/// A size-limited tmpfs, unmounted on drop.
pub struct TmpfsMount {
    target: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `8m`) on `target`, created if
    /// missing.
    ///
    /// # Panics
    /// If the mount fails.
    pub fn new(target: &Path, size: &str) -> Self {
        std::fs::create_dir_all(target).expect("create tmpfs target");
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
            crate::path_str(target),
        ]);
        TmpfsMount {
            target: target.to_path_buf(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Anything corral left mounted inside must go first, or the tmpfs stays busy.
        for e in unmount_all_under(&self.target) {
            eprintln!("warning: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_with_escapes() {
        let line =
            "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - overlay overlay rw,lowerdir=/a";
        let entry = parse_mountinfo_line(line).unwrap();
        assert_eq!(entry.mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(entry.fstype, "overlay");
        assert_eq!(entry.source, "overlay");
    }
}
