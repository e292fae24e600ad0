//! End-to-end tests of `corral serve`, driven as a Kubernetes user drives a cluster: with the
//! real `kubectl` and the official Python client (both from `.venv`, installed by
//! `scripts/setup.sh`), over HTTPS with the kubeconfig serve writes. What they check is what
//! a user checks: the pod's container runs with its env and mounted files, `kubectl logs` and
//! `exec` reach it, deletion ends it, bad input is refused with Kubernetes' status, and a
//! `kill -9` of the server neither stops nor restarts a pod.
//!
//! Each test runs its own server on a port of its own, in its own world; the guard deletes
//! every pod through the API, stops the server and removes what is left.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_e2e::serve::{venv_bin, Serve};
use corral_e2e::{report_skip, unique_name};

const POD: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello-from-configmap
  file.txt: file-contents
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "echo started $GREETING $POD_NAME; trap 'exit 0' TERM; while :; do sleep 0.2; done"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef: {name: settings, key: greeting}
    - name: POD_NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
  - name: side
    image: busybox:test
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"]
  volumes:
  - name: cfg
    configMap: {name: settings}
"#;

#[test]
fn kubectl_runs_watches_debugs_and_deletes_a_pod() {
    let Some(s) = Serve::start("kubectl_runs_watches_debugs_and_deletes_a_pod") else {
        return;
    };
    let out = s.apply(POD, &[]);
    assert!(out.contains("pod/web created"), "{out}");
    s.wait_ready("default", "web");

    let table = s.ok(&["get", "pods"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no row for web:\n{table}"));
    assert!(row.contains("2/2") && row.contains("Running"), "{table}");
    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("NODE") && wide.contains(&format!("node-{}", s.port)),
        "{wide}"
    );

    let pod = s.json(&["get", "pod", "web"]);
    let ip = pod["status"]["podIP"].as_str().unwrap_or("");
    assert!(!ip.is_empty(), "no podIP: {pod}");
    assert_eq!(pod["status"]["phase"], "Running");

    let logs = s.ok(&["logs", "web", "-c", "main"]);
    assert!(
        logs.contains("started hello-from-configmap web"),
        "logs: {logs}"
    );
    let file = s.ok(&[
        "exec",
        "web",
        "-c",
        "main",
        "--",
        "cat",
        "/etc/cfg/file.txt",
    ]);
    assert_eq!(file.trim(), "file-contents");
    // Both containers share one network namespace.
    let a = s.ok(&[
        "exec",
        "web",
        "-c",
        "main",
        "--",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    let b = s.ok(&[
        "exec",
        "web",
        "-c",
        "side",
        "--",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(a, b);
    let code = s.kubectl(&["exec", "web", "-c", "main", "--", "sh", "-c", "exit 3"]);
    assert_eq!(
        code.status.code(),
        Some(3),
        "kubectl exec passes the exit code on"
    );

    let sel = s.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(sel.trim(), "pod/web");
    let none = s.ok(&["get", "pods", "-l", "app!=web", "-o", "name"]);
    assert!(none.trim().is_empty(), "{none}");
    let by_field = s.ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]);
    assert!(by_field.contains("pod/web"), "{by_field}");

    s.ok(&["label", "pod", "web", "tier=front"]);
    s.ok(&["annotate", "pod", "web", "note=yes"]);
    let pod = s.json(&["get", "pod", "web"]);
    assert_eq!(pod["metadata"]["labels"]["tier"], "front");
    assert_eq!(pod["metadata"]["annotations"]["note"], "yes");

    let described = s.ok(&["describe", "pod", "web"]);
    assert!(
        described.contains("Scheduled") && described.contains("Started"),
        "{described}"
    );

    s.ok(&["delete", "pod", "web", "--wait=true", "--timeout=60s"]);
    let gone = s.kubectl(&["get", "pod", "web"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{:?}",
        gone
    );
    let left = s.world.ok(&["ps", "-aq"]);
    assert!(
        left.trim().is_empty(),
        "containers left after delete: {left}"
    );
}

#[test]
fn bad_input_gets_kubernetes_statuses() {
    let Some(s) = Serve::start("bad_input_gets_kubernetes_statuses") else {
        return;
    };
    let o = s.kubectl(&["--token", "wrong", "get", "pods"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );

    let bad_field = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: c, image: busybox:test, bogus: 1}]\n";
    let o = s.kubectl_in(&["apply", "-f", "-"], bad_field);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unknown field \"spec.containers[0].bogus\""),
        "{err}"
    );

    let bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n";
    let o = s.kubectl_in(&["create", "-f", "-"], bad_name);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is invalid") && err.contains("RFC 1123"),
        "{err}"
    );

    let o = s.kubectl(&[
        "-n",
        "nowhere",
        "create",
        "configmap",
        "x",
        "--from-literal=a=b",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");

    s.ok(&["create", "configmap", "dup", "--from-literal=a=b"]);
    let o = s.kubectl(&["create", "configmap", "dup", "--from-literal=a=b"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("configmaps \"dup\" already exists"), "{err}");

    // A pod that asks for more memory than the node has stays Pending, and says why.
    let big = "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers: [{name: c, image: busybox:test, resources: {requests: {memory: 100Ti}}}]\n";
    s.apply(big, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ev = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=big",
        ]);
        if ev.contains("FailedScheduling") && ev.contains("Insufficient memory") {
            break;
        }
        assert!(Instant::now() < deadline, "no FailedScheduling event: {ev}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pod = s.json(&["get", "pod", "big"]);
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(
        s.world.ok(&["ps", "-aq"]).trim().is_empty(),
        "nothing ran for the unschedulable pod"
    );
}

#[test]
fn namespaces_empty_when_deleted_and_configmaps_patch() {
    let Some(s) = Serve::start("namespaces_empty_when_deleted_and_configmaps_patch") else {
        return;
    };
    let ns = unique_name("ns");
    s.ok(&["create", "namespace", &ns]);
    s.ok(&[
        "-n",
        &ns,
        "create",
        "configmap",
        "one",
        "--from-literal=k=v",
    ]);
    let sa = s.json(&["-n", &ns, "get", "serviceaccount", "default"]);
    assert_eq!(
        sa["metadata"]["name"], "default",
        "every namespace gets a default service account"
    );
    s.ok(&[
        "-n",
        &ns,
        "patch",
        "configmap",
        "one",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"w","n":"1"}}"#,
    ]);
    s.ok(&[
        "-n",
        &ns,
        "patch",
        "configmap",
        "one",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/n"}]"#,
    ]);
    let cm = s.json(&["-n", &ns, "get", "configmap", "one"]);
    assert_eq!(cm["data"], serde_json::json!({"k": "w"}));
    // Server-side apply: creates, then owns its fields.
    let applied = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: two, namespace: {ns}}}\ndata: {{a: '1'}}\n");
    s.apply(&applied, &["--server-side"]);
    let two = s.json(&[
        "-n",
        &ns,
        "get",
        "configmap",
        "two",
        "--show-managed-fields",
    ]);
    assert_eq!(two["data"]["a"], "1");
    assert!(
        two["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|m| m.iter().any(|f| f["operation"] == "Apply")),
        "{two}"
    );

    s.ok(&["delete", "namespace", &ns, "--wait=true", "--timeout=60s"]);
    let o = s.kubectl(&["get", "namespace", &ns]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("NotFound"));
    let o = s.kubectl(&["-n", &ns, "get", "configmap", "one"]);
    assert!(!o.status.success());
}

