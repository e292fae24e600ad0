//! Crash safety (issue 13): a `kill -9` at any state-changing system call of a command leaves
//! the old state or the new one, and the next commands reconcile what they find
//! (ARCHITECTURE.md, "State"). Scenarios: `run -d --name`, `create`, `run --rm`, `run --rm -v`,
//! `run --network`, `run --network -p`, `rm -f`, `volume create`, `network create`, `network rm`, `vm create`,
//! `vm rm -f`.
//!
//! Each scenario first runs its command once under `strace -f` to list the state-changing
//! calls it makes — `rename*`, `unlink*`, `mkdir*`, `rmdir`, `symlink*`, `link*`, an `openat`
//! that creates or opens for writing, a `write` to a file, a `sendto`/`sendmsg` (netlink
//! requests that make links, addresses and routes) — in every process it starts: the
//! CLI, the container's monitor and init, `nft`, the network's DNS server, `qemu-img`. Then,
//! once per sampled call, it runs the command again under `strace -f -e
//! inject=CALL:signal=KILL:when=N`: strace counts per system call and per process, so the
//! process that makes its Nth CALL is killed right there (another process that reaches its own
//! Nth CALL dies too: a crash of several, just as valid). strace is detached as soon as the
//! CLI has exited, so a container's own process runs on untraced.
//!
//! After each kill it checks what a user would:
//! - `ps -a --json`, `vm ls --json`, `network ls --json`, `volume ls`, `image ls` work, and no
//!   container is listed as running without a live process;
//! - the normal commands clean up: `rm -f NAME` (or "no such container" when the kill came
//!   before the container existed), `rm -f` of whatever `ps -a` lists, `vm rm -f` of whatever
//!   `vm ls` lists, `volume rm` of whatever `volume ls` lists, and `network rm` of whatever
//!   `network ls` lists, without `-f` — which corral refuses while any address of the network
//!   is allocated, so it passing means every address is free;
//! - the name can be used again (a container, volume, network or VM takes it; with `-p`, a
//!   container publishing the same host port starts);
//! - nothing is left: no file under the state root but the lock files that the first,
//!   uninterrupted run left too, no mount under it, no cgroup of any container id the command
//!   wrote, no process naming the state root or running the scenario's marker command, no
//!   nft rule, address, port-53 socket or DNS process of the network.
//!
//! The uninterrupted run goes through the same checks, so they are known to pass without a
//! crash.
//!
//! Sampling: a scenario makes from about twenty to a few hundred such calls (most in the
//! container's init). By default each runs at most [`DEFAULT_POINTS`] of them, evenly spaced
//! in the order the first run made them, so that every phase (name, directory, start,
//! network, exit) is hit and the whole file takes a few minutes. `CORRAL_CRASH_POINTS=N` runs
//! N per scenario, `CORRAL_CRASH_POINTS=all` every one (the full sweep). A failure names the
//! call and gives the strace command that reproduces it.
//!
//! Not covered here: a kill in `rm -f` of a container on a corral network between the
//! container's removal and the release of its addresses. That window closes only once the
//! command layer calls `corral_net::Networks::reconcile` (see its doc); the `rm -f` scenario
//! uses a container without a network.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use corral_e2e::containers::{cgroup_dirs, host_output, process_alive, process_cmdline, signal};
use corral_e2e::files::walk;
use corral_e2e::fixtures::busybox_rootfs_with_random;
use corral_e2e::networks::{bound_on, corral_nft_table, dns_processes, free_tcp_port};
use corral_e2e::process::describe;
use corral_e2e::{corral_bin, path_str, skip_unless_tools, unique_token, Corral};

/// Points per scenario unless `CORRAL_CRASH_POINTS` says otherwise.
const DEFAULT_POINTS: usize = 32;

/// The system calls that change state, traced in the first run (`execve` to find the CLI).
/// `sendto` and `sendmsg` are netlink requests (links, addresses, routes) for the most part.
const TRACED: &str = "execve,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,\
                      symlink,symlinkat,link,linkat,openat,write,sendto,sendmsg";

/// How long one traced command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// How long killed processes, cgroups and links get to go away.
const SETTLE: Duration = Duration::from_secs(10);

