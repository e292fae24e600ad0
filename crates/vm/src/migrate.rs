//! Live migration of a running image VM to another corral host.
//!
//! The destination runs `corral vm receive --listen ADDR:PORT`; the source runs `corral vm
//! migrate VM --to ADDR:PORT`. They speak JSON lines over TCP ([`Message`]):
//!
//! 1. `prepare`: the source sends the VM's config, its image's digest, its disk's size and its
//!    NICs' addresses and MACs. The destination checks that it has the image, builds its own
//!    image disk and initramfs, makes an empty disk of the same size, joins the same networks
//!    with the same addresses and MACs (the networks must reach one LAN: `network create
//!    --parent`), and starts the VM paused, listening for the migration (`-S -incoming
//!    tcp:HOST:PORT`).
//!    It exports the new disk over NBD and answers with where to send disk and memory.
//! 2. The source mirrors its disk into that export (`drive-mirror`, until in step), then
//!    migrates the machine (`migrate`) with corral's settings: unlimited bandwidth on the link,
//!    a short downtime limit, auto-converge so that a busy guest still converges. When QEMU
//!    reports completion the source is paused; the mirror is completed (`block-job-cancel`
//!    once in step writes the last blocks and leaves the copy consistent).
//! 3. `finish`: the destination stops its export and resumes the guest (`cont`). The source's
//!    QEMU quits and the VM is removed there.
//!
//! Anything failing before `finish` is answered by cancelling: the source resumes its guest
//! (it never stopped running, or is continued), the destination removes what it made. So a
//! migration that fails leaves the VM running where it was.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::lifecycle::{self, current_state, StartOptions, VmError};
use crate::qmp::Qmp;
use crate::store::{BootSource, Status, VmConfig, Vms};

type Result<T> = std::result::Result<T, VmError>;

/// The longest line either side accepts (a VM's config is a few KiB).
const MAX_LINE: usize = 1 << 20;

/// One NIC of the migrating VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicIdentity {
    /// The network's name (it must exist on the destination).
    pub network: String,
    /// The guest's address there.
    pub ip: String,
    /// The guest NIC's MAC.
    pub mac: String,
}

/// What the two sides say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// Source to destination: make ready to receive this VM.
    Prepare {
        /// The VM's config on the source.
        config: Box<VmConfig>,
        /// The image's manifest digest.
        image_digest: String,
        /// The writable disk's virtual size in bytes.
        disk_bytes: u64,
        /// The NICs, in order.
        nics: Vec<NicIdentity>,
        /// The address the source reached the destination at (for the NBD and migration
        /// listeners).
        host: String,
    },
    /// Destination to source: ready.
    Ready {
        /// Where to mirror the disk: `nbd://HOST:PORT/EXPORT`.
        nbd: String,
        /// Where to send the machine: `tcp:HOST:PORT`.
        migrate: String,
    },
    /// Source to destination: disk and memory are there; resume the guest.
    Finish,
    /// Destination to source: the guest runs here.
    Done {
        /// Milliseconds from receiving `finish` to the guest running.
        resume_ms: u64,
    },
    /// Destination to source: its agent answers there too (the VM is `running` for
    /// every command on the destination).
    Settled,
    /// Source to destination: give up and remove what was made.
    Abort,
    /// Either way: it failed.
    Error {
        /// Why.
        message: String,
    },
}

fn send(w: &mut TcpStream, m: &Message) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(m).expect("json");
    line.push(b'\n');
    w.write_all(&line)
}

fn recv(r: &mut BufReader<TcpStream>) -> Result<Message> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| VmError::Io("the migration peer".into(), e))?;
    if n == 0 {
        return Err(VmError::State(
            "the migration peer closed the connection".into(),
        ));
    }
    if !line.ends_with(b"\n") {
        return Err(VmError::State(
            "the migration peer sent a line too long".into(),
        ));
    }
    serde_json::from_slice(&line)
        .map_err(|e| VmError::State(format!("the migration peer said something malformed: {e}")))
}

