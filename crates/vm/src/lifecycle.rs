//! A VM's life, as the CLI drives it: create (disks, kernel, initramfs, config), start (TAP
//! endpoints, boot plan, the monitor), stop, kill, remove, and what `ls`/`inspect` show.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_guest::proto;

use crate::monitor::{self, BootPlan};
use crate::qmp::Qmp;
use crate::store::{Accel, BootSource, NetRequest, Status, StoreError, VmConfig, VmState, Vms};
use crate::{disk, initramfs, kernel};

/// Why a VM command failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// State on disk.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input, with what to do.
    #[error("{0}")]
    Invalid(String),
    /// The image store.
    #[error(transparent)]
    Image(#[from] corral_image::store::StoreError),
    /// Kernel, initramfs or disks.
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    /// The guest kernel.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    /// The initramfs.
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
    /// Networks.
    #[error(transparent)]
    Net(#[from] corral_net::NetError),
    /// The VM did not start; `code` is the exit code to use.
    #[error("{message}")]
    Start {
        /// docker-style exit code.
        code: i32,
        /// What went wrong, with the console's tail.
        message: String,
    },
    /// The VM is not in a state for this.
    #[error("{0}")]
    State(String),
    /// Something else on the host.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

type Result<T> = std::result::Result<T, VmError>;

use crate::resources::check_budget;
pub use crate::resources::{
    memory_budget, set, settings, stats, MemoryBudget, SetOutcome, SetSpec, VmSettings, VmStats,
};

/// What the guest boots from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An OCI image of the image store.
    Image {
        /// The image's name or id.
        image: String,
        /// A kernel other than the one corral finds in /boot.
        kernel: Option<PathBuf>,
    },
    /// An empty disk of `size` bytes (qcow2) to install onto, from the `--cdrom`.
    BlankDisk {
        /// Its size.
        size: u64,
        /// Boot through UEFI.
        uefi: bool,
    },
    /// A bootable raw or qcow2 disk.
    BootDisk {
        /// The disk.
        path: PathBuf,
        /// Boot through UEFI.
        uefi: bool,
        /// Use the file where it is instead of a copy in the VM's directory.
        in_place: bool,
    },
    /// A pod's VM: no image of its own; `share` (a host directory) holds its members' roots.
    Sandbox {
        /// The directory to share into the guest.
        share: PathBuf,
    },
    /// A kernel, initramfs and command line.
    Kernel {
        /// The kernel.
        kernel: PathBuf,
        /// The initramfs.
        initrd: Option<PathBuf>,
        /// The command line.
        cmdline: String,
    },
}

/// What `vm create` / `vm run` ask for.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// The name; generated when `None`.
    pub name: Option<String>,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Forced accelerator; detected when `None`.
    pub accel: Option<Accel>,
    /// The boot source.
    pub source: Source,
    /// Size of the writable disk (image boots), bytes.
    pub disk_bytes: u64,
    /// Networks, in NIC order.
    pub networks: Vec<NetRequest>,
    /// The command (image boots): replaces the image's cmd.
    pub command: Vec<String>,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Extra `KEY=VALUE`s.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// `UID[:GID]`.
    pub user: Option<String>,
    /// Remove the VM when it stops.
    pub auto_remove: bool,
    /// A cloud-init user-data file (disk boots).
    pub cloud_init: Option<PathBuf>,
    /// Seconds to wait for the agent.
    pub boot_timeout_secs: u64,
    /// Run the main process on a terminal.
    pub tty: bool,
    /// Feed the main process's stdin from the attached client.
    pub interactive: bool,
    /// When to start it again after it ends (`--restart`).
    pub restart: corral_container::config::RestartPolicy,
    /// An ISO image for the CD-ROM drive (disk boots): an installer.
    pub cdrom: Option<PathBuf>,
    /// A screen behind VNC (`--graphics vnc`).
    pub vnc: bool,
}

/// Where corral keeps built kernels' initramfs and image disks: `CORRAL_ROOT/vm-cache`.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("vm-cache")
}

