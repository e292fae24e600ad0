//! End-to-end tests of StatefulSets and DaemonSets on `corral serve`, driven with the real
//! `kubectl`: a StatefulSet makes `web-0`, `web-1` in order, each with its own claim whose
//! data outlives the pod (a deleted pod comes back under its name with its data), scales up
//! and down from the highest ordinal, rolls a new template out in reverse order, and leaves
//! its claims when deleted, and goes back a revision with `rollout undo`; a DaemonSet runs one
//! pod on the node, replaces a deleted one, rolls out a new template and back. Bad sets get
//! 422.

use std::time::{Duration, Instant};

use corral_e2e::serve::Serve;
use serde_json::Value;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn items(s: &Serve, args: &[&str]) -> Vec<Value> {
    s.json(args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(s: &Serve, selector: &str) -> Vec<String> {
    let mut v: Vec<String> = items(s, &["get", "pods", "-l", selector])
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

fn rolled_out(s: &Serve, what: &str) {
    let o = s.kubectl(&["rollout", "status", what, "--timeout=180s"]);
    assert!(
        o.status.success(),
        "rollout of {what} did not finish: {}{}\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        s.ok(&["get", "sts,ds,pods,pvc", "-o", "wide"]),
        s.ok(&["get", "events", "--sort-by=.lastTimestamp"]),
        s.log(),
    );
}

fn stateful(version: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: {replicas}
  selector:
    matchLabels: {{app: db}}
  template:
    metadata:
      labels: {{app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        env: [{{name: VERSION, value: "{version}"}}]
        command: ["sh", "-c", "[ -f /data/id ] || echo $(hostname) > /data/id; echo $VERSION > /tmp/version; exec sleep 100000"]
        readinessProbe:
          exec: {{command: ["cat", "/data/id"]}}
          periodSeconds: 1
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 16Mi}}}}
"#
    )
}

