//! The container's root filesystem, built by the init inside its own mount namespace: the
//! overlay of the image layers, `/proc`, `/sys`, a minimal `/dev`, volumes, tmpfs; then
//! `pivot_root` and the masked and read-only paths.
//!
//! Mount points inside the rootfs are resolved with `openat2(RESOLVE_IN_ROOT)` and mounted on
//! through `/proc/self/fd/N`, so an image whose `/proc` or `/data` is a symlink to a host path
//! cannot redirect a mount onto the host (the class of CVE-2019-16884 and CVE-2021-30465).
//! Because the mount namespace is private and dies with the container, nothing is ever mounted
//! in the host's namespace and nothing can leak.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{
    mount, mount_bind_recursive, mount_change, mount_remount, unmount, MountFlags,
    MountPropagationFlags, UnmountFlags,
};

use crate::config::ContainerConfig;

/// A step of building the root filesystem failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}")]
pub struct RootfsError {
    /// What was being done.
    pub what: &'static str,
    /// On what.
    pub path: String,
    /// The cause.
    #[source]
    pub err: io::Error,
}

fn fail<'a, E: Into<io::Error>>(
    what: &'static str,
    path: &'a str,
) -> impl FnOnce(E) -> RootfsError + 'a {
    move |e| RootfsError {
        what,
        path: path.to_owned(),
        err: e.into(),
    }
}

