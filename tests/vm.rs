//! End-to-end tests of corral's virtual machines (docs/cli-vms.md), with real guests: Debian's
//! cloud kernel booted by QEMU (TCG on these hosts: see ARCHITECTURE.md), corral's initramfs
//! with its agent as init, the busybox image as the root disk. What a user checks: the
//! command's output and exit code come back as from `corral run`; the guest has its own kernel,
//! CPUs and memory; `vm exec`/`vm cp` work on a running VM; VMs and containers on one network
//! reach each other by name; bad input fails in bounded time with the reason and the console's
//! tail; and nothing is left behind — no VM directory, runtime directory, TAP device or QEMU.

use std::path::Path;
use std::time::{Duration, Instant};

use corral_e2e::containers::{poll_until, BUSYBOX_IMAGE};
use corral_e2e::networks::NetworkGuard;
use corral_e2e::process::describe;
use corral_e2e::vms::{
    assert_no_vm_leftovers, guest_kernel, qemu_processes_of, skip_without_guest_kernel, VmGuard,
};
use corral_e2e::{path_str, report_skip, skip_unless_tools, unique_token, Corral};

/// Every VM command here is bounded by this (a TCG boot takes 2–4 s; parallel tests share two
/// cores).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// A world for VM tests, or `None` after a loud SKIPPED line.
fn world(test: &str) -> Option<Corral> {
    if skip_unless_tools(test, &["qemu-system-x86_64", "mkfs.ext4"]) {
        return None;
    }
    if skip_without_guest_kernel(test) {
        return None;
    }
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    Some(c)
}

/// `vm run -d --name NAME --network NET --image busybox -- CMD...`, tracked by `guard`.
fn run_image_vm(c: &Corral, guard: &mut VmGuard<'_>, name: &str, net: &str, cmd: &[&str]) {
    guard.track(name);
    let mut args = vec![
        "vm",
        "run",
        "-d",
        "--name",
        name,
        "--network",
        net,
        "--image",
        BUSYBOX_IMAGE,
        "--",
    ];
    args.extend_from_slice(cmd);
    c.ok(&args);
}

/// The size in 512-byte sectors of the guest's virtio disk whose serial is `serial` (as the
/// guest's /sys/block shows it); empty if it has none.
fn guest_disk_sectors(c: &Corral, vm: &str, serial: &str) -> String {
    let script = format!(
        "for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = {serial} ] && cat $b/size; done; true"
    );
    c.ok(&["vm", "exec", vm, "--", "sh", "-c", &script])
        .trim()
        .to_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn image_vm_runs_a_command_like_corral_run() {
    let Some(c) = world("image_vm_runs_a_command_like_corral_run") else {
        return;
    };
    // Output and code come back; the guest has its own kernel, CPUs and memory.
    let kernel = guest_kernel().expect("kernel");
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--cpus",
        "2",
        "--memory",
        "384M",
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sh",
        "-c",
        "echo hi; uname -r; nproc; grep MemTotal /proc/meminfo; echo oops >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "hi", "{text}");
    assert_eq!(lines[1], kernel, "the guest runs the guest kernel: {text}");
    assert_eq!(lines[2], "2", "--cpus 2: {text}");
    let kib: u64 = lines[3].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        (250_000..=393_216).contains(&kib),
        "--memory 384M gives MemTotal {kib} kB"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "stderr: {}",
        describe(&out)
    );
    // docker's codes: not found 127; corral run's behaviour on success.
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "no-such-program",
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    let out = c.cmd(&[
        "vm",
        "run",
        "--rm",
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "echo",
        "again",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out), "again\n");
    // --rm: nothing is left.
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    assert_no_vm_leftovers(&c);
}

