//! End-to-end tests of the workload controllers of `corral serve`, driven with the real
//! `kubectl` and the Python client as a user drives a cluster: a Deployment keeps its
//! replicas (a deleted pod is replaced), scales, rolls out a new image and a new setting
//! without going below its replicas, goes back with `rollout undo`, pauses and resumes, and
//! deleting it removes its ReplicaSets and pods. Bad input is refused with Kubernetes' 422.

use std::time::{Duration, Instant};

use corral_e2e::serve::Serve;
use serde_json::Value;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: first version
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        env:
        - {name: VERSION, value: v1}
        command: ["sh", "-c", "mkdir -p /www && echo $VERSION > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          httpGet: {path: /index.html, port: 8080}
          periodSeconds: 1
"#;

fn pods(s: &Serve, selector: &str) -> Vec<Value> {
    let v = s.json(&["get", "pods", "-l", selector]);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }) && p["metadata"]["deletionTimestamp"].is_null()
}

/// Waits for `kubectl rollout status` to say the rollout finished.
fn rolled_out(s: &Serve, what: &str) {
    let o = s.kubectl(&["rollout", "status", what, "--timeout=180s"]);
    assert!(
        o.status.success(),
        "rollout of {what} did not finish: {}{}\n{}\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        s.ok(&["get", "deploy,rs,pods", "-o", "wide"]),
        s.ok(&["get", "events", "--sort-by=.lastTimestamp"]),
        s.ok(&["get", "pods", "-o", "yaml"]),
        s.log(),
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("successfully rolled out"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What each Ready pod of the deployment serves, read inside it.
fn versions(s: &Serve) -> Vec<String> {
    pods(s, "app=web")
        .iter()
        .filter(|p| ready(p))
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("");
            s.ok(&["exec", name, "--", "cat", "/www/index.html"])
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn a_deployment_keeps_scales_rolls_out_and_undoes() {
    let Some(s) = Serve::start("a_deployment_keeps_scales_rolls_out_and_undoes") else {
        return;
    };
    let out = s.apply(DEPLOYMENT, &[]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    rolled_out(&s, "deployment/web");
    let table = s.ok(&["get", "deployment", "web"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("3/3")),
        "{table}"
    );
    // One ReplicaSet, named by its template's hash, owning three pods.
    let rs = s.json(&["get", "rs", "-l", "app=web"]);
    let sets = rs["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(sets.len(), 1, "{rs}");
    let hash = sets[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(
        sets[0]["metadata"]["name"].as_str(),
        Some(format!("web-{hash}").as_str())
    );
    let ps = pods(&s, "app=web");
    assert_eq!(ps.len(), 3);
    for p in &ps {
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash.as_str());
    }
    assert_eq!(versions(&s), vec!["v1"; 3]);

    // A deleted pod is replaced by a new one.
    let victim = ps[0]["metadata"]["name"].as_str().unwrap().to_string();
    s.ok(&["delete", "pod", &victim, "--wait=false"]);
    wait_for("a replacement pod", Duration::from_secs(120), || {
        let now = pods(&s, "app=web");
        now.iter().filter(|p| ready(p)).count() == 3
            && now
                .iter()
                .all(|p| p["metadata"]["name"].as_str() != Some(victim.as_str()))
    });

    // kubectl scale, up and down, through the scale subresource.
    s.ok(&["scale", "deployment/web", "--replicas=5"]);
    rolled_out(&s, "deployment/web");
    wait_for("5 ready pods", Duration::from_secs(60), || {
        pods(&s, "app=web").iter().filter(|p| ready(p)).count() == 5
    });
    s.ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_for("2 pods", Duration::from_secs(60), || {
        pods(&s, "app=web").len() == 2
    });

    // The Python client reads and writes the same scale.
    s.python(
        r#"
import sys
from kubernetes import client, config
config.load_kube_config(sys.argv[1])
apps = client.AppsV1Api()
sc = apps.read_namespaced_deployment_scale("web", "default")
assert sc.spec.replicas == 2, sc
assert sc.status.selector == "app=web", sc.status.selector
apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
assert apps.read_namespaced_deployment("web", "default").spec.replicas == 3
print("ok")
"#,
    );
    rolled_out(&s, "deployment/web");

    // A new setting rolls out; with maxUnavailable 0 the ready pods never drop below 3.
    s.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=second version",
        "--overwrite",
    ]);
    s.ok(&["set", "env", "deployment/web", "VERSION=v2"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut lowest = usize::MAX;
    loop {
        let d = s.json(&["get", "deployment", "web"]);
        let ps = pods(&s, "app=web");
        lowest = lowest.min(ps.iter().filter(|p| ready(p)).count());
        let st = &d["status"];
        if d["metadata"]["generation"] == st["observedGeneration"]
            && st["updatedReplicas"] == 3
            && st["availableReplicas"] == 3
            && st["replicas"] == 3
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollout to v2 did not finish: {d}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rolled_out(&s, "deployment/web");
    assert!(
        lowest >= 3,
        "ready pods dropped to {lowest} during the rollout"
    );
    wait_for("only v2 pods", Duration::from_secs(60), || {
        pods(&s, "app=web").len() == 3
    });
    assert_eq!(versions(&s), vec!["v2"; 3]);
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("first version") && history.contains("second version"),
        "{history}"
    );

    // kubectl set image: a new image is a new revision too.
    s.world.ok(&["tag", "busybox:test", "busybox:second"]);
    s.ok(&["set", "image", "deployment/web", "main=busybox:second"]);
    rolled_out(&s, "deployment/web");
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:second"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );

    // Undo twice: back to the image, then the setting (revision 2 becomes 4, then 3 is 5).
    s.ok(&["rollout", "undo", "deployment/web"]);
    rolled_out(&s, "deployment/web");
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:test"
    );
    s.ok(&["rollout", "undo", "deployment/web", "--to-revision=1"]);
    rolled_out(&s, "deployment/web");
    wait_for("only v1 pods", Duration::from_secs(60), || {
        pods(&s, "app=web").len() == 3
    });
    assert_eq!(versions(&s), vec!["v1"; 3]);

    // Pause: a change waits; resume: it rolls out. Restart: new pods, same template.
    s.ok(&["rollout", "pause", "deployment/web"]);
    s.ok(&["set", "env", "deployment/web", "VERSION=v3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        versions(&s),
        vec!["v1"; 3],
        "a paused deployment rolled out"
    );
    s.ok(&["rollout", "resume", "deployment/web"]);
    rolled_out(&s, "deployment/web");
    wait_for("only v3 pods", Duration::from_secs(60), || {
        pods(&s, "app=web").len() == 3
    });
    assert_eq!(versions(&s), vec!["v3"; 3]);
    let before: Vec<String> = pods(&s, "app=web")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    s.ok(&["rollout", "restart", "deployment/web"]);
    rolled_out(&s, "deployment/web");
    wait_for("restarted pods", Duration::from_secs(60), || {
        let now = pods(&s, "app=web");
        now.len() == 3
            && now.iter().all(|p| {
                !before.contains(&p["metadata"]["name"].as_str().unwrap_or("").to_string())
            })
    });

    // Deleting the deployment removes its ReplicaSets and pods.
    s.ok(&["delete", "deployment", "web"]);
    wait_for("nothing left of web", Duration::from_secs(60), || {
        pods(&s, "app=web").is_empty()
            && s.json(&["get", "rs", "-l", "app=web"])["items"]
                .as_array()
                .is_some_and(Vec::is_empty)
    });
}

#[test]
fn bad_deployments_are_refused_and_a_missing_image_stalls() {
    let Some(s) = Serve::start("bad_deployments_are_refused_and_a_missing_image_stalls") else {
        return;
    };
    let bad = DEPLOYMENT.replace("labels: {app: web}", "labels: {app: other}");
    let o = s.kubectl_in(&["apply", "-f", "-"], &bad);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    let no_containers = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: empty}
spec:
  selector: {matchLabels: {app: e}}
  template:
    metadata: {labels: {app: e}}
    spec: {containers: []}
"#;
    let o = s.kubectl_in(&["apply", "-f", "-"], no_containers);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("spec.template.spec.containers"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(s.json(&["get", "deploy,rs"])["items"]
        .as_array()
        .is_some_and(Vec::is_empty));

    // The selector may not change.
    s.apply(DEPLOYMENT, &[]);
    rolled_out(&s, "deployment/web");
    let o = s.kubectl(&[
        "patch",
        "deployment/web",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"web","x":"y"}}}}"#,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("field is immutable"));

    // An image that does not exist: the rollout stalls past its deadline, and the old pods
    // keep serving.
    s.ok(&[
        "patch",
        "deployment/web",
        "--type=merge",
        "-p",
        r#"{"spec":{"progressDeadlineSeconds":5}}"#,
    ]);
    s.ok(&[
        "set",
        "image",
        "deployment/web",
        "main=127.0.0.1:1/missing:v9",
    ]);
    let o = s.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d = s.json(&["get", "deployment", "web"]);
    let cond = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned())
        .unwrap_or_default();
    assert_eq!(cond["reason"], "ProgressDeadlineExceeded", "{d}");
    let old_ready = pods(&s, "app=web")
        .iter()
        .filter(|p| ready(p) && p["spec"]["containers"][0]["image"] == "busybox:test")
        .count();
    assert_eq!(old_ready, 3, "the old version stopped serving");
    s.ok(&["delete", "deployment", "web"]);
}

const GUARDED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: guarded
spec:
  replicas: 2
  selector:
    matchLabels: {app: guarded}
  template:
    metadata:
      labels: {app: guarded}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["sleep", "100000"]
"#;

/// POSTs an Eviction of `pod` as `kubectl drain` does.
fn evict(s: &Serve, pod: &str) -> std::process::Output {
    let body = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
    );
    s.kubectl_in(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            "-f",
            "-",
        ],
        &body,
    )
}

#[test]
fn evictions_honour_the_disruption_budget() {
    let Some(s) = Serve::start("evictions_honour_the_disruption_budget") else {
        return;
    };
    s.apply(GUARDED, &[]);
    // As a user makes it (kubectl sends it as protobuf).
    s.ok(&[
        "create",
        "poddisruptionbudget",
        "guarded",
        "--selector=app=guarded",
        "--min-available=2",
    ]);
    rolled_out(&s, "deployment/guarded");
    wait_for("the budget's status", Duration::from_secs(60), || {
        let b = s.json(&["get", "pdb", "guarded"]);
        b["status"]["currentHealthy"] == 2 && b["status"]["expectedPods"] == 2
    });
    let table = s.ok(&["get", "pdb", "guarded"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("guarded ") && l.contains(" 2 ") && l.contains("N/A")),
        "{table}"
    );
    let victim = pods(&s, "app=guarded")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    // Both pods are needed: refused, as Kubernetes refuses it (429), and the pod stays.
    let o = evict(&s, &victim);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert!(s.json(&["get", "pod", &victim])["metadata"]["deletionTimestamp"].is_null());
    // One may go: the eviction deletes it, the budget counts it, the Deployment replaces it.
    s.ok(&[
        "patch",
        "pdb",
        "guarded",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    wait_for("one allowed disruption", Duration::from_secs(60), || {
        s.json(&["get", "pdb", "guarded"])["status"]["disruptionsAllowed"] == 1
    });
    let o = evict(&s, &victim);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_for("the replacement", Duration::from_secs(120), || {
        let now = pods(&s, "app=guarded");
        now.iter().filter(|p| ready(p)).count() == 2
            && now
                .iter()
                .all(|p| p["metadata"]["name"].as_str() != Some(victim.as_str()))
    });
    // Back to needing both: refused again.
    s.ok(&[
        "patch",
        "pdb",
        "guarded",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":2}}"#,
    ]);
    wait_for("no allowed disruption", Duration::from_secs(60), || {
        let b = s.json(&["get", "pdb", "guarded"]);
        b["status"]["disruptionsAllowed"] == 0
            && b["status"]["observedGeneration"] == b["metadata"]["generation"]
    });
    let other = pods(&s, "app=guarded")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let o = evict(&s, &other);
    assert!(!o.status.success(), "an eviction broke the budget");
    s.ok(&["delete", "pdb", "guarded"]);
    s.ok(&["delete", "deployment", "guarded"]);
}

#[test]
fn a_pre_stop_hook_runs_before_the_container_is_stopped() {
    let Some(s) = Serve::start("a_pre_stop_hook_runs_before_the_container_is_stopped") else {
        return;
    };
    let dir = s.world.path("hook-out");
    std::fs::create_dir_all(&dir).unwrap();
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{{name: out, hostPath: {{path: {dir:?}}}}}]
  containers:
  - name: main
    image: busybox:test
    volumeMounts: [{{name: out, mountPath: /out}}]
    command: ["sh", "-c", "trap 'echo term >> /out/log; exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      preStop:
        exec: {{command: ["sh", "-c", "echo prestop >> /out/log"]}}
"#
    );
    s.apply(&pod, &[]);
    s.wait_ready("default", "hooked");
    s.ok(&["delete", "pod", "hooked", "--wait=true", "--timeout=60s"]);
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(
        log, "prestop\nterm\n",
        "the hook did not run before SIGTERM"
    );
}

#[test]
fn post_start_hooks_run_after_the_start_and_a_failing_one_restarts_the_container() {
    let Some(s) = Serve::start(
        "post_start_hooks_run_after_the_start_and_a_failing_one_restarts_the_container",
    ) else {
        return;
    };
    let dir = s.world.path("poststart-out");
    std::fs::create_dir_all(&dir).unwrap();
    let pods = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: started}}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{{name: out, hostPath: {{path: {dir:?}}}}}]
  containers:
  - name: main
    image: busybox:test
    volumeMounts: [{{name: out, mountPath: /out}}]
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "echo poststart >> /out/log"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: refused}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "exit 3"]}}
"#
    );
    s.apply(&pods, &[]);
    s.wait_ready("default", "started");
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert!(log.starts_with("poststart"), "the hook ran once: {log:?}");
    assert_eq!(log.lines().count(), 1, "{log:?}");
    // The failing hook: an event, the container killed and started again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let events = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=refused",
        ]);
        let restarts = s.ok(&[
            "get",
            "pod",
            "refused",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]);
        if events.contains("FailedPostStartHook")
            && restarts.trim().parse::<u32>().unwrap_or(0) >= 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no FailedPostStartHook and restart: {events}\n{restarts}\n{}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
