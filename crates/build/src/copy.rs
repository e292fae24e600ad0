//! `COPY` and `ADD` (of local files): the sources resolved and listed first, hashed for the
//! cache key, and only on a miss written as a layer.
//!
//! Docker's rules: a directory source copies its contents; a file goes to `DEST/NAME` when
//! `DEST` ends with `/` or is a directory already, else to `DEST` itself; several sources need
//! a `DEST` ending with `/`. Files from the build context are owned by 0:0, files from a stage
//! or image (`--from`) keep their owners, and `--chown`/`--chmod` override both. Parent
//! directories that exist keep what they are (the layer carries them unchanged); missing ones
//! are made 0755. A relative `DEST` is under `WORKDIR`; symbolic links on the way to `DEST`
//! are followed inside the image, as Docker follows them. Hard links among the copied files
//! stay hard links. `ADD` unpacks a local tar archive (plain, gzip or zstd) into `DEST`.
//!
//! The hash covers each entry's path, type, mode, owner, link target and content — never its
//! modification time, so a touched file still hits the cache.
//!
//! The context is hostile only to itself (the user's own files), but its symbolic links must
//! not reach out of it: a source that is a link pointing outside the context is refused, and
//! links inside copied directories are copied as links, never followed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::ignore::{self, Ignore};
use crate::layers::View;
use crate::BuildError;

/// Where the sources come from.
pub enum Origin<'a> {
    /// The build context: a directory and its `.dockerignore`.
    Context {
        /// The context directory.
        dir: &'a Path,
        /// Its `.dockerignore`.
        ignore: &'a Ignore,
    },
    /// An earlier stage or an image (`--from`).
    Image(View),
}

/// One source, expanded.
#[derive(Debug, Clone)]
pub enum Src {
    /// A path or glob in the origin.
    Path(String),
    /// A file fetched from a URL (`ADD`): lands with mode 0600.
    Fetched(crate::fetch::Fetched),
    /// A heredoc: a file `name` with `body`.
    Inline {
        /// Its name.
        name: String,
        /// Its content.
        body: String,
    },
}

/// What to copy where.
#[derive(Debug, Clone)]
pub struct CopySpec {
    /// The sources.
    pub sources: Vec<Src>,
    /// The destination: absolute, with its trailing `/` when written so.
    pub dest: String,
    /// `--chown`, resolved.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// `ADD`: unpack local archives.
    pub extract: bool,
    /// The instruction, for messages (`COPY`, `ADD`).
    pub keyword: &'static str,
}

#[derive(Debug, Clone)]
enum Content {
    Dir,
    File(PathBuf, u64),
    Bytes(Vec<u8>),
    Symlink(String),
    Hardlink(String),
    /// A local archive unpacked under the entry's path.
    Archive(PathBuf),
    Fifo,
}

#[derive(Debug, Clone)]
struct Item {
    path: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    content: Content,
}

/// The listed copy: what the layer will hold, and its hash.
#[derive(Debug)]
pub struct Planned {
    items: Vec<Item>,
    /// The content hash (hex) of everything copied.
    pub hash: String,
}

