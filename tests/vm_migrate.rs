//! End-to-end test of live migration (`corral vm migrate VM --to ADDR:PORT` and `corral vm
//! receive --listen ADDR:PORT`, crates/vm/src/migrate.rs), as a user would check it: two hosts
//! are two network namespaces with two state roots; a busybox VM serving a TCP stream moves
//! from A to B while a container on A pings it every 10 ms and another reads its stream. The
//! VM must arrive with its id, name and address, the stream must go on without a gap, and few
//! pings may be lost. Then the failures: nothing listening, a host without the VM's image, and
//! a receiver killed halfway must each fail with exit 125, leave the VM running on A and leave
//! nothing on the destination.
//!
//! Layout (made by [`Lan`], removed by its `Drop` even when the test fails):
//!
//! ```text
//! netns cmg<hex>a                              netns cmg<hex>b
//!   cmg<hex>ca 10.127.0.1/30  <-- veth -->  cmg<hex>cb 10.127.0.2/30   control: receive, NBD, memory
//!   cmg<hex>la (no address)   <-- veth -->  cmg<hex>lb (no address)    the LAN: `network create --parent`
//! ```
//!
//! Names do not start with `crl` (corral's own prefix). Every corral command runs under
//! `nsenter --net=/run/netns/NS` (not `ip netns exec`, which remounts /sys and hides the
//! cgroup mounts).

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use corral_e2e::containers::{poll_until, BUSYBOX_IMAGE};
use corral_e2e::process::{describe, run_bounded, wait_deadline};
use corral_e2e::vms::qemu_processes_of;
use corral_e2e::world::expect_failure;
use corral_e2e::Corral;
use corral_e2e::{corral_bin, path_str, report_skip, sha256_hex, skip_unless_tools, unique_token};

/// Every command is bounded by this (a TCG boot takes 2–4 s; parallel tests share two cores).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// The LAN's subnet; each host allocates from its own range in it.
const SUBNET: &str = "10.126.7.0/24";
/// Pings lost while the VM moves, at most: 0.5 s of 10 ms pings (the goal is one; TCG on a
/// loaded two-core machine stretches the pause).
const MAX_LOST_PINGS: u64 = 50;

fn has_guest_kernel() -> bool {
    std::fs::read_dir("/boot")
        .map(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64")
            })
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> Output {
    run_bounded(Command::new("ip").args(args), None, Duration::from_secs(30))
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(out.status.success(), "ip {args:?}: {}", describe(&out));
}

/// Two namespaces joined by two veth pairs: a control link with addresses, and the LAN.
struct Lan {
    ns: [String; 2],
    /// Every veth end: control A, control B, LAN A, LAN B.
    links: [String; 4],
}

impl Lan {
    fn new() -> Lan {
        let hex: String = sha256_hex(unique_token().as_bytes())
            .chars()
            .take(6)
            .collect();
        let base = format!("cmg{hex}");
        let lan = Lan {
            ns: [format!("{base}a"), format!("{base}b")],
            links: ["ca", "cb", "la", "lb"].map(|end| format!("{base}{end}")),
        };
        for ns in &lan.ns {
            ip_ok(&["netns", "add", ns]);
        }
        for (kind, addr) in [("c", Some(["10.127.0.1/30", "10.127.0.2/30"])), ("l", None)] {
            let ends = [format!("{base}{kind}a"), format!("{base}{kind}b")];
            ip_ok(&[
                "link", "add", &ends[0], "netns", &lan.ns[0], "type", "veth", "peer", "name",
                &ends[1], "netns", &lan.ns[1],
            ]);
            for i in 0..2 {
                let ns = lan.ns[i].as_str();
                ip_ok(&["-n", ns, "link", "set", &ends[i], "up"]);
                ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
                if let Some(addr) = addr {
                    ip_ok(&["-n", ns, "addr", "add", addr[i], "dev", &ends[i]]);
                }
            }
        }
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it (and so their peers).
        for ns in &self.ns {
            let _ = ip(&["netns", "del", ns]);
        }
        // A veth made but not yet moved would be in this namespace.
        for l in self.links.iter().step_by(2) {
            let _ = ip(&["link", "del", l]);
        }
    }
}

