//! cgroups, v1 and v2, detected at run time; a thin layer of corral's own (measured: a
//! container needs a handful of file writes, so no library is worth its weight on the start
//! path).
//!
//! v1 (including the hybrid layout, where `/sys/fs/cgroup` is a tmpfs of v1 hierarchies and a
//! cgroup2 mount at `unified/` holds no controller that matters here): one directory per
//! controller, `/sys/fs/cgroup/<controller>/corral/<id>`. v2: one directory,
//! `/sys/fs/cgroup/corral/<id>`, with the controllers enabled in `corral/cgroup.subtree_control`.
//! Every path is taken relative to a root given by the caller, so tests can point it at a
//! temporary directory (youki's `get_cgroup_setup_with_root`).
//!
//! One file per controller behind [`CgroupController`].

mod blkio;
mod cpu;
mod cpuset;
mod device_filter;
mod devices;
mod memory;
mod misc;
mod pids;
pub mod stats;

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Resources;

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Separate v1 hierarchies (possibly beside an unused cgroup2 mount: "hybrid").
    V1,
    /// The unified v2 hierarchy.
    V2,
}

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
#[error("cgroup {what} {path}")]
pub struct CgroupError {
    /// What was being done.
    pub what: &'static str,
    /// On what.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub err: io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |e| CgroupError {
        what,
        path: path.to_owned(),
        err: e,
    }
}

/// Writes a cgroup file.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    fs::write(&p, value).map_err(err("writing", &p))
}

/// A setting this host's cgroups cannot apply, refused rather than ignored.
pub(crate) fn refuse(dir: &Path, what: &str) -> CgroupError {
    CgroupError {
        what: "refusing",
        path: dir.to_owned(),
        err: io::Error::new(io::ErrorKind::Unsupported, what.to_owned()),
    }
}

/// One controller: how it applies [`Resources`] in each layout.
pub trait CgroupController {
    /// The v1 hierarchy name (`memory`, `cpu` ...) and the v2 controller name.
    const NAME: &'static str;
    /// Whether the resources ask anything of this controller.
    fn needed(r: &Resources) -> bool;
    /// Writes the limits into `dir`.
    fn apply(layout: Layout, dir: &Path, r: &Resources) -> Result<(), CgroupError>;
}

/// Detects the layout under `root` (normally `/sys/fs/cgroup`).
pub fn detect(root: &Path) -> Layout {
    if root.join("cgroup.controllers").exists() {
        Layout::V2
    } else {
        Layout::V1
    }
}

/// The v1 hierarchies corral places every container in: enough to limit, count and kill it.
const V1_HIERARCHIES: &[&str] = &[
    "memory", "cpu", "cpuacct", "cpuset", "pids", "devices", "freezer", "blkio", "hugetlb",
    "net_cls", "net_prio",
];

