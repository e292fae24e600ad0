//! File-tree helpers for assertions: walking without following symlinks, disk use, finding
//! files by content, and printing a tree for a failure message.

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every entry below `root` (not `root` itself), depth first, with its `lstat` metadata.
/// Symlinks are listed, never followed. A missing `root` gives an empty list.
pub fn walk(root: &Path) -> Vec<(PathBuf, Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push((path, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Regular files below `root`.
pub fn regular_files(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|(_, m)| m.is_file())
        .map(|(p, _)| p)
        .collect()
}

/// Bytes used by the regular files below `root`, each inode counted once (hard links shared
/// between unpacked layers and blobs must not count twice).
pub fn disk_use(root: &Path) -> u64 {
    let mut seen = HashSet::new();
    walk(root)
        .into_iter()
        .filter(|(_, m)| m.is_file() && seen.insert((m.dev(), m.ino())))
        .map(|(_, m)| m.len())
        .sum()
}

/// Regular files below `root` whose SHA-256 (hex) is one of `hexes`.
pub fn files_with_sha256(root: &Path, hexes: &[String]) -> Vec<PathBuf> {
    regular_files(root)
        .into_iter()
        .filter(|p| {
            fs::read(p)
                .map(|data| hexes.contains(&crate::sha256_hex(&data)))
                .unwrap_or(false)
        })
        .collect()
}

/// Regular files below `root` whose content is exactly `content`.
pub fn files_with_content(root: &Path, content: &[u8]) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|(p, m)| {
            m.is_file()
                && m.len() == content.len() as u64
                && fs::read(p).map(|d| d == content).unwrap_or(false)
        })
        .map(|(p, _)| p)
        .collect()
}

/// A listing of `root` for assertion messages: one line per entry with its type, size and
/// path relative to `root`.
pub fn tree(root: &Path) -> String {
    let mut out = String::new();
    for (path, meta) in walk(root) {
        let kind = if meta.is_dir() {
            'd'
        } else if meta.is_symlink() {
            'l'
        } else if meta.is_file() {
            '-'
        } else {
            '?'
        };
        let rel = path.strip_prefix(root).unwrap_or(&path);
        out.push_str(&format!("{kind} {:>10} {}\n", meta.len(), rel.display()));
    }
    if out.is_empty() {
        out.push_str("(empty)\n");
    }
    out
}

/// Names in a directory, sorted; panics if it cannot be read.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
