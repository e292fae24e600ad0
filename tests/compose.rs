//! End-to-end tests of `corral compose`, checked as a docker compose user checks them: names
//! and labels, services reaching each other by name and alias, published ports answering,
//! volumes surviving `down` and going with `down -v`, the recreate matrix (no change keeps the
//! containers, a changed service is recreated with its dependents and nothing else, scaling),
//! dependency conditions, `config`'s normalised model, and bad input. Every project has a
//! unique name; `down -v` (or the guard) leaves no container, network, volume or rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use corral_e2e::process::describe;
use corral_e2e::{fixtures, skip_unless_root, unique_name, Corral};

const IMAGE: &str = "localhost/compose-bb:1";

fn world() -> Corral {
    let c = Corral::new();
    let tar = c.path("bb.tar");
    fixtures::busybox_rootfs_tar(&tar);
    c.ok(&["image", "import", tar.to_str().unwrap(), IMAGE]);
    c
}

/// A project directory with `compose.yaml`; `down -v --remove-orphans` when dropped, and
/// whatever that could not remove (a file that no longer loads) removed by its labels and
/// names (VMs by name).
struct Project<'a> {
    c: &'a Corral,
    dir: PathBuf,
    name: String,
    env: Vec<(String, String)>,
}

impl<'a> Project<'a> {
    fn new(c: &'a Corral, yaml: &str) -> Self {
        let name = unique_name("cp").replace('_', "-").to_ascii_lowercase();
        let dir = c.path(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let p = Project {
            c,
            dir,
            name,
            env: Vec::new(),
        };
        p.write(yaml);
        p
    }

    fn write(&self, yaml: &str) {
        std::fs::write(self.dir.join("compose.yaml"), yaml.replace("IMAGE", IMAGE)).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["compose", "-p", &self.name];
        full.extend_from_slice(args);
        let mut cmd = self.c.command(&full);
        cmd.current_dir(&self.dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        corral_e2e::process::run_bounded(&mut cmd, None, std::time::Duration::from_secs(180))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(out.status.success(), "compose {args:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Container name -> id.
    fn ids(&self) -> BTreeMap<String, String> {
        let v: Value = serde_json::from_str(&self.ok(&["ps", "-a", "--json"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap().to_owned(),
                    c["ID"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "-v", "--remove-orphans"]);
        let label = format!("label=com.docker.compose.project={}", self.name);
        let ids = self.c.cmd(&["ps", "-aq", "--filter", &label]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.c.cmd(&["rm", "-f", "-v", id]);
        }
        // VMs of `isolation: vm` services, by name.
        let vms = self.c.cmd(&["vm", "ls", "--json"]);
        if let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(&vms.stdout) {
            for vm in &list {
                if let Some(n) = vm["name"]
                    .as_str()
                    .filter(|n| n.starts_with(&format!("{}-", self.name)))
                {
                    let _ = self.c.cmd(&["vm", "rm", "-f", n]);
                }
            }
        }
        for what in ["network", "volume"] {
            let list = self.c.cmd(&[what, "ls"]);
            for line in String::from_utf8_lossy(&list.stdout).lines() {
                if let Some(n) = line
                    .split_whitespace()
                    .find(|w| w.starts_with(&format!("{}_", self.name)))
                {
                    let _ = self.c.cmd(&[what, "rm", n]);
                }
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            if !body.is_empty() {
                return body;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port}");
}

fn assert_gone(c: &Corral, p: &Project<'_>) {
    assert_eq!(c.ok(&["ps", "-aq"]).trim(), "", "containers left");
    let nets = c.ok(&["network", "ls"]);
    assert!(
        !nets.contains(&p.name),
        "a network of {} is left:\n{nets}",
        p.name
    );
    let vols = c.ok(&["volume", "ls"]);
    assert!(
        !vols.contains(&p.name),
        "a volume of {} is left:\n{vols}",
        p.name
    );
    c.assert_no_leaks();
}

#[test]
fn services_reach_each_other_publish_ports_keep_volumes_and_go_with_down() {
    if skip_unless_root("services_reach_each_other_publish_ports_keep_volumes_and_go_with_down") {
        return;
    }
    let c = world();
    let port = free_port();
    let yaml = format!(
        r#"
services:
  db:
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo from-db > /www/index.html && exec httpd -f -p 80 -h /www"]
    networks:
      back:
        aliases: [database]
    volumes: ["data:/data"]
  web:
    image: IMAGE
    command: sh -c 'mkdir -p /www && echo "web says $$GREETING" > /www/index.html && exec httpd -f -p 80 -h /www'
    environment:
      GREETING: ${{GREETING:-hello}}
    ports: ["127.0.0.1:{port}:80"]
    networks: [back, default]
    depends_on: [db]
networks:
  back: {{}}
volumes:
  data: {{}}
"#
    );
    let p = Project::new(&c, &yaml);
    p.ok(&["up", "-d"]);
    let ids = p.ids();
    let names: Vec<&String> = ids.keys().collect();
    assert_eq!(
        names,
        vec![&format!("{}-db-1", p.name), &format!("{}-web-1", p.name)]
    );
    let inspect: Value =
        serde_json::from_str(&c.ok(&["inspect", &format!("{}-web-1", p.name)])).unwrap();
    let labels = &inspect[0]["Config"]["Labels"];
    assert_eq!(
        labels["com.docker.compose.project"],
        p.name.as_str(),
        "{labels}"
    );
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    let nets = c.ok(&["network", "ls"]);
    assert!(
        nets.contains(&format!("{}_default", p.name)) && nets.contains(&format!("{}_back", p.name)),
        "{nets}"
    );
    // The published port answers; the environment was interpolated.
    assert!(http_get(port).contains("web says hello"));
    // By service name and by alias, on the shared network.
    let got = p.ok(&[
        "exec",
        "-T",
        "web",
        "sh",
        "-c",
        "wget -qO- http://db/ && wget -qO- http://database/",
    ]);
    assert_eq!(got, "from-db\nfrom-db\n");
    // The volume survives down without -v.
    p.ok(&["exec", "-T", "db", "sh", "-c", "echo kept > /data/f"]);
    p.ok(&["down"]);
    assert_eq!(c.ok(&["ps", "-aq"]).trim(), "");
    p.ok(&["up", "-d"]);
    assert_eq!(p.ok(&["exec", "-T", "db", "cat", "/data/f"]), "kept\n");
    let logs = p.ok(&["logs", "db"]);
    let _ = logs;
    p.ok(&["down", "-v"]);
    assert_gone(&c, &p);
}

#[test]
fn up_recreates_only_what_changed_and_its_dependents() {
    if skip_unless_root("up_recreates_only_what_changed_and_its_dependents") {
        return;
    }
    let c = world();
    let yaml = |v: &str| {
        format!(
            "services:\n  base:\n    image: IMAGE\n    command: sleep 3600\n    environment: [V={v}]\n  mid:\n    image: IMAGE\n    command: sleep 3600\n    depends_on: [base]\n  other:\n    image: IMAGE\n    command: sleep 3600\n    stop_signal: SIGKILL\n"
        )
    };
    let p = Project::new(&c, &yaml("1"));
    p.ok(&["up", "-d"]);
    let first = p.ids();
    assert_eq!(first.len(), 3);
    // No change: the same containers.
    p.ok(&["up", "-d"]);
    assert_eq!(p.ids(), first, "an unchanged project was recreated");
    // base changed: base and mid (which depends on it) recreated, other kept.
    p.write(&yaml("2"));
    p.ok(&["up", "-d"]);
    let second = p.ids();
    let name = |s: &str| format!("{}-{s}-1", p.name);
    assert_ne!(second[&name("base")], first[&name("base")]);
    assert_ne!(second[&name("mid")], first[&name("mid")]);
    assert_eq!(second[&name("other")], first[&name("other")]);
    assert_eq!(p.ok(&["exec", "-T", "base", "sh", "-c", "echo $V"]), "2\n");
    // Scale 1 -> 3 -> 1: the first replica stays throughout.
    p.ok(&["up", "-d", "--scale", "other=3"]);
    let third = p.ids();
    assert_eq!(third.len(), 5, "{third:?}");
    assert_eq!(third[&name("other")], first[&name("other")]);
    p.ok(&["up", "-d", "--scale", "other=1"]);
    let fourth = p.ids();
    assert_eq!(fourth.len(), 3, "{fourth:?}");
    assert_eq!(fourth[&name("other")], first[&name("other")]);
    // --force-recreate: everything new.
    p.ok(&["up", "-d", "--force-recreate"]);
    let fifth = p.ids();
    assert!(fifth.iter().all(|(n, id)| fourth[n] != *id));
    p.ok(&["down", "-v"]);
    assert_gone(&c, &p);
}

#[test]
fn dependency_conditions_hold_before_dependents_start() {
    if skip_unless_root("dependency_conditions_hold_before_dependents_start") {
        return;
    }
    let c = world();
    let p = Project::new(
        &c,
        r#"
services:
  slow:
    image: IMAGE
    command: ["sh", "-c", "sleep 2; touch /shared/ready; exec sleep 3600"]
    stop_signal: SIGKILL
    volumes: ["shared:/shared"]
    healthcheck:
      test: ["CMD", "test", "-f", "/shared/ready"]
      interval: 500ms
      retries: 40
  init:
    image: IMAGE
    command: ["sh", "-c", "echo migrated > /shared/migrated"]
    volumes: ["shared:/shared"]
  app:
    image: IMAGE
    command: ["sh", "-c", "test -f /shared/ready && test -f /shared/migrated && echo saw-both > /shared/app; exec sleep 3600"]
    stop_signal: SIGKILL
    volumes: ["shared:/shared"]
    depends_on:
      slow: {condition: service_healthy}
      init: {condition: service_completed_successfully}
volumes:
  shared: {}
"#,
    );
    p.ok(&["up", "-d", "--wait"]);
    assert_eq!(
        p.ok(&["exec", "-T", "app", "cat", "/shared/app"]),
        "saw-both\n"
    );
    p.ok(&["down", "-v"]);
    // A dependency that fails keeps the dependent from starting.
    p.write(
        "services:\n  init:\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"exit 3\"]\n  app:\n    image: IMAGE\n    command: sleep 3600\n    depends_on:\n      init: {condition: service_completed_successfully}\n",
    );
    let out = p.cmd(&["up", "-d"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("init") && err.contains("code 3"), "{err}");
    assert!(
        !p.ids().contains_key(&format!("{}-app-1", p.name)),
        "the dependent was created"
    );
    // A health check that never passes: --wait fails within its timeout, naming the service.
    p.write("services:\n  sick:\n    image: IMAGE\n    command: sleep 3600\n    stop_signal: SIGKILL\n    healthcheck:\n      test: [\"CMD\", \"false\"]\n      interval: 200ms\n");
    let t = std::time::Instant::now();
    let out = p.cmd(&[
        "up",
        "-d",
        "--wait",
        "--wait-timeout",
        "3",
        "--remove-orphans",
    ]);
    assert!(!out.status.success());
    assert!(
        t.elapsed().as_secs() < 20,
        "--wait-timeout 3 took {:?}",
        t.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sick") && err.contains("healthy"), "{err}");
    p.ok(&["down", "-v"]);
    assert_gone(&c, &p);
}

fn config(dir: &Path, c: &Corral, args: &[&str]) -> Value {
    let mut full = vec!["compose"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["config", "--format", "json"]);
    let mut cmd = c.command(&full);
    cmd.current_dir(dir).env("TAG", "9");
    let out = corral_e2e::process::run_bounded(&mut cmd, None, std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn config_prints_the_merged_interpolated_normalised_model() {
    if skip_unless_root("config_prints_the_merged_interpolated_normalised_model") {
        return;
    }
    let c = Corral::new();
    let dir = c.path("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), "FROM_DOTENV=dot\n").unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "name: Cfg_Test\nx-base: &base\n  restart: always\nservices:\n  common:\n    image: busybox\n    environment: [SHARED=1]\n  web:\n    <<: *base\n    extends: common\n    image: \"app:${TAG}\"\n    ports: ['80']\n    environment:\n      D: $FROM_DOTENV\n      LIT: $$HOME\n    volumes: ['./site:/site:ro']\n",
    )
    .unwrap();
    std::fs::write(dir.join("override.yaml"), "services:\n  web:\n    ports:\n      - target: 443\n        published: 8443\n    environment: [SHARED=2]\n").unwrap();
    let v = config(&dir, &c, &["-f", "compose.yaml", "-f", "override.yaml"]);
    assert_eq!(v["name"], "cfg_test");
    let web = &v["services"]["web"];
    assert_eq!(web["image"], "app:9");
    assert_eq!(web["restart"], "always");
    assert_eq!(web["ports"], serde_json::json!(["80", "8443:443"]));
    assert_eq!(web["environment"]["SHARED"], "2");
    assert_eq!(web["environment"]["D"], "dot");
    assert_eq!(web["environment"]["LIT"], "$HOME");
    assert_eq!(
        web["volumes"][0]["source"],
        format!("{}/site", dir.display())
    );
    assert_eq!(web["volumes"][0]["read_only"], true);
    assert_eq!(v["networks"]["default"]["name"], "cfg_test_default");

    // COMPOSE_PROJECT_NAME, COMPOSE_FILE and COMPOSE_PROFILES from `.env`, as from the
    // environment; reservations and restart_policy kept; an external secret loads.
    let dir = c.path("dotenv");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "COMPOSE_PROJECT_NAME=from_dotenv\nCOMPOSE_FILE=main.yaml\nCOMPOSE_PROFILES=extra\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("main.yaml"),
        "services:\n  a:\n    image: busybox\n    deploy:\n      resources:\n        reservations: {cpus: '0.5', memory: 32m}\n      restart_policy: {condition: on-failure, max_attempts: 3, delay: 5s}\n  b:\n    image: busybox\n    profiles: [extra]\n    secrets: [outside]\nsecrets:\n  outside: {external: true}\n",
    )
    .unwrap();
    let v = config(&dir, &c, &[]);
    assert_eq!(v["name"], "from_dotenv");
    let names: Vec<&String> = v["services"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["a", "b"], "COMPOSE_PROFILES from .env: {v}");
    let a = &v["services"]["a"];
    assert_eq!(a["memory_reservation"], "32m");
    assert_eq!(a["cpus_reservation"], 0.5);
    assert_eq!(a["restart"], "on-failure:3");
    assert_eq!(a["restart_delay"], 5.0);
    assert_eq!(v["secrets"]["outside"]["external"], true);
    // --env-file replaces .env; the process's environment wins over both.
    std::fs::write(
        dir.join("other.env"),
        "COMPOSE_PROJECT_NAME=from_file\nCOMPOSE_FILE=main.yaml\n",
    )
    .unwrap();
    let v = config(&dir, &c, &["--env-file", "other.env"]);
    assert_eq!(v["name"], "from_file");
    assert_eq!(v["services"].as_object().unwrap().len(), 1, "{v}");
    let mut cmd = c.command(&["compose", "config", "--format", "json"]);
    cmd.current_dir(&dir)
        .env("COMPOSE_PROJECT_NAME", "from_process");
    let out = corral_e2e::process::run_bounded(&mut cmd, None, std::time::Duration::from_secs(60));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", describe(&out)));
    assert_eq!(v["name"], "from_process");
}

#[test]
fn bad_compose_files_are_refused_clearly() {
    if skip_unless_root("bad_compose_files_are_refused_clearly") {
        return;
    }
    let c = world();
    let bad = |yaml: &str, args: &[&str]| -> String {
        let p = Project::new(&c, yaml);
        let mut a = vec!["up", "-d"];
        a.extend_from_slice(args);
        let out = p.cmd(&a);
        assert!(!out.status.success(), "{yaml}: {}", describe(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = bad("services:\n  web:\n    image: [\n", &[]);
    assert!(
        e.contains("compose.yaml:4:1: ") && e.contains("line 4 column 1"),
        "{e}"
    );
    let e = bad(
        "services:\n  web:\n    image: IMAGE\n    healthcheck: {test: [CMD, 'true'], retries: lots}\n",
        &[],
    );
    assert!(
        e.contains("services.web.healthcheck.retries must be a number"),
        "{e}"
    );
    let e = bad("services:\n  web:\n    image: IMAGE\n    cpus: abc\n", &[]);
    assert!(e.contains("services.web.cpus must be a number"), "{e}");
    // An external secret loads (config, ps, down work) but a service mounting it is refused
    // before anything starts.
    let e = bad(
        "services:\n  web:\n    image: IMAGE\n    secrets: [outside]\nsecrets:\n  outside: {external: true}\n",
        &[],
    );
    assert!(
        e.contains("service web: unsupported external secret outside"),
        "{e}"
    );
    let e = bad(
        "services:\n  web:\n    image: IMAGE\n    enviroment: [A=1]\n",
        &[],
    );
    assert!(
        e.contains("enviroment") && e.contains("did you mean \"environment\""),
        "{e}"
    );
    let e = bad("services:\n  web:\n    image: IMAGE\n    ports: 80\n", &[]);
    assert!(e.contains("ports must be a list"), "{e}");
    let e = bad(
        "services:\n  web:\n    image: \"${NEEDED:?set NEEDED to the tag}\"\n",
        &[],
    );
    assert!(
        e.contains("NEEDED") && e.contains("set NEEDED to the tag"),
        "{e}"
    );
    let e = bad(
        "services:\n  a: {image: IMAGE, depends_on: [b]}\n  b: {image: IMAGE, depends_on: [a]}\n",
        &[],
    );
    assert!(e.contains("cycle"), "{e}");
    let e = bad(
        "services:\n  web: {image: localhost/no-such-image:1, pull_policy: never}\n",
        &[],
    );
    assert!(e.contains("no-such-image"), "{e}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = bad(&format!("services:\n  web:\n    image: IMAGE\n    command: sleep 3600\n    ports: ['127.0.0.1:{port}:80']\n"), &[]);
    assert!(e.contains(&port.to_string()), "{e}");
    // What the failed up left is reported: the container it created, the network it made.
    assert!(
        e.contains("created, not running: cp") && e.contains("-web-1 (created)"),
        "{e}"
    );
    assert!(e.contains("networks: cp") && e.contains("_default"), "{e}");
    drop(taken);
    c.assert_no_leaks();
}

#[test]
fn rolling_update_keeps_answering_by_name_and_rolls_back_a_bad_version() {
    if skip_unless_root("rolling_update_keeps_answering_by_name_and_rolls_back_a_bad_version") {
        return;
    }
    let c = world();
    let yaml = |version: &str, check: &str| {
        format!(
            r#"
services:
  web:
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo v$$VERSION > /www/index.html && exec httpd -f -p 80 -h /www"]
    environment: {{VERSION: "{version}"}}
    init: true
    deploy:
      replicas: 3
      update_config: {{parallelism: 1, order: start-first, failure_action: rollback}}
    healthcheck: {{test: ["CMD", "{check}", "-qO-", "http://127.0.0.1/"], interval: 200ms, retries: 5}}
  client:
    image: IMAGE
    # (busybox-static's wget crashes with -T: a plain wget, each request a new lookup)
    command: ["sh", "-c", "while true; do if wget -qO- http://web/ >> /out/ok 2>/dev/null; then :; else echo fail at $$(date +%T) >> /out/fail; fi; sleep 0.05; done"]
    init: true
    volumes: ["out:/out"]
    depends_on:
      web: {{condition: service_healthy}}
volumes:
  out: {{}}
"#
        )
    };
    let p = Project::new(&c, &yaml("1", "wget"));
    p.ok(&["up", "-d", "--wait"]);
    let before = p.ids();
    // What the client saw while everything started is not the update's: counted from here.
    std::thread::sleep(std::time::Duration::from_secs(1));
    p.ok(&["exec", "-T", "client", "rm", "-f", "/out/fail", "/out/ok"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    p.write(&yaml("2", "wget"));
    let rolled = p.cmd(&["up", "-d", "client", "web", "--no-deps"]);
    assert!(rolled.status.success(), "{}", describe(&rolled));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = p.ids();
    let webs: Vec<&String> = after.keys().filter(|n| n.contains("-web-")).collect();
    assert_eq!(webs.len(), 3, "{after:?}");
    for n in &webs {
        assert_ne!(after[*n], before[*n], "{n} was not replaced");
        assert_eq!(
            p.ok(&[
                "exec",
                "-T",
                "--index",
                n.rsplit('-').next().unwrap(),
                "web",
                "cat",
                "/www/index.html"
            ]),
            "v2\n"
        );
    }
    let client = format!("{}-client-1", p.name);
    assert_eq!(after[&client], before[&client], "the client was recreated");
    let fails = p.cmd(&["exec", "-T", "client", "cat", "/out/fail"]);
    assert!(
        !fails.status.success(),
        "requests failed during the rolling update: {}",
        String::from_utf8_lossy(&fails.stdout)
    );
    let ok = p.ok(&["exec", "-T", "client", "cat", "/out/ok"]);
    let dns = p.ok(&["exec", "-T", "client", "nslookup", "web"]);
    let ps = c.ok(&["ps", "-a"]);
    assert!(
        ok.contains("v1") && ok.contains("v2") && ok.lines().count() > 20,
        "{} answers, v1: {}, v2: {}\n{dns}\n{ps}",
        ok.lines().count(),
        ok.matches("v1").count(),
        ok.matches("v2").count()
    );
    // A version whose health check fails: rolled back, the old replicas as they were.
    p.write(&yaml("3", "false"));
    let out = p.cmd(&["up", "-d", "web", "--no-deps", "--wait-timeout", "20"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolling update of service web"), "{err}");
    let back = p.ids();
    for n in &webs {
        assert_eq!(back[*n], after[*n], "{n} was not rolled back: {back:?}");
    }
    assert_eq!(back.len(), after.len(), "{back:?}");
    assert_eq!(
        p.ok(&["exec", "-T", "web", "cat", "/www/index.html"]),
        "v2\n"
    );
    p.ok(&["down", "-v"]);
    assert_gone(&c, &p);
}

/// The nftables table of the shared host ports of `c`'s state root (`corral_net`'s
/// `Networks::shared_table`: 8 hex digits of the SHA-256 of `<root>/networks`).
fn shared_table(c: &Corral) -> String {
    use sha2::{Digest, Sha256};
    let dir = c.root().join("networks");
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("corral-pub-{}", hex::encode(&digest[..4]))
}

fn nft_tables() -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One request to 127.0.0.1:`port`: the body, or why there is none.
fn try_get(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    match body.split("\r\n\r\n").nth(1) {
        Some(b) if body.starts_with("HTTP/1.") && body.contains(" 200 ") => Ok(b.to_owned()),
        _ => Err(format!("answer {body:?}")),
    }
}

#[test]
fn replicas_share_a_fixed_host_port_and_roll_over_it_with_no_failed_request() {
    if skip_unless_root("replicas_share_a_fixed_host_port_and_roll_over_it_with_no_failed_request")
    {
        return;
    }
    let c = world();
    let port = free_port();
    let yaml = |version: &str| {
        format!(
            r#"
services:
  web:
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo v$$VERSION $$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"]
    environment: {{VERSION: "{version}"}}
    init: true
    ports: ["{port}:80"]
    deploy:
      replicas: 3
      update_config: {{parallelism: 1, order: start-first}}
    healthcheck: {{test: ["CMD", "wget", "-qO-", "http://127.0.0.1/"], interval: 200ms, retries: 5}}
"#
        )
    };
    let p = Project::new(&c, &yaml("1"));
    p.ok(&["up", "-d", "--wait"]);
    let table = shared_table(&c);
    assert!(
        nft_tables().contains(&table),
        "no table {table}:\n{}",
        nft_tables()
    );
    // Three replicas on one fixed host port: connections spread over them.
    let mut hosts = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let body = try_get(port).unwrap();
        assert!(body.starts_with("v1 "), "{body:?}");
        hosts.insert(body.trim().to_owned());
    }
    assert!(
        hosts.len() >= 2,
        "40 requests all reached one replica: {hosts:?}"
    );
    let ps = p.ok(&["ps"]);
    assert_eq!(
        ps.matches(&format!("0.0.0.0:{port}->80/tcp")).count(),
        3,
        "{ps}"
    );

    // A start-first rolling update while a client on the host sends requests in a loop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match try_get(port) {
                    Ok(b) => ok.push(b),
                    Err(e) => failed.push(e),
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.write(&yaml("2"));
    let rolled = p.cmd(&["up", "-d"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.join().unwrap();
    assert!(rolled.status.success(), "{}", describe(&rolled));
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rolling update: {failed:?}",
        failed.len(),
        failed.len() + ok.len()
    );
    assert!(
        ok.iter().any(|b| b.starts_with("v1 ")) && ok.last().is_some_and(|b| b.starts_with("v2 ")),
        "{ok:?}"
    );
    assert!(ok.len() > 20, "only {} requests", ok.len());
    for _ in 0..10 {
        assert!(try_get(port).unwrap().starts_with("v2 "));
    }

    // Scaled down to one: every connection reaches it.
    p.ok(&["up", "-d", "--scale", "web=1"]);
    let one: std::collections::BTreeSet<String> = (0..10)
        .map(|_| try_get(port).unwrap().trim().to_owned())
        .collect();
    assert_eq!(one.len(), 1, "{one:?}");

    // Nobody else may publish the port while the service holds it.
    let net = format!("{}_default", p.name);
    let other = c.cmd(&[
        "run",
        "-d",
        "--network",
        &net,
        "-p",
        &format!("{port}:80"),
        IMAGE,
        "sleep",
        "60",
    ]);
    assert!(!other.status.success(), "{}", describe(&other));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("already published"), "{err}");

    p.ok(&["down", "-v"]);
    assert!(!nft_tables().contains(&table), "{table} is left after down");
    assert!(try_get(port).is_err(), "the port still answers after down");
    assert_gone(&c, &p);
}

#[test]
fn run_starts_one_offs_and_up_exits_with_a_service_code() {
    if skip_unless_root("run_starts_one_offs_and_up_exits_with_a_service_code") {
        return;
    }
    let c = world();
    let p = Project::new(
        &c,
        "services:\n  db:\n    image: IMAGE\n    command: sleep 3600\n    stop_signal: SIGKILL\n  job:\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"sleep 1; exit 4\"]\n    depends_on: [db]\n",
    );
    // A one-off of a service without dependencies, on a project that is not up: its network
    // is made.
    let out = p.cmd(&["run", "--rm", "-T", "db", "echo", "alone"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alone\n");
    // A one-off: its dependency started, its own code and output, gone with --rm.
    let out = p.cmd(&[
        "run",
        "--rm",
        "-T",
        "job",
        "sh",
        "-c",
        "echo one-off; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one-off\n");
    let ids = p.ids();
    assert_eq!(
        ids.keys().cloned().collect::<Vec<_>>(),
        vec![format!("{}-db-1", p.name)],
        "{ids:?}"
    );
    // up --exit-code-from: every service stopped when one ends, its code returned.
    let out = p.cmd(&["up", "--exit-code-from", "job"]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let running: Value = serde_json::from_str(&p.ok(&["ps", "--json"])).unwrap();
    assert_eq!(running.as_array().unwrap().len(), 0, "{running}");
    // up --wait returns once the services run, without following their logs (implies -d).
    p.ok(&["up", "--wait", "db"]);
    let running: Value = serde_json::from_str(&p.ok(&["ps", "--json"])).unwrap();
    assert_eq!(running[0]["Name"], format!("{}-db-1", p.name), "{running}");
    p.ok(&["down", "-v"]);
    assert_gone(&c, &p);
}

#[test]
fn configs_and_secrets_are_mounted_read_only_files() {
    if skip_unless_root("configs_and_secrets_are_mounted_read_only_files") {
        return;
    }
    let c = world();
    let p = Project::new(
        &c,
        "services:\n  app:\n    image: IMAGE\n    command: sleep 3600\n    stop_signal: SIGKILL\n    configs:\n      - from_file\n      - source: inline\n        target: /etc/app/inline.conf\n    secrets: [token]\nconfigs:\n  from_file: {file: ./app.conf}\n  inline: {content: \"level=debug\"}\nsecrets:\n  token: {environment: COMPOSE_TEST_TOKEN}\n",
    );
    std::fs::write(p.dir.join("app.conf"), "from a file\n").unwrap();
    // Without the variable, nothing starts and the error names it.
    let out = p.cmd(&["up", "-d"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COMPOSE_TEST_TOKEN"));
    let mut p = p;
    p.env.push(("COMPOSE_TEST_TOKEN".into(), "s3cret".into()));
    p.ok(&["up", "-d"]);
    let got = p.ok(&["exec", "-T", "app", "sh", "-c", "cat /from_file /etc/app/inline.conf; echo; cat /run/secrets/token; echo; echo x > /run/secrets/token || echo read-only"]);
    assert_eq!(got, "from a file\nlevel=debug\ns3cret\nread-only\n");
    // An edited config recreates the service; an untouched one keeps it.
    let first = p.ids();
    p.ok(&["up", "-d"]);
    assert_eq!(p.ids(), first, "recreated with nothing changed");
    std::fs::write(p.dir.join("app.conf"), "edited\n").unwrap();
    p.ok(&["up", "-d"]);
    assert_ne!(
        p.ids(),
        first,
        "an edited config did not recreate the service"
    );
    assert_eq!(
        p.ok(&["exec", "-T", "app", "cat", "/from_file"]),
        "edited\n"
    );
    p.ok(&["down", "-v"]);
    assert!(
        !c.root().join("compose").join(&p.name).exists(),
        "the inline files stayed"
    );
    assert_gone(&c, &p);
}

#[test]
fn include_top_and_images_work_as_docker_compose_has_them() {
    if skip_unless_root("include_top_and_images_work_as_docker_compose_has_them") {
        return;
    }
    let c = world();
    let p = Project::new(
        &c,
        "include:\n  - db/compose.yaml\nservices:\n  web:\n    image: IMAGE\n    command: sleep 3600\n    stop_signal: SIGKILL\n    depends_on: [db]\n",
    );
    // The included file's relative paths are its own directory's.
    std::fs::create_dir_all(p.dir.join("db/data")).unwrap();
    std::fs::write(p.dir.join("db/data/seed.sql"), "-- from the included dir\n").unwrap();
    std::fs::write(
        p.dir.join("db/compose.yaml"),
        format!("services:\n  db:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_signal: SIGKILL\n    env_file: db.env\n    volumes: ['./data:/data:ro']\n"),
    )
    .unwrap();
    std::fs::write(p.dir.join("db/db.env"), "DB_PASS=s3cret\n").unwrap();
    p.ok(&["up", "-d"]);
    assert_eq!(
        p.ok(&["exec", "-T", "db", "cat", "/data/seed.sql"]),
        "-- from the included dir\n"
    );
    assert_eq!(
        p.ok(&["exec", "-T", "db", "sh", "-c", "echo $DB_PASS"]),
        "s3cret\n"
    );
    // top: each running container's name, then its processes.
    let top = p.ok(&["top"]);
    assert!(top.contains(&format!("{}-db-1", p.name)), "{top}");
    assert!(top.contains(&format!("{}-web-1", p.name)), "{top}");
    assert!(top.contains("sleep 3600"), "{top}");
    let only_db = p.ok(&["top", "db"]);
    assert!(!only_db.contains("-web-1"), "{only_db}");
    // images: the image of each container.
    let images = p.ok(&["images"]);
    assert!(images.starts_with("CONTAINER"), "{images}");
    assert!(images.contains("localhost/compose-bb"), "{images}");
    let json: Value = serde_json::from_str(&p.ok(&["images", "--json"])).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(json[0]["Tag"], "1", "{json}");
    let ids = p.ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 1, "one image, listed once: {ids}");
    p.ok(&["down", "-v"]);
    assert_gone(&c, &p);
}

#[test]
fn restart_takes_dependents_and_stop_rm_down_take_their_flags() {
    if skip_unless_root("restart_takes_dependents_and_stop_rm_down_take_their_flags") {
        return;
    }
    let c = world();
    let p = Project::new(
        &c,
        "x-run: &run\n  image: IMAGE\n  command: [\"sh\", \"-c\", \"echo started; exec sleep 3600\"]\nservices:\n  db:\n    <<: *run\n    stop_grace_period: 1s\n  web:\n    <<: *run\n    stop_grace_period: 1s\n    depends_on: {db: {condition: service_started, restart: true}}\n  other:\n    <<: *run\n    depends_on: [db]\n    volumes: [/data]\n",
    );
    p.ok(&["up", "-d"]);
    let starts = |svc: &str| {
        p.ok(&["logs", "--no-log-prefix", svc])
            .matches("started")
            .count()
    };
    // restart db: web (restart: true) restarts with it, other does not.
    p.ok(&["restart", "-t", "0", "db"]);
    assert_eq!((starts("db"), starts("web"), starts("other")), (2, 2, 1));
    // up of db alone, recreating it: web is restarted with it, other is left alone.
    p.ok(&["up", "-d", "--force-recreate", "db"]);
    assert_eq!((starts("db"), starts("web"), starts("other")), (1, 3, 1));
    // stop -t 1: sleep as pid 1 ignores SIGTERM, so other's default 10 s would show.
    let t = std::time::Instant::now();
    p.ok(&["stop", "-t", "1"]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        t.elapsed()
    );
    // rm -v: the container's anonymous volume goes with it.
    assert_eq!(c.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    p.ok(&["rm", "-f", "-v", "other"]);
    assert_eq!(c.ok(&["volume", "ls", "-q"]).trim(), "");
    // down --rmi all: the services' image is removed too.
    p.ok(&["up", "-d", "db"]);
    p.ok(&["down", "-v", "-t", "0", "--rmi", "all"]);
    assert!(!c.ok(&["image", "ls"]).contains("compose-bb"));
    assert_gone(&c, &p);
}

#[test]
fn vm_services_are_listed_kept_and_removed_with_the_project() {
    const TEST: &str = "vm_services_are_listed_kept_and_removed_with_the_project";
    if skip_unless_root(TEST)
        || corral_e2e::skip_unless_tools(TEST, &["qemu-system-x86_64", "mkfs.ext4"])
    {
        return;
    }
    if corral_e2e::vms::guest_kernel().is_none() {
        corral_e2e::report_skip(
            TEST,
            "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)",
        );
        return;
    }
    let c = world();
    let p = Project::new(
        &c,
        "services:\n  box:\n    image: IMAGE\n    isolation: vm\n    command: sleep 3600\n",
    );
    p.ok(&["up", "--wait"]);
    let vm = format!("{}-box-1", p.name);
    assert!(p.ok(&["ps", "-a"]).contains(&vm));
    // A second up keeps the VM.
    let again = p.cmd(&["up", "-d"]);
    assert!(again.status.success(), "{}", describe(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains(&format!("{vm}  Running")),
        "{}",
        describe(&again)
    );
    p.ok(&["down", "-v", "-t", "0"]);
    assert!(
        !c.ok(&["vm", "ls", "--json"]).contains(&vm),
        "the VM is left"
    );
    assert_gone(&c, &p);
}