#[test]
fn kill_9_of_serve_neither_stops_nor_restarts_pods() {
    let Some(mut s) = Serve::start("kill_9_of_serve_neither_stops_nor_restarts_pods") else {
        return;
    };
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: steady}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: busybox:test, command: [sh, -c, \"trap 'exit 0' TERM; while :; do sleep 0.2; done\"]}]\n";
    s.apply(pod, &[]);
    s.wait_ready("default", "steady");
    let before = s.json(&["get", "pod", "steady"]);
    let cid = before["status"]["containerStatuses"][0]["containerID"].clone();
    s.kill9();
    // The pod's container runs on without the server.
    let running = s.world.ok(&["ps", "-q"]);
    assert!(
        !running.trim().is_empty(),
        "the pod's container stopped with the server"
    );
    s.spawn();
    s.wait_ready("default", "steady");
    std::thread::sleep(Duration::from_secs(2));
    let after = s.json(&["get", "pod", "steady"]);
    assert_eq!(
        after["status"]["containerStatuses"][0]["containerID"], cid,
        "adopted, not started again"
    );
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
}

#[test]
fn python_client_creates_lists_watches_patches_and_deletes() {
    let Some(s) = Serve::start("python_client_creates_lists_watches_patches_and_deletes") else {
        return;
    };
    if venv_bin("python3").is_none() {
        report_skip(
            "python_client_creates_lists_watches_patches_and_deletes",
            "no .venv python",
        );
        return;
    }
    let script = r#"
import sys, threading
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"made": "py"}), data={"a": "1"})
created = v1.create_namespaced_config_map("default", cm)
rv = created.metadata.resource_version
names = [c.metadata.name for c in v1.list_namespaced_config_map("default", label_selector="made=py").items]
assert names == ["py"], names
v1.patch_namespaced_config_map("py", "default", {"data": {"a": "2"}})
v1.delete_namespaced_config_map("py", "default")
w = watch.Watch()
seen = []
for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5):
    seen.append((ev["type"], ev["object"].metadata.name))
    if ev["type"] == "DELETED":
        w.stop()
