//! End-to-end tests of `run --network/--pid/--ipc container:X`, `run --init`,
//! `--cpuset-mems`, `stats` and `export`, checked as a docker user checks them: namespace links
//! in `/proc`, the processes one container sees of another, how fast `stop` is and whether
//! zombies pile up, the columns and figures `stats` prints while a container burns CPU and
//! writes, and what the archive of `export` holds (and what it leaves out).
//!
//! Where corral and docker differ, the tests assert docker's behaviour (Docker Engine 24+) and
//! say so in the assertion message.
//!
//! Every test runs the real binary as root in its own world (`CORRAL_ROOT`) with the busybox
//! image imported as `busybox:test`, and a [`ContainerGuard`] that removes its containers even
//! when it fails.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use corral_e2e::containers::{run_detached, run_rm, run_rm_ok, BUSYBOX_IMAGE};
use corral_e2e::engine::{ok_output, VolumeGuard};
use corral_e2e::networks::NetworkGuard;
use corral_e2e::process::describe;
use corral_e2e::{
    skip_unless_root, skip_unless_tools, stderr_of, unique_name, ContainerGuard, Corral,
};

/// corral's own failures (docs/cli-containers.md).
const EXIT_CORRAL: i32 = 125;
/// Deadline of one corral command: containers here live seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Host tools a corral network needs.
const NET_TOOLS: &[&str] = &["ip", "nft"];
/// Prints the namespace links of the calling process: net, ipc, uts, pid, one per line.
const NS_LINKS: &str = "for k in net ipc uts pid; do busybox readlink /proc/self/ns/$k; done";
/// Counts the zombies the container's processes show (state `Z` in /proc/PID/stat).
const COUNT_ZOMBIES: &str = "n=0; for f in /proc/[0-9]*/stat; do read -r l < $f 2>/dev/null || continue; case \"$l\" in *') Z '*) n=$((n+1));; esac; done; echo $n";

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh world with the busybox image imported and a short command deadline.
fn world() -> Corral {
    let mut c = Corral::new();
    c.timeout = COMMAND_TIMEOUT;
    c.busybox_image();
    c
}

/// `corral inspect -f TEMPLATE NAME`, trimmed.
fn inspect_f(c: &Corral, template: &str, name: &str) -> String {
    c.ok(&["inspect", "-f", template, name]).trim().to_owned()
}

/// Asserts that `out` failed with corral's exit code and that its message holds `needle`.
fn assert_refused(out: &Output, needle: &str, why: &str) {
    assert_eq!(
        out.status.code(),
        Some(EXIT_CORRAL),
        "{why}: {}",
        describe(out)
    );
    assert!(
        stderr_of(out).contains(needle),
        "{why}: the message names {needle:?}: {}",
        describe(out)
    );
}

/// The entries of a tar archive as `tar -tvf` lists them, one line each.
fn tar_listing(archive: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(archive)
        .output()
        .expect("run tar");
    assert!(out.status.success(), "tar -tvf: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The listing line of `name` (the last field, or the one before ` -> `/` link to `).
fn entry<'a>(listing: &'a [String], name: &str) -> Option<&'a String> {
    listing.iter().find(|l| {
        let rest = l
            .split(" -> ")
            .next()
            .unwrap_or(l)
            .split(" link to ")
            .next()
            .unwrap_or(l);
        rest.split_whitespace().last() == Some(name)
    })
}

// ---------------------------------------------------------------------------------------------
// --network/--pid/--ipc container:X