#[test]
fn a_stateful_set_keeps_names_order_and_data() {
    let Some(s) = Serve::start("a_stateful_set_keeps_names_order_and_data") else {
        return;
    };
    // The headless Service that names the set's pods.
    s.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: None\n  selector: {app: db}\n",
        &[],
    );
    s.apply(&stateful("v1", 2), &[]);
    rolled_out(&s, "statefulset/web");
    assert_eq!(names(&s, "app=db"), ["web-0", "web-1"]);
    // Each pod by its own name, and the service's name to all of them.
    let ip = |p: &str| {
        s.json(&["get", "pod", p])["status"]["podIP"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let (ip0, ip1) = (ip("web-0"), ip("web-1"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // (busybox's nslookup does not try the search domains: the full name)
        let o = s.kubectl(&[
            "exec",
            "web-1",
            "--",
            "nslookup",
            "web-0.web.default.svc.cluster.local",
        ]);
        let answer = String::from_utf8_lossy(&o.stdout).into_owned();
        if answer.contains(&ip0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web-0.web.default.svc.cluster.local is not {ip0} in DNS: {answer}{}\n{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            s.ok(&["get", "endpointslices", "-o", "yaml"]),
            s.ok(&["exec", "web-1", "--", "cat", "/etc/resolv.conf"]),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let all = s.ok(&[
        "exec",
        "web-0",
        "--",
        "nslookup",
        "web.default.svc.cluster.local",
    ]);
    assert!(all.contains(&ip0) && all.contains(&ip1), "{all}");
    // web-1 was made only once web-0 was Ready.
    let pods = items(&s, &["get", "pods", "-l", "app=db"]);
    let created = |n: &str| {
        pods.iter()
            .find(|p| p["metadata"]["name"] == n)
            .and_then(|p| p["metadata"]["creationTimestamp"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let ready_at = pods
        .iter()
        .find(|p| p["metadata"]["name"] == "web-0")
        .and_then(|p| {
            p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?["lastTransitionTime"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default();
    assert!(
        created("web-1") >= ready_at,
        "web-1 made before web-0 was Ready"
    );
    let table = s.ok(&["get", "sts", "web"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("2/2")),
        "{table}"
    );
    // Each pod has its own claim, and its own data.
    let claims: Vec<String> = items(&s, &["get", "pvc"])
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        claims.contains(&"data-web-0".to_string()) && claims.contains(&"data-web-1".to_string()),
        "{claims:?}"
    );
    assert_eq!(
        s.ok(&["exec", "web-0", "--", "cat", "/data/id"]).trim(),
        "web-0"
    );
    assert_eq!(
        s.ok(&["exec", "web-1", "--", "cat", "/data/id"]).trim(),
        "web-1"
    );
    s.ok(&["exec", "web-0", "--", "sh", "-c", "echo kept > /data/note"]);

    // A deleted pod comes back under its name, with its data.
    let uid0 = s.json(&["get", "pod", "web-0"])["metadata"]["uid"].clone();
    s.ok(&["delete", "pod", "web-0", "--wait=false"]);
    wait_for("web-0 to come back", Duration::from_secs(120), || {
        // Between the deletion and the controller's new pod there is no web-0.
        let Some(p) = s.try_json(&["get", "pod", "web-0"]) else {
            return false;
        };
        p["metadata"]["uid"] != uid0
            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    });
    assert_eq!(
        s.ok(&["exec", "web-0", "--", "cat", "/data/note"]).trim(),
        "kept"
    );
    assert_eq!(s.ok(&["exec", "web-0", "--", "hostname"]).trim(), "web-0");

    // Scaled up: web-2; scaled down: the highest ordinals go, their claims stay.
    s.ok(&["scale", "statefulset", "web", "--replicas=3"]);
    rolled_out(&s, "statefulset/web");
    assert_eq!(names(&s, "app=db"), ["web-0", "web-1", "web-2"]);
    s.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    wait_for("scale down to web-0", Duration::from_secs(120), || {
        names(&s, "app=db") == ["web-0"]
    });
    let claims = items(&s, &["get", "pvc"]).len();
    assert_eq!(claims, 3, "{}", s.ok(&["get", "pvc"]));
    s.ok(&["scale", "statefulset", "web", "--replicas=2"]);
    rolled_out(&s, "statefulset/web");
    assert_eq!(
        s.ok(&["exec", "web-1", "--", "cat", "/data/id"]).trim(),
        "web-1",
        "web-1 came back without its claim's data"
    );

    // A new template rolls out, highest ordinal first.
    s.apply(&stateful("v2", 2), &[]);
    rolled_out(&s, "statefulset/web");
    for p in ["web-0", "web-1"] {
        assert_eq!(s.ok(&["exec", p, "--", "cat", "/tmp/version"]).trim(), "v2");
    }
    let sts = s.json(&["get", "sts", "web"]);
    assert_eq!(
        sts["status"]["currentRevision"], sts["status"]["updateRevision"],
        "{sts}"
    );
    assert_eq!(sts["status"]["updatedReplicas"], 2, "{sts}");

    // Each template is a revision: history lists both, undo goes back to v1 (its revision
    // becoming the third), and the revisions belong to the set.
    let history = s.ok(&["rollout", "history", "statefulset/web"]);
    let revisions = |h: &str| -> Vec<String> {
        h.lines()
            .skip_while(|l| !l.starts_with("REVISION"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    assert_eq!(revisions(&history), ["1", "2"], "{history}");
    let shown = s.ok(&["rollout", "history", "statefulset/web", "--revision=1"]);
    assert!(
        shown.contains("VERSION:") && shown.contains("v1"),
        "{shown}"
    );
    let o = s.ok(&["rollout", "undo", "statefulset/web"]);
    assert!(o.contains("rolled back"), "{o}");
    rolled_out(&s, "statefulset/web");
    for p in ["web-0", "web-1"] {
        assert_eq!(s.ok(&["exec", p, "--", "cat", "/tmp/version"]).trim(), "v1");
    }
    let history = s.ok(&["rollout", "history", "statefulset/web"]);
    assert_eq!(revisions(&history), ["2", "3"], "{history}");
    let table = s.ok(&["get", "controllerrevisions"]);
    assert!(
        table.lines().any(|l| l.contains("statefulset.apps/web")),
        "{table}"
    );
    let o = s.kubectl(&["rollout", "undo", "statefulset/web", "--to-revision=9"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unable to find specified revision 9"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // What may not change is refused.
    let o = s.kubectl(&[
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"serviceName":"other"}}"#,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Forbidden: updates to statefulset spec"));
    let bad = stateful("v1", 1)
        .replace("matchLabels: {app: db}", "matchLabels: {app: other}")
        .replace("name: web\n", "name: bad\n");
    let o = s.kubectl_in(&["apply", "-f", "-"], &bad);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`selector` does not match template `labels`")
    );

    // whenScaled: Delete: scaled down, the claims above the replicas go (web-2's too, left by
    // the earlier scale-down).
    s.ok(&[
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}"#,
    ]);
    s.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    wait_for(
        "the claims above web-0 to go",
        Duration::from_secs(120),
        || names(&s, "app=db") == ["web-0"] && items(&s, &["get", "pvc"]).len() == 1,
    );
    let left = s.ok(&["get", "pvc", "-o", "name"]);
    assert_eq!(left.trim(), "persistentvolumeclaim/data-web-0");

    // Deleted: the pods go, the claims stay (whenDeleted: Retain).
    s.ok(&["delete", "sts", "web", "--wait=true", "--timeout=60s"]);
    wait_for("the set's pods to go", Duration::from_secs(90), || {
        names(&s, "app=db").is_empty()
    });
    assert_eq!(items(&s, &["get", "pvc"]).len(), 1);
    wait_for("the set's revisions to go", Duration::from_secs(60), || {
        items(&s, &["get", "controllerrevisions"]).is_empty()
    });
    s.ok(&["delete", "pvc", "--all", "--wait=true", "--timeout=60s"]);
    s.ok(&["delete", "service", "web"]);
}

const DAEMON: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        env: [{name: VERSION, value: "VER"}]
        command: ["sh", "-c", "echo $VERSION > /tmp/version; exec sleep 100000"]
        readinessProbe:
          exec: {command: ["cat", "/tmp/version"]}
          periodSeconds: 1
"#;

#[test]
fn a_daemon_set_runs_one_pod_per_node() {
    let Some(s) = Serve::start("a_daemon_set_runs_one_pod_per_node") else {
        return;
    };
    s.apply(&DAEMON.replace("VER", "v1"), &[]);
    rolled_out(&s, "daemonset/agent");
    let nodes = items(&s, &["get", "nodes"]);
    let pods = items(&s, &["get", "pods", "-l", "app=agent"]);
    assert_eq!(pods.len(), nodes.len(), "one pod per node");
    let node = nodes[0]["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(pods[0]["spec"]["nodeName"], node.as_str());
    let table = s.ok(&["get", "ds", "agent"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agent ") && l.split_whitespace().nth(1) == Some("1")),
        "{table}"
    );
    // A deleted pod is replaced.
    let first = names(&s, "app=agent");
    s.ok(&["delete", "pod", &first[0], "--wait=false"]);
    wait_for("a replacement daemon pod", Duration::from_secs(90), || {
        let now = names(&s, "app=agent");
        now.len() == 1 && now != first
    });
    rolled_out(&s, "daemonset/agent");
    // A new template replaces it.
    s.apply(&DAEMON.replace("VER", "v2"), &[]);
    rolled_out(&s, "daemonset/agent");
    let p = names(&s, "app=agent");
    assert_eq!(p.len(), 1);
    assert_eq!(
        s.ok(&["exec", &p[0], "--", "cat", "/tmp/version"]).trim(),
        "v2"
    );
    // And back, by its history.
    let history = s.ok(&["rollout", "history", "daemonset/agent"]);
    assert!(history.contains("REVISION"), "{history}");
    assert_eq!(
        history
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2,
        "{history}"
    );
    s.ok(&["rollout", "undo", "daemonset/agent"]);
    rolled_out(&s, "daemonset/agent");
    wait_for("the v1 pod back", Duration::from_secs(90), || {
        let p = names(&s, "app=agent");
        p.len() == 1
            && s.kubectl(&["exec", &p[0], "--", "cat", "/tmp/version"])
                .stdout
                .starts_with(b"v1")
    });
    // A node selector no node matches: no pod.
    s.ok(&[
        "patch",
        "ds",
        "agent",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"ssd"}}}}}"#,
    ]);
    wait_for("the daemon pod to go", Duration::from_secs(90), || {
        names(&s, "app=agent").is_empty()
    });
    let ds = s.json(&["get", "ds", "agent"]);
    assert_eq!(ds["status"]["desiredNumberScheduled"], 0, "{ds}");
    s.ok(&["delete", "ds", "agent", "--wait=true", "--timeout=60s"]);
}
