//! Pods with `--isolation vm`: one VM holds all of the pod's containers, as a Kata pod does.
//!
//! The pod's VM is a corral-vm sandbox VM named as the pod: corral's kernel and agent, no
//! image of its own, and the pod's `share` directory served into it by virtiofsd. The VM is
//! the pod's network namespace (its NIC has the pod's networks, aliases and published ports),
//! its IPC and UTS namespace, and its kernel.
//!
//! A member is an ordinary container record (so `ps`, `inspect`, `logs`, `rename`, `diff`,
//! `commit`, `rm` and the events treat it as any other) whose root filesystem the host mounts
//! (the overlay of its image's layers and its own upper directory) at `share/<id>`, which the
//! guest sees at `/run/pod/<id>`. Its process runs in the guest: the agent gives it a mount
//! namespace whose `/` is that directory. On the host a small monitor
//! (`corral __pod-member`, [`member_main`]) holds the agent session: it writes the output to
//! the container's log, records the exit code and applies the restart policy, and takes the
//! signals of `stop` and `kill` on `guest.sock` in the container's directory. While it runs
//! the record has no host pid (`State.pid` is `None`), so no host-side operation that enters
//! a container's namespaces by its pid (`cp`, `top`, `stats`, `pause`, `update`) can reach
//! the host by mistake: they refuse, as for a stopped container.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corral_container::{Containers, Status};
use corral_guest::proto::Exec;
use corral_vm::client::{Client, ClientError, Sinks};
use corral_vm::lifecycle::{CreateSpec, Source};
use corral_vm::store::{NetRequest, SANDBOX_SHARE_AT};

use crate::containers::{ExecSpec, Started};
use crate::events::Event;
use crate::pods::Pod;
use crate::record::Record;
use crate::spec::{ContainerSpec, Isolation};
use crate::{Engine, EngineError, Result};

/// A pod VM's memory without `--memory`.
pub const POD_VM_MEMORY_MIB: u64 = 512;
/// Where the monitors' sockets are: a short directory, for unix socket paths.
const SOCK_DIR: &str = "/run/corral";

fn failed(message: impl Into<String>) -> EngineError {
    EngineError::Failed {
        code: 125,
        message: message.into(),
    }
}

fn client_err(e: ClientError) -> EngineError {
    match e {
        ClientError::Refused { message, code } => EngineError::Failed { code, message },
        e => failed(e.to_string()),
    }
}