/// Makes each world's marker command distinct.
static MARKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Commands with placeholders: `{NAME}`, `{VOL}`, `{NET}`, `{SUBNET}`, `{IMAGE}`, `{PORT}`,
/// `{ARCHIVE}`, `{MARK}`.
type Steps = &'static [&'static [&'static str]];

/// One command under test, in its own world.
struct Scenario {
    /// For messages.
    label: &'static str,
    /// The command.
    args: &'static [&'static str],
    /// Run (untraced) once, before anything: fixtures, and a first run that fills caches so
    /// that the counted run is like the killed ones.
    setup: Steps,
    /// Run (untraced) before each attempt: what the command acts on.
    before: Steps,
    /// Run after the clean-up of each attempt: the fixtures again (the clean-up removes every
    /// network).
    restore: Steps,
    /// Run after the clean-up: they must succeed, which shows the name is free again.
    reuse: Steps,
    /// Whether a network `{NET}` on `{SUBNET}` takes part (its host objects are checked).
    network: bool,
    /// Whether image `{NAME}:1`, imported from `{ARCHIVE}`, takes part (it is removed, if it
    /// exists, and the store pruned).
    image: bool,
    /// Host programs it needs besides strace.
    tools: &'static [&'static str],
}

/// What the scenario's placeholders stand for in one world.
struct Names {
    name: String,
    volume: String,
    network: String,
    subnet: String,
    image: String,
    /// A free host port to publish.
    port: String,
    /// A rootfs tarball of its own (busybox and random bytes), for image scenarios.
    archive: String,
    /// The marker command's argument: `sleep MARK` is this world's container process.
    mark: String,
}

impl Names {
    fn fill(&self, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|a| {
                a.replace("{NAME}", &self.name)
                    .replace("{VOL}", &self.volume)
                    .replace("{NET}", &self.network)
                    .replace("{SUBNET}", &self.subnet)
                    .replace("{IMAGE}", &self.image)
                    .replace("{PORT}", &self.port)
                    .replace("{ARCHIVE}", &self.archive)
                    .replace("{MARK}", &self.mark)
            })
            .collect()
    }
}

/// One state-changing call: the system call and its number among that process's calls of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    call: String,
    nth: usize,
}

/// What a traced run left to look at.
struct Traced {
    /// The trace (`strace -o`).
    trace: String,
    /// How the CLI ended, as strace saw it (`exited with 0`, `killed by SIGKILL`).
    cli_end: String,
}

/// A world with the busybox image and the scenario.
struct Crash<'a> {
    world: Corral,
    scenario: &'a Scenario,
    names: Names,
    /// The state root's files after the uninterrupted run's clean-up.
    baseline: BTreeSet<String>,
}

