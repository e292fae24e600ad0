//! End-to-end tests of corral as an OCI runtime: the runc-compatible command line (`corral
//! runtime ...`, or a link named `corral-runtime`) driven by hand on a bundle made with `corral
//! runtime spec`, and podman 4 running its containers through corral (conmon calling
//! `create`, `start`, `exec`, `kill`, `delete`).
//!
//! Every test runs the real binary as root, in temp dirs of its own, with guards that delete
//! whatever it created even when it fails (see `corral_e2e::runtime`).

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use corral_e2e::containers::{
    cgroup_dirs_anywhere, is_container_id, poll_until, process_alive, signal, wait_until,
};
use corral_e2e::process::describe;
use corral_e2e::runtime::{stdout_text, Bundle, PodmanOnCorral, RuntimeRoot, DEFAULT_RUNTIME_ROOT};
use corral_e2e::{corral_bin, path_str, skip_unless_root, skip_unless_tools, unique_token, Corral};

/// How long a state change (an exit noticed, a log line written) may take to show.
const SETTLE: Duration = Duration::from_secs(15);

/// A workload that runs until SIGTERM and then exits 0. As PID 1 of its PID namespace a
/// process gets no signal it has no handler for (kernel/signal.c, `sig_task_ignored`), so a
/// plain `sleep` would ignore `kill TERM`: the shell installs a handler.
const UNTIL_TERM: &str =
    "echo started; trap 'exit 0' TERM; while true; do /bin/busybox sleep 0.2; done";

/// A container id unique to this run.
fn unique_id(prefix: &str) -> String {
    format!("{prefix}-{}", unique_token())
}