impl Engine {
    /// The socket of a running member's monitor: `/run/corral/pm-<id>-<root's hash>.sock`.
    fn member_sock(&self, id: &str) -> PathBuf {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.root.as_os_str().as_encoded_bytes() {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
        Path::new(SOCK_DIR).join(format!("pm-{}-{h:08x}.sock", &id[..16.min(id.len())]))
    }

    /// The directory the pod's VM shares with the host: its members' roots.
    pub(crate) fn pod_share(&self, pod_id: &str) -> PathBuf {
        self.root.join("pods").join(pod_id).join("share")
    }

    /// Makes the VM of a pod with `--isolation vm` (not started).
    pub(crate) fn create_pod_vm(&self, pod: &Pod, cpus: u32, memory_mib: u64) -> Result<String> {
        let share = self.pod_share(&pod.id);
        std::fs::create_dir_all(&share).map_err(crate::io_err("creating", &share))?;
        let n = &pod.networking;
        let names = crate::networks::requested(&n.networks);
        if names.iter().any(|x| x == "host") {
            return Err(EngineError::invalid(
                "--network host: a pod's VM has its own kernel and cannot share the host's network stack",
            ));
        }
        let networks = if names.iter().any(|x| x == "none") {
            Vec::new()
        } else {
            names
                .into_iter()
                .enumerate()
                .map(|(i, network)| NetRequest {
                    network,
                    aliases: n.aliases.clone(),
                    ports: if i == 0 {
                        n.publish.clone()
                    } else {
                        Vec::new()
                    },
                    ip: n.ip.filter(|_| i == 0),
                    mac: n.mac.clone().filter(|_| i == 0),
                })
                .collect()
        };
        let cfg = self.create_vm(&CreateSpec {
            name: Some(pod.name.clone()),
            cpus,
            memory_mib,
            accel: None,
            source: Source::Sandbox {
                share,
                hostname: Some(pod.hostname.clone()).filter(|h| *h != pod.name),
            },
            disk_bytes: 0,
            networks,
            command: Vec::new(),
            entrypoint: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            auto_remove: false,
            cloud_init: None,
            boot_timeout_secs: crate::vms::ISOLATED_BOOT_TIMEOUT_SECS,
            tty: false,
            interactive: false,
            cdrom: None,
            vnc: false,
            restart: corral_container::config::RestartPolicy::No,
        })?;
        Ok(cfg.id)
    }

    /// Whether a VM pod's VM runs (with its agent up).
    pub(crate) fn pod_vm_running(&self, vm: &str) -> bool {
        corral_vm::lifecycle::current_state(&self.vms(), vm)
            .is_ok_and(|s| s.status == corral_vm::store::Status::Running && s.agent_ready)
    }

    /// Boots a VM pod's VM (nothing if it runs).
    pub(crate) fn boot_pod_vm(&self, vm: &str) -> Result<()> {
        if self.pod_vm_running(vm) {
            return Ok(());
        }
        // Returns once the agent answered; the VM's monitor runs on by itself.
        self.start_vm(vm, false)?;
        Ok(())
    }

    fn pod_client(&self, vm: &str) -> Result<Client> {
        let vms = self.vms();
        let paths = corral_vm::qemu::Paths::new(&vms.run_dir(vm), &vms.dir(vm));
        Client::connect(&paths.ctl).map_err(client_err)
    }

    /// The VM pod a container belongs to, if it belongs to one.
    pub(crate) fn guest_pod(&self, id: &str) -> Option<Pod> {
        let cs = self.containers().ok()?;
        self.vm_pod_of(&Record::load(&cs.dir(id)))
    }

    /// The VM pod of a container's record, if its pod is one (no read for a container
    /// outside a pod).
    pub(crate) fn vm_pod_of(&self, record: &Record) -> Option<Pod> {
        let pod = self.pod(record.pod.as_deref()?).ok()?;
        (pod.isolation == Isolation::Vm).then_some(pod)
    }

    /// Starts a member of a VM pod: the pod's VM booted if needed, the member's root mounted
    /// in the share, its monitor started. Attached, waits for the process's end.
    pub(crate) fn start_guest_member(
        &self,
        cs: &Containers,
        id: &str,
        pod: &Pod,
        attach: bool,
    ) -> Result<Started> {
        let pod = self.start_pod(&pod.id)?;
        let vm = pod
            .vm
            .clone()
            .ok_or_else(|| failed("the pod has no VM: remove it and create it again"))?;
        let target = self.pod_share(&pod.id).join(id);
        self.mount_member_root(cs, id, &target)?;
        let prepared = self.member_files(&vm, &target, &pod.hostname);
        if let Err(e) = prepared {
            self.unmount_member_root(&pod.id, id);
            return Err(e);
        }
        let (notify_r, notify_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| failed(format!("pipe: {e}")))?;
        let mut notify_r = std::fs::File::from(notify_r);
        let fd = notify_w.as_raw_fd();
        rustix::io::fcntl_setfd(&notify_w, rustix::io::FdFlags::empty())
            .map_err(|e| failed(format!("pipe: {e}")))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("__pod-member")
            .arg(&self.root)
            .arg(id)
            .arg(fd.to_string());
        let tty = cs.config(id).is_ok_and(|c| c.tty);
        if attach {
            cmd.arg("--attach");
        } else {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        if !(attach && tty) {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot start the member's monitor: {e}")))?;
        drop(notify_w);
        let mut msg = String::new();
        let _ = notify_r.read_to_string(&mut msg);
        if msg != "OK" {
            let _ = child.wait();
            let (code, message) = match msg.strip_prefix("ERR ") {
                Some(rest) => {
                    let (c, m) = rest.split_once(' ').unwrap_or(("125", rest));
                    (c.parse().unwrap_or(125), m.to_owned())
                }
                None => (
                    125,
                    "the member's monitor ended before it started".to_owned(),
                ),
            };
            return Err(EngineError::Failed { code, message });
        }
        if !attach {
            return Ok(Started::Detached);
        }
        let st = child
            .wait()
            .map_err(|e| failed(format!("waiting for the member: {e}")))?;
        Ok(Started::Exited(st.code().unwrap_or(255)))
    }

    /// Mounts a member's root (its image's layers under its upper directory) at `target`,
    /// unless it is mounted there.
    fn mount_member_root(&self, cs: &Containers, id: &str, target: &Path) -> Result<()> {
        std::fs::create_dir_all(target).map_err(crate::io_err("creating", target))?;
        if is_mount_point(target) {
            return Ok(());
        }
        let cfg = cs.config(id)?;
        let dir = cs.dir(id);
        for sub in ["upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(crate::io_err("creating", &dir))?;
        }
        // The overlay a stopped container runs on (one layer a call: no option-string limit),
        // then put in the share.
        let root = corral_container::container_cp::detached_overlay(&cfg, &dir)
            .map_err(|e| failed(format!("the member's root: {e}")))?;
        rustix::mount::move_mount(
            &root,
            "",
            rustix::fs::CWD,
            target,
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| {
            failed(format!(
                "mounting the member's root on {}: {e}",
                target.display()
            ))
        })
    }

    /// Unmounts a member's root from its pod's share (nothing if it is not mounted).
    pub(crate) fn unmount_member_root(&self, pod_id: &str, id: &str) {
        let target = self.pod_share(pod_id).join(id);
        if is_mount_point(&target) {
            let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = std::fs::remove_dir(&target);
    }

    /// Unmounts every member's root from a pod's share (the pod stops or goes).
    pub(crate) fn unmount_member_roots(&self, pod_id: &str) {
        if let Ok(rd) = std::fs::read_dir(self.pod_share(pod_id)) {
            for e in rd.flatten() {
                if let Some(id) = e.file_name().to_str() {
                    self.unmount_member_root(pod_id, id);
                }
            }
        }
    }

    /// What a member needs in its root: the mount points the agent mounts on, and the pod's
    /// `/etc/hosts`, `/etc/resolv.conf` (as the guest has them) and `/etc/hostname`. Written
    /// through the root (`RESOLVE_IN_ROOT`): an image's symlinks cannot lead out of it.
    fn member_files(&self, vm: &str, target: &Path, hostname: &str) -> Result<()> {
        let root = rustix::fs::open(
            target,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| failed(format!("{}: {e}", target.display())))?;
        for d in ["proc", "sys", "dev", "etc"] {
            match rustix::fs::mkdirat(&root, d, rustix::fs::Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(failed(format!("creating /{d} in the member's root: {e}"))),
            }
        }
        let mut client = self.pod_client(vm)?;
        let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
        for f in ["/etc/hosts", "/etc/resolv.conf"] {
            // A pod without a network has no resolv.conf in its guest: the member then has
            // none either.
            let mut data = Vec::new();
            if client.copy_out(f, &mut data).is_ok() {
                files.push((&f[5..], data));
            }
        }
        files.push(("hostname", format!("{hostname}\n").into_bytes()));
        let etc = rustix::fs::openat2(
            &root,
            "etc",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
            rustix::fs::ResolveFlags::IN_ROOT,
        )
        .map_err(|e| failed(format!("/etc of the member's root: {e}")))?;
        for (name, data) in files {
            let _ = rustix::fs::unlinkat(&etc, name, rustix::fs::AtFlags::empty());
            let fd = rustix::fs::openat(
                &etc,
                name,
                rustix::fs::OFlags::WRONLY
                    | rustix::fs::OFlags::CREATE
                    | rustix::fs::OFlags::EXCL
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .map_err(|e| failed(format!("writing /etc/{name} in the member's root: {e}")))?;
            std::fs::File::from(fd)
                .write_all(&data)
                .map_err(|e| failed(format!("writing /etc/{name} in the member's root: {e}")))?;
        }
        Ok(())
    }

    /// Sends a signal to a running member of a VM pod (through its monitor).
    pub(crate) fn signal_guest_member(&self, id: &str, signal: i32) -> Result<()> {
        let cs = self.containers()?;
        running(&cs, id)?;
        let path = self.member_sock(id);
        // Just after a start the previous run's monitor may still hold the socket's path
        // (the connection then breaks at once) or the new one may not listen yet: try again
        // for a moment while the member runs.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        // Whether the signal went out: a monitor whose process the signal ends may exit
        // before it answers.
        let mut sent = false;
        loop {
            let attempt = (|| -> std::result::Result<String, String> {
                let mut conn = UnixStream::connect(&path)
                    .map_err(|e| format!("cannot reach the member's monitor: {e}"))?;
                // One write: the monitor answers (and may close) once it has the whole line.
                conn.write_all(format!("{signal}\n").as_bytes())
                    .map_err(|e| format!("signalling the member: {e}"))?;
                sent = true;
                let mut answer = String::new();
                let _ = conn.read_to_string(&mut answer);
                if answer.trim().is_empty() {
                    return Err("signalling the member: the monitor closed the connection".into());
                }
                Ok(answer.trim().to_owned())
            })();
            match attempt {
                Ok(a) if a == "OK" => return Ok(()),
                Ok(other) => return Err(failed(format!("signalling the member: {other}"))),
                Err(e) => {
                    let ended = running(&cs, id).is_err();
                    if sent && ended {
                        return Ok(());
                    }
                    if ended || std::time::Instant::now() >= deadline {
                        return Err(failed(e));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Stops a member of a VM pod: `signal`, then SIGKILL after `timeout`.
    pub(crate) fn stop_guest_member(&self, id: &str, signal: i32, timeout: Duration) -> Result<()> {
        let cs = self.containers()?;
        let mut s = cs.load_raw(id)?;
        if cs.load(id)?.status != Status::Running {
            return Ok(());
        }
        s.stop_requested = true;
        cs.save(&s)?;
        let _ = self.signal_guest_member(id, signal);
        if corral_container::container_kill::wait_exit(&cs, id, Some(timeout))? {
            return Ok(());
        }
        let _ = self.signal_guest_member(id, 9);
        corral_container::container_kill::wait_exit(&cs, id, Some(Duration::from_secs(10)))?;
        Ok(())
    }

    /// Runs a command in a running member of a VM pod, relaying this process's terminal.
    pub(crate) fn exec_guest_member(&self, id: &str, pod: &Pod, x: ExecSpec) -> Result<i32> {
        if x.detach {
            return Err(EngineError::invalid(
                "exec -d in a VM pod's container is not supported: run it attached",
            ));
        }
        if x.privileged {
            return Err(EngineError::invalid(
                "exec --privileged: a VM pod's container already has the guest's privileges",
            ));
        }
        let cs = self.containers()?;
        running(&cs, id)?;
        let cfg = cs.config(id)?;
        let (uid, gid) = match &x.user {
            None => (cfg.uid, cfg.gid),
            Some(u) => {
                let mut dirs = vec![cs.dir(id).join("upper")];
                dirs.extend(cfg.layers.iter().rev().cloned());
                let r = crate::users::resolve(u, &dirs)?;
                (r.uid, r.gid)
            }
        };
        let mut env = cfg.env.clone();
        crate::plan::merge_env(&mut env, x.env.into_iter());
        let (rows, cols) = terminal_size();
        let exec = Exec {
            argv: x.command,
            env,
            cwd: x.workdir.unwrap_or(cfg.cwd),
            uid,
            gid,
            tty: x.tty,
            rows,
            cols,
            stdin: x.interactive,
            root: format!("{SANDBOX_SHARE_AT}/{id}"),
        };
        let vm = pod.vm.clone().unwrap_or_default();
        let mut client = self.pod_client(&vm)?;
        let _raw = x
            .tty
            .then(|| corral_container::tty::RawMode::enter(std::io::stdin().as_fd()))
            .flatten();
        let stdin: Option<Box<dyn Read + Send>> = x
            .interactive
            .then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>);
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        client
            .exec(
                exec,
                stdin,
                Sinks {
                    stdout: &mut out,
                    stderr: &mut err,
                },
            )
            .map_err(client_err)
    }
}

/// The size of this process's terminal (0, 0 when it has none).
fn terminal_size() -> (u16, u16) {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .map(|w| (w.ws_row, w.ws_col))
        .unwrap_or((0, 0))
}

/// Refuses a container that is not running.
fn running(cs: &Containers, id: &str) -> Result<()> {
    let s = cs.load(id)?;
    if s.status != Status::Running {
        return Err(EngineError::Conflict(format!(
            "container {} is not running",
            s.name
        )));
    }
    Ok(())
}

/// Whether `p` is a mount point (another filesystem than its parent's).
fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::metadata(p), p.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|pm| pm.dev() != m.dev())
}

/// What a VM pod's member cannot have: the VM is its machine, so host devices, cgroup limits
/// and a container's own security settings do not apply; those given are refused, not ignored.
pub(crate) fn check_member_spec(spec: &ContainerSpec) -> Result<()> {
    let refuse = |what: &str, why: &str| {
        Err(EngineError::invalid(format!(
            "{what} is not supported for a container in a VM pod: {why}"
        )))
    };
    if !spec.mounts.is_empty() {
        return refuse("-v/--mount/--tmpfs", "volumes in VM pods are not done yet");
    }
    let r = &spec.resources;
    if r.memory.is_some() || r.cpus.is_some() || r.cpu_shares.is_some() || r.pids_limit.is_some() {
        return refuse(
            "--memory/--cpus/--cpu-shares/--pids-limit",
            "give the pod's VM its size with `pod create --memory/--cpus`",
        );
    }
    let s = &spec.security;
    if !s.devices.is_empty() {
        return refuse("--device", "the VM has its own devices");
    }
    if s.privileged || !s.cap_add.is_empty() || !s.cap_drop.is_empty() {
        return refuse(
            "--privileged/--cap-add/--cap-drop",
            "the VM is the pod's boundary; its containers run with the guest's root privileges",
        );
    }
    if s.userns.is_some() || !s.uidmap.is_empty() {
        return refuse("--userns/--uidmap", "the VM is the pod's boundary");
    }
    if spec.read_only || spec.init || !spec.sysctls.is_empty() || !spec.ulimits.is_empty() {
        return refuse(
            "--read-only/--init/--sysctl/--ulimit",
            "not done for VM pods yet",
        );
    }
    Ok(())
}

/// Writes a stream's output to the container's log (JSON lines) and, attached, to the
/// caller's stream.
struct LogWriter<'a> {
    log: &'a std::cell::RefCell<corral_container::process::logsink::LogSink>,
    stream: &'static str,
    pending: Vec<u8>,
    tee: Option<Box<dyn Write>>,
}

impl LogWriter<'_> {
    fn flush_lines(&mut self, eof: bool) {
        let mut lines = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            lines.push(self.pending.drain(..=pos).collect::<Vec<u8>>());
        }
        if eof && !self.pending.is_empty() {
            lines.push(std::mem::take(&mut self.pending));
        }
        if !lines.is_empty() {
            let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
            self.log.borrow_mut().write(self.stream, &lines, &time);
        }
    }
}

impl Write for LogWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(t) = &mut self.tee {
            let _ = t.write_all(buf).and_then(|()| t.flush());
        }
        self.pending.extend_from_slice(buf);
        self.flush_lines(false);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `corral __pod-member ROOT ID NOTIFY_FD [--attach]`: the host side of a VM pod member's
/// process (see the module's doc). Writes `OK` or `ERR CODE MESSAGE` to NOTIFY_FD once the
/// process runs or could not start; exits with the process's code.
pub fn member_main(args: &[std::ffi::OsString]) -> i32 {
    let (Some(root), Some(id), Some(fd)) = (
        args.first().map(PathBuf::from),
        args.get(1).and_then(|s| s.to_str()).map(str::to_owned),
        args.get(2)
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i32>().ok()),
    ) else {
        eprintln!("usage: corral __pod-member ROOT ID NOTIFY_FD [--attach]");
        return 125;
    };
    let attach = args.iter().any(|a| a == "--attach");
    let mut notify = corral_container::process::inherited(fd).map(std::fs::File::from);
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("corral"));
    let engine = Engine::new(root, exe);
    let code = run_member(&engine, &id, attach, &mut notify);
    if let Some(mut n) = notify.take() {
        let _ = write!(n, "ERR {code} the member's monitor could not start it");
    }
    code
}

fn run_member(engine: &Engine, id: &str, attach: bool, notify: &mut Option<std::fs::File>) -> i32 {
    let tell = |notify: &mut Option<std::fs::File>, msg: &str| {
        if let Some(mut n) = notify.take() {
            let _ = n.write_all(msg.as_bytes());
        }
    };
    let Ok(cs) = engine.containers() else {
        tell(notify, "ERR 125 cannot open the container store");
        return 125;
    };
    let (Ok(cfg), Ok(mut state)) = (cs.config(id), cs.load_raw(id)) else {
        tell(notify, &format!("ERR 125 no such container: {id}"));
        return 125;
    };
    let dir = cs.dir(id);
    let Some(pod) = engine.guest_pod(id) else {
        tell(notify, "ERR 125 the container's pod is not a VM pod");
        return 125;
    };
    let vm = pod.vm.clone().unwrap_or_default();
    let mut client = match engine.pod_client(&vm) {
        Ok(c) => c,
        Err(e) => {
            tell(notify, &format!("ERR 125 {e}"));
            return 125;
        }
    };
    // Signals from `stop` and `kill`, for the current session.
    let session = Arc::new(AtomicU32::new(0));
    let sock = engine.member_sock(id);
    let _ = std::fs::create_dir_all(SOCK_DIR);
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            tell(notify, &format!("ERR 125 {}: {e}", sock.display()));
            return 125;
        }
    };
    // The socket's identity: a later run's monitor may bind the same path before this one
    // is done, and this one must then leave that socket alone when it ends.
    let bound = sock_identity(&sock);
    if let Ok(control) = client.control() {
        let session = Arc::clone(&session);
        std::thread::spawn(move || serve_signals(listener, control, session));
    }
    let log = std::cell::RefCell::new(corral_container::process::logsink::LogSink::open(
        &cfg.log,
        &dir,
        id,
        &state.name,
    ));
    let _raw = (attach && cfg.tty)
        .then(|| corral_container::tty::RawMode::enter(std::io::stdin().as_fd()))
        .flatten();
    let code = Member {
        engine,
        cs: &cs,
        id,
        cfg: &cfg,
        attach,
        client: &mut client,
        session: &session,
        log: &log,
    }
    .run(&mut state, notify);
    if bound.is_some() && sock_identity(&sock) == bound {
        let _ = std::fs::remove_file(&sock);
    }
    if code.1 && state.auto_remove {
        let _ = engine.remove(id, true, true);
    }
    code.0
}

