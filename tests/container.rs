//! End-to-end tests of corral's container commands against the contract in
//! docs/cli-containers.md: `run` (foreground, `--rm`, `-d`), `create`, `start`, `ps`, `logs`,
//! `stop`, `kill`, `wait`, `rm`, `inspect`; isolation (namespaces, capabilities, masked `/proc`
//! paths), limits (memory, pids, cpu), volumes, and that removing a container leaves no state
//! dir, cgroup, process or mount behind — also when its monitor was killed.
//!
//! Every test runs the real binary as root in its own world (`CORRAL_ROOT`) with the busybox
//! image imported as `busybox:test`, and a [`ContainerGuard`] that `rm -f`s whatever the test
//! made, even when it fails. See `corral_e2e` for the harness.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use corral_e2e::containers::{
    cgroup_dirs, cgroup_dirs_anywhere, cgroup_procs, host_output, is_container_id, mounts_of,
    parent_pid, poll_until, printed_container_id, process_alive, process_cmdline, processes_of,
    run_detached, run_rm, run_rm_ok, signal, wait_until, BUSYBOX_IMAGE,
};
use corral_e2e::mounts::mounts_under;
use corral_e2e::process::{describe, wait_deadline};
use corral_e2e::{
    path_str, report_skip, skip_unless_root, stderr_of, stdout_of, unique_name, unique_token,
    ContainerGuard, Corral,
};

/// corral's own failures (docs/cli-containers.md).
const EXIT_CORRAL: i32 = 125;
/// Deadline of one corral command in these tests: containers here live seconds, not minutes.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a state change (exit noticed, log line written, process gone) may take to show.
const SETTLE: Duration = Duration::from_secs(15);
/// Podman's 11 default capabilities as a mask: CHOWN(0) DAC_OVERRIDE(1) FOWNER(3) FSETID(4)
/// KILL(5) SETGID(6) SETUID(7) SETPCAP(8) NET_BIND_SERVICE(10) SYS_CHROOT(18) SETFCAP(31).
const PODMAN_DEFAULT_CAPS: u64 = 0x8004_05fb;

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh world with the busybox image imported and a short command deadline.
fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
}

/// Asserts the container command ran and failed on its own (not corral's 125, not 126/127,
/// not success); returns its stderr.
fn assert_workload_failed(what: &str, out: &Output) -> String {
    let code = out.status.code();
    assert!(
        matches!(code, Some(c) if c != 0 && c != EXIT_CORRAL && c != 126 && c != 127),
        "{what}: expected the command inside to fail by itself, got: {}",
        describe(out)
    );
    stderr_of(out)
}

/// The host's view of a namespace link of this process, e.g. `pid:[4026531836]`.
fn host_namespace(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/self/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read /proc/sys/kernel/hostname")
        .trim()
        .to_owned()
}

/// Everything a container may have left on the host, known from before it was removed.
struct Footprint {
    id: String,
    state_dir: PathBuf,
    cgroups: Vec<PathBuf>,
    pids: Vec<u32>,
}

impl Footprint {
    /// Records the container's state dir, its cgroups (where the contract puts them and what
    /// `inspect` lists) and its init's pid and monitor's pid while it runs.
    fn of_running(c: &Corral, name: &str, id: &str) -> Self {
        let info = c.inspect_container(name);
        let mut cgroups = info.cgroup_paths.clone();
        cgroups.extend(cgroup_dirs(id));
        cgroups.sort();
        cgroups.dedup();
        let mut pids = Vec::new();
        if let Some(pid) = info.pid {
            pids.push(pid);
            if let Some(parent) = parent_pid(pid).filter(|&p| p > 1) {
                pids.push(parent);
            }
        }
        Footprint {
            id: id.to_owned(),
            state_dir: c.container_dir(id),
            cgroups,
            pids,
        }
    }

    /// Panics with what is left: the state dir, a cgroup, a process, a mount, a `ps -a` row.
    fn assert_gone(&self, c: &Corral) {
        let id = &self.id;
        assert!(
            !self.state_dir.exists(),
            "state dir {} still exists after rm",
            self.state_dir.display()
        );
        let mut cgroups: Vec<PathBuf> = self
            .cgroups
            .iter()
            .filter(|p| p.exists())
            .cloned()
            .collect();
        cgroups.extend(cgroup_dirs_anywhere(id));
        assert!(
            cgroups.is_empty(),
            "cgroups left after rm of {id}: {cgroups:?}"
        );
        let settled = poll_until(Duration::from_secs(5), || {
            processes_of(id).is_empty() && !self.pids.iter().any(|&p| process_alive(p))
        });
        let alive: Vec<String> = self
            .pids
            .iter()
            .copied()
            .filter(|&p| process_alive(p))
            .chain(processes_of(id))
            .map(|p| format!("{p}: {}", process_cmdline(p)))
            .collect();
        assert!(settled, "processes left after rm of {id}: {alive:?}");
        let mounts = mounts_of(id, &self.state_dir);
        assert!(
            mounts.is_empty(),
            "mounts left after rm of {id}: {mounts:?}"
        );
        c.assert_no_leaks();
        assert!(
            c.listed_container(id).is_none(),
            "ps -a still lists {id} after rm"
        );
    }
}

/// `dotted.path` in `value`, panicking with the whole object when a key is missing.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("JSON lacks `{path}`:\n{value:#}"))
    })
}

fn is_string(v: &Value) -> bool {
    v.is_string()
}
fn is_bool(v: &Value) -> bool {
    v.is_boolean()
}
fn is_int(v: &Value) -> bool {
    v.is_i64() || v.is_u64()
}
fn is_int_or_null(v: &Value) -> bool {
    v.is_null() || is_int(v)
}
fn is_string_or_null(v: &Value) -> bool {
    v.is_null() || v.is_string()
}
fn is_string_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}
fn is_string_array_or_null(v: &Value) -> bool {
    v.is_null() || is_string_array(v)
}
fn is_command(v: &Value) -> bool {
    v.is_string() || is_string_array(v)
}
fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty()) || is_int(v)
}

/// A field a JSON output must have: its dotted path, the kind it must be, and the check.
type FieldCheck = (&'static str, &'static str, fn(&Value) -> bool);

/// The fields of a `ps --json` row, per the contract.
const PS_FIELDS: &[FieldCheck] = &[
    ("id", "a string", is_string),
    ("name", "a string", is_string),
    ("image", "a string", is_string),
    ("command", "a string or an array of strings", is_command),
    ("status", "a string", is_string),
    ("exit_code", "an integer or null", is_int_or_null),
    ("oom_killed", "a boolean", is_bool),
    ("pid", "an integer or null", is_int_or_null),
    ("created", "a timestamp (string or integer)", is_timestamp),
];

/// The same for `inspect`.
const INSPECT_FIELDS: &[FieldCheck] = &[
    ("id", "a string", is_string),
    ("name", "a string", is_string),
    ("image", "a string", is_string),
    ("image_id", "a string", is_string),
    ("created", "a timestamp (string or integer)", is_timestamp),
    ("state.status", "a string", is_string),
    ("state.running", "a boolean", is_bool),
    ("state.pid", "an integer or null", is_int_or_null),
    ("state.exit_code", "an integer or null", is_int_or_null),
    ("state.oom_killed", "a boolean", is_bool),
    ("state.started_at", "a string or null", is_string_or_null),
    ("state.finished_at", "a string or null", is_string_or_null),
    ("state.error", "a string or null", is_string_or_null),
    (
        "config.cmd",
        "an array of strings or null",
        is_string_array_or_null,
    ),
    (
        "config.entrypoint",
        "an array of strings or null",
        is_string_array_or_null,
    ),
    ("config.env", "an array of strings", is_string_array),
    ("config.working_dir", "a string", is_string),
    ("config.user", "a string", is_string),
    ("config.hostname", "a string", is_string),
    ("host_config.memory", "an integer", is_int),
    ("host_config.cpus", "a number", Value::is_number),
    ("host_config.cpu_shares", "an integer", is_int),
    ("host_config.cpuset_cpus", "a string", is_string),
    (
        "host_config.pids_limit",
        "an integer or null",
        is_int_or_null,
    ),
    ("host_config.network", "a string", is_string),
    ("host_config.read_only", "a boolean", is_bool),
    (
        "host_config.binds",
        "an array (of `SRC:DST[:ro]` strings or objects)",
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().all(|b| b.is_string() || b.is_object()))
        },
    ),
    ("host_config.tmpfs", "an array or an object", |v| {
        v.is_array() || v.is_object()
    }),
    ("host_config.auto_remove", "a boolean", is_bool),
    ("cgroup_paths", "an array of strings", is_string_array),
    ("log_path", "a string", is_string),
];