impl<'a> Crash<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let mut world = Corral::new();
        world.timeout = Duration::from_secs(120);
        let image = world.busybox_image().to_owned();
        let token = unique_token();
        let short = &token[token.len().saturating_sub(6)..];
        let network = format!("crashnet-{short}");
        let subnet = if scenario.network {
            free_subnet(&world, &network)
        } else {
            String::new()
        };
        let archive = world.path("crash-image.tar");
        if scenario.image {
            let tar = busybox_rootfs_with_random(256 << 10, u64::from(std::process::id()));
            fs::write(&archive, tar).expect("write the image archive");
        }
        let names = Names {
            archive: path_str(&archive).to_owned(),
            name: format!("crash-{short}"),
            volume: format!("crashvol-{short}"),
            network,
            subnet,
            image,
            port: free_tcp_port().to_string(),
            // An unusual duration, so that the world's container processes can be told apart
            // from every other `sleep` on the host (and from the other scenarios').
            mark: format!(
                "86{:03}{:02}",
                std::process::id() % 1000,
                MARKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100
            ),
        };
        let crash = Crash {
            world,
            scenario,
            names,
            baseline: BTreeSet::new(),
        };
        crash.steps(scenario.setup, "setup");
        crash
    }

    /// Runs untraced steps; each must succeed.
    fn steps(&self, steps: Steps, what: &str) {
        for step in steps {
            let args = self.names.fill(step);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = self.world.cmd(&refs);
            assert!(
                out.status.success(),
                "{} ({what}): `corral {}` failed: {}",
                self.scenario.label,
                args.join(" "),
                describe(&out)
            );
        }
    }

    fn args(&self) -> Vec<String> {
        self.names.fill(self.scenario.args)
    }

    /// Runs the command under strace with `extra` options; detaches strace once the CLI has
    /// exited (what the command left running runs on untraced).
    fn traced(&self, extra: &[String]) -> Traced {
        let token = unique_token();
        let trace_path = self.world.path(&format!("trace-{token}"));
        let err_path = self.world.path(&format!("strace-{token}.err"));
        let mut cmd = Command::new("strace");
        // -I2: SIGTERM detaches (with -o FILE PROGRAM, strace blocks it by default).
        cmd.args(["-f", "-q", "-y", "-I2", "-o"])
            .arg(&trace_path)
            .args(["-e", &format!("trace={TRACED}")])
            .args(extra)
            .arg("--")
            .arg(corral_bin())
            .args(self.args())
            .env("CORRAL_ROOT", self.world.root())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env("CORRAL_DEFAULT_NETWORK", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err_path).expect("strace's stderr"));
        let mut strace = cmd.spawn().expect("spawn strace");
        let spid = strace.id();
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        // The CLI: the first process of the trace to execute corral (strace's own children
        // include short-lived probes of the kernel's ptrace features).
        let exec = format!("execve(\"{}\"", corral_bin().display());
        let mut cli: Option<u32> = None;
        while cli.is_none() && Instant::now() < deadline {
            let exited = matches!(strace.try_wait(), Ok(Some(_)));
            cli = fs::read_to_string(&trace_path).ok().and_then(|t| {
                t.lines()
                    .find(|l| l.contains(&exec))
                    .and_then(|l| l.split(' ').next()?.parse().ok())
            });
            if exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(cli) = cli {
            while process_alive(cli) && Instant::now() < deadline {
                if let Ok(Some(_)) = strace.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                !process_alive(cli),
                "{}: `corral {}` did not end within {COMMAND_TIMEOUT:?} (strace {extra:?})",
                self.scenario.label,
                self.args().join(" ")
            );
        }
        // The CLI's end is in the trace once strace has seen it (a zombie is not yet seen).
        if let Some(cli) = cli {
            let seen_by = Instant::now() + Duration::from_secs(5);
            while Instant::now() < seen_by && matches!(strace.try_wait(), Ok(None)) {
                let trace = fs::read_to_string(&trace_path).unwrap_or_default();
                if trace.lines().any(|l| {
                    l.split_once(' ').is_some_and(|(p, r)| {
                        p == cli.to_string() && r.trim_start().starts_with("+++")
                    })
                }) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Detach from what still runs (a monitor, a container): strace leaves on SIGTERM.
        if let Ok(None) = strace.try_wait() {
            signal(spid, "TERM");
        }
        // strace sometimes never leaves a process killed while several of its threads exit
        // (one waits in its exit stop for a tracer that no longer looks at it): killing strace
        // detaches it, as the kernel does for a tracer that dies, and lets the thread go.
        let detach_by = Instant::now() + Duration::from_secs(10);
        while matches!(strace.try_wait(), Ok(None)) && Instant::now() < detach_by {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(None) = strace.try_wait() {
            eprintln!(
                "{}: strace {extra:?} did not detach within 10 s; killed it",
                self.scenario.label
            );
            let _ = strace.kill();
            let _ = strace.wait();
        }
        let trace = fs::read_to_string(&trace_path).unwrap_or_default();
        let _ = fs::remove_file(&trace_path);
        let errors = fs::read_to_string(&err_path).unwrap_or_default();
        let _ = fs::remove_file(&err_path);
        let cli_end = cli
            .and_then(|p| {
                // `PID +++ exited with 0 +++` (strace pads the pid).
                trace.lines().find_map(|l| {
                    let (pid, rest) = l.split_once(' ')?;
                    let rest = rest.trim_start().strip_prefix("+++ ")?;
                    (pid == p.to_string()).then(|| rest.trim_end_matches(" +++").to_owned())
                })
            })
            .unwrap_or_else(|| {
                format!(
                    "ended unseen (pid {cli:?}; strace: {}; trace ends: {:?})",
                    errors.trim(),
                    trace.lines().rev().take(3).collect::<Vec<_>>()
                )
            });
        Traced { trace, cli_end }
    }

    /// The checks after the command (killed or not), the clean-up, and the leak checks; then
    /// the fixtures again for the next attempt. `what` says which attempt, for messages.
    fn check(&mut self, traced: &Traced, what: &str) {
        let ctx = format!(
            "{} ({what}; the CLI {}): `corral {}`",
            self.scenario.label,
            traced.cli_end,
            self.args().join(" ")
        );
        // Listings work; nothing is running without a process.
        for row in self.json_list(&["ps", "-a", "--json"], &ctx) {
            if row["status"] == "running" {
                let pid = row["pid"].as_u64().unwrap_or(0) as u32;
                assert!(
                    pid > 0 && process_alive(pid),
                    "{ctx}: listed as running without a live process: {row}"
                );
            }
        }
        self.json_list(&["vm", "ls", "--json"], &ctx);
        self.json_list(&["network", "ls", "--json"], &ctx);
        self.must(&["volume", "ls"], &ctx);
        self.must(&["image", "ls"], &ctx);
        // The normal commands clean up.
        let out = self.world.cmd(&["rm", "-f", &self.names.name]);
        assert!(
            out.status.success()
                || String::from_utf8_lossy(&out.stderr).contains("no such container"),
            "{ctx}: rm -f {}: {}",
            self.names.name,
            describe(&out)
        );
        for id in self.must(&["ps", "-a", "-q"], &ctx).split_whitespace() {
            self.must(&["rm", "-f", id], &ctx);
        }
        for vm in self.must(&["vm", "ls", "-q"], &ctx).split_whitespace() {
            self.must(&["vm", "rm", "-f", vm], &ctx);
        }
        for v in self.must(&["volume", "ls", "-q"], &ctx).split_whitespace() {
            self.must(&["volume", "rm", v], &ctx);
        }
        if self.scenario.image {
            let tag = format!("{}:1", self.names.name);
            let out = self.world.cmd(&["image", "rm", &tag]);
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            assert!(
                out.status.success() || err.contains("image not known"),
                "{ctx}: image rm {tag}: {}",
                describe(&out)
            );
            self.must(&["image", "prune"], &ctx);
        }
        // Without -f: refused while any address of the network is allocated.
        for n in self.must(&["network", "ls", "-q"], &ctx).split_whitespace() {
            self.must(&["network", "rm", n], &ctx);
        }
        for (list, what) in [
            (&["ps", "-a", "-q"][..], "containers"),
            (&["vm", "ls", "-q"][..], "VMs"),
            (&["volume", "ls", "-q"][..], "volumes"),
            (&["network", "ls", "-q"][..], "networks"),
        ] {
            let left = self.must(list, &ctx);
            assert_eq!(left.trim(), "", "{ctx}: {what} left after their removal");
        }
        // The name can be used again.
        self.steps(self.scenario.reuse, &format!("{ctx}: using the name again"));
        // Nothing is left.
        if self.scenario.network {
            let mut left = Vec::new();
            let clean = poll(|| {
                left = network_leftovers(&self.names);
                left.is_empty()
            });
            assert!(clean, "{ctx}: the network left {left:?}");
        }
        self.assert_no_processes(&ctx);
        for id in container_ids(&traced.trace) {
            let dirs = cgroup_dirs(&id);
            assert!(dirs.is_empty(), "{ctx}: cgroups left: {dirs:?}");
        }
        let mounts = self.world.leaked_mounts();
        assert!(mounts.is_empty(), "{ctx}: mounts left: {mounts:?}");
        let files = state_files(self.world.root());
        if self.baseline.is_empty() {
            self.baseline = files;
        } else {
            let extra: Vec<&String> = files.difference(&self.baseline).collect();
            let missing: Vec<&String> = self.baseline.difference(&files).collect();
            assert!(
                extra.is_empty() && missing.is_empty(),
                "{ctx}: the state root differs from after an uninterrupted run: \
                 left {extra:?}, missing {missing:?}"
            );
        }
        self.steps(
            self.scenario.restore,
            &format!("{ctx}: restoring the fixtures"),
        );
    }

    /// A command printing a JSON array, which must work.
    fn json_list(&self, args: &[&str], ctx: &str) -> Vec<Value> {
        let text = self.must(args, ctx);
        serde_json::from_str::<Value>(text.trim())
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_else(|| panic!("{ctx}: {args:?} printed no JSON array:\n{text}"))
    }

    /// Runs a command that must succeed; its stdout.
    fn must(&self, args: &[&str], ctx: &str) -> String {
        let out = self.world.cmd(args);
        assert!(
            out.status.success(),
            "{ctx}: then `corral {}` failed: {}",
            args.join(" "),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// No process names the state root (monitors, DNS servers) or runs the marker command.
    fn assert_no_processes(&self, ctx: &str) {
        let root = path_str(self.world.root()).to_owned();
        let marker = format!("sleep {}", self.names.mark);
        let me = std::process::id();
        let mut left = Vec::new();
        let clean = poll(|| {
            left = fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| p != me && process_alive(p))
                .map(|p| (p, process_cmdline(p)))
                .filter(|(_, c)| c.contains(&root) || c == &marker)
                .filter(|(_, c)| !c.starts_with("strace"))
                .collect();
            left.is_empty()
        });
        assert!(clean, "{ctx}: processes left: {left:?}");
    }

    /// Runs the scenario: the uninterrupted run, then one killed run per sampled point.
    fn run(mut self) {
        self.steps(self.scenario.restore, "fixtures");
        self.steps(self.scenario.before, "before");
        let first = self.traced(&[]);
        assert!(
            first.cli_end == "exited with 0",
            "{}: the uninterrupted `corral {}` {}",
            self.scenario.label,
            self.args().join(" "),
            first.cli_end
        );
        let all = state_changing_calls(&first.trace);
        assert!(
            !all.is_empty(),
            "{}: no state-changing call found in the trace",
            self.scenario.label
        );
        self.check(&first, "uninterrupted");
        let points = sample(&all, points_wanted());
        eprintln!(
            "{}: {} state-changing calls, running {}",
            self.scenario.label,
            all.len(),
            points.len()
        );
        for p in points {
            self.steps(self.scenario.before, "before");
            let inject = format!("inject={}:signal=KILL:when={}", p.call, p.nth);
            let traced = self.traced(&["-e".to_owned(), inject.clone()]);
            let what = format!(
                "killed at {} #{} — reproduce with: strace -f -e {inject} corral {}",
                p.call,
                p.nth,
                self.args().join(" ")
            );
            self.check(&traced, &what);
        }
    }
}

impl Drop for Crash<'_> {
    fn drop(&mut self) {
        // A failed check leaves things behind: take them down (never panics).
        let w = &self.world;
        let list = |args: &[&str]| String::from_utf8(w.cmd(args).stdout).unwrap_or_default();
        for id in list(&["ps", "-a", "-q"]).split_whitespace() {
            let _ = w.cmd(&["rm", "-f", id]);
        }
        let _ = w.cmd(&["rm", "-f", &self.names.name]);
        for vm in list(&["vm", "ls", "-q"]).split_whitespace() {
            let _ = w.cmd(&["vm", "rm", "-f", vm]);
        }
        for n in list(&["network", "ls", "-q"]).split_whitespace() {
            let _ = w.cmd(&["network", "rm", "-f", n]);
        }
    }
}

/// What network `{NET}` (on `{SUBNET}`) left on the host: nft mentions of its subnet, a link
/// with its gateway's address, a socket on the gateway's port 53, a DNS process naming it.
fn network_leftovers(names: &Names) -> Vec<String> {
    let mut left = Vec::new();
    let gateway: Ipv4Addr = {
        let base: Ipv4Addr = names
            .subnet
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("the scenario's subnet");
        Ipv4Addr::from(u32::from(base) + 1)
    };
    // The network's own rules name its subnet, an endpoint's its address: with a /24, the
    // first three octets.
    let prefix = names
        .subnet
        .rsplit_once('.')
        .map_or("", |(p, _)| p)
        .to_owned()
        + ".";
    let nft = corral_nft_table();
    if let Some(l) = nft.lines().find(|l| l.contains(&prefix)) {
        left.push(format!("nft table ip corral: {}", l.trim()));
    }
    let addrs = host_output("ip", &["-o", "-4", "addr", "show"]);
    if let Some(l) = addrs.lines().find(|l| l.contains(&format!(" {gateway}/"))) {
        left.push(format!("a link holds the gateway's address: {l}"));
    }
    for proto in ["udp", "tcp"] {
        if bound_on(proto, gateway, 53) {
            left.push(format!("a {proto} socket on {gateway}:53"));
        }
    }
    for pid in dns_processes(&names.network) {
        left.push(format!("DNS process {pid}"));
    }
    left
}

/// A /24 of 10.123.0.0/16 that no network of the host has. That range is the crash tests'
/// own: the scenarios remove and make their network again and again, and the harness's pool
/// (`networks::TEST_POOL`) is shared with other tests, which could take it in between.
fn free_subnet(world: &Corral, name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id() % 200;
    for _ in 0..256 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let subnet = format!("10.123.{}.0/24", (start + n) % 256);
        if world
            .cmd(&["network", "create", "--subnet", &subnet, name])
            .status
            .success()
        {
            world.ok(&["network", "rm", name]);
            return subnet;
        }
    }
    panic!("no free /24 in 10.123.0.0/16");
}

fn poll(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `CORRAL_CRASH_POINTS`: a number, or `all` (`None`).
fn points_wanted() -> Option<usize> {
    match std::env::var("CORRAL_CRASH_POINTS") {
        Ok(v) if v == "all" => None,
        Ok(v) => Some(v.parse().expect("CORRAL_CRASH_POINTS: a number or `all`")),
        Err(_) => Some(DEFAULT_POINTS),
    }
}

/// `n` points evenly spaced in `all` (keeping its order), or all of them.
fn sample(all: &[Point], n: Option<usize>) -> Vec<Point> {
    match n {
        Some(n) if n < all.len() => {
            if n == 0 {
                return Vec::new();
            }
            let mut picked: Vec<Point> = Vec::new();
            for i in 0..n {
                let at = if n == 1 {
                    0
                } else {
                    i * (all.len() - 1) / (n - 1)
                };
                if !picked.contains(&all[at]) {
                    picked.push(all[at].clone());
                }
            }
            picked
        }
        _ => all.to_vec(),
    }
}

/// The state-changing calls of a trace (`strace -f -y` lines: `PID call(args) = ret`), as
/// points to inject at: each process's Nth call of each kind, in trace order, without
/// repeats (the injection applies to every process alike).
fn state_changing_calls(trace: &str) -> Vec<Point> {
    let mut counts: std::collections::HashMap<(String, String), usize> = Default::default();
    let mut out: Vec<Point> = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(paren) = rest.find('(') else {
            continue;
        };
        let call = &rest[..paren];
        if call.is_empty() || !call.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            // `<... resumed>`, `+++ exited`, `--- SIGCHLD`.
            continue;
        }
        let n = counts
            .entry((pid.to_owned(), call.to_owned()))
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let args = &rest[paren + 1..];
        let changes = match call {
            "execve" => false,
            "openat" => ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                .iter()
                .any(|f| args.contains(f)),
            // `write(3</path>, ...`: a file, not a pipe, socket or device.
            "write" => args
                .split_once('<')
                .is_some_and(|(_, p)| p.starts_with('/') && !p.starts_with("/dev/")),
            _ => true,
        };
        let point = Point {
            call: call.to_owned(),
            nth: *n,
        };
        if changes && !out.contains(&point) {
            out.push(point);
        }
    }
    out
}

