//! podman-compose over podman, the peer that `corral compose` is set beside
//! (`tests/compose_peer.rs`, issue 17).
//!
//! The peer is podman-compose from PyPI (pinned in `scripts/requirements-test.txt`, installed
//! in the project's `.venv` by `scripts/setup.sh`) over Debian 12's podman 4.3.1. podman needs
//! the following to run on these machines (ARCHITECTURE.md, "Virtualization on these
//! machines": no systemd, hybrid cgroups, root without `CAP_SYS_RESOURCE`). [`PodmanCompose`]
//! writes them into a `containers.conf` and a `storage.conf` in a temp dir and passes both
//! (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`) to every podman and podman-compose it runs:
//! - runc rather than crun (crun refuses the hybrid layout), the cgroupfs manager, file events;
//! - ulimits within root's hard limits;
//! - netavark (for DNS by service name through aardvark-dns; Debian's CNI has no `dnsname`
//!   plugin), with its network definitions in the temp dir;
//! - an overlay store in the temp dir, never the host's.
//!
//! podman-compose runs in docker compose compatibility mode
//! (`PODMAN_COMPOSE_DOCKER_COMPOSE_COMPAT=1`): containers are named `PROJECT-SERVICE-N` and no
//! pod is made.
//!
//! netavark keeps host state outside the store: `/run/containers/networks`, a bridge
//! `podmanN` per network, and (through iptables-nft) the tables `ip nat` and `ip filter` (and
//! their `ip6` twins) with chains named `NETAVARK...`. `down -v` removes a project's own
//! rules, bridge and addresses, but not the shared chains, nor the tables that hold them. The
//! guard records the host's tables, chains, links, aardvark-dns processes and netavark's run
//! dir before (a [`HostNetSnapshot`]), and its `Drop` removes only what is new *and*
//! netavark's: chains whose names say `NETAVARK` (a table only when it did not exist before and
//! holds nothing else), bridges named `podmanN`/`cni-podmanN`, aardvark-dns processes, the
//! entries of netavark's run dir (its IPAM database, locks, aardvark-dns' config). It never
//! touches other tables (corral's are `ip corral...`), `crl*` links or `ifb*`.
//!
//! netavark's state is per host, so every [`PodmanCompose`] holds one process-wide lock for
//! its lifetime: the tests of one binary that use it run one at a time.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::checks::live_processes_with;
use crate::containers::signal;
use crate::process::{describe, run_bounded, wait_deadline};
use crate::{find_tool, path_str, report_skip};

/// Deadline of one podman or podman-compose command.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline of one command run by the guard.
const GUARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Where podman looks for its helper binaries (netavark, aardvark-dns), in its order.
const HELPER_DIRS: &[&str] = &[
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
];

/// netavark's run state (podman 4.3 puts it here for root, whatever its config says).
const NETAVARK_RUN_DIR: &str = "/run/containers/networks";

/// Serialises the users of netavark's host state within one test binary.
static NETAVARK: Mutex<()> = Mutex::new(());

/// The podman-compose the tests run: `$PODMAN_COMPOSE`, else the project's
/// `.venv/bin/podman-compose`.
pub fn podman_compose_bin() -> PathBuf {
    match std::env::var_os("PODMAN_COMPOSE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/podman-compose"),
    }
}