/// Asserts that every field of `fields` is in `what`'s JSON `value` with its kind; lists every
/// field that is missing or of the wrong kind at once.
fn assert_shape(what: &str, value: &Value, fields: &[FieldCheck]) {
    let problems: Vec<String> = fields
        .iter()
        .filter_map(|(path, kind, is)| {
            let field = path.split('.').try_fold(value, |v, key| v.get(key));
            match field {
                None => Some(format!("`{path}` is missing (should be {kind})")),
                Some(f) if !is(f) => Some(format!("`{path}` should be {kind}, is {f}")),
                Some(_) => None,
            }
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{what} does not have the contract's shape:\n  {}\n{value:#}",
        problems.join("\n  ")
    );
}

/// A host process this test started, killed and reaped on drop.
struct HostChild(std::process::Child);

impl Drop for HostChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = wait_deadline(&mut self.0, Duration::from_secs(10));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. run: output and exit codes

#[test]
fn run_prints_output_and_returns_exit_code() {
    if skip_unless_root("run_prints_output_and_returns_exit_code") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);

    let out = run_rm(&c, &[], &["echo", "hello"]);
    assert_eq!(out.status.code(), Some(0), "echo hello: {}", describe(&out));
    assert_eq!(stdout_of(&out), "hello\n", "echo hello: {}", describe(&out));

    let out = run_rm(&c, &[], &["sh", "-c", "echo to-out; echo to-err >&2"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout_of(&out), "to-out\n", "stdout: {}", describe(&out));
    assert!(
        stderr_of(&out).contains("to-err"),
        "the container's stderr should reach run's stderr: {}",
        describe(&out)
    );

    let out = run_rm(&c, &[], &["sh", "-c", "exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "sh -c 'exit 3': {}",
        describe(&out)
    );

    let missing = format!("no-such-command-{}", unique_token());
    let out = run_rm(&c, &[], &[&missing]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "a missing command: {}",
        describe(&out)
    );
    assert!(
        stderr_of(&out).contains(&missing),
        "stderr should name the missing command {missing}: {}",
        describe(&out)
    );

    let out = run_rm(&c, &[], &["/etc/passwd"]);
    assert_eq!(
        out.status.code(),
        Some(126),
        "a non-executable file: {}",
        describe(&out)
    );

    let left = c.ps(true);
    assert!(left.is_empty(), "run --rm left containers: {left:?}");
    let dirs: Vec<_> = fs::read_dir(c.containers_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| is_container_id(&n.to_string_lossy()))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(dirs.is_empty(), "run --rm left state dirs: {dirs:?}");
    c.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------------
// 2. namespaces

#[test]
fn container_has_its_own_pid_uts_ipc_mount_namespaces() {
    if skip_unless_root("container_has_its_own_pid_uts_ipc_mount_namespaces") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);

    assert_eq!(
        run_rm_ok(&c, &[], &["sh", "-c", "echo $$"]),
        "1\n",
        "pid of sh"
    );

    let listing = run_rm_ok(&c, &[], &["ls", "/proc"]);
    let pids: Vec<&str> = listing
        .split_whitespace()
        .filter(|e| e.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert!(
        pids.contains(&"1") && pids.len() <= 3,
        "/proc inside should show only the container's own processes, shows {pids:?}"
    );

    let script = "for n in pid uts ipc mnt; do echo \"$n $(readlink /proc/self/ns/$n)\"; done";
    let inside = run_rm_ok(&c, &[], &["sh", "-c", script]);
    for kind in ["pid", "uts", "ipc", "mnt"] {
        let line = inside
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{kind} ")))
            .unwrap_or_else(|| panic!("no {kind} namespace line in:\n{inside}"));
        assert!(
            line.starts_with(&format!("{kind}:[")),
            "readlink /proc/self/ns/{kind} inside gave {line:?}"
        );
        assert_ne!(
            line,
            host_namespace(kind),
            "the container shares the host's {kind} namespace"
        );
    }

    let before = host_hostname();
    assert_eq!(
        run_rm_ok(&c, &["--hostname", "box1"], &["hostname"]),
        "box1\n"
    );
    assert_eq!(host_hostname(), before, "the host's hostname changed");

    // The rootfs is mounted in the container's mount namespace only.
    let name = unique_name("mnt");
    let id = run_detached(&c, &mut guard, &name, &[], &["sleep", "30"]);
    let info = c.inspect_container(&name);
    let pid = info.pid.expect("inspect state.pid of a running container");
    let on_host = mounts_of(&id, &c.container_dir(&id));
    assert!(
        on_host.is_empty(),
        "mounts of the running container visible on the host: {on_host:?}"
    );
    let under_root = c.leaked_mounts();
    assert!(
        under_root.is_empty(),
        "mounts under CORRAL_ROOT visible on the host while a container runs: {under_root:?}"
    );
    let inner = fs::read_to_string(format!("/proc/{pid}/mounts")).expect("container's mounts");
    assert!(
        inner
            .lines()
            .any(|l| l.split(' ').nth(1) == Some("/") && l.split(' ').nth(2) == Some("overlay")),
        "the container's / should be an overlay:\n{inner}"
    );
    c.ok(&["rm", "-f", &name]);
}

#[test]
fn container_has_its_own_net_and_cgroup_namespaces() {
    if skip_unless_root("container_has_its_own_net_and_cgroup_namespaces") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);

    let script = "for n in net cgroup; do echo \"$n $(readlink /proc/self/ns/$n)\"; done; \
                  ip -o link; echo cgroup-file; cat /proc/self/cgroup";
    let inside = run_rm_ok(&c, &[], &["sh", "-c", script]);
    for kind in ["net", "cgroup"] {
        let line = inside
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{kind} ")))
            .unwrap_or_else(|| panic!("no {kind} namespace line in:\n{inside}"));
        assert_ne!(
            line,
            host_namespace(kind),
            "the container shares the host's {kind} namespace:\n{inside}"
        );
    }
    let (links, cgroup_file) = inside
        .split_once("cgroup-file\n")
        .expect("marker line in the output");
    let ifaces: Vec<&str> = links
        .lines()
        .filter(|l| l.contains(": <"))
        .filter_map(|l| l.split(": ").nth(1))
        .collect();
    assert_eq!(
        ifaces,
        ["lo"],
        "--network none (the default) should leave only lo:\n{inside}"
    );
    for line in cgroup_file.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        assert!(
            !path.contains("corral"),
            "the cgroup namespace should hide the container's cgroup path, /proc/self/cgroup \
             shows {line:?}"
        );
    }

    let host_net = run_rm_ok(
        &c,
        &["--network", "host"],
        &["sh", "-c", "readlink /proc/self/ns/net"],
    );
    assert_eq!(
        host_net.trim(),
        host_namespace("net"),
        "--network host should share the host's network namespace"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. environment, working dir, user

#[test]
fn env_workdir_user_apply() {
    if skip_unless_root("env_workdir_user_apply") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);

    let env = run_rm_ok(&c, &["-e", "A=1", "-e", "B=two words"], &["env"]);
    let vars: Vec<&str> = env.lines().collect();
    assert!(vars.contains(&"A=1"), "env lacks A=1:\n{env}");
    assert!(
        vars.contains(&"B=two words"),
        "env lacks B=two words:\n{env}"
    );
    assert!(
        vars.iter()
            .any(|v| v.starts_with("PATH=") && v.contains("/bin")),
        "env lacks a PATH:\n{env}"
    );

    let env_file = c.path("env-file");
    fs::write(&env_file, "FROM_FILE=yes\n").expect("write env file");
    let env = run_rm_ok(&c, &["--env-file", path_str(&env_file)], &["env"]);
    assert!(
        env.lines().any(|l| l == "FROM_FILE=yes"),
        "--env-file not applied:\n{env}"
    );

    assert_eq!(run_rm_ok(&c, &["-w", "/tmp"], &["pwd"]), "/tmp\n");

    let id = run_rm_ok(&c, &["-u", "1000:1000"], &["id"]);
    assert!(
        id.contains("uid=1000") && id.contains("gid=1000"),
        "-u 1000:1000, id printed: {id}"
    );
    let id = run_rm_ok(&c, &[], &["id"]);
    assert!(id.contains("uid=0"), "default user should be root: {id}");
}

// ---------------------------------------------------------------------------------------------
// 4, 5. limits

#[test]
fn memory_limit_kills_hog() {
    if skip_unless_root("memory_limit_kills_hog") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("oom");
    guard.track(&name);

    // busybox has no allocator tool: the shell's string doubles until the limit is hit.
    let out = c.cmd(&[
        "run",
        "--name",
        &name,
        "-m",
        "16m",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "a memory hog under -m 16m should be killed (137): {}",
        describe(&out)
    );
    let info = c.inspect_container(&name);
    assert_eq!(info.status, "exited", "inspect:\n{:#}", info.raw);
    assert_eq!(info.exit_code, Some(137), "inspect:\n{:#}", info.raw);
    assert!(
        info.oom_killed,
        "inspect state.oom_killed should be true:\n{:#}",
        info.raw
    );
    let row = c
        .listed_container(&name)
        .expect("ps -a lists the container");
    assert!(
        row.oom_killed,
        "ps -a oom_killed should be true: {}",
        row.raw
    );
    c.ok(&["rm", &name]);
}

#[test]
fn pids_limit_stops_fork_bomb() {
    if skip_unless_root("pids_limit_stops_fork_bomb") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);

    let started = Instant::now();
    let out = run_rm(
        &c,
        &["--pids-limit", "10"],
        &[
            "sh",
            "-c",
            "for i in $(seq 1 30); do sleep 5 & done; wait; echo all-forked",
        ],
    );
    let stderr = stderr_of(&out).to_lowercase();
    let fork_failed =
        stderr.contains("can't fork") || stderr.contains("resource temporarily unavailable");
    assert!(
        fork_failed || !out.status.success(),
        "30 processes under --pids-limit 10 should not all start: {}",
        describe(&out)
    );
    assert!(
        !stdout_of(&out).contains("all-forked"),
        "the shell forked 30 children under --pids-limit 10: {}",
        describe(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the fork bomb took {:?}",
        started.elapsed()
    );
    // The host is unaffected: it still starts processes.
    assert_eq!(host_output("echo", &["host-ok"]), "host-ok\n");
}

#[test]
fn resource_flags_set_the_container_cgroups() {
    if skip_unless_root("resource_flags_set_the_container_cgroups") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("limits");
    let id = run_detached(
        &c,
        &mut guard,
        &name,
        &[
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
            "--pids-limit",
            "50",
        ],
        &["sleep", "30"],
    );
    let pid = c
        .inspect_container(&name)
        .pid
        .expect("state.pid of a running container");
    let read = |path: PathBuf| -> String {
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned()
    };
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        let dir = Path::new("/sys/fs/cgroup/corral").join(&id);
        assert!(dir.is_dir(), "no cgroup at {}", dir.display());
        assert_eq!(read(dir.join("memory.max")), "67108864");
        let cpu_max = read(dir.join("cpu.max"));
        let (quota, period) = cpu_max.split_once(' ').expect("cpu.max: QUOTA PERIOD");
        let ratio = quota.parse::<f64>().expect("quota") / period.parse::<f64>().expect("period");
        assert!(
            (ratio - 0.5).abs() < 1e-6,
            "cpu.max {cpu_max} is not 0.5 CPU"
        );
        assert_eq!(read(dir.join("pids.max")), "50");
        assert_eq!(read(dir.join("cpuset.cpus")), "0");
        assert!(
            cgroup_procs(&dir).contains(&pid),
            "pid {pid} not in {}",
            dir.display()
        );
    } else {
        let dir = |controller: &str| {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join("corral")
                .join(&id)
        };
        for controller in ["memory", "cpu", "pids", "cpuset"] {
            let d = dir(controller);
            assert!(d.is_dir(), "no cgroup at {}", d.display());
            assert!(
                cgroup_procs(&d).contains(&pid),
                "the container's pid {pid} is not in {}",
                d.display()
            );
        }
        assert_eq!(
            read(dir("memory").join("memory.limit_in_bytes")),
            "67108864"
        );
        let quota: f64 = read(dir("cpu").join("cpu.cfs_quota_us"))
            .parse()
            .expect("quota");
        let period: f64 = read(dir("cpu").join("cpu.cfs_period_us"))
            .parse()
            .expect("period");
        assert!(
            (quota / period - 0.5).abs() < 1e-6,
            "cfs quota {quota} / period {period} is not 0.5 CPU"
        );
        assert_eq!(read(dir("cpu").join("cpu.shares")), "512");
        assert_eq!(read(dir("pids").join("pids.max")), "50");
        assert_eq!(read(dir("cpuset").join("cpuset.cpus")), "0");
    }
    c.ok(&["rm", "-f", &name]);
}

// ---------------------------------------------------------------------------------------------
// 6. detached lifecycle

#[test]
fn detached_run_logs_stop_and_rm_clean_everything() {
    if skip_unless_root("detached_run_logs_stop_and_rm_clean_everything") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("det");
    let id = run_detached(
        &c,
        &mut guard,
        &name,
        &[],
        &[
            "sh",
            "-c",
            "echo started; echo ready; trap 'exit 0' TERM; while true; do sleep 1; done",
        ],
    );

    let running = c.ps(false);
    let row = running
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("ps --json does not list {id}: {running:?}"));
    assert_eq!(row.name, name, "ps row: {}", row.raw);
    assert_eq!(row.status, "running", "ps row: {}", row.raw);
    assert_eq!(
        c.inspect_container(&id[..12]).id,
        id,
        "a unique id prefix should find the container"
    );

    let footprint = Footprint::of_running(&c, &name, &id);
    assert!(
        !cgroup_dirs(&id).is_empty(),
        "no cgroup under /sys/fs/cgroup/*/corral/{id} or /sys/fs/cgroup/corral/{id}"
    );
    assert!(
        !footprint.pids.is_empty() && process_alive(footprint.pids[0]),
        "state.pid of a running container should be a live process: {:?}",
        footprint.pids
    );

    let mut logs = String::new();
    let complete = poll_until(SETTLE, || {
        logs = c.ok(&["logs", &name]);
        logs.contains("ready")
    });
    assert!(complete, "logs never showed both lines:\n{logs}");
    assert_eq!(logs, "started\nready\n", "corral logs {name}");
    assert_eq!(c.ok(&["logs", "--tail", "1", &name]), "ready\n");

    let begun = Instant::now();
    let stopped = c.ok(&["stop", "-t", "5", &name]);
    let took = begun.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "stop -t 5 of a container that exits on TERM took {took:?}"
    );
    assert_eq!(stopped.trim(), name, "stop prints the names given");

    assert!(
        !c.ps(false).iter().any(|r| r.id == id),
        "ps (running only) still lists the stopped container"
    );
    let row = c.listed_container(&name).expect("ps -a lists it");
    assert_eq!(row.status, "exited", "ps -a row: {}", row.raw);
    assert_eq!(row.exit_code, Some(0), "the trap exits 0: {}", row.raw);

    let removed = c.ok(&["rm", &name]);
    assert_eq!(removed.trim(), name, "rm prints the names given");
    footprint.assert_gone(&c);
}