fn err(keyword: &str, msg: impl std::fmt::Display) -> BuildError {
    BuildError::Copy(format!("{keyword}: {msg}"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Joins `rel` under `dir` (both without leading `/`).
fn join(dir: &str, rel: &str) -> String {
    match (dir.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_owned(),
        (_, true) => dir.to_owned(),
        _ => format!("{dir}/{rel}"),
    }
}

/// The canonical path (no leading `/`) of `path` in `view`: the links on the way followed,
/// the missing rest appended as written.
pub fn canonical(view: &View, path: &str) -> Result<String, BuildError> {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut cur = String::new();
    for (i, c) in comps.iter().enumerate() {
        let next = join(&cur, c);
        match view
            .lookup(&next, true)
            .map_err(|e| BuildError::Copy(format!("{next}: {e}")))?
        {
            Some((canon, _)) => cur = canon,
            None => {
                let rest: Vec<&str> = comps[i..].to_vec();
                return Ok(join(&cur, &ignore::clean(&rest.join("/"))));
            }
        }
    }
    Ok(cur)
}

struct Lister<'a> {
    origin: &'a Origin<'a>,
    view: View,
    spec: &'a CopySpec,
    items: Vec<Item>,
    /// (dev, ino) of files already listed, to keep hard links.
    inodes: HashMap<(u64, u64), String>,
}

impl Lister<'_> {
    fn excluded(&self, rel: &str) -> bool {
        match self.origin {
            Origin::Context { ignore, .. } => !ignore.is_empty() && ignore.excluded(rel),
            Origin::Image(_) => false,
        }
    }

    fn owner(&self, md: &fs::Metadata) -> (u32, u32) {
        match (self.spec.chown, self.origin) {
            (Some(o), _) => o,
            (None, Origin::Context { .. }) => (0, 0),
            (None, Origin::Image(_)) => (md.uid(), md.gid()),
        }
    }

    fn mode(&self, md: &fs::Metadata) -> u32 {
        match self.spec.chmod {
            Some(m) if !md.file_type().is_symlink() => m,
            _ => md.mode() & 0o7777,
        }
    }

    /// Lists `src_rel` (canonical in the origin, an existing entry) as `dst` in the image.
    fn add(
        &mut self,
        src_rel: &str,
        host: &Path,
        md: &fs::Metadata,
        dst: &str,
    ) -> Result<bool, BuildError> {
        let ft = md.file_type();
        let (uid, gid) = self.owner(md);
        let mut item = Item {
            path: dst.to_owned(),
            mode: self.mode(md),
            uid,
            gid,
            mtime: md.mtime().max(0) as u64,
            content: Content::Dir,
        };
        if ft.is_dir() {
            let at = self.items.len();
            self.items.push(item);
            let mut any = false;
            let entries = self
                .view
                .read_dir(src_rel)
                .map_err(|e| err(self.spec.keyword, format!("reading {src_rel}: {e}")))?;
            for (name, e) in entries {
                let rel = join(src_rel, &name);
                let excluded = self.excluded(&rel);
                if excluded && !self.may_reinclude(&e.md) {
                    continue;
                }
                let added = self.add(&rel, &e.host, &e.md, &join(dst, &name))?;
                any |= added;
            }
            // An excluded directory is there only for what an exception keeps in it.
            if self.excluded(src_rel) && !any {
                self.items.truncate(at);
                return Ok(false);
            }
            return Ok(true);
        }
        if self.excluded(src_rel) {
            return Ok(false);
        }
        item.content = if ft.is_symlink() {
            let t = fs::read_link(host)
                .map_err(|e| err(self.spec.keyword, format!("{src_rel}: {e}")))?;
            Content::Symlink(t.to_string_lossy().into_owned())
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = self.inodes.get(&(md.dev(), md.ino())) {
                    item.content = Content::Hardlink(first.clone());
                    self.items.push(item);
                    return Ok(true);
                }
                self.inodes.insert((md.dev(), md.ino()), dst.to_owned());
            }
            Content::File(host.to_owned(), md.len())
        } else if ft.is_fifo() && matches!(self.origin, Origin::Image(_)) {
            Content::Fifo
        } else {
            let what = if ft.is_socket() {
                "a socket"
            } else if ft.is_fifo() {
                "a named pipe"
            } else {
                "a device node"
            };
            return Err(err(
                self.spec.keyword,
                format!("{src_rel} is {what}, which an image layer cannot hold; leave it out with .dockerignore"),
            ));
        };
        self.items.push(item);
        Ok(true)
    }

    fn may_reinclude(&self, md: &fs::Metadata) -> bool {
        md.is_dir()
            && matches!(self.origin, Origin::Context { ignore, .. } if ignore.has_exceptions())
    }

    /// The origin's paths that `pattern` names (a glob matches several, sorted).
    fn expand(&self, pattern: &str) -> Result<Vec<String>, BuildError> {
        let clean = ignore::clean(pattern);
        if clean == ".." || clean.starts_with("../") {
            return Err(err(
                self.spec.keyword,
                format!("{pattern} is outside the build context (sources are relative to it, and cannot leave it)"),
            ));
        }
        if !ignore::is_glob(&clean) {
            return Ok(vec![clean]);
        }
        let mut found = vec![String::new()];
        for comp in clean.split('/') {
            let mut next = Vec::new();
            for dir in &found {
                if !ignore::is_glob(comp) {
                    next.push(join(dir, comp));
                    continue;
                }
                let Ok(Some((canon, e))) = self.view.lookup(dir, true) else {
                    continue;
                };
                if !e.md.is_dir() {
                    continue;
                }
                for (name, _) in self.view.read_dir(&canon).unwrap_or_default() {
                    if ignore::matches(comp, &name) {
                        next.push(join(dir, &name));
                    }
                }
            }
            found = next;
        }
        found.retain(|p| !self.excluded(p));
        found.sort();
        Ok(found)
    }

    /// Checks a context source that is itself a symbolic link: its target must stay inside.
    fn check_link(&self, rel: &str) -> Result<(), BuildError> {
        let Origin::Context { dir, .. } = self.origin else {
            return Ok(());
        };
        let mut cur = rel.to_owned();
        for _ in 0..40 {
            let host = dir.join(&cur);
            let Ok(md) = fs::symlink_metadata(&host) else {
                return Ok(());
            };
            if !md.file_type().is_symlink() {
                return Ok(());
            }
            let t =
                fs::read_link(&host).map_err(|e| err(self.spec.keyword, format!("{rel}: {e}")))?;
            let t = t.to_string_lossy();
            let parent = cur.rsplit_once('/').map_or("", |(p, _)| p);
            let joined = ignore::clean(&join(parent, &t));
            if t.starts_with('/') || joined == ".." || joined.starts_with("../") {
                return Err(err(
                    self.spec.keyword,
                    format!("{rel} is a symbolic link to {t}, outside the build context"),
                ));
            }
            cur = joined;
        }
        Ok(())
    }
}

