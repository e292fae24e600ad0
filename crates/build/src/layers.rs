//! A read-only view of a root filesystem made of unpacked layers (overlayfs's lower
//! directories, as corral-image keeps them), read without mounting anything: `COPY --from`
//! reads an earlier stage or an image through it, and `COPY` looks at what is already at its
//! destination. The build context is a view of one layer.
//!
//! Lookups follow overlayfs: the top layer first; a 0:0 character device is a whiteout that
//! hides the name below it; a directory with `trusted.overlay.opaque=y` hides the directories
//! below it; a non-directory on a path's way hides everything below it. Symbolic links on the
//! way are followed inside the view (an absolute target is from the view's root, `..` stops
//! at the root), never out of it: the layers are hostile input.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many symbolic links one lookup follows before giving up (Linux's limit).
const MAX_LINKS: usize = 40;

/// A stack of layer directories, the top one first.
#[derive(Debug, Clone)]
pub struct View {
    layers: Vec<PathBuf>,
}

/// One entry found in the view.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it is on the host (inside one layer).
    pub host: PathBuf,
    /// Its metadata (not followed).
    pub md: Metadata,
}

fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut [0u8; 1][..]).is_ok_and(|n| n == 1)
}

impl View {
    /// A view of `layers`, the top one first.
    pub fn new(layers: Vec<PathBuf>) -> Self {
        View { layers }
    }

    /// The layers, the top one first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Whether layer `i`'s copy of directory `dir` (components, already resolved) is where
    /// lookups in it go on: `Some(true)` it is there, `Some(false)` absent in this layer,
    /// `None` a whiteout or non-directory on its way hides the layers below.
    fn dir_state(&self, i: usize, dir: &[String]) -> Option<bool> {
        let mut p = self.layers[i].clone();
        for c in dir {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return None,
                Err(_) => return Some(false),
            }
        }
        Some(true)
    }

    /// The entry `name` in the (resolved) directory `dir`, not following it.
    fn entry(&self, dir: &[String], name: &str) -> Option<Entry> {
        for i in 0..self.layers.len() {
            match self.dir_state(i, dir) {
                None => return None,
                Some(false) => continue,
                Some(true) => {}
            }
            let mut d = self.layers[i].clone();
            d.extend(dir);
            let host = d.join(name);
            if let Ok(md) = fs::symlink_metadata(&host) {
                if is_whiteout(&md) {
                    return None;
                }
                return Some(Entry { host, md });
            }
            if is_opaque(&d) {
                return None;
            }
        }
        None
    }

    /// Resolves `path` (absolute or relative to the root) to its components, following
    /// symbolic links on the way, and the last one too when `follow_last`.
    fn resolve(&self, path: &str, follow_last: bool) -> io::Result<(Vec<String>, Option<Entry>)> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(str::to_owned)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut links = 0;
        let mut last = None;
        while let Some(c) = todo.pop() {
            if c == ".." {
                cur.pop();
                last = None;
                continue;
            }
            let Some(e) = self.entry(&cur, &c) else {
                if todo.is_empty() {
                    cur.push(c);
                    return Ok((cur, None));
                }
                return Err(io::Error::from(io::ErrorKind::NotFound));
            };
            let is_last = todo.is_empty();
            if e.md.file_type().is_symlink() && (!is_last || follow_last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = fs::read_link(&e.host)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    cur.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .rev()
                        .map(str::to_owned),
                );
                last = None;
                continue;
            }
            if !is_last && !e.md.is_dir() {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            cur.push(c);
            last = Some(e);
        }
        Ok((cur, last))
    }

    /// The entry at `path` (its symbolic links on the way followed; the last one followed
    /// only with `follow`), with its canonical path in the view; `None` when absent.
    pub fn lookup(&self, path: &str, follow: bool) -> io::Result<Option<(String, Entry)>> {
        match self.resolve(path, follow) {
            Ok((comps, Some(e))) => Ok(Some((comps.join("/"), e))),
            Ok((comps, None)) if comps.is_empty() => {
                Ok(self.root_entry().map(|e| (String::new(), e)))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn root_entry(&self) -> Option<Entry> {
        self.layers.iter().find_map(|l| {
            fs::symlink_metadata(l).ok().map(|md| Entry {
                host: l.clone(),
                md,
            })
        })
    }

    /// The names in the directory at canonical path `dir`, merged over the layers, sorted.
    pub fn read_dir(&self, dir: &str) -> io::Result<Vec<(String, Entry)>> {
        let comps: Vec<String> = dir
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for i in 0..self.layers.len() {
            match self.dir_state(i, &comps) {
                None => break,
                Some(false) => continue,
                Some(true) => {}
            }
            let mut d = self.layers[i].clone();
            d.extend(&comps);
            for ent in fs::read_dir(&d)? {
                let ent = ent?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if !seen.insert(name.clone()) {
                    continue;
                }
                let host = ent.path();
                let md = fs::symlink_metadata(&host)?;
                if is_whiteout(&md) {
                    continue;
                }
                out.push((name, Entry { host, md }));
            }
            if is_opaque(&d) {
                break;
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_layers_win_and_links_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let low = t.path().join("low");
        let up = t.path().join("up");
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::create_dir_all(up.join("etc")).unwrap();
        fs::write(low.join("etc/a"), "low").unwrap();
        fs::write(low.join("etc/b"), "low").unwrap();
        fs::write(up.join("etc/a"), "up").unwrap();
        // A link pointing out of the view resolves inside it.
        std::os::unix::fs::symlink("/etc", up.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../etc/b", up.join("rel")).unwrap();
        let v = View::new(vec![up.clone(), low.clone()]);
        let (_, a) = v.lookup("/etc/a", true).unwrap().unwrap();
        assert_eq!(fs::read_to_string(a.host).unwrap(), "up");
        let (canon, b) = v.lookup("link/b", true).unwrap().unwrap();
        assert_eq!(canon, "etc/b");
        assert!(b.host.starts_with(&low));
        let (canon, _) = v.lookup("rel", true).unwrap().unwrap();
        assert_eq!(canon, "etc/b");
        let names: Vec<String> = v
            .read_dir("etc")
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(v.lookup("etc/none", true).unwrap().is_none());
        assert!(v.lookup("etc/a/x", true).unwrap().is_none());
    }
}