// ---------------------------------------------------------------------------------------------
// 7. names and bad input

#[test]
fn name_conflicts_and_bad_input_fail_clearly() {
    if skip_unless_root("name_conflicts_and_bad_input_fail_clearly") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);

    let name = unique_name("dup");
    let id = run_detached(&c, &mut guard, &name, &[], &["sleep", "30"]);
    let stderr = c.fail_125(&["run", "-d", "--name", &name, BUSYBOX_IMAGE, "sleep", "30"]);
    assert!(
        stderr.contains(&name),
        "the conflict error should name {name}:\n{stderr}"
    );
    let same_name = c.ps(true).into_iter().filter(|r| r.name == name).count();
    assert_eq!(same_name, 1, "containers named {name} after the conflict");

    // Two creates racing for one name: exactly one wins.
    let race = unique_name("race");
    guard.track(&race);
    let barrier = Barrier::new(2);
    let outputs: Vec<Output> = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    c.cmd(&["create", "--name", &race, BUSYBOX_IMAGE, "sleep", "30"])
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create thread"))
            .collect()
    });
    let winners = outputs.iter().filter(|o| o.status.success()).count();
    let shown: Vec<String> = outputs.iter().map(describe).collect();
    assert_eq!(winners, 1, "two racing creates of {race}: {shown:#?}");
    let loser = outputs
        .iter()
        .find(|o| !o.status.success())
        .expect("one create failed");
    assert_eq!(
        loser.status.code(),
        Some(EXIT_CORRAL),
        "{}",
        describe(loser)
    );
    let raced: Vec<_> = c.ps(true).into_iter().filter(|r| r.name == race).collect();
    assert_eq!(raced.len(), 1, "containers named {race}: {raced:?}");
    assert_eq!(raced[0].status, "created", "{}", raced[0].raw);

    // rm of a running container needs -f.
    let stderr = c.fail_125(&["rm", &name]);
    assert!(
        !stderr.trim().is_empty(),
        "rm of a running container: no message"
    );
    let row = c
        .listed_container(&name)
        .expect("still listed after a refused rm");
    assert_eq!(row.status, "running", "after a refused rm: {}", row.raw);
    assert!(
        row.pid.is_some_and(process_alive),
        "the container's process died after a refused rm: {}",
        row.raw
    );
    let pid = row.pid.unwrap_or(0);
    c.ok(&["rm", "-f", &name]);
    assert!(
        c.listed_container(&name).is_none(),
        "rm -f left {name} listed"
    );
    assert!(
        poll_until(Duration::from_secs(5), || !process_alive(pid)),
        "rm -f left the container's process {pid} running"
    );
    assert!(!c.container_dir(&id).exists(), "rm -f left the state dir");

    let missing = format!("no-such-image-{}:v1", unique_token());
    let stderr = c.fail_125(&["run", "--rm", &missing, "true"]);
    assert!(
        stderr.contains(&missing) || stderr.contains(missing.split(':').next().unwrap_or("")),
        "unknown image: the error should name it:\n{stderr}"
    );
    let stderr = c.fail_125(&["run", "--rm", "-m", "bogus", BUSYBOX_IMAGE, "true"]);
    assert!(
        stderr.contains("bogus") || stderr.to_lowercase().contains("memory"),
        "-m bogus: the error should say what is wrong:\n{stderr}"
    );
    c.fail_125(&["run"]);

    let left: Vec<String> = c.ps(true).into_iter().map(|r| r.name).collect();
    assert_eq!(
        left,
        [race.as_str()],
        "the failed runs left containers behind"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. a monitor killed under a running container

#[test]
fn killed_monitor_reports_exited_and_rm_cleans() {
    if skip_unless_root("killed_monitor_reports_exited_and_rm_cleans") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("orphan");
    let id = run_detached(&c, &mut guard, &name, &[], &["sleep", "60"]);
    let footprint = Footprint::of_running(&c, &name, &id);
    let pid = c
        .inspect_container(&name)
        .pid
        .expect("state.pid of a running container");
    let monitor = parent_pid(pid).expect("parent of the container's init");
    let monitor_cmd = process_cmdline(monitor);
    assert!(
        monitor > 1 && monitor_cmd.contains("corral"),
        "the parent of the container's init ({pid}) should be corral's monitor, is {monitor}: \
         {monitor_cmd:?}"
    );

    assert!(signal(monitor, "KILL"), "kill -KILL {monitor}");
    wait_until(SETTLE, "the monitor to die", || !process_alive(monitor));
    if !poll_until(Duration::from_secs(3), || !process_alive(pid)) {
        eprintln!("note: the container's init {pid} outlived its monitor; killing it");
        signal(pid, "KILL");
        wait_until(SETTLE, "the container's init to die", || {
            !process_alive(pid)
        });
    }

    let mut last = None;
    let exited = poll_until(SETTLE, || {
        last = c.listed_container(&name);
        last.as_ref().is_some_and(|r| r.status == "exited")
    });
    assert!(
        exited,
        "ps -a should report a container whose monitor died as exited, shows {:?}",
        last.map(|r| r.raw)
    );
    let info = c.inspect_container(&name);
    assert!(!info.running, "inspect state.running:\n{:#}", info.raw);

    c.ok(&["rm", &name]);
    footprint.assert_gone(&c);
}

// ---------------------------------------------------------------------------------------------
// 9. volumes, tmpfs, read-only root

#[test]
fn volumes_tmpfs_and_read_only_rootfs() {
    if skip_unless_root("volumes_tmpfs_and_read_only_rootfs") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let host_dir = c.path(&format!("vol-{}", unique_token()));
    fs::create_dir(&host_dir).expect("create volume dir");
    fs::write(host_dir.join("from-host"), "host data\n").expect("write host file");
    let bind = format!("{}:/data", path_str(&host_dir));
    let bind_ro = format!("{bind}:ro");

    let out = run_rm_ok(
        &c,
        &["-v", &bind],
        &[
            "sh",
            "-c",
            "cat /data/from-host && echo inside > /data/written",
        ],
    );
    assert_eq!(out, "host data\n", "the bind shows the host's file");
    assert_eq!(
        fs::read_to_string(host_dir.join("written")).ok().as_deref(),
        Some("inside\n"),
        "a file written to the bind should appear on the host"
    );

    let out = run_rm(
        &c,
        &["-v", &bind_ro],
        &["sh", "-c", "cat /data/from-host && echo x > /data/denied"],
    );
    assert_workload_failed("writing to a :ro bind", &out);
    assert_eq!(stdout_of(&out), "host data\n", ":ro stays readable");
    assert!(
        !host_dir.join("denied").exists(),
        "a write through a :ro bind reached the host"
    );

    let out = run_rm_ok(
        &c,
        &["--tmpfs", "/scratch"],
        &[
            "sh",
            "-c",
            "echo t > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/mounts",
        ],
    );
    assert!(
        out.starts_with("t\n") && out.contains("tmpfs"),
        "--tmpfs /scratch should be a writable tmpfs:\n{out}"
    );

    let out = run_rm(&c, &["--read-only"], &["touch", "/x"]);
    assert_workload_failed("touch /x with --read-only", &out);
    assert_eq!(
        run_rm_ok(
            &c,
            &["--read-only", "--tmpfs", "/tmp"],
            &["sh", "-c", "touch /tmp/x && echo ok"]
        ),
        "ok\n",
        "--read-only with --tmpfs /tmp: /tmp should be writable"
    );

    let still = mounts_under(&host_dir);
    assert!(
        still.is_empty(),
        "the bind is still mounted on the host: {still:?}"
    );
    c.assert_no_leaks();
    assert_eq!(
        fs::read_to_string(host_dir.join("from-host"))
            .ok()
            .as_deref(),
        Some("host data\n"),
        "the host's file survived"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. what a default container must not be able to do

#[test]
fn mount_inside_default_container_is_denied() {
    if skip_unless_root("mount_inside_default_container_is_denied") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let out = run_rm(
        &c,
        &[],
        &[
            "sh",
            "-c",
            "mkdir -p /mnt || exit 50; mount -t tmpfs none /mnt",
        ],
    );
    assert_ne!(
        out.status.code(),
        Some(50),
        "mkdir /mnt: {}",
        describe(&out)
    );
    let stderr = assert_workload_failed("mount -t tmpfs none /mnt", &out).to_lowercase();
    assert!(
        stderr.contains("permission denied") || stderr.contains("not permitted"),
        "mount should be refused for lack of privilege: {}",
        describe(&out)
    );
}

#[test]
fn unshare_inside_default_container_is_denied() {
    if skip_unless_root("unshare_inside_default_container_is_denied") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let applets = run_rm_ok(&c, &[], &["busybox", "--list"]);
    if !applets.lines().any(|a| a == "unshare") {
        report_skip(
            "unshare_inside_default_container_is_denied",
            "busybox has no unshare applet",
        );
        return;
    }
    let script = "for f in -m -u -i -n -p; do \
                  if unshare $f true; then echo \"allowed $f\"; fi; done; echo done";
    let out = run_rm_ok(&c, &[], &["sh", "-c", script]);
    assert_eq!(
        out, "done\n",
        "unshare of a namespace should be denied in a default container:\n{out}"
    );
}

#[test]
fn sysrq_trigger_is_not_writable() {
    if skip_unless_root("sysrq_trigger_is_not_writable") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    // `h` only prints the SysRq help to the kernel log, should the write go through.
    let out = run_rm(&c, &[], &["sh", "-c", "echo h > /proc/sysrq-trigger"]);
    assert_workload_failed("echo h > /proc/sysrq-trigger", &out);
}

#[test]
fn masked_proc_paths_read_nothing() {
    if skip_unless_root("masked_proc_paths_read_nothing") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    // docker's masked files; only those the host has, with content, prove anything.
    let candidates = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
        "/proc/timer_stats",
    ];
    // /proc/kcore is checked inside whether or not the host has it.
    let files: Vec<&str> = candidates
        .into_iter()
        .filter(|p| {
            *p == "/proc/kcore"
                || host_output(
                    "sh",
                    &["-c", &format!("head -c 64 {p} 2>/dev/null | wc -c")],
                )
                .trim()
                .parse::<u64>()
                .is_ok_and(|n| n > 0)
        })
        .collect();
    let dirs: Vec<&str> = ["/proc/acpi", "/proc/scsi", "/sys/firmware"]
        .into_iter()
        .filter(|p| fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()))
        .collect();
    eprintln!("masked paths checked: {files:?} {dirs:?}");
    if !Path::new("/proc/kcore").exists() {
        eprintln!("note: this kernel has no /proc/kcore; it is checked only by absence inside");
    }
    let mut script = String::new();
    for f in &files {
        script.push_str(&format!(
            "echo \"{f} $(head -c 64 {f} 2>/dev/null | wc -c)\";"
        ));
    }
    for d in &dirs {
        script.push_str(&format!("echo \"{d} $(ls -A {d} 2>/dev/null | wc -l)\";"));
    }
    let out = run_rm_ok(&c, &[], &["sh", "-c", &script]);
    let mut checked = 0;
    for line in out.lines() {
        let (path, count) = line.rsplit_once(' ').expect("`path count` line");
        assert_eq!(
            count.trim(),
            "0",
            "{path} should read as empty in a default container:\n{out}"
        );
        checked += 1;
    }
    assert_eq!(checked, files.len() + dirs.len(), "output:\n{out}");
}

#[test]
fn hostname_change_inside_is_denied() {
    if skip_unless_root("hostname_change_inside_is_denied") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let before = host_hostname();
    let out = run_rm_ok(
        &c,
        &["--hostname", "box2"],
        &["sh", "-c", "hostname evil; echo \"rc=$? now=$(hostname)\""],
    );
    assert!(
        out.contains("now=box2") && !out.contains("rc=0"),
        "hostname evil should fail and leave box2:\n{out}"
    );
    assert_eq!(host_hostname(), before, "the host's hostname changed");
}

#[test]
fn mknod_block_device_is_denied() {
    if skip_unless_root("mknod_block_device_is_denied") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let out = run_rm(&c, &[], &["sh", "-c", "mknod /tmp/sda b 8 0"]);
    assert_workload_failed("mknod /tmp/sda b 8 0", &out);
}

/// The devices cgroup: a node the container makes itself is useless unless a rule allows it;
/// `--device` brings a host device with the access asked; `--device-cgroup-rule` allows by
/// number; `--privileged` gets the host's devices. /dev/net/tun (10:200) serves as the device:
/// opening it needs no capability, so only the cgroup decides.
#[test]
fn device_flags_give_and_withhold_host_devices() {
    if skip_unless_root("device_flags_give_and_withhold_host_devices") {
        return;
    }
    if !Path::new("/dev/net/tun").exists() {
        report_skip(
            "device_flags_give_and_withhold_host_devices",
            "no /dev/net/tun on this host",
        );
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);

    // mknod is allowed (docker's "c *:* m"), opening the node is not.
    let out = run_rm(
        &c,
        &["--cap-add", "MKNOD"],
        &[
            "sh",
            "-c",
            "mknod /tmp/tun c 10 200 && echo made && exec 3<>/tmp/tun",
        ],
    );
    let err = assert_workload_failed("opening a node no rule allows", &out);
    assert!(stdout_of(&out).contains("made"), "{}", describe(&out));
    assert!(
        err.contains("Operation not permitted"),
        "{}",
        describe(&out)
    );

    // --device: the node, with the host's numbers, read and write.
    let out = run_rm_ok(
        &c,
        &["--device", "/dev/net/tun"],
        &[
            "sh",
            "-c",
            "ls -l /dev/net/tun && exec 3<>/dev/net/tun && echo opened",
        ],
    );
    assert!(
        out.contains("10,") && out.contains("200") && out.contains("opened"),
        "{out}"
    );
    // At another path, read only: reading opens, writing does not.
    let out = run_rm_ok(
        &c,
        &["--device", "/dev/net/tun:/dev/mytun:r"],
        &["sh", "-c", "exec 3</dev/mytun && echo read-ok"],
    );
    assert!(out.contains("read-ok"), "{out}");
    let out = run_rm(
        &c,
        &["--device", "/dev/net/tun:/dev/mytun:r"],
        &["sh", "-c", "exec 3>/dev/mytun"],
    );
    assert_workload_failed("writing a device given read-only", &out);

    // --device-cgroup-rule: a node made inside, allowed by number.
    let out = run_rm_ok(
        &c,
        &["--cap-add", "MKNOD", "--device-cgroup-rule", "c 10:200 rw"],
        &[
            "sh",
            "-c",
            "mknod /tmp/tun c 10 200 && exec 3<>/tmp/tun && echo opened",
        ],
    );
    assert!(out.contains("opened"), "{out}");

    // --privileged: the host's devices are there and usable.
    let out = run_rm_ok(
        &c,
        &["--privileged"],
        &["sh", "-c", "exec 3<>/dev/net/tun && echo opened"],
    );
    assert!(out.contains("opened"), "{out}");

    // Bad input: each a clear error from corral, nothing run.
    for (flags, says) in [
        (vec!["--device", "/no/such/device"], "/no/such/device"),
        (vec!["--device", "/etc/hostname"], "not a device node"),
        (vec!["--device", "/dev/net/tun:/etc/tun"], "under /dev/"),
        (vec!["--device", "/dev/net/tun:/dev/t:rx"], "r, w and m"),
        (
            vec!["--device-cgroup-rule", "x 1:3 r"],
            "the type must be a, c or b",
        ),
        (vec!["--device-cgroup-rule", "c 1 r"], "MAJOR:MINOR"),
    ] {
        let out = run_rm(&c, &flags, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "{flags:?}: {}",
            describe(&out)
        );
        assert!(
            stderr_of(&out).contains(says),
            "{flags:?}: {}",
            describe(&out)
        );
    }
}

#[test]
fn kill_cannot_reach_host_processes() {
    if skip_unless_root("kill_cannot_reach_host_processes") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let target = HostChild(
        Command::new("sleep")
            .arg("120")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a host sleep"),
    );
    let host_pid = target.0.id();
    let out = run_rm(&c, &[], &["sh", "-c", &format!("kill -9 {host_pid}")]);
    let stderr = assert_workload_failed("kill -9 of a host pid", &out).to_lowercase();
    assert!(
        stderr.contains("no such process"),
        "kill of host pid {host_pid} from inside: {}",
        describe(&out)
    );
    assert!(
        process_alive(host_pid),
        "the host process {host_pid} died of a kill from inside a container"
    );
}

#[test]
fn dev_is_minimal_and_sys_and_proc_sys_are_read_only() {
    if skip_unless_root("dev_is_minimal_and_sys_and_proc_sys_are_read_only") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);

    let script = "ls /dev; echo blocks $(find /dev -type b | wc -l); \
                  echo random $(head -c 4 /dev/urandom | wc -c); echo x > /dev/null && echo null-ok";
    let out = run_rm_ok(&c, &[], &["sh", "-c", script]);
    let entries: Vec<&str> = out.split_whitespace().collect();
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(entries.contains(&dev), "/dev lacks {dev}:\n{out}");
    }
    assert!(
        out.lines().any(|l| l == "blocks 0"),
        "a default container should see no block device in /dev:\n{out}"
    );
    assert!(out.contains("random 4") && out.contains("null-ok"), "{out}");

    let out = run_rm(&c, &[], &["sh", "-c", "touch /sys/corral-test"]);
    assert_workload_failed("touch /sys/corral-test", &out);
    // A UTS-namespaced sysctl: harmless should the write go through.
    let out = run_rm(
        &c,
        &[],
        &["sh", "-c", "echo evil > /proc/sys/kernel/domainname"],
    );
    assert_workload_failed("writing /proc/sys/kernel/domainname", &out);
}