/// The device and inode of the file at `path`, if there is one.
fn sock_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// A member's process as its monitor runs it.
struct Member<'a> {
    engine: &'a Engine,
    cs: &'a Containers,
    id: &'a str,
    cfg: &'a corral_container::config::ContainerConfig,
    attach: bool,
    client: &'a mut Client,
    session: &'a AtomicU32,
    log: &'a std::cell::RefCell<corral_container::process::logsink::LogSink>,
}

impl Member<'_> {
    /// Runs the process, again under its restart policy; its last exit code, and whether it
    /// ended for good (`--rm` applies).
    fn run(
        &mut self,
        state: &mut corral_container::State,
        notify: &mut Option<std::fs::File>,
    ) -> (i32, bool) {
        let (engine, cs, id, cfg, attach, session, log) = (
            self.engine,
            self.cs,
            self.id,
            self.cfg,
            self.attach,
            self.session,
            self.log,
        );
        let tell = |notify: &mut Option<std::fs::File>, msg: &str| {
            if let Some(mut n) = notify.take() {
                let _ = n.write_all(msg.as_bytes());
            }
        };
        let dir = cs.dir(id);
        let mut backoff = Duration::from_millis(100);
        loop {
            let (rows, cols) = if attach { terminal_size() } else { (24, 80) };
            let exec = Exec {
                argv: cfg.args.clone(),
                env: cfg.env.clone(),
                cwd: cfg.cwd.clone(),
                uid: cfg.uid,
                gid: cfg.gid,
                tty: cfg.tty,
                rows,
                cols,
                stdin: cfg.interactive && attach,
                root: format!("{SANDBOX_SHARE_AT}/{id}"),
            };
            let s = match self.client.exec_begin(exec) {
                Ok((s, _pid)) => s,
                Err(e) => {
                    let (code, message) = match e {
                        ClientError::Refused { message, code } => (code, message),
                        e => (125, e.to_string()),
                    };
                    state.status = Status::Exited;
                    state.exit_code = Some(code);
                    state.error = Some(message.clone());
                    state.finished_at = Some(corral_container::state::now());
                    state.pid = None;
                    let _ = cs.save(state);
                    tell(notify, &format!("ERR {code} {message}"));
                    return (code, true);
                }
            };
            session.store(s, Ordering::SeqCst);
            state.status = Status::Running;
            state.pid = None;
            let me = std::process::id() as i32;
            state.monitor_pid = Some(me);
            state.monitor_start = corral_container::state::process_start_time(me);
            state.started_at = Some(corral_container::state::now());
            state.error = None;
            let _ = cs.save(state);
            tell(notify, "OK");
            let record = Record::load(&dir);
            let event = |action: &str| {
                Event::new("container", action, id)
                    .attr("name", &state.name)
                    .attr("image", &state.image)
                    .labels(&record.labels)
            };
            if state.restart_count > 0 {
                engine.emit(event("restart"));
            }
            engine.emit(event("start"));
            let stdin: Option<Box<dyn Read + Send>> = (attach && cfg.interactive)
                .then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>);
            let mut out = LogWriter {
                log,
                stream: "stdout",
                pending: Vec::new(),
                tee: attach.then(|| Box::new(std::io::stdout()) as Box<dyn Write>),
            };
            let mut err = LogWriter {
                log,
                stream: "stderr",
                pending: Vec::new(),
                tee: attach.then(|| Box::new(std::io::stderr()) as Box<dyn Write>),
            };
            let ended = self.client.exec_finish(
                s,
                stdin,
                Sinks {
                    stdout: &mut out,
                    stderr: &mut err,
                },
            );
            out.flush_lines(true);
            err.flush_lines(true);
            drop((out, err));
            let (code, lost) = match ended {
                Ok(c) => (c, None),
                Err(e) => (137, Some(format!("the pod's VM went away: {e}"))),
            };
            let disk = cs.load_raw(id).ok();
            state.stop_requested |= disk.as_ref().is_some_and(|d| d.stop_requested);
            state.status = Status::Exited;
            state.exit_code = Some(code);
            state.pid = None;
            state.finished_at = Some(corral_container::state::now());
            state.error = lost.clone();
            let _ = cs.save(state);
            engine.emit(event("die").attr("exitCode", code.to_string()));
            if lost.is_some()
                || state.stop_requested
                || !cfg.restart.wants_restart(code, state.restart_count)
            {
                return (code, true);
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(60));
            if cs.load_raw(id).is_ok_and(|s| s.stop_requested) {
                return (code, true);
            }
            state.restart_count += 1;
        }
    }
}

/// Takes `SIGNAL\n` lines on the member's socket and sends them to its current session.
fn serve_signals(
    listener: UnixListener,
    mut control: corral_vm::client::Control,
    session: Arc<AtomicU32>,
) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        // The whole line (a signal number is a few bytes; a writer may send them in pieces).
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while buf.len() < 32 && !buf.ends_with(b"\n") {
            match conn.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                _ => break,
            }
        }
        let line = String::from_utf8_lossy(&buf);
        let answer = match line.trim().parse::<i32>() {
            Ok(sig) if (1..=64).contains(&sig) => {
                match control.signal(session.load(Ordering::SeqCst), sig) {
                    Ok(()) => "OK".to_owned(),
                    Err(e) => e.to_string(),
                }
            }
            _ => format!("not a signal number: {:?}", line.trim()),
        };
        let _ = conn.write_all(answer.as_bytes());
    }
}