/// The host's memory in MiB (`MemTotal`).
pub(crate) fn host_memory_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Makes a VM: checks the request, builds (or finds cached) the image disk and initramfs,
/// makes the writable disk, and records the config. The VM is not started.
pub fn create(root: &Path, spec: &CreateSpec) -> Result<VmConfig> {
    let vms = Vms::open(root);
    if spec.cpus == 0 || spec.cpus > 255 {
        return Err(VmError::Invalid(format!(
            "--cpus {}: give 1 to 255",
            spec.cpus
        )));
    }
    if spec.memory_mib < 64 {
        return Err(VmError::Invalid(format!(
            "--memory {}M is too small for a Linux guest: give at least 64M",
            spec.memory_mib
        )));
    }
    if let Some(host) = host_memory_mib() {
        if spec.memory_mib > host {
            return Err(VmError::Invalid(format!(
                "--memory {}M is more than this host has ({host}M): give less",
                spec.memory_mib
            )));
        }
    }
    if spec.auto_remove && spec.restart != corral_container::config::RestartPolicy::No {
        return Err(VmError::Invalid(
            "--rm and --restart conflict: a VM removed when it stops cannot start again".into(),
        ));
    }
    for req in &spec.networks {
        if let Some(m) = &req.mac {
            match corral_net::endpoint::parse_mac(m) {
                Some(b) if b[0] & 1 == 0 => {}
                Some(_) => {
                    return Err(VmError::Invalid(format!(
                        "--mac-address {m}: a multicast address (the first byte is odd); use a unicast one"
                    )))
                }
                None => {
                    return Err(VmError::Invalid(format!(
                        "--mac-address {m:?}: six hexadecimal bytes separated by ':', as 02:42:ac:11:00:02"
                    )))
                }
            }
        }
    }
    let accel = spec
        .accel
        .unwrap_or_else(|| crate::qemu::detect_accel().best);
    let id = crate::store::new_id();
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("vm-{}", &id[..8]));
    crate::store::check_name(&name)?;
    let dir = vms.dir(&id);
    if matches!(spec.source, Source::Image { .. }) && spec.disk_bytes < 64 << 20 {
        return Err(disk::DiskError::TooSmall(spec.disk_bytes).into());
    }
    // Marked with this process first, so that a crash while the disks are built leaves a
    // directory the next listing knows to remove.
    let made = vms
        .begin(&id)
        .map_err(VmError::from)
        .and_then(|_| build_boot(root, spec, &vms, &id, &name));
    let (boot, main, upper_disk, seed) = match made {
        Ok(parts) => parts,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let cfg = VmConfig {
        id: id.clone(),
        name,
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        cpus: spec.cpus,
        memory_mib: spec.memory_mib,
        accel,
        boot,
        upper_disk,
        extra_cmdline: String::new(),
        networks: spec.networks.clone(),
        main,
        auto_remove: spec.auto_remove,
        seed,
        boot_timeout_secs: spec.boot_timeout_secs,
        data_disks: Vec::new(),
        cdrom: spec.cdrom.clone(),
        vnc: spec.vnc,
        restart: spec.restart,
    };
    let made = (|| {
        let _names = vms.names_lock()?;
        vms.create(&cfg)
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.into());
    }
    // Addresses asked for are the VM's from now on: a conflict is refused here, not at a
    // later start, and nothing of the VM stays.
    let nets = corral_net::Networks::open(root);
    for req in &cfg.networks {
        if let Some(ip) = req.ip {
            if let Err(e) = nets.reserve(&req.network, &cfg.id, ip) {
                let _ = nets.release(&cfg.id);
                let _ = vms.remove_files(&cfg.id);
                return Err(VmError::Invalid(format!("--ip {ip}: {e}")));
            }
        }
    }
    Ok(cfg)
}

type BootParts = (
    BootSource,
    Option<proto::Exec>,
    Option<PathBuf>,
    Option<PathBuf>,
);