/// `status` of `state ID`.
fn status_of(rt: &RuntimeRoot, id: &str) -> String {
    rt.state(id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Panics unless the container left no state dir and no cgroup behind.
fn assert_gone(rt: &RuntimeRoot, id: &str) {
    let dir = rt.root().join(id);
    assert!(
        !dir.exists(),
        "{} is still there after the container was deleted",
        dir.display()
    );
    let cgroups = cgroup_dirs_anywhere(id);
    assert!(
        cgroups.is_empty(),
        "cgroups of {id} left after delete: {cgroups:?}"
    );
}

#[test]
fn runtime_run_prints_and_returns_code() {
    if skip_unless_root("runtime_run_prints_and_returns_code") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sh", "-c", "echo hello; exit 3"]);
    let id = unique_id("run");

    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "corral runtime run should exit with the container's code: {}",
        describe(&out)
    );
    assert_eq!(stdout_text(&out), "hello\n", "{}", describe(&out));

    // `run` deletes the container once it has exited.
    let (_, stderr) = rt.fail(&["state", &id]);
    assert!(
        stderr.contains(&id),
        "state of a deleted container should name it: {stderr}"
    );
    assert_gone(&rt, &id);
}

#[test]
fn runtime_create_start_state_kill_delete() {
    if skip_unless_root("runtime_create_start_state_kill_delete") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sh", "-c", UNTIL_TERM]);
    let b = path_str(bundle.path());
    let id = unique_id("life");
    let pid_file = rt.path("pid");

    // create: the process exists, waits for start, in a PID namespace of its own.
    rt.ok(&["create", "-b", b, "--pid-file", path_str(&pid_file), &id]);
    let state = rt.state(&id);
    assert_eq!(state["status"], "created", "state after create: {state:#}");
    assert_eq!(state["id"], id.as_str(), "state after create: {state:#}");
    let written = fs::read_to_string(&pid_file).expect("read the pid file");
    let pid: u32 = written
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file holds {written:?}: {e}"));
    assert_eq!(
        state["pid"].as_u64(),
        Some(u64::from(pid)),
        "state's pid should be the pid file's: {state:#}"
    );
    assert!(
        process_alive(pid),
        "created container's process {pid} is not alive"
    );
    let ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/pid")).expect("read pid ns link");
    assert_ne!(
        ns(&pid.to_string()),
        ns("self"),
        "container process {pid} is in the host's PID namespace"
    );
    assert_eq!(
        bundle.path().canonicalize().expect("canonical bundle"),
        Path::new(state["bundle"].as_str().unwrap_or_default()),
        "state's bundle: {state:#}"
    );

    // An id is taken once.
    let (_, stderr) = rt.fail(&["create", "-b", b, &id]);
    assert!(
        stderr.contains("exists"),
        "create of an existing id should say it exists: {stderr}"
    );
    assert_eq!(
        status_of(&rt, &id),
        "created",
        "a failed create touched {id}"
    );

    // start: running.
    rt.ok(&["start", &id]);
    assert_eq!(status_of(&rt, &id), "running");
    let (_, stderr) = rt.fail(&["start", &id]);
    assert!(
        stderr.contains("running"),
        "start of a running container should say why it fails: {stderr}"
    );

    // delete without --force refuses a running container, and says so in the JSON log,
    // appended after what the file held.
    let log = rt.path("runtime.log");
    fs::write(&log, "{\"level\":\"info\",\"msg\":\"before\"}\n").expect("seed the log");
    let (_, stderr) = rt.fail(&[
        "--log",
        path_str(&log),
        "--log-format",
        "json",
        "delete",
        &id,
    ]);
    assert!(
        stderr.contains("running"),
        "delete of a running container: {stderr}"
    );
    let text = fs::read_to_string(&log).expect("read the runtime log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line appended to the log:\n{text}");
    assert!(
        lines[0].contains("before"),
        "the log was overwritten:\n{text}"
    );
    let entry: Value = serde_json::from_str(lines[1])
        .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {}", lines[1]));
    assert_eq!(entry["level"], "error", "log entry: {entry}");
    let msg = entry["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("running"),
        "log entry should carry the error: {entry}"
    );
    assert_eq!(
        status_of(&rt, &id),
        "running",
        "a refused delete stopped {id}"
    );

    // kill TERM: the workload exits, the container is stopped.
    rt.ok(&["kill", &id, "SIGTERM"]);
    wait_until(SETTLE, "the container to stop after SIGTERM", || {
        status_of(&rt, &id) == "stopped"
    });
    assert!(
        poll_until(SETTLE, || !process_alive(pid)),
        "process {pid} still alive after the container stopped"
    );

    // delete: nothing left.
    rt.ok(&["delete", &id]);
    rt.fail(&["state", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn start_of_a_container_whose_init_died_fails_instead_of_hanging() {
    if skip_unless_root("start_of_a_container_whose_init_died_fails_instead_of_hanging") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "true"]);
    let id = unique_id("died");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    let pid = rt.state(&id)["pid"].as_u64().expect("a pid after create") as u32;
    // As the OOM killer would under a tiny limit: the init dies while it waits for start.
    assert!(signal(pid, "KILL"), "kill -9 {pid}");
    wait_until(SETTLE, "the init to be gone", || !process_alive(pid));
    let started = std::time::Instant::now();
    let (_, stderr) = rt.fail(&["start", &id]);
    assert!(
        started.elapsed() < SETTLE,
        "start took {:?} for a dead container",
        started.elapsed()
    );
    assert!(
        stderr.contains("exited before it was started") || stderr.contains("stopped"),
        "start of a dead container should say so: {stderr}"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn runtime_create_with_bad_config_fails_and_names_it() {
    if skip_unless_root("runtime_create_with_bad_config_fails_and_names_it") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox_without_config();
    fs::write(bundle.config_path(), "{\"ociVersion\": ").expect("write a broken config.json");
    let id = unique_id("bad");

    let (_, stderr) = rt.fail(&["create", "-b", path_str(bundle.path()), &id]);
    assert!(
        stderr.contains("config.json"),
        "create with a broken config.json should name the file: {stderr}"
    );
    // A failed create leaves no half-made container.
    rt.fail(&["state", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn runtime_features_and_version() {
    if skip_unless_root("runtime_features_and_version") {
        return;
    }
    let rt = RuntimeRoot::new();
    let text = rt.ok(&["features"]);
    let features: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("features is not JSON ({e}):\n{text}"));
    assert!(
        features["ociVersionMax"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "features.ociVersionMax: {features:#}"
    );
    let namespaces: Vec<&str> = features["linux"]["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no linux.namespaces in features: {features:#}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for ns in ["pid", "mount", "network", "ipc", "uts"] {
        assert!(
            namespaces.contains(&ns),
            "features.linux.namespaces lacks {ns}: {namespaces:?}"
        );
    }

    let version = rt.ok(&["--version"]);
    assert!(
        version.contains("corral-runtime"),
        "corral runtime --version: {version}"
    );
    // The same through a link named `corral-runtime`: argv[0] picks the runtime's command line.
    let link = rt.path("corral-runtime");
    std::os::unix::fs::symlink(corral_bin(), &link).expect("link corral-runtime");
    let out = std::process::Command::new(&link)
        .arg("--version")
        .output()
        .expect("run the corral-runtime link");
    assert!(
        out.status.success(),
        "corral-runtime --version: {}",
        describe(&out)
    );
    assert!(
        stdout_text(&out).contains("corral-runtime"),
        "corral-runtime --version: {}",
        describe(&out)
    );
}

#[test]
fn podman_runs_containers_through_corral() {
    const TEST: &str = "podman_runs_containers_through_corral";
    if skip_unless_tools(TEST, &["podman", "conmon"]) {
        return;
    }
    // The image: busybox imported into corral, saved as an archive, loaded into podman.
    let corral = Corral::new();
    let podman = PodmanOnCorral::new();
    let name = corral.busybox_image();
    let archive = podman.path("busybox.tar");
    corral.ok(&["image", "save", name, "-o", path_str(&archive)]);
    podman.ok(&["load", "-q", "-i", path_str(&archive)]);
    let image = "docker.io/library/busybox:test";
    let listed = podman.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        listed.lines().any(|l| l.trim() == image),
        "podman should list {image} after load: {listed}"
    );

    // A foreground run.
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "/bin/busybox",
        "echo",
        "hi",
    ]);
    assert!(out.status.success(), "podman run --rm: {}", describe(&out));
    assert_eq!(
        stdout_text(&out),
        "hi\n",
        "podman run --rm: {}",
        describe(&out)
    );

    // A detached one: logs, exec, stop, rm.
    let ctr = unique_id("pod");
    let printed = podman.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &ctr,
        image,
        "/bin/busybox",
        "sh",
        "-c",
        UNTIL_TERM,
    ]);
    let id = printed.trim().to_owned();
    assert!(is_container_id(&id), "podman run -d printed {printed:?}");
    wait_until(SETTLE, "`started` in podman logs", || {
        podman.ok(&["logs", &ctr]).contains("started")
    });

    let runtime = podman.ok(&["inspect", "--format", "{{.OCIRuntime}}", &ctr]);
    assert!(
        runtime.trim().ends_with("corral-runtime"),
        "podman inspect .OCIRuntime should name corral-runtime, got {runtime:?}"
    );
    // corral holds the container: its default state dir has it, and it says it is running.
    let state_dir = Path::new(DEFAULT_RUNTIME_ROOT).join(&id);
    assert!(
        state_dir.join("state.json").is_file(),
        "{} missing while podman runs the container through corral",
        state_dir.display()
    );
    let state = corral.ok(&["runtime", "state", &id]);
    let state: Value = serde_json::from_str(state.trim())
        .unwrap_or_else(|e| panic!("corral runtime state {id}: invalid JSON ({e}):\n{state}"));
    assert_eq!(
        state["status"], "running",
        "corral runtime state: {state:#}"
    );

    let out = podman.cmd(&[
        "exec",
        &ctr,
        "/bin/busybox",
        "sh",
        "-c",
        "echo in; /bin/busybox hostname",
    ]);
    assert!(out.status.success(), "podman exec: {}", describe(&out));
    let text = stdout_text(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["in", &id[..12]],
        "podman exec should print `in` and the container's hostname (its short id)"
    );
    let out = podman.cmd(&["exec", &ctr, "/bin/busybox", "sh", "-c", "exit 5"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "podman exec should return the exec'd code: {}",
        describe(&out)
    );

    podman.ok(&["stop", "-t", "5", &ctr]);
    let exited = podman.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
        &ctr,
    ]);
    assert_eq!(
        exited.trim(),
        "exited 0",
        "after stop, the workload should have exited 0 on its TERM trap"
    );
    podman.ok(&["rm", &ctr]);
    assert!(
        !state_dir.exists(),
        "{} still there after podman rm",
        state_dir.display()
    );
    let cgroups = cgroup_dirs_anywhere(&id);
    assert!(
        cgroups.is_empty(),
        "cgroups of {id} left after podman rm: {cgroups:?}"
    );

    // A memory hog under -m 16m is OOM-killed: 128 + SIGKILL.
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "16m",
        image,
        "/bin/busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "podman run -m 16m of a memory hog: {}",
        describe(&out)
    );

    // --device: podman puts the node in the bundle's linux.devices and an allow rule in its
    // linux.resources.devices (after its deny-all); without it, the same node made inside
    // cannot be opened.
    if Path::new("/dev/net/tun").exists() {
        let tun = |flags: &[&str], script: &str| {
            let mut args = vec!["run", "--rm", "--network", "none"];
            args.extend_from_slice(flags);
            args.extend_from_slice(&[image, "/bin/busybox", "sh", "-c", script]);
            let out = podman.cmd(&args);
            assert!(out.status.success(), "podman {args:?}: {}", describe(&out));
            stdout_text(&out)
        };
        let given = tun(
            &["--device", "/dev/net/tun"],
            "(exec 3<>/dev/net/tun) && echo opened || echo denied",
        );
        assert_eq!(given.trim(), "opened", "podman --device /dev/net/tun");
        let made = tun(
            &["--cap-add", "MKNOD"],
            "/bin/busybox mknod /tmp/t c 10 200 && ((exec 3<>/tmp/t) 2>/dev/null && echo opened || echo denied)",
        );
        assert_eq!(
            made.trim(),
            "denied",
            "a tun node made inside without --device"
        );
    } else {
        corral_e2e::report_skip(
            "podman_runs_containers_through_corral (--device)",
            "no /dev/net/tun",
        );
    }

    // A user namespace podman asks for (uidMappings in the bundle): root inside, an
    // unprivileged host range outside, and podman's chowned image is root's inside.
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uidmap",
        "0:400000:65536",
        "--gidmap",
        "0:400000:65536",
        image,
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox cat /proc/self/uid_map; /bin/busybox id -u; /bin/busybox stat -c %u /bin/busybox",
    ]);
    assert!(out.status.success(), "podman --uidmap: {}", describe(&out));
    let text = stdout_text(&out);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "400000", "65536", "0", "0"],
        "podman --uidmap through corral: {}",
        describe(&out)
    );
}