fn proc_fd(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens (creating as a directory, or as an empty file when `file`) `path` inside `root`,
/// resolved by the kernel within `root`; returns an O_PATH fd to mount onto.
fn target(root: &OwnedFd, path: &str, file: bool) -> Result<OwnedFd, RootfsError> {
    let rel = path.trim_start_matches('/');
    let open = |p: &str| {
        rfs::openat2(
            root,
            if p.is_empty() { "." } else { p },
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    };
    match open(rel) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(fail("resolving mount point", path)(e)),
    }
    // Create the missing components, each resolved inside root.
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut cur = open("").map_err(fail("opening rootfs", path))?;
    for (i, c) in comps.iter().enumerate() {
        let prefix = comps[..=i].join("/");
        cur = match open(&prefix) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                let dir = rfs::openat2(
                    root,
                    if i == 0 {
                        ".".to_owned()
                    } else {
                        comps[..i].join("/")
                    },
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(fail("resolving mount point", path))?;
                let last = i + 1 == comps.len();
                let made = if file && last {
                    rfs::openat(
                        &dir,
                        *c,
                        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                } else {
                    rfs::mkdirat(&dir, *c, Mode::from_raw_mode(0o755))
                };
                match made {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(fail("creating mount point", path)(e)),
                }
                open(&prefix).map_err(fail("resolving mount point", path))?
            }
            Err(e) => return Err(fail("resolving mount point", path)(e)),
        };
    }
    Ok(cur)
}

/// Builds the root filesystem at `rootfs` (a directory of the container's state) and pivots
/// into it. Runs in the init, in its new mount namespace, before dropping privileges and
/// before joining the container's user namespace `userns` (if any), through which the layers
/// and named volumes are idmapped. `before_pivot` runs once everything is mounted, before
/// `pivot_root` (the bundle's `createContainer` hooks).
pub fn setup(
    cfg: &ContainerConfig,
    state_dir: &Path,
    userns: Option<BorrowedFd<'_>>,
    before_pivot: &mut dyn FnMut() -> io::Result<()>,
) -> Result<(), RootfsError> {
    // A bundle that lists no mount namespace shares the caller's (runtime spec): the root is
    // bound on itself there, as runc does, entered with chroot, and unbound by `delete`.
    let shared_ns = cfg.host_namespaces.iter().any(|n| n == "mount");
    let rootfs = match (&cfg.rootfs, shared_ns) {
        (Some(dir), true) => dir.clone(),
        _ => state_dir.join("rootfs"),
    };
    let rootfs_s = rootfs.display().to_string();
    if shared_ns {
        let Some(dir) = &cfg.rootfs else {
            return Err(RootfsError {
                what: "refusing",
                path: rootfs_s,
                err: io::Error::other("an image container needs a mount namespace of its own"),
            });
        };
        if !(cfg.masked_paths.is_empty() && cfg.readonly_paths.is_empty()) {
            return Err(RootfsError {
                what: "refusing",
                path: rootfs_s,
                err: io::Error::other(
                    "masked and read-only paths need a mount namespace of the container's own: add {\"type\": \"mount\"} to linux.namespaces",
                ),
            });
        }
        mount_bind_recursive(dir, dir).map_err(fail("binding the bundle's root on", &rootfs_s))?;
        // Our mount only: what is mounted beneath it reaches no peer of the host's.
        mount_change(
            dir,
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(fail("making private", &rootfs_s))?;
    } else {
        // Nothing we mount may propagate back to the host.
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(fail("making / private", "/"))?;
        match &cfg.rootfs {
            // An OCI bundle's root directory.
            Some(dir) => mount_bind_recursive(dir, &rootfs)
                .map_err(fail("binding the bundle's root on", &rootfs_s))?,
            None => overlay(cfg, state_dir, &rootfs, &rootfs_s, userns)?,
        }
    }
    let root = rfs::open(
        &rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("opening", &rootfs_s))?;

    match &cfg.mounts {
        Some(list) => {
            for m in list {
                spec_mount(&root, m, cfg)?;
            }
        }
        None => default_mounts(&root, cfg, state_dir, userns)?,
    }
    for d in &cfg.devices {
        make_node(&root, d, cfg)?;
    }
    if cfg.tty {
        // The terminal's slave (our stdin) lives in the host's devpts: bind it over
        // /dev/console so that the container can name it (ttyname, `tty`), as runc does.
        // By its path: the descriptor's mount belongs to the namespace we left.
        let slave = fs::read_link("/proc/self/fd/0")
            .map_err(fail("finding the terminal", "/dev/console"))?;
        let t = target(&root, "/dev/console", true)?;
        rustix::mount::mount_bind(&slave, proc_fd(&t))
            .map_err(fail("binding the terminal on", "/dev/console"))?;
    }
    drop(root);
    before_pivot().map_err(fail("running the createContainer hooks of", &rootfs_s))?;

    // pivot_root(".", ".") then detach the old root stacked beneath (runc's trick: no
    // directory for the old root is needed inside the image).
    rustix::process::chdir(&rootfs).map_err(fail("entering", &rootfs_s))?;
    if shared_ns {
        // pivot_root would move the root of every process of the host's namespace.
        rustix::process::chroot(".").map_err(fail("chroot into", &rootfs_s))?;
    } else {
        rustix::process::pivot_root(".", ".").map_err(fail("pivot_root into", &rootfs_s))?;
        unmount(".", UnmountFlags::DETACH).map_err(fail("detaching the old root", "/"))?;
    }
    rustix::process::chdir("/").map_err(fail("entering", "/"))?;

    if cfg.read_only {
        mount_remount("/", MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(fail("remounting read-only", "/"))?;
    }
    // The container's /proc is mounted and /proc/sys not yet read-only: its namespaces'
    // parameters can be written now (runc's order).
    for (key, value) in &cfg.sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        fs::write(&path, value).map_err(fail("setting the sysctl", &path))?;
    }
    for p in &cfg.masked_paths {
        mask(p)?;
    }
    for p in &cfg.readonly_paths {
        readonly(p)?;
    }
    // Last: an unbindable root would refuse the bind mounts above.
    if let Some(p) = cfg.rootfs_propagation {
        mount_change("/", p.flags()).map_err(fail("setting the propagation of", "/"))?;
    }
    Ok(())
}

/// Mounts the overlay of the image layers (bottom first in `cfg.layers`) on `rootfs`.
///
/// With a user namespace, each layer is an idmapped copy (named `/proc/self/fd/N`, which also
/// keeps the options short), and the upper directory, which holds the container's own files
/// with their shifted ids on disk, belongs to the namespace's root.
fn overlay(
    cfg: &ContainerConfig,
    state_dir: &Path,
    rootfs: &Path,
    rootfs_s: &str,
    userns: Option<BorrowedFd<'_>>,
) -> Result<(), RootfsError> {
    let mut trees = Vec::new();
    let mut lower: Vec<String> = Vec::with_capacity(cfg.layers.len());
    for p in cfg.layers.iter().rev() {
        match userns {
            Some(ns) => {
                let t = crate::userns::idmapped_tree(p, ns)
                    .map_err(fail("idmapping layer", "rootfs"))?;
                lower.push(proc_fd(&t));
                trees.push(t);
            }
            None => lower.push(p.display().to_string()),
        }
    }
    if let Some((uid, gid)) = root_owner(cfg) {
        std::os::unix::fs::chown(state_dir.join("upper"), Some(uid), Some(gid))
            .map_err(fail("handing over", "upper"))?;
    }
    if lower.is_empty() {
        // An image without layers: an empty lower directory.
        let empty = state_dir.join("empty");
        fs::create_dir_all(&empty).map_err(fail("creating", "empty"))?;
        lower.push(empty.display().to_string());
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        state_dir.join("upper").display(),
        state_dir.join("work").display()
    );
    let opts_c = std::ffi::CString::new(opts)
        .map_err(|e| fail("overlay options", "rootfs")(io::Error::other(e)))?;
    mount(
        "overlay",
        rootfs,
        "overlay",
        MountFlags::empty(),
        Some(opts_c.as_c_str()),
    )
    .map_err(fail("mounting overlay on", rootfs_s))?;
    drop(trees);
    Ok(())
}

/// The host uid and gid of the container's root, when it has a user namespace.
fn root_owner(cfg: &ContainerConfig) -> Option<(u32, u32)> {
    Some((
        crate::userns::host_id(&cfg.uid_map, 0)?,
        crate::userns::host_id(&cfg.gid_map, 0)?,
    ))
}

/// Mount options with the ids a user namespace's view needs: a tmpfs belongs to the
/// namespace's root (it is mounted from outside), and `uid=`/`gid=` options name container ids.
fn shift_ids(data: &str, fstype: &str, cfg: &ContainerConfig) -> String {
    if cfg.uid_map.is_empty() || !matches!(fstype, "tmpfs" | "devpts" | "mqueue") {
        return data.to_owned();
    }
    let mut out: Vec<String> = Vec::new();
    let (mut has_uid, mut has_gid) = (false, false);
    for o in data.split(',').filter(|o| !o.is_empty()) {
        let shifted = match o.split_once('=') {
            Some(("uid", v)) => {
                has_uid = true;
                v.parse()
                    .ok()
                    .and_then(|id| crate::userns::host_id(&cfg.uid_map, id))
                    .map(|h| format!("uid={h}"))
            }
            Some(("gid", v)) => {
                has_gid = true;
                v.parse()
                    .ok()
                    .and_then(|id| crate::userns::host_id(&cfg.gid_map, id))
                    .map(|h| format!("gid={h}"))
            }
            _ => None,
        };
        out.push(shifted.unwrap_or_else(|| o.to_owned()));
    }
    if fstype == "tmpfs" {
        if let Some((uid, gid)) = root_owner(cfg) {
            if !has_uid {
                out.push(format!("uid={uid}"));
            }
            if !has_gid {
                out.push(format!("gid={gid}"));
            }
        }
    }
    out.join(",")
}

/// A `--tmpfs` entry, `DEST` or `DEST:OPTIONS` (docker's form, checked by the engine): the
/// destination, the flags (noexec, nosuid and nodev unless `exec`/`suid`/`dev`), and the data options (mode
/// 1777 unless given).
fn tmpfs_options(entry: &str) -> (&str, MountFlags, String) {
    let (dest, given) = entry.split_once(':').unwrap_or((entry, ""));
    // docker's and podman's defaults: noexec, nosuid, nodev unless the options say otherwise.
    let mut flags = MountFlags::NOEXEC | MountFlags::NOSUID | MountFlags::NODEV;
    let mut data = Vec::new();
    for o in given.split(',').filter(|o| !o.is_empty()) {
        match o {
            "noexec" => flags |= MountFlags::NOEXEC,
            "exec" => flags.remove(MountFlags::NOEXEC),
            "suid" => flags.remove(MountFlags::NOSUID),
            "nosuid" => flags |= MountFlags::NOSUID,
            "dev" => flags.remove(MountFlags::NODEV),
            "nodev" => flags |= MountFlags::NODEV,
            "ro" => flags |= MountFlags::RDONLY,
            "rw" => flags.remove(MountFlags::RDONLY),
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "atime" | "relatime" | "tmpcopyup" | "notmpcopyup" => {}
            data_opt => data.push(data_opt.to_owned()),
        }
    }
    if !data.iter().any(|d| d.starts_with("mode=")) {
        data.insert(0, "mode=1777".into());
    }
    (dest, flags, data.join(","))
}

/// corral's own mounts: /proc, /dev and its devices, /sys, tmpfs and volumes.
fn default_mounts(
    root: &OwnedFd,
    cfg: &ContainerConfig,
    state_dir: &Path,
    userns: Option<BorrowedFd<'_>>,
) -> Result<(), RootfsError> {
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let opts = |fstype: &str, data: &str| shift_ids(data, fstype, cfg);
    mount_fs(root, "proc", "/proc", "proc", nosuid_nodev_noexec, None)?;
    mount_fs(
        root,
        "tmpfs",
        "/dev",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        Some(&opts("tmpfs", "mode=755,size=65536k")),
    )?;
    make_devices(root)?;
    mount_fs(
        root,
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(&opts("devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5")),
    )?;
    mount_fs(
        root,
        "shm",
        "/dev/shm",
        "tmpfs",
        nosuid_nodev_noexec,
        Some(&opts(
            "tmpfs",
            &format!("mode=1777,size={}", cfg.shm_size.unwrap_or(64 << 20)),
        )),
    )?;
    mount_fs(
        root,
        "mqueue",
        "/dev/mqueue",
        "mqueue",
        nosuid_nodev_noexec,
        None,
    )?;
    // Read-only unless --privileged (as docker).
    let sys_flags = if cfg.privileged {
        nosuid_nodev_noexec
    } else {
        nosuid_nodev_noexec | MountFlags::RDONLY
    };
    if mount_fs(root, "sysfs", "/sys", "sysfs", sys_flags, None).is_err() {
        // Without a network namespace of its own, sysfs cannot be mounted afresh: bind the
        // host's, read-only (as runc does).
        let t = target(root, "/sys", false)?;
        mount_bind_recursive("/sys", proc_fd(&t)).map_err(fail("binding", "/sys"))?;
        let t = target(root, "/sys", false)?;
        mount_remount(proc_fd(&t), MountFlags::BIND | sys_flags, "")
            .map_err(fail("remounting", "/sys"))?;
    }
    // The container's cgroups, read-only, as docker mounts them.
    cgroup_mount(root, "/sys/fs/cgroup", sys_flags | MountFlags::RDONLY)?;
    for t in &cfg.tmpfs {
        let (dest, flags, data) = tmpfs_options(t);
        mount_fs(
            root,
            "tmpfs",
            dest,
            "tmpfs",
            flags,
            Some(&opts("tmpfs", &data)),
        )?;
    }
    // On corral's networks: the container's own /etc/hosts and /etc/resolv.conf, written by
    // the engine into its state directory; on others, its /etc/hosts when the engine wrote one
    // (`--add-host`).
    let networked = cfg.network == crate::config::NetworkMode::Networks;
    if networked || state_dir.join("hosts").is_file() {
        for (file, dest) in [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")] {
            let src = state_dir.join(file);
            if src.is_file() && (networked || file == "hosts") {
                let t = target(root, dest, true)?;
                rustix::mount::mount_bind(&src, proc_fd(&t)).map_err(fail("binding", dest))?;
            }
        }
    }
    let init = cfg.init.as_ref().map(|p| crate::config::Bind {
        source: p.clone(),
        destination: crate::config::INIT_PATH.into(),
        readonly: true,
        idmap: false,
    });
    for b in cfg.binds.iter().chain(&init) {
        // A named volume's first mount gets the image's content at its mount point.
        if crate::volumes::claim_copy_up(&b.source) {
            let shifted = userns.is_some() && b.idmap;
            let back = |map: &[crate::userns::IdMap], id: u32| {
                crate::userns::container_id(map, id)
                    .filter(|_| shifted)
                    .unwrap_or(id)
            };
            let ids = |u, g| (back(&cfg.uid_map, u), back(&cfg.gid_map, g));
            crate::volumes::copy_up(root, &b.destination, &b.source, &ids).map_err(fail(
                "copying the image's content into the volume at",
                &b.destination,
            ))?;
        }
        let is_file = fs::metadata(&b.source)
            .map(|m| !m.is_dir())
            .unwrap_or(false);
        let t = target(root, &b.destination, is_file)?;
        match userns.filter(|_| b.idmap) {
            Some(ns) => {
                let tree = crate::userns::idmapped_tree(&b.source, ns)
                    .map_err(fail("idmapping volume for", &b.destination))?;
                rustix::mount::move_mount(
                    &tree,
                    "",
                    &t,
                    "",
                    rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                        | rustix::mount::MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
                )
                .map_err(fail("binding volume on", &b.destination))?;
            }
            None => mount_bind_recursive(&b.source, proc_fd(&t))
                .map_err(fail("binding volume on", &b.destination))?,
        }
        if b.readonly {
            let t = target(root, &b.destination, is_file)?;
            mount_remount(proc_fd(&t), MountFlags::BIND | MountFlags::RDONLY, "")
                .map_err(fail("remounting read-only", &b.destination))?;
        }
    }
    Ok(())
}

/// A spec mount's options: flags for mount(2), propagation, filesystem data, and the
/// recursive attributes applied afterwards with mount_setattr(2).
struct Options {
    flags: MountFlags,
    prop: Option<MountPropagationFlags>,
    data: String,
    recursive: crate::mount_attr::Attrs,
}

/// Splits mount(8) options into flags, propagation, data and recursive attributes, as runc
/// reads a spec.
fn parse_options(opts: &[String]) -> Options {
    let mut flags = MountFlags::empty();
    let mut prop = None;
    let mut data = Vec::new();
    let mut recursive = crate::mount_attr::Attrs::default();
    for o in opts {
        if recursive.take(o) {
            continue;
        }
        match o.as_str() {
            "nosymfollow" => flags |= MountFlags::NOSYMFOLLOW,
            "ro" => flags |= MountFlags::RDONLY,
            "rw" | "suid" | "dev" | "exec" | "async" | "atime" | "diratime" | "norelatime"
            | "nostrictatime" | "tmpcopyup" | "nomand" => {}
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "bind" => flags |= MountFlags::BIND,
            "rbind" => flags |= MountFlags::BIND | MountFlags::REC,
            "private" => prop = Some(MountPropagationFlags::PRIVATE),
            "rprivate" => prop = Some(MountPropagationFlags::PRIVATE | MountPropagationFlags::REC),
            "shared" => prop = Some(MountPropagationFlags::SHARED),
            "rshared" => prop = Some(MountPropagationFlags::SHARED | MountPropagationFlags::REC),
            "slave" => prop = Some(MountPropagationFlags::DOWNSTREAM),
            "rslave" => prop = Some(MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC),
            "unbindable" => prop = Some(MountPropagationFlags::UNBINDABLE),
            "runbindable" => {
                prop = Some(MountPropagationFlags::UNBINDABLE | MountPropagationFlags::REC)
            }
            other => data.push(other.to_owned()),
        }
    }
    Options {
        flags,
        prop,
        data: data.join(","),
        recursive,
    }
}

/// One mount of an OCI bundle.
fn spec_mount(
    root: &OwnedFd,
    m: &crate::oci::Mount,
    cfg: &ContainerConfig,
) -> Result<(), RootfsError> {
    let Options {
        flags,
        prop,
        data,
        recursive,
    } = parse_options(&m.options);
    let typ = m.typ.clone().unwrap_or_default();
    let data = shift_ids(&data, &typ, cfg);
    let dest = m.destination.as_str();
    if flags.contains(MountFlags::BIND) || typ == "bind" {
        let src = m.source.clone().unwrap_or_default();
        let is_file = fs::metadata(&src).map(|md| !md.is_dir()).unwrap_or(false);
        let t = target(root, dest, is_file)?;
        let res = if flags.contains(MountFlags::REC) {
            mount_bind_recursive(&src, proc_fd(&t))
        } else {
            rustix::mount::mount_bind(&src, proc_fd(&t))
        };
        res.map_err(fail("binding", dest))?;
        let extra = flags - MountFlags::BIND - MountFlags::REC;
        if !extra.is_empty() {
            let t = target(root, dest, is_file)?;
            mount_remount(proc_fd(&t), MountFlags::BIND | extra, "")
                .map_err(fail("remounting", dest))?;
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        cgroup_mount(root, dest, flags)?;
    } else {
        if typ == "proc" || typ == "sysfs" {
            refuse_symlink(root, dest, &typ)?;
        }
        let src = m.source.clone().unwrap_or_else(|| typ.clone());
        let data = (!data.is_empty()).then_some(data.as_str());
        let res = mount_fs(root, &src, dest, &typ, flags, data);
        if res.is_err() && typ == "sysfs" {
            // Without its own network namespace a container cannot mount sysfs: bind the
            // host's read-only, as runc does.
            let t = target(root, dest, false)?;
            mount_bind_recursive("/sys", proc_fd(&t)).map_err(fail("binding", dest))?;
            let t = target(root, dest, false)?;
            mount_remount(
                proc_fd(&t),
                MountFlags::BIND | MountFlags::RDONLY | flags,
                "",
            )
            .map_err(fail("remounting", dest))?;
        } else {
            res?;
        }
        if typ == "tmpfs" && dest == "/dev" {
            make_devices(root)?;
        }
    }
    if let Some(p) = prop {
        let t = target(root, dest, false).or_else(|_| target(root, dest, true))?;
        mount_change(proc_fd(&t), p).map_err(fail("setting propagation of", dest))?;
    }
    if !recursive.is_empty() {
        let t = target(root, dest, false).or_else(|_| target(root, dest, true))?;
        crate::mount_attr::apply(t.as_fd(), recursive, None, true).map_err(fail(
            "setting recursive attributes (rro, rnosuid ...) of",
            dest,
        ))?;
    }
    Ok(())
}

/// Refuses to mount `/proc` or `/sys` where the image put a symlink (runc's rule): followed,
/// even inside the root, it would put the kernel's files where the image chose.
fn refuse_symlink(root: &OwnedFd, dest: &str, typ: &str) -> Result<(), RootfsError> {
    let rel = dest.trim_start_matches('/');
    let Ok(fd) = rfs::openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return Ok(());
    };
    let st = rfs::fstat(&fd).map_err(fail("inspecting mount point", dest))?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(RootfsError {
            what: "mounting",
            path: dest.to_owned(),
            err: io::Error::other(format!(
                "{typ} must be mounted on ordinary directory: the image has a symlink there"
            )),
        });
    }
    Ok(())
}

/// The container's view of its cgroups at `dest`: on a v2 host its own cgroup2 (rooted at
/// its cgroup by the cgroup namespace); on a v1 or hybrid host a read-only tmpfs holding each
/// hierarchy ([`cgroup_v1_hierarchies`]).
fn cgroup_mount(root: &OwnedFd, dest: &str, flags: MountFlags) -> Result<(), RootfsError> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return mount_fs(root, "cgroup2", dest, "cgroup2", flags, None);
    }
    mount_fs(
        root,
        "tmpfs",
        dest,
        "tmpfs",
        flags - MountFlags::RDONLY,
        Some("mode=755,size=64k"),
    )?;
    cgroup_v1_hierarchies(root, dest, flags);
    let t = target(root, dest, false)?;
    mount_remount(proc_fd(&t), flags | MountFlags::RDONLY, "mode=755,size=64k")
        .map_err(fail("remounting", dest))
}