/// Builds what the VM boots from: image disk, initramfs, writable disk, seed.
fn build_boot(
    root: &Path,
    spec: &CreateSpec,
    vms: &Vms,
    id: &str,
    name: &str,
) -> Result<BootParts> {
    let cache = cache_dir(root);
    let dir = vms.dir(id);
    let mut main = None;
    let mut upper_disk = None;
    let mut seed = None;
    let boot = match &spec.source {
        Source::Image { image, kernel: k } => {
            let store = corral_image::Store::open(root.join("images"))?;
            let img = store.resolve(image)?;
            let guest = kernel::GuestKernel::find(k.as_deref())?;
            let agent = initramfs::agent_path()?;
            let initrd = initramfs::build_initramfs(&cache.join("initramfs"), &guest, &agent)?;
            let image_disk = disk::image_disk(&store, &img, &cache.join("disks"))?;
            main = Some(main_exec(&img, spec)?);
            std::fs::create_dir_all(&dir).map_err(|e| VmError::Io(dir.display().to_string(), e))?;
            let upper = dir.join("upper.qcow2");
            disk::create_upper_disk_cached(&cache.join("upper"), &upper, spec.disk_bytes)?;
            upper_disk = Some(upper);
            BootSource::Image {
                image: image.clone(),
                digest: img.digest.to_string(),
                image_disk,
                kernel: guest.kernel.clone(),
                initrd,
            }
        }
        Source::Sandbox { share } => {
            let guest = kernel::GuestKernel::find(None)?;
            let agent = initramfs::agent_path()?;
            let initrd = initramfs::build_initramfs_with(
                &cache.join("initramfs"),
                &guest,
                &agent,
                initramfs::SANDBOX_MODULES,
            )?;
            BootSource::Sandbox {
                kernel: guest.kernel.clone(),
                initrd,
                share: absolute(share)?,
            }
        }
        Source::BlankDisk { size, uefi } => {
            if spec.cdrom.is_none() {
                return Err(VmError::Invalid(
                    "an empty disk needs something to install from: give --cdrom FILE.iso".into(),
                ));
            }
            if *size < 1 << 20 {
                return Err(VmError::Invalid(format!("--disk {size}: give at least 1M")));
            }
            if *uefi && !Path::new(crate::qemu::OVMF).is_file() {
                return Err(VmError::Invalid(format!(
                    "--uefi needs OVMF ({}): apt-get install ovmf",
                    crate::qemu::OVMF
                )));
            }
            std::fs::create_dir_all(&dir).map_err(|e| VmError::Io(dir.display().to_string(), e))?;
            let path = dir.join("boot.qcow2");
            blank_qcow2(&path, *size)?;
            BootSource::Disk {
                path,
                format: "qcow2".into(),
                uefi: *uefi,
            }
        }
        Source::BootDisk {
            path,
            uefi,
            in_place,
        } => {
            let format = disk_format(path)?;
            if *uefi && !Path::new(crate::qemu::OVMF).is_file() {
                return Err(VmError::Invalid(format!(
                    "--uefi needs OVMF ({}): apt-get install ovmf",
                    crate::qemu::OVMF
                )));
            }
            // Absolute: the monitor, and a later `vm start`, may run from another directory.
            let path = &absolute(path)?;
            // The VM's own copy, which its `rm` removes and no other VM locks; the user's
            // file stays as it was.
            let imported;
            let path = if *in_place {
                path
            } else {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| VmError::Io(dir.display().to_string(), e))?;
                imported = import_disk(path, &format, &dir)?;
                &imported
            };
            if let Some(ud) = &spec.cloud_init {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| VmError::Io(dir.display().to_string(), e))?;
                let s = dir.join("seed.iso");
                crate::seed::nocloud_seed(&s, ud, name).map_err(VmError::Invalid)?;
                // Kept to make the seed again with the network configuration at start.
                std::fs::copy(ud, dir.join(crate::seed::USER_DATA))
                    .map_err(|e| VmError::Io(ud.display().to_string(), e))?;
                seed = Some(s);
            }
            BootSource::Disk {
                path: path.clone(),
                format,
                uefi: *uefi,
            }
        }
        Source::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            for p in std::iter::once(kernel).chain(initrd.iter()) {
                if !p.is_file() {
                    return Err(VmError::Invalid(format!("{}: no such file", p.display())));
                }
            }
            BootSource::Kernel {
                kernel: absolute(kernel)?,
                initrd: initrd.as_deref().map(absolute).transpose()?,
                cmdline: cmdline.clone(),
            }
        }
    };
    Ok((boot, main, upper_disk, seed))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| VmError::Io(path.display().to_string(), e))
}

