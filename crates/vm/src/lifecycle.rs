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
    /// A bootable raw or qcow2 disk.
    BootDisk {
        /// The disk.
        path: PathBuf,
        /// Boot through UEFI.
        uefi: bool,
        /// Use the file where it is instead of a copy in the VM's directory.
        in_place: bool,
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
}

/// Where corral keeps built kernels' initramfs and image disks: `CORRAL_ROOT/vm-cache`.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("vm-cache")
}

fn host_memory_mib() -> Option<u64> {
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
    if let Some(upper) = &cfg.upper_disk {
        crate::clone::check_not_shared(upper).map_err(VmError::State)?;
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
    plan.loadvm = opts.loadvm.clone();
    plan.incoming = opts.incoming;
    plan.incoming_uri = opts.incoming_uri.clone();
    plan.incoming_owner = opts.incoming.then(|| std::process::id() as i32);
    if matches!(cfg.boot, BootSource::Image { .. }) {
        plan.boot.root = Some(proto::RootDisks {
            image_serial: "image".into(),
            upper_serial: "upper".into(),
        });
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

/// A VM's usage: QEMU's cgroup on the host, and the guest's own view from the agent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmStats {
    /// The VM's name.
    pub name: String,
    /// CPU time QEMU used, nanoseconds (all vCPU and device threads).
    pub cpu_usage_ns: u64,
    /// Host memory QEMU's cgroup uses, bytes.
    pub memory_usage: u64,
    /// Its limit, bytes.
    pub memory_limit: Option<u64>,
    /// The guest's total memory (after the balloon), KiB, when the agent answers.
    pub guest_mem_total_kib: Option<u64>,
    /// The guest's available memory, KiB.
    pub guest_mem_available_kib: Option<u64>,
    /// The balloon's target: the memory the guest may use now, bytes.
    pub balloon_bytes: Option<u64>,
}

/// Reads a running VM's usage.
pub fn stats(root: &Path, id: &str) -> Result<VmStats> {
    let vms = Vms::open(root);
    let cfg = vms.config(id)?;
    let st = current_state(&vms, id)?;
    if st.status != Status::Running {
        return Err(VmError::State(format!("VM {} is not running", cfg.name)));
    }
    let cgroot = Path::new(monitor::CGROUP_ROOT);
    let dirs = corral_container::cgroups::Cgroup::dirs_for(cgroot, &monitor::cgroup_name(&vms, id));
    let cg = corral_container::cgroups::Cgroup::from_dirs(cgroot, dirs).stats();
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let guest = if st.agent_ready {
        crate::client::Client::connect(&paths.ctl)
            .and_then(|mut c| {
                c.set_timeout(Some(Duration::from_secs(5)))?;
                c.info()
            })
            .ok()
    } else {
        None
    };
    let mut qmp = Qmp::connect(&paths.qmp_cli, Duration::from_secs(2)).ok();
    let balloon = qmp
        .as_mut()
        .and_then(|q| q.execute("query-balloon", None).ok())
        .and_then(|v| v["actual"].as_u64());
    // Without the agent (a disk-booted guest), the guest's memory as its balloon driver
    // reports it.
    let (total, available) = match (&guest, qmp.as_mut()) {
        (Some(g), _) => (Some(g.mem_total_kib), Some(g.mem_available_kib)),
        (None, Some(q)) => balloon_memory(q),
        (None, None) => (None, None),
    };
    Ok(VmStats {
        name: cfg.name,
        cpu_usage_ns: cg.cpu_usage_ns,
        memory_usage: cg.memory_usage,
        memory_limit: cg.memory_limit,
        guest_mem_total_kib: total,
        guest_mem_available_kib: available,
        balloon_bytes: balloon,
    })
}

/// The balloon's QOM path (its device id in `qemu::args`).
const BALLOON: &str = "/machine/peripheral/balloon0";

/// Asks the balloon to collect the guest's memory statistics every second.
pub(crate) fn poll_guest_stats(q: &mut Qmp) {
    let _ = q.execute(
        "qom-set",
        Some(serde_json::json!({
            "path": BALLOON, "property": "guest-stats-polling-interval", "value": 1
        })),
    );
}

/// The guest's total and available memory in KiB from its balloon driver's last report;
/// `None` until it has reported (no driver, or polling just turned on, which it is here).
fn balloon_memory(q: &mut Qmp) -> (Option<u64>, Option<u64>) {
    let interval = q
        .execute(
            "qom-get",
            Some(serde_json::json!({"path": BALLOON, "property": "guest-stats-polling-interval"})),
        )
        .ok()
        .and_then(|v| v.as_u64());
    if interval == Some(0) {
        poll_guest_stats(q);
    }
    let Ok(v) = q.execute(
        "qom-get",
        Some(serde_json::json!({"path": BALLOON, "property": "guest-stats"})),
    ) else {
        return (None, None);
    };
    // -1 (or absent) for what the driver did not report.
    let kib = |k: &str| {
        v["stats"][k]
            .as_i64()
            .filter(|&b| b > 0)
            .map(|b| b as u64 >> 10)
    };
    (kib("stat-total-memory"), kib("stat-available-memory"))
}

/// What `vm set` changes.
#[derive(Debug, Clone, Default)]
pub struct SetSpec {
    /// New memory, MiB.
    pub memory_mib: Option<u64>,
    /// New vCPU count.
    pub cpus: Option<u32>,
}

/// What `vm set` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// The config changed; it applies at the next start.
    Recorded,
    /// A running guest's memory was changed through its balloon (within its boot size).
    Ballooned {
        /// The balloon's target now, MiB.
        mib: u64,
    },
}

/// Changes a VM's memory or CPUs. A stopped VM's config changes. A running VM's memory moves
/// through its balloon, between 64 MiB and the size it booted with; a running VM's CPU count
/// and memory beyond its boot size need a restart (refused with that advice).
pub fn set(root: &Path, id: &str, spec: &SetSpec) -> Result<SetOutcome> {
    let vms = Vms::open(root);
    let _lock = vms.lock(id)?;
    let mut cfg = vms.config(id)?;
    if let Some(c) = spec.cpus {
        if c == 0 || c > 255 {
            return Err(VmError::Invalid(format!("--cpus {c}: give 1 to 255")));
        }
    }
    if let Some(m) = spec.memory_mib {
        if m < 64 {
            return Err(VmError::Invalid(format!(
                "--memory {m}M: give at least 64M"
            )));
        }
        if host_memory_mib().is_some_and(|h| m > h) {
            return Err(VmError::Invalid(format!(
                "--memory {m}M is more than this host has: give less"
            )));
        }
    }
    let st = current_state(&vms, id)?;
    if !matches!(st.status, Status::Running | Status::Starting) {
        if let Some(m) = spec.memory_mib {
            cfg.memory_mib = m;
        }
        if let Some(c) = spec.cpus {
            cfg.cpus = c;
        }
        vms.save_config(&cfg)?;
        return Ok(SetOutcome::Recorded);
    }
    if spec.cpus.is_some_and(|c| c != cfg.cpus) {
        return Err(VmError::State(format!(
            "VM {} is running: its CPU count changes at the next start (`corral vm stop`, `vm set --cpus`, `vm start`)",
            cfg.name
        )));
    }
    let Some(m) = spec.memory_mib else {
        return Ok(SetOutcome::Recorded);
    };
    if m > cfg.memory_mib {
        return Err(VmError::State(format!(
            "VM {} booted with {}M: a running guest can shrink and grow back up to that through its balloon; more needs a restart",
            cfg.name, cfg.memory_mib
        )));
    }
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let mut q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(5))
        .map_err(|e| VmError::State(format!("cannot reach VM {}'s QEMU: {e}", cfg.name)))?;
    q.execute("balloon", Some(serde_json::json!({ "value": m << 20 })))
        .map_err(|e| VmError::State(format!("the balloon of VM {} refused: {e}", cfg.name)))?;
    Ok(SetOutcome::Ballooned { mib: m })
}

