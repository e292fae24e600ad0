//! End-to-end tests of resource metrics and autoscaling on `corral serve`, driven with the real
//! `kubectl`: `kubectl top nodes` and `kubectl top pods` show what the node agent measures, and
//! a HorizontalPodAutoscaler scales a Deployment up while the test makes one of its pods burn
//! CPU and back down once it stops; an autoscaler whose pods request no CPU says why it
//! cannot act.

use std::time::{Duration, Instant};

use corral_e2e::serve::Serve;
use serde_json::Value;

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels: {app: burn}
  template:
    metadata:
      labels: {app: burn}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        resources:
          requests: {cpu: 100m, memory: 16Mi}
        # Busy while /tmp/burn exists, idle otherwise.
        command: ["sh", "-c", "while true; do if [ -f /tmp/burn ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 1; fi; done"]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: burn
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: 50}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 0
"#;

const NO_REQUESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bare
spec:
  replicas: 1
  selector:
    matchLabels: {app: bare}
  template:
    metadata:
      labels: {app: bare}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["sleep", "100000"]
"#;

fn replicas(s: &Serve) -> i64 {
    s.json(&["get", "deployment", "burn"])["spec"]["replicas"]
        .as_i64()
        .unwrap_or(0)
}

fn condition(h: &Value, ty: &str) -> Value {
    h["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn top_shows_usage_and_an_autoscaler_follows_cpu_load() {
    let Some(s) = Serve::start("top_shows_usage_and_an_autoscaler_follows_cpu_load") else {
        return;
    };
    s.apply(APP, &[]);
    s.apply(NO_REQUESTS, &[]);
    // As a user makes one (kubectl sends it as protobuf).
    s.ok(&[
        "autoscale",
        "deployment",
        "bare",
        "--cpu-percent=50",
        "--max=3",
    ]);
    let o = s.kubectl(&["rollout", "status", "deployment/burn", "--timeout=120s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pod = s.json(&["get", "pods", "-l", "app=burn"])["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();

    // kubectl top, once the agent has read twice.
    let mut top = String::new();
    wait_for("kubectl top pods", Duration::from_secs(60), || {
        let o = s.kubectl(&["top", "pods", "-l", "app=burn"]);
        top = String::from_utf8_lossy(&o.stdout).into_owned();
        o.status.success() && top.contains(&pod)
    });
    assert!(
        top.contains("CPU(cores)") && top.contains("MEMORY(bytes)"),
        "{top}"
    );
    let nodes = s.ok(&["top", "nodes"]);
    let node = s.json(&["get", "nodes"])["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        nodes.contains(&node) && nodes.contains("MEMORY("),
        "{nodes}"
    );
    // Read-only.
    let o = s.kubectl_in(
        &["create", "-f", "-"],
        "apiVersion: metrics.k8s.io/v1beta1\nkind: PodMetrics\nmetadata: {name: x}\ncontainers: []\n",
    );
    assert!(!o.status.success());

    // Load: one pod keeps a CPU busy, ten times its request; the autoscaler goes to its
    // maximum.
    s.ok(&["exec", &pod, "--", "touch", "/tmp/burn"]);
    let started = Instant::now();
    wait_for("a scale-up", Duration::from_secs(120), || replicas(&s) == 3);
    let up = started.elapsed();
    let o = s.kubectl(&["rollout", "status", "deployment/burn", "--timeout=120s"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("scaled to 3 after {:.1} s of load", up.as_secs_f64());
    let hpa = s.json(&["get", "hpa", "burn"]);
    assert_eq!(hpa["status"]["desiredReplicas"], 3, "{hpa}");
    assert!(hpa["status"]["lastScaleTime"].is_string(), "{hpa}");
    assert_eq!(
        condition(&hpa, "ScalingLimited")["reason"],
        "TooManyReplicas",
        "{hpa}"
    );
    let table = s.ok(&["get", "hpa", "burn"]);
    assert!(
        table.contains("Deployment/burn") && table.contains("/50%") && !table.contains("<unknown>"),
        "{table}"
    );
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=burn",
    ]);
    assert!(events.contains("SuccessfulRescale"), "{events}");

    // Load gone: back to the minimum.
    s.ok(&["exec", &pod, "--", "rm", "/tmp/burn"]);
    wait_for("a scale-down", Duration::from_secs(120), || {
        replicas(&s) == 1
    });

    // Pods that request no CPU: the autoscaler says so and leaves the count.
    wait_for(
        "the bare autoscaler's condition",
        Duration::from_secs(60),
        || {
            let h = s.json(&["get", "hpa", "bare"]);
            condition(&h, "ScalingActive")["status"] == "False"
        },
    );
    let h = s.json(&["get", "hpa", "bare"]);
    let c = condition(&h, "ScalingActive");
    assert_eq!(c["reason"], "FailedGetResourceMetric", "{h}");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or("")
            .contains("missing request for cpu"),
        "{h}"
    );
    // A bad autoscaler is refused.
    let o = s.kubectl_in(
        &["apply", "-f", "-"],
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec:\n  scaleTargetRef: {kind: Deployment, name: burn}\n  minReplicas: 5\n  maxReplicas: 2\n",
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("spec.maxReplicas"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    s.ok(&["delete", "hpa", "--all"]);
}
