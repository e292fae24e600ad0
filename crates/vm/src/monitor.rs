//! The VM monitor: one small process per running VM, the parent of its QEMU.
//!
//! It starts QEMU, hands the guest agent its boot plan and waits (bounded) for it to answer,
//! then tells the CLI that started it (`OK` or `ERR <code> <message>` on an inherited pipe).
//! While the VM runs it keeps the one connection QEMU's agent socket allows and shares it:
//! clients (`vm exec`, `vm cp`, an attached `vm run`) connect to its socket `ctl.sock` and
//! speak the agent's own protocol; their session numbers are mapped onto the agent's. The
//! main process of an image VM runs in session 0: its output goes to `main.log` (JSON lines,
//! as a container's log) and to an attached client; when it ends the guest is powered off,
//! as a container ends with its process. When QEMU exits the monitor records why, releases
//! the VM's network endpoints, removes the runtime directory (and the VM, with `--rm`) and
//! exits with the main process's code.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use corral_container::config::RestartPolicy;
use corral_guest::proto::{self, Frame, FrameReader, Kind, Request, Response};
use serde::{Deserialize, Serialize};

use crate::qemu::{self, Nic, Paths};
use crate::qmp::Qmp;
use crate::store::{BootSource, Status, VmConfig, Vms};

/// What the CLI prepared for this start: the NICs it created and the agent's boot request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BootPlan {
    /// TAP devices and MACs, in NIC order.
    pub nics: Vec<(String, String)>,
    /// The request the agent gets first.
    pub boot: proto::Boot,
    /// Start from this snapshot with memory: the guest is already booted, its main process
    /// already runs; the agent is only pinged.
    #[serde(default)]
    pub loadvm: Option<String>,
    /// Wait, paused, for an incoming migration: the guest arrives booted and running its main
    /// process; the agent answers once the migration is done and the VM continues.
    #[serde(default)]
    pub incoming: bool,
    /// Where QEMU listens for the incoming migration (`tcp:HOST:PORT`).
    #[serde(default)]
    pub incoming_uri: Option<String>,
    /// The process that receives the migration (`corral vm receive`): if it dies before the
    /// guest runs here, the half-made VM is removed.
    #[serde(default)]
    pub incoming_owner: Option<i32>,
    /// The loopback port of the VNC server (`--graphics vnc`); its password is in the runtime
    /// directory's `vnc-password`.
    #[serde(default)]
    pub vnc_port: Option<u16>,
}

/// `vms/<id>/boot.json`.
pub fn plan_path(vms: &Vms, id: &str) -> PathBuf {
    vms.dir(id).join("boot.json")
}

/// Runs the monitor: `ROOT ID [--attach]`. Its standard output is the CLI's pipe: it
/// carries `OK` or `ERR <code> <message>` once, then points at `/dev/null`; after `OK`, the
/// pipe stays open on another descriptor for the last words of a VM that `--rm` removes
/// (`ERR <code> <message>` when it failed, nothing otherwise). Returns the process's exit code.
pub fn main_from_args(args: &[std::ffi::OsString]) -> i32 {
    let (Some(root), Some(id)) = (args.first(), args.get(1)) else {
        eprintln!("usage: corral-vm-monitor CORRAL_ROOT VM_ID [--attach]");
        return 125;
    };
    let attach = args.iter().skip(2).any(|a| a == "--attach");
    let vms = Vms::open(Path::new(root));
    let id = id.to_string_lossy().into_owned();
    // Close-on-exec: QEMU does not inherit it.
    let last_words = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(File::from);
    run(&vms, &id, Notify { last_words }, attach)
}

/// The one message to the CLI, on standard output, which is closed right after; and the last
/// words, on a copy of it.
struct Notify {
    last_words: Option<File>,
}

impl Notify {
    /// The error of a VM whose state is gone with its files (`--rm`), for the CLI that waits.
    fn last_words(&mut self, msg: &str) {
        if let Some(mut f) = self.last_words.take() {
            let _ = f.write_all(msg.as_bytes());
        }
    }
}