#[test]
fn default_capabilities_are_podmans_eleven() {
    if skip_unless_root("default_capabilities_are_podmans_eleven") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let status = run_rm_ok(&c, &[], &["cat", "/proc/self/status"]);
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{set}:")))
            .unwrap_or_else(|| panic!("no {set} in /proc/self/status:\n{status}"))
            .trim();
        let mask = u64::from_str_radix(hex, 16).expect("hex capability mask");
        assert_eq!(
            mask, PODMAN_DEFAULT_CAPS,
            "{set} is {mask:#x}, podman's defaults are {PODMAN_DEFAULT_CAPS:#x}"
        );
    }
}

#[test]
fn stop_kills_after_grace_and_logs_follow_to_exit() {
    if skip_unless_root("stop_kills_after_grace_and_logs_follow_to_exit") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);

    // A container that ignores SIGTERM is killed when the grace period ends.
    let stubborn = unique_name("stubborn");
    run_detached(
        &c,
        &mut guard,
        &stubborn,
        &[],
        &[
            "sh",
            "-c",
            "trap '' TERM; echo deaf; while true; do sleep 1; done",
        ],
    );
    wait_until(SETTLE, "the TERM trap to be set", || {
        c.ok(&["logs", &stubborn]).contains("deaf")
    });
    let begun = Instant::now();
    c.ok(&["stop", "-t", "1", &stubborn]);
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "stop -t 1 of a container deaf to TERM took {took:?}"
    );
    let row = c.listed_container(&stubborn).expect("ps -a lists it");
    assert_eq!(row.status, "exited", "{}", row.raw);
    assert_eq!(
        row.exit_code,
        Some(137),
        "killed after the grace: {}",
        row.raw
    );
    c.ok(&["rm", &stubborn]);

    // logs -f follows until the container exits; -t prefixes each line with its time.
    let talker = unique_name("talker");
    run_detached(
        &c,
        &mut guard,
        &talker,
        &[],
        &["sh", "-c", "echo one; sleep 2; echo two"],
    );
    let followed = c.ok(&["logs", "-f", &talker]);
    assert_eq!(followed, "one\ntwo\n", "logs -f should follow to the exit");
    let stamped = c.ok(&["logs", "-t", &talker]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "logs -t:\n{stamped}");
    for (line, text) in lines.iter().zip(["one", "two"]) {
        let (stamp, rest) = line.split_once(' ').unwrap_or(("", line));
        assert!(
            rest == text && stamp.len() >= 20 && stamp.starts_with("20") && stamp.contains('T'),
            "logs -t line {line:?} should be `<RFC 3339 time> {text}`"
        );
    }
    c.ok(&["rm", &talker]);
}

