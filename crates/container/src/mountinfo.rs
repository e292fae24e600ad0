//! This process's mount table (`/proc/self/mountinfo`): which paths are mount points, and
//! taking off what is mounted under a tree before the tree is deleted — a recursive delete
//! crosses into a mounted filesystem (a bind of a host directory, a volume's NFS export) and
//! deletes its files.

use std::io;
use std::path::{Path, PathBuf};

/// The mount points, in the table's order (parents before what is mounted on them), with
/// their octal escapes (`\040` for a space ...) decoded. Empty if the table cannot be read.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect())
}

/// Whether `path` (made canonical) is a mount point. True when the table cannot be read,
/// so that nobody deletes through it.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    mount_points().map_or(true, |m| m.contains(&path))
}

/// Detaches every mount at or under `dir` (deepest first); an error if one stays, so that
/// the caller does not delete through it.
pub fn unmount_under(dir: &Path) -> io::Result<()> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(());
    };
    for _ in 0..16 {
        let under: Vec<PathBuf> = mount_points()?
            .into_iter()
            .filter(|p| p.starts_with(&dir))
            .collect();
        if under.is_empty() {
            return Ok(());
        }
        for p in under.iter().rev() {
            let _ = rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!(
            "{} still has filesystems mounted under it: unmount them (umount -l)",
            dir.display()
        ),
    ))
}

fn unescape(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_mount_points_are_found() {
        assert_eq!(unescape("/a\\040b/c\\134d"), "/a b/c\\d");
        assert_eq!(unescape("/plain\\04"), "/plain\\04");
        assert!(is_mount_point(Path::new("/proc")));
        assert!(!is_mount_point(Path::new("/proc/self")));
    }

    #[test]
    fn a_bind_under_a_tree_is_taken_off_before_it_is_deleted() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED a_bind_under_a_tree_is_taken_off_before_it_is_deleted: needs root to mount");
            return;
        }
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("keep"), b"x").unwrap();
        let tree = tempfile::tempdir().unwrap();
        let at = tree.path().join("a/b");
        std::fs::create_dir_all(&at).unwrap();
        rustix::mount::mount_bind(host.path(), &at).unwrap();
        assert!(is_mount_point(&at));
        unmount_under(tree.path()).unwrap();
        assert!(!is_mount_point(&at));
        crate::staging::remove_any(tree.path()).unwrap();
        assert!(
            host.path().join("keep").exists(),
            "the bound directory's file survives"
        );
    }
}