/// Lists what a `COPY`/`ADD` copies, from `origin` onto the image seen through `dest_view`.
pub fn plan(origin: &Origin<'_>, spec: &CopySpec, dest_view: &View) -> Result<Planned, BuildError> {
    let view = match origin {
        Origin::Context { dir, .. } => View::new(vec![dir.to_path_buf()]),
        Origin::Image(v) => v.clone(),
    };
    let mut l = Lister {
        origin,
        view,
        spec,
        items: Vec::new(),
        inodes: HashMap::new(),
    };
    let dest_dir_form = spec.dest.ends_with('/');
    let dest = canonical(dest_view, &spec.dest)?;
    let dest_is_dir = dest_dir_form
        || dest_view
            .lookup(&dest, true)
            .ok()
            .flatten()
            .is_some_and(|(_, e)| e.md.is_dir());
    // Every source first: the count decides what DEST means.
    let mut resolved: Vec<(String, Option<(String, crate::layers::Entry)>)> = Vec::new();
    let mut inline = Vec::new();
    let mut fetched: Vec<crate::fetch::Fetched> = Vec::new();
    for s in &spec.sources {
        match s {
            Src::Inline { name, body } => inline.push((name.clone(), body.clone())),
            Src::Fetched(f) => fetched.push(f.clone()),
            Src::Path(p) => {
                let glob = ignore::is_glob(p);
                let paths = l.expand(p)?;
                if paths.is_empty() {
                    return Err(err(spec.keyword, format!("no source files match {p:?}")));
                }
                for rel in paths {
                    l.check_link(&rel)?;
                    let found = if l.excluded(&rel) {
                        None
                    } else {
                        l.view
                            .lookup(&rel, true)
                            .map_err(|e| err(spec.keyword, format!("{rel}: {e}")))?
                    };
                    if found.is_none() && !glob {
                        let why = match origin {
                            Origin::Context { ignore, .. } if ignore.excluded(&rel) => {
                                " (.dockerignore leaves it out)"
                            }
                            Origin::Context { .. } => " in the build context",
                            Origin::Image(_) => " in the stage or image it copies from",
                        };
                        return Err(err(spec.keyword, format!("{p}: not found{why}")));
                    }
                    resolved.push((rel, found));
                }
            }
        }
    }
    let count = resolved.len() + inline.len() + fetched.len();
    if count > 1 && !dest_dir_form && !dest_is_dir {
        return Err(err(
            spec.keyword,
            format!(
                "with more than one source file, the destination must be a directory and end with a / (got {})",
                spec.dest
            ),
        ));
    }
    for (_, found) in resolved {
        let Some((canon, e)) = found else { continue };
        let name = canon.rsplit('/').next().unwrap_or(&canon).to_owned();
        if e.md.is_dir() {
            l.add(&canon, &e.host, &e.md, &dest)?;
        } else if spec.extract && e.md.is_file() && archive_kind(&e.host).is_some() {
            let (uid, gid) = spec.chown.unwrap_or((0, 0));
            l.items.push(Item {
                path: dest.clone(),
                mode: 0o755,
                uid,
                gid,
                mtime: now(),
                content: Content::Archive(e.host.clone()),
            });
        } else {
            let to = if dest_is_dir {
                join(&dest, &name)
            } else {
                dest.clone()
            };
            l.add(&canon, &e.host, &e.md, &to)?;
        }
    }
    for (name, body) in inline {
        let to = if dest_is_dir || count > 1 {
            join(&dest, &name)
        } else {
            dest.clone()
        };
        let (uid, gid) = spec.chown.unwrap_or((0, 0));
        l.items.push(Item {
            path: to,
            mode: spec.chmod.unwrap_or(0o644),
            uid,
            gid,
            mtime: now(),
            content: Content::Bytes(body.into_bytes()),
        });
    }
    for f in fetched {
        let to = if dest_is_dir || count > 1 {
            join(&dest, &f.name)
        } else {
            dest.clone()
        };
        let (uid, gid) = spec.chown.unwrap_or((0, 0));
        let size = fs::metadata(&f.path)
            .map_err(|e| err(spec.keyword, format!("{}: {e}", f.path.display())))?
            .len();
        l.items.push(Item {
            path: to,
            mode: spec.chmod.unwrap_or(0o600),
            uid,
            gid,
            mtime: now(),
            content: Content::File(f.path.clone(), size),
        });
    }
    let mut items = parents(dest_view, &l.items, spec)?;
    items.append(&mut l.items);
    let hash = hash(&items)?;
    Ok(Planned { items, hash })
}

