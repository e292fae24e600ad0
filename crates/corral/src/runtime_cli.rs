//! corral as an OCI runtime: runc's command line, for podman (through conmon) and containerd's
//! runc shim. Reached as `corral-runtime ...` (a link to corral: `argv[0]` decides) or
//! `corral runtime ...`. Errors go to stderr and, with `--log`, to that file as JSON lines
//! (`level`, `msg`, `time`), which is where conmon and the shim look for them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use corral_container::container_exec::{self, ExecRequest};
use corral_container::{container_kill, oci, oci_runtime, Containers};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// corral's OCI runtime (runc-compatible command line).
#[derive(Debug, Parser)]
#[command(name = "corral-runtime", disable_version_flag = true)]
struct RuntimeCli {
    /// State directory of the runtime's containers.
    #[arg(long, default_value = "/run/corral-runtime")]
    root: PathBuf,
    /// Log file (errors as text or JSON lines).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Use systemd-style cgroup paths (slice:prefix:name), placed as cgroupfs directories.
    #[arg(long)]
    systemd_cgroup: bool,
    /// Verbose logging (accepted).
    #[arg(long)]
    debug: bool,
    /// Rootless mode (accepted; corral runs as root).
    #[arg(long)]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Verb>,
}

/// The flags of `create` (and `run`). `--no-pivot` and `--no-new-keyring` are accepted for the
/// callers' sake: corral always pivots and makes no keyring. `--preserve-fds N` passes
/// descriptors 3 to 3 + N - 1 to the process; no other descriptor of the caller's reaches it.
#[derive(Debug, clap::Args)]
struct CreateArgs {
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    no_pivot: bool,
    #[arg(long)]
    no_new_keyring: bool,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default TERM).
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container, wait for it, delete it.
    Run {
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Run a process in a container.
    Exec {
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(short, long)]
        tty: bool,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Add a capability to the process (bounding, effective, permitted; ambient if
        /// inheritable), as runc's `--cap`; repeatable.
        #[arg(short, long = "cap")]
        cap: Vec<String>,
        /// Run in a paused container too (the process starts frozen).
        #[arg(long)]
        ignore_paused: bool,
        /// Run in a sub-cgroup of the container's: `[CONTROLLER[,CONTROLLER]:]PATH`
        /// (repeatable on cgroup v1, one per controller list).
        #[arg(long = "cgroup", value_name = "[CONTROLLERS:]PATH")]
        cgroup: Vec<String>,
        id: String,
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// List a container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
    },
    /// Freeze a container.
    Pause { id: String },
    /// Thaw a container.
    Resume { id: String },
    /// Change a container's resources (OCI LinuxResources JSON from a file or -).
    Update {
        #[arg(short, long)]
        resources: Option<PathBuf>,
        id: String,
    },
    /// What this runtime supports, as JSON.
    Features,
    /// Write a default config.json for a bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print the ids only.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// Runs the runtime command line; returns the exit code.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match RuntimeCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    let log = Log {
        path: cli.log.clone(),
        json: cli.log_format == "json",
    };
    match run(cli, &log) {
        Ok(code) => code,
        Err(err) => {
            let mut msg = err.to_string();
            for c in err.chain().skip(1) {
                msg.push_str(&format!(": {c}"));
            }
            // runc's wording, which containerd and the conformance suites match on.
            if let Some(id) = missing_container(&err) {
                msg = format!("container {id} does not exist");
            }
            eprintln!("corral-runtime: error: {msg}");
            log.write("error", &msg);
            1
        }
    }
}

/// `--log` and `--log-format`: where conmon and the shim look for what went wrong.
struct Log {
    path: Option<PathBuf>,
    json: bool,
}

impl Log {
    /// Appends one entry, if there is a log file.
    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.path else { return };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let time = humantime_now();
            let line = if self.json {
                serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
            } else {
                format!("time=\"{time}\" level={level} msg=\"{msg}\"")
            };
            let _ = writeln!(f, "{line}");
        }
    }

    /// A warning, as runc prints them: to stderr and the log.
    fn warn(&self, msg: &str) {
        eprintln!("corral-runtime: warning: {msg}");
        self.write("warning", msg);
    }
}