#[test]
fn podman_gives_a_terminal_through_the_console_socket() {
    const TEST: &str = "podman_gives_a_terminal_through_the_console_socket";
    if skip_unless_root(TEST) || skip_unless_tools(TEST, &["podman", "conmon"]) {
        return;
    }
    let corral = Corral::new();
    let podman = PodmanOnCorral::new();
    let name = corral.busybox_image();
    let archive = podman.path("busybox.tar");
    corral.ok(&["image", "save", name, "-o", path_str(&archive)]);
    podman.ok(&["load", "-q", "-i", path_str(&archive)]);
    // `-t`: conmon asks for a terminal; corral creates it and sends its master over the
    // console socket; the container sees a terminal on its stdio.
    let out = podman.cmd(&[
        "run",
        "--rm",
        "-t",
        "--network",
        "none",
        "docker.io/library/busybox:test",
        "/bin/busybox",
        "sh",
        "-c",
        "tty; /bin/busybox stty -a >/dev/null && echo is-a-tty",
    ]);
    let text = stdout_text(&out);
    assert!(out.status.success(), "podman run -t: {}", describe(&out));
    assert!(
        text.contains("/dev/console") && text.contains("is-a-tty"),
        "output: {text:?}"
    );

    // `exec -t`: the same through `exec --process` with `process.terminal`.
    let out = podman.cmd(&[
        "run",
        "-d",
        "--name",
        "tty-exec",
        "--network",
        "none",
        "docker.io/library/busybox:test",
        "/bin/busybox",
        "sleep",
        "60",
    ]);
    assert!(out.status.success(), "podman run -d: {}", describe(&out));
    let out = podman.cmd(&[
        "exec",
        "-t",
        "tty-exec",
        "/bin/busybox",
        "sh",
        "-c",
        "tty; exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "podman exec -t: {}",
        describe(&out)
    );
    assert!(
        stdout_text(&out).contains("/dev/pts/0"),
        "exec output: {}",
        describe(&out)
    );
    let _ = podman.cmd(&["rm", "-f", "-t", "0", "tty-exec"]);
}

// ---------------------------------------------------------------------------------------------
// Issue 18: runc conformance of what a bundle's process gets, and of runc's flags. The
// expected values are runc 1.1's on the same bundles.

/// The `Cap*:` lines of `/proc/self/status` in `text`, as (name, hex mask).
fn cap_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.starts_with("Cap")
                .then(|| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// Panics unless `text` (a `/proc/self/status`) holds exactly these masks, in the order
/// Inh, Prm, Eff, Bnd, Amb.
fn assert_caps(text: &str, want: [&str; 5], what: &str) {
    let got = cap_lines(text);
    let want: Vec<(String, String)> = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .zip(want)
        .map(|(k, v)| (k.to_string(), v.to_owned()))
        .collect();
    assert_eq!(got, want, "{what}: capability sets\n{text}");
}

/// Sets `process.capabilities` to these sets (bounding, effective, permitted, inheritable,
/// ambient).
fn set_caps(config: &mut Value, sets: [&[&str]; 5]) {
    let list = |s: &[&str]| Value::from(s.iter().map(|c| Value::from(*c)).collect::<Vec<_>>());
    config["process"]["capabilities"] = serde_json::json!({
        "bounding": list(sets[0]),
        "effective": list(sets[1]),
        "permitted": list(sets[2]),
        "inheritable": list(sets[3]),
        "ambient": list(sets[4]),
    });
}

/// `run` of `bundle` in `rt`, which must succeed; its output.
fn run_ok(rt: &RuntimeRoot, bundle: &Bundle, prefix: &str) -> Output {
    let id = unique_id(prefix);
    let out = rt.cmd(&["run", "-b", path_str(bundle.path()), &id]);
    assert!(
        out.status.success(),
        "corral runtime run ({prefix}): {}",
        describe(&out)
    );
    assert_gone(rt, &id);
    out
}

#[test]
fn non_root_process_user_runs_and_create_waits_for_start() {
    if skip_unless_root("non_root_process_user_runs_and_create_waits_for_start") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sh", "-c", "id -u; id -g"]);
    bundle.edit_config(|c| c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000}));
    let out = run_ok(&rt, &bundle, "user");
    assert_eq!(
        stdout_text(&out).split_whitespace().collect::<Vec<_>>(),
        ["1000", "1000"],
        "id -u; id -g of a uid 1000 process: {}",
        describe(&out)
    );

    // create, then start: the init waits on the FIFO as uid 1000 (it used to die there with
    // "Permission denied" while create reported success).
    let marker = bundle.path().join("rootfs/tmp/started");
    bundle.edit_config(|c| {
        c["process"]["args"] = serde_json::json!([
            "/bin/busybox",
            "sh",
            "-c",
            "id -u > /tmp/started; exec /bin/busybox sleep 60"
        ])
    });
    let id = unique_id("user-start");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    let pid = rt.state(&id)["pid"].as_u64().expect("a pid after create") as u32;
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        process_alive(pid),
        "the init of a uid 1000 container died while waiting for start"
    );
    assert_eq!(status_of(&rt, &id), "created");
    assert!(!marker.exists(), "the process ran before start");
    rt.ok(&["start", &id]);
    wait_until(SETTLE, "the uid 1000 process to run", || {
        fs::read_to_string(&marker).is_ok_and(|t| t.trim() == "1000")
    });
    assert_eq!(status_of(&rt, &id), "running");
    rt.ok(&["delete", "--force", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn podman_runs_a_non_root_user_through_corral() {
    const TEST: &str = "podman_runs_a_non_root_user_through_corral";
    if skip_unless_root(TEST) || skip_unless_tools(TEST, &["podman", "conmon"]) {
        return;
    }
    let corral = Corral::new();
    let podman = PodmanOnCorral::new();
    let name = corral.busybox_image();
    let archive = podman.path("busybox.tar");
    corral.ok(&["image", "save", name, "-o", path_str(&archive)]);
    podman.ok(&["load", "-q", "-i", path_str(&archive)]);
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000",
        "docker.io/library/busybox:test",
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox id -u; ulimit -n",
    ]);
    assert!(
        out.status.success(),
        "podman run --user 1000: {}",
        describe(&out)
    );
    assert_eq!(
        stdout_text(&out).split_whitespace().collect::<Vec<_>>(),
        ["1000", "20000"],
        "podman run --user 1000 --ulimit nofile=20000: {}",
        describe(&out)
    );

    // --cap-add for a non-root user: podman asks for the capability in the ambient set too,
    // which is how a uid 1000 process holds it (bit 10 is NET_BIND_SERVICE).
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000",
        "--cap-add",
        "NET_BIND_SERVICE",
        "docker.io/library/busybox:test",
        "/bin/busybox",
        "grep",
        "-E",
        "^Cap(Eff|Amb)",
        "/proc/self/status",
    ]);
    assert!(out.status.success(), "podman --cap-add: {}", describe(&out));
    for line in stdout_text(&out).lines() {
        let mask =
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap_or(0);
        assert!(
            mask & (1 << 10) != 0,
            "uid 1000 with --cap-add NET_BIND_SERVICE: {line}: {}",
            describe(&out)
        );
    }

    // --read-only with a read-only bind: neither / nor the bind takes a write; podman's
    // tmpfs on /tmp does.
    let data = podman.path("ro-data");
    fs::create_dir_all(&data).unwrap();
    let out = podman.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "-v",
        &format!("{}:/data:ro", path_str(&data)),
        "docker.io/library/busybox:test",
        "/bin/busybox",
        "sh",
        "-c",
        "for f in /x /data/x /tmp/x; do if echo x > $f 2>/dev/null; then echo $f written; else echo $f refused; fi; done",
    ]);
    assert!(
        out.status.success(),
        "podman --read-only: {}",
        describe(&out)
    );
    assert_eq!(
        stdout_text(&out).lines().collect::<Vec<_>>(),
        ["/x refused", "/data/x refused", "/tmp/x written"],
        "podman --read-only -v DIR:/data:ro: {}",
        describe(&out)
    );
    assert!(!data.join("x").exists());
}