#[test]
fn running_vm_takes_exec_cp_logs_stop_and_rm() {
    let Some(c) = world("running_vm_takes_exec_cp_logs_stop_and_rm") else {
        return;
    };
    let name = format!("v{}", &unique_token()[..8].replace('x', "0"));
    let mut guard = VmGuard::new(&c);
    guard.track(&name);
    let id = c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &name,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sh",
        "-c",
        "echo main-started; exec sleep 100000",
    ]);
    assert_eq!(id.trim().len(), 64, "vm run -d prints the id: {id}");
    // ls and inspect: running, under the accelerator corral chose.
    let ls: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "ls", "--json"])).unwrap();
    assert_eq!(ls[0]["name"], name.as_str());
    assert_eq!(ls[0]["status"], "running");
    let info: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "inspect", &name])).unwrap();
    let accel = info[0]["accelerator"].as_str().unwrap().to_owned();
    assert!(accel == "tcg" || accel == "kvm", "{info}");
    assert_eq!(info[0]["guest"]["hostname"], name.as_str(), "{info}");
    assert!(
        info[0]["guest"]["uptime_ms"].as_u64().unwrap() > 0,
        "{info}"
    );
    // QEMU runs in a cgroup of its own, limited to the guest's memory plus QEMU's share.
    let qemus = qemu_processes_of(path_str(c.root()));
    assert_eq!(qemus.len(), 1, "one QEMU for the VM: {qemus:?}");
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", qemus[0])).unwrap();
    let prefix = format!("/corral/vm-{}", &id.trim()[..16]);
    // `N:memory:/corral/vm-<id>-<root>` (v1) or `0::/corral/...` (v2).
    let vm_cgroup = cgroups
        .lines()
        .filter(|l| l.contains(":memory:") || l.starts_with("0::"))
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find(|p| p.starts_with(&prefix))
        .unwrap_or_else(|| panic!("QEMU in {prefix}-*: {cgroups}"))
        .to_owned();
    let limit = [
        format!("/sys/fs/cgroup/memory{vm_cgroup}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup{vm_cgroup}/memory.max"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .expect("the VM's memory cgroup");
    assert_eq!(
        limit.trim(),
        ((512u64 + 384) << 20).to_string(),
        "512M guest + QEMU's 384M"
    );
    // exec: output, stderr, code, stdin, the guest's own process tree.
    let out = c.cmd(&[
        "vm",
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = c.cmd_with_stdin(
        &["vm", "exec", "-i", &name, "--", "cat"],
        b"through stdin".to_vec(),
    );
    assert_eq!(stdout(&out), "through stdin", "{}", describe(&out));
    let ps = c.ok(&["vm", "exec", &name, "--", "ps"]);
    assert!(
        ps.contains("sleep 100000"),
        "the main process runs in the guest: {ps}"
    );
    let out = c.cmd(&["vm", "exec", &name, "--", "nope"]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    // cp both ways, byte for byte.
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = c.path("in.bin");
    std::fs::write(&src, &data).unwrap();
    c.ok(&["vm", "cp", path_str(&src), &format!("{name}:/tmp/in.bin")]);
    let back = c.path("back.bin");
    c.ok(&["vm", "cp", &format!("{name}:/tmp/in.bin"), path_str(&back)]);
    assert_eq!(std::fs::read(&back).unwrap(), data, "vm cp round trip");
    let (code, err) = c.fail(&[
        "vm",
        "cp",
        &format!("{name}:/no/such/file"),
        path_str(&back),
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("/no/such/file"), "{err}");
    // logs: the main process's output.
    assert!(poll_until(Duration::from_secs(10), || c
        .ok(&["vm", "logs", &name])
        .contains("main-started")));
    // The balloon: a running guest shrinks, as its own /proc/meminfo says.
    let total_kib = || -> u64 {
        let m = c.ok(&["vm", "exec", &name, "--", "cat", "/proc/meminfo"]);
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse().ok())
            .unwrap_or(0)
    };
    let before = total_kib();
    c.ok(&["vm", "set", &name, "--memory", "256M"]);
    let mut after = before;
    assert!(
        poll_until(Duration::from_secs(30), || {
            after = total_kib();
            after < 262_144
        }),
        "MemTotal {before} kB -> {after} kB after vm set --memory 256M"
    );
    // The balloon reaches its target a moment after the guest's MemTotal falls below it.
    let mut stats = serde_json::Value::Null;
    let reached = poll_until(Duration::from_secs(30), || {
        stats = serde_json::from_str(&c.ok(&["vm", "stats", "--json", &name])).unwrap();
        stats[0]["balloon_bytes"] == 256u64 << 20
    });
    assert!(reached, "the balloon at 256 MiB: {stats}");
    assert!(stats[0]["cpu_usage_ns"].as_u64().unwrap() > 0, "{stats}");
    let (code, err) = c.fail(&["vm", "set", &name, "--cpus", "2"]);
    assert_eq!(code, 125);
    assert!(err.contains("next start"), "{err}");
    // A running VM is not removed without -f.
    let (code, err) = c.fail(&["vm", "rm", &name]);
    assert_eq!(code, 125);
    assert!(err.contains("running"), "{err}");
    // stop: clean power-off through the agent, well before the timeout.
    let t = Instant::now();
    c.ok(&["vm", "stop", "-t", "60", &name]);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "stop took {:?}",
        t.elapsed()
    );
    let ls: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "ls", "--json"])).unwrap();
    assert_eq!(ls[0]["status"], "stopped", "{ls}");
    assert!(qemu_processes_of(path_str(c.root())).is_empty());
    let console = c.ok(&["vm", "logs", "--console", &name]);
    assert!(
        console.contains("Power down") || console.contains("power off"),
        "{console}"
    );
    // A stopped VM takes new CPUs and memory for its next start; and the writable disk kept
    // the file.
    c.ok(&["vm", "set", &name, "--cpus", "2", "--memory", "384M"]);
    c.ok(&["vm", "start", &name]);
    assert_eq!(
        c.ok(&["vm", "exec", &name, "--", "sh", "-c", "nproc"])
            .trim(),
        "2"
    );
    let again = c.ok(&["vm", "exec", &name, "--", "sh", "-c", "wc -c < /tmp/in.bin"]);
    assert_eq!(again.trim(), "300000", "the VM's disk survives a restart");
    c.ok(&["vm", "rm", "-f", &name]);
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    assert_no_vm_leftovers(&c);
}

/// Serves the hostname at `/name` over HTTP on port 80.
const SERVE_NAME: &str = "mkdir -p /www && hostname > /www/name && exec httpd -f -p 80 -h /www";