// ---------------------------------------------------------------------------------------------
// the other verbs: stdin, entrypoint, start -a, kill -s, wait, run -d --rm

#[test]
fn stdin_entrypoint_attach_signal_and_auto_remove_work() {
    if skip_unless_root("stdin_entrypoint_attach_signal_and_auto_remove_work") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);

    let out = c.cmd_with_stdin(
        &["run", "--rm", "-i", BUSYBOX_IMAGE, "cat"],
        b"through stdin\n".to_vec(),
    );
    assert_eq!(
        stdout_of(&out),
        "through stdin\n",
        "run -i cat: {}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(0), "run -i cat: {}", describe(&out));

    assert_eq!(
        run_rm_ok(&c, &["--entrypoint", "echo"], &["from", "entrypoint"]),
        "from entrypoint\n"
    );

    let attached = unique_name("attach");
    guard.track(&attached);
    c.ok(&[
        "create",
        "--name",
        &attached,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo attached; exit 4",
    ]);
    let out = c.cmd(&["start", "-a", &attached]);
    assert_eq!(out.status.code(), Some(4), "start -a: {}", describe(&out));
    assert_eq!(
        stdout_of(&out),
        "attached\n",
        "start -a: {}",
        describe(&out)
    );
    c.ok(&["rm", &attached]);

    let trapped = unique_name("trap");
    run_detached(
        &c,
        &mut guard,
        &trapped,
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 7' USR1; echo armed; while true; do sleep 1; done",
        ],
    );
    wait_until(SETTLE, "the trap to be armed", || {
        c.ok(&["logs", &trapped]).contains("armed")
    });
    assert_eq!(c.ok(&["kill", "-s", "USR1", &trapped]).trim(), trapped);
    assert_eq!(
        c.ok(&["wait", &trapped]).trim(),
        "7",
        "wait after kill -s USR1"
    );
    c.ok(&["rm", &trapped]);

    let auto = unique_name("auto");
    let id = run_detached(&c, &mut guard, &auto, &["--rm"], &["sh", "-c", "exit 0"]);
    wait_until(SETTLE, "run -d --rm to remove the exited container", || {
        c.listed_container(&auto).is_none()
    });
    let cleaned = poll_until(SETTLE, || {
        !c.container_dir(&id).exists() && cgroup_dirs_anywhere(&id).is_empty()
    });
    assert!(
        cleaned,
        "run -d --rm left its state dir ({}) or cgroups {:?}",
        c.container_dir(&id).exists(),
        cgroup_dirs_anywhere(&id)
    );
}

