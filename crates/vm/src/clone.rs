//! Templates and clones of image VMs: `vm template`, `vm clone`, and the read-only base disks
//! they share.
//!
//! Owns `CORRAL_ROOT/vm-templates/`:
//! - `<NAME>/template.json` (what a new VM needs: boot source, CPUs, memory, networks, main
//!   process, the disk's size; the source VM for the record) and `<NAME>/disk.qcow2`, the
//!   source VM's writable disk moved there, mode 0444;
//! - `.base-<hex>/disk.qcow2` (and `base.json`): a hidden base, the frozen disk of a VM that
//!   was cloned while it exists; the VM and its clones each write an overlay of their own on it;
//! - `.lock`: every change under `vm-templates/`, and every qcow2 overlay made on a base, happens
//!   under this lock (taken before any VM's lock, never after).
//!
//! A clone's writable disk is a qcow2 overlay whose backing file is a template's or a base's
//! disk (`qemu-img create -f qcow2 -F qcow2 -b BASE`): made in milliseconds whatever the
//! disk's size, and QEMU opens the backing file read-only. Chains form naturally (a clone
//! templated again, a clone cloned).
//!
//! **References** are not counted in a file that could drift: the truth is the disks
//! themselves. A base is in use while some qcow2 disk — under `vms/<id>/` or `vm-templates/` —
//! names it as its backing file (read from the qcow2 header, by device and inode). A hidden
//! base that nothing names is deleted by [`collect`] (after `vm rm`, a template's removal,
//! and at the start of every command of this module), repeatedly, since removing one can free
//! its own base. A template in use cannot be removed ([`remove_template`] names its users).
//!
//! **Crashes**: every step is a hard link, an atomic rename or a new file, and the lock's
//! holder [`reconcile`]s what an interrupted one left: `.tmp-*` directories (templates being
//! made or removed) are deleted; a hidden base whose disk still has two links (the source VM's
//! disk was frozen but not yet replaced by an overlay) is undone; a template whose disk is
//! still the source VM's disk (same inode) is finished by removing the VM. Until then
//! [`check_not_shared`] keeps such a VM from starting. So a crash leaves the old state or
//! the new one.
//!
//! Each clone is its own machine: a new id, so its own name and hostname, its own addresses and
//! MACs (allocated per VM id by corral-net at start) and [`machine_id`] (written to
//! `/etc/machine-id` by the agent).
//!
//! Limits: only image VMs (`--image`) have a disk corral owns; backing files are absolute
//! paths, so `CORRAL_ROOT` cannot be moved once it holds clones.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use corral_guest::proto;
use corral_net::fsutil::{self, FsError, Lock};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{self, VmError};
use crate::store::{self, BootSource, NetRequest, Status, StoreError, VmConfig, Vms};
use crate::{initramfs, kernel, monitor};

/// The directory of templates and bases under `CORRAL_ROOT`.
pub const TEMPLATES_DIR: &str = "vm-templates";
/// A template's (and a base's) disk file.
pub const DISK_FILE: &str = "disk.qcow2";
/// Words of `vm template` that cannot be template names.
pub const RESERVED_NAMES: [&str; 2] = ["ls", "rm"];

const TEMPLATE_FILE: &str = "template.json";
const BASE_FILE: &str = "base.json";
const BASE_PREFIX: &str = ".base-";
const TMP_PREFIX: &str = ".tmp-";
/// Overlays being made in a VM's directory before they replace its disk.
const OVERLAY_TMP_PREFIX: &str = ".clone-overlay-";
/// Backing chains longer than this are refused as corrupt (QEMU's own limit is similar).
const MAX_CHAIN: usize = 64;

