//! Making a VM: what it boots from ([`Source`]), what `vm create` asks for ([`CreateSpec`]),
//! and the disks, initramfs and seed built for it.

use super::*;

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
        /// The guest's hostname (default: the VM's name).
        hostname: Option<String>,
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
        Source::Sandbox { share, hostname } => {
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
                hostname: hostname.clone(),
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