impl Write for Notify {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Shared between the monitor's threads.
struct Shared {
    /// Frames to the agent, whole frames under the lock.
    agent_w: Mutex<UnixStream>,
    /// Global session -> (client, the client's own session number).
    sessions: Mutex<HashMap<u32, (u64, u32)>>,
    /// Client id -> its socket.
    clients: Mutex<HashMap<u64, UnixStream>>,
    /// The client attached to the main process.
    attached: Mutex<Option<u64>>,
    attach_cv: Condvar,
    next_session: AtomicU32,
    /// The main process's exit, once it ended.
    main_exit: Mutex<Option<proto::Exit>>,
    shutting_down: AtomicBool,
    log: Mutex<Option<File>>,
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn run(vms: &Vms, id: &str, mut notify: Notify, attach: bool) -> i32 {
    let fail = |notify: &mut Notify, code: i32, msg: &str| {
        let _ = notify.write_all(format!("ERR {code} {msg}").as_bytes());
        code
    };
    let cfg = match vms.config(id) {
        Ok(c) => c,
        Err(e) => return fail(&mut notify, 125, &e.to_string()),
    };
    let plan: BootPlan = match corral_net::fsutil::read_json(&plan_path(vms, id)) {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return fail(&mut notify, 125, &e.to_string()),
    };
    let run_dir = vms.run_dir(id);
    let dir = vms.dir(id);
    if let Err(e) = std::fs::create_dir_all(&run_dir) {
        return fail(&mut notify, 125, &format!("{}: {e}", run_dir.display()));
    }
    let paths = Paths::new(&run_dir, &dir);
    for p in [
        &paths.qmp,
        &paths.qmp_cli,
        &paths.agent,
        &paths.console,
        &paths.ctl,
    ] {
        let _ = std::fs::remove_file(p);
    }
    let nics: Vec<Nic> = plan
        .nics
        .iter()
        .map(|(tap, mac)| Nic {
            tap: tap.clone(),
            mac: mac.clone(),
        })
        .collect();
    let qemu_bin = match qemu::qemu_binary() {
        Ok(q) => q,
        Err(e) => return finish_failed_start(vms, id, &cfg, &mut notify, 125, &e),
    };
    let qemu_log = dir.join("qemu.log");
    let log_file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&qemu_log);
    let (out, err) = match log_file.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(p) => p,
        Err(e) => return fail(&mut notify, 125, &format!("{}: {e}", qemu_log.display())),
    };
    // A pod's VM: virtiofsd serves its share, listening before QEMU connects (it ends when
    // QEMU disconnects).
    let mut virtiofsd = match &cfg.boot {
        BootSource::Sandbox { share, .. } => match start_virtiofsd(share, &paths, &dir) {
            Ok(c) => Some(c),
            Err(e) => return finish_failed_start(vms, id, &cfg, &mut notify, 125, &e),
        },
        _ => None,
    };
    // The console log is appended to across starts: this start's lines begin here.
    let console_from = std::fs::metadata(&paths.console_log).map_or(0, |m| m.len());
    let started = Instant::now();
    let mut child = match Command::new(&qemu_bin)
        .args(qemu::args(
            &cfg,
            &paths,
            &nics,
            plan.loadvm.as_deref(),
            plan.incoming
                .then(|| plan.incoming_uri.as_deref().unwrap_or("defer")),
            plan.vnc_port,
        ))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            if let Some(mut v) = virtiofsd.take() {
                let _ = v.kill();
                let _ = v.wait();
            }
            let msg = format!("cannot run {}: {e}", qemu_bin.display());
            return finish_failed_start(vms, id, &cfg, &mut notify, 125, &msg);
        }
    };
    // QEMU runs in a cgroup of its own: the guest's memory plus QEMU's own share, and as
    // many CPUs' time as the guest has vCPUs, so that a VM cannot take more than it was given.
    let cgroup = corral_container::cgroups::Cgroup::create(
        Path::new(CGROUP_ROOT),
        &cgroup_name(vms, id),
        &vm_resources(&cfg),
    );
    let cgroup = CgroupGuard(match cgroup {
        Ok(cg) => {
            // The container default device list is not QEMU's: it opens /dev/net/tun, /dev/kvm
            // and the disks' files; a VM's boundary is the machine, not the device cgroup.
            for d in cg.dirs.iter().filter(|d| d.join("devices.allow").exists()) {
                let _ = std::fs::write(d.join("devices.allow"), "a");
            }
            if let Err(e) = cg.add(child.id() as i32) {
                tracing::warn!("cannot put QEMU in its cgroup: {e}");
            }
            Some(cg)
        }
        Err(e) => {
            tracing::warn!("cannot make the VM's cgroup: {e}");
            None
        }
    });
    let mut state = vms
        .state(id)
        .unwrap_or_else(|_| crate::store::VmState::created());
    state.status = Status::Starting;
    state.monitor_pid = Some(std::process::id() as i32);
    state.qemu_pid = Some(child.id() as i32);
    state.started_at = Some(now());
    state.finished_at = None;
    state.exit_code = None;
    state.error = None;
    state.agent_ready = false;
    state.boot_ms = None;
    state.addresses = plan
        .boot
        .interfaces
        .iter()
        .map(|i| format!("{} {}", i.name, i.address))
        .collect();
    let _ = vms.save_state(id, &state);

    // The monitor's QMP connection: it sees why QEMU stops.
    let reason: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    // The QMP event reader: joined once QEMU has exited (its socket then ends the loop), so
    // that a GUEST_PANICKED or SHUTDOWN still buffered is read before the reason is.
    #[allow(clippy::needless_late_init)] // set in the match below, whose other arm returns
    let events: Option<std::thread::JoinHandle<()>>;
    // Set once the guest's CPUs run (QMP's RESUME): an incoming VM's devices must not be
    // touched before, its state is still arriving.
    let resumed = Arc::new(AtomicBool::new(false));
    match Qmp::connect(&paths.qmp, Duration::from_secs(10)) {
        Ok(mut q) => {
            if !plan.incoming {
                // The balloon reports the guest's memory (`vm stats`) without the agent, for
                // disk-booted guests too; an incoming VM gets it at its first `vm stats`.
                crate::resources::poll_guest_stats(&mut q);
            }
            let reason = reason.clone();
            let resumed = resumed.clone();
            let _ = q.set_timeout(None);
            events = Some(std::thread::spawn(move || {
                while let Ok(ev) = q.next_event() {
                    if ev["event"] == "RESUME" {
                        resumed.store(true, Ordering::SeqCst);
                    } else if ev["event"] == "SHUTDOWN" {
                        let r = ev["data"]["reason"].as_str().unwrap_or("").to_owned();
                        *reason.lock().expect("reason") = Some(r);
                    } else if ev["event"] == "GUEST_PANICKED" {
                        *reason.lock().expect("reason") = Some("guest-panic".into());
                    }
                }
            }));
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let msg = format!("QEMU did not start: {e}; {}", tail_of(&qemu_log, 10));
            return finish_failed_start(vms, id, &cfg, &mut notify, 125, &msg);
        }
    }

    let has_agent = matches!(
        cfg.boot,
        BootSource::Image { .. } | BootSource::Sandbox { .. }
    );
    let mut shared: Option<Arc<Shared>> = None;
    let arrived = Arc::new(AtomicBool::new(false));
    let abandoned = Arc::new(AtomicBool::new(false));
    if plan.incoming {
        // QEMU waits, paused, for the migration: the one who migrates drives it over QMP
        // now; the agent answers once the guest runs here.
        let _ = notify.write_all(b"OK");
        if let Some(owner) = plan.incoming_owner {
            let (arrived, abandoned) = (arrived.clone(), abandoned.clone());
            let qemu = child.id() as i32;
            std::thread::spawn(move || {
                while !arrived.load(Ordering::SeqCst) {
                    if !crate::lifecycle::alive(owner) {
                        abandoned.store(true, Ordering::SeqCst);
                        if let Some(pid) = rustix::process::Pid::from_raw(qemu) {
                            let _ =
                                rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    }
    if has_agent {
        let deadline = if plan.incoming {
            Instant::now() + Duration::from_secs(INCOMING_LIMIT_SECS)
        } else {
            started + Duration::from_secs(cfg.boot_timeout_secs.max(1))
        };
        if plan.incoming {
            // Nothing may reach the guest's devices while its state is arriving: a frame
            // for the agent's port written during the incoming migration lands in guest
            // memory the migration then overwrites (seen as corrupted guests). Wait until the
            // guest runs here, QEMU's end, or the receiver's.
            while !resumed.load(Ordering::SeqCst)
                && !abandoned.load(Ordering::SeqCst)
                && Instant::now() < deadline
                && matches!(child.try_wait(), Ok(None))
            {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let first = match (&plan.loadvm, plan.incoming) {
            (Some(_), _) | (_, true) => Request::Ping,
            (None, false) => Request::Boot(plan.boot.clone()),
        };
        match boot_agent(&paths, first, deadline, &mut child) {
            Ok((stream, reader, _uptime)) => {
                arrived.store(true, Ordering::SeqCst);
                let sh = Arc::new(Shared {
                    agent_w: Mutex::new(stream.try_clone().expect("clone socket")),
                    sessions: Mutex::new(HashMap::new()),
                    clients: Mutex::new(HashMap::new()),
                    attached: Mutex::new(None),
                    attach_cv: Condvar::new(),
                    next_session: AtomicU32::new(1),
                    main_exit: Mutex::new(None),
                    shutting_down: AtomicBool::new(false),
                    log: Mutex::new(
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(dir.join("main.log"))
                            .ok(),
                    ),
                });
                {
                    let sh = sh.clone();
                    std::thread::spawn(move || agent_reader(sh, stream, reader));
                }
                match UnixListener::bind(&paths.ctl) {
                    Ok(l) => {
                        let sh = sh.clone();
                        std::thread::spawn(move || serve_clients(sh, l));
                    }
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        let msg = format!("{}: {e}", paths.ctl.display());
                        return finish_failed_start(vms, id, &cfg, &mut notify, 125, &msg);
                    }
                }
                shared = Some(sh);
            }
            Err(msg) => {
                let _ = child.kill();
                let _ = child.wait();
                if abandoned.load(Ordering::SeqCst) {
                    // A migration that never arrived: nothing of it stays.
                    let mut cfg = cfg.clone();
                    cfg.auto_remove = true;
                    let msg = "the incoming migration was abandoned (its receiver ended)";
                    return finish_failed_start(vms, id, &cfg, &mut notify, 125, msg);
                }
                let msg = format!("{msg}\n{}", tail_of(&paths.console_log, 20));
                return finish_failed_start(vms, id, &cfg, &mut notify, 125, &msg);
            }
        }
    }
    state.status = Status::Running;
    state.agent_ready = has_agent;
    state.boot_ms = Some(started.elapsed().as_millis() as u64);
    let _ = vms.save_state(id, &state);
    let _ = notify.write_all(b"OK");

    // The main process, once a client attached when one is to.
    let main = if plan.loadvm.is_some() || plan.incoming {
        None
    } else {
        cfg.main.as_ref()
    };
    if let (Some(sh), Some(main)) = (&shared, main) {
        let sh = sh.clone();
        let main = main.clone();
        std::thread::spawn(move || {
            if attach {
                let guard = sh.attached.lock().expect("attached");
                let _ = sh
                    .attach_cv
                    .wait_timeout_while(guard, Duration::from_secs(60), |a| a.is_none());
            }
            let f = Frame::json(Kind::Request, 0, &Request::Exec(main));
            let _ = send_agent(&sh, &f);
        });
    }

    // A disk boot has no agent to wait for; a disk the firmware cannot boot says so on the
    // console, and the VM is ended with that reason rather than left spinning.
    let boot_failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    if matches!(cfg.boot, BootSource::Disk { .. }) {
        let log = paths.console_log.clone();
        let failure = boot_failure.clone();
        let pid = child.id() as i32;
        let limit = Duration::from_secs(cfg.boot_timeout_secs.max(1));
        let cdrom = cfg.cdrom.is_some();
        std::thread::spawn(move || watch_firmware(&log, console_from, pid, limit, cdrom, &failure));
    }

    let status = child.wait();
    if let Some(mut v) = virtiofsd.take() {
        // It ends by itself when QEMU has gone; one that does not is ended.
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(v.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = v.kill();
        let _ = v.wait();
    }
    if let Some(h) = events {
        // QEMU is gone: its QMP socket is closed, so the reader ends at once.
        let _ = h.join();
    }
    let reason = reason.lock().expect("reason").clone();
    let main_exit = shared
        .as_ref()
        .and_then(|s| *s.main_exit.lock().expect("exit"));
    let mut state = vms.state(id).unwrap_or(state);
    state.status = Status::Stopped;
    state.finished_at = Some(now());
    state.monitor_pid = None;
    state.qemu_pid = None;
    state.agent_ready = false;
    state.exit_code = main_exit.map(|e| e.code);
    let stop_requested = shared
        .as_ref()
        .is_some_and(|s| s.shutting_down.load(Ordering::SeqCst));
    state.addresses.clear();
    let mut failed_boot = boot_failure.lock().expect("boot failure").clone();
    if let Some(cg) = &cgroup.0 {
        if cg.oom_killed() && failed_boot.is_none() {
            failed_boot = Some(format!(
                "QEMU was killed for lack of memory in its cgroup ({} MiB for a {} MiB guest)",
                vm_resources(&cfg).memory.unwrap_or(0) >> 20,
                cfg.memory_mib
            ));
        }
        cg.destroy();
    }
    let user_stop = stop_requested || vms.run_dir(id).join(STOP_REQUESTED).exists();
    // An image VM's guest that reboots (`reboot -f`, `reboot(2)`) resets the machine, and
    // QEMU ends (-no-reboot: the agent is given its boot plan once per QEMU). That is a reboot
    // the monitor carries out: the VM is started again at once, with its id, addresses and
    // disks, and its main process runs anew, as a rebooted machine runs its services. The
    // kernel's panic=-1 resets too: a panic is told apart by the kernel's words on this boot's
    // console, and ends the VM as one.
    let guest_reset = reason.as_deref() == Some("guest-reset")
        && main_exit.is_none()
        && !stop_requested
        && failed_boot.is_none();
    let panicked =
        guest_reset && console_since(&paths.console_log, console_from).contains("Kernel panic");
    let guest_reboot =
        guest_reset && matches!(cfg.boot, BootSource::Image { .. }) && !panicked && !user_stop;
    state.error = match (&status, reason.as_deref()) {
        _ if failed_boot.is_some() => failed_boot,
        _ if guest_reboot => None,
        (Ok(s), _) if !s.success() && s.code() != Some(0) && reason.is_none() => {
            Some(format!("QEMU exited with {s}: {}", tail_of(&qemu_log, 5)))
        }
        _ if panicked => Some(format!(
            "the guest kernel panicked: {}",
            tail_of(&paths.console_log, 10)
        )),
        (_, Some("guest-reset")) if guest_reset => Some(format!(
            "the guest reset (a kernel panic, or a reboot): {}",
            tail_of(&paths.console_log, 10)
        )),
        (_, Some("guest-panic")) => Some(format!(
            "the guest kernel panicked: {}",
            tail_of(&paths.console_log, 10)
        )),
        _ => None,
    };
    // The restart policy (`--restart`): not after `vm stop`, `vm kill` or `vm rm -f`.
    let failed = state.error.is_some() || main_exit.is_some_and(|e| e.code != 0);
    let restart = !cfg.auto_remove
        && !user_stop
        && match cfg.restart {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max } => failed && (max == 0 || state.restart_count < max),
        };
    let _ = vms.save_state(id, &state);
    let nets = corral_net::Networks::open(vms.corral_root());
    // A VM keeps its addresses while it exists; one removed at its end (`--rm`) frees them.
    let _ = if cfg.auto_remove && !guest_reboot {
        nets.release(id)
    } else {
        nets.release_keeping_addresses(id)
    };
    let _ = std::fs::remove_dir_all(vms.run_dir(id));
    if guest_reboot {
        tracing::info!(vm = id, "the guest rebooted: starting it again");
        crate::lifecycle::start_again(vms, id, Duration::ZERO);
        return 0;
    }
    if cfg.auto_remove {
        let _ = vms.remove_files(id);
        let _ = crate::clone::collect(vms.corral_root());
        if let Some(e) = &state.error {
            notify.last_words(&format!("ERR 125 {e}"));
        }
    }
    if restart {
        crate::lifecycle::restart_later(vms, id, &mut state);
    }
    match main_exit {
        Some(e) => e.code,
        None if state.error.is_some() => 125,
        None => 0,
    }
}

/// The marker `vm stop` and `vm kill` leave in a VM's run directory: the user stopped it,
/// so its restart policy does not apply.
pub const STOP_REQUESTED: &str = "stop-requested";

/// The environment variable that tells a start it comes from the restart policy (it keeps the
/// restart count; a start by hand resets it).
pub const RESTART_ENV: &str = "CORRAL_VM_RESTART";

/// How long an incoming VM may wait for its migration to finish.
const INCOMING_LIMIT_SECS: u64 = 3600;

/// Starts virtiofsd on `share` and waits for its socket. It runs in the host's mount
/// namespace (`--sandbox none`), so that the members' root filesystems, mounted under the
/// share after it started, are what the guest sees; nothing is cached, as the host changes
/// the share while the guest runs.
fn start_virtiofsd(share: &Path, paths: &Paths, dir: &Path) -> Result<std::process::Child, String> {
    let bin = qemu::virtiofsd_binary()?;
    let _ = std::fs::remove_file(&paths.share);
    let log = dir.join("virtiofsd.log");
    let out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(&bin)
        .arg("--socket-path")
        .arg(&paths.share)
        .arg("--shared-dir")
        .arg(share)
        .args([
            "--sandbox",
            "none",
            "--cache",
            "never",
            "--announce-submounts",
            "--log-level",
            "error",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !paths.share.exists() {
        if let Ok(Some(st)) = child.try_wait() {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("virtiofsd ended ({st}): {}", said.trim()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("virtiofsd did not listen within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

mod channel;
use channel::{agent_reader, send_agent, serve_clients};

/// The name of a VM's cgroup under `corral/` in each hierarchy: its instance name.
pub fn cgroup_name(vms: &Vms, id: &str) -> String {
    vms.instance(id)
}

/// Removes what is left of a VM's cgroup (after its monitor died); QEMU must be gone.
pub fn remove_cgroup(vms: &Vms, id: &str) {
    let root = Path::new(CGROUP_ROOT);
    let dirs = corral_container::cgroups::Cgroup::dirs_for(root, &cgroup_name(vms, id));
    if !dirs.is_empty() {
        corral_container::cgroups::Cgroup::from_dirs(root, dirs).destroy();
    }
}

/// Removes the VM's cgroup when the monitor is done with it, on every path out of it (QEMU
/// has exited or was killed by then).
struct CgroupGuard(Option<corral_container::cgroups::Cgroup>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cg) = &self.0 {
            cg.destroy();
        }
    }
}

/// What QEMU may use beyond the guest's memory: its own code and heap, device state, and
/// under TCG the translation cache (bounded by `tb-size` in [`crate::qemu`]).
pub const QEMU_OVERHEAD_MIB: u64 = 384;

/// The cgroup limits of a VM's QEMU.
pub fn vm_resources(cfg: &VmConfig) -> corral_container::config::Resources {
    corral_container::config::Resources {
        memory: Some((cfg.memory_mib + QEMU_OVERHEAD_MIB) << 20),
        cpu_quota: Some(i64::from(cfg.cpus) * 100_000),
        cpu_period: Some(100_000),
        ..Default::default()
    }
}

/// Records a start that failed before the VM ran, cleans what it made, and tells the CLI.
fn finish_failed_start(
    vms: &Vms,
    id: &str,
    cfg: &VmConfig,
    notify: &mut Notify,
    code: i32,
    msg: &str,
) -> i32 {
    if let Ok(mut st) = vms.state(id) {
        st.status = Status::Stopped;
        st.monitor_pid = None;
        st.qemu_pid = None;
        st.finished_at = Some(now());
        st.error = Some(msg.to_owned());
        let _ = vms.save_state(id, &st);
    }
    let nets = corral_net::Networks::open(vms.corral_root());
    // A VM keeps its addresses while it exists; one removed at its end (`--rm`) frees them.
    let _ = if cfg.auto_remove {
        nets.release(id)
    } else {
        nets.release_keeping_addresses(id)
    };
    let _ = std::fs::remove_dir_all(vms.run_dir(id));
    if cfg.auto_remove {
        let _ = vms.remove_files(id);
        let _ = crate::clone::collect(vms.corral_root());
    }
    let _ = notify.write_all(format!("ERR {code} {msg}").as_bytes());
    code
}

/// Connects to the agent's socket, sends the boot request and waits for `Ready`.
fn boot_agent(
    paths: &Paths,
    first: Request,
    deadline: Instant,
    child: &mut Child,
) -> Result<(UnixStream, FrameReader, u64), String> {
    let timeout_msg = |what: &str| {
        format!("the guest agent did not answer within the boot timeout ({what}); the console's last lines follow")
    };
    let mut stream = loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("QEMU exited ({st}) before the guest came up"));
        }
        match UnixStream::connect(&paths.agent) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("cannot reach the agent's socket: {e}")),
        }
    };
    let first = match first {
        Request::Boot(mut boot) => {
            boot.version = proto::VERSION;
            boot.time_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            Request::Boot(boot)
        }
        other => other,
    };
    Frame::json(Kind::Request, 0, &first)
        .write_to(&mut stream)
        .map_err(|e| format!("cannot send the boot request to the agent: {e}"))?;
    let mut reader = FrameReader::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout_msg("no answer"));
        }
        let _ = stream.set_read_timeout(Some(left));
        match reader.read_from(&mut stream) {
            Ok(Some(f)) if f.kind == Kind::Response && f.session == 0 => {
                let _ = stream.set_read_timeout(None);
                return match f.parse::<Response>() {
                    Ok(Response::Ready { version, uptime_ms }) if version == proto::VERSION => {
                        Ok((stream, reader, uptime_ms))
                    }
                    Ok(Response::Pong { uptime_ms }) => Ok((stream, reader, uptime_ms)),
                    Ok(Response::Ready { version, .. }) => Err(format!(
                        "the guest agent speaks protocol {version}, corral {}: rebuild the agent (scripts/build-guest.sh)",
                        proto::VERSION
                    )),
                    Ok(Response::Error { message, .. }) => {
                        Err(format!("the guest agent could not set up the guest: {message}"))
                    }
                    Ok(other) => Err(format!("the guest agent answered {other:?} to boot")),
                    Err(e) => Err(format!("the guest agent's answer is malformed: {e}")),
                };
            }
            Ok(Some(_)) => continue,
            Ok(None) => {
                // QEMU closed the socket: it exited.
                let st = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(format!(
                    "QEMU exited ({st}) before the guest agent answered"
                ));
            }
            Err(proto::ProtoError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout_msg("timed out"));
            }
            Err(e) => return Err(format!("the guest agent's channel broke: {e}")),
        }
    }
}

/// Watches a disk boot's console for the firmware's verdict that nothing boots, for up to
/// `limit`; on it, records the reason and ends QEMU (pid `pid`, the monitor's child).
fn watch_firmware(
    log: &Path,
    from: u64,
    pid: i32,
    limit: Duration,
    cdrom: bool,
    failure: &Mutex<Option<String>>,
) {
    // What the console shows, and what it means. OVMF with nothing to boot ends in its shell.
    const VERDICTS: [(&str, &str); 4] = [
        ("No bootable device", "says \"No bootable device\""),
        ("Boot failed", "says \"Boot failed\""),
        ("No bootable option", "says \"No bootable option\""),
        ("Shell> ", "found nothing to boot and opened its UEFI shell"),
    ];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let text = console_since(log, from);
        // With a CD-ROM, the disk's "Boot failed" is followed by the CD's boot: only the end
        // of the list is a verdict.
        let verdict = VERDICTS
            .iter()
            .filter(|(seen, _)| !(cdrom && *seen == "Boot failed"))
            .find(|(seen, _)| text.contains(seen));
        if let Some((_, v)) = verdict {
            *failure.lock().expect("boot failure") = Some(format!(
                "the disk does not boot: the firmware {v}; is it a bootable disk image (a boot loader in its first sector, or an EFI system partition with --uefi)?"
            ));
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return;
        }
        if !crate::lifecycle::alive(pid) {
            return;
        }
    }
}

/// What a console log holds from byte `from` on (this start's lines).
fn console_since(path: &Path, from: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned()
}

/// The last `n` lines of a log, for error messages.
pub fn tail_of(path: &Path, n: usize) -> String {
    let mut data = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut data);
    }
    let text = String::from_utf8_lossy(&data);
    let text = strip_escapes(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return format!("({} is empty)", path.display());
    }
    format!("{}:\n  {}", path.display(), lines[start..].join("\n  "))
}

/// Drops terminal escape sequences (the firmware's screen clearing) from console text.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&d) = chars.peek() {
                    chars.next();
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c == '\r' {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(strip_escapes("c\u{1b}[?7l\u{1b}[2Jhello\r\n"), "chello\n");
    }
}