#[test]
fn vms_and_a_container_reach_each_other_by_name() {
    let Some(c) = world("vms_and_a_container_reach_each_other_by_name") else {
        return;
    };
    let t = unique_token();
    let net_name = format!("vn{}", &t[t.len() - 6..]);
    let mut nets = NetworkGuard::new(&c);
    let net = nets.create(&net_name, 24, &[]);
    let mut guard = VmGuard::new(&c);
    let (a, b, ct) = (
        format!("a{}", &t[..5]),
        format!("b{}", &t[..5]),
        format!("c{}", &t[..5]),
    );
    // Each serves its own /etc/hostname over HTTP: the answer names who answered.
    for vm in [&a, &b] {
        run_image_vm(&c, &mut guard, vm, &net_name, &["sh", "-c", SERVE_NAME]);
    }
    let mut containers = corral_e2e::ContainerGuard::new(&c);
    containers.track(&ct);
    c.ok(&[
        "run",
        "-d",
        "--name",
        &ct,
        "--hostname",
        &ct,
        "--network",
        &net_name,
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        SERVE_NAME,
    ]);
    let get = |from_vm: Option<&str>, to: &str| -> String {
        let script = format!("printf 'GET /name HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {to} 80");
        let out = match from_vm {
            Some(vm) => c.cmd(&["vm", "exec", vm, "--", "sh", "-c", &script]),
            None => c.cmd(&["exec", &ct, "sh", "-c", &script]),
        };
        stdout(&out)
    };
    for (from, to) in [
        (Some(a.as_str()), b.as_str()),
        (Some(b.as_str()), a.as_str()),
        (Some(a.as_str()), ct.as_str()),
        (None, a.as_str()),
    ] {
        let mut answer = String::new();
        let reached = poll_until(Duration::from_secs(20), || {
            answer = get(from, to);
            answer.contains("200 OK")
        });
        assert!(reached, "{from:?} -> {to} by name: {answer:?}");
        assert!(
            answer.trim_end().ends_with(to),
            "{from:?} -> {to}: the answer comes from {to}: {answer:?}"
        );
    }
    // The guests' addresses are the network's.
    let prefix = net.subnet.rsplit_once('.').unwrap().0.to_owned();
    let addr = c.ok(&["vm", "exec", &a, "--", "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&prefix), "{addr}");
    c.ok(&["vm", "rm", "-f", &a, &b]);
    c.ok(&["rm", "-f", &ct]);
    // Their TAP devices went with them.
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &net.bridge])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("crlt"),
        "{}",
        describe(&links)
    );
    assert_no_vm_leftovers(&c);
}

#[test]
fn bad_input_fails_clearly_in_bounded_time_and_leaves_nothing() {
    let Some(c) = world("bad_input_fails_clearly_in_bounded_time_and_leaves_nothing") else {
        return;
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "vm",
                "run",
                "--rm",
                "--image",
                "no-such-image:1",
                "--",
                "true",
            ],
            "no-such-image",
        ),
        (
            vec![
                "vm",
                "run",
                "--rm",
                "--memory",
                "64T",
                "--image",
                BUSYBOX_IMAGE,
                "--",
                "true",
            ],
            "more than this host has",
        ),
        (
            vec![
                "vm",
                "run",
                "--rm",
                "--cpus",
                "0",
                "--image",
                BUSYBOX_IMAGE,
                "--",
                "true",
            ],
            "--cpus",
        ),
        (
            vec![
                "vm",
                "run",
                "--rm",
                "--image",
                BUSYBOX_IMAGE,
                "--kernel",
                "/no/such/vmlinuz",
                "--",
                "true",
            ],
            "/no/such/vmlinuz",
        ),
        (
            vec!["vm", "run", "--rm", "--boot-disk", "/no/such/disk.img"],
            "/no/such/disk.img",
        ),
        (
            vec![
                "vm",
                "run",
                "--rm",
                "--disk",
                "1M",
                "--image",
                BUSYBOX_IMAGE,
                "--",
                "true",
            ],
            "too small",
        ),
        (
            vec![
                "vm",
                "run",
                "--rm",
                "--accel",
                "fast",
                "--image",
                BUSYBOX_IMAGE,
            ],
            "--accel",
        ),
        (vec!["vm", "exec", "no-such-vm", "--", "true"], "no-such-vm"),
    ];
    for (args, needle) in cases {
        let (code, err) = c.fail(&args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} should name {needle:?}: {err}"
        );
    }
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    // Overcommit: a ratio that leaves no room refuses the start, and says what to do.
    let config = c.root().join("config.json");
    std::fs::write(&config, r#"{"vm_memory_overcommit": 0.001}"#).unwrap();
    let (code, err) = c.fail(&["vm", "run", "--rm", "--image", BUSYBOX_IMAGE, "--", "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("vm_memory_overcommit"), "{err}");
    std::fs::write(&config, b"{not json").unwrap();
    let info = c.cmd(&["vm", "run", "--rm", "--image", BUSYBOX_IMAGE, "--", "true"]);
    assert_eq!(info.status.code(), Some(125), "{}", describe(&info));
    assert!(
        String::from_utf8_lossy(&info.stderr).contains("config.json"),
        "{}",
        describe(&info)
    );
    std::fs::remove_file(&config).unwrap();
    assert_eq!(c.ok(&["vm", "ls", "-q"]), "");
    // An agent that never answers: a static program that is not corral's agent as init.
    let busybox = Path::new("/bin/busybox");
    if busybox.is_file() {
        let t = Instant::now();
        let out = c
            .command(&[
                "vm",
                "run",
                "--rm",
                "--boot-timeout",
                "15",
                "--image",
                BUSYBOX_IMAGE,
                "--",
                "true",
            ])
            .env("CORRAL_GUEST_AGENT", busybox)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
        assert!(err.contains("did not answer"), "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "bounded: {:?}",
            t.elapsed()
        );
    }
    // A guest whose kernel panics (no init): the VM stops, and says why.
    let kernel = format!("/boot/vmlinuz-{}", guest_kernel().unwrap());
    let t = Instant::now();
    let out = c.cmd(&[
        "vm",
        "run",
        "--name",
        "panics",
        "--network",
        "none",
        "--kernel",
        &kernel,
        "--cmdline",
        "console=ttyS0 rdinit=/no/init root=/dev/nowhere panic=-1",
    ]);
    assert!(
        t.elapsed() < Duration::from_secs(120),
        "bounded: {:?}",
        t.elapsed()
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("Kernel panic"),
        "the console is relayed: {}",
        describe(&out)
    );
    let info: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "inspect", "panics"])).unwrap();
    assert_eq!(info[0]["state"]["status"], "stopped", "{info}");
    let why = info[0]["state"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("panic") || why.contains("reset"), "{info}");
    c.ok(&["vm", "rm", "panics"]);
    assert_no_vm_leftovers(&c);
}