/// A container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: Layout,
    /// Its directories (one per v1 hierarchy, or one v2 directory).
    pub dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Creates the cgroup of container `id` under `root` (`corral/<id>` in each hierarchy)
    /// and applies `r`.
    pub fn create(root: &Path, id: &str, r: &Resources) -> Result<Self, CgroupError> {
        Self::create_at(root, &Path::new("corral").join(id), r)
    }

    /// Creates a cgroup at `rel` (relative to each hierarchy, as an OCI bundle's
    /// `cgroupsPath`) and applies `r`.
    pub fn create_at(root: &Path, rel: &Path, r: &Resources) -> Result<Self, CgroupError> {
        let layout = detect(root);
        let mut cg = Cgroup {
            layout,
            dirs: Vec::new(),
        };
        let res = cg.create_inner(root, rel, r);
        if res.is_err() {
            cg.destroy();
        }
        res.map(|()| cg)
    }

    fn create_inner(&mut self, root: &Path, rel: &Path, r: &Resources) -> Result<(), CgroupError> {
        match self.layout {
            Layout::V2 => {
                // Delegate the controllers we use down to our directory (those the root
                // offers), level by level.
                let offered =
                    fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                let mut cur = root.to_path_buf();
                for comp in rel.components() {
                    for c in ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"] {
                        if offered.split_whitespace().any(|o| o == c) {
                            let _ = write(&cur, "cgroup.subtree_control", &format!("+{c}"));
                        }
                    }
                    cur.push(comp);
                    mkdir(&cur)?;
                }
                self.dirs.push(cur.clone());
                self.apply_all(&|_| cur.clone(), r)?;
            }
            Layout::V1 => {
                let mut by = std::collections::HashMap::new();
                let mut seen = Vec::with_capacity(V1_HIERARCHIES.len());
                for h in V1_HIERARCHIES {
                    // The hierarchies few containers use are joined only when asked: each
                    // costs a mkdir and an rmdir per container (measured: ~0.5 ms of `run`).
                    let wanted = match *h {
                        "blkio" => blkio::Blkio::needed(r),
                        "hugetlb" => misc::Hugetlb::needed(r),
                        "net_cls" => misc::NetCls::needed(r),
                        "net_prio" => misc::NetPrio::needed(r),
                        _ => true,
                    };
                    if !wanted {
                        continue;
                    }
                    let base = root.join(h);
                    // cpu and cpuacct are often one hierarchy with two names (links to
                    // `cpu,cpuacct`): the second name is skipped. One stat per hierarchy.
                    let Ok(md) = fs::metadata(&base) else {
                        continue;
                    };
                    let key = (md.dev(), md.ino());
                    if let Some(dir) = seen
                        .iter()
                        .find(|(k, _)| *k == key)
                        .and_then(|(_, h)| by.get(h).cloned())
                    {
                        by.insert(*h, dir);
                        continue;
                    }
                    seen.push((key, *h));
                    // The shared parent (`corral/`) may be removed by the last container of
                    // another process between our mkdirs: start the path again when it is.
                    let mut attempt = 0;
                    let cur = loop {
                        match make_path(&base, rel, *h == "cpuset") {
                            // ENOENT: a level vanished; ENODEV: we wrote into a level being
                            // removed.
                            Err(e)
                                if (e.err.kind() == io::ErrorKind::NotFound
                                    || e.err.raw_os_error() == Some(19))
                                    && attempt < 20 =>
                            {
                                attempt += 1;
                            }
                            r => break r?,
                        }
                    };
                    self.dirs.push(cur.clone());
                    by.insert(*h, cur);
                }
                self.apply_all(&|h| by.get(h).cloned().unwrap_or_default(), r)?;
            }
        }
        Ok(())
    }

    /// Applies `r` through every controller, each in the directory `dir_of` gives for its v1
    /// hierarchy (empty: not mounted).
    fn apply_all(
        &self,
        dir_of: &dyn Fn(&str) -> PathBuf,
        r: &Resources,
    ) -> Result<(), CgroupError> {
        let l = self.layout;
        apply::<memory::Memory>(l, &dir_of("memory"), r)?;
        apply::<cpu::Cpu>(l, &dir_of("cpu"), r)?;
        apply::<cpuset::Cpuset>(l, &dir_of("cpuset"), r)?;
        apply::<pids::Pids>(l, &dir_of("pids"), r)?;
        apply::<blkio::Blkio>(l, &dir_of("blkio"), r)?;
        apply::<misc::Hugetlb>(l, &dir_of("hugetlb"), r)?;
        apply::<misc::NetCls>(l, &dir_of("net_cls"), r)?;
        apply::<misc::NetPrio>(l, &dir_of("net_prio"), r)?;
        if let Some(rules) = &r.devices {
            devices::apply(l, &dir_of("devices"), rules)?;
        }
        Ok(())
    }

    /// Applies new limits to a live cgroup (`update`).
    pub fn update(&self, root: &Path, r: &Resources) -> Result<(), CgroupError> {
        match self.layout {
            Layout::V2 => {
                let d = self.dirs.first().cloned().unwrap_or_default();
                self.apply_all(&|_| d.clone(), r)
            }
            Layout::V1 => self.apply_all(
                &|h| {
                    // A hierarchy mounted under two names (`cpu,cpuacct`) was recorded once.
                    let base = fs::canonicalize(root.join(h)).unwrap_or_else(|_| root.join(h));
                    self.dirs
                        .iter()
                        .find(|d| {
                            d.strip_prefix(root.join(h)).is_ok() || d.strip_prefix(&base).is_ok()
                        })
                        .cloned()
                        .unwrap_or_default()
                },
                r,
            ),
        }
    }

    /// Moves process `pid` into every directory of the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            write(d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// The pids in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        let Some(d) = self.dirs.first() else {
            return Vec::new();
        };
        fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Current usage.
    pub fn stats(&self) -> stats::Stats {
        stats::read(self.layout, &self.dirs)
    }

    /// Freezes or thaws every process of the container.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        stats::freeze(self.layout, &self.dirs, frozen)
    }

    /// Whether the OOM killer killed a process of the cgroup.
    pub fn oom_killed(&self) -> bool {
        self.dirs
            .iter()
            .any(|d| memory::oom_kills(self.layout, d) > 0)
    }

    /// Removes the cgroup's directories (they must be empty of processes; retried briefly while
    /// the kernel finishes tearing down the last ones).
    pub fn destroy(&self) {
        for d in &self.dirs {
            for i in 0..100u64 {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) => {
                        // Sub-cgroups (made by the workload, or for `exec --cgroup`) go
                        // first: a cgroup directory is removed only when it has none.
                        if i == 0 {
                            remove_children(d);
                        }
                        std::thread::sleep(std::time::Duration::from_micros(200 * (i + 1).min(25)))
                    }
                }
            }
            // The shared `corral` parent goes with its last container (busy otherwise: fine).
            if let Some(parent) = d
                .parent()
                .filter(|p| p.file_name().is_some_and(|n| n == "corral"))
            {
                let _ = fs::remove_dir(parent);
            }
        }
    }

    /// The directories container `id`'s cgroup would have (those that exist), for cleaning up
    /// after a container whose state is lost.
    pub fn dirs_for(root: &Path, id: &str) -> Vec<PathBuf> {
        match detect(root) {
            Layout::V2 => vec![root.join("corral").join(id)],
            Layout::V1 => V1_HIERARCHIES
                .iter()
                .map(|h| root.join(h).join("corral").join(id))
                .collect(),
        }
        .into_iter()
        .filter(|d| d.exists())
        .collect()
    }

    /// Re-opens the cgroup of a container from its recorded directories.
    pub fn from_dirs(root: &Path, dirs: Vec<PathBuf>) -> Self {
        Cgroup {
            layout: detect(root),
            dirs,
        }
    }
}