/// corral's settings for VMs, from `CORRAL_ROOT/config.json` (all optional).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct VmSettings {
    /// How much memory the VMs of this host may be promised, as a multiple of the host's:
    /// above 1, guests are expected to give memory back through their balloons
    /// (`vm set --memory`). Default 1.5.
    #[serde(default = "default_overcommit")]
    pub vm_memory_overcommit: f64,
}

fn default_overcommit() -> f64 {
    1.5
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            vm_memory_overcommit: default_overcommit(),
        }
    }
}

/// Reads the settings; a missing file gives the defaults, a malformed one an error naming it.
pub fn settings(root: &Path) -> Result<VmSettings> {
    let path = root.join("config.json");
    match std::fs::read(&path) {
        Ok(data) => {
            let s: VmSettings = serde_json::from_slice(&data)
                .map_err(|e| VmError::Invalid(format!("{}: {e}", path.display())))?;
            if !(s.vm_memory_overcommit > 0.0 && s.vm_memory_overcommit <= 100.0) {
                return Err(VmError::Invalid(format!(
                    "{}: vm_memory_overcommit must be above 0 and at most 100",
                    path.display()
                )));
            }
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VmSettings::default()),
        Err(e) => Err(VmError::Io(path.display().to_string(), e)),
    }
}

