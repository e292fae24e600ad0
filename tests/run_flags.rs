//! End-to-end tests of `run`'s health checks, `--format` templates, `--sysctl`, `--add-host`
//! and `--dns*`, checked as a docker or podman user checks them: `ps` STATUS, `inspect -f`,
//! `wait --condition healthy`, `healthcheck run`, `events`, `/proc/sys` and `/etc/hosts` and
//! `/etc/resolv.conf` inside the container.
//!
//! Where corral and docker differ, the tests assert docker's behaviour (Docker Engine 24+) or
//! podman's (4.3, Debian's, measured on this host), and say so in the assertion message. The
//! template checks also run the same containers under podman (on runc, private store:
//! [`PodmanPeer`]) and compare the answers, when podman is installed.
//!
//! Every test runs the real binary as root in its own world (`CORRAL_ROOT`) with the busybox
//! image imported as `busybox:test`, and a [`ContainerGuard`] that removes its containers even
//! when it fails.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use corral_e2e::checks::{json_documents, live_processes_with, PodmanPeer, PODMAN_ULIMITS};
use corral_e2e::containers::{poll_until, printed_container_id, BUSYBOX_IMAGE};
use corral_e2e::engine::{json_at, ok_output, table_row, user_rootfs};
use corral_e2e::networks::{host_python_binds, NetworkGuard};
use corral_e2e::process::describe;
use corral_e2e::{
    report_skip, skip_unless_root, skip_unless_tools, stderr_of, stdout_of, unique_name,
    ContainerGuard, Corral,
};

/// corral's own failures (docs/cli-containers.md).
const EXIT_CORRAL: i32 = 125;
/// Deadline of one corral command: containers here live seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a state change may take to show.
const SETTLE: Duration = Duration::from_secs(10);
/// Host tools a corral network needs.
const NET_TOOLS: &[&str] = &["ip", "nft"];
/// How many threads a check of a start-up race starts containers from, at once.
const RACE_THREADS: usize = 4;
/// How many containers each of those threads starts.
const RACE_TRIES: usize = 5;
/// The check of the health tests: passes once `/ok` exists.
const CHECK_OK_FILE: &str = "test -f /ok";

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh world with the busybox image imported and a short command deadline.
fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
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

/// `corral run --rm FLAGS busybox:test CMD...`, whatever its outcome.
fn run_rm(c: &Corral, flags: &[&str], cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.push(BUSYBOX_IMAGE);
    args.extend_from_slice(cmd);
    c.cmd(&args)
}

/// As [`run_rm`], panicking unless it succeeds; its stdout.
fn run_rm_ok(c: &Corral, flags: &[&str], cmd: &[&str]) -> String {
    ok_output(
        &format!("corral run --rm {flags:?} {BUSYBOX_IMAGE} {cmd:?}"),
        &run_rm(c, flags, cmd),
    )
}

/// `corral inspect -f TEMPLATE NAME`, its stdout without the final newline.
fn inspect_f(c: &Corral, template: &str, name: &str) -> String {
    let out = c.ok(&["inspect", "-f", template, name]);
    out.strip_suffix('\n').unwrap_or(&out).to_owned()
}

/// The STATUS of `name` in the `ps` table.
fn ps_status(c: &Corral, name: &str) -> String {
    let table = c.ok(&["ps", "-a"]);
    table_row(&table, name)
        .unwrap_or_else(|| panic!("ps -a lacks {name}:\n{table}"))
        .to_owned()
}

/// `.State.Health` of `inspect NAME` (docker's shape); `Null` when it has none.
fn health(c: &Corral, name: &str) -> Value {
    c.docker_inspect(&[name])["State"]["Health"].clone()
}

/// Polls `ps` until the row of `name` contains `needle`; the last row.
fn wait_ps_status(c: &Corral, name: &str, needle: &str) -> String {
    let mut last = String::new();
    poll_until(SETTLE, || {
        last = ps_status(c, name);
        last.contains(needle)
    });
    assert!(
        last.contains(needle),
        "ps never showed {needle:?} for {name}; last row: {last}"
    );
    last
}