/// Every container id (64 hex digits after `containers/` or `containers/.`) in a trace.
fn container_ids(trace: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (i, _) in trace.match_indices("containers/") {
        let rest = trace[i + "containers/".len()..].trim_start_matches('.');
        let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        if hex.len() == 64 {
            ids.insert(hex);
        }
    }
    ids
}

/// The files and directories under the state root, relative, without lock files (made on
/// first use and kept on purpose).
fn state_files(root: &Path) -> BTreeSet<String> {
    walk(root)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            n != "lock" && !n.ends_with(".lock")
        })
        .filter_map(|p: PathBuf| p.strip_prefix(root).ok().map(|r| r.display().to_string()))
        .collect()
}

fn crash_test(label: &str, scenario: &Scenario) {
    let mut tools = vec!["strace", "nft", "ip"];
    tools.extend_from_slice(scenario.tools);
    if skip_unless_tools(label, &tools) {
        return;
    }
    Crash::new(scenario).run();
}

/// Shows a container name is free: a container takes it.
const CONTAINER_REUSE: Steps = &[
    &["create", "--name", "{NAME}", "{IMAGE}", "true"],
    &["rm", "{NAME}"],
];

/// The scenario's network, made again after each clean-up.
const NETWORK_FIXTURE: Steps = &[&["network", "create", "--subnet", "{SUBNET}", "{NET}"]];