/// One host: a world (state root) whose commands run in a namespace.
struct Host {
    world: Corral,
    ns: String,
}

impl Host {
    fn new(ns: &str) -> Host {
        Host {
            world: Corral::new(),
            ns: ns.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(corral_bin())
            .args(args)
            .env("CORRAL_ROOT", self.world.root())
            .env("NO_COLOR", "1")
            .env("CORRAL_DEFAULT_NETWORK", "none")
            .env_remove("RUST_LOG");
        cmd
    }

    fn cmd(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args), None, COMMAND_TIMEOUT)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "[{}] corral {args:?} failed: {}",
            self.ns,
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fail(&self, args: &[&str]) -> (i32, String) {
        expect_failure(&format!("[{}] corral {args:?}", self.ns), self.cmd(args))
    }

    /// `corral args...` in the background, output to `<label>.out`/`.err` in the scratch dir.
    fn spawn(&self, label: &str, args: &[&str]) -> Child {
        let file = |ext: &str| {
            std::fs::File::create(self.world.path(&format!("{label}.{ext}"))).expect("spawn log")
        };
        self.command(args)
            .stdin(Stdio::null())
            .stdout(file("out"))
            .stderr(file("err"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn corral {args:?}: {e}"))
    }

    fn spawned_output(&self, label: &str, ext: &str) -> String {
        std::fs::read_to_string(self.world.path(&format!("{label}.{ext}"))).unwrap_or_default()
    }

    /// `vm ls --json`.
    fn vms(&self) -> Vec<serde_json::Value> {
        let text = self.ok(&["vm", "ls", "--json"]);
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("vm ls --json ({e}): {text}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A `corral vm receive --listen ADDR` on this host, once it listens.
    fn receiver(&self, label: &str, listen: &str) -> Child {
        let mut child = self.spawn(label, &["vm", "receive", "--listen", listen]);
        let listening = poll_until(Duration::from_secs(30), || {
            self.spawned_output(label, "err").contains("receiving")
                || child.try_wait().ok().flatten().is_some()
        });
        let err = self.spawned_output(label, "err");
        assert!(
            listening && err.contains("receiving"),
            "vm receive --listen {listen}: {err}"
        );
        child
    }

    fn container_log(&self, name: &str) -> String {
        self.ok(&["logs", name])
    }

    /// `corral ps -a --json`: the container's status.
    fn container_status(&self, name: &str) -> String {
        let ps: serde_json::Value =
            serde_json::from_str(&self.ok(&["ps", "-a", "--json"])).expect("ps --json");
        ps.as_array()
            .and_then(|a| a.iter().find(|c| c["names"] == name || c["name"] == name))
            .map(|c| c["status"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    }
}

/// Commands run on drop, last first: what removes the test's VMs, containers and networks
/// (errors ignored: some are gone already).
struct Undo<'a> {
    steps: Vec<(&'a Host, Vec<String>)>,
}

impl<'a> Undo<'a> {
    fn push(&mut self, host: &'a Host, args: &[&str]) {
        self.steps
            .push((host, args.iter().map(|s| s.to_string()).collect()));
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        for (host, args) in self.steps.iter().rev() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = host.cmd(&args);
        }
    }
}

/// Receivers, killed and reaped on drop.
struct Receivers(Vec<Child>);

impl Drop for Receivers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Nothing of a VM on `h`: no VM listed, no directory under `vms/` (locks aside), no QEMU.
fn assert_no_vm(h: &Host, what: &str) {
    assert_eq!(
        h.ok(&["vm", "ls", "-q"]).trim(),
        "",
        "{what}: VMs on {}",
        h.ns
    );
    let vms = h.world.root().join("vms");
    let left: Vec<String> = std::fs::read_dir(&vms)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "{what}: left in {}: {left:?}",
        vms.display()
    );
    assert!(
        qemu_processes_of(path_str(h.world.root())).is_empty(),
        "{what}: a QEMU of {} still runs",
        h.ns
    );
}

/// The VM runs on A, its agent answers, and B has none of it.
fn assert_still_on_a(a: &Host, b: &Host, vm: &str, what: &str) {
    let vms = a.vms();
    assert!(
        vms.len() == 1 && vms[0]["name"] == vm && vms[0]["status"] == "running",
        "{what}: the VM still runs on A: {vms:?}"
    );
    assert_eq!(
        a.ok(&["vm", "exec", vm, "--", "echo", "here"]).trim(),
        "here",
        "{what}"
    );
    assert_no_vm(b, what);
}

/// The numbers of the stream a client printed, checked consecutive from 1.
fn stream_numbers(log: &str, what: &str) -> Vec<u64> {
    let nums: Vec<u64> = log
        .lines()
        // The reader's tries before the guest listened.
        .filter(|l| !l.starts_with("nc: can't connect"))
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{what}: not a number {l:?} in the stream"))
        })
        .collect();
    for (i, n) in nums.iter().enumerate() {
        assert_eq!(
            *n,
            i as u64 + 1,
            "{what}: the stream has a gap or restarted at line {}",
            i + 1
        );
    }
    nums
}

fn guest_ip(vm: &serde_json::Value) -> String {
    let addr = vm["addresses"][0].as_str().unwrap_or("");
    let last = addr.split_whitespace().last().unwrap_or("");
    last.split('/').next().unwrap_or("").to_owned()
}

#[test]
fn running_vm_moves_with_its_address_and_connections() {
    let test = "running_vm_moves_with_its_address_and_connections";
    if skip_unless_tools(
        test,
        &[
            "qemu-system-x86_64",
            "qemu-img",
            "mkfs.ext4",
            "nsenter",
            "ip",
        ],
    ) {
        return;
    }
    if !has_guest_kernel() {
        report_skip(
            test,
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
        return;
    }
    let lan = Lan::new();
    let a = Host::new(&lan.ns[0]);
    let b = Host::new(&lan.ns[1]);
    // A third host without the image: its own root, in B's namespace.
    let c = Host::new(&lan.ns[1]);
    let mut receivers = Receivers(Vec::new());
    let mut undo = Undo { steps: Vec::new() };
    let t = unique_token();
    let vm = format!("m{}", &sha256_hex(t.as_bytes())[..8]);
    let (client, pinger) = (format!("{vm}-nc"), format!("{vm}-ping"));

    // The same image on A and B (save and load: the same digest).
    a.world.busybox_image();
    let saved = a.world.path("busybox.tar");
    a.ok(&["image", "save", BUSYBOX_IMAGE, "-o", path_str(&saved)]);
    b.ok(&["image", "load", "-i", path_str(&saved)]);
    // One LAN: each host's bridge on its veth end, its own gateway and address range.
    for (h, parent, gw, range) in [
        (&a, &lan.links[2], "10.126.7.1", "10.126.7.64/26"),
        (&b, &lan.links[3], "10.126.7.2", "10.126.7.128/26"),
    ] {
        undo.push(h, &["network", "rm", "lan"]);
        h.ok(&[
            "network",
            "create",
            "lan",
            "--parent",
            parent,
            "--subnet",
            SUBNET,
            "--gateway",
            gw,
            "--ip-range",
            range,
        ]);
    }
    receivers.0.push(b.receiver("receive-b", "10.127.0.2:7070"));

    // On A: the VM streams numbered lines to whoever connects to port 9000.
    undo.push(&a, &["vm", "rm", "-f", &vm]);
    undo.push(&b, &["vm", "rm", "-f", &vm]);
    a.ok(&[
        "vm",
        "run",
        "-d",
        "--name",
        &vm,
        "--network",
        "lan",
        "--image",
        BUSYBOX_IMAGE,
        "--",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done | nc -l -p 9000",
    ]);
    let before = a.vms();
    let id = before[0]["id"].as_str().unwrap().to_owned();
    let vm_ip = guest_ip(&before[0]);
    assert!(
        vm_ip.starts_with("10.126.7."),
        "the VM's address: {before:?}"
    );
    // The reader, on A: keeps its stdin open (busybox nc ends at its EOF), retries until the
    // guest listens.
    undo.push(&a, &["rm", "-f", &client]);
    a.ok(&[
        "run",
        "-d",
        "--name",
        &client,
        "--network",
        "lan",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        &format!("sleep 100000 | while true; do nc {vm_ip} 9000 && break; sleep 0.2; done"),
    ]);
    let streaming = poll_until(Duration::from_secs(60), || {
        a.container_log(&client).lines().count() >= 20
    });
    assert!(streaming, "the stream: {:?}", a.container_log(&client));

    // 1. Nothing listens there.
    let (code, err) = a.fail(&["vm", "migrate", &vm, "--to", "10.127.0.2:7079"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("cannot reach"), "nothing listening: {err}");
    assert_still_on_a(&a, &b, &vm, "nothing listening");

    // 2. A host that lacks the VM's image.
    receivers.0.push(c.receiver("receive-c", "10.127.0.2:7071"));
    let (code, err) = a.fail(&["vm", "migrate", &vm, "--to", "10.127.0.2:7071"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("lacks the VM's image"),
        "no image there: {err}"
    );
    assert_still_on_a(&a, &c, &vm, "no image there");
    assert_no_vm(&b, "no image there");

    // 3. The destination's receiver killed halfway: once B shows the incoming VM starting.
    let mut migrating = a.spawn(
        "migrate-killed",
        &["vm", "migrate", &vm, "--to", "10.127.0.2:7070"],
    );
    let mut seen = Vec::new();
    let caught = poll_until(Duration::from_secs(120), || {
        seen = b.vms();
        seen.iter().any(|v| v["status"] == "starting")
            || migrating.try_wait().ok().flatten().is_some()
    });
    let receiver_b = receivers.0.remove(0);
    let mut receiver_b = receiver_b;
    let _ = receiver_b.kill();
    let _ = receiver_b.wait();
    assert!(
        caught && seen.iter().any(|v| v["status"] == "starting"),
        "B never showed the incoming VM starting ({seen:?}); migrate: {}{}",
        a.spawned_output("migrate-killed", "out"),
        a.spawned_output("migrate-killed", "err")
    );
    let status = wait_deadline(&mut migrating, COMMAND_TIMEOUT).expect("migrate ends");
    let err = a.spawned_output("migrate-killed", "err");
    assert_eq!(
        status.code(),
        Some(125),
        "a migration whose receiver died: {err}"
    );
    assert!(err.contains("error"), "the source says why: {err}");
    eprintln!("receiver killed halfway, the source said: {}", err.trim());
    // The destination's monitor removes the abandoned VM (it polls its receiver).
    let emptied = poll_until(Duration::from_secs(60), || {
        b.ok(&["vm", "ls", "-q"]).trim().is_empty()
    });
    assert!(emptied, "B still lists the abandoned VM: {:?}", b.vms());
    let gone = poll_until(Duration::from_secs(30), || {
        qemu_processes_of(path_str(b.world.root())).is_empty()
    });
    assert!(gone, "a QEMU of B still runs");
    assert_still_on_a(&a, &b, &vm, "receiver killed");

    // The real move, with a fresh receiver, while A pings the VM every 10 ms.
    receivers
        .0
        .push(b.receiver("receive-b2", "10.127.0.2:7072"));
    undo.push(&a, &["rm", "-f", &pinger]);
    a.ok(&[
        "run",
        "-d",
        "--name",
        &pinger,
        "--cap-add",
        "NET_RAW",
        "--network",
        "lan",
        BUSYBOX_IMAGE,
        "ping",
        "-i",
        "0.01",
        &vm_ip,
    ]);
    let pinging = poll_until(Duration::from_secs(60), || {
        a.container_log(&pinger).matches("seq=").count() >= 50
    });
    assert!(pinging, "ping: {}", a.container_log(&pinger));
    let streamed_before = stream_numbers(&a.container_log(&client), "before").len();
    let report = a.ok(&["vm", "migrate", &vm, "--to", "10.127.0.2:7072", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).expect("report");
    eprintln!("migration report: {report}");
    for k in ["total_ms", "downtime_ms", "qemu_downtime_ms", "ram_bytes"] {
        assert!(report[k].as_u64().is_some(), "{k} in {report}");
    }

    // The VM is on B, with its id, name and address; A has nothing of it.
    let after = b.vms();
    assert!(
        after.len() == 1 && after[0]["status"] == "running",
        "on B: {after:?}"
    );
    assert_eq!(after[0]["id"], id.as_str());
    assert_eq!(after[0]["name"], vm.as_str());
    assert_eq!(guest_ip(&after[0]), vm_ip, "the address is kept");
    assert_no_vm(&a, "after the move");
    assert_eq!(
        b.ok(&["vm", "exec", &vm, "--", "echo", "there"]).trim(),
        "there"
    );

    // The guest's kernel took no harm (a migration that loses pages shows here first).
    let console = b.ok(&["vm", "logs", "--console", &vm]);
    for bad in ["Oops", "BUG:", "Kernel panic"] {
        assert!(
            !console.contains(bad),
            "the guest broke after the move: {console}"
        );
    }

    // The TCP stream goes on: the reader still runs, and its log grows, consecutive.
    let grew = poll_until(Duration::from_secs(30), || {
        stream_numbers(&a.container_log(&client), "after").len() > streamed_before + 50
    });
    let nums = stream_numbers(&a.container_log(&client), "after");
    assert!(
        grew,
        "the stream stalled after the move at {} (before: {streamed_before})",
        nums.len()
    );
    assert_eq!(a.container_status(&client), "running", "the reader runs");

    // Pings: stop ping (SIGINT: it prints its summary), count what was lost.
    a.ok(&["kill", "-s", "INT", &pinger]);
    let ended = poll_until(Duration::from_secs(30), || {
        a.container_status(&pinger).starts_with("exited")
    });
    assert!(ended, "ping did not end: {}", a.container_status(&pinger));
    let log = a.container_log(&pinger);
    let mut seqs: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("seq=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let sent_by_seq = seqs.last().map_or(0, |m| m + 1);
    let lost_by_seq = sent_by_seq - seqs.len() as u64;
    let summary = log
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {log}"));
    // "N packets transmitted, M packets received, X% packet loss"
    let field = |word: &str| -> u64 {
        summary
            .split(',')
            .find(|part| part.contains(word))
            .and_then(|part| part.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {word} count in {summary:?}"))
    };
    let (sent, received) = (field("transmitted"), field("received"));
    eprintln!(
        "pings every 10 ms during the move: {sent} sent, {received} received, {} lost \
         ({lost_by_seq} missing sequence numbers); downtime {} ms (QEMU's measure {} ms), total {} ms",
        sent - received,
        report["downtime_ms"],
        report["qemu_downtime_ms"],
        report["total_ms"]
    );
    assert!(
        sent - received <= MAX_LOST_PINGS && lost_by_seq <= MAX_LOST_PINGS,
        "{} pings lost ({lost_by_seq} by sequence numbers), more than {MAX_LOST_PINGS}",
        sent - received
    );

    // Everything goes: containers, the VM, networks, receivers; checked.
    a.ok(&["rm", "-f", &client, &pinger]);
    b.ok(&["vm", "rm", "-f", &vm]);
    a.ok(&["network", "rm", "lan"]);
    b.ok(&["network", "rm", "lan"]);
    drop(undo);
    drop(receivers);
    assert_eq!(a.ok(&["ps", "-a", "-q"]).trim(), "", "containers left on A");
    for h in [&a, &b, &c] {
        assert_no_vm(h, "the end");
        assert!(
            !h.ok(&["network", "ls"]).contains("lan"),
            "a network left on {}",
            h.ns
        );
    }
    let names = lan.ns.clone();
    let links = lan.links.clone();
    drop((a, b, c));
    drop(lan);
    let netns = String::from_utf8_lossy(&ip(&["netns", "list"]).stdout).into_owned();
    let all_links = String::from_utf8_lossy(&ip(&["-o", "link"]).stdout).into_owned();
    for n in names.iter().chain(&links) {
        assert!(
            !netns.contains(n.as_str()) && !all_links.contains(n.as_str()),
            "{n} left"
        );
    }
}