/// A directory at `spec.dest` and the parents it needs (`WORKDIR`'s).
pub fn plan_dirs(spec: &CopySpec, dest_view: &View) -> Result<Planned, BuildError> {
    let dest = canonical(dest_view, &spec.dest)?;
    let (uid, gid) = spec.chown.unwrap_or((0, 0));
    let item = Item {
        path: dest,
        mode: 0o755,
        uid,
        gid,
        mtime: now(),
        content: Content::Dir,
    };
    let mut items = parents(dest_view, std::slice::from_ref(&item), spec)?;
    items.push(item);
    let hash = hash(&items)?;
    Ok(Planned { items, hash })
}

/// The parent directories of everything listed that the list itself does not hold: as they
/// are in the image when they exist, else new (0755, `--chown`'s owner or root).
fn parents(view: &View, items: &[Item], spec: &CopySpec) -> Result<Vec<Item>, BuildError> {
    let listed: std::collections::HashSet<&str> = items.iter().map(|i| i.path.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for i in items {
        let mut prefix = String::new();
        let comps: Vec<&str> = i.path.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            prefix = join(&prefix, c);
            if listed.contains(prefix.as_str()) || !seen.insert(prefix.clone()) {
                continue;
            }
            let existing = view
                .lookup(&prefix, false)
                .map_err(|e| BuildError::Copy(format!("{prefix}: {e}")))?;
            out.push(match existing {
                Some((_, e)) if e.md.is_dir() => Item {
                    path: prefix.clone(),
                    mode: e.md.mode() & 0o7777,
                    uid: e.md.uid(),
                    gid: e.md.gid(),
                    mtime: e.md.mtime().max(0) as u64,
                    content: Content::Dir,
                },
                _ => {
                    let (uid, gid) = spec.chown.unwrap_or((0, 0));
                    Item {
                        path: prefix.clone(),
                        mode: 0o755,
                        uid,
                        gid,
                        mtime: now(),
                        content: Content::Dir,
                    }
                }
            });
        }
    }
    Ok(out)
}

fn hash_file(path: &Path, h: &mut Sha256) -> io::Result<()> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

fn hash(items: &[Item]) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    for i in items {
        let (kind, extra) = match &i.content {
            Content::Dir => ("dir", String::new()),
            Content::File(..) => ("file", String::new()),
            Content::Bytes(_) => ("file", String::new()),
            Content::Symlink(t) => ("symlink", t.clone()),
            Content::Hardlink(t) => ("hardlink", t.clone()),
            Content::Archive(_) => ("archive", String::new()),
            Content::Fifo => ("fifo", String::new()),
        };
        h.update(
            format!(
                "{kind}\0{}\0{:o}\0{}\0{}\0{extra}\0",
                i.path, i.mode, i.uid, i.gid
            )
            .as_bytes(),
        );
        match &i.content {
            Content::File(p, _) | Content::Archive(p) => hash_file(p, &mut h)
                .map_err(|e| BuildError::Copy(format!("reading {}: {e}", p.display())))?,
            Content::Bytes(b) => h.update(b),
            _ => {}
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// The kind of local archive `ADD` unpacks, by its first bytes.
fn archive_kind(path: &Path) -> Option<&'static str> {
    let mut head = [0u8; 512];
    let mut f = File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("zstd")
    } else if n >= 262 && &head[257..262] == b"ustar" {
        Some("tar")
    } else {
        None
    }
}

