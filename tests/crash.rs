//! Crash safety (issue 13): a `kill -9` at any state-changing system call of a command leaves
//! the old state or the new one, and the next commands reconcile what they find
//! (ARCHITECTURE.md, "State").
//!
//! Each scenario first runs its command once under `strace -f` to list the state-changing
//! calls it makes — `rename*`, `unlink*`, `mkdir*`, `rmdir`, `symlink*`, `link*`, an `openat`
//! that creates or opens for writing, a `write` to a file — in every process it starts: the
//! CLI, the container's monitor and init, `nft`, the network's DNS server. Then, once per
//! sampled call, it runs the command again under `strace -f -e inject=CALL:signal=KILL:when=N`:
//! strace counts per system call and per process, so the process that makes its Nth CALL is
//! killed right there (another process that reaches its own Nth CALL dies too: a crash of
//! several, just as valid). strace is detached as soon as the CLI has exited, so a container's
//! own process runs on untraced.
//!
//! After each kill it checks what a user would:
//! - `ps -a --json`, `volume ls`, `network inspect` work, and no container is listed as
//!   running without a live process;
//! - the normal commands clean up: `rm -f NAME` (or "no such container" when the kill came
//!   before the container existed), `rm -f` of whatever `ps -a` lists, `volume rm` of whatever
//!   `volume ls` lists, and `network rm NET` without `-f` — which corral refuses while any
//!   address of the network is allocated, so it passing means every address is free;
//! - the name can be used again (`create --name NAME`, then `rm`);
//! - nothing is left: no file under the state root but the lock files that the first,
//!   uninterrupted run left too, no mount under it, no cgroup of any container id the command
//!   wrote, no process naming the state root or running the scenario's marker command, no
//!   link, nft rule, port-53 socket or DNS process of the network.
//!
//! The uninterrupted run goes through the same checks, so they are known to pass without a
//! crash.
//!
//! Sampling: a scenario makes from a few dozen to a few hundred such calls (most in the
//! container's init). By default each runs [`DEFAULT_POINTS`] of them, evenly spaced in the
//! order the first run made them, so that every phase (name, directory, start, network, exit)
//! is hit and the whole file takes a few minutes. `CORRAL_CRASH_POINTS=N` runs N per scenario,
//! `CORRAL_CRASH_POINTS=all` every one (the full sweep: tens of minutes). A failure names the
//! call and gives the strace command that reproduces it.
//!
//! Not covered here: a kill in `rm -f` of a container on a corral network between the
//! container's removal and the release of its addresses. That window closes only once the
//! command layer calls `corral_net::Networks::reconcile` (see its doc); the `rm -f` scenario
//! uses a container without a network.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use corral_e2e::containers::{cgroup_dirs, process_alive, process_cmdline, signal};
use corral_e2e::files::walk;
use corral_e2e::networks::{network_leftovers, TestNetwork};
use corral_e2e::process::{describe, wait_deadline};
use corral_e2e::{corral_bin, path_str, skip_unless_tools, unique_token, Corral};

/// Points per scenario unless `CORRAL_CRASH_POINTS` says otherwise.
const DEFAULT_POINTS: usize = 16;

/// The system calls that change state, traced in the first run (`execve` to find the CLI).
const TRACED: &str = "execve,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,\
                      symlink,symlinkat,link,linkat,openat,write";

/// How long one traced command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// How long killed processes, cgroups and links get to go away.
const SETTLE: Duration = Duration::from_secs(10);

/// Makes each world's marker command distinct.
static MARKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// One command under test, in its own world.
struct Scenario {
    /// For messages.
    label: &'static str,
    /// The command, with `{NAME}`, `{VOL}`, `{NET}`, `{IMAGE}` and `{MARK}` to fill in.
    args: &'static [&'static str],
    /// Run (untraced) before each attempt: what the command acts on.
    before: &'static [&'static [&'static str]],
    /// Whether it uses a network `{NET}`.
    network: bool,
}

/// What the scenario's placeholders stand for in one world.
struct Names {
    name: String,
    volume: String,
    network: String,
    image: String,
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
                    .replace("{IMAGE}", &self.image)
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

/// A world with the busybox image, the scenario's network, and the scenario itself.
struct Crash<'a> {
    world: Corral,
    scenario: &'a Scenario,
    names: Names,
    /// The network's subnet, to create it again after each `network rm`.
    subnet: Option<String>,
    net: Option<TestNetwork>,
    /// The state root's files after the uninterrupted run's clean-up.
    baseline: BTreeSet<String>,
}