/// What a migration took.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The VM's name.
    pub name: String,
    /// Where it went.
    pub to: String,
    /// Milliseconds the whole migration took.
    pub total_ms: u64,
    /// Milliseconds the destination took to get ready (disks, networks, its paused QEMU).
    pub prepare_ms: u64,
    /// Milliseconds of the disk's mirror before the memory's copy began.
    pub disk_ms: u64,
    /// Milliseconds to clean up the source after the guest ran on the destination.
    pub cleanup_ms: u64,
    /// Milliseconds the memory's copy took.
    pub memory_ms: u64,
    /// QEMU's own measure of the guest's pause on the source (ms).
    pub qemu_downtime_ms: u64,
    /// corral's measure: from QEMU's completion report until the destination's guest runs,
    /// plus QEMU's downtime (ms).
    pub downtime_ms: u64,
    /// Bytes of memory sent.
    pub ram_bytes: u64,
    /// Rounds of dirty memory sent again.
    pub dirty_sync_count: u64,
}

/// Migration settings: QEMU's own defaults, or corral's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// corral's: bandwidth unlimited, downtime limit 30 ms, auto-converge.
    Corral,
    /// QEMU's defaults, untouched (for the benchmark).
    QemuDefaults,
}

/// A known hazard of moving VM `id` with the QEMU that runs it, to tell the user first: QEMU
/// before 8 loses dirty pages of a busy guest under TCG (the guest's kernel oopses on the
/// destination; reproduced with QEMU 7.2 alone, gone with 10.0: docs/benchmarks.md).
pub fn known_hazard(root: &Path, id: &str) -> Option<String> {
    let vms = Vms::open(root);
    if vms.config(id).ok()?.accel != crate::store::Accel::Tcg {
        return None;
    }
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let mut q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(5)).ok()?;
    let v = q.execute("query-version", None).ok()?;
    let major = v["qemu"]["major"].as_u64()?;
    (major < 8).then(|| {
        format!(
            "QEMU {major}.{} under TCG can lose memory a busy guest writes during the move \
             (its kernel may crash on the destination); QEMU 8 or newer does not \
             (on Debian 12: apt-get install -t bookworm-backports qemu-system-x86)",
            v["qemu"]["minor"]
        )
    })
}