fn header(i: &Item, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(i.mode);
    h.set_uid(i.uid.into());
    h.set_gid(i.gid.into());
    h.set_mtime(i.mtime);
    h.set_size(size);
    h
}

/// Writes the listed copy as an uncompressed layer tar.
pub fn write<W: Write>(planned: &Planned, out: W) -> Result<(), BuildError> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    let io = |p: &str| {
        let p = p.to_owned();
        move |e: io::Error| BuildError::Copy(format!("writing {p} into the layer: {e}"))
    };
    for i in &planned.items {
        match &i.content {
            // The root itself keeps what it is (`COPY dir /`).
            Content::Dir if i.path.is_empty() => {}
            Content::Dir => {
                let mut h = header(i, tar::EntryType::Directory, 0);
                tar.append_data(&mut h, format!("{}/", i.path), io::empty())
                    .map_err(io(&i.path))?;
            }
            Content::File(p, size) => {
                let f = File::open(p).map_err(io(&i.path))?;
                let mut h = header(i, tar::EntryType::Regular, *size);
                tar.append_data(&mut h, &i.path, f.take(*size))
                    .map_err(io(&i.path))?;
            }
            Content::Bytes(b) => {
                let mut h = header(i, tar::EntryType::Regular, b.len() as u64);
                tar.append_data(&mut h, &i.path, b.as_slice())
                    .map_err(io(&i.path))?;
            }
            Content::Symlink(t) => {
                let mut h = header(i, tar::EntryType::Symlink, 0);
                tar.append_link(&mut h, &i.path, t).map_err(io(&i.path))?;
            }
            Content::Hardlink(t) => {
                let mut h = header(i, tar::EntryType::Link, 0);
                tar.append_link(&mut h, &i.path, t).map_err(io(&i.path))?;
            }
            Content::Fifo => {
                let mut h = header(i, tar::EntryType::Fifo, 0);
                tar.append_data(&mut h, &i.path, io::empty())
                    .map_err(io(&i.path))?;
            }
            Content::Archive(p) => {
                let mut h = header(i, tar::EntryType::Directory, 0);
                tar.append_data(&mut h, format!("{}/", i.path), io::empty())
                    .map_err(io(&i.path))?;
                unpack_into(&mut tar, p, &i.path)?;
            }
        }
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io("the layer"))?;
    Ok(())
}