// ---------------------------------------------------------------------------------------------
// 11. JSON shapes, through a create / start / kill / wait cycle

#[test]
fn ps_and_inspect_json_shapes() {
    if skip_unless_root("ps_and_inspect_json_shapes") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("shape");
    guard.track(&name);
    let host_dir = c.path(&format!("vol-{}", unique_token()));
    fs::create_dir(&host_dir).expect("create volume dir");
    let bind = format!("{}:/data:ro", path_str(&host_dir));

    let id = printed_container_id(&c.ok(&[
        "create",
        "--name",
        &name,
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--hostname",
        "hx",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
        "--read-only",
        "-v",
        &bind,
        "--tmpfs",
        "/scratch",
        BUSYBOX_IMAGE,
        "sleep",
        "30",
    ]));

    // created
    let row = c
        .listed_container(&name)
        .expect("ps -a lists a created container");
    assert_shape("ps -a --json row", &row.raw, PS_FIELDS);
    assert_eq!(row.id, id);
    assert_eq!(row.status, "created", "{}", row.raw);
    assert!(
        c.ps(false).iter().all(|r| r.id != id),
        "ps without -a lists a created container"
    );
    let info = c.inspect_container(&name);
    let v = &info.raw;
    assert_shape("inspect", v, INSPECT_FIELDS);
    assert_eq!(info.id, id);
    assert_eq!(info.name, name);
    assert!(
        at(v, "image")
            .as_str()
            .is_some_and(|s| s.contains("busybox")),
        "image: {v:#}"
    );
    let image_id = c.inspect(BUSYBOX_IMAGE).id;
    assert_eq!(
        at(v, "image_id")
            .as_str()
            .map(|s| s.trim_start_matches("sha256:")),
        Some(image_id.trim_start_matches("sha256:")),
        "image_id vs image inspect"
    );
    assert_eq!(info.status, "created");
    assert!(!info.running);
    assert_eq!(at(v, "config.cmd"), &serde_json::json!(["sleep", "30"]));
    assert!(
        at(v, "config.env")
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x == "A=1")),
        "config.env lacks A=1: {v:#}"
    );
    assert_eq!(at(v, "config.working_dir"), "/tmp");
    assert_eq!(at(v, "config.user"), "1000:1000");
    assert_eq!(at(v, "config.hostname"), "hx");
    assert_eq!(at(v, "host_config.memory"), 67_108_864);
    assert_eq!(at(v, "host_config.cpus").as_f64(), Some(0.5));
    assert_eq!(at(v, "host_config.cpu_shares"), 512);
    assert_eq!(at(v, "host_config.cpuset_cpus"), "0");
    assert_eq!(at(v, "host_config.pids_limit"), 50);
    assert_eq!(at(v, "host_config.network"), "none");
    assert_eq!(at(v, "host_config.read_only"), true);
    assert_eq!(at(v, "host_config.auto_remove"), false);
    assert!(
        at(v, "host_config.binds")
            .as_array()
            .is_some_and(|b| b.iter().any(|x| x.to_string().contains("/data"))),
        "host_config.binds lacks /data: {v:#}"
    );
    assert!(
        at(v, "host_config.tmpfs").to_string().contains("/scratch"),
        "host_config.tmpfs lacks /scratch: {v:#}"
    );
    assert!(
        info.log_path.starts_with(c.container_dir(&id)),
        "log_path {} is not under the state dir",
        info.log_path.display()
    );

    // running
    c.ok(&["start", &name]);
    let row = c.listed_container(&name).expect("ps -a lists it");
    assert_shape("ps -a --json row", &row.raw, PS_FIELDS);
    assert_eq!(row.status, "running", "{}", row.raw);
    assert!(row.pid.is_some_and(process_alive), "ps pid: {}", row.raw);
    let info = c.inspect_container(&name);
    assert_shape("inspect", &info.raw, INSPECT_FIELDS);
    assert!(info.running && info.status == "running", "{:#}", info.raw);
    assert_eq!(info.pid, row.pid, "ps and inspect agree on the pid");
    assert!(
        at(&info.raw, "state.started_at")
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "state.started_at of a started container: {:#}",
        info.raw
    );
    assert!(
        !info.cgroup_paths.is_empty() && info.cgroup_paths.iter().all(|p| p.is_dir()),
        "cgroup_paths of a running container should exist: {:?}",
        info.cgroup_paths
    );

    // exited, by kill (default KILL)
    assert_eq!(
        c.ok(&["kill", &name]).trim(),
        name,
        "kill prints the names given"
    );
    assert_eq!(
        c.ok(&["wait", &name]).trim(),
        "137",
        "wait prints the exit code"
    );
    let row = c.listed_container(&name).expect("ps -a lists it");
    assert_shape("ps -a --json row", &row.raw, PS_FIELDS);
    assert_eq!(row.status, "exited", "{}", row.raw);
    assert_eq!(row.exit_code, Some(137), "{}", row.raw);
    let info = c.inspect_container(&name);
    assert_shape("inspect", &info.raw, INSPECT_FIELDS);
    assert_eq!(info.exit_code, Some(137), "{:#}", info.raw);
    assert!(!info.oom_killed && !info.running, "{:#}", info.raw);
    assert!(
        at(&info.raw, "state.finished_at")
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "state.finished_at of an exited container: {:#}",
        info.raw
    );
    assert!(is_container_id(&id));
    c.ok(&["rm", &name]);

    // --entrypoint and the command stay apart, as docker keeps them.
    let split = unique_name("entry");
    guard.track(&split);
    c.ok(&[
        "create",
        "--name",
        &split,
        "--entrypoint",
        "echo",
        BUSYBOX_IMAGE,
        "hi",
    ]);
    let v = c.inspect_container(&split).raw;
    assert_eq!(
        (v.pointer("/config/entrypoint"), v.pointer("/config/cmd")),
        (
            Some(&serde_json::json!(["echo"])),
            Some(&serde_json::json!(["hi"]))
        ),
        "config.entrypoint and config.cmd of `create --entrypoint echo IMAGE hi`:\n{v:#}"
    );
    c.ok(&["rm", &split]);
}