fn helper(name: &str) -> Option<PathBuf> {
    HELPER_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// What the host holds that netavark may add to: nft tables and chains, links, aardvark-dns
/// processes, netavark's run dir.
#[derive(Debug, Clone, Default)]
pub struct HostNetSnapshot {
    tables: BTreeSet<(String, String)>,
    chains: BTreeSet<(String, String, String)>,
    links: BTreeSet<String>,
    aardvark: BTreeSet<u32>,
    /// The entries of netavark's run dir, `None` when it did not exist.
    run_networks: Option<BTreeSet<std::ffi::OsString>>,
    run_containers: bool,
}

impl HostNetSnapshot {
    /// The host as it is now.
    pub fn take() -> Self {
        let items = nft_items();
        HostNetSnapshot {
            tables: items
                .iter()
                .filter_map(|i| i.get("table"))
                .map(|t| (s(t, "family"), s(t, "name")))
                .collect(),
            chains: items
                .iter()
                .filter_map(|i| i.get("chain"))
                .map(|c| (s(c, "family"), s(c, "table"), s(c, "name")))
                .collect(),
            links: host_links(),
            aardvark: aardvark_pids(),
            run_networks: run_dir_entries(),
            run_containers: Path::new("/run/containers").exists(),
        }
    }

    /// Links that are new since this snapshot.
    pub fn new_links(&self) -> Vec<String> {
        host_links()
            .into_iter()
            .filter(|l| !self.links.contains(l))
            .collect()
    }

    /// aardvark-dns processes that are new since this snapshot.
    pub fn new_aardvark(&self) -> Vec<u32> {
        aardvark_pids()
            .into_iter()
            .filter(|p| !self.aardvark.contains(p))
            .collect()
    }
}

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The items of `nft -j list ruleset` (tables, chains, rules ...); empty if nft fails.
fn nft_items() -> Vec<Value> {
    let out = quiet_cmd(Command::new("nft").args(["-j", "list", "ruleset"]));
    out.and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("nftables").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// `nft list ruleset` as text (empty if nft fails).
pub fn nft_ruleset_text() -> String {
    quiet_cmd(Command::new("nft").args(["list", "ruleset"])).unwrap_or_default()
}

/// The names of the host's links (`eth0`, not `veth0@if2`).
fn host_links() -> BTreeSet<String> {
    quiet_cmd(Command::new("ip").args(["-o", "link", "show"]))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

fn run_dir_entries() -> Option<BTreeSet<std::ffi::OsString>> {
    let entries = fs::read_dir(NETAVARK_RUN_DIR).ok()?;
    Some(entries.flatten().map(|e| e.file_name()).collect())
}

fn aardvark_pids() -> BTreeSet<u32> {
    live_processes_with(&["aardvark-dns"]).into_iter().collect()
}

/// A bridge that netavark or podman's CNI config makes: `podmanN`, `cni-podmanN`.
fn is_podman_bridge(name: &str) -> bool {
    let digits = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("podman").is_some_and(digits)
        || name.strip_prefix("cni-podman").is_some_and(digits)
}

/// Runs a command for a guard or a snapshot: never panics; stdout when it exits 0 in time.
fn quiet_cmd(cmd: &mut Command) -> Option<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let status = wait_deadline(&mut child, GUARD_TIMEOUT)?;
    let text = reader.join().ok()?;
    status.success().then_some(text)
}

/// Removes what netavark added to the host since `before` (see the module's doc); returns
/// what it removed, for the log.
pub fn remove_netavark_leftovers(before: &HostNetSnapshot) -> Vec<String> {
    let mut removed = Vec::new();
    for pid in before.new_aardvark() {
        if signal(pid, "KILL") {
            removed.push(format!("aardvark-dns process {pid}"));
        }
    }
    let items = nft_items();
    let tables: BTreeSet<(String, String)> = items
        .iter()
        .filter_map(|i| i.get("table"))
        .map(|t| (s(t, "family"), s(t, "name")))
        .collect();
    for (family, table) in tables {
        let in_table = |v: &Value| s(v, "family") == family && s(v, "table") == table;
        let chains: Vec<String> = items
            .iter()
            .filter_map(|i| i.get("chain"))
            .filter(|c| in_table(c))
            .map(|c| s(c, "name"))
            .collect();
        let new_netavark: Vec<&String> = chains
            .iter()
            .filter(|c| c.contains("NETAVARK"))
            .filter(|c| {
                !before
                    .chains
                    .contains(&(family.clone(), table.clone(), (*c).clone()))
            })
            .collect();
        if new_netavark.is_empty() {
            continue;
        }
        // Rules of other chains that jump to one of the new netavark chains.
        let rules: Vec<(String, u64, bool)> = items
            .iter()
            .filter_map(|i| i.get("rule"))
            .filter(|r| in_table(r))
            .map(|r| {
                let text = r.get("expr").map(Value::to_string).unwrap_or_default();
                let mentions = new_netavark
                    .iter()
                    .any(|c| text.contains(&format!("\"{c}\"")));
                (
                    s(r, "chain"),
                    r.get("handle").and_then(Value::as_u64).unwrap_or(0),
                    mentions,
                )
            })
            .collect();
        let only_netavark = chains.iter().all(|c| {
            c.contains("NETAVARK")
                || rules
                    .iter()
                    .filter(|(rc, _, _)| rc == c)
                    .all(|(_, _, mentions)| *mentions)
        });
        let table_is_new = !before.tables.contains(&(family.clone(), table.clone()));
        if table_is_new && only_netavark {
            if nft(&["delete", "table", &family, &table]) {
                removed.push(format!("nft table {family} {table}"));
            }
            continue;
        }
        for (chain, handle, mentions) in &rules {
            if *mentions && !chain.contains("NETAVARK") {
                let h = handle.to_string();
                nft(&["delete", "rule", &family, &table, chain, "handle", &h]);
            }
        }
        for c in &new_netavark {
            nft(&["flush", "chain", &family, &table, c]);
        }
        for c in &new_netavark {
            if nft(&["delete", "chain", &family, &table, c]) {
                removed.push(format!("nft chain {family} {table} {c}"));
            }
        }
    }
    for link in before.new_links() {
        if is_podman_bridge(&link)
            && quiet_cmd(Command::new("ip").args(["link", "delete", &link])).is_some()
        {
            removed.push(format!("link {link}"));
        }
    }
    match (&before.run_networks, run_dir_entries()) {
        (None, Some(_)) => {
            if fs::remove_dir_all(NETAVARK_RUN_DIR).is_ok() {
                removed.push(NETAVARK_RUN_DIR.to_owned());
            }
            if !before.run_containers {
                // Only if empty: something else may have put files there since.
                let _ = fs::remove_dir("/run/containers");
            }
        }
        (Some(had), Some(now)) => {
            for name in now.difference(had) {
                let path = Path::new(NETAVARK_RUN_DIR).join(name);
                let gone = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                if gone.is_ok() {
                    removed.push(path.display().to_string());
                }
            }
        }
        _ => {}
    }
    removed
}

fn nft(args: &[&str]) -> bool {
    quiet_cmd(Command::new("nft").args(args)).is_some()
}

/// podman-compose and podman with a private store and network config in a temp dir (see the
/// module's doc). `Drop` removes every container, pod, volume, network and image of the store,
/// unmounts what is left under the temp dir, removes it, and then removes what netavark left
/// on the host since [`PodmanCompose::new`].
pub struct PodmanCompose {
    dir: Option<tempfile::TempDir>,
    compose_bin: PathBuf,
    before: HostNetSnapshot,
    // Declared last: released after `Drop::drop` has cleaned up.
    _lock: MutexGuard<'static, ()>,
}

impl PodmanCompose {
    /// A fresh store, or `None` after a loud `SKIPPED` line for `test` when podman, runc,
    /// netavark, aardvark-dns or podman-compose is missing. Waits for any other user of
    /// netavark in this test binary to finish.
    pub fn new(test: &str) -> Option<Self> {
        // netavark 1.4 writes its rules with iptables (through iptables-nft here).
        for tool in ["podman", "runc", "conmon", "nft", "iptables"] {
            if find_tool(tool).is_none() {
                report_skip(
                    test,
                    &format!("{tool} not installed (podman-compose side): run scripts/setup.sh"),
                );
                return None;
            }
        }
        for tool in ["netavark", "aardvark-dns"] {
            if helper(tool).is_none() {
                report_skip(
                    test,
                    &format!("{tool} not installed (podman's DNS by name): run scripts/setup.sh"),
                );
                return None;
            }
        }
        let compose_bin = podman_compose_bin();
        if !compose_bin.is_file() {
            report_skip(
                test,
                &format!(
                    "{} missing: run scripts/setup.sh (it installs scripts/requirements-test.txt)",
                    compose_bin.display()
                ),
            );
            return None;
        }
        let lock = NETAVARK.lock().unwrap_or_else(|e| e.into_inner());
        let before = HostNetSnapshot::take();
        let dir = crate::test_tempdir("podman-compose");
        let base = dir.path();
        for sub in ["store/tmp", "net"] {
            fs::create_dir_all(base.join(sub)).expect("podman-compose dirs");
        }
        let containers_conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             tmp_dir = \"{}\"\n\
             [network]\n\
             network_backend = \"netavark\"\n\
             network_config_dir = \"{}\"\n",
            path_str(&base.join("store/tmp")),
            path_str(&base.join("net")),
        );
        let storage_conf = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            path_str(&base.join("store/root")),
            path_str(&base.join("store/run")),
        );
        fs::write(base.join("containers.conf"), containers_conf).expect("containers.conf");
        fs::write(base.join("storage.conf"), storage_conf).expect("storage.conf");
        Some(PodmanCompose {
            dir: Some(dir),
            compose_bin,
            before,
            _lock: lock,
        })
    }

    fn base(&self) -> &Path {
        self.dir.as_ref().expect("podman-compose dir").path()
    }

    /// The temp dir that holds the store.
    pub fn store_dir(&self) -> &Path {
        self.base()
    }

    fn configure(&self, cmd: &mut Command) {
        cmd.env("CONTAINERS_CONF", self.base().join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.base().join("storage.conf"))
            .env("PODMAN_COMPOSE_DOCKER_COMPOSE_COMPAT", "1");
    }

    /// A `Command` for `podman args...` on this store; it runs in the temp dir (conmon writes
    /// files into its working directory).
    pub fn podman_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(args).current_dir(self.base());
        self.configure(&mut cmd);
        cmd
    }

    /// Runs podman (bounded).
    pub fn podman(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.podman_command(args), None, PODMAN_TIMEOUT)
    }

    /// Runs podman, panics with its output unless it succeeds, returns stdout.
    pub fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(out.status.success(), "podman {args:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `Command` for `podman-compose args...` on this store, run in `project_dir`.
    pub fn compose_command(&self, project_dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose_bin);
        cmd.args(args).current_dir(project_dir);
        self.configure(&mut cmd);
        cmd
    }

    /// Imports a rootfs tarball as `image`, with the `CMD` and `PATH` that docker's and
    /// corral's imports of the same tarball have.
    pub fn import(&self, tar: &Path, image: &str) {
        self.podman_ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            path_str(tar),
            image,
        ]);
    }

    /// What is left of the store's projects: containers, pods, volumes, networks (but podman's
    /// built-in `podman`), mounts under the temp dir, conmon processes of the store, and on the
    /// host new aardvark-dns processes, new `podmanN` bridges and nft rules that name one of
    /// `subnets`. Empty when nothing is left.
    pub fn leftovers(&self, subnets: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        let lines = |args: &[&str]| -> Vec<String> {
            String::from_utf8_lossy(&self.podman(args).stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for c in lines(&["ps", "-a", "--format", "{{.Names}}"]) {
            left.push(format!("container {c}"));
        }
        for p in lines(&["pod", "ls", "-q"]) {
            left.push(format!("pod {p}"));
        }
        for v in lines(&["volume", "ls", "-q"]) {
            left.push(format!("volume {v}"));
        }
        for n in lines(&["network", "ls", "--format", "{{.Name}}"]) {
            if n != "podman" {
                left.push(format!("network {n}"));
            }
        }
        for m in crate::mounts::leak_check(self.base()) {
            left.push(format!("mount {}", m.display()));
        }
        for pid in live_processes_with(&["conmon", path_str(self.base())]) {
            left.push(format!("conmon process {pid}"));
        }
        for pid in self.before.new_aardvark() {
            left.push(format!("aardvark-dns process {pid}"));
        }
        for l in self.before.new_links() {
            if is_podman_bridge(&l) {
                left.push(format!("link {l}"));
            }
        }
        let rules = nft_ruleset_text();
        for subnet in subnets {
            if rules.contains(subnet.as_str()) {
                left.push(format!("nft rules naming {subnet}"));
            }
        }
        left
    }

    fn quiet(&self, args: &[&str]) -> Option<String> {
        quiet_cmd(&mut self.podman_command(args))
    }
}

impl Drop for PodmanCompose {
    fn drop(&mut self) {
        self.quiet(&["rm", "-a", "-f", "-t", "0"]);
        self.quiet(&["pod", "rm", "-a", "-f"]);
        self.quiet(&["volume", "rm", "-a", "-f"]);
        if let Some(names) = self.quiet(&["network", "ls", "--format", "{{.Name}}"]) {
            for n in names.split_whitespace().filter(|n| *n != "podman") {
                self.quiet(&["network", "rm", "-f", n]);
            }
        }
        self.quiet(&["rmi", "-a", "-f"]);
        for pid in live_processes_with(&["conmon", path_str(self.base())]) {
            eprintln!("warning: conmon {pid} of the podman-compose store outlived it; killing it");
            let _ = signal(pid, "KILL");
        }
        if let Some(dir) = self.dir.take() {
            for e in crate::mounts::unmount_all_under(dir.path()) {
                eprintln!("warning: {e}");
            }
            if let Err(e) = dir.close() {
                eprintln!("warning: removing the podman-compose store: {e}");
            }
        }
        let removed = remove_netavark_leftovers(&self.before);
        if !removed.is_empty() {
            eprintln!("podman-compose guard removed what netavark left: {removed:?}");
        }
    }
}