#[test]
fn run_isolation_vm_runs_a_container_in_its_own_vm_with_published_ports() {
    let Some(c) = world("run_isolation_vm_runs_a_container_in_its_own_vm_with_published_ports")
    else {
        return;
    };
    // `corral run` flags, a VM underneath: the output and code come back as for a container.
    let out = c.cmd(&[
        "run",
        "--isolation",
        "vm",
        "--rm",
        "-e",
        "GREETING=hello",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo $GREETING from $(uname -r); exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let kernel = guest_kernel().unwrap();
    assert_eq!(
        stdout(&out).trim(),
        format!("hello from {kernel}"),
        "{}",
        describe(&out)
    );
    // A published port reaches the guest's server from the host.
    let t = unique_token();
    let mut nets = NetworkGuard::new(&c);
    let net_name = format!("vp{}", &t[t.len() - 6..]);
    nets.create(&net_name, 24, &[]);
    let name = format!("p{}", &t[..5]);
    let mut guard = VmGuard::new(&c);
    guard.track(&name);
    let port = corral_e2e::networks::free_tcp_port();
    c.ok(&[
        "run",
        "--isolation",
        "vm",
        "-d",
        "--name",
        &name,
        "--network",
        &net_name,
        "-p",
        &format!("127.0.0.1:{port}:80"),
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        SERVE_NAME,
    ]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let answer = corral_e2e::networks::http_get_ok(addr, "/name", Duration::from_secs(30));
    let answer = answer.unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}/name: {e}"));
    assert!(answer.trim_end().ends_with(&name), "{answer}");
    c.ok(&["vm", "rm", "-f", &name]);
    assert_no_vm_leftovers(&c);
}

/// The monitor of the VM whose QEMU is `qemu`: its parent.
fn parent_of(pid: u32) -> u32 {
    corral_e2e::containers::parent_pid(pid).expect("parent")
}

#[test]
fn a_dead_qemu_or_monitor_is_reported_and_cleaned() {
    let Some(c) = world("a_dead_qemu_or_monitor_is_reported_and_cleaned") else {
        return;
    };
    let t = unique_token();
    let mut nets = NetworkGuard::new(&c);
    let net_name = format!("vd{}", &t[t.len() - 6..]);
    let net = nets.create(&net_name, 24, &[]);
    let mut guard = VmGuard::new(&c);
    let root = path_str(c.root()).to_owned();
    // QEMU killed: the VM is stopped, says why, and its TAP goes at once.
    let a = format!("q{}", &t[..5]);
    guard.track(&a);
    c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &a,
        "--network",
        &net_name,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sleep",
        "100000",
    ]);
    let qemu = qemu_processes_of(&root);
    assert_eq!(qemu.len(), 1);
    assert!(corral_e2e::containers::signal(qemu[0], "KILL"));
    assert!(
        poll_until(Duration::from_secs(20), || c
            .ok(&["vm", "ls", "--json"])
            .contains("\"stopped\"")),
        "{}",
        c.ok(&["vm", "ls"])
    );
    let info: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "inspect", &a])).unwrap();
    let why = info[0]["state"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("QEMU exited"), "{info}");
    let taps = || {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show", "master", &net.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).matches("crlt").count()
    };
    assert_eq!(taps(), 0, "the dead VM's TAP is released");
    c.ok(&["vm", "rm", &a]);
    // The monitor killed: QEMU still runs; `vm rm -f` ends it and cleans everything.
    let b = format!("m{}", &t[..5]);
    guard.track(&b);
    let id = c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &b,
        "--network",
        &net_name,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sleep",
        "100000",
    ]);
    let qemu = qemu_processes_of(&root);
    assert_eq!(qemu.len(), 1);
    let monitor = parent_of(qemu[0]);
    assert!(
        corral_e2e::containers::process_cmdline(monitor).contains("monitor"),
        "{}",
        corral_e2e::containers::process_cmdline(monitor)
    );
    assert!(corral_e2e::containers::signal(monitor, "KILL"));
    assert!(poll_until(Duration::from_secs(5), || {
        !corral_e2e::containers::process_alive(monitor)
    }));
    let ls = c.ok(&["vm", "inspect", &b]);
    assert!(ls.contains("monitor died"), "{ls}");
    c.ok(&["vm", "rm", "-f", &b]);
    assert_eq!(taps(), 0, "rm -f releases the TAP");
    let cgs: Vec<String> = std::fs::read_dir("/sys/fs/cgroup/memory/corral")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("vm-{}", &id.trim()[..16])))
        .collect();
    assert!(cgs.is_empty(), "rm -f removes the cgroup: {cgs:?}");
    let run_dirs: Vec<String> = std::fs::read_dir("/run/corral")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("vm-{}", &id.trim()[..16])))
        .collect();
    assert!(
        run_dirs.is_empty(),
        "runtime directories left: {run_dirs:?}"
    );
    assert_no_vm_leftovers(&c);
}