/// Copies a boot disk into the VM's directory (`boot.raw`/`boot.qcow2`): a reflink where the
/// filesystem can, else a sparse copy. A qcow2 with a backing file is refused: its backing
/// path would not follow the copy.
fn import_disk(path: &Path, format: &str, dir: &Path) -> Result<PathBuf> {
    if format == "qcow2" {
        let out = Command::new("qemu-img")
            .args(["info", "-U", "--output=json"])
            .arg(path)
            .output()
            .map_err(|e| VmError::Io("running qemu-img (apt-get install qemu-utils)".into(), e))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v.get("backing-filename").is_some() {
            return Err(VmError::Invalid(format!(
                "--boot-disk {}: a qcow2 with a backing file cannot be copied on its own: flatten it (`qemu-img convert -O qcow2 {} flat.qcow2`) or use it where it is (--boot-disk-in-place)",
                path.display(),
                path.display()
            )));
        }
    }
    let dest = dir.join(format!("boot.{format}"));
    let out = Command::new("cp")
        .args(["--reflink=auto", "--sparse=always"])
        .arg(path)
        .arg(&dest)
        .output()
        .map_err(|e| VmError::Io("running cp".into(), e))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&dest);
        return Err(VmError::Invalid(format!(
            "importing --boot-disk {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(dest)
}

/// An empty qcow2 disk of `size` bytes (no filesystem: an installer partitions it).
fn blank_qcow2(path: &Path, size: u64) -> Result<()> {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size.to_string())
        .output()
        .map_err(|e| VmError::Io("running qemu-img (apt-get install qemu-utils)".into(), e))?;
    if !out.status.success() {
        return Err(VmError::Invalid(format!(
            "making the empty disk: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn disk_format(path: &Path) -> Result<String> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path)
        .map_err(|e| VmError::Invalid(format!("--boot-disk {}: {e}", path.display())))?;
    let n = f.read(&mut head).unwrap_or(0);
    Ok(if n == 4 && &head == b"QFI\xfb" {
        "qcow2"
    } else {
        "raw"
    }
    .to_owned())
}

/// The main process of an image VM: the image's entrypoint and cmd, environment, working
/// directory and user, as `corral run` takes them, with the user's overrides.
fn main_exec(img: &corral_image::store::Image, spec: &CreateSpec) -> Result<proto::Exec> {
    let cfg = img.config.config().clone().unwrap_or_default();
    let entrypoint = match &spec.entrypoint {
        Some(e) => e.clone(),
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd = if !spec.command.is_empty() {
        spec.command.clone()
    } else if spec.entrypoint.is_some() {
        Vec::new()
    } else {
        cfg.cmd().clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(VmError::Invalid(
            "the image has no command: give one after `--` (e.g. `-- /bin/sh`)".into(),
        ));
    }
    let mut env = cfg.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    for e in &spec.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let user = spec
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let (uid, gid) = parse_user(&user)?;
    Ok(proto::Exec {
        argv,
        env,
        cwd: spec
            .workdir
            .clone()
            .or_else(|| cfg.working_dir().clone())
            .unwrap_or_default(),
        uid,
        gid,
        tty: spec.tty,
        rows: 0,
        cols: 0,
        stdin: spec.interactive,
        root: String::new(),
    })
}

/// `UID[:GID]`, numeric (names would need the image's /etc/passwd, read in the guest).
pub fn parse_user(user: &str) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid: u32 = u.parse().map_err(|_| {
        VmError::Invalid(format!(
            "user {user:?}: VMs take a numeric UID[:GID] for now"
        ))
    })?;
    let gid: u32 = if g.is_empty() {
        uid
    } else {
        g.parse()
            .map_err(|_| VmError::Invalid(format!("user {user:?}: the group must be numeric")))?
    };
    Ok((uid, gid))
}

/// Is `pid` alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A VM's state, corrected by what runs: a VM whose monitor and QEMU are gone is stopped.
pub fn current_state(vms: &Vms, id: &str) -> Result<VmState> {
    let mut st = vms.state(id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        let monitor = st.monitor_pid.is_some_and(alive);
        let qemu = st.qemu_pid.is_some_and(alive);
        if !monitor && !qemu {
            st.status = Status::Stopped;
            st.error
                .get_or_insert_with(|| "the VM's monitor died; its exit is unknown".into());
            st.monitor_pid = None;
            st.qemu_pid = None;
        } else if !monitor {
            st.error =
                Some("the VM's monitor died; QEMU still runs (`corral vm rm -f` ends it)".into());
        }
    }
    Ok(st)
}

/// A started VM: the monitor's process, whose exit code is the main process's.
pub struct Started {
    /// The monitor (the caller's child). Its standard output carries the last words of a VM
    /// removed with `--rm`: see [`Started::error`].
    pub monitor: Child,
    /// The VM's id.
    pub id: String,
}

impl Started {
    /// Once the monitor has ended: why the VM failed, from its state, or from the monitor's
    /// last words when `--rm` removed the state with the VM.
    pub fn error(&mut self, root: &Path) -> Option<String> {
        if let Ok(st) = Vms::open(root).state(&self.id) {
            return st.error;
        }
        let mut words = String::new();
        let _ = self.monitor.stdout.take()?.read_to_string(&mut words);
        let rest = words.strip_prefix("ERR ")?;
        Some(rest.split_once(' ').map_or(rest, |(_, m)| m).to_owned())
    }
}

/// Starts a created or stopped VM: joins its networks, writes its boot plan, starts the
/// monitor and waits until the guest agent answered (or QEMU runs, for guests without one).
/// With `attach`, the main process waits for a client to attach (see [`crate::client`]).
pub fn start(root: &Path, id: &str, attach: bool, exe: &Path) -> Result<Started> {
    start_with(
        root,
        id,
        exe,
        &StartOptions {
            attach,
            ..Default::default()
        },
    )
}

/// Starts a stopped VM from its snapshot `name` with memory (see [`crate::snapshot`]): the
/// guest resumes where the snapshot left it, main process included, on the addresses it had.
pub fn start_from_snapshot(
    root: &Path,
    id: &str,
    name: &str,
    keep: Vec<(Option<std::net::Ipv4Addr>, Option<[u8; 6]>)>,
    exe: &Path,
) -> Result<Started> {
    start_with(
        root,
        id,
        exe,
        &StartOptions {
            loadvm: Some(name.to_owned()),
            keep,
            ..Default::default()
        },
    )
}

/// How a VM starts.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The main process waits for a client to attach.
    pub attach: bool,
    /// Start from this snapshot with memory.
    pub loadvm: Option<String>,
    /// Wait, paused, for an incoming migration (see [`crate::migrate`]).
    pub incoming: bool,
    /// Where to listen for it (`tcp:HOST:PORT`).
    pub incoming_uri: Option<String>,
    /// Per NIC: the address and MAC to take again (a resumed or migrated guest has them).
    pub keep: Vec<(Option<std::net::Ipv4Addr>, Option<[u8; 6]>)>,
}

/// Starts a VM as `opts` say.
pub fn start_with(root: &Path, id: &str, exe: &Path, opts: &StartOptions) -> Result<Started> {
    let attach = opts.attach;
    let keep = &opts.keep;
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let cfg = vms.config(id)?;
    let st = current_state(&vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        return Err(VmError::State(format!(
            "VM {} is already running",
            cfg.name
        )));
    }
    if st.restart_count > 0 && std::env::var_os(monitor::RESTART_ENV).is_none() {
        // Started by hand: the restart policy counts again from zero.
        let mut st = st.clone();
        st.restart_count = 0;
        let _ = vms.save_state(id, &st);
    }
    check_budget(root, &cfg.name, cfg.memory_mib)?;
    if let Some(iso) = &cfg.cdrom {
        if !iso.is_file() {
            return Err(VmError::Invalid(format!(
                "the CD-ROM of VM {} ({}) is gone: put another in (`corral vm set {} --cdrom FILE`) or eject it (`--cdrom none`)",
                cfg.name,
                iso.display(),
                cfg.name
            )));
        }
    }
    if let Some(upper) = &cfg.upper_disk {
        crate::clone::check_not_shared(upper).map_err(VmError::State)?;
    }
    if let BootSource::Disk { path, format, .. } = &cfg.boot {
        if format == "qcow2" && path.starts_with(vms.dir(id)) {
            crate::clone::check_not_shared(path).map_err(VmError::State)?;
        }
    }
    let nets = corral_net::Networks::open(root);
    // Endpoints left from a start that did not finish go first.
    let _ = nets.release_keeping_addresses(id);
    let mut plan = BootPlan::default();
    let joined = (|| -> Result<()> {
        for (i, req) in cfg.networks.iter().enumerate() {
            let mut ports = Vec::new();
            for p in &req.ports {
                ports.push(
                    p.parse::<corral_net::PortSpec>()
                        .map_err(|e| VmError::Invalid(format!("-p {p:?}: {e}")))?,
                );
            }
            let opts = corral_net::ConnectOptions {
                aliases: req.aliases.clone(),
                ports,
                ip: keep.get(i).and_then(|k| k.0).or(req.ip),
                mac: keep
                    .get(i)
                    .and_then(|k| k.1)
                    .or_else(|| req.mac.as_deref().and_then(corral_net::endpoint::parse_mac)),
                ..Default::default()
            };
            let ep = nets.attach_vm(id, &cfg.name, &req.network, opts, exe)?;
            plan.nics.push((ep.host_ifname.clone(), ep.mac.clone()));
            plan.boot.interfaces.push(proto::Interface {
                mac: ep.mac.clone(),
                name: format!("eth{i}"),
                address: format!("{}/{}", ep.ip, ep.prefix),
                gateway: (i == 0).then(|| ep.gateway.to_string()),
                mtu: None,
            });
            if i == 0 {
                plan.boot.nameservers.extend(
                    corral_net::attach::nameservers(&ep)
                        .iter()
                        .map(|n| n.to_string()),
                );
            }
            plan.boot.hosts.push(format!("{}\t{}", ep.ip, cfg.name));
        }
        Ok(())
    })();
    if let Err(e) = joined {
        let _ = nets.release_keeping_addresses(id);
        return Err(e);
    }
    plan.boot.hostname = cfg.name.clone();
    plan.boot.machine_id = crate::clone::machine_id(&cfg.id);
    if cfg.vnc {
        match vnc_setup(&vms, id) {
            Ok(port) => plan.vnc_port = Some(port),
            Err(e) => {
                let _ = nets.release_keeping_addresses(id);
                return Err(e);
            }
        }
    }
    if let Err(e) = refresh_seed(&vms, &cfg, &plan) {
        let _ = nets.release_keeping_addresses(id);
        return Err(e);
    }
    plan.loadvm = opts.loadvm.clone();
    plan.incoming = opts.incoming;
    plan.incoming_uri = opts.incoming_uri.clone();
    plan.incoming_owner = opts.incoming.then(|| std::process::id() as i32);
    match &cfg.boot {
        BootSource::Image { .. } => {
            plan.boot.root = Some(proto::RootDisks {
                image_serial: "image".into(),
                upper_serial: "upper".into(),
            });
        }
        BootSource::Sandbox { .. } => plan.boot.shares.push(proto::Share {
            tag: crate::store::SANDBOX_SHARE_TAG.into(),
            at: crate::store::SANDBOX_SHARE_AT.into(),
        }),
        BootSource::Kernel { .. } | BootSource::Disk { .. } => {}
    }
    corral_net::fsutil::write_json_runtime(&monitor::plan_path(&vms, id), &plan)
        .map_err(StoreError::from)?;
    let small = exe.with_file_name("corral-vm-monitor");
    let mut cmd = if small.is_file() {
        Command::new(small)
    } else {
        let mut c = Command::new(exe);
        c.arg("__vm-monitor");
        c
    };
    cmd.arg(root).arg(id);
    if attach {
        cmd.arg("--attach");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    use std::os::unix::process::CommandExt;
    let mut child = cmd.spawn().map_err(|e| {
        let _ = nets.release_keeping_addresses(id);
        VmError::Io(
            format!("cannot start the VM monitor ({})", exe.display()),
            e,
        )
    })?;
    // `OK`, and the pipe stays open for the last words; or `ERR ...` and the monitor ends.
    let mut msg = String::new();
    if let Some(mut out) = child.stdout.take() {
        let mut head = [0u8; 2];
        if out.read_exact(&mut head).is_ok() {
            msg.push_str(&String::from_utf8_lossy(&head));
            if msg == "OK" {
                child.stdout = Some(out);
            } else {
                let _ = out.read_to_string(&mut msg);
            }
        }
    }
    if msg == "OK" {
        return Ok(Started {
            monitor: child,
            id: id.to_owned(),
        });
    }
    let _ = child.wait();
    let _ = nets.release_keeping_addresses(id);
    let (code, message) = match msg.strip_prefix("ERR ") {
        Some(rest) => {
            let (c, m) = rest.split_once(' ').unwrap_or(("125", rest));
            (c.parse().unwrap_or(125), m.to_owned())
        }
        None => (
            125,
            "the VM monitor exited before the VM started".to_owned(),
        ),
    };
    Err(VmError::Start { code, message })
}

/// Puts the addresses this start gave a disk-booted VM's NICs into its cloud-init seed
/// (`network-config`, matched by MAC), when it has a seed and they changed since it was made:
/// an image without a DHCP client configures them from there.
fn refresh_seed(vms: &Vms, cfg: &VmConfig, plan: &BootPlan) -> Result<()> {
    let Some(seed) = &cfg.seed else {
        return Ok(());
    };
    let dir = vms.dir(&cfg.id);
    let Ok(data) = std::fs::read(dir.join(crate::seed::USER_DATA)) else {
        // Made before the seed kept its user-data: left as it was made.
        return Ok(());
    };
    let nics: Vec<crate::seed::SeedNic> = plan
        .boot
        .interfaces
        .iter()
        .map(|i| crate::seed::SeedNic {
            mac: i.mac.clone(),
            address: i.address.clone(),
            gateway: i.gateway.clone(),
        })
        .collect();
    if nics.is_empty() {
        return Ok(());
    }
    let text = crate::seed::network_config(&nics, &plan.boot.nameservers);
    let kept = dir.join(crate::seed::NETWORK_CONFIG);
    if std::fs::read_to_string(&kept).is_ok_and(|k| k == text) {
        return Ok(());
    }
    crate::seed::nocloud_seed_with(seed, &data, &cfg.name, Some(&text))
        .map_err(VmError::Invalid)?;
    std::fs::write(&kept, text).map_err(|e| VmError::Io(kept.display().to_string(), e))
}

/// Where a VM's screen is: the VNC server's loopback port and its password for this run.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct VncAccess {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The password (8 characters: VNC's authentication uses no more).
    pub password: String,
}

/// The file (mode 0600, in the VM's runtime directory) that holds a running VM's VNC password,
/// which QEMU reads as a secret.
const VNC_PASSWORD: &str = "vnc-password";
/// The file that says where the VNC server listens.
const VNC_PORT: &str = "vnc-port";

/// Picks a free loopback port for a VM's VNC server and makes its password for this start.
fn vnc_setup(vms: &Vms, id: &str) -> Result<u16> {
    let run = vms.run_dir(id);
    std::fs::create_dir_all(&run).map_err(|e| VmError::Io(run.display().to_string(), e))?;
    let port = (5900u16..6000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| VmError::Invalid("no free VNC port on 127.0.0.1 (5900-5999)".into()))?;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| VmError::Io("/dev/urandom".into(), e))?;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679";
    let password: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let path = run.join(VNC_PASSWORD);
    let _ = std::fs::remove_file(&path);
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, password.as_bytes()));
    written.map_err(|e| VmError::Io(path.display().to_string(), e))?;
    std::fs::write(run.join(VNC_PORT), port.to_string())
        .map_err(|e| VmError::Io(run.display().to_string(), e))?;
    Ok(port)
}

/// Where a running VM's screen is (`vm vnc`).
pub fn vnc_access(root: &Path, id: &str) -> Result<VncAccess> {
    let vms = Vms::open(root);
    let cfg = vms.config(id)?;
    if !cfg.vnc {
        return Err(VmError::Invalid(format!(
            "VM {} has no screen: create it with --graphics vnc",
            cfg.name
        )));
    }
    let st = current_state(&vms, id)?;
    if !matches!(st.status, Status::Running | Status::Starting) {
        return Err(VmError::State(format!("VM {} is not running", cfg.name)));
    }
    let run = vms.run_dir(id);
    let read = |f: &str| std::fs::read_to_string(run.join(f)).map(|s| s.trim().to_owned());
    let (Ok(port), Ok(password)) = (read(VNC_PORT), read(VNC_PASSWORD)) else {
        return Err(VmError::State(format!(
            "VM {} runs without its VNC files: restart it",
            cfg.name
        )));
    };
    Ok(VncAccess {
        port: port.parse().unwrap_or(0),
        password,
    })
}

/// Puts `iso` in a stopped disk VM's CD-ROM drive, or ejects it (`None`).
pub fn set_cdrom(root: &Path, id: &str, iso: Option<PathBuf>) -> Result<()> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let mut cfg = vms.config(id)?;
    if !matches!(cfg.boot, BootSource::Disk { .. }) {
        return Err(VmError::Invalid(format!(
            "VM {} boots an image or a kernel: only disk VMs have a CD-ROM drive",
            cfg.name
        )));
    }
    let st = current_state(&vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        return Err(VmError::State(format!(
            "VM {} is running: stop it to change its CD-ROM (`corral vm stop {}`)",
            cfg.name, cfg.name
        )));
    }
    cfg.cdrom = iso;
    vms.save_config(&cfg).map_err(VmError::from)
}

