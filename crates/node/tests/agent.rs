//! The node agent against the real engine and a real store, as root: pods bound to the node
//! run as engine pods on a network of the test's own, their status is written back, crashing
//! containers restart with the back-off, graceful deletion removes everything, and an agent
//! that starts again adopts what runs.
//!
//! Each test has a world of its own: an engine root and a redb store under /tmp, a network
//! with its own /24, and the busybox image built from Debian's busybox-static — all removed
//! at the end, even when the test fails (the guard's `Drop`). The engine needs the corral
//! binary for its monitors and sandboxes: `target/release/corral` (or `$CORRAL_BIN`); without
//! it, or without root or `/bin/busybox`, the tests print SKIPPED.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_engine::Engine;
use corral_node::{NodeAgent, NodeConfig, NodeError};
use corral_store::redb::RedbStore;
use corral_store::{registry, RangeRequest, Store};
use serde_json::{json, Value};

const IMAGE: &str = "busybox:test";
const NODE: &str = "test-node";
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "env", "sleep", "true", "false", "ls", "id", "hostname", "ps", "grep",
    "readlink", "kill", "test", "printf", "wget", "nc", "httpd",
];

static N: AtomicU32 = AtomicU32::new(0);

fn corral_bin() -> Option<PathBuf> {
    let p = std::env::var_os("CORRAL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/corral")
        });
    p.is_file().then(|| p.canonicalize().unwrap_or(p))
}

fn skip(test: &str) -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        Some("not root".to_owned())
    } else if !Path::new("/bin/busybox").is_file() {
        Some("/bin/busybox is missing (install busybox-static)".to_owned())
    } else if corral_bin().is_none() {
        Some("the corral binary is not built (target/release/corral, or set CORRAL_BIN)".to_owned())
    } else {
        None
    };
    match why {
        Some(w) => {
            eprintln!("SKIPPED {test}: {w}");
            true
        }
        None => false,
    }
}

/// The busybox rootfs as a plain tar.
fn busybox_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    for d in ["bin", "etc", "proc", "sys", "dev", "root", "srv"] {
        add(d, tar::EntryType::Directory, 0o755, b"", None);
    }
    add("tmp", tar::EntryType::Directory, 0o1777, b"", None);
    let busybox = std::fs::read("/bin/busybox").unwrap();
    add(
        "bin/busybox",
        tar::EntryType::Regular,
        0o755,
        &busybox,
        None,
    );
    add(
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
        None,
    );
    add(
        "etc/group",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:\n",
        None,
    );
    for a in APPLETS {
        add(
            &format!("bin/{a}"),
            tar::EntryType::Symlink,
            0o777,
            b"",
            Some("busybox"),
        );
    }
    b.into_inner().unwrap()
}