/// The number a guest's counter loop last wrote to `/counter` (0 before it wrote one).
fn counter(c: &Corral, vm: &str) -> u64 {
    // `echo $i > /counter` truncates before it writes: a read can find it empty (a busy TCG
    // guest makes that likely); read again rather than take the empty file for 0.
    for _ in 0..20 {
        let out = c.cmd(&["vm", "exec", vm, "--", "cat", "/counter"]);
        if let Ok(n) = stdout(&out).trim().parse() {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    0
}

#[test]
fn snapshots_with_memory_and_of_the_disk_restore_what_they_took() {
    let Some(c) = world("snapshots_with_memory_and_of_the_disk_restore_what_they_took") else {
        return;
    };
    let t = unique_token();
    let name = format!("s{}", &t[..5]);
    let mut guard = VmGuard::new(&c);
    guard.track(&name);
    // A process that counts in its memory and writes the count every 100 ms.
    c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &name,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /counter; sleep 0.1; done",
    ]);
    assert!(poll_until(Duration::from_secs(20), || counter(&c, &name) >= 3));
    c.ok(&["vm", "exec", &name, "--", "sh", "-c", "echo before > /file"]);
    c.ok(&["vm", "snapshot", "create", "--memory", &name, "m1"]);
    let c0 = counter(&c, &name);
    // The guest moves on: the counter grows, the file changes.
    assert!(poll_until(Duration::from_secs(30), || counter(&c, &name) >= c0 + 10));
    c.ok(&["vm", "exec", &name, "--", "sh", "-c", "echo after > /file"]);
    let c1 = counter(&c, &name);
    // Restore in place: the file and the counting process are back as they were.
    c.ok(&["vm", "snapshot", "restore", &name, "m1"]);
    let c2 = counter(&c, &name);
    assert!(
        c2 < c1 && c2 + 5 >= c0,
        "counter {c0} at the snapshot, {c1} before the restore, {c2} after"
    );
    assert_eq!(
        c.ok(&["vm", "exec", &name, "--", "cat", "/file"]).trim(),
        "before"
    );
    // A disk snapshot of the running VM (the agent syncs the guest first: no `sync` here),
    // restored into the stopped VM.
    c.ok(&["vm", "exec", &name, "--", "sh", "-c", "echo disk1 > /d"]);
    c.ok(&["vm", "snapshot", "create", &name, "d1"]);
    c.ok(&[
        "vm",
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "echo disk2 > /d && sync",
    ]);
    let (code, err) = c.fail(&["vm", "snapshot", "restore", &name, "d1"]);
    assert_eq!(code, 125);
    assert!(err.contains("stop the VM first"), "{err}");
    c.ok(&["vm", "stop", &name]);
    c.ok(&["vm", "snapshot", "restore", &name, "d1"]);
    c.ok(&["vm", "start", &name]);
    assert_eq!(
        c.ok(&["vm", "exec", &name, "--", "cat", "/d"]).trim(),
        "disk1"
    );
    // A memory snapshot restored into the stopped VM starts it where the snapshot was.
    c.ok(&["vm", "stop", &name]);
    c.ok(&["vm", "snapshot", "restore", &name, "m1"]);
    let c3 = counter(&c, &name);
    assert!(
        c3 + 5 >= c0 && c3 < c1,
        "counter {c0} at the snapshot, {c3} after starting from it"
    );
    assert_eq!(
        c.ok(&["vm", "exec", &name, "--", "cat", "/file"]).trim(),
        "before"
    );
    // Listing, and bad requests: each a clear 125.
    let ls: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "snapshot", "ls", "--json", &name])).unwrap();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m1", "d1"]);
    assert_eq!(ls[0]["memory"], true);
    let other = format!("o{}", &t[..5]);
    guard.track(&other);
    c.ok(&[
        "vm",
        "create",
        "--name",
        &other,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "true",
    ]);
    c.ok(&["vm", "snapshot", "create", &other, "theirs"]);
    for (args, needle) in [
        (
            vec!["vm", "snapshot", "restore", name.as_str(), "theirs"],
            "not",
        ),
        (
            vec!["vm", "snapshot", "restore", name.as_str(), "nope"],
            "no snapshot nope",
        ),
        (
            vec!["vm", "snapshot", "create", name.as_str(), "m1"],
            "already has",
        ),
        (
            vec!["vm", "snapshot", "create", "--memory", other.as_str(), "x"],
            "not running",
        ),
    ] {
        let (code, err) = c.fail(&args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} should say {needle:?}: {err}"
        );
    }
    c.ok(&["vm", "snapshot", "rm", &name, "d1"]);
    assert!(!c.ok(&["vm", "snapshot", "ls", &name]).contains("d1"));
    c.ok(&["vm", "rm", "-f", &name, &other]);
    assert_no_vm_leftovers(&c);
}