#[test]
fn container_modes_share_the_other_containers_namespaces() {
    if skip_unless_tools(
        "container_modes_share_the_other_containers_namespaces",
        NET_TOOLS,
    ) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let net = nets.create(&unique_name("sh"), 24, &[]);
    let a = unique_name("a");
    let a_id = run_detached(
        &c,
        &mut g,
        &a,
        &["--network", &net.name, "--hostname", "first"],
        &["sleep", "1000"],
    );
    let mode = format!("container:{a}");
    let theirs = c.ok(&["exec", &a, "sh", "-c", NS_LINKS]);
    let mine = run_rm_ok(
        &c,
        &["--network", &mode, "--pid", &mode, "--ipc", &mode],
        &[
            "sh",
            "-c",
            &format!("{NS_LINKS}; hostname; ps -o pid,args; ip -4 addr show eth0"),
        ],
    );
    let t: Vec<&str> = theirs.lines().collect();
    let m: Vec<&str> = mine.lines().collect();
    assert_eq!(
        m[0], t[0],
        "--network container:X: the same network namespace"
    );
    assert_eq!(m[1], t[1], "--ipc container:X: the same IPC namespace");
    assert_ne!(m[2], t[2], "the UTS namespace stays its own (docker's)");
    assert_eq!(m[3], t[3], "--pid container:X: the same PID namespace");
    assert_eq!(
        m[4], "first",
        "--network container:X: the other's hostname (docker's)"
    );
    assert!(
        mine.contains("sleep 1000"),
        "--pid container:X sees the other container's processes:\n{mine}"
    );
    assert!(
        mine.contains(&format!(
            "inet {}",
            c.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &a])
                .trim()
        )),
        "--network container:X: the other's address on eth0:\n{mine}"
    );

    // Only one --pid alone: the network stays its own.
    let own_net = run_rm_ok(
        &c,
        &["--network", "none", "--pid", &mode],
        &["sh", "-c", NS_LINKS],
    );
    let o: Vec<&str> = own_net.lines().collect();
    assert_ne!(
        o[0], t[0],
        "--pid alone leaves the network namespace private"
    );
    assert_eq!(
        o[3], t[3],
        "--pid container:X alone shares the PID namespace"
    );

    // inspect says what it shares, by id (docker's HostConfig fields).
    let b = unique_name("b");
    g.track(&b);
    c.ok(&[
        "create",
        "--name",
        &b,
        "--network",
        &mode,
        "--ipc",
        &mode,
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert_eq!(
        inspect_f(
            &c,
            "{{.HostConfig.NetworkMode}} {{.HostConfig.IpcMode}}",
            &b
        ),
        format!("container:{a_id} container:{a_id}"),
        "inspect names the shared namespaces' container by id, as docker"
    );

    // What sharing a network leaves no room for, refused as docker refuses it.
    let out = run_rm(&c, &["--network", &mode, "-p", "8080:80"], &["true"]);
    assert_refused(&out, "conflicting options", "-p with --network container:X");
    let out = run_rm(&c, &["--network", &mode, "--hostname", "x"], &["true"]);
    assert_refused(
        &out,
        "conflicting options",
        "--hostname with --network container:X",
    );
    let out = run_rm(&c, &["--network", "container:no-such-container"], &["true"]);
    assert_refused(
        &out,
        "no such container",
        "container:X of a container that does not exist",
    );
    let out = run_rm(&c, &["--pid", "sideways"], &["true"]);
    assert_refused(&out, "container:NAME", "a --pid mode that does not exist");

    // The other container stopped: starting one that joins it fails, naming why.
    c.ok(&["stop", "-t", "0", &a]);
    let out = c.cmd(&["start", &b]);
    assert!(
        !out.status.success(),
        "start while the other is stopped: {}",
        describe(&out)
    );
    assert!(
        stderr_of(&out).contains("not running"),
        "the message says the other container is not running: {}",
        describe(&out)
    );
    // Once it runs again, so does this one.
    c.ok(&["start", &a]);
    c.ok(&["start", &b]);
}

// ---------------------------------------------------------------------------------------------
// --init

#[test]
fn init_passes_stop_signal_on_and_reaps_orphans() {
    if skip_unless_root("init_passes_stop_signal_on_and_reaps_orphans") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    // `sleep` as PID 1 installs no handler, so the kernel drops SIGTERM: stop waits out its
    // timeout. Under --init, the init gets it and passes it on.
    let with = unique_name("init");
    run_detached(
        &c,
        &mut g,
        &with,
        &["--network", "none", "--init"],
        &["sleep", "1000"],
    );
    let ps = c.ok(&["exec", &with, "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("/dev/init")),
        "--init: the init is PID 1:\n{ps}"
    );
    let t = Instant::now();
    c.ok(&["stop", "-t", "8", &with]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "--init: stop's SIGTERM reached sleep at once (took {:?})",
        t.elapsed()
    );
    assert_eq!(
        inspect_f(&c, "{{.State.ExitCode}} {{.HostConfig.Init}} {{.Path}}", &with),
        "143 true sleep",
        "the command's status (128+SIGTERM), Init in HostConfig, Path the user's command (docker's)"
    );

    // An orphan (the subshell's sleep) is reparented to PID 1: the init reaps it, a plain
    // `sleep` as PID 1 never does. The plain case shows the check can fail.
    let orphan = "(sleep 0.2 &); exec sleep 1000";
    let mut zombies = |flags: &[&str]| {
        let name = unique_name("orph");
        let mut f = vec!["--network", "none"];
        f.extend_from_slice(flags);
        run_detached(&c, &mut g, &name, &f, &["sh", "-c", orphan]);
        std::thread::sleep(Duration::from_millis(1500));
        let n = c.ok(&["exec", &name, "sh", "-c", COUNT_ZOMBIES]);
        c.ok(&["rm", "-f", &name]);
        n.trim().parse::<u32>().expect("a count")
    };
    assert_eq!(zombies(&["--init"]), 0, "--init reaps the orphan");
    assert!(
        zombies(&[]) >= 1,
        "without --init the orphan stays a zombie"
    );

    // The command's own status, and a missing command's 127, come through the init.
    let out = run_rm(
        &c,
        &["--network", "none", "--init"],
        &["sh", "-c", "exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let out = run_rm(
        &c,
        &["--network", "none", "--init", "--read-only"],
        &["no-such-program"],
    );
    assert_eq!(
        out.status.code(),
        Some(127),
        "docker's 127 for a missing command: {}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// --cpuset-mems

#[test]
fn cpuset_mems_limits_the_memory_nodes() {
    if skip_unless_root("cpuset_mems_limits_the_memory_nodes") {
        return;
    }
    let c = world();
    let online =
        std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_else(|_| "0".into());
    let first = online
        .trim()
        .split([',', '-'])
        .next()
        .unwrap_or("0")
        .to_owned();
    let out = run_rm_ok(
        &c,
        &["--network", "none", "--cpuset-mems", &first],
        &["grep", "Mems_allowed_list", "/proc/self/status"],
    );
    assert_eq!(
        out.split_whitespace().last(),
        Some(first.as_str()),
        "--cpuset-mems {first}: the process may use that node only: {out}"
    );
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("mems");
    g.track(&name);
    c.ok(&[
        "create",
        "--name",
        &name,
        "--cpuset-mems",
        &first,
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert_eq!(inspect_f(&c, "{{.HostConfig.CpusetMems}}", &name), first);
    // A node the host lacks: refused, nothing left running.
    let out = run_rm(&c, &["--network", "none", "--cpuset-mems", "63"], &["true"]);
    assert!(
        !out.status.success(),
        "a node that does not exist: {}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// stats

#[test]
fn stats_shows_cpu_memory_network_and_block_io_as_docker() {
    if skip_unless_tools(
        "stats_shows_cpu_memory_network_and_block_io_as_docker",
        NET_TOOLS,
    ) {
        return;
    }
    let c = world();
    let mut nets = NetworkGuard::new(&c);
    let mut g = ContainerGuard::new(&c);
    let net = nets.create(&unique_name("st"), 24, &[]);
    let busy = unique_name("busy");
    run_detached(
        &c,
        &mut g,
        &busy,
        &["--network", "none", "-m", "64m"],
        &["sh", "-c", "while :; do :; done"],
    );
    let io = unique_name("io");
    run_detached(
        &c,
        &mut g,
        &io,
        &["--network", &net.name],
        &[
            "sh",
            "-c",
            &format!(
                "dd if=/dev/zero of=/big bs=1M count=8 conv=fsync 2>/dev/null; \
                 for i in 1 2 3 4 5; do echo hello | nc -u -w 1 {} 9; done; sleep 1000",
                net.gateway
            ),
        ],
    );
    std::thread::sleep(Duration::from_secs(3));

    let table = c.ok(&["stats", "--no-stream"]);
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(header.contains(col), "docker's column {col:?} in:\n{table}");
    }
    assert!(
        table.contains(&busy) && table.contains(&io),
        "both running containers listed:\n{table}"
    );

    let rows: Vec<Value> = c
        .ok(&["stats", "--no-stream", "--format", "json", &busy, &io])
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["Name"] == name)
            .unwrap_or_else(|| panic!("no row of {name}: {rows:?}"))
    };
    let pct = |v: &Value| -> f64 {
        v.as_str()
            .and_then(|s| s.strip_suffix('%'))
            .and_then(|s| s.parse().ok())
            .expect("N.NN%")
    };
    let b = row(&busy);
    assert!(
        pct(&b["CPUPerc"]) > 50.0,
        "a busy loop uses most of a CPU: {b}"
    );
    let mem = b["MemUsage"].as_str().unwrap_or_default();
    assert!(
        mem.ends_with("/ 64MiB"),
        "the limit of -m 64m, in docker's units: {mem}"
    );
    assert!(pct(&b["MemPerc"]) > 0.0, "{b}");
    assert_eq!(
        b["NetIO"], "0B / 0B",
        "--network none: no traffic (loopback is not counted)"
    );
    let i = row(&io);
    assert!(pct(&i["CPUPerc"]) < 50.0, "a sleeping container: {i}");
    let net_io = i["NetIO"].as_str().unwrap_or_default();
    assert!(
        !net_io.ends_with("/ 0B"),
        "the datagrams it sent count as sent bytes: {net_io}"
    );
    let block = i["BlockIO"].as_str().unwrap_or_default();
    let written = block.split(" / ").nth(1).unwrap_or_default();
    assert!(
        written.ends_with("MB")
            && written.trim_end_matches("MB").parse::<f64>().unwrap_or(0.0) >= 8.0,
        "8 MiB written with fsync show as written bytes: {block}"
    );

    // A template, with docker's header titles; --json's numbers.
    let t = c.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.Name}}\\t{{.CPUPerc}}\\t{{.PIDs}}",
        &busy,
    ]);
    assert!(t.starts_with("NAME\tCPU %\tPIDS"), "docker's titles:\n{t}");
    let j: Value = serde_json::from_str(&c.ok(&["stats", "--json", &busy])).expect("JSON");
    assert_eq!(j[0]["memory_limit"], 64 << 20);

    // A stopped container: listed with -a, with zeros.
    c.ok(&["stop", "-t", "0", &busy]);
    let all = c.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.PIDs}}",
    ]);
    assert!(
        all.lines().any(|l| l == format!("{busy} 0.00% 0")),
        "-a lists stopped ones with zeros:\n{all}"
    );
    let running = c.ok(&["stats", "--no-stream", "--format", "{{.Name}}"]);
    assert!(
        !running.contains(&busy),
        "without -a, only running ones:\n{running}"
    );
}