#[test]
fn capability_sets_are_applied_as_runc_applies_them() {
    if skip_unless_root("capability_sets_are_applied_as_runc_applies_them") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "cat", "/proc/self/status"]);

    // runc's "exec --cap [ambient is set from spec]" sets, on the init. CHOWN = bit 0, KILL = 5,
    // SYSLOG = 34. With no_new_privs (the spec's default) a root exec keeps in permitted only
    // what it had: the permitted set, with the bounding set gone from it.
    bundle.edit_config(|c| {
        set_caps(
            c,
            [
                &["CAP_KILL", "CAP_CHOWN", "CAP_SYSLOG"],
                &["CAP_KILL"],
                &["CAP_KILL", "CAP_CHOWN"],
                &["CAP_CHOWN", "CAP_SYSLOG"],
                &["CAP_CHOWN"],
            ],
        )
    });
    let out = run_ok(&rt, &bundle, "caps-root");
    assert_caps(
        &stdout_text(&out),
        [
            "0000000400000001",
            "0000000000000021",
            "0000000000000021",
            "0000000400000021",
            "0000000000000001",
        ],
        "root with all five sets",
    );

    // A non-root user keeps what is ambient (NET_BIND_SERVICE = bit 10) across its exec.
    bundle.edit_config(|c| {
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        let nbs: &[&str] = &["CAP_NET_BIND_SERVICE"];
        set_caps(
            c,
            [&["CAP_NET_BIND_SERVICE", "CAP_KILL"], nbs, nbs, nbs, nbs],
        );
    });
    let out = run_ok(&rt, &bundle, "caps-user");
    assert_caps(
        &stdout_text(&out),
        [
            "0000000000000400",
            "0000000000000400",
            "0000000000000400",
            "0000000000000420",
            "0000000000000400",
        ],
        "uid 1000 with an ambient capability",
    );

    // An unknown name is warned about and ignored (runc: "ignoring unknown or unavailable
    // capabilities"); so is an ambient capability that is not inheritable.
    bundle.edit_config(|c| {
        c["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0});
        set_caps(
            c,
            [
                &["CAP_KILL", "CAP_BOGUS"],
                &["CAP_KILL"],
                &["CAP_KILL"],
                &[],
                &["CAP_KILL"],
            ],
        );
    });
    let out = run_ok(&rt, &bundle, "caps-unknown");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CAP_BOGUS") && stderr.contains("warning"),
        "an unknown capability should be warned about: {}",
        describe(&out)
    );
    assert!(
        stderr.contains("ambient capability CAP_KILL"),
        "an ambient capability that cannot be raised should be warned about: {}",
        describe(&out)
    );
    assert_caps(
        &stdout_text(&out),
        [
            "0000000000000000",
            "0000000000000020",
            "0000000000000020",
            "0000000000000020",
            "0000000000000000",
        ],
        "only KILL",
    );

    // Inheritable outside the bounding set: the kernel refuses it, create fails and says why.
    bundle.edit_config(|c| {
        set_caps(
            c,
            [
                &["CAP_KILL"],
                &["CAP_KILL"],
                &["CAP_KILL"],
                &["CAP_KILL", "CAP_NET_RAW"],
                &[],
            ],
        )
    });
    let id = unique_id("caps-bad");
    let (_, stderr) = rt.fail(&["create", "-b", path_str(bundle.path()), &id]);
    assert!(
        stderr.contains("CAP_NET_RAW") && stderr.contains("bounding"),
        "create with an inheritable capability outside bounding should name it: {stderr}"
    );
    rt.fail(&["state", &id]);
    assert_gone(&rt, &id);
    // Effective outside permitted: the same.
    bundle.edit_config(|c| {
        set_caps(
            c,
            [
                &["CAP_KILL", "CAP_CHOWN"],
                &["CAP_KILL", "CAP_CHOWN"],
                &["CAP_KILL"],
                &[],
                &[],
            ],
        )
    });
    let (_, stderr) = rt.fail(&["create", "-b", path_str(bundle.path()), &id]);
    assert!(
        stderr.contains("CAP_CHOWN") && stderr.contains("permitted"),
        "create with an effective capability outside permitted should name it: {stderr}"
    );
    assert_gone(&rt, &id);
}

