//! `corral compose` beside podman-compose (issue 17): the same compose files run under both,
//! and what a user sees compared — container, network and volume names, the compose labels,
//! the environment inside a container (from `.env`, `environment:`, `env_file` and
//! `extends`), DNS names and aliases resolving from another service, a published port
//! answering from the host, a second `up` with no change keeping the containers, a named
//! volume surviving `down` and going with `down -v`, and nothing of the project left after
//! `down -v` on either side; and `config`'s model for the corpus in `tests/compose-corpus/`
//! (interpolation, `-f a -f b` merging, `extends`, long syntax, `env_file`, anchors, networks),
//! normalised to what both print.
//!
//! Where the two differ by design, the difference is stated and asserted (the names of the
//! default network, the `config_files` label, variables podman adds to the environment, and the
//! parts of the model that podman-compose's `config` prints unresolved), never skipped. The
//! peer's setup on these machines is `corral_e2e::podman_compose`'s; a test skips loudly when
//! podman, runc, netavark, aardvark-dns or `.venv/bin/podman-compose` is missing.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use corral_e2e::networks::{assert_network_gone, http_get_ok, TestNetwork};
use corral_e2e::podman_compose::{nft_ruleset_text, PodmanCompose};
use corral_e2e::process::{describe, run_bounded};
use corral_e2e::{fixtures, path_str, skip_unless_root, test_tempdir, unique_name, Corral};

/// The image, under the same name on both sides so that the files are the same.
const IMAGE: &str = "localhost/peer-bb:1";

/// Deadline of one compose command.
const COMPOSE_TIMEOUT: Duration = Duration::from_secs(180);

/// Variables the files interpolate: removed from both tools' environment, so that only what a
/// test sets (and `.env`) counts.
const SCRUBBED: &[&str] = &[
    "COMPOSE_FILE",
    "COMPOSE_PROJECT_NAME",
    "COMPOSE_PROFILES",
    "DOTENV_VALUE",
    "EMPTY",
    "FROM_DOTENV",
    "GREETING",
    "HOST_PORT",
    "IMAGE_REPO",
    "IMAGE_TAG",
    "PEER_CALLER",
    "PEER_FROM_CALLER",
    "UNSET_VAR",
    "WEB_PORT",
];

/// Both tools, the image imported into each, and the projects run under corral brought down
/// (then removed by label) on drop; the podman side cleans up in its own guard.
struct Peers {
    podman: PodmanCompose,
    corral: Corral,
    corral_projects: RefCell<Vec<(PathBuf, String)>>,
}

impl Peers {
    /// Both sides, or `None` after a loud `SKIPPED` line.
    fn new(test: &str, with_image: bool) -> Option<Self> {
        if skip_unless_root(test) {
            return None;
        }
        let podman = PodmanCompose::new(test)?;
        let corral = Corral::new();
        if with_image {
            let tar = corral.path("bb.tar");
            fixtures::busybox_rootfs_tar(&tar);
            corral.ok(&["image", "import", path_str(&tar), IMAGE]);
            podman.import(&tar, IMAGE);
        }
        Some(Peers {
            podman,
            corral,
            corral_projects: RefCell::new(Vec::new()),
        })
    }

    /// `corral compose -p PROJECT args...` in `dir` with `env`.
    fn corral(&self, dir: &Path, project: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        let key = (dir.to_path_buf(), project.to_owned());
        let mut projects = self.corral_projects.borrow_mut();
        if !projects.contains(&key) {
            projects.push(key);
        }
        drop(projects);
        let mut full = vec!["compose", "-p", project];
        full.extend_from_slice(args);
        let mut cmd = self.corral.command(&full);
        cmd.current_dir(dir);
        run_compose(&mut cmd, env)
    }