/// Why a template or clone command failed.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// Neither a template nor a VM by that name.
    #[error("no template or VM called {0} (see `corral vm template ls`, `corral vm ls`)")]
    NotFound(String),
    /// No template by that name.
    #[error("no template called {0} (see `corral vm template ls`)")]
    NoTemplate(String),
    /// The template name is taken.
    #[error("a template called {0:?} exists: choose another name or remove it (`corral vm template rm {0}`)")]
    Exists(String),
    /// The template name is not valid.
    #[error("invalid template name {0:?}: use letters, digits, '_', '.', '-', starting with a letter or digit, at most 63 characters; `ls` and `rm` are reserved")]
    BadName(String),
    /// The VM runs.
    #[error("VM {0} is running: stop it first (`corral vm stop {0}`)")]
    Running(String),
    /// The VM's disk holds snapshots, which a frozen base would take out of its reach.
    #[error("VM {0} has snapshots, which live in its disk and would not follow it onto a clone's shared base: remove them (`corral vm snapshot ls {0}`, `vm snapshot rm`), or template it and clone the template")]
    HasSnapshots(String),
    /// The VM has data disks (`vm disk add`), which templates and clones do not carry yet.
    #[error("VM {0} has data disks (`corral vm disk ls {0}`), which templates and clones do not carry yet: remove them first (`corral vm disk rm`)")]
    HasDataDisks(String),
    /// The VM has no disk corral owns, or one that cannot back an overlay.
    #[error("VM {0} cannot be templated or cloned: {1}")]
    NotImage(String, String),
    /// Disks are backed by the template.
    #[error("template {name} is in use as the base of: {}; remove those first (`corral vm rm ...`, `corral vm template rm ...`)", users.join(", "))]
    InUse {
        /// The template.
        name: String,
        /// The VMs and templates whose disks are backed by it.
        users: Vec<String>,
    },
    /// A disk that should be qcow2 is not.
    #[error("{path}: not a qcow2 disk corral can use ({reason})")]
    Qcow2 {
        /// The disk.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `qemu-img` failed or is missing.
    #[error("qemu-img: {0}")]
    QemuImg(String),
    /// A filesystem operation failed.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// State files.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The VMs' state.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The VM lifecycle (networks, removal).
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The guest kernel of the new VM.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    /// The initramfs of the new VM.
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
}

type Result<T> = std::result::Result<T, CloneError>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CloneError + 'a {
    move |err| CloneError::Io {
        what,
        path: path.to_owned(),
        err,
    }
}

/// What a new VM made from a template needs, and where the template came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The template's name.
    pub name: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// The name of the VM it was made from.
    pub source_vm: String,
    /// That VM's id.
    pub source_id: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// How it boots (an image boot).
    pub boot: BootSource,
    /// Extra kernel command line.
    #[serde(default)]
    pub extra_cmdline: String,
    /// Networks, in NIC order.
    #[serde(default)]
    pub networks: Vec<NetRequest>,
    /// The main process.
    #[serde(default)]
    pub main: Option<proto::Exec>,
    /// Seconds to wait for the agent.
    pub boot_timeout_secs: u64,
    /// The disk's size (what the guest sees), bytes.
    pub disk_bytes: u64,
}

/// A template as `vm template ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateInfo {
    /// What the template is.
    #[serde(flatten)]
    pub template: Template,
    /// Its disk.
    pub disk: PathBuf,
    /// Bytes the disk (this layer only) takes on the host.
    pub disk_allocated: u64,
    /// VMs and templates whose disks are backed by it, directly or through a base.
    pub used_by: Vec<String>,
}

/// What `vm clone` asks for.
#[derive(Debug, Clone)]
pub struct CloneSpec {
    /// A template's name, or a stopped VM's name or id.
    pub source: String,
    /// The new VM's name (and hostname).
    pub name: String,
    /// Networks instead of the source's.
    pub networks: Option<Vec<NetRequest>>,
}

/// `CORRAL_ROOT/vm-templates`.
pub fn templates_dir(root: &Path) -> PathBuf {
    root.join(TEMPLATES_DIR)
}

fn lock(root: &Path) -> Result<Lock> {
    Ok(Lock::exclusive(&templates_dir(root).join(".lock"))?)
}