/// Copies the entries of a local archive into `tar`, under `dir`. Names are cleaned and kept
/// under `dir`; the layer's own unpacking refuses anything that would still escape.
fn unpack_into<W: Write>(
    tar: &mut tar::Builder<W>,
    archive: &Path,
    dir: &str,
) -> Result<(), BuildError> {
    let f = File::open(archive)
        .map_err(|e| BuildError::Copy(format!("ADD {}: {e}", archive.display())))?;
    let (_, reader) = corral_image::compression::decompress(io::BufReader::new(f))
        .map_err(|e| BuildError::Copy(format!("ADD {}: {e}", archive.display())))?;
    let bad = |e: io::Error| BuildError::Copy(format!("ADD {}: {e}", archive.display()));
    let mut a = tar::Archive::new(reader);
    for entry in a.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path_bytes().into_owned();
        let rel = ignore::clean(&String::from_utf8_lossy(&raw));
        if rel.is_empty() || rel == ".." || rel.starts_with("../") {
            continue;
        }
        let path = join(dir, &rel);
        let mut h = entry.header().clone();
        match h.entry_type() {
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| ignore::clean(&String::from_utf8_lossy(&t)))
                    .unwrap_or_default();
                tar.append_link(&mut h, &path, join(dir, &target))
                    .map_err(bad)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                tar.append_link(&mut h, &path, target).map_err(bad)?;
            }
            tar::EntryType::Directory => {
                tar.append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(bad)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                tar.append_data(&mut h, &path, (&mut entry).take(size))
                    .map_err(bad)?;
            }
            // Devices, fifos and extended headers of an archive are not carried.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("src/sub")).unwrap();
        fs::write(t.path().join("src/a.txt"), "a").unwrap();
        fs::write(t.path().join("src/sub/b.txt"), "b").unwrap();
        fs::write(t.path().join("top.md"), "top").unwrap();
        t
    }

    fn spec(sources: &[&str], dest: &str) -> CopySpec {
        CopySpec {
            sources: sources.iter().map(|s| Src::Path(s.to_string())).collect(),
            dest: dest.into(),
            chown: None,
            chmod: None,
            extract: false,
            keyword: "COPY",
        }
    }

    fn paths(p: &Planned) -> Vec<String> {
        p.items.iter().map(|i| i.path.clone()).collect()
    }

    #[test]
    fn directory_contents_files_and_globs_land_as_docker_puts_them() {
        let c = ctx();
        let empty = tempfile::tempdir().unwrap();
        let dv = View::new(vec![empty.path().to_owned()]);
        let ig = Ignore::default();
        let o = Origin::Context {
            dir: c.path(),
            ignore: &ig,
        };
        let p = plan(&o, &spec(&["src"], "/app"), &dv).unwrap();
        assert_eq!(
            paths(&p),
            vec!["app", "app/a.txt", "app/sub", "app/sub/b.txt"]
        );
        let p = plan(&o, &spec(&["top.md"], "/x/y"), &dv).unwrap();
        assert_eq!(paths(&p), vec!["x", "x/y"]);
        let p = plan(&o, &spec(&["top.md"], "/x/"), &dv).unwrap();
        assert_eq!(paths(&p), vec!["x", "x/top.md"]);
        let p = plan(&o, &spec(&["src/*.txt", "top.md"], "/d/"), &dv).unwrap();
        assert_eq!(paths(&p), vec!["d", "d/a.txt", "d/top.md"]);
        assert!(plan(&o, &spec(&["src/a.txt", "top.md"], "/d"), &dv).is_err());
        assert!(plan(&o, &spec(&["../etc"], "/d/"), &dv).is_err());
        assert!(plan(&o, &spec(&["nothing*"], "/d/"), &dv).is_err());
        assert!(plan(&o, &spec(&["missing"], "/d/"), &dv).is_err());
    }

    #[test]
    fn hash_ignores_mtime_but_not_content_or_mode() {
        let c = ctx();
        let empty = tempfile::tempdir().unwrap();
        let dv = View::new(vec![empty.path().to_owned()]);
        let ig = Ignore::default();
        let o = Origin::Context {
            dir: c.path(),
            ignore: &ig,
        };
        let h1 = plan(&o, &spec(&["src"], "/app/"), &dv).unwrap().hash;
        let f = File::options()
            .write(true)
            .open(c.path().join("src/a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        let h2 = plan(&o, &spec(&["src"], "/app/"), &dv).unwrap().hash;
        assert_eq!(h1, h2);
        fs::write(c.path().join("src/a.txt"), "changed").unwrap();
        let h3 = plan(&o, &spec(&["src"], "/app/"), &dv).unwrap().hash;
        assert_ne!(h1, h3);
        let mut s = spec(&["src"], "/app/");
        s.chmod = Some(0o700);
        assert_ne!(plan(&o, &s, &dv).unwrap().hash, h3);
    }

    #[test]
    fn dockerignore_and_escaping_links_are_honoured() {
        let c = ctx();
        std::os::unix::fs::symlink("/etc/passwd", c.path().join("out")).unwrap();
        std::os::unix::fs::symlink("src/a.txt", c.path().join("in")).unwrap();
        let empty = tempfile::tempdir().unwrap();
        let dv = View::new(vec![empty.path().to_owned()]);
        let ig = Ignore::parse("src/sub\n*.md\n");
        let o = Origin::Context {
            dir: c.path(),
            ignore: &ig,
        };
        let p = plan(&o, &spec(&["."], "/app/"), &dv).unwrap();
        assert_eq!(
            paths(&p),
            vec!["app", "app/in", "app/out", "app/src", "app/src/a.txt"]
        );
        let e = plan(&o, &spec(&["out"], "/x"), &dv).unwrap_err();
        assert!(e.to_string().contains("outside the build context"), "{e}");
        let p = plan(&o, &spec(&["in"], "/x"), &dv).unwrap();
        assert!(matches!(p.items.last().unwrap().content, Content::File(..)));
        let e = plan(&o, &spec(&["top.md"], "/x"), &dv).unwrap_err();
        assert!(e.to_string().contains(".dockerignore"), "{e}");
    }
}