/// The cgroup v1 hierarchies of a v1 (or hybrid) host under the container's `dest` tmpfs,
/// as docker's containers see them: one directory per hierarchy (`memory`, `cpu,cpuacct`
/// with `cpu` and `cpuacct` links, `pids`, ..., and `unified` for a hybrid host's cgroup2),
/// each showing the container's own cgroup as its root. In a cgroup namespace (the init has
/// entered it, so /proc/self/cgroup says `/`) a fresh mount of each hierarchy is rooted
/// there by the kernel; without one, the container's directory of the host's hierarchy is
/// bound. Read-only unless the mount asked otherwise. Best effort: a hierarchy that cannot
/// be mounted (in a user namespace, v1 cgroup filesystems cannot be) is left out.
fn cgroup_v1_hierarchies(root: &OwnedFd, dest: &str, flags: MountFlags) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // The fresh tmpfs: links and clean-up happen relative to it, never through the image's
    // own paths.
    let Ok(dir) = target(root, dest, false) else {
        return;
    };
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split_whitespace().collect();
        let post: Vec<&str> = post.split_whitespace().collect();
        let (Some(mountpoint), Some(fstype), Some(superopts)) =
            (fields.get(4), post.first(), post.get(2))
        else {
            continue;
        };
        let Some(name) = mountpoint.strip_prefix("/sys/fs/cgroup/") else {
            continue;
        };
        if name.contains('/') || name.is_empty() {
            continue;
        }
        // The controllers (or `name=...`) of this hierarchy, as /proc/self/cgroup lists them.
        let (key, opts) = match *fstype {
            "cgroup" => {
                let ctrls: Vec<&str> = superopts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                    .collect();
                (ctrls.join(","), ctrls.join(","))
            }
            "cgroup2" => (String::new(), String::new()),
            _ => continue,
        };
        // This process's path in the hierarchy: `N:<key>:<path>` (cgroup2: `0::<path>`).
        let path = own.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, k, p) = (it.next()?, it.next()?, it.next()?);
            (k == key).then(|| p.to_owned())
        });
        let Some(path) = path else { continue };
        let inside = format!("{}/{name}", dest.trim_end_matches('/'));
        let Ok(t) = target(root, &inside, false) else {
            continue;
        };
        let ro = flags | MountFlags::RDONLY;
        let mounted = if path == "/" {
            let data = std::ffi::CString::new(opts).expect("no NUL in mount options");
            mount(*fstype, proc_fd(&t), *fstype, ro, Some(data.as_c_str())).is_ok()
        } else {
            let host = format!("{mountpoint}{path}");
            rustix::mount::mount_bind(host.as_str(), proc_fd(&t)).is_ok()
                && mount_remount(proc_fd(&t), MountFlags::BIND | ro, "").is_ok()
        };
        if !mounted {
            let _ = rfs::unlinkat(&dir, name, rfs::AtFlags::REMOVEDIR);
            continue;
        }
        // `cpu,cpuacct` is also reachable as `cpu` and `cpuacct`.
        if name.contains(',') {
            for part in name.split(',') {
                let _ = rfs::symlinkat(name, &dir, part);
            }
        }
    }
}