/// Shows a network name and subnet are free: a network takes them.
const NETWORK_REUSE: Steps = &[
    &["network", "create", "--subnet", "{SUBNET}", "{NET}"],
    &["network", "rm", "{NET}"],
];

#[test]
fn run_detached_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "run_detached_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "run -d --name",
            args: &[
                "run", "-d", "--name", "{NAME}", "{IMAGE}", "sleep", "{MARK}",
            ],
            setup: &[],
            before: &[],
            restore: &[],
            reuse: CONTAINER_REUSE,
            network: false,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn create_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "create_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "create --name",
            args: &["create", "--name", "{NAME}", "{IMAGE}", "sleep", "{MARK}"],
            setup: &[],
            before: &[],
            restore: &[],
            reuse: CONTAINER_REUSE,
            network: false,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn run_rm_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "run_rm_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "run --rm",
            args: &["run", "--rm", "--name", "{NAME}", "{IMAGE}", "true"],
            setup: &[],
            before: &[],
            restore: &[],
            reuse: CONTAINER_REUSE,
            network: false,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn run_with_volume_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "run_with_volume_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "run --rm -v",
            args: &[
                "run",
                "--rm",
                "--name",
                "{NAME}",
                "-v",
                "{VOL}:/data",
                "{IMAGE}",
                "true",
            ],
            setup: &[],
            before: &[],
            restore: &[],
            reuse: CONTAINER_REUSE,
            network: false,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn run_on_network_killed_anywhere_frees_its_addresses() {
    crash_test(
        "run_on_network_killed_anywhere_frees_its_addresses",
        &Scenario {
            label: "run --network",
            args: &[
                "run",
                "-d",
                "--name",
                "{NAME}",
                "--network",
                "{NET}",
                "{IMAGE}",
                "sleep",
                "{MARK}",
            ],
            setup: &[],
            before: &[],
            restore: NETWORK_FIXTURE,
            reuse: CONTAINER_REUSE,
            network: true,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn run_publishing_a_port_killed_anywhere_frees_address_and_port() {
    crash_test(
        "run_publishing_a_port_killed_anywhere_frees_address_and_port",
        &Scenario {
            label: "run --network -p",
            args: &[
                "run",
                "-d",
                "--name",
                "{NAME}",
                "--network",
                "{NET}",
                "-p",
                "{PORT}:80",
                "{IMAGE}",
                "sleep",
                "{MARK}",
            ],
            setup: &[],
            before: &[],
            restore: NETWORK_FIXTURE,
            reuse: &[
                &["network", "create", "--subnet", "{SUBNET}", "{NET}"],
                &[
                    "run",
                    "-d",
                    "--name",
                    "{NAME}",
                    "--network",
                    "{NET}",
                    "-p",
                    "{PORT}:80",
                    "{IMAGE}",
                    "sleep",
                    "{MARK}",
                ],
                &["rm", "-f", "{NAME}"],
                &["network", "rm", "{NET}"],
            ],
            network: true,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn rm_force_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "rm_force_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "rm -f",
            args: &["rm", "-f", "{NAME}"],
            setup: &[],
            before: &[&[
                "run",
                "-d",
                "--name",
                "{NAME}",
                "-v",
                "{VOL}:/data",
                "{IMAGE}",
                "sleep",
                "{MARK}",
            ]],
            restore: &[],
            reuse: CONTAINER_REUSE,
            network: false,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn volume_create_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "volume_create_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "volume create",
            args: &["volume", "create", "{VOL}"],
            setup: &[],
            before: &[],
            restore: &[],
            reuse: &[&["volume", "create", "{VOL}"], &["volume", "rm", "{VOL}"]],
            network: false,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn network_create_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "network_create_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "network create",
            args: &["network", "create", "--subnet", "{SUBNET}", "{NET}"],
            setup: &[],
            before: &[],
            restore: &[],
            reuse: NETWORK_REUSE,
            network: true,
            image: false,
            tools: &[],
        },
    );
}

#[test]
fn network_rm_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "network_rm_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "network rm",
            args: &["network", "rm", "{NET}"],
            setup: &[],
            // With its DNS server running, as a network that served a container.
            before: &[
                &["network", "create", "--subnet", "{SUBNET}", "{NET}"],
                &["run", "--rm", "--network", "{NET}", "{IMAGE}", "true"],
            ],
            restore: &[],
            reuse: NETWORK_REUSE,
            network: true,
            image: false,
            tools: &[],
        },
    );
}