// ---------------------------------------------------------------------------------------------
// export

#[test]
fn export_archives_the_root_with_its_changes_but_not_its_volumes() {
    if skip_unless_tools(
        "export_archives_the_root_with_its_changes_but_not_its_volumes",
        &["tar"],
    ) {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let mut vols = VolumeGuard::new(&c);
    let vol = unique_name("exv");
    vols.track(&vol);
    let name = unique_name("ex");
    run_detached(
        &c,
        &mut g,
        &name,
        &["--network", "none", "-v", &format!("{vol}:/data")],
        &[
            "sh",
            "-c",
            "mkdir -p /x/y && echo changed > /x/y/file && ln -s /etc/passwd /x/link && \
             ln /x/y/file /x/hard && echo secret > /data/in-volume && rm /bin/ls && sleep 1000",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let running = c.path("running.tar");
    c.ok(&["export", "-o", running.to_str().unwrap(), &name]);
    c.ok(&["stop", "-t", "0", &name]);
    let stopped = c.path("stopped.tar");
    let out = c.command(&["export", &name]).output().expect("run export");
    assert!(out.status.success(), "export to stdout: {}", describe(&out));
    std::fs::write(&stopped, &out.stdout).unwrap();

    for (what, archive) in [("running", &running), ("stopped", &stopped)] {
        let l = tar_listing(archive);
        let file = entry(&l, "x/y/file").unwrap_or_else(|| panic!("{what}: the new file:\n{l:?}"));
        assert!(
            file.starts_with('-') || file.starts_with('h'),
            "{what}: {file}"
        );
        let link = entry(&l, "x/link").unwrap_or_else(|| panic!("{what}: the symlink:\n{l:?}"));
        assert!(
            link.starts_with('l') && link.ends_with("-> /etc/passwd"),
            "{what}: a symlink stays one: {link}"
        );
        assert!(
            entry(&l, "bin/busybox").is_some(),
            "{what}: the image's files"
        );
        assert!(
            entry(&l, "bin/ls").is_none(),
            "{what}: a file the container deleted is gone"
        );
        assert!(
            entry(&l, "data/in-volume").is_none(),
            "{what}: the volume's content is not the container's (docker's)"
        );
        assert!(
            entry(&l, "data").is_some(),
            "{what}: the volume's mount point is"
        );
        if what == "running" {
            assert!(
                !l.iter().any(|e| e.contains(" proc/1")),
                "{what}: /proc's content is not archived"
            );
        }
    }

    // The archive is a root filesystem again: import it and run it.
    let img = format!("{}:exported", unique_name("eximg"));
    c.ok(&["image", "import", stopped.to_str().unwrap(), &img]);
    let out = ok_output(
        "run of the imported export",
        &c.cmd(&[
            "run",
            "--rm",
            "--network",
            "none",
            &img,
            "cat",
            "/x/y/file",
            "/x/hard",
        ]),
    );
    assert_eq!(out, "changed\nchanged\n");
    c.ok(&["rmi", &img]);

    // Bad input: nothing left behind.
    let out = c.cmd(&["export", "no-such-container"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRAL), "{}", describe(&out));
    let missing_dir = c.path("no/such/dir/x.tar");
    let out = c.cmd(&["export", "-o", missing_dir.to_str().unwrap(), &name]);
    assert!(!out.status.success(), "{}", describe(&out));
    let leftovers: Vec<_> = std::fs::read_dir(c.path(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("corral-export"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file left: {leftovers:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// --log-driver / --log-opt

#[test]
fn log_options_rotate_json_file_and_none_keeps_nothing() {
    if skip_unless_root("log_options_rotate_json_file_and_none_keeps_nothing") {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("rot");
    let id = run_detached(
        &c,
        &mut g,
        &name,
        &[
            "--network",
            "none",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=3",
        ],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    c.ok(&["wait", &name]);
    let dir = c.root().join("containers").join(&id);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ctr.log"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["ctr.log", "ctr.log.1", "ctr.log.2"],
        "max-file=3: three files in all"
    );
    for f in &files {
        let len = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(len <= 2048, "{f} stays within max-size=2k: {len} bytes");
    }
    let logs = c.ok(&["logs", &name]);
    let numbers: Vec<u32> = logs
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().expect("a line N"))
        .collect();
    assert_eq!(numbers.last(), Some(&299), "the newest line is kept");
    assert!(
        numbers.first() > Some(&0),
        "the oldest lines were rotated away"
    );
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "logs reads the rotated files oldest first, with no gap: {numbers:?}"
    );
    assert_eq!(c.ok(&["logs", "-n", "2", &name]), "line 298\nline 299\n");

    // none: the output still reaches an attached run, nothing is kept, logs refuses.
    assert_eq!(
        run_rm_ok(
            &c,
            &["--network", "none", "--log-driver", "none"],
            &["echo", "hi"]
        ),
        "hi\n"
    );
    let quiet = unique_name("none");
    let qid = run_detached(
        &c,
        &mut g,
        &quiet,
        &["--network", "none", "--log-driver", "none"],
        &["echo", "x"],
    );
    c.ok(&["wait", &quiet]);
    let out = c.cmd(&["logs", &quiet]);
    assert_refused(
        &out,
        "does not support reading",
        "logs of a --log-driver none container (docker's words)",
    );
    let log = c.root().join("containers").join(&qid).join("ctr.log");
    assert!(
        std::fs::metadata(&log).map_or(true, |m| m.len() == 0),
        "none: nothing written"
    );
    assert_eq!(
        inspect_f(&c, "{{.HostConfig.LogConfig.Type}}", &quiet),
        "none"
    );

    // Bad input: 125, the reason named.
    for (flags, why) in [
        (vec!["--log-driver", "syslog"], "syslog"),
        (vec!["--log-opt", "max-file=2"], "needs max-size"),
        (vec!["--log-opt", "max-size=lots"], "max-size"),
        (vec!["--log-opt", "colour=blue"], "colour"),
        (
            vec!["--log-driver", "none", "--log-opt", "max-size=1m"],
            "max-size",
        ),
    ] {
        let mut f = vec!["--network", "none"];
        f.extend_from_slice(&flags);
        assert_refused(&run_rm(&c, &f, &["true"]), why, &format!("{flags:?}"));
    }
    // journald: where the journal runs, its entries are the container's lines; elsewhere the
    // driver is refused at create.
    let journald = std::path::Path::new("/run/systemd/journal/socket").exists();
    let j = unique_name("jd");
    let mut args = vec![
        "run",
        "--rm",
        "--name",
        &j,
        "--network",
        "none",
        "--log-driver",
        "journald",
        BUSYBOX_IMAGE,
        "echo",
        "to the journal",
    ];
    if journald {
        let out = c.cmd(&args);
        assert!(out.status.success(), "{}", describe(&out));
        let entries = corral_e2e::containers::host_output(
            "journalctl",
            &["--no-pager", "-o", "cat", &format!("CONTAINER_NAME={j}")],
        );
        assert!(
            entries.contains("to the journal"),
            "the journal has the line: {entries}"
        );
    } else {
        args.retain(|a| *a != "--rm");
        assert_refused(
            &c.cmd(&args),
            "no journal on this host",
            "journald without a journal",
        );
        corral_e2e::report_skip(
            "log_options_rotate_json_file_and_none_keeps_nothing (journald part)",
            "systemd-journald is not running here (/run/systemd/journal/socket): only its refusal was checked",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// -a/--attach

#[test]
fn attach_flag_shows_only_the_streams_named() {
    if skip_unless_root("attach_flag_shows_only_the_streams_named") {
        return;
    }
    let c = world();
    let both = ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"];
    let out = run_rm(&c, &["--network", "none", "-a", "stdout"], &both);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the container's code: {}",
        describe(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert!(
        !stderr_of(&out).contains("to-err"),
        "-a stdout: stderr not shown: {}",
        describe(&out)
    );
    let out = run_rm(&c, &["--network", "none", "-a", "STDERR"], &both);
    assert!(
        out.stdout.is_empty(),
        "-a stderr: stdout not shown: {}",
        describe(&out)
    );
    assert!(stderr_of(&out).contains("to-err"), "{}", describe(&out));
    // Not shown is still logged.
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("att");
    g.track(&name);
    let out = c.cmd(&[
        "run",
        "--name",
        &name,
        "--network",
        "none",
        "-a",
        "stdout",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        "echo to-err >&2",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let logs = c.cmd(&["logs", &name]);
    assert!(
        stderr_of(&logs).contains("to-err"),
        "the log keeps both streams: {}",
        describe(&logs)
    );
    // -a with -d, or a stream that does not exist: 125, no container made.
    let before = c.ok(&["ps", "-a", "-q"]);
    assert_refused(
        &c.cmd(&["run", "-d", "-a", "stdout", BUSYBOX_IMAGE, "true"]),
        "conflicting options",
        "-a with -d",
    );
    assert_refused(
        &run_rm(&c, &["-a", "stdmiddle"], &["true"]),
        "stdmiddle",
        "an unknown stream",
    );
    assert_eq!(c.ok(&["ps", "-a", "-q"]), before, "nothing created");
}

// ---------------------------------------------------------------------------------------------
// exec --detach-keys

/// A tmux session running one command in a 100x30 window, on a tmux server of its own (its
/// own socket: tests running at once never share, or end, each other's server); killed when
/// dropped.
struct Tmux(String);

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let name = format!("corral-e2e-{}", unique_name("tm"));
        let t = Tmux(name);
        let o = t.run(&[
            "new-session",
            "-d",
            "-s",
            &t.0,
            "-x",
            "100",
            "-y",
            "30",
            cmd,
        ]);
        assert!(o.status.success(), "tmux: {}", describe(&o));
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-t", &self.0, "-p"]).stdout)
            .into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// In tmux, `command` (a shell in container `name`, given the detach `flags`) starts a loop
/// that writes `marker`, then the user types `keys`: the command returns 0 with docker's words,
/// and the loop goes on in the container.
fn detach_scenario(c: &Corral, name: &str, command: &str, keys: &[&str], marker: &str) {
    let wait = |what: &str, done: &dyn Fn() -> bool, t: &Tmux| {
        assert!(
            corral_e2e::containers::poll_until(Duration::from_secs(15), done),
            "{what}: {}",
            t.screen()
        );
    };
    let done = c.path(&format!("{marker}.done"));
    let cmd = format!("{command}; echo $? > {}; sleep 60", done.display());
    let t = Tmux::start(&format!("CORRAL_ROOT={} {cmd}", c.root().display()));
    wait("no prompt", &|| t.screen().contains("/ #"), &t);
    t.keys(&[
        &format!("while :; do echo {marker} > /{marker}; sleep 0.2; done"),
        "Enter",
    ]);
    wait(
        "the loop did not start",
        &|| {
            c.cmd(&["exec", name, "cat", &format!("/{marker}")])
                .status
                .success()
        },
        &t,
    );
    t.keys(keys);
    wait(
        "it did not return on the detach keys",
        // The shell creates the file, then writes the code: wait for the code.
        &|| std::fs::read_to_string(&done).is_ok_and(|s| !s.trim().is_empty()),
        &t,
    );
    assert_eq!(
        std::fs::read_to_string(&done).unwrap().trim(),
        "0",
        "detaching exits 0"
    );
    assert!(
        t.screen().contains("read escape sequence"),
        "docker's words: {}",
        t.screen()
    );
    // The shell goes on after the detach: its file is rewritten.
    c.ok(&["exec", name, "rm", &format!("/{marker}")]);
    std::thread::sleep(Duration::from_millis(800));
    let again = c.cmd(&["exec", name, "cat", &format!("/{marker}")]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        marker,
        "the detached shell's loop still runs: {}",
        describe(&again)
    );
}

/// The two detach-key cases: docker's default, and a custom pair.
const DETACH_CASES: [(&str, &[&str]); 2] = [
    ("", &["C-p", "C-q"]),
    ("--detach-keys ctrl-a,x", &["C-a", "x"]),
];

#[test]
fn exec_detach_keys_leave_the_command_running() {
    let test = "exec_detach_keys_leave_the_command_running";
    if skip_unless_root(test) || skip_unless_tools(test, &["tmux"]) {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    let name = unique_name("dk");
    run_detached(
        &c,
        &mut g,
        &name,
        &["--network", "none"],
        &["sleep", "1000"],
    );
    for (i, (flags, keys)) in DETACH_CASES.into_iter().enumerate() {
        let command = format!(
            "{} exec -it {flags} {name} sh",
            corral_e2e::corral_bin().display()
        );
        detach_scenario(&c, &name, &command, keys, &format!("alive-{i}"));
    }
    let out = c.cmd(&["exec", "-it", "--detach-keys", "ctrl-1", &name, "true"]);
    assert_refused(&out, "ctrl-1", "detach keys that do not parse");
}

#[test]
fn run_it_detach_keys_leave_the_container_running() {
    let test = "run_it_detach_keys_leave_the_container_running";
    if skip_unless_root(test) || skip_unless_tools(test, &["tmux"]) {
        return;
    }
    let c = world();
    let mut g = ContainerGuard::new(&c);
    for (i, (flags, keys)) in DETACH_CASES.into_iter().enumerate() {
        let name = unique_name("rd");
        g.track(&name);
        let command = format!(
            "{} run -it --network none --name {name} {flags} {BUSYBOX_IMAGE} sh",
            corral_e2e::corral_bin().display()
        );
        detach_scenario(&c, &name, &command, keys, &format!("run-{i}"));
        let status = c.ok(&["inspect", "--format", "{{.State.Status}}", &name]);
        assert_eq!(status.trim(), "running", "the container runs on");
        c.ok(&["rm", "-f", &name]);
    }
    let out = c.cmd(&[
        "run",
        "-it",
        "--detach-keys",
        "ctrl-1",
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert_refused(&out, "ctrl-1", "detach keys that do not parse");
}