assert seen == [("MODIFIED", "py"), ("DELETED", "py")], seen
try:
    v1.read_namespaced_config_map("py", "default")
    sys.exit("still there")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status
print("ok")
"#;
    s.python(script);
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let Some(s) = Serve::start("a_failing_liveness_probe_restarts_the_container") else {
        return;
    };
    // The preStop hook runs before the restart's SIGTERM, as for a deleted pod.
    let dir = s.world.path("liveness-out");
    std::fs::create_dir_all(&dir).unwrap();
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{{name: out, hostPath: {{path: {dir:?}}}}}]
  containers:
  - name: c
    image: busybox:test
    volumeMounts: [{{name: out, mountPath: /out}}]
    command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; trap 'echo term >> /out/log; exit 0' TERM; while :; do sleep 0.2; done"]
    lifecycle:
      preStop:
        exec: {{command: ["sh", "-c", "echo prestop >> /out/log"]}}
    livenessProbe:
      exec: {{command: ["cat", "/tmp/healthy"]}}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 1
"#
    );
    s.apply(&pod, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = s.json(&["get", "pod", "probed"]);
        if p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no restart after the probe failed: {p}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let ev = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probed",
    ]);
    assert!(ev.contains("Unhealthy") && ev.contains("Killing"), "{ev}");
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert!(
        log.starts_with("prestop\nterm\n"),
        "the preStop hook did not run before the restart's SIGTERM: {log:?}"
    );
    s.ok(&["delete", "pod", "probed", "--wait=true", "--timeout=60s"]);
}

#[test]
fn kubectl_edit_secrets_from_files_and_get_watch_work() {
    let Some(s) = Serve::start("kubectl_edit_secrets_from_files_and_get_watch_work") else {
        return;
    };
    // `create secret --from-file`: the file's bytes, base64 in data, under the file's key.
    let file = s.world.path("token.txt");
    std::fs::write(&file, "s3cr3t-from-a-file\n").unwrap();
    let from = format!("--from-file=token.txt={}", file.display());
    s.ok(&["create", "secret", "generic", "creds", &from]);
    let data = s.ok(&[
        "get",
        "secret",
        "creds",
        "-o",
        "jsonpath={.data.token\\.txt}",
    ]);
    let decoded = Command::new("sh")
        .args(["-c", "printf %s \"$1\" | base64 -d", "sh", data.trim()])
        .output()
        .expect("base64 -d");
    assert_eq!(decoded.stdout, b"s3cr3t-from-a-file\n", "data: {data}");

    // `kubectl get -w` prints the objects as they change.
    let mut watch = Command::new(venv_bin("kubectl").unwrap())
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let out = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    s.ok(&["create", "configmap", "watched", "--from-literal=a=1"]);

    // `kubectl edit` through an EDITOR script changes the object.
    let editor = s.world.path("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/a: \"1\"/a: \"2\"/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = Command::new(venv_bin("kubectl").unwrap())
        .args(["edit", "configmap", "watched"])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("KUBE_EDITOR", &editor)
        .output()
        .expect("kubectl edit");
    assert!(
        o.status.success(),
        "kubectl edit: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        s.ok(&["get", "configmap", "watched", "-o", "jsonpath={.data.a}"]),
        "2"
    );
    s.ok(&["delete", "configmap", "watched"]);

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l: &String| {
        l.starts_with("DELETED") && l.split_whitespace().nth(1) == Some("watched")
    }) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    let _ = Command::new("kill").arg(watch.id().to_string()).status();
    let _ = watch.wait();
    let _ = reader.join();
    let events: Vec<&str> = seen
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("watched"))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        events,
        ["ADDED", "MODIFIED", "DELETED"],
        "kubectl get -w printed: {seen:?}"
    );
}