/// Fills the VM caches (initramfs, image disk, upper disk template) once, so that the counted
/// run is like the killed ones.
const VM_WARM_UP: Steps = &[
    &[
        "vm", "create", "--name", "{NAME}", "--image", "{IMAGE}", "--", "true",
    ],
    &["vm", "rm", "{NAME}"],
];

/// Shows a VM name is free: a VM takes it.
const VM_REUSE: Steps = VM_WARM_UP;

#[test]
fn vm_create_killed_anywhere_leaves_old_or_new_state() {
    if skip_unless_guest_agent("vm_create_killed_anywhere_leaves_old_or_new_state") {
        return;
    }
    crash_test(
        "vm_create_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "vm create",
            args: &[
                "vm", "create", "--name", "{NAME}", "--image", "{IMAGE}", "--", "true",
            ],
            setup: VM_WARM_UP,
            before: &[],
            restore: &[],
            reuse: VM_REUSE,
            network: false,
            image: false,
            tools: &["qemu-img", "mkfs.ext4"],
        },
    );
}

#[test]
fn vm_rm_killed_anywhere_leaves_old_or_new_state() {
    if skip_unless_guest_agent("vm_rm_killed_anywhere_leaves_old_or_new_state") {
        return;
    }
    crash_test(
        "vm_rm_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "vm rm -f",
            args: &["vm", "rm", "-f", "{NAME}"],
            setup: VM_WARM_UP,
            before: &[&[
                "vm", "create", "--name", "{NAME}", "--image", "{IMAGE}", "--", "true",
            ]],
            restore: &[],
            reuse: VM_REUSE,
            network: false,
            image: false,
            tools: &["qemu-img", "mkfs.ext4"],
        },
    );
}