/// The guest's machine id (machine-id(5)): the first 32 hex digits of the VM's id, so that
/// every VM, and so every clone, is a distinct machine. Empty for an id too short.
pub fn machine_id(vm_id: &str) -> String {
    match vm_id.get(..32) {
        Some(h) if h.bytes().all(|b| b.is_ascii_hexdigit()) => h.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Checks a template name: a VM name's rule (it becomes a directory), minus `ls` and `rm`.
pub fn check_template_name(name: &str) -> Result<()> {
    if RESERVED_NAMES.contains(&name) || store::check_name(name).is_err() {
        return Err(CloneError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Refuses to start a VM whose writable disk has a second link: a template or base was being
/// made of it when corral was interrupted, and the next template or clone command finishes or
/// undoes that (see the module's doc).
pub fn check_not_shared(upper: &Path) -> std::result::Result<(), String> {
    match fs::metadata(upper) {
        Ok(m) if m.nlink() > 1 => Err(format!(
            "{} is also a template's disk (an interrupted `vm template` or `vm clone`): run `corral vm template ls` to finish it",
            upper.display()
        )),
        _ => Ok(()),
    }
}

/// Turns a stopped image VM into the template `name`: its writable disk becomes the template's
/// read-only disk, and the VM is removed.
pub fn make_template(root: &Path, vm: &str, name: &str) -> Result<Template> {
    check_template_name(name)?;
    let _lock = lock(root)?;
    reconcile(root)?;
    let tdir = templates_dir(root);
    let dest = tdir.join(name);
    if dest.symlink_metadata().is_ok() {
        return Err(CloneError::Exists(name.to_owned()));
    }
    let vms = Vms::open(root);
    let id = vms.resolve(vm)?;
    let vm_lock = vms.lock(&id)?;
    let (cfg, upper) = stopped_image_vm(&vms, &id)?;
    let disk_bytes = qcow2_header(&upper)?.size;
    let user_data = vms.dir(&id).join(crate::seed::USER_DATA);
    let tpl = Template {
        name: name.to_owned(),
        created: now(),
        source_vm: cfg.name.clone(),
        source_id: cfg.id.clone(),
        cpus: cfg.cpus,
        memory_mib: cfg.memory_mib,
        boot: cfg.boot.clone(),
        extra_cmdline: cfg.extra_cmdline.clone(),
        networks: cfg.networks.clone(),
        main: cfg.main.clone(),
        boot_timeout_secs: cfg.boot_timeout_secs,
        disk_bytes,
    };
    // Made aside, then renamed into place: the rename is the commit point. Until then the VM
    // is untouched (the disk is only linked); after it, `reconcile` finishes the VM's removal.
    let tmp = tdir.join(format!("{TMP_PREFIX}{}", fsutil::random_hex(8)));
    let made = (|| {
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        fsutil::write_json(&tmp.join(TEMPLATE_FILE), &tpl)?;
        link_read_only(&upper, &tmp.join(DISK_FILE))?;
        // A disk VM's cloud-init user-data, for its clones' seeds.
        if user_data.is_file() {
            fs::copy(&user_data, tmp.join(crate::seed::USER_DATA))
                .map_err(io_err("copying", &user_data))?;
        }
        sync_dir(&tmp)?;
        fs::rename(&tmp, &dest).map_err(io_err("renaming into", &dest))?;
        sync_dir(&tdir)
    })();
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    remove_vm_files(root, &vms, &id);
    drop(vm_lock);
    tracing::info!(template = name, vm = %cfg.name, "made template");
    Ok(tpl)
}

/// A stopped VM's config and the writable disk corral owns: an image VM's upper disk, or a
/// disk VM's own copy of its boot disk (qcow2).
fn stopped_image_vm(vms: &Vms, id: &str) -> Result<(VmConfig, PathBuf)> {
    let cfg = vms.config(id)?;
    let st = lifecycle::current_state(vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        return Err(CloneError::Running(cfg.name));
    }
    let not = |why: &str| Err(CloneError::NotImage(cfg.name.clone(), why.to_owned()));
    let upper = match (&cfg.boot, &cfg.upper_disk) {
        (BootSource::Image { .. }, Some(u)) => u.clone(),
        (BootSource::Disk { path, format, .. }, _) => {
            if !path.starts_with(vms.dir(id)) {
                return not("its boot disk is the user's file (--boot-disk-in-place), not a copy corral owns");
            }
            if format != "qcow2" {
                return not("its boot disk is raw; clones share a qcow2 base: create the VM from a qcow2 disk (`qemu-img convert -O qcow2 DISK DISK.qcow2`)");
            }
            path.clone()
        }
        (BootSource::Sandbox { .. }, _) => return not("it is a pod's VM"),
        _ => return not("it boots a kernel the user gave, with no disk of corral's"),
    };
    if !cfg.data_disks.is_empty() {
        return Err(CloneError::HasDataDisks(cfg.name));
    }
    Ok((cfg, upper))
}

/// Removes a stopped VM's files, endpoints and cgroup (its disk lives on as a template's).
fn remove_vm_files(root: &Path, vms: &Vms, id: &str) {
    let _ = corral_net::Networks::open(root).release(id);
    monitor::remove_cgroup(vms, id);
    if let Err(e) = vms.remove_files(id) {
        tracing::warn!(vm = id, error = %e, "removing the templated VM's files");
    }
}

/// Makes the VM `spec.name` from a template or a stopped VM, with a fresh writable overlay on
/// the source's read-only disk. A VM source's disk is frozen first into a hidden base, and the
/// VM goes on with an overlay of its own on it. The new VM is not started.
pub fn clone(root: &Path, spec: &CloneSpec) -> Result<VmConfig> {
    store::check_name(&spec.name)?;
    let _lock = lock(root)?;
    reconcile(root)?;
    let vms = Vms::open(root);
    if let Ok(other) = vms.resolve(&spec.name) {
        if vms.config(&other).is_ok_and(|c| c.name == spec.name) {
            return Err(StoreError::NameTaken(spec.name.clone(), other[..12].to_owned()).into());
        }
    }
    let tdir = templates_dir(root);
    let (tpl, base, user_data) = match read_template(&tdir, &spec.source)? {
        Some(t) => (
            t,
            tdir.join(&spec.source).join(DISK_FILE),
            fs::read(tdir.join(&spec.source).join(crate::seed::USER_DATA)).ok(),
        ),
        None => {
            let id = vms.resolve(&spec.source).map_err(|e| match e {
                StoreError::NotFound(_) => CloneError::NotFound(spec.source.clone()),
                e => e.into(),
            })?;
            let _vm_lock = vms.lock(&id)?;
            let (cfg, upper) = stopped_image_vm(&vms, &id)?;
            // Internal snapshots would stay in the frozen base, out of the VM's reach.
            if !crate::snapshot::list(&vms, &id)?.is_empty() {
                return Err(CloneError::HasSnapshots(cfg.name));
            }
            let base = freeze(root, &cfg, &upper)?;
            let user_data = fs::read(vms.dir(&id).join(crate::seed::USER_DATA)).ok();
            let tpl = Template {
                name: String::new(),
                created: now(),
                source_vm: cfg.name.clone(),
                source_id: cfg.id.clone(),
                cpus: cfg.cpus,
                memory_mib: cfg.memory_mib,
                boot: cfg.boot.clone(),
                extra_cmdline: cfg.extra_cmdline.clone(),
                networks: cfg.networks.clone(),
                main: cfg.main.clone(),
                boot_timeout_secs: cfg.boot_timeout_secs,
                disk_bytes: qcow2_header(&base)?.size,
            };
            (tpl, base, user_data)
        }
    };
    let cfg = new_vm(root, &vms, &tpl, &base, user_data.as_deref(), spec)?;
    tracing::info!(vm = %cfg.name, source = %spec.source, "cloned");
    Ok(cfg)
}

/// Freezes a stopped VM's writable disk into a new hidden base and gives the VM a fresh
/// overlay on it; returns the base's disk.
fn freeze(root: &Path, cfg: &VmConfig, upper: &Path) -> Result<PathBuf> {
    let tdir = templates_dir(root);
    let base_dir = tdir.join(format!("{BASE_PREFIX}{}", fsutil::random_hex(16)));
    let base = base_dir.join(DISK_FILE);
    let tmp = tdir.join(format!("{TMP_PREFIX}{}", fsutil::random_hex(8)));
    let size = qcow2_header(upper)?.size;
    // 1. The base appears, holding a second link to the VM's disk (undone by `reconcile`
    //    while the VM's disk still has two links).
    let made = (|| {
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        let record = serde_json::json!({
            "source_vm": cfg.name,
            "source_id": cfg.id,
            "created": now(),
        });
        fsutil::write_json(&tmp.join(BASE_FILE), &record)?;
        link_read_only(upper, &tmp.join(DISK_FILE))?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &base_dir).map_err(io_err("renaming into", &base_dir))?;
        sync_dir(&tdir)
    })();
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // 2. The VM's disk is replaced by an overlay on the base: the commit point.
    let vm_dir = upper.parent().unwrap_or(Path::new("."));
    let overlay = vm_dir.join(format!(
        "{OVERLAY_TMP_PREFIX}{}.qcow2",
        fsutil::random_hex(8)
    ));
    let replaced = (|| {
        create_overlay(&base, &overlay, size)?;
        fs::rename(&overlay, upper).map_err(io_err("renaming into", upper))?;
        sync_dir(vm_dir)
    })();
    if let Err(e) = replaced {
        let _ = fs::remove_file(&overlay);
        let _ = fs::remove_dir_all(&base_dir);
        return Err(e);
    }
    Ok(base)
}

/// Records the new VM: its own id, name and overlay on `base`, and for a disk VM with
/// cloud-init user-data a seed of its own (its name as instance-id and hostname: cloud-init
/// sees a new instance, and makes a new machine-id and new SSH host keys).
fn new_vm(
    root: &Path,
    vms: &Vms,
    tpl: &Template,
    base: &Path,
    user_data: Option<&[u8]>,
    spec: &CloneSpec,
) -> Result<VmConfig> {
    let id = store::new_id();
    let dir = vms.dir(&id);
    let mut upper_disk = Some(dir.join("upper.qcow2"));
    let mut seed = None;
    // The initramfs of the agent this corral runs (a template may predate it), for the kernel
    // the template booted.
    let boot = match &tpl.boot {
        BootSource::Image {
            image,
            digest,
            image_disk,
            kernel: k,
            ..
        } => {
            let guest = kernel::GuestKernel::find(Some(k))?;
            let agent = initramfs::agent_path()?;
            let initrd = initramfs::build_initramfs(
                &lifecycle::cache_dir(root).join("initramfs"),
                &guest,
                &agent,
            )?;
            BootSource::Image {
                image: image.clone(),
                digest: digest.clone(),
                image_disk: image_disk.clone(),
                kernel: k.clone(),
                initrd,
            }
        }
        BootSource::Disk { uefi, .. } => {
            upper_disk = None;
            seed = user_data.map(|_| dir.join("seed.iso"));
            BootSource::Disk {
                path: dir.join("boot.qcow2"),
                format: "qcow2".into(),
                uefi: *uefi,
            }
        }
        _ => {
            return Err(CloneError::NotImage(
                tpl.source_vm.clone(),
                "its template has no disk".into(),
            ))
        }
    };
    let upper = match (&boot, &upper_disk) {
        (BootSource::Disk { path, .. }, _) => path.clone(),
        (_, Some(u)) => u.clone(),
        _ => dir.join("upper.qcow2"),
    };
    let cfg = VmConfig {
        id: id.clone(),
        name: spec.name.clone(),
        created: now(),
        cpus: tpl.cpus,
        memory_mib: tpl.memory_mib,
        accel: crate::qemu::detect_accel().best,
        boot,
        upper_disk,
        extra_cmdline: tpl.extra_cmdline.clone(),
        // The source's networks, without its DNS aliases and published ports: those name one
        // machine, and a host port can be published once.
        networks: spec.networks.clone().unwrap_or_else(|| {
            tpl.networks
                .iter()
                .map(|n| NetRequest {
                    network: n.network.clone(),
                    aliases: Vec::new(),
                    ports: Vec::new(),
                    // A clone is another machine: an address and a MAC of its own.
                    ip: None,
                    mac: None,
                })
                .collect()
        }),
        main: tpl.main.clone(),
        auto_remove: false,
        seed: seed.clone(),
        boot_timeout_secs: tpl.boot_timeout_secs,
        data_disks: Vec::new(),
        cdrom: None,
        vnc: false,
        restart: Default::default(),
    };
    let made = (|| {
        vms.begin(&id)?;
        create_overlay(base, &upper, tpl.disk_bytes)?;
        if let (Some(s), Some(data)) = (&seed, user_data) {
            crate::seed::nocloud_seed_with(s, data, &spec.name, None)
                .map_err(|e| CloneError::Vm(VmError::Invalid(e)))?;
            fs::write(dir.join(crate::seed::USER_DATA), data).map_err(io_err("writing", &dir))?;
        }
        let _names = vms.names_lock()?;
        vms.create(&cfg)?;
        Ok(())
    })();
    if let Err(e) = made {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(cfg)
}

/// Every template, with the VMs and templates that use it.
pub fn list(root: &Path) -> Result<Vec<TemplateInfo>> {
    let tdir = templates_dir(root);
    if !tdir.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = lock(root)?;
    reconcile(root)?;
    let disks = all_disks(root);
    let mut out = Vec::new();
    for name in entries(&tdir) {
        if name.starts_with('.') {
            continue;
        }
        let Some(template) = read_template(&tdir, &name)? else {
            continue;
        };
        let disk = tdir.join(&name).join(DISK_FILE);
        let disk_allocated = fs::metadata(&disk).map(|m| m.blocks() * 512).unwrap_or(0);
        let used_by = users_of(root, &disk, &disks);
        out.push(TemplateInfo {
            template,
            disk,
            disk_allocated,
            used_by,
        });
    }
    out.sort_by(|a, b| a.template.name.cmp(&b.template.name));
    Ok(out)
}

/// Removes a template; refused while some disk is backed by it (the error names them).
pub fn remove_template(root: &Path, name: &str) -> Result<()> {
    let tdir = templates_dir(root);
    if name.starts_with('.') || read_template(&tdir, name).ok().flatten().is_none() {
        return Err(CloneError::NoTemplate(name.to_owned()));
    }
    let _lock = lock(root)?;
    reconcile(root)?;
    let dir = tdir.join(name);
    if !dir.is_dir() {
        return Err(CloneError::NoTemplate(name.to_owned()));
    }
    let users = users_of(root, &dir.join(DISK_FILE), &all_disks(root));
    if !users.is_empty() {
        return Err(CloneError::InUse {
            name: name.to_owned(),
            users,
        });
    }
    // Out of sight in one rename, then deleted (a crash in between leaves a `.tmp-` directory
    // that `reconcile` deletes).
    let gone = tdir.join(format!("{TMP_PREFIX}{}", fsutil::random_hex(8)));
    fs::rename(&dir, &gone).map_err(io_err("renaming", &dir))?;
    sync_dir(&tdir)?;
    fs::remove_dir_all(&gone).map_err(io_err("removing", &gone))?;
    collect_unused(root)?;
    Ok(())
}

/// Deletes the hidden bases no disk uses any more (and finishes interrupted work): called after
/// a VM is removed. Does nothing when there are no templates.
pub fn collect(root: &Path) -> Result<()> {
    if !templates_dir(root).is_dir() {
        return Ok(());
    }
    let _lock = lock(root)?;
    reconcile(root)
}

/// Finishes or undoes what an interrupted command left (see the module's doc), then deletes
/// unused bases. Call under the lock.
pub fn reconcile(root: &Path) -> Result<()> {
    let tdir = templates_dir(root);
    let vms = Vms::open(root);
    for name in entries(&tdir) {
        let dir = tdir.join(&name);
        if name.starts_with(TMP_PREFIX) {
            tracing::info!(dir = %dir.display(), "removing an interrupted template's directory");
            let _ = fs::remove_dir_all(&dir);
            continue;
        }
        let disk = dir.join(DISK_FILE);
        let Ok(meta) = fs::metadata(&disk) else {
            continue;
        };
        if meta.nlink() < 2 {
            continue;
        }
        if name.starts_with(BASE_PREFIX) {
            // Frozen but the VM's disk not yet replaced: undo (drops only the second link).
            tracing::info!(dir = %dir.display(), "undoing an interrupted freeze");
            let _ = fs::remove_dir_all(&dir);
        } else if let Ok(Some(tpl)) = read_template(&tdir, &name) {
            // Made, but the VM not yet removed: finish.
            let upper = vms.dir(&tpl.source_id).join("upper.qcow2");
            if fs::metadata(&upper).is_ok_and(|m| m.ino() == meta.ino() && m.dev() == meta.dev()) {
                tracing::info!(vm = %tpl.source_vm, "finishing an interrupted template");
                let _vm_lock = vms.lock(&tpl.source_id)?;
                remove_vm_files(root, &vms, &tpl.source_id);
            }
        }
    }
    // Overlays being made when a clone was interrupted: never in use.
    for id in vms.ids().unwrap_or_default() {
        for f in entries(&vms.dir(&id)) {
            if f.starts_with(OVERLAY_TMP_PREFIX) {
                let _ = fs::remove_file(vms.dir(&id).join(f));
            }
        }
    }
    collect_unused(root)
}

/// Deletes hidden bases that no disk names as its backing file, until none is left.
fn collect_unused(root: &Path) -> Result<()> {
    let tdir = templates_dir(root);
    loop {
        let used: HashSet<(u64, u64)> = all_disks(root)
            .iter()
            .filter_map(|d| backing_of(d).ok().flatten())
            .filter_map(|b| file_key(&b))
            .collect();
        let mut removed = false;
        for name in entries(&tdir) {
            if !name.starts_with(BASE_PREFIX) {
                continue;
            }
            let dir = tdir.join(&name);
            let Some(key) = file_key(&dir.join(DISK_FILE)) else {
                continue;
            };
            if !used.contains(&key) {
                tracing::info!(base = %dir.display(), "removing an unused base disk");
                fs::remove_dir_all(&dir).map_err(io_err("removing", &dir))?;
                removed = true;
            }
        }
        if !removed {
            return Ok(());
        }
    }
}

/// Every qcow2 disk corral owns: the files under each VM's directory (two levels deep, for
/// disks other features keep there) and the templates' and bases' disks.
fn all_disks(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let vms_dir = root.join("vms");
    for id in entries(&vms_dir) {
        let dir = vms_dir.join(&id);
        if !dir.is_dir() {
            continue;
        }
        for f in entries(&dir) {
            let p = dir.join(&f);
            if p.is_dir() {
                for g in entries(&p) {
                    if g.ends_with(".qcow2") {
                        out.push(p.join(g));
                    }
                }
            } else if f.ends_with(".qcow2") {
                out.push(p);
            }
        }
    }
    let tdir = templates_dir(root);
    for name in entries(&tdir) {
        let d = tdir.join(name).join(DISK_FILE);
        if d.is_file() {
            out.push(d);
        }
    }
    out
}

/// The VMs (by name) and templates whose disks are backed by `disk`, directly or through
/// other bases.
fn users_of(root: &Path, disk: &Path, disks: &[PathBuf]) -> Vec<String> {
    let Some(target) = file_key(disk) else {
        return Vec::new();
    };
    let vms = Vms::open(root);
    let tdir = templates_dir(root);
    let mut users = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for d in disks {
        if file_key(d) == Some(target) {
            continue;
        }
        let chain = backing_chain(d);
        if !chain.iter().any(|b| file_key(b) == Some(target)) {
            continue;
        }
        let owner = d.parent().unwrap_or(Path::new("/"));
        let who = if owner.parent() == Some(&tdir) {
            let n = owner
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if n.starts_with('.') {
                // A hidden base: its users are listed through their own disks.
                continue;
            }
            format!("template {n}")
        } else {
            let id = d
                .strip_prefix(root.join("vms"))
                .ok()
                .and_then(|p| p.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .unwrap_or_default();
            match vms.config(&id) {
                Ok(c) => format!("VM {}", c.name),
                Err(_) => format!("VM {}", &id[..12.min(id.len())]),
            }
        };
        if seen.insert(who.clone(), ()).is_none() {
            users.push(who);
        }
    }
    users.sort();
    users
}

/// The backing files of `disk`, nearest first.
fn backing_chain(disk: &Path) -> Vec<PathBuf> {
    let mut chain = Vec::new();
    let mut cur = disk.to_owned();
    while chain.len() < MAX_CHAIN {
        match backing_of(&cur) {
            Ok(Some(b)) => {
                chain.push(b.clone());
                cur = b;
            }
            _ => break,
        }
    }
    chain
}

/// `disk`'s backing file, resolved against its directory when relative.
fn backing_of(disk: &Path) -> Result<Option<PathBuf>> {
    Ok(qcow2_header(disk)?.backing.map(|b| {
        if b.is_absolute() {
            b
        } else {
            disk.parent().unwrap_or(Path::new(".")).join(b)
        }
    }))
}

/// What corral reads of a qcow2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    /// The virtual size, bytes.
    pub size: u64,
    /// The backing file as written in the header.
    pub backing: Option<PathBuf>,
}

/// Reads a qcow2 header (QEMU's docs/interop/qcow2.txt: magic `QFI\xfb` at 0, the backing
/// file name's offset at 8 and length at 16, big-endian, the virtual size at 24). Read
/// directly rather than through `qemu-img info`: a scan of every disk runs on each removal,
/// and a process per disk would cost ~10 ms each.
pub fn qcow2_header(path: &Path) -> Result<Qcow2Header> {
    let bad = |reason: &str| CloneError::Qcow2 {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let f = fs::File::open(path).map_err(io_err("opening", path))?;
    let mut h = [0u8; 32];
    f.read_exact_at(&mut h, 0)
        .map_err(|_| bad("shorter than a header"))?;
    if &h[..4] != b"QFI\xfb" {
        return Err(bad("no qcow2 magic"));
    }
    let be64 = |at: usize| u64::from_be_bytes(h[at..at + 8].try_into().expect("8 bytes"));
    let offset = be64(8);
    let len = u32::from_be_bytes(h[16..20].try_into().expect("4 bytes")) as usize;
    let size = be64(24);
    let backing = if offset == 0 || len == 0 {
        None
    } else {
        if len > 1023 {
            return Err(bad("backing file name longer than 1023 bytes"));
        }
        let mut name = vec![0u8; len];
        f.read_exact_at(&mut name, offset)
            .map_err(|_| bad("backing file name past the end"))?;
        use std::os::unix::ffi::OsStringExt;
        Some(PathBuf::from(std::ffi::OsString::from_vec(name)))
    };
    Ok(Qcow2Header { size, backing })
}

/// `qemu-img create -f qcow2 -F qcow2 -b BASE PATH SIZE`, synced.
pub fn create_overlay(base: &Path, path: &Path, size: u64) -> Result<()> {
    let base = std::path::absolute(base).map_err(io_err("resolving", base))?;
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&base)
        .arg(path)
        .arg(size.to_string())
        .output()
        .map_err(|e| {
            CloneError::QemuImg(format!("cannot run it ({e}): apt-get install qemu-utils"))
        })?;
    if !out.status.success() {
        let _ = fs::remove_file(path);
        return Err(CloneError::QemuImg(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", path))
}

/// Hard-links `from` to `to` and makes it read-only (mode 0444), synced.
fn link_read_only(from: &Path, to: &Path) -> Result<()> {
    fs::hard_link(from, to).map_err(io_err("linking", to))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o444)).map_err(io_err("chmod", to))?;
    fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing", to))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

fn read_template(tdir: &Path, name: &str) -> Result<Option<Template>> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Ok(None);
    }
    Ok(fsutil::read_json(&tdir.join(name).join(TEMPLATE_FILE))?)
}

/// The names in `dir` (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn file_key(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_qemu_img() -> bool {
        let ok = Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIPPED: qemu-img not installed (apt-get install qemu-utils)");
        }
        ok
    }

    fn qcow2(path: &Path, size: &str) {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(path)
            .arg(size)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn machine_ids_come_from_the_vm_id() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(machine_id(&id), "0123456789abcdef0123456789abcdef");
        assert_eq!(machine_id("short"), "");
        assert!(check_template_name("web-base").is_ok());
        for bad in ["ls", "rm", ".base-x", "a/b", ""] {
            assert!(check_template_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_name_backing_files_and_sizes() {
        if !have_qemu_img() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base.qcow2");
        qcow2(&base, "100M");
        let h = qcow2_header(&base).unwrap();
        assert_eq!(
            h,
            Qcow2Header {
                size: 100 << 20,
                backing: None
            }
        );
        let top = t.path().join("top.qcow2");
        create_overlay(&base, &top, 100 << 20).unwrap();
        let h = qcow2_header(&top).unwrap();
        assert_eq!(h.size, 100 << 20);
        assert_eq!(h.backing.as_deref(), Some(base.as_path()));
        assert_eq!(backing_chain(&top), vec![base.clone()]);
        fs::write(t.path().join("raw"), [0u8; 64]).unwrap();
        assert!(matches!(
            qcow2_header(&t.path().join("raw")),
            Err(CloneError::Qcow2 { .. })
        ));
    }

    /// A root with a VM directory (no config: only its disk matters here) whose disk is an
    /// overlay on one base, a second base nobody uses, and a base frozen but not committed.
    #[test]
    fn unused_and_interrupted_bases_go_used_ones_stay() {
        if !have_qemu_img() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let tdir = templates_dir(root);
        let mk_base = |name: &str| {
            let d = tdir.join(name);
            fs::create_dir_all(&d).unwrap();
            qcow2(&d.join(DISK_FILE), "64M");
            d
        };
        let used = mk_base(".base-used");
        let unused = mk_base(".base-unused");
        // A chain: a base backed by the unused one keeps it, until it goes itself.
        let chained = tdir.join(".base-chained");
        fs::create_dir_all(&chained).unwrap();
        create_overlay(&unused.join(DISK_FILE), &chained.join(DISK_FILE), 64 << 20).unwrap();
        let vm = root.join("vms").join("a".repeat(64));
        fs::create_dir_all(&vm).unwrap();
        create_overlay(&used.join(DISK_FILE), &vm.join("upper.qcow2"), 64 << 20).unwrap();
        // Interrupted freeze: the base's disk is still a second link of a VM's disk.
        let other = root.join("vms").join("b".repeat(64));
        fs::create_dir_all(&other).unwrap();
        qcow2(&other.join("upper.qcow2"), "64M");
        let frozen = tdir.join(".base-frozen");
        fs::create_dir_all(&frozen).unwrap();
        fs::hard_link(other.join("upper.qcow2"), frozen.join(DISK_FILE)).unwrap();
        let tmp = tdir.join(".tmp-x");
        fs::create_dir_all(&tmp).unwrap();

        collect(root).unwrap();
        assert!(used.is_dir(), "a base in use stays");
        assert!(
            !unused.exists() && !chained.exists(),
            "unused bases go, chains too"
        );
        assert!(!frozen.exists(), "an interrupted freeze is undone");
        assert!(
            other.join("upper.qcow2").is_file(),
            "the VM's own disk stays"
        );
        assert!(!tmp.exists());
        // Once the VM goes, so does its base.
        fs::remove_dir_all(&vm).unwrap();
        collect(root).unwrap();
        assert!(!used.exists());
    }
}