fn mount_fs(
    root: &OwnedFd,
    source: &str,
    dest: &str,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    let t = target(root, dest, false)?;
    let data = data.map(|d| std::ffi::CString::new(d).expect("static options"));
    mount(source, proc_fd(&t), fstype, flags, data.as_deref()).map_err(fail("mounting", dest))
}

/// Device nodes of the container's /dev (the devices cgroup allows exactly these).
fn make_devices(root: &OwnedFd) -> Result<(), RootfsError> {
    let dev = target(root, "/dev", false)?;
    let dev = rfs::open(
        proc_fd(&dev),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("opening", "/dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        rfs::mknodat(
            &dev,
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rfs::makedev(major, minor),
        )
        .map_err(fail("creating device", name))?;
        // mknod honours the umask: set the mode exactly.
        rfs::chmodat(
            &dev,
            name,
            Mode::from_raw_mode(0o666),
            rfs::AtFlags::empty(),
        )
        .map_err(fail("chmod", name))?;
    }
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        rfs::symlinkat(to, &dev, link).map_err(fail("creating link", link))?;
    }
    Ok(())
}

/// Makes one extra device node (`--device`, a bundle's `linux.devices`) inside the root,
/// its directories as needed, owned as asked (a container id, shifted by the user namespace's
/// map). The node is made while the init is still the host's root; the devices cgroup decides
/// whether the container may use it.
fn make_node(
    root: &OwnedFd,
    d: &crate::config::DeviceNode,
    cfg: &ContainerConfig,
) -> Result<(), RootfsError> {
    let path = d.path.as_str();
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    if name.is_empty() || name == "." || name == ".." {
        return Err(fail("creating device", path)(Errno::INVAL));
    }
    let dir = target(root, if parent.is_empty() { "/" } else { parent }, false)?;
    let dir = rfs::open(
        proc_fd(&dir),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("opening", path))?;
    let kind = match d.kind {
        'b' => FileType::BlockDevice,
        'p' => FileType::Fifo,
        _ => FileType::CharacterDevice,
    };
    // A node the image or an earlier mount already has there is replaced.
    match rfs::unlinkat(&dir, name, rfs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(fail("replacing", path)(e)),
    }
    let mode = Mode::from_raw_mode(d.mode & 0o7777);
    rfs::mknodat(&dir, name, kind, mode, rfs::makedev(d.major, d.minor))
        .map_err(fail("creating device", path))?;
    rfs::chmodat(&dir, name, mode, rfs::AtFlags::empty()).map_err(fail("chmod", path))?;
    let shift = |map: &[crate::userns::IdMap], id: u32| {
        if map.is_empty() {
            Some(id)
        } else {
            crate::userns::host_id(map, id)
        }
    };
    let uid = shift(&cfg.uid_map, d.uid).map(rustix::process::Uid::from_raw);
    let gid = shift(&cfg.gid_map, d.gid).map(rustix::process::Gid::from_raw);
    rfs::chownat(&dir, name, uid, gid, rfs::AtFlags::empty()).map_err(fail("chown", path))
}

/// Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &str) -> Result<(), RootfsError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail("masking", path)(e)),
        Ok(m) if m.is_dir() => {
            mount("tmpfs", path, "tmpfs", MountFlags::RDONLY, None).map_err(fail("masking", path))
        }
        Ok(_) => rustix::mount::mount_bind("/dev/null", path).map_err(fail("masking", path)),
    }
}

/// Makes a path read-only (a bind mount on itself, remounted read-only).
fn readonly(path: &str) -> Result<(), RootfsError> {
    if !Path::new(path).exists() {
        return Ok(());
    }
    mount_bind_recursive(path, path).map_err(fail("binding", path))?;
    mount_remount(
        path,
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC,
        "",
    )
    .map_err(fail("remounting read-only", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_entries_split_into_flags_and_data() {
        let (d, f, data) = tmpfs_options("/run");
        assert_eq!((d, data.as_str()), ("/run", "mode=1777"));
        assert!(f.contains(MountFlags::NOEXEC | MountFlags::NOSUID | MountFlags::NODEV));
        let (_, f, _) = tmpfs_options("/t:exec");
        assert!(!f.contains(MountFlags::NOEXEC));
        let (d, f, data) = tmpfs_options("/t:size=1048576,noexec,mode=700,uid=5");
        assert_eq!(d, "/t");
        assert_eq!(data, "size=1048576,mode=700,uid=5");
        assert!(f.contains(MountFlags::NOEXEC));
    }
}
