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

mod create;
pub(crate) use create::host_memory_mib;
pub use create::{cache_dir, create, parse_user, CreateSpec, Source};

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
            match &cfg.boot {
                BootSource::Sandbox {
                    hostname: Some(h), ..
                } => plan.boot.hosts.push(format!("{}\t{h} {}", ep.ip, cfg.name)),
                _ => plan.boot.hosts.push(format!("{}\t{}", ep.ip, cfg.name)),
            }
        }
        Ok(())
    })();
    if let Err(e) = joined {
        let _ = nets.release_keeping_addresses(id);
        return Err(e);
    }
    plan.boot.hostname = match &cfg.boot {
        BootSource::Sandbox {
            hostname: Some(h), ..
        } => h.clone(),
        _ => cfg.name.clone(),
    };
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
    start_again(vms, id, delay);
}

/// Starts the VM again after `delay`, through `corral vm start` in a process of its own, as a
/// start of the monitor's (it keeps the restart count): the restart policy's, or a guest's
/// reboot ([`monitor`]).
pub(crate) fn start_again(vms: &Vms, id: &str, delay: Duration) {
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