#[test]
fn exec_runs_inside_the_running_container() {
    if skip_unless_root("exec_runs_inside_the_running_container") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("exec");
    run_detached(
        &c,
        &mut guard,
        &name,
        &["--hostname", "inside", "-e", "FROM_RUN=1"],
        &["sleep", "60"],
    );

    // Same PID namespace (PID 1 is the sleep), same hostname, the container's environment.
    let out = c.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; echo $FROM_RUN $EXTRA",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.contains("sleep 60")),
        "PID 1 inside: {out}"
    );
    assert_eq!(lines.get(1), Some(&"inside"), "hostname: {out}");
    assert_eq!(lines.get(2), Some(&"1"), "environment: {out}");
    let out = c.ok(&[
        "exec",
        "-e",
        "EXTRA=2",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        &name,
        "sh",
        "-c",
        "echo $EXTRA; pwd; id -u",
    ]);
    assert_eq!(out, "2\n/tmp\n1000\n", "exec flags");

    // Exit codes as docker's.
    let out = c.cmd(&["exec", &name, "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let out = c.cmd(&["exec", &name, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));

    // Standard input with -i.
    let out = c.cmd_with_stdin(&["exec", "-i", &name, "cat"], b"piped\n".to_vec());
    assert_eq!(stdout_of(&out), "piped\n", "{}", describe(&out));

    // Not running: a clear error.
    c.ok(&["stop", "-t", "1", &name]);
    let out = c.cmd(&["exec", &name, "true"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("not running"),
        "{}",
        describe(&out)
    );
}

#[test]
fn pause_stats_and_top_read_the_cgroup() {
    if skip_unless_root("pause_stats_and_top_read_the_cgroup") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("pz");
    run_detached(
        &c,
        &mut guard,
        &name,
        &["-m", "32m"],
        &["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
    );
    std::thread::sleep(Duration::from_millis(300));

    let stats: serde_json::Value =
        serde_json::from_str(&c.ok(&["stats", "--json", &name])).expect("stats json");
    let row = &stats[0];
    assert_eq!(
        row["memory_limit"].as_u64(),
        Some(32 << 20),
        "stats: {stats}"
    );
    assert!(
        row["memory_usage"].as_u64().unwrap_or(0) > 0,
        "stats: {stats}"
    );
    assert!(row["pids"].as_u64().unwrap_or(0) >= 1, "stats: {stats}");

    let top: serde_json::Value =
        serde_json::from_str(&c.ok(&["top", "--json", &name])).expect("top json");
    let cmds: Vec<String> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["command"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        cmds.iter().any(|c| c.contains("while true")),
        "top: {cmds:?}"
    );

    // Paused: no output moves; ps says paused; unpaused: it moves again.
    c.ok(&["pause", &name]);
    let ps: serde_json::Value = serde_json::from_str(&c.ok(&["ps", "--json"])).unwrap();
    assert!(
        ps.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == name.as_str() && r["status"] == "paused"),
        "ps: {ps}"
    );
    let before = c.ok(&["logs", &name]).lines().count();
    std::thread::sleep(Duration::from_millis(500));
    let after = c.ok(&["logs", &name]).lines().count();
    assert_eq!(before, after, "a paused container printed");
    let out = c.cmd(&["pause", &name]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_CORRAL),
        "second pause: {}",
        describe(&out)
    );
    c.ok(&["unpause", &name]);
    std::thread::sleep(Duration::from_millis(500));
    let resumed = c.ok(&["logs", &name]).lines().count();
    assert!(
        resumed > after,
        "no output after unpause ({after} -> {resumed})"
    );

    // A paused container still stops.
    c.ok(&["pause", &name]);
    c.ok(&["stop", "-t", "1", &name]);
}

#[test]
fn restart_policy_restarts_failures_until_stopped() {
    if skip_unless_root("restart_policy_restarts_failures_until_stopped") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    // on-failure:2 — runs three times in all, then stays exited with its code.
    let name = unique_name("rs");
    run_detached(
        &c,
        &mut guard,
        &name,
        &["--restart", "on-failure:2"],
        &["sh", "-c", "echo run; exit 3"],
    );
    let done = poll_until(Duration::from_secs(20), || {
        c.ok(&["logs", &name]).lines().count() >= 3
            && c.ok(&["inspect", "--json", &name])
                .contains("\"status\": \"exited\"")
    });
    assert!(
        done,
        "on-failure:2 did not run three times: {}",
        c.ok(&["logs", &name])
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.ok(&["logs", &name]).lines().count(),
        3,
        "restarted beyond its limit"
    );
    let info: serde_json::Value =
        serde_json::from_str(&c.ok(&["inspect", "--json", &name])).unwrap();
    assert_eq!(info["state"]["exit_code"], 3, "{info}");

    // always — restarts even after exit 0, but not after stop.
    let name = unique_name("ra");
    run_detached(
        &c,
        &mut guard,
        &name,
        &["--restart", "always"],
        &["sh", "-c", "echo up; sleep 0.2"],
    );
    assert!(
        poll_until(Duration::from_secs(20), || c
            .ok(&["logs", &name])
            .lines()
            .count()
            >= 2),
        "always did not restart"
    );
    c.ok(&["stop", "-t", "1", &name]);
    std::thread::sleep(Duration::from_secs(1));
    let info: serde_json::Value =
        serde_json::from_str(&c.ok(&["inspect", "--json", &name])).unwrap();
    assert_eq!(
        info["state"]["status"], "exited",
        "a stopped container came back: {info}"
    );

    // Bad values fail before anything is made.
    let out = c.cmd(&["run", "--restart", "sometimes", BUSYBOX_IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
}

#[test]
fn reboot_and_module_loading_are_denied() {
    if skip_unless_root("reboot_and_module_loading_are_denied") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    // The host must still be up afterwards: the test itself running on proves it.
    let out = run_rm(&c, &[], &["/bin/busybox", "reboot", "-f"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "reboot -f succeeded: {}",
        describe(&out)
    );
    let out = run_rm(
        &c,
        &[],
        &[
            "sh",
            "-c",
            "echo x > /tmp/m.ko; /bin/busybox insmod /tmp/m.ko",
        ],
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "insmod succeeded: {}",
        describe(&out)
    );
}

#[test]
fn raw_sockets_need_net_raw() {
    if skip_unless_root("raw_sockets_need_net_raw") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    // busybox ping needs a raw socket (or an ICMP datagram socket, closed by the new network
    // namespace's ping_group_range): without NET_RAW it cannot send.
    let out = run_rm(
        &c,
        &[],
        &["/bin/busybox", "ping", "-c", "1", "-W", "1", "127.0.0.1"],
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "ping without NET_RAW worked: {}",
        describe(&out)
    );
    let err = stderr_of(&out).to_lowercase();
    assert!(
        err.contains("permitted") || err.contains("permission") || err.contains("socket"),
        "ping failed for another reason: {}",
        describe(&out)
    );
    // The control: with NET_RAW the same ping answers, over the container's own loopback.
    let out = run_rm(
        &c,
        &["--cap-add", "NET_RAW"],
        &["/bin/busybox", "ping", "-c", "1", "-W", "1", "127.0.0.1"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "ping with NET_RAW: {}",
        describe(&out)
    );
}

#[test]
fn runtime_binary_is_not_reachable_from_inside() {
    if skip_unless_root("runtime_binary_is_not_reachable_from_inside") {
        return;
    }
    // CVE-2019-5736: a container overwrote runc through /proc/PID/exe of a runtime process it
    // could see. No corral process (monitor, init, the exec entry) is visible inside: the only
    // processes there are the workload's.
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("exe");
    run_detached(&c, &mut guard, &name, &[], &["sleep", "60"]);
    let out = c.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done",
    ]);
    assert!(
        !out.contains("corral") && !out.contains("__init") && !out.contains("__monitor"),
        "inside: {out}"
    );
    let out = c.cmd(&["exec", &name, "sh", "-c", "echo x > /proc/1/exe"]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "PID 1's executable was writable: {}",
        describe(&out)
    );
}

#[test]
fn corrupted_state_is_reported_and_removable() {
    if skip_unless_root("corrupted_state_is_reported_and_removable") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("broken");
    guard.track(&name);
    let id = printed_container_id(&c.ok(&["create", "--name", &name, BUSYBOX_IMAGE, "true"]));
    std::fs::write(
        c.root().join("containers").join(&id).join("state.json"),
        b"{ not json",
    )
    .unwrap();
    let out = c.cmd(&["ps", "-a"]);
    assert!(
        stderr_of(&out).contains("corrupt"),
        "ps hides the broken container: {}",
        describe(&out)
    );
    let out = c.cmd(&["rm", &name]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("rm -f"),
        "no hint: {}",
        describe(&out)
    );
    c.ok(&["rm", "-f", &id]);
    assert!(
        !c.root().join("containers").join(&id).exists(),
        "state dir left"
    );
    // The name is free again.
    c.ok(&["create", "--name", &name, BUSYBOX_IMAGE, "true"]);
}

#[test]
fn cp_copies_both_ways_and_never_through_container_symlinks() {
    if skip_unless_root("cp_copies_both_ways_and_never_through_container_symlinks") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("cp");
    let host = c.path("cp-host");
    std::fs::create_dir_all(&host).unwrap();
    let sentinel = host.join("sentinel");
    std::fs::write(&sentinel, b"host secret").unwrap();
    let script = format!(
        "mkdir -p /d/e; echo inside > /d/e/f; ln -s {} /evil; ln -s / /rootlink; sleep 60",
        sentinel.display()
    );
    run_detached(&c, &mut guard, &name, &[], &["sh", "-c", &script]);
    assert!(
        poll_until(Duration::from_secs(10), || c
            .cmd(&["exec", &name, "test", "-L", "/rootlink"])
            .status
            .success()),
        "container setup did not finish"
    );

    // Out: a tree.
    let out_dir = c.path("cp-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    c.ok(&["cp", &format!("{name}:/d"), path_str(&out_dir)]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("d/e/f")).unwrap(),
        "inside\n"
    );

    // In: a file, readable inside.
    let hf = c.path("cp-in.txt");
    std::fs::write(&hf, b"from host\n").unwrap();
    c.ok(&["cp", path_str(&hf), &format!("{name}:/d/")]);
    assert_eq!(c.ok(&["exec", &name, "cat", "/d/cp-in.txt"]), "from host\n");

    // A symlink in the container pointing at a host path: writing "to" it replaces the link
    // inside the container; the host file is untouched.
    c.ok(&["cp", path_str(&hf), &format!("{name}:/evil")]);
    assert_eq!(
        std::fs::read(&sentinel).unwrap(),
        b"host secret",
        "cp wrote through a container symlink"
    );
    // And through a symlink to / the copy lands in the container's root, not the host's.
    c.ok(&["cp", path_str(&hf), &format!("{name}:/rootlink/landed.txt")]);
    assert_eq!(c.ok(&["exec", &name, "cat", "/landed.txt"]), "from host\n");
    assert!(
        !Path::new("/landed.txt").exists(),
        "cp escaped to the host's root"
    );

    // A stopped container, as docker: its files are reached through its root filesystem
    // (mounted nowhere: nothing is left in the mount table), and what goes in is there at the
    // next start.
    c.ok(&["stop", "-t", "1", &name]);
    let again = c.path("cp-again");
    std::fs::create_dir_all(&again).unwrap();
    c.ok(&["cp", &format!("{name}:/d"), path_str(&again)]);
    assert_eq!(
        std::fs::read_to_string(again.join("d/cp-in.txt")).unwrap(),
        "from host\n"
    );
    let late = c.path("late.txt");
    std::fs::write(&late, "while stopped\n").unwrap();
    c.ok(&["cp", path_str(&late), &format!("{name}:/d/")]);
    let overlays = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(path_str(c.root())))
        .count();
    assert_eq!(overlays, 0, "cp of a stopped container left a mount behind");
    c.ok(&["start", &name]);
    assert_eq!(
        c.ok(&["exec", &name, "cat", "/d/late.txt"]),
        "while stopped\n",
        "a file copied into the stopped container"
    );
}

#[test]
fn tty_gives_the_container_a_terminal() {
    if skip_unless_root("tty_gives_the_container_a_terminal") {
        return;
    }
    let c = world();
    let _guard = ContainerGuard::new(&c);
    // Output through the terminal: a terminal on stdio, named /dev/console inside, CRLF line ends.
    let out = run_rm(&c, &["-t"], &["sh", "-c", "tty; exit 6"]);
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    assert_eq!(stdout_of(&out), "/dev/console\r\n", "{}", describe(&out));
}

#[test]
fn interactive_tty_session_relays_keys_and_size() {
    let test = "interactive_tty_session_relays_keys_and_size";
    if skip_unless_root(test) || corral_e2e::skip_unless_tools(test, &["tmux"]) {
        return;
    }
    // A real terminal: tmux runs `corral run -it` in a 100x30 window; keys typed there reach
    // the container's shell, which sees the window's size.
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let session = format!("corral-e2e-{}", unique_token());
    let done = c.path("tmux-done");
    let cmd = format!(
        "{} --root {} run --rm -it --network none {BUSYBOX_IMAGE} sh; echo $? > {}",
        corral_e2e::corral_bin().display(),
        c.root().display(),
        done.display()
    );
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux")
    };
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let o = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    assert!(o.status.success(), "tmux: {}", describe(&o));
    let _kill = Kill(session.clone());
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-t", &session, "-p"]).stdout).into_owned()
    };
    assert!(
        poll_until(Duration::from_secs(15), || screen().contains("/ #")),
        "no prompt: {}",
        screen()
    );
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "stty size; echo $((6*7))",
        "Enter",
    ]);
    assert!(
        poll_until(Duration::from_secs(10), || screen().contains("30 100")
            && screen().contains("42")),
        "screen: {}",
        screen()
    );
    tmux(&["send-keys", "-t", &session, "exit 7", "Enter"]);
    assert!(
        poll_until(Duration::from_secs(10), || done.exists()),
        "session did not end: {}",
        screen()
    );
    assert_eq!(std::fs::read_to_string(&done).unwrap().trim(), "7");
}