    /// `podman-compose -p PROJECT args...` in `dir` with `env`.
    fn podman(&self, dir: &Path, project: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut full = vec!["-p", project];
        full.extend_from_slice(args);
        run_compose(&mut self.podman.compose_command(dir, &full), env)
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for (dir, project) in self.corral_projects.take() {
            let mut cmd =
                self.corral
                    .command(&["compose", "-p", &project, "down", "-v", "--remove-orphans"]);
            cmd.current_dir(&dir);
            let _ = run_compose_quiet(&mut cmd);
            let label = format!("label=com.docker.compose.project={project}");
            let ids = self.corral.cmd(&["ps", "-aq", "--filter", &label]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.corral.cmd(&["rm", "-f", "-v", id]);
            }
            for what in ["network", "volume"] {
                let names = self.corral.cmd(&[what, "ls", "-q"]);
                for n in String::from_utf8_lossy(&names.stdout).split_whitespace() {
                    if n.starts_with(&format!("{project}_")) {
                        let _ = self.corral.cmd(&[what, "rm", n]);
                    }
                }
            }
        }
    }
}

fn scrub(cmd: &mut Command, env: &[(&str, &str)]) {
    for k in SCRUBBED {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

fn run_compose(cmd: &mut Command, env: &[(&str, &str)]) -> Output {
    scrub(cmd, env);
    run_bounded(cmd, None, COMPOSE_TIMEOUT)
}

/// For the guard: a compose command that may fail or hang without failing the test.
fn run_compose_quiet(cmd: &mut Command) -> Option<std::process::ExitStatus> {
    scrub(cmd, &[]);
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    corral_e2e::process::wait_deadline(&mut child, Duration::from_secs(60))
}

fn ok(side: &str, args: &[&str], out: Output) -> String {
    assert!(out.status.success(), "{side} {args:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn set_of(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `env` printed by a container, as a map.
fn env_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The addresses busybox `nslookup` printed for the name asked (the server's own line, which
/// carries `:53`, is not one).
fn resolved(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.strip_prefix("Address"))
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(_, a)| a.trim().parse().ok())
        .collect()
}

/// The IPv4 address of `eth0`, from `ip -4 -o addr show eth0` run inside a container.
fn eth0_address(text: &str) -> Ipv4Addr {
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no inet address in {text:?}"))
}

/// The body of an HTTP response.
fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or(response, |(_, b)| b)
}

/// The project of the runtime test: files identical for both tools; the published host port
/// comes from `WEB_PORT`, different per side.
const PROJECT_FILES: &[(&str, &str)] = &[
    (
        "compose.yaml",
        r#"x-common: &common
  image: localhost/peer-bb:1
  init: true
services:
  db:
    <<: *common
    command: ["sh", "-c", "mkdir -p /www && echo from-db > /www/index.html && exec httpd -f -p 80 -h /www"]
    networks:
      default:
        aliases: [database]
    volumes: ["data:/data"]
    ports: ["127.0.0.1:${WEB_PORT}:80"]
  web:
    extends:
      file: common.yaml
      service: app
    env_file: [common.env, app.env]
    environment:
      GREETING: ${GREETING:-hello}
      DOT: ${FROM_DOTENV}
      CALLER: ${PEER_CALLER-unset}
      TIER: web
      OVERRIDDEN: by-environment
      LITERAL: "$$HOME"
    depends_on: [db]
volumes:
  data: {}
"#,
    ),
    (
        "common.yaml",
        r#"services:
  app:
    image: localhost/peer-bb:1
    init: true
    command: ["sleep", "3600"]
    environment:
      FROM_BASE: "yes"
      TIER: base
"#,
    ),
    (".env", "FROM_DOTENV=dotenv-value\n"),
    (
        "common.env",
        "# shared\nSHARED=from-common\nLATER_WINS=from-common\nOVERRIDDEN=from-common\n",
    ),
    (
        "app.env",
        "LATER_WINS=from-app\nQUOTED=\"a quoted value\"\n",
    ),
];

/// Variables only one side puts into a container's environment.
const ENV_ONLY_CORRAL: &[&str] = &["HOSTNAME"];
const ENV_ONLY_PODMAN: &[&str] = &["TERM", "container"];

#[test]
fn a_project_looks_the_same_under_corral_and_podman_compose() {
    const TEST: &str = "a_project_looks_the_same_under_corral_and_podman_compose";
    let Some(peers) = Peers::new(TEST, true) else {
        return;
    };
    let dir = test_tempdir("compose-peer");
    let dir = dir.path().canonicalize().unwrap();
    for (name, text) in PROJECT_FILES {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let project = unique_name("peer").to_ascii_lowercase();
    let p = project.as_str();
    let corral_port = corral_e2e::networks::free_tcp_port();
    let podman_port = loop {
        let port = corral_e2e::networks::free_tcp_port();
        if port != corral_port {
            break port;
        }
    };
    let (cp, pp) = (corral_port.to_string(), podman_port.to_string());
    let corral_env = [("WEB_PORT", cp.as_str()), ("PEER_CALLER", "from-caller")];
    let podman_env = [("WEB_PORT", pp.as_str()), ("PEER_CALLER", "from-caller")];

    let up = ["up", "-d"];
    let out = peers.corral(&dir, p, &corral_env, &up);
    ok("corral compose", &up, out);
    let out = peers.podman(&dir, p, &podman_env, &up);
    ok("podman-compose", &up, out);
    let c = &peers.corral;
    let pc = &peers.podman;
    let corral_exec = |args: &[&str]| c.ok(&[&["exec"], args].concat());
    let podman_exec = |args: &[&str]| pc.podman_ok(&[&["exec"], args].concat());

    // Names: containers PROJECT-SERVICE-N and volumes PROJECT_KEY on both; the default
    // network is PROJECT_default under corral (docker compose's name) and PROJECT-default
    // under podman-compose in its docker compose compatibility mode.
    let label = format!("label=com.docker.compose.project={p}");
    let names = ["ps", "-a", "--filter", &label, "--format", "{{.Names}}"];
    let corral_containers = set_of(&c.ok(&names));
    let podman_containers = set_of(&pc.podman_ok(&names));
    let want: BTreeSet<String> = [format!("{p}-db-1"), format!("{p}-web-1")].into();
    assert_eq!(corral_containers, want, "corral's containers");
    assert_eq!(podman_containers, want, "podman-compose's containers");
    let ours = |text: String| -> BTreeSet<String> {
        set_of(&text)
            .into_iter()
            .filter(|n| n.starts_with(p))
            .collect()
    };
    let corral_networks = ours(c.ok(&["network", "ls", "-q"]));
    let podman_networks = ours(pc.podman_ok(&["network", "ls", "--format", "{{.Name}}"]));
    assert_eq!(corral_networks, [format!("{p}_default")].into());
    assert_eq!(
        podman_networks,
        [format!("{p}-default")].into(),
        "expected difference: podman-compose names the default network PROJECT-default"
    );
    let corral_volumes = ours(c.ok(&["volume", "ls", "-q"]));
    let podman_volumes = ours(pc.podman_ok(&["volume", "ls", "-q"]));
    let want_volumes: BTreeSet<String> = [format!("{p}_data")].into();
    assert_eq!(corral_volumes, want_volumes, "corral's volumes");
    assert_eq!(podman_volumes, want_volumes, "podman-compose's volumes");

    // The compose labels on the containers: the same, but for `config_files`, absolute under
    // corral (as docker compose writes it), as given under podman-compose.
    let web = format!("{p}-web-1");
    let labels = |text: String| -> Value {
        let v: Value = serde_json::from_str(&text).expect("inspect JSON");
        v[0]["Config"]["Labels"].clone()
    };
    let corral_labels = labels(c.ok(&["inspect", &web]));
    let podman_labels = labels(pc.podman_ok(&["inspect", &web]));
    for key in [
        "com.docker.compose.project",
        "com.docker.compose.service",
        "com.docker.compose.container-number",
        "com.docker.compose.project.working_dir",
    ] {
        assert_eq!(
            corral_labels[key], podman_labels[key],
            "label {key}: corral {corral_labels}, podman-compose {podman_labels}"
        );
    }
    assert_eq!(corral_labels["com.docker.compose.project"], p);
    assert_eq!(
        corral_labels["com.docker.compose.project.working_dir"],
        path_str(&dir)
    );
    let config_files = "com.docker.compose.project.config_files";
    assert_eq!(
        corral_labels[config_files],
        path_str(&dir.join("compose.yaml"))
    );
    assert_eq!(
        podman_labels[config_files], "compose.yaml",
        "expected difference: podman-compose's config_files label is the path as given"
    );

    // The environment inside: interpolated from .env, the caller and defaults, `$$` kept as
    // one `$`, env_file (the last file wins) under environment (which wins), extends' values
    // under the service's own; plus what each runtime adds.
    let corral_env_in = env_map(&corral_exec(&[&web, "env"]));
    let podman_env_in = env_map(&podman_exec(&[&web, "env"]));
    let want_env: BTreeMap<String, String> = [
        ("GREETING", "hello"),
        ("DOT", "dotenv-value"),
        ("CALLER", "from-caller"),
        ("TIER", "web"),
        ("OVERRIDDEN", "by-environment"),
        ("LITERAL", "$HOME"),
        ("FROM_BASE", "yes"),
        ("SHARED", "from-common"),
        ("LATER_WINS", "from-app"),
        ("QUOTED", "a quoted value"),
        ("HOME", "/root"),
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let without = |env: &BTreeMap<String, String>, extra: &[&str]| -> BTreeMap<String, String> {
        env.iter()
            .filter(|(k, _)| !extra.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        without(&corral_env_in, ENV_ONLY_CORRAL),
        want_env,
        "corral's environment inside {web}"
    );
    assert_eq!(
        without(&podman_env_in, ENV_ONLY_PODMAN),
        want_env,
        "podman-compose's environment inside {web}"
    );
    for k in ENV_ONLY_CORRAL {
        assert!(corral_env_in.contains_key(*k), "corral sets {k}");
    }
    for k in ENV_ONLY_PODMAN {
        assert!(podman_env_in.contains_key(*k), "podman sets {k}");
    }

    // DNS: web resolves db by its service name and by its alias, to db's address, and
    // fetches db's page by the alias.
    let db = format!("{p}-db-1");
    let eth0 = ["ip", "-4", "-o", "addr", "show", "eth0"];
    let corral_db_ip = eth0_address(&corral_exec(&[&[db.as_str()][..], &eth0].concat()));
    let podman_db_ip = eth0_address(&podman_exec(&[&[db.as_str()][..], &eth0].concat()));
    for name in ["db", "database"] {
        let got = resolved(&corral_exec(&[&web, "nslookup", name]));
        assert_eq!(got, vec![corral_db_ip], "corral: nslookup {name}");
        let got = resolved(&podman_exec(&[&web, "nslookup", name]));
        assert_eq!(got, vec![podman_db_ip], "podman-compose: nslookup {name}");
    }
    let fetch = [web.as_str(), "wget", "-qO-", "http://database/"];
    assert_eq!(corral_exec(&fetch), "from-db\n", "corral: wget database");
    assert_eq!(
        podman_exec(&fetch),
        "from-db\n",
        "podman-compose: wget database"
    );

    // The published port answers from the host with the same body.
    let get = |port: u16| {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        http_get_ok(addr, "/", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}: {e}"))
    };
    let corral_page = get(corral_port);
    let podman_page = get(podman_port);
    assert_eq!(body(&corral_page), "from-db\n", "corral: {corral_page}");
    assert_eq!(
        body(&podman_page),
        body(&corral_page),
        "podman: {podman_page}"
    );

    // A second `up -d` with nothing changed keeps every container on both sides.
    let ids = [
        "ps",
        "-a",
        "--filter",
        &label,
        "--format",
        "{{.ID}} {{.Names}}",
    ];
    let corral_ids = set_of(&c.ok(&ids));
    let podman_ids = set_of(&pc.podman_ok(&ids));
    let out = peers.corral(&dir, p, &corral_env, &up);
    ok("corral compose", &up, out);
    let out = peers.podman(&dir, p, &podman_env, &up);
    ok("podman-compose", &up, out);
    assert_eq!(set_of(&c.ok(&ids)), corral_ids, "corral: up with no change");
    assert_eq!(
        set_of(&pc.podman_ok(&ids)),
        podman_ids,
        "podman-compose: up with no change"
    );

    // What `down -v` must clean up, recorded while it exists.
    let corral_net = c.network_inspect(&format!("{p}_default"));
    let corral_net = TestNetwork {
        name: corral_net.name,
        subnet: corral_net.subnet,
        gateway: corral_net.gateway.expect("corral network gateway"),
        bridge: corral_net.bridge,
    };
    let podman_subnet = pc
        .podman_ok(&[
            "network",
            "inspect",
            &format!("{p}-default"),
            "--format",
            "{{range .Subnets}}{{.Subnet}}{{end}}",
        ])
        .trim()
        .to_owned();
    assert!(
        !podman_subnet.is_empty(),
        "podman network {p}-default has no subnet"
    );

    // A named volume keeps its files across `down` and `up`.
    let write = [db.as_str(), "sh", "-c", "echo kept > /data/f"];
    corral_exec(&write);
    podman_exec(&write);
    let down = ["down"];
    let out = peers.corral(&dir, p, &corral_env, &down);
    ok("corral compose", &down, out);
    let out = peers.podman(&dir, p, &podman_env, &down);
    ok("podman-compose", &down, out);
    assert_eq!(set_of(&c.ok(&names)), BTreeSet::new(), "corral: down");
    assert_eq!(
        set_of(&pc.podman_ok(&names)),
        BTreeSet::new(),
        "podman-compose: down"
    );
    assert_eq!(ours(c.ok(&["volume", "ls", "-q"])), want_volumes);
    assert_eq!(ours(pc.podman_ok(&["volume", "ls", "-q"])), want_volumes);
    let out = peers.corral(&dir, p, &corral_env, &up);
    ok("corral compose", &up, out);
    let out = peers.podman(&dir, p, &podman_env, &up);
    ok("podman-compose", &up, out);
    let read = [db.as_str(), "cat", "/data/f"];
    assert_eq!(c.ok(&[&["exec"], &read[..]].concat()), "kept\n", "corral");
    assert_eq!(
        pc.podman_ok(&[&["exec"], &read[..]].concat()),
        "kept\n",
        "podman-compose"
    );

    // `down -v`: nothing of the project is left on either side.
    let down_v = ["down", "-v"];
    let out = peers.corral(&dir, p, &corral_env, &down_v);
    ok("corral compose", &down_v, out);
    let out = peers.podman(&dir, p, &podman_env, &down_v);
    ok("podman-compose", &down_v, out);
    assert_eq!(set_of(&c.ok(&names)), BTreeSet::new(), "corral: containers");
    assert_eq!(ours(c.ok(&["network", "ls", "-q"])), BTreeSet::new());
    assert_eq!(ours(c.ok(&["volume", "ls", "-q"])), BTreeSet::new());
    c.assert_no_leaks();
    assert_network_gone(&corral_net);
    let left = pc.leftovers(std::slice::from_ref(&podman_subnet));
    assert!(
        left.is_empty(),
        "podman-compose down -v left: {left:?}\n{}",
        nft_ruleset_text()
    );
}

// ---------------------------------------------------------------------------------------------
// `config` over the corpus

/// One corpus entry: its directory under `tests/compose-corpus/`, the files given with `-f`
/// (none: the default file), and variables set for both tools.
struct Case {
    dir: &'static str,
    files: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const CORPUS: &[Case] = &[
    Case {
        dir: "interpolation",
        files: &[],
        env: &[("PEER_FROM_CALLER", "caller")],
    },
    Case {
        dir: "merge",
        files: &["a.yaml", "b.yaml"],
        env: &[],
    },
    Case {
        dir: "extends",
        files: &[],
        env: &[],
    },
    Case {
        dir: "long-syntax",
        files: &[],
        env: &[],
    },
    Case {
        dir: "env-file",
        files: &[],
        env: &[],
    },
    Case {
        dir: "anchors",
        files: &[],
        env: &[],
    },
    Case {
        dir: "networks",
        files: &[],
        env: &[],
    },
];

/// Where the two models differ by design: (corpus entry, or `*` for any; the field, as
/// `SERVICE.KEY` or a top-level key; why).
const CONFIG_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "*",
        "networks",
        "corral lists the implicit `default` network, as docker compose's `config` does; \
         podman-compose lists only the networks the file declares",
    ),
    (
        "extends",
        "api.image",
        "podman-compose's `config` prints `extends` unresolved (its `up` resolves it)",
    ),
    (
        "extends",
        "api.environment",
        "podman-compose's `config` prints `extends` unresolved",
    ),
    (
        "extends",
        "api.volumes",
        "podman-compose's `config` prints `extends` unresolved",
    ),
    (
        "extends",
        "job.image",
        "podman-compose's `config` prints `extends` unresolved",
    ),
    (
        "extends",
        "job.command",
        "podman-compose's `config` prints `extends` unresolved",
    ),
    (
        "env-file",
        "app.environment",
        "podman-compose's `config` prints `env_file` unresolved; corral folds the files into \
         `environment`, as docker compose's `config` does",
    ),
];

/// The part of a service's model that both tools print.
#[derive(Debug, Default, PartialEq)]
struct ServiceView {
    image: Option<String>,
    command: Option<Vec<String>>,
    environment: BTreeMap<String, String>,
    /// (host address, host port, container port, protocol).
    ports: BTreeSet<(String, String, String, String)>,
    /// (source: a volume's key or an absolute host path, target, read-only).
    volumes: BTreeSet<(String, String, bool)>,
    networks: BTreeSet<String>,
}

/// The part of a model that both tools print.
#[derive(Debug, Default)]
struct ModelView {
    services: BTreeMap<String, ServiceView>,
    volumes: BTreeSet<String>,
    networks: BTreeSet<String>,
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn keys(v: Option<&Value>) -> BTreeSet<String> {
    match v {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        Some(Value::Array(a)) => a.iter().map(scalar).collect(),
        _ => BTreeSet::new(),
    }
}

/// A port, short (`[ip:]host:container[/proto]`) or long syntax.
fn port_view(v: &Value) -> (String, String, String, String) {
    if let Value::Object(m) = v {
        let get = |k: &str| m.get(k).map(scalar).unwrap_or_default();
        let proto = m.get("protocol").map_or_else(|| "tcp".to_owned(), scalar);
        return (get("host_ip"), get("published"), get("target"), proto);
    }
    let text = scalar(v);
    let (spec, proto) = text
        .split_once('/')
        .map_or((text.as_str(), "tcp"), |(s, p)| (s, p));
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, target) = match parts.as_slice() {
        [t] => ("", "", *t),
        [h, t] => ("", *h, *t),
        [ip, h, t] => (*ip, *h, *t),
        _ => panic!("port {text:?}"),
    };
    (ip.into(), host.into(), target.into(), proto.into())
}

/// A mount, short (`source:target[:ro]`) or long syntax; a relative host path is made
/// absolute from `dir`.
fn volume_view(v: &Value, dir: &Path) -> (String, String, bool) {
    let (source, target, ro) = if let Value::Object(m) = v {
        (
            m.get("source").map(scalar).unwrap_or_default(),
            m.get("target").map(scalar).unwrap_or_default(),
            m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
        )
    } else {
        let text = scalar(v);
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [t] => (String::new(), (*t).to_owned(), false),
            [s, t] => ((*s).to_owned(), (*t).to_owned(), false),
            [s, t, mode] => (
                (*s).to_owned(),
                (*t).to_owned(),
                mode.split(',').any(|m| m == "ro"),
            ),
            _ => panic!("volume {text:?}"),
        }
    };
    let source = match source.strip_prefix("./") {
        Some(rel) => path_str(&dir.join(rel)).to_owned(),
        None if source == "." => path_str(dir).to_owned(),
        None => source,
    };
    (source, target, ro)
}

fn model_view(model: &Value, dir: &Path) -> ModelView {
    let mut view = ModelView {
        volumes: keys(model.get("volumes")),
        networks: keys(model.get("networks")),
        ..Default::default()
    };
    let services = model
        .get("services")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no services in {model}"));
    for (name, s) in services {
        let environment = match s.get("environment") {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(scalar)
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv, String::new()),
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let command = s.get("command").map(|c| match c {
            Value::Array(a) => a.iter().map(scalar).collect(),
            other => scalar(other)
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        });
        let list = |k: &str| {
            s.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        view.services.insert(
            name.clone(),
            ServiceView {
                image: s.get("image").map(scalar),
                command,
                environment,
                ports: list("ports").iter().map(port_view).collect(),
                volumes: list("volumes")
                    .iter()
                    .map(|v| volume_view(v, dir))
                    .collect(),
                networks: keys(s.get("networks")),
            },
        );
    }
    view
}

/// The fields where two views differ: (`SERVICE.KEY` or a top-level key, corral's value,
/// podman-compose's).
fn differences(ours: &ModelView, theirs: &ModelView) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut note = |field: String, a: String, b: String| {
        if a != b {
            out.push((field, a, b));
        }
    };
    note(
        "services".into(),
        format!("{:?}", ours.services.keys().collect::<Vec<_>>()),
        format!("{:?}", theirs.services.keys().collect::<Vec<_>>()),
    );
    note(
        "volumes".into(),
        format!("{:?}", ours.volumes),
        format!("{:?}", theirs.volumes),
    );
    note(
        "networks".into(),
        format!("{:?}", ours.networks),
        format!("{:?}", theirs.networks),
    );
    let empty = ServiceView::default();
    for (name, a) in &ours.services {
        let b = theirs.services.get(name).unwrap_or(&empty);
        let field = |k: &str| format!("{name}.{k}");
        note(
            field("image"),
            format!("{:?}", a.image),
            format!("{:?}", b.image),
        );
        note(
            field("command"),
            format!("{:?}", a.command),
            format!("{:?}", b.command),
        );
        note(
            field("environment"),
            format!("{:?}", a.environment),
            format!("{:?}", b.environment),
        );
        note(
            field("ports"),
            format!("{:?}", a.ports),
            format!("{:?}", b.ports),
        );
        note(
            field("volumes"),
            format!("{:?}", a.volumes),
            format!("{:?}", b.volumes),
        );
        note(
            field("networks"),
            format!("{:?}", a.networks),
            format!("{:?}", b.networks),
        );
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[test]
fn config_of_the_corpus_matches_podman_compose_but_for_stated_differences() {
    const TEST: &str = "config_of_the_corpus_matches_podman_compose_but_for_stated_differences";
    let Some(peers) = Peers::new(TEST, false) else {
        return;
    };
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose-corpus");
    let work = test_tempdir("compose-corpus");
    let work = work.path().canonicalize().unwrap();
    copy_dir(&corpus, &work);
    let project = unique_name("corpus").to_ascii_lowercase();

    let mut unexpected = Vec::new();
    let mut seen = BTreeSet::new();
    for case in CORPUS {
        let dir = work.join(case.dir);
        let mut args: Vec<&str> = Vec::new();
        for f in case.files {
            args.extend(["-f", f]);
        }
        let mut corral_args = args.clone();
        corral_args.extend(["config", "--format", "json"]);
        let out = peers.corral(&dir, &project, case.env, &corral_args);
        let corral_text = ok("corral compose", &corral_args, out);
        let ours: Value = serde_json::from_str(&corral_text)
            .unwrap_or_else(|e| panic!("{}: corral's JSON ({e}):\n{corral_text}", case.dir));
        let mut podman_args = args.clone();
        podman_args.push("config");
        let out = peers.podman(&dir, &project, case.env, &podman_args);
        let podman_text = ok("podman-compose", &podman_args, out);
        let theirs: Value = serde_yaml::from_str(&podman_text).unwrap_or_else(|e| {
            panic!("{}: podman-compose's YAML ({e}):\n{podman_text}", case.dir)
        });

        for (field, a, b) in differences(&model_view(&ours, &dir), &model_view(&theirs, &dir)) {
            let stated = CONFIG_DIFFERENCES
                .iter()
                .position(|(c, f, _)| (*c == "*" || *c == case.dir) && *f == field);
            match stated {
                Some(i) => {
                    seen.insert(i);
                }
                None => unexpected.push(format!(
                    "{}: {field}: corral {a}, podman-compose {b}",
                    case.dir
                )),
            }
        }
    }
    assert!(
        unexpected.is_empty(),
        "`config` differs from podman-compose's where no difference is stated:\n{}",
        unexpected.join("\n")
    );
    let stale: Vec<_> = CONFIG_DIFFERENCES
        .iter()
        .enumerate()
        .filter(|(i, _)| !seen.contains(i))
        .map(|(_, d)| d)
        .collect();
    assert!(
        stale.is_empty(),
        "stated differences that no longer occur (remove them): {stale:#?}"
    );
}
