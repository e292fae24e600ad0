//! End-to-end tests of corral-engine's docker-compatible behaviour, checked as a docker or
//! podman user checks it: users and groups by name (`-u`, `--group-add`, image `USER`), pull
//! on `run`, `rmi` of images in use, `start`/`restart` of existing containers, stop signals
//! and timeouts, `--tmpfs`, anonymous volumes, `--mount`, `inspect` in docker's shape, `ps`
//! columns and filters, labels, `events`, `rename`, `port`, the signal proxy of a foreground
//! `run`, and the `-a`/`--filter` forms of `stop`, `kill` and `rm`.
//!
//! Where corral and docker differ, the tests assert docker's behaviour (Docker Engine 24+,
//! runc's user lookup), and say so in the assertion message.
//!
//! Every test runs the real binary as root in its own world (`CORRAL_ROOT`) with the busybox
//! image imported as `busybox:test`, and a [`ContainerGuard`] that removes its containers even
//! when it fails. Images with users, stop signals or volumes in their config are docker-archives
//! built by `corral_e2e::engine` and loaded with `corral image load`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use corral_e2e::containers::{poll_until, printed_container_id, signal, wait_until, BUSYBOX_IMAGE};
use corral_e2e::engine::{json_at, ok_output, table_row, user_rootfs, volume_names, VolumeGuard};
use corral_e2e::networks::{free_tcp_port, NetworkGuard};
use corral_e2e::process::describe;
use corral_e2e::registry::REGISTRY_BIN;
use corral_e2e::{
    path_str, skip_unless_root, skip_unless_tools, stderr_of, stdout_of, unique_name,
    ContainerGuard, Corral, Registry,
};

/// corral's own failures (docs/cli-containers.md).
const EXIT_CORRAL: i32 = 125;
/// Deadline of one corral command: containers here live seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a state change (an exit noticed, a log line written) may take to show.
const SETTLE: Duration = Duration::from_secs(15);
/// A container command that runs until SIGTERM, then exits 0 at once (a shell as PID 1 has no
/// default action for TERM, so a bare `sleep` would wait out the whole stop timeout).
const UNTIL_TERM: &str = "trap 'exit 0' TERM; echo started; while :; do sleep 0.1; done";
/// Prints the process's credentials as the kernel holds them.
const CREDS: &[&str] = &["grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"];

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh world with the busybox image imported and a short command deadline.
fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
}

/// `corral run --rm FLAGS IMAGE CMD...`, whatever its outcome.
fn run_rm(c: &Corral, flags: &[&str], image: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    c.cmd(&args)
}

/// As [`run_rm`], panicking unless it succeeds; its stdout.
fn run_rm_ok(c: &Corral, flags: &[&str], image: &str, cmd: &[&str]) -> String {
    ok_output(
        &format!("corral run --rm {flags:?} {image} {cmd:?}"),
        &run_rm(c, flags, image, cmd),
    )
}

/// `corral run -d --name NAME FLAGS IMAGE CMD...`, tracked by `guard`; the id.
fn run_d(
    c: &Corral,
    guard: &mut ContainerGuard<'_>,
    name: &str,
    flags: &[&str],
    image: &str,
    cmd: &[&str],
) -> String {
    guard.track(name);
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    printed_container_id(&c.ok(&args))
}

/// A container running [`UNTIL_TERM`], its first line logged.
fn run_looping(
    c: &Corral,
    guard: &mut ContainerGuard<'_>,
    name: &str,
    flags: &[&str],
    image: &str,
) -> String {
    let id = run_d(c, guard, name, flags, image, &["sh", "-c", UNTIL_TERM]);
    wait_for_log(c, name, "started");
    id
}

/// `corral create --name NAME IMAGE CMD...`, tracked by `guard`; the id.
fn create(
    c: &Corral,
    guard: &mut ContainerGuard<'_>,
    name: &str,
    flags: &[&str],
    image: &str,
    cmd: &[&str],
) -> String {
    guard.track(name);
    let mut args = vec!["create", "--name", name];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    printed_container_id(&c.ok(&args))
}

/// A container made by `run --name NAME FLAGS IMAGE CMD` in the foreground, exited; its
/// exit code.
fn run_exited(
    c: &Corral,
    guard: &mut ContainerGuard<'_>,
    name: &str,
    flags: &[&str],
    image: &str,
    cmd: &[&str],
) -> Option<i32> {
    guard.track(name);
    let mut args = vec!["run", "--name", name];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    let out = c.cmd(&args);
    out.status.code()
}

/// Waits until `corral logs NAME` contains `needle`.
fn wait_for_log(c: &Corral, name: &str, needle: &str) {
    let mut last = String::new();
    let seen = poll_until(SETTLE, || {
        let out = c.cmd(&["logs", name]);
        last = format!("{}{}", stdout_of(&out), stderr_of(&out));
        last.contains(needle)
    });
    assert!(
        seen,
        "logs of {name} never showed {needle:?}; last:\n{last}"
    );
}

/// `.State` of `inspect NAME` (docker's shape).
fn state(c: &Corral, name: &str) -> Value {
    json_at(&c.docker_inspect(&[name]), &["State"]).clone()
}

/// Waits until `inspect NAME` shows `.State.Status == status`.
fn wait_status(c: &Corral, name: &str, status: &str) -> Value {
    let mut last = Value::Null;
    let reached = poll_until(SETTLE, || {
        last = state(c, name);
        last["Status"] == status
    });
    assert!(
        reached,
        "{name} never reached status {status:?}; State: {last:#}"
    );
    last
}

/// [`user_rootfs`] loaded as `name` with image config `config`; returns `name`.
fn users_image(c: &Corral, name: &str, config: &Value) -> String {
    c.load_image(name, &user_rootfs(&[], &[]), config);
    name.to_owned()
}

/// Credentials printed by [`CREDS`]: real uid, real gid, supplementary groups.
#[derive(Debug, PartialEq, Eq)]
struct Creds {
    uid: u32,
    gid: u32,
    groups: BTreeSet<u32>,
}

fn parse_creds(text: &str) -> Creds {
    let field = |key: &str| -> Vec<u32> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} line in:\n{text}"));
        line.split_whitespace()
            .map(|n| n.parse().unwrap_or_else(|e| panic!("{key} {line:?}: {e}")))
            .collect()
    };
    Creds {
        uid: field("Uid:")[0],
        gid: field("Gid:")[0],
        groups: field("Groups:").into_iter().collect(),
    }
}

fn set(ids: &[u32]) -> BTreeSet<u32> {
    ids.iter().copied().collect()
}