/// Stops a VM: asks the agent (or ACPI) for a clean power-off, waits up to `timeout`, then
/// ends QEMU. Returns whether it had to be killed.
pub fn stop(root: &Path, id: &str, timeout: Duration) -> Result<bool> {
    let vms = Vms::open(root);
    let st = current_state(&vms, id)?;
    if !matches!(st.status, Status::Running | Status::Starting) {
        return Ok(false);
    }
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    // Stopped by the user: the restart policy does not apply (the monitor reads this).
    let _ = std::fs::write(vms.run_dir(id).join(monitor::STOP_REQUESTED), b"");
    let asked = crate::client::Client::connect(&paths.ctl)
        .and_then(|mut c| c.shutdown())
        .is_ok();
    if !asked {
        if let Ok(mut q) = Qmp::connect(&paths.qmp_cli, Duration::from_secs(2)) {
            let _ = q.execute("system_powerdown", None);
        }
    }
    if wait_gone(&st, timeout) {
        return Ok(false);
    }
    kill(root, id)?;
    Ok(true)
}

fn wait_gone(st: &VmState, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let gone = !st.monitor_pid.is_some_and(alive) && !st.qemu_pid.is_some_and(alive);
        if gone {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a VM's QEMU at once (QMP `quit`, else SIGKILL), and waits for its monitor to finish.
pub fn kill(root: &Path, id: &str) -> Result<()> {
    let vms = Vms::open(root);
    let st = current_state(&vms, id)?;
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let _ = std::fs::write(vms.run_dir(id).join(monitor::STOP_REQUESTED), b"");
    if let Ok(mut q) = Qmp::connect(&paths.qmp_cli, Duration::from_secs(2)) {
        let _ = q.quit();
    }
    if !wait_gone(&st, Duration::from_secs(5)) {
        if let Some(pid) = st
            .qemu_pid
            .filter(|p| alive(*p) && is_our_qemu(*p, id, &vms))
        {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        wait_gone(&st, Duration::from_secs(10));
    }
    // A monitor that died left its state: record the stop ourselves.
    let mut st = vms.state(id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        st.status = Status::Stopped;
        st.monitor_pid = None;
        st.qemu_pid = None;
        st.finished_at =
            Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
        vms.save_state(id, &st)?;
        let _ = corral_net::Networks::open(root).release_keeping_addresses(id);
        let _ = std::fs::remove_dir_all(vms.run_dir(id));
        monitor::remove_cgroup(&vms, id);
    }
    Ok(())
}

/// Is `pid` the QEMU of VM `id` (its command line names the VM's runtime directory)?
fn is_our_qemu(pid: i32, id: &str, vms: &Vms) -> bool {
    let run = vms.run_dir(id);
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let needle = run.display().to_string();
            String::from_utf8_lossy(&c).contains(&needle)
        })
        .unwrap_or(false)
}

/// Removes a VM: refuses a running one unless `force` (then kills it first); releases its
/// endpoints and deletes its disks, logs and sockets.
pub fn remove(root: &Path, id: &str, force: bool) -> Result<()> {
    let vms = Vms::open(root);
    let st = current_state(&vms, id)?;
    if matches!(st.status, Status::Running | Status::Starting) {
        if !force {
            let name = vms
                .config(id)
                .map(|c| c.name)
                .unwrap_or_else(|_| id.to_owned());
            return Err(VmError::State(format!(
                "VM {name} is running: stop it first (`corral vm stop {name}`) or use `vm rm -f`"
            )));
        }
        kill(root, id)?;
    }
    let lock = vms.lock(id)?;
    let _ = corral_net::Networks::open(root).release(id);
    monitor::remove_cgroup(&vms, id);
    vms.remove_files(id)?;
    drop(lock);
    // A base disk only this VM used goes with it (after the VM's lock: see crate::clone).
    if let Err(e) = crate::clone::collect(root) {
        tracing::warn!(error = %e, "collecting unused base disks");
    }
    Ok(())
}

/// Starts the VM again after docker's back-off (100 ms, doubling with each restart, at most
/// a minute), through `corral vm start` in a process of its own.
pub(crate) fn restart_later(vms: &Vms, id: &str, state: &mut crate::store::VmState) {
    let delay =
        Duration::from_millis(100u64 << state.restart_count.min(10)).min(Duration::from_secs(60));
    state.restart_count += 1;
    let _ = vms.save_state(id, state);
    tracing::info!(
        vm = id,
        count = state.restart_count,
        "restarting under the restart policy"
    );
    std::thread::sleep(delay);
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // The small monitor executable has no command line: corral is beside it.
    let corral = if exe.file_name().is_some_and(|n| n == "corral-vm-monitor") {
        exe.with_file_name("corral")
    } else {
        exe
    };
    use std::os::unix::process::CommandExt;
    let _ = Command::new(corral)
        .arg("--root")
        .arg(vms.corral_root())
        .args(["vm", "start", id])
        .env(monitor::RESTART_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}