/// Moves running VM `id` to the corral host listening at `to`.
pub fn migrate(root: &Path, id: &str, to: &str, tuning: Tuning) -> Result<Report> {
    let started = Instant::now();
    let vms = Vms::open(root);
    let cfg = vms.config(id)?;
    let st = current_state(&vms, id)?;
    if st.status != Status::Running || !st.agent_ready {
        return Err(VmError::State(format!(
            "VM {} is not running with its agent: only a running image VM migrates live",
            cfg.name
        )));
    }
    let BootSource::Image { digest, .. } = &cfg.boot else {
        return Err(VmError::Invalid(format!(
            "VM {} was not booted from an image: only image VMs migrate (for now)",
            cfg.name
        )));
    };
    let upper = cfg
        .upper_disk
        .clone()
        .ok_or_else(|| VmError::Invalid("no writable disk".into()))?;
    let disk_bytes = virtual_size(&upper)?;
    let endpoints = corral_net::Networks::open(root).endpoints_of(id)?;
    let nics: Vec<NicIdentity> = endpoints
        .iter()
        .map(|e| NicIdentity {
            network: e.network.clone(),
            ip: e.ip.to_string(),
            mac: e.mac.clone(),
        })
        .collect();
    let addr: SocketAddr = to
        .to_socket_addrs()
        .map_err(|e| VmError::Invalid(format!("--to {to}: {e}")))?
        .next()
        .ok_or_else(|| VmError::Invalid(format!("--to {to}: no address")))?;
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        VmError::State(format!(
            "cannot reach the corral host at {to}: {e} (is `corral vm receive --listen {to}` running there?)"
        ))
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(300))).ok();
    let mut w = conn
        .try_clone()
        .map_err(|e| VmError::Io("socket".into(), e))?;
    let mut r = BufReader::new(conn);
    let io = |e| VmError::Io(format!("the corral host at {to}"), e);
    send(
        &mut w,
        &Message::Prepare {
            config: Box::new(cfg.clone()),
            image_digest: digest.clone(),
            disk_bytes,
            nics,
            host: addr.ip().to_string(),
        },
    )
    .map_err(io)?;
    let t_prepare = Instant::now();
    let (nbd, uri) = match recv(&mut r)? {
        Message::Ready { nbd, migrate } => (nbd, migrate),
        Message::Error { message } => {
            return Err(VmError::State(format!(
                "the destination refused: {message}"
            )))
        }
        other => return Err(VmError::State(format!("unexpected answer {other:?}"))),
    };
    let prepare_ms = t_prepare.elapsed().as_millis() as u64;
    let paths = crate::qemu::Paths::new(&vms.run_dir(id), &vms.dir(id));
    let mut q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(5))
        .map_err(|e| VmError::State(format!("cannot reach the VM's QEMU: {e}")))?;
    let moved = move_machine(&mut q, &nbd, &uri, tuning);
    let (disk_ms, memory_ms, info, t_completed) = match moved {
        Ok(m) => m,
        Err(e) => {
            // The guest stays here: cancel, resume, and tell the destination to clean up.
            let _ = q.execute("migrate_cancel", None);
            let _ = q.execute(
                "block-job-cancel",
                Some(json!({ "device": MIRROR_JOB, "force": true })),
            );
            if q.status().is_ok_and(|s| s != "running") {
                let _ = q.execute("cont", None);
            }
            let _ = send(&mut w, &Message::Abort);
            return Err(e);
        }
    };
    send(&mut w, &Message::Finish).map_err(io)?;
    let resumed = match recv(&mut r) {
        Ok(Message::Done { .. }) => Ok(()),
        Ok(Message::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    };
    if let Err(message) = resumed {
        // The destination could not resume: the source still holds the whole machine, paused.
        let _ = q.execute("cont", None);
        return Err(VmError::State(format!(
            "the destination could not resume the guest ({message}); it runs here again"
        )));
    }
    let pause_after = t_completed.elapsed();
    // The destination's monitor hears from the agent a moment later; wait for it (bounded),
    // so that the next command there finds the VM running. A guest that does not come up
    // there is removed there and resumed here.
    match recv(&mut r) {
        Ok(Message::Settled) => {}
        Ok(Message::Error { message }) => {
            let _ = q.execute("cont", None);
            return Err(VmError::State(format!("{message}; the VM runs here again")));
        }
        _ => {}
    }
    let qemu_downtime_ms = info["downtime"].as_u64().unwrap_or(0);
    // The source's QEMU is done; the monitor records the stop, releases what it held.
    let t_cleanup = Instant::now();
    let _ = q.quit();
    drop(q);
    // The monitor sees QEMU go, records it and releases the endpoints; then the VM goes.
    let deadline = Instant::now() + Duration::from_secs(15);
    while st.monitor_pid.is_some_and(lifecycle::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = lifecycle::remove(root, id, true);
    let cleanup_ms = t_cleanup.elapsed().as_millis() as u64;
    Ok(Report {
        prepare_ms,
        cleanup_ms,
        name: cfg.name,
        to: to.to_owned(),
        total_ms: started.elapsed().as_millis() as u64,
        disk_ms,
        memory_ms,
        qemu_downtime_ms,
        downtime_ms: qemu_downtime_ms + pause_after.as_millis() as u64,
        ram_bytes: info["ram"]["transferred"].as_u64().unwrap_or(0),
        dirty_sync_count: info["ram"]["dirty-sync-count"].as_u64().unwrap_or(0),
    })
}

const MIRROR_JOB: &str = "corral-migrate-mirror";

fn qmp_err(e: crate::qmp::QmpError) -> VmError {
    VmError::State(e.to_string())
}

/// Mirrors the disk, then the memory; returns (disk ms, memory ms, QEMU's final report, when
/// completion was seen). On success the source guest is paused and the mirror completed.
fn move_machine(
    q: &mut Qmp,
    nbd: &str,
    uri: &str,
    tuning: Tuning,
) -> Result<(u64, u64, serde_json::Value, Instant)> {
    let t0 = Instant::now();
    q.execute(
        "drive-mirror",
        Some(json!({
            "job-id": MIRROR_JOB,
            "device": crate::snapshot::node_name("upper"),
            "target": nbd,
            "format": "raw",
            "mode": "existing",
            "sync": "full",
        })),
    )
    .map_err(qmp_err)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let jobs = q.execute("query-block-jobs", None).map_err(qmp_err)?;
        let job = jobs
            .as_array()
            .and_then(|a| a.iter().find(|j| j["device"] == MIRROR_JOB).cloned());
        match job {
            Some(j) if j["ready"] == true => break,
            Some(_) => {}
            None => {
                return Err(VmError::State(
                    "the disk's mirror stopped before it was in step".into(),
                ))
            }
        }
        if Instant::now() > deadline {
            return Err(VmError::State(
                "the disk's mirror did not catch up in 10 minutes".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let disk_ms = t0.elapsed().as_millis() as u64;
    if tuning == Tuning::Corral {
        q.execute(
            "migrate-set-capabilities",
            Some(json!({ "capabilities": [
                { "capability": "auto-converge", "state": true },
                { "capability": "events", "state": true },
            ]})),
        )
        .map_err(qmp_err)?;
        q.execute(
            "migrate-set-parameters",
            Some(json!({ "downtime-limit": 30, "max-bandwidth": 10u64 << 30 })),
        )
        .map_err(qmp_err)?;
    }
    let t1 = Instant::now();
    q.execute("migrate", Some(json!({ "uri": uri })))
        .map_err(qmp_err)?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let (info, completed_at) = loop {
        let info = q.execute("query-migrate", None).map_err(qmp_err)?;
        match info["status"].as_str().unwrap_or("") {
            "completed" => break (info, Instant::now()),
            "failed" | "cancelled" => {
                return Err(VmError::State(format!(
                    "QEMU's migration {}: {}",
                    info["status"].as_str().unwrap_or(""),
                    info["error-desc"].as_str().unwrap_or("no reason given")
                )))
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(VmError::State(
                "the memory's copy did not finish in 30 minutes".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let memory_ms = t1.elapsed().as_millis() as u64;
    // In step, a cancel completes the copy: the destination's disk now equals the source's.
    q.execute("block-job-cancel", Some(json!({ "device": MIRROR_JOB })))
        .map_err(qmp_err)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = q.execute("query-block-jobs", None).map_err(qmp_err)?;
        if !jobs
            .as_array()
            .is_some_and(|a| a.iter().any(|j| j["device"] == MIRROR_JOB))
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(VmError::State("the disk's mirror did not complete".into()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((disk_ms, memory_ms, info, completed_at))
}

fn virtual_size(disk: &Path) -> Result<u64> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output", "json", "-U"])
        .arg(disk)
        .output()
        .map_err(|e| VmError::Io("qemu-img (apt-get install qemu-utils)".into(), e))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| VmError::State(format!("qemu-img info {}: {e}", disk.display())))?;
    v["virtual-size"]
        .as_u64()
        .ok_or_else(|| VmError::State(format!("qemu-img info {}: no size", disk.display())))
}

fn free_port(host: &str) -> Result<u16> {
    TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| VmError::Io(format!("a free port on {host}"), e))
}

/// Serves incoming migrations on `listen` until the process is stopped; each on its own
/// thread. `exe` is corral's executable (for the monitor and DNS servers it starts).
pub fn receive(root: &Path, listen: &str, exe: &Path) -> Result<()> {
    let l = TcpListener::bind(listen).map_err(|e| VmError::Io(format!("listen on {listen}"), e))?;
    eprintln!(
        "corral: receiving VM migrations on {}",
        l.local_addr().map(|a| a.to_string()).unwrap_or_default()
    );
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        let root = root.to_path_buf();
        let exe = exe.to_path_buf();
        std::thread::spawn(move || {
            if let Err(e) = receive_one(&root, conn, &exe) {
                eprintln!("corral: an incoming migration failed: {e}");
            }
        });
    }
    Ok(())
}

/// What an incoming migration made, to remove if it fails.
struct Incoming {
    root: PathBuf,
    id: Option<String>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = lifecycle::remove(&self.root, &id, true);
        }
    }
}

fn receive_one(root: &Path, conn: TcpStream, exe: &Path) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(3600))).ok();
    let mut w = conn
        .try_clone()
        .map_err(|e| VmError::Io("socket".into(), e))?;
    let mut r = BufReader::new(conn);
    let Message::Prepare {
        config,
        image_digest,
        disk_bytes,
        nics,
        host,
    } = recv(&mut r)?
    else {
        let _ = send(
            &mut w,
            &Message::Error {
                message: "expected prepare".into(),
            },
        );
        return Err(VmError::State(
            "the source did not start with prepare".into(),
        ));
    };
    let mut made = Incoming {
        root: root.to_path_buf(),
        id: None,
    };
    let prepared = prepare(
        root,
        &config,
        &image_digest,
        disk_bytes,
        &nics,
        &host,
        exe,
        &mut made,
    );
    let (nbd, uri, id) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let _ = send(
                &mut w,
                &Message::Error {
                    message: e.to_string(),
                },
            );
            return Err(e);
        }
    };
    send(&mut w, &Message::Ready { nbd, migrate: uri })
        .map_err(|e| VmError::Io("socket".into(), e))?;
    match recv(&mut r) {
        Ok(Message::Finish) => {}
        Ok(_) | Err(_) => {
            return Err(VmError::State(
                "the source gave up; removed what was made".into(),
            ))
        }
    }
    let t = Instant::now();
    let vms = Vms::open(root);
    let paths = crate::qemu::Paths::new(&vms.run_dir(&id), &vms.dir(&id));
    let resumed = (|| -> Result<()> {
        let mut q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(5)).map_err(qmp_err)?;
        // The guest first: the export only matters to the source, which is done with it.
        q.execute("cont", None).map_err(qmp_err)?;
        let _ = q.execute("block-export-del", Some(json!({ "id": "corral-migrate" })));
        let _ = q.execute("nbd-server-stop", None);
        Ok(())
    })();
    match resumed {
        Ok(()) => {
            send(
                &mut w,
                &Message::Done {
                    resume_ms: t.elapsed().as_millis() as u64,
                },
            )
            .map_err(|e| VmError::Io("socket".into(), e))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !vms.state(&id).is_ok_and(|st| st.agent_ready) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !vms.state(&id).is_ok_and(|st| st.agent_ready) {
                // The guest did not come up here: this copy goes (the guard removes it), and
                // the source, still holding the paused machine, resumes it.
                let message = "the guest's agent did not answer on the destination within 30 s";
                let _ = send(
                    &mut w,
                    &Message::Error {
                        message: message.into(),
                    },
                );
                return Err(VmError::State(message.into()));
            }
            made.id = None;
            let _ = send(&mut w, &Message::Settled);
            Ok(())
        }
        Err(e) => {
            let _ = send(
                &mut w,
                &Message::Error {
                    message: e.to_string(),
                },
            );
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    root: &Path,
    src: &VmConfig,
    image_digest: &str,
    disk_bytes: u64,
    nics: &[NicIdentity],
    host: &str,
    exe: &Path,
    made: &mut Incoming,
) -> Result<(String, String, String)> {
    let vms = Vms::open(root);
    crate::store::check_name(&src.name)?;
    if src.id.len() != 64 || !src.id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(VmError::Invalid("the source sent a malformed VM id".into()));
    }
    if vms.dir(&src.id).exists() {
        return Err(VmError::State(format!(
            "this host already has VM {}",
            &src.id[..12]
        )));
    }
    let store = corral_image::Store::open(root.join("images"))?;
    let img = store.resolve(image_digest).map_err(|_| {
        VmError::State(format!(
            "this host lacks the VM's image ({image_digest}): load or pull it here first"
        ))
    })?;
    let guest = crate::kernel::GuestKernel::find(None)?;
    let agent = crate::initramfs::agent_path()?;
    let cache = lifecycle::cache_dir(root);
    let initrd = crate::initramfs::build_initramfs(&cache.join("initramfs"), &guest, &agent)?;
    let image_disk = crate::disk::image_disk(&store, &img, &cache.join("disks"))?;
    for n in nics {
        corral_net::Networks::open(root)
            .get(&n.network)
            .map_err(|_| {
                VmError::State(format!(
                    "this host has no network {}: create it (with --parent on the shared LAN)",
                    n.network
                ))
            })?;
    }
    let dir = vms.dir(&src.id);
    vms.begin(&src.id)?;
    let upper = dir.join("upper.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&upper)
        .arg(disk_bytes.to_string())
        .output()
        .map_err(|e| VmError::Io("qemu-img".into(), e))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(VmError::State(format!(
            "qemu-img create: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut cfg = src.clone();
    cfg.boot = match &src.boot {
        BootSource::Image { image, digest, .. } => BootSource::Image {
            image: image.clone(),
            digest: digest.clone(),
            image_disk,
            kernel: guest.kernel.clone(),
            initrd,
        },
        other => other.clone(),
    };
    cfg.upper_disk = Some(upper);
    cfg.auto_remove = false;
    // Recorded before anything else is made, so that a failure removes it all.
    let created = (|| {
        let _names = vms.names_lock()?;
        vms.create(&cfg)
    })();
    if let Err(e) = created {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.into());
    }
    made.id = Some(cfg.id.clone());
    let keep = nics
        .iter()
        .map(|n| (n.ip.parse().ok(), corral_net::endpoint::parse_mac(&n.mac)))
        .collect();
    let mig_port = free_port(host)?;
    let uri = format!("tcp:{host}:{mig_port}");
    let opts = StartOptions {
        incoming: true,
        incoming_uri: Some(uri.clone()),
        keep,
        ..Default::default()
    };
    let started = lifecycle::start_with(root, &cfg.id, exe, &opts)?;
    let mut monitor = started.monitor;
    // Reaped when it ends, so that a long-running receiver collects no zombies.
    std::thread::spawn(move || {
        let _ = monitor.wait();
    });
    let paths = crate::qemu::Paths::new(&vms.run_dir(&cfg.id), &vms.dir(&cfg.id));
    let mut q = Qmp::connect(&paths.qmp_cli, Duration::from_secs(10)).map_err(qmp_err)?;
    let nbd_port = free_port(host)?;
    q.execute(
        "nbd-server-start",
        Some(json!({ "addr": { "type": "inet", "data": { "host": host, "port": nbd_port.to_string() } } })),
    )
    .map_err(qmp_err)?;
    q.execute(
        "block-export-add",
        Some(json!({
            "type": "nbd",
            "id": "corral-migrate",
            "node-name": crate::snapshot::node_name("upper"),
            "name": "upper",
            "writable": true,
        })),
    )
    .map_err(qmp_err)?;
    Ok((
        format!("nbd://{host}:{nbd_port}/upper"),
        uri,
        cfg.id.clone(),
    ))
}