/// `ps ARGS... -q --no-trunc` as a list of full ids, in printed order.
fn ps_ids(c: &Corral, args: &[&str]) -> Vec<String> {
    let mut full = vec!["ps"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-q", "--no-trunc"]);
    c.ok(&full).split_whitespace().map(str::to_owned).collect()
}

fn id_set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. users and groups by name

#[test]
fn run_user_by_name_takes_ids_from_image_passwd_and_group() {
    if skip_unless_root("run_user_by_name_takes_ids_from_image_passwd_and_group") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let img = users_image(&c, "users:1", &json!({}));

    let alice = parse_creds(&run_rm_ok(&c, &["-u", "alice"], &img, CREDS));
    assert_eq!((alice.uid, alice.gid), (1001, 1002), "-u alice: {alice:?}");
    assert!(
        alice.groups.is_superset(&set(&[10, 50])),
        "-u alice: /etc/group lists alice in wheel (10) and staff (50): {alice:?}"
    );
    let id_line = run_rm_ok(&c, &["-u", "alice"], &img, &["id"]);
    assert!(
        id_line.starts_with("uid=1001(alice) gid=1002(alice)"),
        "id as -u alice: {id_line}"
    );

    let with_group = parse_creds(&run_rm_ok(&c, &["-u", "alice:wheel"], &img, CREDS));
    assert_eq!(
        (with_group.uid, with_group.gid),
        (1001, 10),
        "-u alice:wheel"
    );

    // A uid alone takes its primary group from passwd, as runc does.
    let by_number = parse_creds(&run_rm_ok(&c, &["-u", "1001"], &img, CREDS));
    assert_eq!((by_number.uid, by_number.gid), (1001, 1002), "-u 1001");

    // The image's own USER, by name.
    let as_alice = users_image(&c, "users-alice:1", &json!({ "User": "alice" }));
    let image_user = parse_creds(&run_rm_ok(&c, &[], &as_alice, CREDS));
    assert_eq!(
        (image_user.uid, image_user.gid),
        (1001, 1002),
        "image USER alice"
    );

    let out = run_rm(&c, &["-u", "ghost"], &img, &["id"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_CORRAL),
        "-u ghost: {}",
        describe(&out)
    );
    assert!(
        stderr_of(&out).contains("unable to find user ghost"),
        "-u ghost: {}",
        describe(&out)
    );
    assert!(c.ps(true).is_empty(), "a refused run leaves no container");
}

#[test]
fn run_user_groups_include_primary_group_as_docker() {
    if skip_unless_root("run_user_groups_include_primary_group_as_docker") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let img = users_image(&c, "users:1", &json!({}));

    // Docker 20.10.18+ (CVE-2022-36109), podman, containerd and CRI-O all put the primary gid
    // in the supplementary groups too, so that dropping it with setgroups is not possible;
    // the groups /etc/group lists the user in are added only when no group was given.
    let alice = parse_creds(&run_rm_ok(&c, &["-u", "alice"], &img, CREDS));
    assert_eq!(
        alice.groups,
        set(&[1002, 10, 50]),
        "-u alice: docker gives groups=1002(alice),10(wheel),50(staff)"
    );
    let explicit = parse_creds(&run_rm_ok(&c, &["-u", "alice:wheel"], &img, CREDS));
    assert_eq!(
        explicit.groups,
        set(&[10]),
        "-u alice:wheel: docker gives groups=10(wheel) only (runc: supplementary groups from \
         /etc/group only in the implicit form)"
    );
}

#[test]
fn exec_user_by_name_resolves_in_the_container() {
    if skip_unless_root("exec_user_by_name_resolves_in_the_container") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let img = users_image(&c, "users:1", &json!({}));
    let name = unique_name("exec-user");
    run_looping(&c, &mut g, &name, &[], &img);

    let mut args = vec!["exec", "-u", "alice", &name];
    args.extend_from_slice(CREDS);
    let alice = parse_creds(&c.ok(&args));
    assert_eq!((alice.uid, alice.gid), (1001, 1002), "exec -u alice");

    let mut args = vec!["exec", "-u", "alice:staff", &name];
    args.extend_from_slice(CREDS);
    let staff = parse_creds(&c.ok(&args));
    assert_eq!((staff.uid, staff.gid), (1001, 50), "exec -u alice:staff");

    let (code, stderr) = c.fail(&["exec", "-u", "ghost", &name, "id"]);
    assert_eq!(code, EXIT_CORRAL, "exec -u ghost: {stderr}");
    assert!(
        stderr.contains("unable to find user ghost"),
        "exec -u ghost: {stderr}"
    );
    assert_eq!(
        state(&c, &name)["Running"],
        true,
        "a refused exec leaves the container running"
    );
    // docker's exec resolves the user as run does: /etc/group's groups too.
    assert!(
        alice.groups.is_superset(&set(&[10, 50])),
        "exec -u alice in a container running as root: the groups /etc/group lists alice in \
         (wheel 10, staff 50) are missing: {alice:?}"
    );
}

#[test]
fn run_group_add_adds_the_group() {
    if skip_unless_root("run_group_add_adds_the_group") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let img = users_image(&c, "users:1", &json!({}));

    let alice = parse_creds(&run_rm_ok(
        &c,
        &["-u", "alice", "--group-add", "77"],
        &img,
        CREDS,
    ));
    assert!(
        alice.groups.contains(&77),
        "-u alice --group-add 77: {alice:?}"
    );
    assert!(
        alice.groups.is_superset(&set(&[10, 50])),
        "and her own groups: {alice:?}"
    );

    // As root (the image's default user), by name.
    let root = parse_creds(&run_rm_ok(&c, &["--group-add", "wheel"], &img, CREDS));
    assert_eq!((root.uid, root.gid), (0, 0));
    assert!(
        root.groups.contains(&10),
        "--group-add wheel as root: wheel (10) must be a supplementary group: {root:?}"
    );

    let out = run_rm(&c, &["--group-add", "nosuchgroup"], &img, &["id"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
}

#[test]
fn run_as_root_does_not_inherit_the_callers_groups() {
    if skip_unless_tools(
        "run_as_root_does_not_inherit_the_callers_groups",
        &["setpriv"],
    ) {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    // corral started by a root whose supplementary groups include host group 4242: the
    // container's root must not keep it (docker sets the groups to the container's own).
    let mut args = vec!["run", "--rm", BUSYBOX_IMAGE];
    args.extend_from_slice(CREDS);
    let out = c.cmd_wrapped(&["setpriv", "--groups", "4242"], &args);
    let creds = parse_creds(&ok_output("setpriv --groups 4242 corral run", &out));
    assert!(
        !creds.groups.contains(&4242),
        "the container's root kept the host caller's supplementary group 4242: {creds:?} \
         (docker gives groups=0(root))"
    );
}

#[test]
fn run_env_has_home_and_hostname_as_docker() {
    if skip_unless_root("run_env_has_home_and_hostname_as_docker") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let img = users_image(&c, "users:1", &json!({}));

    let env = run_rm_ok(&c, &["-h", "envhost"], &img, &["env"]);
    let lines: Vec<&str> = env.lines().collect();
    assert!(
        lines.contains(&"HOME=/root"),
        "docker sets HOME from passwd:\n{env}"
    );
    assert!(
        lines.contains(&"HOSTNAME=envhost"),
        "docker sets HOSTNAME:\n{env}"
    );
    let env = run_rm_ok(&c, &["-u", "alice"], &img, &["env"]);
    assert!(
        env.lines().any(|l| l == "HOME=/home/alice"),
        "-u alice:\n{env}"
    );
    let env = run_rm_ok(
        &c,
        &["-u", "alice", "-e", "HOME=/elsewhere"],
        &img,
        &["env"],
    );
    assert!(
        env.lines().any(|l| l == "HOME=/elsewhere"),
        "-e HOME wins:\n{env}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. pull on run

#[test]
fn run_pulls_a_missing_image_from_the_registry() {
    if skip_unless_tools(
        "run_pulls_a_missing_image_from_the_registry",
        &[REGISTRY_BIN],
    ) {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let registry = Registry::start();
    let reference = format!("localhost:{}/x:1", registry.port());
    users_image(&c, &reference, &json!({}));
    c.ok(&["push", &reference]);
    c.ok(&["rmi", &reference]);
    assert!(!c.has_image(&reference), "rmi left {reference}");

    let out = run_rm_ok(&c, &[], &reference, &["echo", "hi"]);
    assert_eq!(
        out.trim(),
        "hi",
        "run of an image not in the store pulls it"
    );
    assert!(
        c.has_image(&reference),
        "the pulled image stays in the store"
    );
}

#[test]
fn run_pull_never_refuses_a_missing_image() {
    if skip_unless_root("run_pull_never_refuses_a_missing_image") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let out = run_rm(
        &c,
        &["--pull=never"],
        "localhost:1/absent:1",
        &["echo", "hi"],
    );
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("--pull=never"),
        "names the policy: {}",
        describe(&out)
    );
    assert!(c.ps(true).is_empty(), "nothing was created");
}

#[test]
fn run_pull_always_fetches_the_registry_copy() {
    if skip_unless_tools("run_pull_always_fetches_the_registry_copy", &[REGISTRY_BIN]) {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let registry = Registry::start();
    let reference = format!("localhost:{}/x:1", registry.port());
    let layer = |marker: &[u8]| user_rootfs(&[], &[("etc/marker", marker)]);
    // The registry holds "two" under the tag; the store holds "one" under the same name.
    c.load_image(&reference, &layer(b"two\n"), &json!({}));
    c.ok(&["push", &reference]);
    c.load_image(&reference, &layer(b"one\n"), &json!({}));
    let cat = ["cat", "/etc/marker"];
    assert_eq!(
        run_rm_ok(&c, &[], &reference, &cat).trim(),
        "one",
        "missing: the local copy"
    );
    assert_eq!(
        run_rm_ok(&c, &["--pull=always"], &reference, &cat).trim(),
        "two",
        "--pull=always pulls the registry's image"
    );
    assert_eq!(
        run_rm_ok(&c, &[], &reference, &cat).trim(),
        "two",
        "and keeps it"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. removing images in use

#[test]
fn rmi_of_image_in_use_is_refused_naming_the_container() {
    if skip_unless_root("rmi_of_image_in_use_is_refused_naming_the_container") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let img = users_image(&c, "inuse:1", &json!({}));
    let running = unique_name("rmi-running");
    let created = unique_name("rmi-created");
    run_looping(&c, &mut g, &running, &[], &img);
    create(&c, &mut g, &created, &[], &img, &["true"]);

    let (code, stderr) = c.fail(&["rmi", &img]);
    assert_eq!(code, EXIT_CORRAL, "rmi of an image in use: {stderr}");
    assert!(
        stderr.contains(&running) || stderr.contains(&created),
        "the refusal names a container using it: {stderr}"
    );
    assert!(c.has_image(&img), "a refused rmi keeps the image");
    let bin = c.ok(&["exec", &running, "ls", "/bin"]);
    assert!(
        bin.lines().any(|l| l == "busybox"),
        "its / is intact: {bin}"
    );

    // A created container alone holds the image too.
    c.ok(&["rm", "-f", &running]);
    let (code, stderr) = c.fail(&["rmi", &img]);
    assert_eq!(
        code, EXIT_CORRAL,
        "rmi of an image a created container uses: {stderr}"
    );
    assert!(
        stderr.contains(&created),
        "names the created container: {stderr}"
    );

    // -f removes the containers, then the image.
    run_looping(&c, &mut g, &running, &[], &img);
    c.ok(&["rmi", "-f", &img]);
    let left: Vec<String> = c.ps(true).into_iter().map(|p| p.name).collect();
    assert!(
        left.is_empty(),
        "rmi -f removes the containers using the image: {left:?}"
    );
    assert!(!c.has_image(&img), "rmi -f removes the image");
}

#[test]
fn image_prune_keeps_the_layers_containers_use() {
    if skip_unless_root("image_prune_keeps_the_layers_containers_use") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let img = users_image(&c, "keep:1", &json!({}));
    c.ok(&["tag", &img, "keep:2"]);
    let running = unique_name("prune-running");
    let exited = unique_name("prune-exited");
    run_looping(&c, &mut g, &running, &[], &img);
    assert_eq!(
        run_exited(&c, &mut g, &exited, &[], &img, &["echo", "ran"]),
        Some(0)
    );

    // Drop every name of the containers' image: untag the second one, and load another
    // image under the first.
    c.ok(&["rmi", "keep:2"]);
    c.load_image(
        &img,
        &user_rootfs(&[], &[("etc/marker", b"new\n")]),
        &json!({}),
    );
    c.ok(&["image", "prune"]);

    let bin = c.ok(&["exec", &running, "ls", "/bin"]);
    assert!(
        bin.lines().any(|l| l == "sh"),
        "the running container's / after prune: {bin}"
    );
    let again = c.cmd(&["start", "-a", &exited]);
    assert!(
        again.status.success() && stdout_of(&again).contains("ran"),
        "the exited container starts again after prune (its layers were kept): {}",
        describe(&again)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. start and restart of existing containers

#[test]
fn start_of_exited_container_runs_it_again_with_its_files() {
    if skip_unless_root("start_of_exited_container_runs_it_again_with_its_files") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("again");
    let script = "echo run; cat /note 2>/dev/null; echo kept > /note";
    assert_eq!(
        run_exited(&c, &mut g, &name, &[], BUSYBOX_IMAGE, &["sh", "-c", script]),
        Some(0)
    );
    c.ok(&["start", &name]);
    assert_eq!(
        c.ok(&["wait", &name]).trim(),
        "0",
        "the second run's exit code"
    );
    let logs = c.ok(&["logs", &name]);
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        ["run", "run", "kept"],
        "two runs in the log, the second seeing the file of the first"
    );
    assert_eq!(state(&c, &name)["Status"], "exited");
}

#[test]
fn restart_of_running_container_gives_a_new_process() {
    if skip_unless_root("restart_of_running_container_gives_a_new_process") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("restart");
    run_looping(&c, &mut g, &name, &[], BUSYBOX_IMAGE);
    let before = state(&c, &name)["Pid"].as_u64().expect("Pid");
    c.ok(&["restart", "-t", "5", &name]);
    let after = state(&c, &name);
    assert_eq!(after["Running"], true, "running after restart: {after:#}");
    let pid = after["Pid"].as_u64().expect("Pid");
    assert!(
        pid != 0 && pid != before,
        "restart gives a new process: {before} then {pid}"
    );
    let mut last = String::new();
    let twice = poll_until(SETTLE, || {
        last = c.ok(&["logs", &name]);
        last.matches("started").count() == 2
    });
    assert!(twice, "the log shows two starts:\n{last}");
}

#[test]
fn start_of_running_container_changes_nothing() {
    if skip_unless_root("start_of_running_container_changes_nothing") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("start-running");
    run_looping(&c, &mut g, &name, &[], BUSYBOX_IMAGE);
    let before = state(&c, &name)["Pid"].clone();
    let out = c.cmd(&["start", &name]);
    // docker: the daemon answers 304 Not Modified, the CLI prints the name and exits 0.
    assert!(
        out.status.success(),
        "start of a running container is a no-op in docker (exit 0): {}",
        describe(&out)
    );
    let after = state(&c, &name);
    assert_eq!(after["Running"], true);
    assert_eq!(after["Pid"], before, "the same process keeps running");
}

// ---------------------------------------------------------------------------------------------
// 5. stop signal and timeout

/// A shell that says which of USR1 and TERM it got, and exits 3 or 4.
const TRAPS: &str = "trap 'echo got USR1; exit 3' USR1; trap 'echo got TERM; exit 4' TERM; \
                     echo started; while :; do sleep 0.1; done";

#[test]
fn stop_sends_the_stop_signal_of_the_image_or_the_flag() {
    if skip_unless_root("stop_sends_the_stop_signal_of_the_image_or_the_flag") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let img = users_image(&c, "stopsig:1", &json!({ "StopSignal": "SIGUSR1" }));
    let from_image = unique_name("stopsig-image");
    let from_flag = unique_name("stopsig-flag");
    let default = unique_name("stopsig-default");
    let cases: [(&str, &[&str], &str, &str, i64); 3] = [
        (&from_image, &[], &img, "got USR1", 3),
        (
            &from_flag,
            &["--stop-signal", "USR1"],
            BUSYBOX_IMAGE,
            "got USR1",
            3,
        ),
        (&default, &[], BUSYBOX_IMAGE, "got TERM", 4),
    ];
    for (name, flags, image, _, _) in &cases {
        run_d(&c, &mut g, name, flags, image, &["sh", "-c", TRAPS]);
    }
    for (name, _, _, _, _) in &cases {
        wait_for_log(&c, name, "started");
    }
    let cfg = c.docker_inspect(&[&from_image]);
    assert_eq!(
        json_at(&cfg, &["Config", "StopSignal"]),
        "SIGUSR1",
        "the image's StopSignal"
    );

    for (name, _, _, said, code) in &cases {
        let started = Instant::now();
        c.ok(&["stop", name]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: the trap ends it at once, took {:?}",
            started.elapsed()
        );
        let logs = c.ok(&["logs", name]);
        assert!(logs.contains(said), "{name}: expected {said:?} in:\n{logs}");
        let st = wait_status(&c, name, "exited");
        assert_eq!(st["ExitCode"], *code, "{name}: {st:#}");
    }
}

#[test]
fn stop_timeout_kills_a_process_that_ignores_the_signal() {
    if skip_unless_root("stop_timeout_kills_a_process_that_ignores_the_signal") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("stubborn");
    let script = "trap '' TERM; echo started; while :; do sleep 0.1; done";
    run_d(
        &c,
        &mut g,
        &name,
        &["--stop-timeout", "1"],
        BUSYBOX_IMAGE,
        &["sh", "-c", script],
    );
    wait_for_log(&c, &name, "started");
    let started = Instant::now();
    c.ok(&["stop", &name]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "--stop-timeout 1: killed after about a second, took {took:?}"
    );
    let st = wait_status(&c, &name, "exited");
    assert_eq!(st["ExitCode"], 137, "killed by SIGKILL: {st:#}");
}

// ---------------------------------------------------------------------------------------------
// 6. --tmpfs

/// The `/proc/mounts` line of `target` inside a container run with `flags`.
fn mount_line(c: &Corral, flags: &[&str], target: &str) -> String {
    let mounts = run_rm_ok(c, flags, BUSYBOX_IMAGE, &["cat", "/proc/mounts"]);
    mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(target))
        .unwrap_or_else(|| panic!("no mount at {target} with {flags:?}:\n{mounts}"))
        .to_owned()
}

fn mount_options(line: &str) -> Vec<String> {
    line.split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect()
}

#[test]
fn tmpfs_options_set_size_mode_and_noexec() {
    if skip_unless_root("tmpfs_options_set_size_mode_and_noexec") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let flags = ["--tmpfs", "/run:size=1m,mode=700,noexec"];
    let line = mount_line(&c, &flags, "/run");
    assert!(line.starts_with("tmpfs "), "{line}");
    let opts = mount_options(&line);
    for want in ["size=1024k", "mode=700", "noexec"] {
        assert!(opts.iter().any(|o| o == want), "{want} missing in {line}");
    }
    let out = run_rm(
        &c,
        &flags,
        BUSYBOX_IMAGE,
        &["dd", "if=/dev/zero", "of=/run/big", "bs=1k", "count=2048"],
    );
    assert!(
        !out.status.success(),
        "2 MiB into a 1 MiB tmpfs: {}",
        describe(&out)
    );
    assert!(
        stderr_of(&out).contains("No space left on device"),
        "ENOSPC: {}",
        describe(&out)
    );
}

#[test]
fn tmpfs_bad_destination_or_size_fails_125() {
    if skip_unless_root("tmpfs_bad_destination_or_size_fails_125") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    for spec in ["rel", "/x:size=huge"] {
        let out = run_rm(&c, &["--tmpfs", spec], BUSYBOX_IMAGE, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "--tmpfs {spec}: {}",
            describe(&out)
        );
    }
    assert!(c.ps(true).is_empty(), "a refused run leaves no container");
}

#[test]
fn tmpfs_defaults_to_noexec_nosuid_nodev_as_docker() {
    if skip_unless_root("tmpfs_defaults_to_noexec_nosuid_nodev_as_docker") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let line = mount_line(&c, &["--tmpfs", "/scratch"], "/scratch");
    let opts = mount_options(&line);
    for want in ["noexec", "nosuid", "nodev"] {
        assert!(
            opts.iter().any(|o| o == want),
            "docker and podman mount --tmpfs with rw,noexec,nosuid,nodev by default; {want} \
             missing in {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 7. volumes and --mount

#[test]
fn anonymous_volume_is_listed_and_removed_by_rm_v() {
    if skip_unless_root("anonymous_volume_is_listed_and_removed_by_rm_v") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("anon");
    let code = run_exited(
        &c,
        &mut g,
        &name,
        &["-v", "/data"],
        BUSYBOX_IMAGE,
        &["sh", "-c", "echo hi > /data/f"],
    );
    assert_eq!(code, Some(0));
    let vols = volume_names(&c);
    assert_eq!(vols.len(), 1, "-v /data makes one volume: {vols:?}");
    let info = c.docker_inspect(&[&name]);
    let mount = json_at(&info, &["Mounts", "0"]);
    assert_eq!(mount["Type"], "volume", "{mount:#}");
    assert_eq!(mount["Destination"], "/data", "{mount:#}");
    assert_eq!(mount["Name"], vols[0].as_str(), "{mount:#}");

    // Plain rm keeps it (docker); rm -v removes it.
    let other = unique_name("anon-kept");
    assert_eq!(
        run_exited(
            &c,
            &mut g,
            &other,
            &["-v", "/data"],
            BUSYBOX_IMAGE,
            &["true"]
        ),
        Some(0)
    );
    assert_eq!(volume_names(&c).len(), 2);
    c.ok(&["rm", &other]);
    assert_eq!(
        volume_names(&c).len(),
        2,
        "rm without -v keeps anonymous volumes"
    );
    c.ok(&["rm", "-v", &name]);
    let left = volume_names(&c);
    assert!(
        !left.contains(&vols[0]),
        "rm -v removes its anonymous volume: {left:?}"
    );
}

#[test]
fn run_rm_removes_anonymous_volumes_and_keeps_named_ones() {
    if skip_unless_root("run_rm_removes_anonymous_volumes_and_keeps_named_ones") {
        return;
    }
    let c = world();
    let mut vg = VolumeGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let named = unique_name("named");
    vg.track(&named);
    let bind = format!("{named}:/n");
    run_rm_ok(&c, &["-v", "/data", "-v", &bind], BUSYBOX_IMAGE, &["true"]);
    assert_eq!(
        volume_names(&c),
        std::slice::from_ref(&named),
        "--rm removes the anonymous volume only"
    );

    let name = unique_name("named-user");
    assert_eq!(
        run_exited(&c, &mut g, &name, &["-v", &bind], BUSYBOX_IMAGE, &["true"]),
        Some(0)
    );
    c.ok(&["rm", "-v", &name]);
    assert_eq!(
        volume_names(&c),
        std::slice::from_ref(&named),
        "a named volume survives rm -v"
    );
}

#[test]
fn relative_bind_mount_is_relative_to_the_working_directory() {
    if skip_unless_root("relative_bind_mount_is_relative_to_the_working_directory") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let base = c.path("rel");
    fs::create_dir_all(base.join("dir")).expect("mkdir");
    fs::write(base.join("dir/f"), "relfile\n").expect("write");
    let out = c.cmd_in(
        &base,
        &[
            "run",
            "--rm",
            "-v",
            "./dir:/mnt",
            BUSYBOX_IMAGE,
            "cat",
            "/mnt/f",
        ],
    );
    assert_eq!(ok_output("run -v ./dir:/mnt", &out).trim(), "relfile");
}

#[test]
fn volume_with_unknown_option_fails_125() {
    if skip_unless_root("volume_with_unknown_option_fails_125") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let out = run_rm(&c, &["-v", "x:/y:bogus"], BUSYBOX_IMAGE, &["true"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
    assert!(
        stderr_of(&out).contains("bogus"),
        "names the option: {}",
        describe(&out)
    );
    assert!(volume_names(&c).is_empty(), "no volume made");
}

#[test]
fn image_volume_gets_an_anonymous_volume_with_the_image_files() {
    if skip_unless_root("image_volume_gets_an_anonymous_volume_with_the_image_files") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let layer = user_rootfs(&["v"], &[("v/seed", b"seeded\n")]);
    c.load_image("withvol:1", &layer, &json!({ "Volumes": { "/v": {} } }));
    let name = unique_name("imgvol");
    let code = run_exited(
        &c,
        &mut g,
        &name,
        &[],
        "withvol:1",
        &["sh", "-c", "cat /v/seed; echo new > /v/new"],
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        c.ok(&["logs", &name]).trim(),
        "seeded",
        "the image's files are in the volume"
    );
    let vols = volume_names(&c);
    assert_eq!(
        vols.len(),
        1,
        "VOLUME /v gives an anonymous volume: {vols:?}"
    );
    let info = c.docker_inspect(&[&name]);
    let mounts = json_at(&info, &["Mounts"])
        .as_array()
        .expect("Mounts")
        .clone();
    let at_v = mounts
        .iter()
        .find(|m| m["Destination"] == "/v")
        .unwrap_or_else(|| panic!("no mount at /v: {mounts:?}"));
    assert_eq!(at_v["Type"], "volume", "{at_v:#}");
    let source = at_v["Source"].as_str().expect("Source");
    let written = fs::read_to_string(format!("{source}/new")).unwrap_or_default();
    assert_eq!(
        written, "new\n",
        "writes to /v land in the volume ({source})"
    );
    c.ok(&["rm", "-v", &name]);
    assert!(volume_names(&c).is_empty(), "rm -v removes it");
}

#[test]
fn mount_bind_readonly_refuses_writes() {
    if skip_unless_root("mount_bind_readonly_refuses_writes") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let dir = c.path("ro");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("f"), "host\n").expect("write");
    let spec = format!("type=bind,source={},target=/m,readonly", path_str(&dir));
    let read = run_rm_ok(&c, &["--mount", &spec], BUSYBOX_IMAGE, &["cat", "/m/f"]);
    assert_eq!(read.trim(), "host");
    let out = run_rm(&c, &["--mount", &spec], BUSYBOX_IMAGE, &["touch", "/m/x"]);
    assert!(
        !out.status.success(),
        "a write to a readonly bind: {}",
        describe(&out)
    );
    assert!(
        stderr_of(&out).contains("Read-only file system"),
        "{}",
        describe(&out)
    );
    assert!(!dir.join("x").exists(), "nothing written on the host");
}

#[test]
fn mount_tmpfs_sets_its_size() {
    if skip_unless_root("mount_tmpfs_sets_its_size") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let line = mount_line(&c, &["--mount", "type=tmpfs,target=/t,tmpfs-size=1m"], "/t");
    assert!(line.starts_with("tmpfs "), "{line}");
    assert!(
        mount_options(&line).iter().any(|o| o == "size=1024k"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8, 10. inspect and labels

#[test]
fn inspect_prints_docker_shape() {
    if skip_unless_root("inspect_prints_docker_shape") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("inspect");
    let id = run_looping(
        &c,
        &mut g,
        &name,
        &["-e", "FOO=bar", "-l", "a=b", "-m", "64m"],
        BUSYBOX_IMAGE,
    );
    let info = c.docker_inspect(&[&name]);
    assert_eq!(info["Id"], id.as_str());
    assert_eq!(
        info["Name"],
        format!("/{name}"),
        "docker's Name has a leading slash"
    );
    assert_eq!(json_at(&info, &["State", "Status"]), "running");
    assert_eq!(json_at(&info, &["State", "Running"]), true);
    assert!(json_at(&info, &["State", "Pid"])
        .as_u64()
        .is_some_and(|p| p > 0));
    let env = json_at(&info, &["Config", "Env"]).as_array().expect("Env");
    assert!(env.iter().any(|e| e == "FOO=bar"), "Config.Env: {env:?}");
    assert_eq!(json_at(&info, &["Config", "Labels", "a"]), "b");
    assert_eq!(json_at(&info, &["HostConfig", "Memory"]), 64 << 20);

    c.ok(&["stop", &name]);
    let st = wait_status(&c, &name, "exited");
    assert_eq!(st["Running"], false);
    assert_eq!(st["ExitCode"], 0);
}

#[test]
fn inspect_json_keeps_corrals_own_shape() {
    if skip_unless_root("inspect_json_keeps_corrals_own_shape") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("inspect-json");
    let id = run_looping(&c, &mut g, &name, &[], BUSYBOX_IMAGE);
    let text = c.ok(&["inspect", "--json", &name]);
    let value: Value = serde_json::from_str(text.trim()).expect("inspect --json is JSON");
    assert!(
        value.is_object(),
        "inspect --json prints one object:\n{text}"
    );
    assert_eq!(value["id"], id.as_str());
    assert_eq!(json_at(&value, &["state", "status"]), "running");
}

#[test]
fn inspect_type_image_prints_docker_image_shape() {
    if skip_unless_root("inspect_type_image_prints_docker_image_shape") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let id = c.load_image(
        "shape:1",
        &user_rootfs(&[], &[]),
        &json!({ "Labels": { "made-by": "e2e" } }),
    );
    let info = c.docker_inspect(&["--type", "image", "shape:1"]);
    assert_eq!(info["Id"], id.as_str(), "{info:#}");
    assert_eq!(json_at(&info, &["Config", "Labels", "made-by"]), "e2e");
    // Where corral's shape differs from docker's, collect every difference before failing.
    let mut differences = Vec::new();
    let tags = info["RepoTags"].as_array().cloned().unwrap_or_default();
    if !tags.iter().any(|t| t == "shape:1") {
        differences.push(format!(
            "RepoTags {tags:?}: docker lists \"shape:1\", the familiar form"
        ));
    }
    for (key, want) in [("Os", "linux"), ("Architecture", "amd64")] {
        if info[key] != want {
            differences.push(format!(".{key} is {}, docker's is {want:?}", info[key]));
        }
    }
    if info["RootFS"]["Layers"].as_array().map_or(0, Vec::len) != 1 {
        differences.push(format!(
            ".RootFS.Layers is {}, docker's lists the one layer",
            info["RootFS"]
        ));
    }
    assert!(
        differences.is_empty(),
        "inspect --type image: {differences:#?}"
    );
    // --type container does not find an image.
    let (code, _) = c.fail(&["inspect", "--type", "container", "shape:1"]);
    assert_eq!(code, EXIT_CORRAL);
}

#[test]
fn labels_from_flags_file_and_image_show_in_inspect() {
    if skip_unless_root("labels_from_flags_file_and_image_show_in_inspect") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let img = users_image(&c, "labelled:1", &json!({ "Labels": { "from": "image" } }));
    let file = c.path("labels");
    fs::write(&file, "c=d\n# a comment\n\ne=f\n").expect("write label file");
    let name = unique_name("labels");
    create(
        &c,
        &mut g,
        &name,
        &["-l", "a=b", "--label-file", path_str(&file)],
        &img,
        &["true"],
    );
    let info = c.docker_inspect(&[&name]);
    let labels: BTreeMap<String, String> =
        serde_json::from_value(json_at(&info, &["Config", "Labels"]).clone()).expect("Labels");
    let want: BTreeMap<String, String> = [("a", "b"), ("c", "d"), ("e", "f"), ("from", "image")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        labels, want,
        "-l, --label-file and the image's labels, as docker merges them"
    );
}

// ---------------------------------------------------------------------------------------------
// 8, 9, 14. published ports: inspect, ps, port

#[test]
fn published_ports_show_in_inspect_ps_and_port() {
    if skip_unless_tools(
        "published_ports_show_in_inspect_ps_and_port",
        &["ip", "nft"],
    ) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let net = nets.create(&unique_name("eng"), 24, &[]);
    let name = unique_name("ports");
    let fixed = free_tcp_port().to_string();
    let fixed_spec = format!("{fixed}:81");
    run_looping(
        &c,
        &mut g,
        &name,
        &["--network", &net.name, "-p", "80", "-p", &fixed_spec],
        BUSYBOX_IMAGE,
    );

    let info = c.docker_inspect(&[&name]);
    let ip = json_at(&info, &["NetworkSettings", "IPAddress"])
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IPAddress: {info:#}"));
    assert!(net.holds(ip), "{ip} is not in {}", net.subnet);
    let chosen = json_at(
        &info,
        &["NetworkSettings", "Ports", "80/tcp", "0", "HostPort"],
    )
    .as_str()
    .expect("HostPort is a string")
    .to_owned();
    assert!(
        chosen.parse::<u16>().is_ok_and(|p| p > 0),
        "a free port was chosen: {chosen:?}"
    );
    assert_eq!(
        json_at(
            &info,
            &["NetworkSettings", "Ports", "81/tcp", "0", "HostPort"]
        ),
        fixed.as_str()
    );

    let port = c.ok(&["port", &name]);
    let lines: Vec<&str> = port.lines().collect();
    assert!(
        lines.contains(&format!("80/tcp -> 0.0.0.0:{chosen}").as_str()),
        "{port}"
    );
    assert!(
        lines.contains(&format!("81/tcp -> 0.0.0.0:{fixed}").as_str()),
        "{port}"
    );
    assert_eq!(
        c.ok(&["port", &name, "80"]).trim(),
        format!("0.0.0.0:{chosen}")
    );
    assert_eq!(
        c.ok(&["port", &name, "81/tcp"]).trim(),
        format!("0.0.0.0:{fixed}")
    );

    let table = c.ok(&["ps"]);
    let row = table_row(&table, &name).unwrap_or_else(|| panic!("ps lacks {name}:\n{table}"));
    assert!(
        row.contains(&format!("0.0.0.0:{chosen}->80/tcp")),
        "PORTS column: {row}"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. ps

#[test]
fn ps_status_column_reads_like_docker() {
    if skip_unless_root("ps_status_column_reads_like_docker") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let up = unique_name("up");
    let exited = unique_name("exited");
    let created = unique_name("created");
    run_looping(&c, &mut g, &up, &[], BUSYBOX_IMAGE);
    run_exited(
        &c,
        &mut g,
        &exited,
        &[],
        BUSYBOX_IMAGE,
        &["sh", "-c", "exit 3"],
    );
    create(&c, &mut g, &created, &[], BUSYBOX_IMAGE, &["true"]);

    let table = c.ok(&["ps", "-a"]);
    let row = |name: &str| {
        table_row(&table, name)
            .unwrap_or_else(|| panic!("ps -a lacks {name}:\n{table}"))
            .to_owned()
    };
    assert!(row(&up).contains(" Up "), "running: {}", row(&up));
    let ex = row(&exited);
    assert!(
        ex.contains(" Exited (3) ") && ex.contains(" ago "),
        "exited: {ex}"
    );
    assert!(
        row(&created).contains(" Created "),
        "created: {}",
        row(&created)
    );
    let running_only = c.ok(&["ps"]);
    assert!(table_row(&running_only, &up).is_some(), "{running_only}");
    assert!(
        table_row(&running_only, &exited).is_none(),
        "ps without -a: {running_only}"
    );
    assert!(
        table_row(&running_only, &created).is_none(),
        "ps without -a: {running_only}"
    );
}

#[test]
fn ps_filters_select_exactly_the_matching_containers() {
    if skip_unless_root("ps_filters_select_exactly_the_matching_containers") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let other = users_image(&c, "other:1", &json!({}));
    let (a, b, cr, d) = (
        unique_name("fa"),
        unique_name("fb"),
        unique_name("fc"),
        unique_name("fd"),
    );
    let a_id = run_looping(&c, &mut g, &a, &["-l", "a=b"], BUSYBOX_IMAGE);
    run_exited(
        &c,
        &mut g,
        &b,
        &["-l", "a=c"],
        BUSYBOX_IMAGE,
        &["sh", "-c", "exit 3"],
    );
    let b_id = c.docker_inspect(&[&b])["Id"]
        .as_str()
        .expect("Id")
        .to_owned();
    let c_id = create(&c, &mut g, &cr, &[], BUSYBOX_IMAGE, &["true"]);
    run_exited(&c, &mut g, &d, &[], &other, &["true"]);
    let d_id = c.docker_inspect(&[&d])["Id"]
        .as_str()
        .expect("Id")
        .to_owned();

    let cases: Vec<(String, BTreeSet<String>)> = vec![
        ("label=a=b".into(), id_set(&[&a_id])),
        ("label=a".into(), id_set(&[&a_id, &b_id])),
        ("status=exited".into(), id_set(&[&b_id, &d_id])),
        ("status=created".into(), id_set(&[&c_id])),
        ("status=running".into(), id_set(&[&a_id])),
        (format!("name={cr}"), id_set(&[&c_id])),
        (
            format!("ancestor={BUSYBOX_IMAGE}"),
            id_set(&[&a_id, &b_id, &c_id]),
        ),
        (format!("ancestor={other}"), id_set(&[&d_id])),
        ("exited=3".into(), id_set(&[&b_id])),
        ("exited=0".into(), id_set(&[&d_id])),
    ];
    for (filter, want) in cases {
        let got: BTreeSet<String> = ps_ids(&c, &["-a", "--filter", &filter])
            .into_iter()
            .collect();
        assert_eq!(got, want, "ps -a --filter {filter}");
    }
    let (code, stderr) = c.fail(&["ps", "-a", "--filter", "bogus=1"]);
    assert_eq!(code, EXIT_CORRAL, "{stderr}");
    assert!(stderr.contains("bogus"), "names the key: {stderr}");
}

#[test]
fn ps_last_and_latest_show_the_newest_containers() {
    if skip_unless_root("ps_last_and_latest_show_the_newest_containers") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    // Made one after the other, several within the same second: the newest is the last
    // made, not the last of the second's batch in some other order.
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let name = unique_name(&format!("n{i}"));
            create(&c, &mut g, &name, &[], BUSYBOX_IMAGE, &["true"])
        })
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let mut wrong = Vec::new();
    for (args, want) in [
        (&["-l"][..], &newest_first[..1]),
        (&["-n", "1"][..], &newest_first[..1]),
        (&["-n", "2"][..], &newest_first[..2]),
        (&["-a"][..], &newest_first[..]),
    ] {
        let got = ps_ids(&c, args);
        if got != want {
            wrong.push(format!("ps {args:?}: got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "made in this order (newest last): {ids:#?}\n{wrong:#?}"
    );
}

#[test]
fn ps_quiet_no_trunc_prints_full_ids() {
    if skip_unless_root("ps_quiet_no_trunc_prints_full_ids") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let id = run_looping(&c, &mut g, &unique_name("ids"), &[], BUSYBOX_IMAGE);
    assert_eq!(c.ok(&["ps", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        c.ok(&["ps", "-q"]).trim(),
        &id[..12],
        "ps -q: docker's 12-digit short id"
    );
}

// ---------------------------------------------------------------------------------------------
// 11. events

/// The JSON events printed so far by a follower labelled `label`.
fn events_printed(c: &Corral, label: &str) -> Vec<Value> {
    let text = c.spawned_stdout(label);
    // A line still being written has no newline yet: leave it for the next look.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event line {l:?}: {e}")))
        .collect()
}

#[test]
fn events_follow_a_container_lifecycle_in_order() {
    if skip_unless_root("events_follow_a_container_lifecycle_in_order") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let _follower = c.spawn_guarded("events", &["events", "--format", "json"]);
    // The follower is ready once it prints an event made after it started.
    let mut probes = VolumeGuard::new(&c);
    let ready = poll_until(SETTLE, || {
        let probe = unique_name("probe");
        probes.track(&probe);
        c.ok(&["volume", "create", &probe]);
        thread::sleep(Duration::from_millis(200));
        !events_printed(&c, "events").is_empty()
    });
    assert!(
        ready,
        "events printed nothing; stderr:\n{}",
        c.spawned_stderr("events")
    );

    let name = unique_name("lifecycle");
    let id = run_d(
        &c,
        &mut g,
        &name,
        &[],
        BUSYBOX_IMAGE,
        &["sh", "-c", UNTIL_TERM.replace("exit 0", "exit 5").as_str()],
    );
    wait_for_log(&c, &name, "started");
    c.ok(&["stop", &name]);
    c.ok(&["rm", &name]);

    let mut mine = Vec::new();
    let complete = poll_until(SETTLE, || {
        mine = events_printed(&c, "events")
            .into_iter()
            .filter(|e| e["Type"] == "container" && e["Actor"]["ID"] == id.as_str())
            .collect();
        mine.iter().any(|e| e["Action"] == "destroy")
    });
    let actions: Vec<&str> = mine.iter().filter_map(|e| e["Action"].as_str()).collect();
    assert!(
        complete,
        "no destroy event; container events so far: {actions:?}"
    );
    let wanted = ["create", "start", "die", "stop", "destroy"];
    let positions: Vec<usize> = wanted
        .iter()
        .map(|w| {
            actions
                .iter()
                .position(|a| a == w)
                .unwrap_or_else(|| panic!("no {w} event in {actions:?}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|p| p[0] < p[1]),
        "order {wanted:?} in {actions:?}"
    );
    for e in &mine {
        assert_eq!(
            e["Actor"]["Attributes"]["name"],
            name.as_str(),
            "name attribute: {e}"
        );
    }
    let die = mine.iter().find(|e| e["Action"] == "die").expect("die");
    assert_eq!(
        die["Actor"]["Attributes"]["exitCode"], "5",
        "die carries the exit code: {die}"
    );
}

#[test]
fn events_since_until_replays_the_past_and_exits() {
    if skip_unless_root("events_since_until_replays_the_past_and_exits") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("past");
    assert_eq!(
        run_exited(
            &c,
            &mut g,
            &name,
            &[],
            BUSYBOX_IMAGE,
            &["sh", "-c", "exit 3"]
        ),
        Some(3)
    );
    // --until 1s ends a second ago: let the die event get older than that.
    thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let text = c.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "1s",
        "--filter",
        "event=die",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exits by itself"
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one die event:\n{text}");
    assert!(
        lines[0].contains(" die ") && lines[0].contains(&name),
        "{text}"
    );

    let json_text = c.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "1s",
        "--format",
        "json",
        "--filter",
        "event=die",
    ]);
    let e: Value = serde_json::from_str(json_text.trim()).expect("one JSON event");
    assert_eq!(e["Actor"]["Attributes"]["exitCode"], "3", "{e}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        e["time"].as_u64().is_some_and(|t| t <= now && t + 60 > now),
        "time: {e}"
    );
}

#[test]
fn events_unknown_filter_fails_125() {
    if skip_unless_root("events_unknown_filter_fails_125") {
        return;
    }
    let mut c = world();
    c.timeout = Duration::from_secs(15);
    let (code, stderr) = c.fail(&["events", "--filter", "colour=red"]);
    assert_eq!(code, EXIT_CORRAL, "{stderr}");
    assert!(stderr.contains("colour"), "names the key: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// 12. run flags as docker spells them

#[test]
fn hostname_flag_sets_the_hostname() {
    if skip_unless_root("hostname_flag_sets_the_hostname") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    assert_eq!(
        run_rm_ok(&c, &["-h", "myhost"], BUSYBOX_IMAGE, &["hostname"]).trim(),
        "myhost"
    );
    assert_eq!(
        run_rm_ok(&c, &["--hostname", "other"], BUSYBOX_IMAGE, &["hostname"]).trim(),
        "other"
    );
}

#[test]
fn boolean_flags_take_explicit_values() {
    if skip_unless_root("boolean_flags_take_explicit_values") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let out = c.ok(&[
        "run",
        "--rm=true",
        "-d=false",
        BUSYBOX_IMAGE,
        "echo",
        "bools",
    ]);
    assert_eq!(out.trim(), "bools", "-d=false runs in the foreground");
    assert!(c.ps(true).is_empty(), "--rm=true removed it");
    let kept = unique_name("kept");
    g.track(&kept);
    c.ok(&["run", "--rm=false", "--name", &kept, BUSYBOX_IMAGE, "true"]);
    assert!(c.listed_container(&kept).is_some(), "--rm=false keeps it");
    let (code, stderr) = c.fail(&["run", "--rm=maybe", BUSYBOX_IMAGE, "true"]);
    assert_eq!(code, EXIT_CORRAL, "{stderr}");
}

#[test]
fn tty_flag_sets_term_xterm() {
    if skip_unless_root("tty_flag_sets_term_xterm") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let env = run_rm_ok(&c, &["-t"], BUSYBOX_IMAGE, &["env"]);
    assert!(
        env.lines().any(|l| l.trim_end() == "TERM=xterm"),
        "-t:\n{env}"
    );
    let env = run_rm_ok(&c, &[], BUSYBOX_IMAGE, &["env"]);
    assert!(!env.contains("TERM="), "no TERM without -t:\n{env}");
}

#[test]
fn platform_other_than_linux_amd64_fails_125() {
    if skip_unless_root("platform_other_than_linux_amd64_fails_125") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let out = run_rm(&c, &["--platform", "linux/arm64"], BUSYBOX_IMAGE, &["true"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
    let ok = run_rm_ok(
        &c,
        &["--platform", "linux/amd64"],
        BUSYBOX_IMAGE,
        &["echo", "amd64"],
    );
    assert_eq!(ok.trim(), "amd64");
}

// ---------------------------------------------------------------------------------------------
// 13. rename

#[test]
fn rename_changes_the_name_and_refuses_a_taken_one() {
    if skip_unless_root("rename_changes_the_name_and_refuses_a_taken_one") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let (old, new, taken) = (unique_name("old"), unique_name("new"), unique_name("taken"));
    let id = run_looping(&c, &mut g, &old, &[], BUSYBOX_IMAGE);
    let taken_id = create(&c, &mut g, &taken, &[], BUSYBOX_IMAGE, &["true"]);
    g.track(&new);
    c.ok(&["rename", &old, &new]);
    let table = c.ok(&["ps"]);
    assert!(
        table_row(&table, &new).is_some(),
        "ps shows the new name:\n{table}"
    );
    assert!(
        table_row(&table, &old).is_none(),
        "and not the old one:\n{table}"
    );
    assert_eq!(c.docker_inspect(&[&new])["Id"], id.as_str());
    assert_eq!(c.docker_inspect(&[&id])["Name"], format!("/{new}"));

    let (code, stderr) = c.fail(&["rename", &new, &taken]);
    assert_eq!(code, EXIT_CORRAL, "{stderr}");
    assert_eq!(
        c.docker_inspect(&[&id])["Name"],
        format!("/{new}"),
        "unchanged"
    );
    assert_eq!(
        c.docker_inspect(&[&taken])["Id"],
        taken_id.as_str(),
        "unchanged"
    );
}

// ---------------------------------------------------------------------------------------------
// 15. the signal proxy of a foreground run

#[test]
fn foreground_run_forwards_term_to_the_container() {
    if skip_unless_root("foreground_run_forwards_term_to_the_container") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let script = "trap 'echo got TERM; exit 7' TERM; echo started; while :; do sleep 0.1; done";
    let mut run = c.spawn_guarded("proxy", &["run", "--rm", BUSYBOX_IMAGE, "sh", "-c", script]);
    wait_until(SETTLE, "the foreground container to start", || {
        c.spawned_stdout("proxy").contains("started")
    });
    assert!(signal(run.id(), "TERM"), "kill -TERM the corral CLI");
    let status = run
        .wait(SETTLE)
        .unwrap_or_else(|| panic!("corral run did not exit after SIGTERM"));
    assert_eq!(
        status.code(),
        Some(7),
        "the CLI exits with the container's code; stderr:\n{}",
        c.spawned_stderr("proxy")
    );
    assert!(
        c.spawned_stdout("proxy").contains("got TERM"),
        "the container got the TERM"
    );
    let mut left = Vec::new();
    let gone = poll_until(SETTLE, || {
        left = c.ps(true);
        left.is_empty()
    });
    assert!(gone, "--rm removed the container: {left:?}");
}

#[test]
fn sig_proxy_false_is_accepted() {
    if skip_unless_root("sig_proxy_false_is_accepted") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let out = run_rm_ok(&c, &["--sig-proxy=false"], BUSYBOX_IMAGE, &["echo", "ok"]);
    assert_eq!(out.trim(), "ok");
}

// ---------------------------------------------------------------------------------------------
// 16. -a and --filter on stop, kill, rm

#[test]
fn stop_all_and_kill_all_affect_only_running_containers() {
    if skip_unless_root("stop_all_and_kill_all_affect_only_running_containers") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let (a, b, cr, d) = (
        unique_name("sa"),
        unique_name("sb"),
        unique_name("sc"),
        unique_name("sd"),
    );
    run_looping(&c, &mut g, &a, &[], BUSYBOX_IMAGE);
    run_looping(&c, &mut g, &b, &[], BUSYBOX_IMAGE);
    create(&c, &mut g, &cr, &[], BUSYBOX_IMAGE, &["true"]);
    run_exited(&c, &mut g, &d, &[], BUSYBOX_IMAGE, &["sh", "-c", "exit 3"]);

    c.ok(&["stop", "-a"]);
    for name in [&a, &b] {
        let st = wait_status(&c, name, "exited");
        assert_eq!(st["ExitCode"], 0, "{name} stopped by its TERM trap: {st:#}");
    }
    assert_eq!(
        state(&c, &cr)["Status"],
        "created",
        "stop -a leaves created ones"
    );
    assert_eq!(state(&c, &d)["ExitCode"], 3, "stop -a leaves exited ones");

    c.ok(&["start", &a]);
    wait_status(&c, &a, "running");
    c.ok(&["kill", "-a"]);
    let st = wait_status(&c, &a, "exited");
    assert_eq!(st["ExitCode"], 137, "kill -a sends SIGKILL: {st:#}");
    assert_eq!(state(&c, &b)["ExitCode"], 0, "kill -a leaves exited ones");
    assert_eq!(
        state(&c, &cr)["Status"],
        "created",
        "kill -a leaves created ones"
    );
}

#[test]
fn rm_filter_and_rm_all_remove_exactly_the_right_containers() {
    if skip_unless_root("rm_filter_and_rm_all_remove_exactly_the_right_containers") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let (a, b, cz, d) = (
        unique_name("ra"),
        unique_name("rb"),
        unique_name("rc"),
        unique_name("rd"),
    );
    run_looping(&c, &mut g, &a, &["-l", "x=y"], BUSYBOX_IMAGE);
    run_exited(&c, &mut g, &b, &["-l", "x=y"], BUSYBOX_IMAGE, &["true"]);
    let cz_id = run_looping(&c, &mut g, &cz, &["-l", "x=z"], BUSYBOX_IMAGE);
    let d_id = create(&c, &mut g, &d, &[], BUSYBOX_IMAGE, &["true"]);

    c.ok(&["rm", "--filter", "label=x=y", "-f"]);
    let left: BTreeSet<String> = ps_ids(&c, &["-a"]).into_iter().collect();
    assert_eq!(
        left,
        id_set(&[&cz_id, &d_id]),
        "rm --filter label=x=y -f removes a and b only"
    );
    assert_eq!(
        state(&c, &cz)["Running"],
        true,
        "the other label's container still runs"
    );

    c.ok(&["rm", "-a", "-f"]);
    assert!(
        ps_ids(&c, &["-a"]).is_empty(),
        "rm -a -f removes every container"
    );
}

#[test]
fn cp_with_dash_streams_a_tar_as_docker_does() {
    if skip_unless_root("cp_with_dash_streams_a_tar_as_docker_does") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("cp-tar");
    run_looping(&c, &mut g, &name, &[], BUSYBOX_IMAGE);

    // Into the container: a tar on standard input, unpacked into an existing directory.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o640);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "in/hello.txt", &b"hello\n"[..])
        .expect("tar entry");
    let stream = tar.into_inner().expect("tar");
    let out = c.cmd_with_stdin(&["cp", "-", &format!("{name}:/tmp")], stream.clone());
    assert!(out.status.success(), "cp - C:/tmp: {}", describe(&out));
    let inside = c.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        "cat /tmp/in/hello.txt; stat -c %a /tmp/in/hello.txt",
    ]);
    assert_eq!(inside, "hello\n640\n");
    // docker: the destination of a stream must be an existing directory.
    let out = c.cmd_with_stdin(&["cp", "-", &format!("{name}:/nowhere")], stream);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    // A stream that is not a tar is refused, naming standard input.
    let out = c.cmd_with_stdin(&["cp", "-", &format!("{name}:/tmp")], b"not a tar".to_vec());
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));

    // Out of the container: a tar on standard output, named from the path's last component.
    let out = c.cmd(&["cp", &format!("{name}:/tmp/in"), "-"]);
    assert!(out.status.success(), "cp C:/tmp/in -: {}", describe(&out));
    let mut names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .expect("a tar on stdout")
        .map(|e| {
            let p = e
                .expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string();
            p.trim_end_matches('/').to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["in", "in/hello.txt"], "entries of the stream");
}