#[test]
fn no_new_privileges_stops_setuid_escalation() {
    let test = "no_new_privileges_stops_setuid_escalation";
    if skip_unless_root(test) || corral_e2e::skip_unless_tools(test, &["gcc"]) {
        return;
    }
    // A static setuid-root program that prints its effective uid (busybox drops set-id
    // privileges by itself, so it cannot show the difference).
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let dir = c.path("suid");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("euid.c");
    std::fs::write(&src, "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n").unwrap();
    let bin = dir.join("euid");
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O", "-o", path_str(&bin), path_str(&src)])
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {}", describe(&out));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let vol = format!("{}:/suid:ro", dir.display());
    // Without no_new_privs the set-uid bit works (the control): euid 0 for uid 1000.
    let esc = run_rm_ok(&c, &["-u", "1000:1000", "-v", &vol], &["/suid/euid"]);
    assert_eq!(esc.trim(), "0", "the control did not escalate");
    // With it, the kernel ignores the set-uid bit.
    let kept = run_rm_ok(
        &c,
        &[
            "-u",
            "1000:1000",
            "-v",
            &vol,
            "--security-opt",
            "no-new-privileges",
        ],
        &["/suid/euid"],
    );
    assert_eq!(
        kept.trim(),
        "1000",
        "setuid escalated under no-new-privileges"
    );
}

#[test]
fn keyctl_is_denied_by_default() {
    let test = "keyctl_is_denied_by_default";
    if skip_unless_root(test) || corral_e2e::skip_unless_tools(test, &["gcc"]) {
        return;
    }
    // The kernel keyring is not namespaced: a container must not reach it. busybox has no
    // keyctl, so a static program calls add_key(2) itself and prints 0 or the errno.
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let dir = c.path("keyctl");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("addkey.c");
    std::fs::write(
        &src,
        "#include <errno.h>\n#include <stdio.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n\
         int main(void){long r=syscall(SYS_add_key,\"user\",\"corral-test\",\"v\",1,-2);\
         printf(\"%d\\n\", r<0?errno:0);return 0;}\n",
    )
    .unwrap();
    let bin = dir.join("addkey");
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O", "-o", path_str(&bin), path_str(&src)])
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {}", describe(&out));
    let vol = format!("{}:/t:ro", dir.display());
    let denied = run_rm_ok(&c, &["-v", &vol], &["/t/addkey"]);
    assert_eq!(denied.trim(), "1", "add_key was not refused with EPERM");
    // The control: without the filter the same call works, so the filter is what refuses it.
    let allowed = run_rm_ok(
        &c,
        &["-v", &vol, "--security-opt", "seccomp=unconfined"],
        &["/t/addkey"],
    );
    assert_eq!(allowed.trim(), "0", "add_key failed even unconfined");
}

#[test]
fn exec_tty_gets_a_terminal_of_the_container() {
    if skip_unless_root("exec_tty_gets_a_terminal_of_the_container") {
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("et");
    run_detached(&c, &mut guard, &name, &[], &["sleep", "60"]);
    // The terminal comes from the container's own devpts, so it has a name there.
    let out = c.cmd(&["exec", "-t", &name, "sh", "-c", "tty; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stdout_of(&out), "/dev/pts/0\r\n", "{}", describe(&out));
}

#[test]
fn concurrent_runs_all_start_and_leave_nothing() {
    if skip_unless_root("concurrent_runs_all_start_and_leave_nothing") {
        return;
    }
    // Containers come and go together: the shared `corral` cgroup parent is removed by the
    // last one out while others are being made; every start must still succeed.
    let c = world();
    let _guard = ContainerGuard::new(&c);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    let mut bad = Vec::new();
                    for _ in 0..3 {
                        let out = run_rm(&c, &["-m", "64m", "--cpuset-cpus", "0"], &["true"]);
                        if !out.status.success() {
                            bad.push(describe(&out));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of 36 runs failed, e.g.:\n{}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn container_sees_its_own_cgroups_read_only() {
    if skip_unless_root("container_sees_its_own_cgroups_read_only") {
        return;
    }
    let c = world();
    // Its own limits under /sys/fs/cgroup, as docker shows them, and no way to change them.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let file = if v2 {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };
    let script = format!("cat {file}; echo 1 > /sys/fs/cgroup/pids/pids.max 2>/dev/null || echo read-only; ls /sys/fs/cgroup");
    let out = c.cmd(&[
        "run",
        "--rm",
        "-m",
        "48m",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout_of(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("50331648"),
        "the container's own memory limit: {text}"
    );
    assert_eq!(lines.next(), Some("read-only"), "{text}");
    if !v2 {
        let listed: Vec<&str> = lines.collect();
        for h in ["memory", "pids", "cpu", "cpuacct"] {
            assert!(listed.contains(&h), "/sys/fs/cgroup lists {h}: {listed:?}");
        }
    }
    c.assert_no_leaks();
}