/// `ps ARGS... -q --no-trunc` as a list of full ids.
fn ps_ids(c: &Corral, args: &[&str]) -> Vec<String> {
    let mut full = vec!["ps"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-q", "--no-trunc"]);
    c.ok(&full).split_whitespace().map(str::to_owned).collect()
}

/// Events of the last minute that match `filter`, JSON, as printed by `events --until 0s`.
fn past_events(c: &Corral, filter: &str) -> Vec<Value> {
    let text = c.ok(&[
        "events", "--since", "1m", "--until", "0s", "--filter", filter, "--format", "json",
    ]);
    json_documents(&text).unwrap_or_else(|e| panic!("events --format json: {e}:\n{text}"))
}

/// `.State.Health.Log` of `name`.
fn health_log(c: &Corral, name: &str) -> Vec<Value> {
    health(c, name)["Log"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `exec NAME ps -o pid,stat,args`, the rows (header skipped) as (stat, args).
fn exec_ps(c: &Corral, name: &str) -> Vec<(String, String)> {
    let text = c.ok(&["exec", name, "ps", "-o", "pid,stat,args"]);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let _pid = words.next()?;
            let stat = words.next()?.to_owned();
            Some((stat, words.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Whether a template error names where it is: `template:` then a line number before a
/// colon (Go's `template: NAME:LINE: ...`, or `LINE:COL:`).
fn names_a_position(err: &str) -> bool {
    err.split_once("template:").is_some_and(|(_, rest)| {
        rest.split(':')
            .take(3)
            .any(|part| !part.trim().is_empty() && part.trim().bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A number of whitespace-separated fields, joined by one space (`/proc/sys` prints tabs).
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// 1. health checks

#[test]
fn health_check_goes_starting_unhealthy_healthy_as_docker() {
    if skip_unless_root("health_check_goes_starting_unhealthy_healthy_as_docker") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("health");
    let id = run_d(
        &c,
        &mut g,
        &name,
        &[
            "--health-cmd",
            CHECK_OK_FILE,
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
        BUSYBOX_IMAGE,
        &["sleep", "60"],
    );
    let row = wait_ps_status(&c, &name, "(unhealthy)");
    assert!(row.contains(" Up "), "still running: {row}");
    assert_eq!(
        inspect_f(&c, "{{.State.Health.Status}}", &name),
        "unhealthy"
    );
    let log = health_log(&c, &name);
    let failures = log.iter().filter(|p| p["ExitCode"] != 0).count();
    assert!(
        failures >= 2,
        "--health-retries 2: unhealthy after two failures in a row: {log:#?}"
    );
    let out = c.cmd(&["healthcheck", "run", &name]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "healthcheck run of a failing check exits 1: {}",
        describe(&out)
    );
    assert_eq!(stdout_of(&out).trim(), "unhealthy", "{}", describe(&out));
    assert_eq!(
        ps_ids(&c, &["--filter", "health=unhealthy"]),
        std::slice::from_ref(&id)
    );
    assert!(ps_ids(&c, &["--filter", "health=healthy"]).is_empty());

    c.ok(&["exec", &name, "sh", "-c", ">/ok"]);
    let started = Instant::now();
    c.ok(&["wait", "--condition", "healthy", &name]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "wait --condition healthy returned after {took:?} (interval 200ms)"
    );
    assert!(
        ps_status(&c, &name).contains("(healthy)"),
        "ps after the check passed: {}",
        ps_status(&c, &name)
    );
    assert_eq!(inspect_f(&c, "{{.State.Health.Status}}", &name), "healthy");
    let h = health(&c, &name);
    let log = h["Log"].as_array().cloned().unwrap_or_default();
    assert!(
        !log.is_empty() && log.len() <= 5,
        "docker keeps the last 5 results: {h:#}"
    );
    for probe in &log {
        assert!(
            probe.get("ExitCode").is_some_and(Value::is_i64) && probe["Output"].is_string(),
            "each result has ExitCode and Output: {probe}"
        );
    }
    assert_eq!(log.last().map(|p| &p["ExitCode"]), Some(&json!(0)), "{h:#}");
    assert_eq!(h["FailingStreak"], 0, "{h:#}");
    assert_eq!(
        ps_ids(&c, &["--filter", "health=healthy"]),
        std::slice::from_ref(&id)
    );
    assert!(ps_ids(&c, &["--filter", "health=unhealthy"]).is_empty());
    let out = c.cmd(&["healthcheck", "run", &name]);
    assert!(out.status.success(), "healthcheck run: {}", describe(&out));
    assert_eq!(stdout_of(&out).trim(), "healthy");

    let events = past_events(&c, &format!("container={name}"));
    let actions: Vec<&str> = events.iter().filter_map(|e| e["Action"].as_str()).collect();
    let unhealthy = actions
        .iter()
        .position(|a| *a == "health_status: unhealthy");
    let healthy = actions.iter().rposition(|a| *a == "health_status: healthy");
    assert!(
        matches!((unhealthy, healthy), (Some(u), Some(h)) if u < h),
        "events: `health_status: unhealthy`, then `health_status: healthy`: {actions:?}"
    );
}

#[test]
fn health_is_starting_as_soon_as_run_returns() {
    if skip_unless_root("health_is_starting_as_soon_as_run_returns") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    // docker sets State.Health to `starting` while it starts the container, before `run -d`
    // returns (daemon/health.go, initHealthMonitor): a script's first `ps` or `inspect` sees
    // it. A race shows in some of many containers only: they are started from a few threads at
    // once (a loaded host, as CI's), and a long interval keeps the checks themselves out of it.
    let names: Vec<Vec<String>> = (0..RACE_THREADS)
        .map(|t| {
            (0..RACE_TRIES)
                .map(|i| unique_name(&format!("starting{t}x{i}")))
                .collect()
        })
        .collect();
    for name in names.iter().flatten() {
        g.track(name);
    }
    let wrong: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = names
            .iter()
            .map(|mine| {
                let c = &c;
                s.spawn(move || {
                    let mut wrong = Vec::new();
                    for name in mine {
                        c.ok(&[
                            "run",
                            "-d",
                            "--name",
                            name,
                            "--health-cmd",
                            "true",
                            "--health-interval",
                            "30s",
                            BUSYBOX_IMAGE,
                            "sleep",
                            "60",
                        ]);
                        let row = ps_status(c, name);
                        let status = c.cmd(&["inspect", "-f", "{{.State.Health.Status}}", name]);
                        if !row.contains("(health: starting)")
                            || stdout_of(&status).trim() != "starting"
                        {
                            wrong.push(format!(
                                "{name}: ps: {row}; then inspect -f {{{{.State.Health.Status}}}}: \
                                 {:?} (stderr {:?})",
                                stdout_of(&status).trim(),
                                stderr_of(&status).trim()
                            ));
                        }
                    }
                    wrong
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert!(
        wrong.is_empty(),
        "right after `run -d` returns docker reports health `starting` (ps: `Up ... (health: \
         starting)`); here, in {} of {} containers, not yet:\n{wrong:#?}",
        wrong.len(),
        RACE_THREADS * RACE_TRIES
    );
}

#[test]
fn health_check_past_its_timeout_fails_and_leaves_no_process() {
    if skip_unless_root("health_check_past_its_timeout_fails_and_leaves_no_process") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("hang");
    run_d(
        &c,
        &mut g,
        &name,
        &[
            "--health-cmd",
            "sleep 10",
            "--health-timeout",
            "300ms",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        BUSYBOX_IMAGE,
        &["sleep", "60"],
    );
    let mut log = Vec::new();
    poll_until(SETTLE, || {
        log = health_log(&c, &name);
        log.len() >= 2
    });
    assert!(log.len() >= 2, "two checks ran in {SETTLE:?}: {log:#?}");
    for probe in &log {
        assert_ne!(
            probe["ExitCode"], 0,
            "a check past its timeout fails: {probe}"
        );
        assert!(
            probe["Output"]
                .as_str()
                .is_some_and(|o| o.to_lowercase().contains("timeout")),
            "the result says it timed out (docker: `Health check exceeded timeout (300ms)`): \
             {probe}"
        );
    }
    assert_eq!(
        inspect_f(&c, "{{.State.Health.Status}}", &name),
        "unhealthy"
    );

    // Between checks (1 s apart) nothing of them is left: no `sleep 10`, running or zombie.
    let mut rows = Vec::new();
    let clean = poll_until(Duration::from_millis(900), || {
        rows = exec_ps(&c, &name);
        !rows.iter().any(|(_, args)| args.contains("sleep 10"))
    });
    assert!(
        clean,
        "a timed-out check left `sleep 10` running in the container: {rows:#?}"
    );
    let zombies: Vec<&(String, String)> = rows
        .iter()
        .filter(|(stat, _)| stat.starts_with('Z'))
        .collect();
    assert!(
        zombies.is_empty(),
        "timed-out checks left zombies in the container (docker's shim reaps what it kills): \
         {rows:#?}"
    );
}

#[test]
fn health_checker_is_not_in_the_containers_pid_namespace() {
    if skip_unless_root("health_checker_is_not_in_the_containers_pid_namespace") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("hidden");
    run_d(
        &c,
        &mut g,
        &name,
        &["--health-cmd", "true", "--health-interval", "5s"],
        BUSYBOX_IMAGE,
        &["sleep", "60"],
    );
    let root = c.root().to_string_lossy().into_owned();
    let mut rows = Vec::new();
    // The checker starts just after the container: give it the time to show up.
    let seen = poll_until(Duration::from_secs(2), || {
        rows = exec_ps(&c, &name);
        rows.iter()
            .any(|(_, args)| args.contains("__health") || args.contains(&root))
    });
    assert!(
        !seen,
        "`exec ps` in the container lists corral's health checker (a host process, in the \
         host's mount namespace, naming the host's state dir): the container's root can signal \
         it, and with --cap-add SYS_PTRACE read the host's files through /proc/PID/root. \
         docker's checks are execs that leave nothing in the container between checks: \
         {rows:#?}"
    );
}

#[test]
fn no_healthcheck_disables_the_images_healthcheck() {
    if skip_unless_root("no_healthcheck_disables_the_images_healthcheck") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let image = "healthy-image:1";
    c.load_image(
        image,
        &user_rootfs(&[], &[]),
        &json!({
            "Healthcheck": {
                "Test": ["CMD-SHELL", "exit 1"],
                "Interval": 200_000_000u64,
                "Timeout": 1_000_000_000u64,
                "Retries": 1
            }
        }),
    );
    let with = unique_name("with");
    let without = unique_name("without");
    run_d(&c, &mut g, &with, &[], image, &["sleep", "60"]);
    run_d(
        &c,
        &mut g,
        &without,
        &["--no-healthcheck"],
        image,
        &["sleep", "60"],
    );

    wait_ps_status(&c, &with, "(unhealthy)");
    let config = c.docker_inspect(&[&with]);
    assert_eq!(
        json_at(&config, &["Config", "Healthcheck", "Test"]),
        &json!(["CMD-SHELL", "exit 1"]),
        "the image's check is the container's"
    );
    let row = ps_status(&c, &without);
    assert!(
        row.contains(" Up ") && !row.contains("(health") && !row.contains("healthy)"),
        "--no-healthcheck: no health in ps: {row}"
    );
    assert!(
        health(&c, &without).is_null(),
        "--no-healthcheck: no .State.Health: {:#}",
        health(&c, &without)
    );
    let out = c.cmd(&["healthcheck", "run", &without]);
    assert!(
        !out.status.success(),
        "healthcheck run of a container without a check fails: {}",
        describe(&out)
    );
}

#[test]
fn health_flags_out_of_range_fail_125() {
    if skip_unless_root("health_flags_out_of_range_fail_125") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let cases: [&[&str]; 3] = [
        &["--health-cmd", "true", "--health-retries", "0"],
        &["--health-cmd", "true", "--health-interval", "0s"],
        &["--no-healthcheck", "--health-cmd", "true"],
    ];
    for flags in cases {
        let out = run_rm(&c, flags, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "run {flags:?} (podman: healthcheck-retries must be greater than 0): {}",
            describe(&out)
        );
        let err = stderr_of(&out);
        assert!(err.contains("health"), "names the flag: {err}");
    }
    assert!(c.ps(true).is_empty(), "refused runs leave no container");
}

#[test]
fn ps_health_filter_rejects_unknown_values() {
    if skip_unless_root("ps_health_filter_rejects_unknown_values") {
        return;
    }
    let c = world();
    let (code, stderr) = c.fail(&["ps", "--filter", "health=bogus"]);
    assert_eq!(
        code, EXIT_CORRAL,
        "docker: `Unrecognised filter value for health: bogus`: {stderr}"
    );
    assert!(stderr.contains("bogus"), "names the value: {stderr}");
}

#[test]
fn health_checker_ends_with_the_container() {
    if skip_unless_root("health_checker_ends_with_the_container") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("ends");
    let id = run_d(
        &c,
        &mut g,
        &name,
        &["--health-cmd", "true", "--health-interval", "200ms"],
        BUSYBOX_IMAGE,
        &["sleep", "60"],
    );
    c.ok(&["wait", "--condition", "healthy", &name]);
    let checkers = live_processes_with(&["__health", &id]);
    assert!(
        !checkers.is_empty(),
        "a running container with a check has a `corral __health` checker naming {id}"
    );
    c.ok(&["rm", "-f", &name]);
    let mut left = Vec::new();
    let gone = poll_until(Duration::from_secs(1), || {
        left = live_processes_with(&["__health", &id]);
        left.is_empty()
    });
    assert!(
        gone,
        "checkers of {id} still running 1 s after rm -f: {left:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. --format templates

#[test]
fn inspect_format_templates_print_docker_text() {
    if skip_unless_root("inspect_format_templates_print_docker_text") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let up = unique_name("up");
    let down = unique_name("down");
    run_d(
        &c,
        &mut g,
        &up,
        &[
            "-l",
            "k=v",
            "-l",
            "a=b",
            "-e",
            "FOO=1",
            "-e",
            "BAR=two words",
        ],
        BUSYBOX_IMAGE,
        &["sleep", "60"],
    );
    g.track(&down);
    let out = c.cmd(&["run", "--name", &down, BUSYBOX_IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));

    assert_eq!(inspect_f(&c, "{{.State.Status}}", &up), "running");
    assert_eq!(inspect_f(&c, "{{.State.Status}}", &down), "exited");
    assert_eq!(
        inspect_f(&c, "{{json .Config.Labels}}", &up),
        r#"{"a":"b","k":"v"}"#
    );
    let env = inspect_f(&c, "{{range .Config.Env}}{{println .}}{{end}}", &up);
    let lines: Vec<&str> = env.lines().collect();
    let foo = lines.iter().position(|l| *l == "FOO=1");
    let bar = lines.iter().position(|l| *l == "BAR=two words");
    assert!(
        matches!((foo, bar), (Some(f), Some(b)) if f < b),
        "one variable per line, in order:\n{env}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("PATH=")),
        "the image's PATH:\n{env}"
    );
    assert_eq!(inspect_f(&c, r#"{{index .Config.Labels "k"}}"#, &up), "v");
    let cond = "{{if .State.Running}}up{{else}}down{{end}}";
    assert_eq!(inspect_f(&c, cond, &up), "up");
    assert_eq!(inspect_f(&c, cond, &down), "down");
    assert_eq!(inspect_f(&c, "{{.State.ExitCode}}", &down), "3");
    // One line per target, in order.
    let both = c.ok(&["inspect", "-f", "{{.State.Status}}", &up, &down]);
    assert_eq!(both, "running\nexited\n");
}

#[test]
fn inspect_format_bad_template_fails_125_naming_the_position() {
    if skip_unless_root("inspect_format_bad_template_fails_125_naming_the_position") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("bad");
    run_d(&c, &mut g, &name, &[], BUSYBOX_IMAGE, &["sleep", "60"]);
    for bad in [
        "{{.State.Status",
        "{{.State.Status}",
        "{{if .State.Running}}x",
    ] {
        let err = c.fail_125(&["inspect", "-f", bad, &name]);
        assert!(
            err.contains("template:"),
            "inspect -f {bad:?}: Go's `template: ...` error: {err}"
        );
        assert!(
            names_a_position(&err),
            "inspect -f {bad:?}: the error gives the position (Go: `template: :1: ...`): {err}"
        );
    }
    let err = c.fail_125(&["ps", "--format", "{{.Names"]);
    assert!(
        err.contains("template:"),
        "ps --format of a bad template: {err}"
    );
}

#[test]
fn ps_format_prints_tables_templates_and_json() {
    if skip_unless_root("ps_format_prints_tables_templates_and_json") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("fmt");
    let id = run_d(
        &c,
        &mut g,
        &name,
        &["-l", "a=b", "-l", "k=v"],
        BUSYBOX_IMAGE,
        &["sleep", "60"],
    );

    let table = c.ok(&["ps", "--format", "table {{.ID}}\t{{.Names}}"]);
    let mut lines = table.lines();
    let columns = |line: &str| -> Vec<String> {
        // docker aligns the cells with spaces (text/tabwriter); a literal tab reads the same.
        line.split('\t')
            .flat_map(|cell| cell.split("  "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        columns(lines.next().unwrap_or_default()),
        ["CONTAINER ID", "NAMES"],
        "the header of `table`:\n{table}"
    );
    let rows: Vec<Vec<String>> = lines.map(columns).collect();
    assert_eq!(
        rows,
        [vec![id[..12].to_owned(), name.clone()]],
        "one row, short id and name:\n{table}"
    );

    let plain = c.ok(&["ps", "--format", "{{.Names}} {{.Labels}}"]);
    assert_eq!(
        plain,
        format!("{name} a=b,k=v\n"),
        "docker's Labels: k=v joined by commas"
    );

    let text = c.ok(&["ps", "--format", "json"]);
    let docs = json_documents(&text).unwrap_or_else(|e| panic!("ps --format json: {e}:\n{text}"));
    assert_eq!(docs.len(), 1, "one container:\n{text}");
    let names = &docs[0]["Names"];
    assert!(
        names == name.as_str() || names.as_array().is_some_and(|a| a.contains(&json!(name))),
        "ps --format json in docker's shape (`Names`, as `{{{{json .}}}}` prints it) or \
         podman's (`Names` an array), got:\n{text}"
    );
}

#[test]
fn inspect_format_answers_as_podman_does() {
    const TEST: &str = "inspect_format_answers_as_podman_does";
    if skip_unless_root(TEST) {
        return;
    }
    let Some(podman) = PodmanPeer::new(TEST) else {
        return;
    };
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let image = podman.load_from(&c, BUSYBOX_IMAGE);
    let up = unique_name("up");
    let down = unique_name("down");

    run_d(
        &c,
        &mut g,
        &up,
        &["-l", "a=b"],
        BUSYBOX_IMAGE,
        &["sleep", "60"],
    );
    g.track(&down);
    let out = c.cmd(&[
        "run",
        "--name",
        &down,
        "-l",
        "a=c",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));

    let mut run = vec!["run", "--network", "none"];
    run.extend_from_slice(PODMAN_ULIMITS);
    let started = podman.cmd(
        &[
            &run[..],
            &[
                "-d",
                "--name",
                up.as_str(),
                "-l",
                "a=b",
                &image,
                "sleep",
                "60",
            ],
        ]
        .concat(),
    );
    if !started.status.success() {
        report_skip(
            TEST,
            &format!("podman cannot run containers here: {}", describe(&started)),
        );
        return;
    }
    let exited = podman.cmd(
        &[
            &run[..],
            &[
                "--name",
                down.as_str(),
                "-l",
                "a=c",
                &image,
                "sh",
                "-c",
                "exit 3",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        exited.status.code(),
        Some(3),
        "podman: {}",
        describe(&exited)
    );

    let templates = [
        r#"{{.State.Status}} {{.Config.Cmd}} {{index .Config.Labels "a"}}"#,
        "{{json .Config.Cmd}}",
        "{{json .Config.Labels}}",
        "{{if .State.Running}}up{{else}}down{{end}}",
        "{{.State.Running}} {{.State.ExitCode}}",
        "{{len .Config.Cmd}}",
        "{{.HostConfig.NetworkMode}}",
    ];
    let mut differ = Vec::new();
    for template in templates {
        for name in [&up, &down] {
            let ours = inspect_f(&c, template, name);
            let theirs = podman.ok(&["inspect", "--format", template, name]);
            let theirs = theirs.strip_suffix('\n').unwrap_or(&theirs);
            if ours != theirs {
                differ.push(format!(
                    "{template} of {name}: corral {ours:?}, podman {theirs:?}"
                ));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "inspect --format differs from podman's:\n{differ:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. --sysctl and unprivileged ping

#[test]
fn sysctl_sets_namespaced_values_inside_only() {
    if skip_unless_root("sysctl_sets_namespaced_values_inside_only") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let read =
        |path: &str| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let host_forward = read("/proc/sys/net/ipv4/ip_forward");
    let host_shmmax = read("/proc/sys/kernel/shmmax");
    // A value that is neither the host's nor the kernel's default.
    let shmmax = if host_shmmax.trim() == "123456789" {
        "987654321"
    } else {
        "123456789"
    };
    let flag = format!("kernel.shmmax={shmmax}");
    let paths = "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax";

    let set = run_rm_ok(
        &c,
        &["--sysctl", "net.ipv4.ip_forward=1", "--sysctl", &flag],
        &["sh", "-c", paths],
    );
    assert_eq!(
        set.split_whitespace().collect::<Vec<_>>(),
        ["1", shmmax],
        "the values inside"
    );
    // A new network namespace inherits the host's ip_forward (net.core.devconf_inherit_init_net
    // 0): the other value shows that the flag, not the inheritance, set it.
    let off = run_rm_ok(
        &c,
        &["--sysctl", "net.ipv4.ip_forward=0"],
        &["cat", "/proc/sys/net/ipv4/ip_forward"],
    );
    assert_eq!(off.trim(), "0", "--sysctl net.ipv4.ip_forward=0 inside");
    assert_eq!(
        read("/proc/sys/net/ipv4/ip_forward"),
        host_forward,
        "host unchanged"
    );
    assert_eq!(
        read("/proc/sys/kernel/shmmax"),
        host_shmmax,
        "host unchanged"
    );
}

#[test]
fn sysctl_that_would_change_the_host_fails_125() {
    if skip_unless_root("sysctl_that_would_change_the_host_fails_125") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let before = std::fs::read_to_string("/proc/sys/kernel/panic").unwrap_or_default();
    let cases: [(&[&str], &str); 2] = [
        (&["--sysctl", "kernel.panic=1"], "kernel.panic"),
        (&["--network", "host", "--sysctl", "net.x=1"], "net.x"),
    ];
    for (flags, key) in cases {
        let out = run_rm(&c, flags, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "{flags:?}: {}",
            describe(&out)
        );
        assert!(
            stderr_of(&out).contains(key),
            "{flags:?} names {key}: {}",
            describe(&out)
        );
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/panic").unwrap_or_default(),
        before,
        "kernel.panic of the host unchanged"
    );
    assert!(c.ps(true).is_empty(), "refused runs leave no container");
}

/// Sends one ICMP echo to 127.0.0.1 over an ICMP datagram socket (what `ping` uses without
/// NET_RAW) and prints `reply` when the answer comes.
const ICMP_DGRAM_PY: &str = "import socket, struct\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n\
s.settimeout(2)\n\
s.sendto(struct.pack('!BBHHH', 8, 0, 0, 0, 1) + b'corral', ('127.0.0.1', 0))\n\
data, _ = s.recvfrom(1024)\n\
print('reply' if data[0] == 0 else 'type %d' % data[0])\n";

#[test]
fn unprivileged_user_can_ping_by_default() {
    const TEST: &str = "unprivileged_user_can_ping_by_default";
    if skip_unless_root(TEST) {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let range = run_rm_ok(&c, &[], &["cat", "/proc/sys/net/ipv4/ping_group_range"]);
    assert_eq!(
        words(&range),
        "0 2147483647",
        "docker and podman open ping_group_range in the container's network namespace"
    );
    let unprivileged = ["-u", "1000", "--cap-drop", "NET_RAW"];

    // busybox's ping opens a raw socket only (no ICMP datagram fallback in 1.35): it cannot
    // show the range at work without NET_RAW, whatever the range.
    let busybox = run_rm(
        &c,
        &unprivileged,
        &["ping", "-c", "1", "-W", "2", "127.0.0.1"],
    );
    if !busybox.status.success() {
        report_skip(
            TEST,
            &format!(
                "busybox ping as uid 1000 without NET_RAW failed (it uses raw sockets only): \
                 {}; checking with an ICMP datagram socket from the host's python3 instead",
                stderr_of(&busybox).trim()
            ),
        );
    }
    let Some(binds) = host_python_binds() else {
        report_skip(
            TEST,
            "no /usr/bin/python3 with a merged /usr to open an ICMP socket",
        );
        return;
    };
    let mut flags: Vec<&str> = unprivileged.to_vec();
    flags.extend(binds.iter().map(String::as_str));
    let out = run_rm(&c, &flags, &["/usr/bin/python3", "-c", ICMP_DGRAM_PY]);
    assert!(
        out.status.success() && stdout_of(&out).trim() == "reply",
        "uid 1000 without NET_RAW pings 127.0.0.1 over an ICMP datagram socket: {}",
        describe(&out)
    );
    // The control: with the range closed, the same socket is refused.
    flags.extend(["--sysctl", "net.ipv4.ping_group_range=1 0"]);
    let closed = run_rm(&c, &flags, &["/usr/bin/python3", "-c", ICMP_DGRAM_PY]);
    assert!(
        !closed.status.success(),
        "with ping_group_range closed the socket is refused: {}",
        describe(&closed)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. --add-host, --dns, --dns-search, --dns-option

#[test]
fn add_host_and_dns_flags_show_in_hosts_and_resolv_conf() {
    if skip_unless_tools(
        "add_host_and_dns_flags_show_in_hosts_and_resolv_conf",
        NET_TOOLS,
    ) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let _g = ContainerGuard::new(&c);
    let net = nets.create(&unique_name("rf"), 24, &[]);
    let gateway = net.gateway.to_string();
    let text = run_rm_ok(
        &c,
        &[
            "--network",
            &net.name,
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "gw:host-gateway",
            "--dns",
            "9.9.9.9",
            "--dns-search",
            "example.com",
            "--dns-option",
            "ndots:2",
        ],
        &["sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf"],
    );
    let (hosts, resolv) = text.split_once("---\n").unwrap_or((&text, ""));
    let hosts_has = |ip: &str, name: &str| {
        hosts.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(ip) && w.any(|n| n == name)
        })
    };
    assert!(
        hosts_has("10.1.2.3", "db"),
        "--add-host db:10.1.2.3:\n{hosts}"
    );
    assert!(
        hosts_has(&gateway, "gw"),
        "--add-host gw:host-gateway is the network's gateway {gateway}:\n{hosts}"
    );
    let resolv_lines: Vec<String> = resolv.lines().map(words).collect();
    let nameservers: Vec<&String> = resolv_lines
        .iter()
        .filter(|l| l.starts_with("nameserver "))
        .collect();
    assert_eq!(
        nameservers,
        ["nameserver 9.9.9.9"],
        "--dns replaces the nameservers:\n{resolv}"
    );
    assert!(
        resolv_lines.iter().any(|l| l == "search example.com"),
        "--dns-search:\n{resolv}"
    );
    assert!(
        resolv_lines.iter().any(|l| l == "options ndots:2"),
        "--dns-option:\n{resolv}"
    );
}

#[test]
fn dns_flags_with_network_none_fail_125() {
    if skip_unless_root("dns_flags_with_network_none_fail_125") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    // podman 4.3: `Error: conflicting options: dns and the network mode: none` (exit 125).
    let cases: [&[&str]; 3] = [
        &["--dns", "9.9.9.9"],
        &["--dns-search", "example.com"],
        &["--dns-option", "ndots:2"],
    ];
    for flags in cases {
        let out = run_rm(&c, &[&["--network", "none"][..], flags].concat(), &["true"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "--network none {flags:?}: {}",
            describe(&out)
        );
        assert!(
            stderr_of(&out).contains("--dns") || stderr_of(&out).contains("dns"),
            "names the flag: {}",
            describe(&out)
        );
    }
    assert!(c.ps(true).is_empty(), "refused runs leave no container");
}

#[test]
fn add_host_with_network_none_is_written_as_docker_and_podman_do() {
    if skip_unless_root("add_host_with_network_none_is_written_as_docker_and_podman_do") {
        return;
    }
    let c = world();
    let _g = ContainerGuard::new(&c);
    let out = run_rm(
        &c,
        &["--network", "none", "--add-host", "db:10.1.2.3"],
        &["cat", "/etc/hosts"],
    );
    // docker and podman (4.3, measured here) both accept it and write the line: a container
    // without a network still resolves names through /etc/hosts.
    assert!(
        out.status.success() && stdout_of(&out).lines().any(|l| words(l) == "10.1.2.3 db"),
        "run --network none --add-host db:10.1.2.3: docker and podman write `10.1.2.3 db` into \
         /etc/hosts: {}",
        describe(&out)
    );
}

#[test]
fn memory_and_block_io_flags_reach_the_cgroup() {
    if skip_unless_root("memory_and_block_io_flags_reach_the_cgroup") {
        return;
    }
    if !std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        report_skip(
            "memory_and_block_io_flags_reach_the_cgroup",
            "no cgroup v1 memory hierarchy on this host (its files are what is checked)",
        );
        return;
    }
    let c = world();
    let mut guard = ContainerGuard::new(&c);
    let name = unique_name("memflags");
    let swap = std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    let mut flags = vec![
        "-m",
        "64m",
        "--memory-reservation",
        "32m",
        "--memory-swappiness",
        "5",
        "--oom-kill-disable",
    ];
    if swap {
        flags.extend(["--memory-swap", "96m"]);
    }
    // A weight needs an I/O scheduler that has weights (BFQ; CFQ before Linux 5.0): the
    // hierarchy's root then has the file.
    let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
    let weight = ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .any(|f| blkio.join(f).exists());
    if weight {
        flags.extend(["--blkio-weight", "300"]);
    } else if blkio.is_dir() {
        report_skip(
            "memory_and_block_io_flags_reach_the_cgroup (its --blkio-weight part)",
            "no I/O scheduler with weights here (no BFQ): checking the refusal instead",
        );
        let out = run_rm(&c, &["--blkio-weight", "300"], &["true"]);
        assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
        assert!(
            stderr_of(&out).contains("no I/O scheduler with weights"),
            "{}",
            describe(&out)
        );
    }
    let id = run_d(
        &c,
        &mut guard,
        &name,
        &flags,
        BUSYBOX_IMAGE,
        &["sleep", "30"],
    );
    let dirs = corral_e2e::containers::cgroup_dirs(&id);
    let dir = |h: &str| {
        dirs.iter()
            .find(|d| d.starts_with(format!("/sys/fs/cgroup/{h}")))
            .unwrap_or_else(|| panic!("no {h} cgroup among {dirs:?}"))
            .clone()
    };
    let read = |h: &str, f: &str| {
        std::fs::read_to_string(dir(h).join(f))
            .unwrap_or_else(|e| panic!("{h}/{f}: {e}"))
            .trim()
            .to_owned()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("memory", "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(read("memory", "memory.swappiness"), "5");
    assert!(read("memory", "memory.oom_control").contains("oom_kill_disable 1"));
    if swap {
        assert_eq!(read("memory", "memory.memsw.limit_in_bytes"), "100663296");
    }
    if weight {
        let w = ["blkio.weight", "blkio.bfq.weight"]
            .iter()
            .find(|f| dir("blkio").join(f).exists())
            .map(|f| read("blkio", f));
        assert_eq!(w.as_deref(), Some("300"), "the blkio weight");
    }
    for (flags, why) in [
        (&["--memory-swap", "96m"][..], "needs -m"),
        (&["-m", "64m", "--memory-swap", "32m"], "at least -m"),
        (&["-m", "64m", "--memory-reservation", "128m"], "below -m"),
        (&["--memory-swappiness", "101"], "between 0 and 100"),
        (&["--blkio-weight", "5"], "between 10 and 1000"),
        (&["--oom-kill-disable"], "needs -m"),
        (
            &["--device-read-bps", "/dev/null:1mb"],
            "not a block device",
        ),
    ] {
        let out = run_rm(&c, flags, &["true"]);
        assert_eq!(
            out.status.code(),
            Some(EXIT_CORRAL),
            "{flags:?}: {}",
            describe(&out)
        );
        assert!(
            stderr_of(&out).contains(why),
            "{flags:?}: {}",
            describe(&out)
        );
    }
}

#[test]
fn pid_and_cgroupns_host_share_the_hosts_namespaces() {
    if skip_unless_root("pid_and_cgroupns_host_share_the_hosts_namespaces") {
        return;
    }
    let c = world();
    let me = std::process::id().to_string();
    let probe = format!("test -d /proc/{me} && echo sees-host || echo own; echo $$");
    let own = run_rm_ok(&c, &["--network", "none"], &["sh", "-c", &probe]);
    assert_eq!(
        own.split_whitespace().collect::<Vec<_>>(),
        ["own", "1"],
        "default: a PID namespace of its own, the command PID 1"
    );
    let host = run_rm_ok(
        &c,
        &["--network", "none", "--pid", "host"],
        &["sh", "-c", &probe],
    );
    let words: Vec<&str> = host.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"sees-host"), "--pid host: {host}");
    assert_ne!(
        words.get(1),
        Some(&"1"),
        "--pid host: the command is not PID 1: {host}"
    );

    let line = |flags: &[&str]| {
        let mut f = vec!["--network", "none"];
        f.extend_from_slice(flags);
        run_rm_ok(&c, &f, &["cat", "/proc/self/cgroup"])
            .lines()
            .find(|l| l.contains(":memory:") || l.starts_with("0::"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line(&[]).ends_with(":/"),
        "default cgroupns: the container's cgroup is /"
    );
    let host = line(&["--cgroupns", "host"]);
    assert!(
        host.contains("/corral/"),
        "--cgroupns host shows the host's path: {host}"
    );
    let out = run_rm(&c, &["--pid", "sideways"], &["true"]);
    assert_eq!(
        out.status.code(),
        Some(EXIT_CORRAL),
        "a bad --pid fails 125, as docker: {}",
        describe(&out)
    );
}