#[test]
fn a_snapshot_on_a_full_disk_fails_clearly_and_the_vm_runs_on() {
    let test = "a_snapshot_on_a_full_disk_fails_clearly_and_the_vm_runs_on";
    if skip_unless_tools(test, &["qemu-system-x86_64", "mkfs.ext4", "qemu-img"]) {
        return;
    }
    if guest_kernel().is_none() {
        report_skip(test, "no guest kernel");
        return;
    }
    // The state root on a tmpfs of its own, filled up once the VM runs.
    let mut c = Corral::with_tmpfs_root("400m");
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    let name = format!("f{}", &unique_token()[..6]);
    let mut guard = VmGuard::new(&c);
    guard.track(&name);
    c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &name,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sleep",
        "100000",
    ]);
    let filler = c.root().join("filler");
    let fill = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status()
        .unwrap();
    assert!(!fill.success(), "dd stops when the tmpfs is full");
    let (code, err) = c.fail(&["vm", "snapshot", "create", "--memory", &name, "full"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.to_lowercase().contains("space") || err.contains("failed"),
        "{err}"
    );
    std::fs::remove_file(&filler).unwrap();
    // Nothing half-made: no record, the VM still runs and takes a snapshot now.
    assert!(!c.ok(&["vm", "snapshot", "ls", &name]).contains("full"));
    assert_eq!(
        c.ok(&["vm", "exec", &name, "--", "echo", "alive"]).trim(),
        "alive"
    );
    c.ok(&["vm", "snapshot", "create", "--memory", &name, "later"]);
    c.ok(&["vm", "rm", "-f", &name]);
    assert_no_vm_leftovers(&c);
}