/// One test's engine, store, network and agent.
struct World {
    root: PathBuf,
    engine: Engine,
    store: Arc<RedbStore>,
    network: String,
    agent: Option<(
        Arc<NodeAgent>,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl World {
    fn new(test: &str) -> World {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let root = PathBuf::from(format!("/tmp/corral-node-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let engine = Engine::new(&root, corral_bin().unwrap());
        let store = RedbStore::open(&root.join("store.redb")).unwrap();
        // A /24 of 10.126/16 of its own: this process's pid and the test's number.
        let octet = (std::process::id() * 7 + n * 53) % 250 + 2;
        let network = format!("crlnode{}{n}", std::process::id() % 10000);
        engine
            .networks()
            .create(&corral_net::store::NetworkSpec {
                name: network.clone(),
                subnet: Some(format!("10.126.{octet}.0/24")),
                ..Default::default()
            })
            .unwrap();
        let images = engine.images().unwrap();
        let name = corral_image::reference::ImageName::parse(IMAGE).unwrap();
        corral_image::import::import(&images, std::io::Cursor::new(busybox_tar()), &name).unwrap();
        World {
            root,
            engine,
            store,
            network,
            agent: None,
        }
    }

    fn start_agent(&mut self) -> Arc<NodeAgent> {
        let mut cfg = NodeConfig::new(NODE);
        cfg.network = self.network.clone();
        cfg.resync_interval = Duration::from_millis(300);
        cfg.lease_interval = Duration::from_secs(2);
        let agent = Arc::new(NodeAgent::new(self.engine.clone(), self.store.clone(), cfg));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(agent.clone().run(rx));
        self.agent = Some((agent.clone(), tx, task));
        agent
    }

    async fn stop_agent(&mut self) {
        if let Some((_, tx, task)) = self.agent.take() {
            let _ = tx.send(true);
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the agent stops")
                .unwrap();
        }
    }

    async fn put(&self, group: &str, plural: &str, ns: Option<&str>, v: &Value) {
        let name = v["metadata"]["name"].as_str().unwrap();
        let key = registry::key(group, plural, ns, name);
        self.store
            .create(&key, registry::encode(v), 0)
            .await
            .unwrap();
    }

    async fn get(&self, key: &str) -> Option<Value> {
        self.store
            .get(key)
            .await
            .unwrap()
            .and_then(|kv| registry::decode(&kv))
    }

    async fn pod(&self, name: &str) -> Option<Value> {
        self.get(&registry::key("", "pods", Some("default"), name))
            .await
    }

    /// Polls the pod until `ok` holds; its last state.
    async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.pod(name).await.unwrap_or(Value::Null);
            if ok(&p) {
                return p;
            }
            if Instant::now() > deadline {
                panic!(
                    "pod {name}: {what} did not happen in {secs}s; last:\n{}",
                    serde_json::to_string_pretty(&p["status"]).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Engine pods and containers labelled with `uid`.
    fn engine_objects(&self, uid: &str) -> (usize, usize) {
        let pods = self
            .engine
            .pods()
            .unwrap()
            .into_iter()
            .filter(|p| p.labels.get("io.kubernetes.pod.uid").map(String::as_str) == Some(uid))
            .count();
        let cs = self.engine.containers().unwrap();
        let containers = cs
            .ids()
            .unwrap()
            .into_iter()
            .filter(|id| {
                corral_engine::record::Record::load(&cs.dir(id))
                    .labels
                    .get("io.kubernetes.pod.uid")
                    .map(String::as_str)
                    == Some(uid)
            })
            .count();
        (pods, containers)
    }

    fn cleanup(&self) {
        if let Ok(pods) = self.engine.pods() {
            for p in pods {
                let _ = self.engine.remove_pod(&p.id, true);
            }
        }
        if let Ok(cs) = self.engine.containers() {
            for id in cs.ids().unwrap_or_default() {
                let _ = self.engine.remove(&id, true, true);
            }
        }
        let _ = self.engine.remove_network(&self.network, true);
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let prefix = format!("{}/", self.root.display());
            let mut points: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for m in points {
                let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some((_, tx, task)) = self.agent.take() {
            let _ = tx.send(true);
            task.abort();
        }
        self.cleanup();
    }
}

fn uid() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn pod(name: &str, uid: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!(NODE);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    })
}

fn container_status<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The text a container printed (its json-file log).
fn log_of(root: &Path, id: &str) -> String {
    std::fs::read_to_string(root.join("containers").join(id).join("ctr.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["log"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn netns_of(engine: &Engine, id: &str) -> String {
    let s = engine.containers().unwrap().load(id).unwrap();
    let pid = s.pid.expect("the container runs");
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_runs_with_shared_network_env_and_configmap() {
    if skip("pod_runs_with_shared_network_env_and_configmap") {
        return;
    }
    let mut w = World::new("run");
    w.put(
        "",
        "configmaps",
        Some("default"),
        &json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default", "uid": uid()},
            "data": {"greeting": "hello", "file.txt": "content-of-file"}
        }),
    )
    .await;
    let u = uid();
    w.put("", "pods", Some("default"), &pod("web", &u, json!({
        "terminationGracePeriodSeconds": 2,
        "containers": [
            {"name": "app", "image": IMAGE,
             "command": ["sh", "-c", "echo GREETING=$GREETING; echo POD=$POD_NAME IP=$POD_IP; cat /etc/cfg/file.txt; echo; exec sleep 3600"],
             "env": [
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
             ],
             "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
             "readinessProbe": {"exec": {"command": ["cat", "/etc/cfg/file.txt"]}, "periodSeconds": 1}},
            {"name": "side", "image": IMAGE, "command": ["sleep", "3600"]}
        ],
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]
    })))
    .await;
    let agent = w.start_agent();
    let p = w
        .wait_pod("web", "Running with both containers ready", 60, |p| {
            p["status"]["phase"] == "Running"
                && container_status(p, "app")["ready"] == true
                && container_status(p, "side")["ready"] == true
        })
        .await;
    let ip = p["status"]["podIP"].as_str().expect("a pod IP");
    assert!(
        ip.starts_with("10.126."),
        "the pod is on the test network: {ip}"
    );
    assert_eq!(agent.pod_ip("default", "web").unwrap().to_string(), ip);
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert_eq!(p["status"]["hostIP"], agent.host_ip().to_string());
    let ready = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");

    // One network namespace for both, not the host's.
    let app = agent.container_id("default", "web", Some("app")).unwrap();
    let side = agent.container_id("default", "web", Some("side")).unwrap();
    assert_eq!(
        container_status(&p, "app")["containerID"],
        format!("corral://{app}")
    );
    let (a, s) = (netns_of(&w.engine, &app), netns_of(&w.engine, &side));
    assert_eq!(a, s, "the pod's containers share a network namespace");
    assert_ne!(
        a,
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .to_string_lossy()
    );
    match agent.container_id("default", "web", None) {
        Err(NodeError::ContainerNotChosen { containers, .. }) => {
            assert_eq!(containers, ["app", "side"])
        }
        other => panic!("no container named in a two-container pod: {other:?}"),
    }

    // What it printed: the environment and the mounted file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let l = log_of(&w.root, &app);
        if l.contains("content-of-file") || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(log.contains("GREETING=hello"), "{log}");
    assert!(log.contains(&format!("POD=web IP={ip}")), "{log}");
    assert!(log.contains("content-of-file"), "{log}");

    // The Node, its Lease and the pod's events.
    let node = w
        .get(&registry::key("", "nodes", None, NODE))
        .await
        .expect("the Node");
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], NODE);
    assert!(node["status"]["capacity"]["memory"]
        .as_str()
        .unwrap()
        .ends_with("Ki"));
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.37.0");
    let lease = w
        .get(&registry::key(
            "coordination.k8s.io",
            "leases",
            Some("kube-node-lease"),
            NODE,
        ))
        .await
        .expect("the Lease");
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
    let events = w
        .store
        .range(RangeRequest {
            prefix: registry::prefix("", "events", Some("default")),
            ..Default::default()
        })
        .await
        .unwrap();
    let reasons: Vec<String> = events
        .kvs
        .iter()
        .filter_map(registry::decode)
        .map(|e| e["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    for r in ["Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|x| x == r), "event {r} in {reasons:?}");
    }

    // A new agent adopts what runs: same containers, no restart.
    let pid = w.engine.containers().unwrap().load(&app).unwrap().pid;
    w.stop_agent().await;
    let agent = w.start_agent();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = w.pod("web").await.unwrap();
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(
        agent.container_id("default", "web", Some("app")).unwrap(),
        app
    );
    assert_eq!(w.engine.containers().unwrap().load(&app).unwrap().pid, pid);
    assert_eq!(container_status(&p, "app")["restartCount"], 0);
    assert_eq!(w.engine_objects(&u), (1, 2), "no duplicate");
    w.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_container_restarts_into_crash_loop_back_off() {
    if skip("failing_container_restarts_into_crash_loop_back_off") {
        return;
    }
    let mut w = World::new("crash");
    let u = uid();
    w.put("", "pods", Some("default"), &pod("crash", &u, json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "bad", "image": IMAGE, "command": ["sh", "-c", "echo boom; exit 1"]}]
    })))
    .await;
    let agent = w.start_agent();
    let p = w
        .wait_pod("crash", "CrashLoopBackOff", 60, |p| {
            container_status(p, "bad")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
        .await;
    let st = container_status(&p, "bad");
    assert!(st["restartCount"].as_i64().unwrap() >= 1, "{st}");
    assert!(
        st["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "restarting failed container=bad pod=crash_default({u})"
            )),
        "{st}"
    );
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(st["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(p["status"]["phase"], "Running");
    // After the 10 s back-off, another restart.
    let p = w
        .wait_pod("crash", "a second restart", 40, |p| {
            container_status(p, "bad")["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 2
        })
        .await;
    let cur = agent.container_id("default", "crash", None).unwrap();
    let prev = agent
        .previous_container_id("default", "crash", None)
        .unwrap();
    assert_ne!(cur, prev);
    assert!(log_of(&w.root, &prev).contains("boom"));
    let (_, containers) = w.engine_objects(&u);
    assert!(
        containers <= 2,
        "only the latest run and the one before are kept: {containers}"
    );
    assert!(
        container_status(&p, "bad")["state"]["running"].is_object()
            || container_status(&p, "bad")["state"]["waiting"].is_object()
            || container_status(&p, "bad")["state"]["terminated"].is_object()
    );
    w.stop_agent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_deletion_removes_the_pod_and_its_key() {
    if skip("graceful_deletion_removes_the_pod_and_its_key") {
        return;
    }
    let mut w = World::new("delete");
    let u = uid();
    w.put("", "pods", Some("default"), &pod("gone", &u, json!({
        "terminationGracePeriodSeconds": 30,
        "containers": [{"name": "c", "image": IMAGE,
            "command": ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.2; done"],
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    })))
    .await;
    w.start_agent();
    w.wait_pod("gone", "Running", 60, |p| p["status"]["phase"] == "Running")
        .await;
    assert_eq!(w.engine_objects(&u), (1, 1));
    let pod_dir = w.root.join("kubelet/pods").join(&u);
    assert!(pod_dir.is_dir());
    // What the API server does on DELETE with a grace period.
    let key = registry::key("", "pods", Some("default"), "gone");
    loop {
        let kv = w.store.get(&key).await.unwrap().unwrap();
        let mut v = registry::decode(&kv).unwrap();
        v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        v["metadata"]["deletionGracePeriodSeconds"] = json!(5);
        if w.store
            .update(&key, registry::encode(&v), kv.mod_revision)
            .await
            .is_ok()
        {
            break;
        }
    }
    let t0 = Instant::now();
    while w.store.get(&key).await.unwrap().is_some() {
        assert!(t0.elapsed() < Duration::from_secs(20), "the key is deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the container ended at SIGTERM, not at the grace period's end"
    );
    assert_eq!(
        w.engine_objects(&u),
        (0, 0),
        "no engine pod or container left"
    );
    assert!(!pod_dir.exists(), "the pod's volumes are gone");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(&u), "no mount of the pod left");
    w.stop_agent().await;
    let _ = std::io::stderr().flush();
}