impl<'a> Crash<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let mut world = Corral::new();
        world.timeout = Duration::from_secs(60);
        let image = world.busybox_image().to_owned();
        let token = unique_token();
        let short = &token[token.len().saturating_sub(6)..];
        let names = Names {
            name: format!("crash-{short}"),
            volume: format!("crashvol-{short}"),
            network: format!("crashnet-{short}"),
            image,
            // An unusual duration, so that the world's container processes can be told apart
            // from every other `sleep` on the host (and from the other scenarios').
            mark: format!(
                "86{:03}{:02}",
                std::process::id() % 1000,
                MARKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100
            ),
        };
        let mut crash = Crash {
            world,
            scenario,
            names,
            subnet: None,
            net: None,
            baseline: BTreeSet::new(),
        };
        if scenario.network {
            let net = crash
                .world
                .create_test_network(&crash.names.network, 24, &[]);
            crash.subnet = Some(net.subnet.clone());
            crash.net = Some(net);
        }
        crash
    }

    fn args(&self) -> Vec<String> {
        self.names.fill(self.scenario.args)
    }

    /// Runs the scenario's preparation (untraced); it must succeed.
    fn before(&self) {
        for step in self.scenario.before {
            let args = self.names.fill(step);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.world.ok(&refs);
        }
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
        // Detach from what still runs (a monitor, a container): strace leaves on SIGTERM.
        if let Ok(None) = strace.try_wait() {
            signal(spid, "TERM");
        }
        if wait_deadline(&mut strace, Duration::from_secs(20)).is_none() {
            let _ = strace.kill();
            let _ = strace.wait();
            panic!("strace did not detach");
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
    /// the network again for the next attempt. `what` says which attempt, for messages.
    fn check(&mut self, traced: &Traced, what: &str) {
        let ctx = format!(
            "{} ({what}; the CLI {}): `corral {}`",
            self.scenario.label,
            traced.cli_end,
            self.args().join(" ")
        );
        let w = &self.world;
        // Listings work; nothing is running without a process.
        for row in self.ps(&ctx) {
            if row["status"] == "running" {
                let pid = row["pid"].as_u64().unwrap_or(0) as u32;
                assert!(
                    pid > 0 && process_alive(pid),
                    "{ctx}: listed as running without a live process: {row}"
                );
            }
        }
        self.must(&["volume", "ls"], &ctx);
        if self.scenario.network {
            self.must(&["network", "inspect", &self.names.network], &ctx);
        }
        // The normal commands clean up.
        let out = w.cmd(&["rm", "-f", &self.names.name]);
        assert!(
            out.status.success()
                || String::from_utf8_lossy(&out.stderr).contains("no such container"),
            "{ctx}: rm -f {}: {}",
            self.names.name,
            describe(&out)
        );
        for row in self.ps(&ctx) {
            let id = row["id"].as_str().unwrap_or_default().to_owned();
            self.must(&["rm", "-f", &id], &ctx);
        }
        assert!(
            self.ps(&ctx).is_empty(),
            "{ctx}: containers left after rm -f"
        );
        for v in self.must(&["volume", "ls", "-q"], &ctx).split_whitespace() {
            self.must(&["volume", "rm", v], &ctx);
        }
        assert_eq!(
            self.must(&["volume", "ls", "-q"], &ctx).trim(),
            "",
            "{ctx}: volumes left after volume rm"
        );
        // The name can be used again.
        let name = self.names.name.clone();
        let image = self.names.image.clone();
        self.must(&["create", "--name", &name, &image, "true"], &ctx);
        self.must(&["rm", &name], &ctx);
        // Every address is free: network rm (without -f) refuses otherwise.
        if let Some(net) = &self.net {
            self.must(&["network", "rm", &net.name], &ctx);
            let mut left = Vec::new();
            let clean = poll(|| {
                left = network_leftovers(net);
                left.is_empty()
            });
            assert!(clean, "{ctx}: the network left {left:?}");
        }
        // Nothing is left.
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
        // The network again, for the next attempt.
        if let (Some(net), Some(subnet)) = (&self.net, &self.subnet) {
            self.must(&["network", "create", "--subnet", subnet, &net.name], &ctx);
        }
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

    /// `ps -a --json`, which must work.
    fn ps(&self, ctx: &str) -> Vec<Value> {
        let text = self.must(&["ps", "-a", "--json"], ctx);
        serde_json::from_str::<Value>(text.trim())
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_else(|| panic!("{ctx}: ps -a --json printed no JSON array:\n{text}"))
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
        self.before();
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
            self.before();
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
        if let Ok(text) = String::from_utf8(w.cmd(&["ps", "-a", "-q"]).stdout) {
            for id in text.split_whitespace() {
                let _ = w.cmd(&["rm", "-f", id]);
            }
        }
        let _ = w.cmd(&["rm", "-f", &self.names.name]);
        if let Some(net) = &self.net {
            let _ = w.cmd(&["network", "rm", "-f", &net.name]);
        }
    }
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
    if skip_unless_tools(label, &["strace", "nft"]) {
        return;
    }
    Crash::new(scenario).run();
}

#[test]
fn run_detached_killed_anywhere_leaves_old_or_new_state() {
    crash_test(
        "run_detached_killed_anywhere_leaves_old_or_new_state",
        &Scenario {
            label: "run -d --name",
            args: &[
                "run", "-d", "--name", "{NAME}", "{IMAGE}", "sleep", "{MARK}",
            ],
            before: &[],
            network: false,
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
            before: &[],
            network: false,
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
            before: &[],
            network: false,
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
            before: &[],
            network: false,
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
            before: &[],
            network: true,
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
            network: false,
        },
    );
}