/// `/proc/self/limits` as (label, soft, hard).
fn limits_table(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .skip_while(|l| !l.starts_with("Limit"))
        .skip(1)
        .filter_map(|l| {
            // Columns: the label (up to 26 characters), soft, hard, units.
            let label = l.get(..26)?.trim().to_owned();
            let mut rest = l.get(26..)?.split_whitespace();
            Some((label, rest.next()?.to_owned(), rest.next()?.to_owned()))
        })
        .collect()
}

/// Whether this process holds CAP_SYS_RESOURCE (bit 24) in its effective set.
fn holds_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    cap_lines(&status)
        .iter()
        .find(|(k, _)| k == "CapEff")
        .and_then(|(_, v)| u64::from_str_radix(v, 16).ok())
        .is_some_and(|m| m & (1 << 24) != 0)
}

#[test]
fn rlimits_of_every_type_are_applied_and_unknown_ones_refused() {
    if skip_unless_root("rlimits_of_every_type_are_applied_and_unknown_ones_refused") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&[
        "/bin/busybox",
        "sh",
        "-c",
        "ulimit -v; ulimit -f; /bin/busybox cat /proc/self/limits",
    ]);
    // All 16, each below this host's hard limits (a root without CAP_SYS_RESOURCE: nice and
    // rtprio 0, 8 MiB locked memory, 20000 files), soft below hard where the host allows it.
    let limits: [(&str, &str, u64, u64); 16] = [
        ("RLIMIT_CPU", "Max cpu time", 100, 200),
        ("RLIMIT_FSIZE", "Max file size", 1 << 20, 2 << 20),
        ("RLIMIT_DATA", "Max data size", 512 << 20, 1 << 30),
        ("RLIMIT_STACK", "Max stack size", 8 << 20, 16 << 20),
        ("RLIMIT_CORE", "Max core file size", 0, 4096),
        ("RLIMIT_RSS", "Max resident set", 100 << 20, 200 << 20),
        ("RLIMIT_NPROC", "Max processes", 1000, 2000),
        ("RLIMIT_NOFILE", "Max open files", 500, 600),
        ("RLIMIT_MEMLOCK", "Max locked memory", 64 << 10, 128 << 10),
        ("RLIMIT_AS", "Max address space", 1 << 30, 2 << 30),
        ("RLIMIT_LOCKS", "Max file locks", 100, 200),
        ("RLIMIT_SIGPENDING", "Max pending signals", 300, 400),
        ("RLIMIT_MSGQUEUE", "Max msgqueue size", 8192, 16384),
        ("RLIMIT_NICE", "Max nice priority", 0, 0),
        ("RLIMIT_RTPRIO", "Max realtime priority", 0, 0),
        (
            "RLIMIT_RTTIME",
            "Max realtime timeout",
            1_000_000,
            2_000_000,
        ),
    ];
    bundle.edit_config(|c| {
        c["process"]["rlimits"] = limits
            .iter()
            .map(|(t, _, soft, hard)| serde_json::json!({"type": t, "soft": soft, "hard": hard}))
            .collect();
    });
    let out = run_ok(&rt, &bundle, "rlimits");
    let text = stdout_text(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1048576"), "ulimit -v (KiB): {text}");
    assert_eq!(
        lines.next(),
        Some("2048"),
        "ulimit -f (512-byte blocks): {text}"
    );
    let table = limits_table(&text);
    for (t, label, soft, hard) in limits {
        let row = table
            .iter()
            .find(|(l, _, _)| l == label)
            .unwrap_or_else(|| panic!("no {label:?} in /proc/self/limits:\n{text}"));
        assert_eq!(
            (row.1.as_str(), row.2.as_str()),
            (soft.to_string().as_str(), hard.to_string().as_str()),
            "{t} inside the container:\n{text}"
        );
    }

    // An unknown type: create fails, naming it, and leaves nothing.
    bundle.edit_config(|c| {
        c["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}])
    });
    let id = unique_id("rlimit-bad");
    let (_, stderr) = rt.fail(&["create", "-b", path_str(bundle.path()), &id]);
    assert!(
        stderr.contains("RLIMIT_BOGUS"),
        "create with an unknown rlimit should name it: {stderr}"
    );
    rt.fail(&["state", &id]);
    assert_gone(&rt, &id);

    // Above the caller's hard limit: refused as setrlimit refuses it, not lowered.
    if holds_sys_resource() {
        corral_e2e::report_skip(
            "rlimits_of_every_type_are_applied_and_unknown_ones_refused (above the hard limit)",
            "this root holds CAP_SYS_RESOURCE and may raise any limit",
        );
        return;
    }
    let limits = fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let hard: u64 = limits_table(&limits)
        .iter()
        .find(|(l, _, _)| l == "Max open files")
        .and_then(|(_, _, h)| h.parse().ok())
        .expect("a finite hard limit of open files without CAP_SYS_RESOURCE");
    bundle.edit_config(|c| {
        c["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}])
    });
    let (_, stderr) = rt.fail(&["create", "-b", path_str(bundle.path()), &id]);
    assert!(
        stderr.contains("RLIMIT_NOFILE") && stderr.contains("CAP_SYS_RESOURCE"),
        "create with a limit above the hard one should say why it fails: {stderr}"
    );
    rt.fail(&["state", &id]);
    assert_gone(&rt, &id);
}

/// The names of `ls /proc/self/fd` output, sorted numerically.
fn fd_list(text: &str) -> Vec<u32> {
    let mut fds: Vec<u32> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn inherited_descriptors_do_not_reach_the_container() {
    if skip_unless_root("inherited_descriptors_do_not_reach_the_container") {
        return;
    }
    let rt = RuntimeRoot::new();
    let held = rt.path("held");
    fs::write(&held, "preserved\n").expect("write the held file");
    let bundle = Bundle::busybox(&["/bin/busybox", "ls", "/proc/self/fd"]);
    let b = path_str(bundle.path());

    // A caller holding descriptor 5 without close-on-exec: ls sees stdio and its own
    // directory only.
    let id = unique_id("fds");
    let out = rt.run(&mut rt.command_holding(&[(5, &held)], &["run", "-b", b, &id]));
    assert!(out.status.success(), "run holding fd 5: {}", describe(&out));
    assert_eq!(
        fd_list(&stdout_text(&out)),
        [0, 1, 2, 3],
        "descriptors of the container's process: {}",
        describe(&out)
    );

    // --preserve-fds 1: descriptor 3 is passed, 5 still is not.
    bundle.edit_config(|c| {
        c["process"]["args"] = serde_json::json!([
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/busybox ls /proc/self/fd; /bin/busybox cat <&3"
        ])
    });
    let id = unique_id("fds-keep");
    let out = rt.run(&mut rt.command_holding(
        &[(3, &held), (5, &held)],
        &["run", "--preserve-fds", "1", "-b", b, &id],
    ));
    assert!(
        out.status.success(),
        "run --preserve-fds 1: {}",
        describe(&out)
    );
    let text = stdout_text(&out);
    let (listing, rest) = text.split_once("preserved").unwrap_or((&text, ""));
    assert_eq!(
        fd_list(listing),
        [0, 1, 2, 3, 4],
        "descriptors with --preserve-fds 1 (3 passed, 4 ls's own): {}",
        describe(&out)
    );
    assert!(
        text.contains("preserved") && rest.trim().is_empty(),
        "fd 3 should read the held file: {}",
        describe(&out)
    );

    // Descriptors said to be passed that are not open (--preserve-fds 3, only 3 open): the
    // container gets the one passed and nothing in place of the others (youki's and crun's
    // reading), and none of the runtime's own descriptors takes their numbers.
    let id = unique_id("fds-missing");
    let out = rt
        .run(&mut rt.command_holding(&[(3, &held)], &["run", "--preserve-fds", "3", "-b", b, &id]));
    assert!(
        out.status.success(),
        "--preserve-fds 3 with fds 4 and 5 closed: {}",
        describe(&out)
    );
    let text = stdout_text(&out);
    let (listing, _) = text.split_once("preserved").unwrap_or((&text, ""));
    assert_eq!(
        fd_list(listing),
        [0, 1, 2, 3, 4],
        "descriptors with --preserve-fds 3 and only 3 open (4 is ls's own): {}",
        describe(&out)
    );
    assert_gone(&rt, &id);

    // exec: the same for a process run in a running container.
    bundle
        .edit_config(|c| c["process"]["args"] = serde_json::json!(["/bin/busybox", "sleep", "60"]));
    let id = unique_id("fds-exec");
    rt.ok(&["create", "-b", b, &id]);
    rt.ok(&["start", &id]);
    let out = rt.run(&mut rt.command_holding(
        &[(5, &held)],
        &["exec", &id, "/bin/busybox", "ls", "/proc/self/fd"],
    ));
    assert!(
        out.status.success(),
        "exec holding fd 5: {}",
        describe(&out)
    );
    assert_eq!(
        fd_list(&stdout_text(&out)),
        [0, 1, 2, 3],
        "descriptors of an exec'd process: {}",
        describe(&out)
    );
    let out = rt.run(&mut rt.command_holding(
        &[(3, &held), (5, &held)],
        &[
            "exec",
            "--preserve-fds",
            "1",
            &id,
            "/bin/busybox",
            "ls",
            "/proc/self/fd",
        ],
    ));
    assert!(
        out.status.success(),
        "exec --preserve-fds 1: {}",
        describe(&out)
    );
    assert_eq!(
        fd_list(&stdout_text(&out)),
        [0, 1, 2, 3, 4],
        "descriptors of an exec'd process with --preserve-fds 1: {}",
        describe(&out)
    );
    rt.ok(&["delete", "--force", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn exec_cap_adds_capabilities_as_runc() {
    if skip_unless_root("exec_cap_adds_capabilities_as_runc") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sleep", "60"]);
    let b = path_str(bundle.path());
    let status = ["/bin/busybox", "cat", "/proc/self/status"];
    let exec = |id: &str, flags: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.push(id);
        args.extend_from_slice(&status);
        rt.ok(&args)
    };

    // runc's "exec --cap": no capabilities at all, then KILL (5) and AUDIT_WRITE (29) added.
    bundle.edit_config(|c| c["process"]["capabilities"] = serde_json::json!({}));
    let id = unique_id("execcap");
    rt.ok(&["create", "-b", b, &id]);
    rt.ok(&["start", &id]);
    let zero = "0000000000000000";
    assert_caps(&exec(&id, &[]), [zero; 5], "exec without --cap");
    assert_caps(
        &exec(&id, &["--cap", "CAP_KILL", "--cap", "CAP_AUDIT_WRITE"]),
        [
            zero,
            "0000000020000020",
            "0000000020000020",
            "0000000020000020",
            zero,
        ],
        "exec --cap CAP_KILL --cap CAP_AUDIT_WRITE",
    );
    rt.ok(&["delete", "--force", &id]);

    // runc's "exec --cap [ambient is set from spec]": an inheritable capability given with
    // --cap becomes ambient too.
    bundle.edit_config(|c| {
        set_caps(
            c,
            [
                &["CAP_KILL", "CAP_CHOWN", "CAP_SYSLOG"],
                &["CAP_KILL"],
                &["CAP_KILL", "CAP_CHOWN"],
                &["CAP_CHOWN", "CAP_SYSLOG"],
                &["CAP_CHOWN"],
            ],
        )
    });
    let id = unique_id("execcap-amb");
    rt.ok(&["create", "-b", b, &id]);
    rt.ok(&["start", &id]);
    assert_caps(
        &exec(&id, &[]),
        [
            "0000000400000001",
            "0000000000000021",
            "0000000000000021",
            "0000000400000021",
            "0000000000000001",
        ],
        "exec with the spec's sets",
    );
    assert_caps(
        &exec(&id, &["--cap", "CAP_SYSLOG"]),
        [
            "0000000400000001",
            "0000000400000021",
            "0000000400000021",
            "0000000400000021",
            "0000000400000001",
        ],
        "exec --cap CAP_SYSLOG",
    );
    rt.ok(&["delete", "--force", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn exec_refuses_a_paused_container_unless_ignore_paused() {
    if skip_unless_root("exec_refuses_a_paused_container_unless_ignore_paused") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sleep", "60"]);
    let id = unique_id("paused");
    rt.ok(&["create", "-b", path_str(bundle.path()), &id]);
    rt.ok(&["start", &id]);
    rt.ok(&["pause", &id]);
    assert_eq!(status_of(&rt, &id), "paused");
    let (_, stderr) = rt.fail(&["exec", &id, "/bin/busybox", "echo", "hi"]);
    assert!(
        stderr.contains("paused") && stderr.contains("--ignore-paused"),
        "exec in a paused container should refuse and say how to override: {stderr}"
    );
    // With --ignore-paused the command joins the frozen container and runs once it is
    // resumed, as runc's test has it.
    let resumer = std::thread::scope(|s| {
        let r = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            rt.cmd(&["resume", &id])
        });
        let out = rt.cmd(&["exec", "--ignore-paused", &id, "/bin/busybox", "echo", "hi"]);
        assert!(
            out.status.success(),
            "exec --ignore-paused: {}",
            describe(&out)
        );
        assert_eq!(
            stdout_text(&out),
            "hi\n",
            "exec --ignore-paused: {}",
            describe(&out)
        );
        r.join().expect("the resumer thread")
    });
    assert!(resumer.status.success(), "resume: {}", describe(&resumer));
    assert_eq!(status_of(&rt, &id), "running");
    rt.ok(&["delete", "--force", &id]);
    assert_gone(&rt, &id);
}

#[test]
fn list_quiet_prints_ids_only() {
    if skip_unless_root("list_quiet_prints_ids_only") {
        return;
    }
    let rt = RuntimeRoot::new();
    let bundle = Bundle::busybox(&["/bin/busybox", "sleep", "60"]);
    let mut ids = vec![unique_id("list-a"), unique_id("list-b")];
    for id in &ids {
        rt.ok(&["create", "-b", path_str(bundle.path()), id]);
    }
    ids.sort();
    let out = rt.ok(&["list", "-q"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ids, "list -q: {out:?}");
    let out = rt.ok(&["list", "--quiet"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ids,
        "list --quiet: {out:?}"
    );
    for id in &ids {
        rt.ok(&["delete", "--force", id]);
        assert_gone(&rt, id);
    }
}