/// A VM keeps its address and MAC for its lifetime, as Proxmox's and Incus's do: stopped,
/// another workload cannot take them, and started again — in any order — it has them again;
/// removed, it frees them.
#[test]
fn vm_keeps_its_address_and_mac_across_restarts_in_any_order() {
    let Some(c) = world("vm_keeps_its_address_and_mac_across_restarts_in_any_order") else {
        return;
    };
    let t = unique_token();
    let net_name = format!("vk{}", &t[t.len() - 6..]);
    let mut nets = NetworkGuard::new(&c);
    let net = nets.create(&net_name, 24, &[]);
    let mut guard = VmGuard::new(&c);
    let (a, b) = (format!("ka{}", &t[..5]), format!("kb{}", &t[..5]));
    let identity = |vm: &str| -> (String, String) {
        let addr = c.ok(&[
            "vm", "exec", vm, "--", "ip", "-4", "-o", "addr", "show", "eth0",
        ]);
        let ip = addr
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mac = c.ok(&["vm", "exec", vm, "--", "cat", "/sys/class/net/eth0/address"]);
        (ip, mac.trim().to_owned())
    };
    for vm in [&a, &b] {
        run_image_vm(&c, &mut guard, vm, &net_name, &["sleep", "100000"]);
    }
    let (ida, idb) = (identity(&a), identity(&b));
    assert!(
        ida.0.starts_with(net.subnet.rsplit_once('.').unwrap().0),
        "{ida:?}"
    );
    c.ok(&["vm", "stop", &a, &b]);
    // Meanwhile a container joins the network: it gets an address neither VM has.
    let mut containers = corral_e2e::ContainerGuard::new(&c);
    let ct = format!("kc{}", &t[..5]);
    containers.track(&ct);
    c.ok(&[
        "run",
        "-d",
        "--name",
        &ct,
        "--network",
        &net_name,
        BUSYBOX_IMAGE,
        "sleep",
        "600",
    ]);
    let ct_ip = c.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &ct]);
    let ct_ip = ct_ip.trim();
    assert!(
        !ida.0.starts_with(&format!("{ct_ip}/")) && !idb.0.starts_with(&format!("{ct_ip}/")),
        "a stopped VM's address is still its own: container {ct_ip}, VMs {ida:?} {idb:?}"
    );
    // The other order: b first, then a.
    c.ok(&["vm", "start", &b]);
    c.ok(&["vm", "start", &a]);
    assert_eq!(identity(&a), ida, "a has its address and MAC again");
    assert_eq!(identity(&b), idb, "b has its address and MAC again");
    // By name too: b reaches a at its old address.
    let ping = c.ok(&[
        "vm",
        "exec",
        &b,
        "--",
        "sh",
        "-c",
        &format!("getent hosts {a} || nslookup {a}"),
    ]);
    assert!(
        ping.contains(ida.0.split('/').next().unwrap()),
        "{a} resolves to its address: {ping}"
    );
    c.ok(&["vm", "rm", "-f", &a, &b]);
    c.ok(&["rm", "-f", &ct]);
    // Removed, they free their addresses: a container asking for a's gets it.
    let a_ip = ida.0.split('/').next().unwrap().to_owned();
    let out = c.cmd(&[
        "run",
        "--rm",
        "--network",
        &net_name,
        "--ip",
        &a_ip,
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert!(
        out.status.success(),
        "a removed VM's address is free: {}",
        describe(&out)
    );
    assert_no_vm_leftovers(&c);
}

/// `vm create --ip/--mac-address`: the address is the VM's from its creation (a container
/// asking for it is refused, a second VM asking for it is refused at create and leaves
/// nothing), and the guest has that address and that MAC once started.
#[test]
fn vm_ip_and_mac_address_flags_reserve_at_create() {
    let Some(c) = world("vm_ip_and_mac_address_flags_reserve_at_create") else {
        return;
    };
    let t = unique_token();
    let net_name = format!("vi{}", &t[t.len() - 6..]);
    let mut nets = NetworkGuard::new(&c);
    let net = nets.create(&net_name, 24, &[]);
    let base = net.subnet.rsplit_once('.').unwrap().0.to_owned();
    let ip = format!("{base}.77");
    let mut guard = VmGuard::new(&c);
    let vm = format!("vi{}", &t[..5]);
    guard.track(&vm);
    c.ok(&[
        "vm",
        "create",
        "--name",
        &vm,
        "--network",
        &net_name,
        "--ip",
        &ip,
        "--mac-address",
        "02:42:c0:ff:ee:07",
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sleep",
        "100000",
    ]);
    // Reserved while created, before any start.
    let out = c.cmd(&[
        "run",
        "--rm",
        "--network",
        &net_name,
        "--ip",
        &ip,
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "a VM's reserved address: {}",
        describe(&out)
    );
    let other = format!("vj{}", &t[..5]);
    guard.track(&other);
    let out = c.cmd(&[
        "vm",
        "create",
        "--name",
        &other,
        "--network",
        &net_name,
        "--ip",
        &ip,
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "true",
    ]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "a second VM on the same --ip: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&ip),
        "the message names the address: {}",
        describe(&out)
    );
    assert!(
        !c.ok(&["vm", "ls"]).lines().any(|l| l.contains(&other)),
        "the refused VM left nothing: {}",
        c.ok(&["vm", "ls"])
    );
    for (flags, why) in [
        (vec!["--network", "none", "--ip", ip.as_str()], "--ip"),
        (
            vec![
                "--network",
                net_name.as_str(),
                "--mac-address",
                "01:00:5e:00:00:01",
            ],
            "multicast",
        ),
        (
            vec!["--network", net_name.as_str(), "--mac-address", "02:42"],
            "--mac-address",
        ),
    ] {
        let mut args = vec!["vm", "create"];
        args.extend_from_slice(&flags);
        args.extend_from_slice(&["--image", BUSYBOX_IMAGE, "--", "true"]);
        let out = c.cmd(&args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{flags:?}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{flags:?}: {}",
            describe(&out)
        );
    }
    c.ok(&["vm", "start", &vm]);
    let addr = c.ok(&[
        "vm", "exec", &vm, "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(
        addr.contains(&format!("{ip}/24")),
        "the guest has --ip: {addr}"
    );
    let mac = c.ok(&[
        "vm",
        "exec",
        &vm,
        "--",
        "cat",
        "/sys/class/net/eth0/address",
    ]);
    assert_eq!(
        mac.trim(),
        "02:42:c0:ff:ee:07",
        "the guest has --mac-address"
    );
    c.ok(&["vm", "rm", "-f", &vm]);
    let out = c.cmd(&[
        "run",
        "--rm",
        "--network",
        &net_name,
        "--ip",
        &ip,
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert!(
        out.status.success(),
        "freed with the VM: {}",
        describe(&out)
    );
    assert_no_vm_leftovers(&c);
}

/// `vm disk resize`: a running VM's disk grows at once (the guest sees the new capacity), a
/// stopped one's file grows; disks never shrink; `--disk` where it would be ignored is
/// refused.
#[test]
fn vm_disk_resize_grows_online_and_offline() {
    let Some(c) = world("vm_disk_resize_grows_online_and_offline") else {
        return;
    };
    let t = unique_token();
    let vm = format!("rz{}", &t[..5]);
    let mut guard = VmGuard::new(&c);
    guard.track(&vm);
    c.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &vm,
        "--network",
        "none",
        "--disk",
        "1G",
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sleep",
        "100000",
    ]);
    // The writable disk is the one whose serial is `upper`; its size in 512-byte sectors.
    let sectors = || -> u64 {
        guest_disk_sectors(&c, &vm, "upper")
            .parse()
            .expect("sectors")
    };
    assert_eq!(sectors(), (1u64 << 30) / 512, "--disk 1G");
    let out = c.ok(&["vm", "disk", "resize", &vm, "2G"]);
    assert!(out.contains("from 1G to 2G"), "{out}");
    let grown = poll_until(Duration::from_secs(10), || sectors() == (2u64 << 30) / 512);
    assert!(grown, "the running guest sees 2G: {} sectors", sectors());
    c.ok(&["vm", "stop", &vm]);
    c.ok(&["vm", "disk", "resize", &vm, "+1G"]);
    c.ok(&["vm", "start", &vm]);
    assert_eq!(
        sectors(),
        (3u64 << 30) / 512,
        "grown while stopped, seen at the next start"
    );
    for (size, why) in [("1G", "only grow"), ("lots", "size")] {
        let out = c.cmd(&["vm", "disk", "resize", &vm, size]);
        assert_eq!(out.status.code(), Some(125), "{size}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{size}: {}",
            describe(&out)
        );
    }
    assert_eq!(
        sectors(),
        (3u64 << 30) / 512,
        "a refused resize changed nothing"
    );
    c.ok(&["vm", "rm", "-f", &vm]);
    let kernel = format!("/boot/vmlinuz-{}", guest_kernel().unwrap());
    let out = c.cmd(&["vm", "create", "--disk", "5G", "--kernel", &kernel]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--disk"),
        "{}",
        describe(&out)
    );
    assert_no_vm_leftovers(&c);
}

/// `vm disk add|ls|rm` and `resize --disk`: a data disk added to a stopped VM appears in
/// the guest at the next start under its name (the virtio serial), grows, and goes away with
/// `rm`; names corral uses, a running VM and templates of a VM with data disks are refused.
#[test]
fn vm_data_disks_are_added_grown_and_removed() {
    let Some(c) = world("vm_data_disks_are_added_grown_and_removed") else {
        return;
    };
    let t = unique_token();
    let vm = format!("dd{}", &t[..5]);
    let mut guard = VmGuard::new(&c);
    guard.track(&vm);
    c.ok(&[
        "vm",
        "create",
        "--name",
        &vm,
        "--network",
        "none",
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sleep",
        "100000",
    ]);
    assert_eq!(
        c.ok(&["vm", "disk", "add", &vm, "data1", "64M"]).trim(),
        "data1"
    );
    let ls: serde_json::Value =
        serde_json::from_str(&c.ok(&["vm", "disk", "ls", "--json", &vm])).unwrap();
    assert_eq!(ls[1]["name"], "data1", "{ls}");
    assert_eq!(ls[1]["size"], 64u64 << 20, "{ls}");
    for (args, why) in [
        (vec!["vm", "disk", "add", &vm, "data1", "1G"], "already"),
        (
            vec!["vm", "disk", "add", &vm, "upper", "1G"],
            "corral's own",
        ),
        (vec!["vm", "disk", "add", &vm, "Bad_Name", "1G"], "a-z"),
        (vec!["vm", "disk", "rm", &vm, "nope"], "no data disk"),
        (
            vec!["vm", "template", &vm, &format!("tpl{}", &t[..5])],
            "data disks",
        ),
    ] {
        let out = c.cmd(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{args:?}: {}",
            describe(&out)
        );
    }
    c.ok(&["vm", "start", &vm]);
    let size_of = |serial: &str| guest_disk_sectors(&c, &vm, serial);
    assert_eq!(
        size_of("data1"),
        ((64u64 << 20) / 512).to_string(),
        "the guest sees data1"
    );
    c.ok(&["vm", "disk", "resize", "--disk", "data1", &vm, "128M"]);
    assert!(
        poll_until(Duration::from_secs(10), || size_of("data1")
            == ((128u64 << 20) / 512).to_string()),
        "grown online: {}",
        size_of("data1")
    );
    let out = c.cmd(&["vm", "disk", "rm", &vm, "data1"]);
    assert_eq!(
        out.status.code(),
        Some(125),
        "rm while running: {}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop it"),
        "{}",
        describe(&out)
    );
    c.ok(&["vm", "stop", &vm]);
    c.ok(&["vm", "disk", "rm", &vm, "data1"]);
    c.ok(&["vm", "start", &vm]);
    assert_eq!(size_of("data1"), "", "removed: the guest has no such disk");
    c.ok(&["vm", "rm", "-f", &vm]);
    assert_no_vm_leftovers(&c);
}

/// A reboot inside an image VM reboots it: the monitor starts it again at once, with its
/// address and writable disk, and its main process runs anew; a kernel panic still ends the
/// VM, and says so.
#[test]
fn image_vm_reboots_from_inside_and_a_panic_ends_it() {
    let Some(c) = world("image_vm_reboots_from_inside_and_a_panic_ends_it") else {
        return;
    };
    let t = unique_token();
    let mut nets = NetworkGuard::new(&c);
    let net = format!("vr{}", &t[t.len() - 6..]);
    nets.create(&net, 24, &[]);
    let mut guard = VmGuard::new(&c);
    let name = format!("r{}", &t[..5]);
    // The main process counts its runs on the writable disk.
    run_image_vm(
        &c,
        &mut guard,
        &name,
        &net,
        &["sh", "-c", "echo run >> /runs; sync; exec sleep 100000"],
    );
    let inspect = |c: &Corral| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&c.ok(&["vm", "inspect", &name])).unwrap();
        v[0].clone()
    };
    let boot_id = |c: &Corral| -> Option<String> {
        let out = c.cmd(&[
            "vm",
            "exec",
            &name,
            "--",
            "cat",
            "/proc/sys/kernel/random/boot_id",
        ]);
        out.status.success().then(|| stdout(&out).trim().to_owned())
    };
    let first = boot_id(&c).expect("boot id");
    let ip = inspect(&c)["network_endpoints"][0]["ip"].clone();
    // reboot(2) from inside, as `reboot -f` calls it; the exec's session ends with the guest.
    let _ = c.cmd(&[
        "vm",
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "sync; /bin/busybox reboot -f",
    ]);
    let mut second = None;
    let back = poll_until(Duration::from_secs(90), || {
        std::thread::sleep(Duration::from_millis(300));
        second = boot_id(&c).filter(|b| *b != first);
        second.is_some()
    });
    let info = inspect(&c);
    assert!(
        back,
        "the VM came back after its guest's reboot: {info:#}\n{}",
        c.ok(&["vm", "logs", "--console", &name])
    );
    assert_eq!(info["state"]["status"], "running", "{info:#}");
    assert!(
        info["state"]["error"].is_null(),
        "a reboot is no error: {info:#}"
    );
    assert_eq!(
        info["network_endpoints"][0]["ip"], ip,
        "the same address after the reboot"
    );
    let runs = poll_until(Duration::from_secs(20), || {
        c.ok(&["vm", "exec", &name, "--", "cat", "/runs"])
            .lines()
            .count()
            == 2
    });
    assert!(
        runs,
        "the main process ran again, on the same disk: {}",
        c.ok(&["vm", "exec", &name, "--", "cat", "/runs"])
    );
    // A panic is no reboot: the VM stops, and says why.
    let _ = c.cmd(&[
        "vm",
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "echo c > /proc/sysrq-trigger",
    ]);
    let mut st = serde_json::Value::Null;
    let stopped = poll_until(Duration::from_secs(60), || {
        st = inspect(&c)["state"].clone();
        st["status"] == "stopped"
    });
    assert!(stopped, "a panicked guest ends the VM: {st}");
    let why = st["error"].as_str().unwrap_or_default();
    assert!(why.contains("panicked"), "{st}");
    c.ok(&["vm", "rm", &name]);
    assert_no_vm_leftovers(&c);
}