/// Memory promised to VMs against what the host has.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryBudget {
    /// The host's memory, MiB.
    pub host_mib: u64,
    /// The overcommit ratio in force.
    pub overcommit: f64,
    /// What may be promised: host × ratio, MiB.
    pub limit_mib: u64,
    /// What the running VMs were promised (their boot sizes), MiB.
    pub promised_mib: u64,
    /// What their QEMUs use now (their cgroups), MiB.
    pub used_mib: u64,
    /// Running VMs.
    pub running: usize,
}

/// The memory budget of this state root's VMs.
pub fn memory_budget(root: &Path) -> Result<MemoryBudget> {
    let vms = Vms::open(root);
    let s = settings(root)?;
    let host_mib = host_memory_mib().unwrap_or(0);
    let mut promised_mib = 0;
    let mut used = 0u64;
    let mut running = 0;
    for id in vms.ids()? {
        let Ok(st) = current_state(&vms, &id) else {
            continue;
        };
        if !matches!(st.status, Status::Running | Status::Starting) {
            continue;
        }
        let Ok(cfg) = vms.config(&id) else { continue };
        running += 1;
        promised_mib += cfg.memory_mib;
        let cgroot = Path::new(monitor::CGROUP_ROOT);
        let dirs =
            corral_container::cgroups::Cgroup::dirs_for(cgroot, &monitor::cgroup_name(&vms, &id));
        used += corral_container::cgroups::Cgroup::from_dirs(cgroot, dirs)
            .stats()
            .memory_usage;
    }
    Ok(MemoryBudget {
        host_mib,
        overcommit: s.vm_memory_overcommit,
        limit_mib: (host_mib as f64 * s.vm_memory_overcommit) as u64,
        promised_mib,
        used_mib: used >> 20,
        running,
    })
}

/// Refuses to start a VM of `mib` MiB when that would promise more than the budget allows.
fn check_budget(root: &Path, name: &str, mib: u64) -> Result<()> {
    let b = memory_budget(root)?;
    if b.host_mib > 0 && b.promised_mib + mib > b.limit_mib {
        return Err(VmError::State(format!(
            "starting VM {name} ({mib}M) would promise {}M of memory to VMs, more than this host's {}M × {} (vm_memory_overcommit in {}) allows: stop a VM, start this one smaller (`vm set --memory`), or raise the ratio",
            b.promised_mib + mib,
            b.host_mib,
            b.overcommit,
            root.join("config.json").display()
        )));
    }
    Ok(())
}