/// True (after a loud SKIPPED line) when the guest agent VMs boot with is not built.
fn skip_unless_guest_agent(test: &str) -> bool {
    let bin = corral_bin();
    let dir = bin.parent().expect("the binary's directory");
    let found = std::env::var_os("CORRAL_GUEST_AGENT").is_some()
        || [
            dir.join("corral-guest"),
            dir.join("../x86_64-unknown-linux-gnu/release/corral-guest"),
            dir.join("../../x86_64-unknown-linux-gnu/release/corral-guest"),
        ]
        .iter()
        .any(|p| p.is_file());
    if !found {
        corral_e2e::report_skip(
            test,
            "the guest agent is not built (scripts/build-guest.sh)",
        );
    }
    !found
}

/// Shows an image name is free: an image takes it.
const IMAGE_REUSE: Steps = &[
    &["image", "import", "{ARCHIVE}", "{NAME}:1"],
    &["image", "rm", "{NAME}:1"],
];

#[test]
fn image_import_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "image_import_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "image import",
            args: &["image", "import", "{ARCHIVE}", "{NAME}:1"],
            setup: &[],
            before: &[],
            restore: &[],
            reuse: IMAGE_REUSE,
            network: false,
            image: true,
            tools: &[],
        },
    );
}

#[test]
fn image_rm_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "image_rm_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "image rm",
            args: &["image", "rm", "{NAME}:1"],
            setup: &[],
            before: &[&["image", "import", "{ARCHIVE}", "{NAME}:1"]],
            restore: &[],
            reuse: IMAGE_REUSE,
            network: false,
            image: true,
            tools: &[],
        },
    );
}