fn humantime_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn run(cli: RuntimeCli, log: &Log) -> Result<i32> {
    if cli.version {
        println!(
            "corral-runtime version {}\nspec: 1.0.2-dev",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(0);
    }
    let Some(verb) = cli.command else {
        bail!("no command: see --help");
    };
    // Before anything is opened here, which could take the number of a descriptor the caller
    // said it passes but does not.
    let preserve = match &verb {
        Verb::Create(a) | Verb::Run { create: a, .. } => a.preserve_fds,
        Verb::Exec { preserve_fds, .. } => *preserve_fds,
        _ => 0,
    };
    let holes = corral_container::fds::hold_missing(preserve)
        .with_context(|| format!("--preserve-fds {preserve}: holding the numbers not passed"))?;
    let cs =
        Containers::open(&cli.root).with_context(|| format!("opening {}", cli.root.display()))?;
    let cg = Path::new(CGROUP_ROOT);
    let warn = |msg: &str| log.warn(msg);
    match verb {
        Verb::Create(a) => {
            // The init is left to the caller (a subreaper) to reap.
            create(&cs, &a, &holes, log)?;
        }
        Verb::Start { id } => oci_runtime::start(&cs, &id, &warn)?,
        Verb::State { id } => println!(
            "{}",
            serde_json::to_string_pretty(&oci_runtime::state_json(&cs, &id)?)?
        ),
        Verb::Kill { all, id, signal } => {
            let sig = container_kill::parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            oci_runtime::kill(&cs, &id, sig, all, cg)?;
        }
        Verb::Delete { force, id } => oci_runtime::delete(&cs, &id, force, cg, &warn)?,
        Verb::Run { detach, create: a } => {
            let id = a.id.clone();
            let mut child = create(&cs, &a, &holes, log)?;
            oci_runtime::start(&cs, &id, &warn)?;
            if detach {
                // The init is left to the caller (a subreaper) to reap.
                return Ok(0);
            }
            let st = child.wait().context("waiting for the container")?;
            oci_runtime::delete(&cs, &id, true, cg, &warn)?;
            use std::os::unix::process::ExitStatusExt;
            return Ok(st
                .code()
                .or_else(|| st.signal().map(|s| 128 + s))
                .unwrap_or(255));
        }
        Verb::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            cwd,
            env,
            preserve_fds,
            cap,
            ignore_paused,
            cgroup,
            id,
            args,
        } => {
            let req = match process {
                Some(p) => {
                    let proc_ = oci::read_process(&p)?;
                    ExecRequest {
                        tty: proc_.terminal,
                        console_socket: console_socket.clone(),
                        args: proc_.args,
                        env: proc_.env,
                        cwd: (!proc_.cwd.is_empty()).then_some(proc_.cwd),
                        user: Some((proc_.user.uid, proc_.user.gid)),
                        groups: Some(proc_.user.additional_gids.clone()),
                        interactive: true,
                        detach,
                        pid_file,
                        replace_env: true,
                        keep_stdio: true,
                        detach_keys: Vec::new(),
                    }
                }
                None => ExecRequest {
                    tty,
                    console_socket: console_socket.clone(),
                    args,
                    env,
                    cwd,
                    user: None,
                    groups: None,
                    interactive: true,
                    detach,
                    pid_file,
                    replace_env: false,
                    keep_stdio: true,
                    detach_keys: Vec::new(),
                },
            };
            let supported = corral_container::capabilities::supported();
            let (add_caps, unknown) = corral_container::capabilities::known(&cap, &supported);
            if !unknown.is_empty() {
                log.warn(&format!(
                    "ignoring unknown or unavailable capabilities: [{}]",
                    unknown.join(" ")
                ));
            }
            let opts = container_exec::ExecOptions {
                preserve_fds,
                preserve_holes: holes,
                cgroup: match cgroup.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    _ => bail!(
                        "--cgroup: give it once (several controller lists are not supported yet)"
                    ),
                },
                add_caps,
                ignore_paused,
                privileged: false,
            };
            return Ok(container_exec::exec_with(&cs, &id, req, &opts)?);
        }
        Verb::Ps { format, id } => {
            let pids = oci_runtime::pids(&cs, &id, cg)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
        }
        Verb::Pause { id } => corral_container::container_pause::set_paused(&cs, &id, true, cg)?,
        Verb::Resume { id } => corral_container::container_pause::set_paused(&cs, &id, false, cg)?,
        Verb::Update { resources, id } => {
            let text = match resources.as_deref() {
                Some(p) if p != Path::new("-") => {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
                }
                _ => {
                    let mut b = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                    b
                }
            };
            let r = oci::parse_resources(&text)?;
            let s = cs.load_raw(&id)?;
            corral_container::cgroups::Cgroup::from_dirs(cg, s.cgroup_paths)
                .update(cg, &r)
                .context("updating the cgroup")?;
        }
        Verb::Features => println!("{}", serde_json::to_string_pretty(&features())?),
        Verb::Spec { bundle } => {
            let p = bundle.join("config.json");
            if p.exists() {
                bail!("{} exists already", p.display());
            }
            std::fs::write(&p, serde_json::to_string_pretty(&default_spec())?)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Verb::List { format, quiet } => {
            let mut rows = Vec::new();
            for e in std::fs::read_dir(&cli.root)?.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if let Ok(v) = oci_runtime::state_json(&cs, &id) {
                    rows.push(v);
                }
            }
            rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            if quiet {
                for r in rows {
                    println!("{}", r["id"].as_str().unwrap_or(""));
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!("ID\tPID\tSTATUS\tBUNDLE");
                for r in rows {
                    println!(
                        "{}\t{}\t{}\t{}",
                        r["id"].as_str().unwrap_or(""),
                        r["pid"],
                        r["status"].as_str().unwrap_or(""),
                        r["bundle"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(0)
}

/// The container an error says is not there.
fn missing_container(err: &anyhow::Error) -> Option<String> {
    use corral_container::state::StateError;
    err.chain().find_map(|c| {
        let state = c.downcast_ref::<StateError>().or_else(|| {
            match c.downcast_ref::<oci_runtime::RuntimeError>() {
                Some(oci_runtime::RuntimeError::State(s)) => Some(s),
                _ => None,
            }
        })?;
        match state {
            StateError::NotFound(id) => Some(id.clone()),
            _ => None,
        }
    })
}

/// `create` (also the first half of `run`).
fn create(
    cs: &Containers,
    a: &CreateArgs,
    holes: &[i32],
    log: &Log,
) -> Result<corral_container::process::InitChild> {
    let warn = |msg: &str| log.warn(msg);
    let opts = oci_runtime::CreateOptions {
        bundle: &a.bundle,
        pid_file: a.pid_file.as_deref(),
        console_socket: a.console_socket.as_deref(),
        cgroup_root: Path::new(CGROUP_ROOT),
        preserve_fds: a.preserve_fds,
        preserve_holes: holes.to_vec(),
        warn: &warn,
    };
    Ok(oci_runtime::create(cs, &a.id, opts)?)
}

fn features() -> serde_json::Value {
    let mount_options = [
        [
            "ro",
            "rw",
            "nosuid",
            "nodev",
            "noexec",
            "bind",
            "rbind",
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
            "relatime",
            "strictatime",
            "noatime",
            "nodiratime",
            "nosymfollow",
        ]
        .as_slice(),
        corral_container::mount_attr::OPTIONS,
    ]
    .concat();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": corral_container::capabilities::available(),
            "cgroup": { "v1": true, "v2": true, "systemd": false },
            "seccomp": { "enabled": true },
        },
    })
}

fn default_spec() -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false, "user": { "uid": 0, "gid": 0 }, "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
            "capabilities": { "bounding": corral_container::config::DEFAULT_CAPS, "effective": corral_container::config::DEFAULT_CAPS,
                "permitted": corral_container::config::DEFAULT_CAPS },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "corral",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }],
            "maskedPaths": corral_container::config::MASKED_PATHS,
            "readonlyPaths": corral_container::config::READONLY_PATHS
        }
    })
}