fn apply<C: CgroupController>(
    layout: Layout,
    dir: &Path,
    r: &Resources,
) -> Result<(), CgroupError> {
    if C::needed(r) {
        if dir.as_os_str().is_empty() {
            return Err(CgroupError {
                what: "controller not mounted here, or not joined at create (blkio, hugetlb, net_cls and net_prio are joined only when create asks for them):",
                path: PathBuf::from(C::NAME),
                err: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        C::apply(layout, dir, r)?;
    }
    Ok(())
}

/// Removes the cgroups below `dir`, deepest first (their files are the kernel's: only the
/// directories are removed).
fn remove_children(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let sub = e.path();
            remove_children(&sub);
            let _ = fs::remove_dir(&sub);
        }
    }
}

/// Makes `base/rel` level by level. For cpuset, a level whose `cpuset.cpus` is empty — new,
/// or made anew by another process racing with us — gets its parent's CPUs and memory nodes:
/// an empty cpuset admits no task.
fn make_path(base: &Path, rel: &Path, cpuset: bool) -> Result<PathBuf, CgroupError> {
    let mut cur = base.to_path_buf();
    for comp in rel.components() {
        let parent = cur.clone();
        cur.push(comp);
        mkdir(&cur)?;
        if cpuset {
            cpuset::inherit_if_empty(&parent, &cur)?;
        }
    }
    Ok(cur)
}

fn mkdir(p: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(p) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(err("creating", p)(e)),
        _ => Ok(()),
    }
}
