#!/usr/bin/env python3
"""HPA reaction time on corral serve: from CPU load on a pod to the autoscaler's decision and
to the new replicas Ready, and from the end of the load back to one replica.

A Deployment `burn` (1 replica, cpu request 100m, a busybox loop that burns a CPU while
/tmp/burn exists, as tests/serve_autoscale.rs has it; the bench's image has no /tmp, so the
loop makes one) and an autoscaling/v2 HPA (50 % CPU, 1 to 3 replicas, scaleDown
stabilizationWindowSeconds 0) are applied with kubectl; once
`kubectl top pods` shows the pod, each of RUNS rounds (default 3):
- `kubectl exec POD -- sh -c 'touch /tmp/burn'` (the bench's image has busybox and its `sh`
  link only, so applets run through sh), then the time until the Deployment's spec.replicas
  goes up (the decision) and until status.readyReplicas reaches it (new replicas Ready);
- the same with `rm -f /tmp/burn`, then the time until spec.replicas is 1 again and until
  one pod is left.
Each load starts and ends after a random 0-10 s pause, so that the rounds sample every phase
of the agent's and the controller's 10 s cycles. Times start when the exec returns. The Deployment is polled every 0.2 s through the API
(the JSON `kubectl get deploy burn -o json` prints) rather than by a kubectl process per
poll, which would take CPU from the pods being measured on a small machine.

Usage: serve_hpa.py KUBECONFIG. Run through benches/serve.sh (ONLY_HPA=1), which starts and
cleans up the server; this script deletes what it made, even when it fails. Anchor:
Kubernetes' HPA syncs every 15 s on metrics-server's 15 s resolution, so its decision comes
15-30 s after load begins, then the pod starts. corral's node agent reads usage every 10 s
and its HPA controller syncs every 10 s.
"""
import http.client, os, random, statistics, subprocess, sys, time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from serve_api import Client, load  # noqa: E402

NS = "default"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBECTL = os.environ.get("KUBECTL", os.path.join(ROOT, ".venv/bin/kubectl"))
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments/burn"

MANIFEST = """
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
        command: ["sh", "-c", "mkdir -p /tmp; while true; do if [ -f /tmp/burn ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 1; fi; done"]
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
"""


def kubectl(*args, stdin=None, check=True):
    r = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr.strip()}")
    return r


def wait(what, f, timeout=180, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = f()
        if r:
            return r
        time.sleep(every)
    raise RuntimeError(f"timed out: {what}")


class Api:
    """serve_api's Client, connecting again if the server closed an idle connection."""

    def __init__(self, kc):
        self.args = load(kc)
        self.c = Client(*self.args)

    def get(self, path):
        try:
            return self.c.call("GET", path)
        except (ConnectionError, http.client.HTTPException):
            self.c = Client(*self.args)
            return self.c.call("GET", path)


def pods(api):
    return api.get(f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dburn")["items"]


def live_pods(api):
    return [p for p in pods(api) if p["metadata"].get("deletionTimestamp") is None]


def main():
    kc = sys.argv[1]
    os.environ["KUBECONFIG"] = kc
    runs = int(os.environ.get("RUNS", "3"))
    api = Api(kc)
    try:
        kubectl("apply", "-f", "-", stdin=MANIFEST)
        kubectl("rollout", "status", "deployment/burn", "--timeout=120s")
        t_ready = time.perf_counter()
        pod = live_pods(api)[0]["metadata"]["name"]
        wait("kubectl top pods", lambda: pod in kubectl("top", "pods", "-l", "app=burn", check=False).stdout,
             timeout=90, every=1)
        print(f"{'metrics in kubectl top after Ready':34s} {time.perf_counter() - t_ready:6.1f} s"
              "   (two readings of the node agent, 10 s apart)")

        rows = []
        for i in range(runs):
            live = live_pods(api)
            assert len(live) == 1, f"run {i + 1} starts with {len(live)} pods"
            pod = live[0]["metadata"]["name"]
            # Start the load at a random point of the 10 s cycles of the agent and the
            # controller: rounds a fixed time apart would all meet them at the same phase.
            time.sleep(random.uniform(0, 10))
            kubectl("exec", pod, "--", "sh", "-c", "touch /tmp/burn")
            t0 = time.perf_counter()
            first = wait("the scale-up decision",
                         lambda: (lambda n: n if n > 1 else None)(api.get(DEPLOY)["spec"]["replicas"]))
            decided = time.perf_counter() - t0
            # A later sync may raise the count again: Ready means every replica then asked for.
            last = wait("the new replicas Ready", lambda: (lambda d: d["spec"]["replicas"] if d.get(
                "status", {}).get("readyReplicas", 0) >= d["spec"]["replicas"] else None)(api.get(DEPLOY)))
            ready = time.perf_counter() - t0

            time.sleep(random.uniform(0, 10))
            kubectl("exec", pod, "--", "sh", "-c", "rm -f /tmp/burn")
            t1 = time.perf_counter()
            wait("the scale-down decision", lambda: api.get(DEPLOY)["spec"]["replicas"] == 1)
            down = time.perf_counter() - t1
            wait("one pod left", lambda: len(pods(api)) == 1)
            gone = time.perf_counter() - t1
            rows.append((decided, ready, down, gone))
            print(f"run {i + 1}: load → decision {decided:5.1f} s (1 → {first}, then {last})   → all Ready {ready:5.1f} s"
                  f"   load gone → back to 1 {down:5.1f} s   → pods gone {gone:5.1f} s")

        med = [statistics.median(col) for col in zip(*rows)]
        print(f"median of {len(rows)}: load → decision {med[0]:5.1f} s   → all Ready {med[1]:5.1f} s"
              f"   load gone → back to 1 {med[2]:5.1f} s   → pods gone {med[3]:5.1f} s")
        print("Kubernetes: HPA sync period 15 s (the decision comes within 15-30 s of metrics-server's 15 s "
              "resolution) + pod start")
    finally:
        kubectl("delete", "hpa", "burn", "--ignore-not-found", check=False)
        kubectl("delete", "deployment", "burn", "--ignore-not-found", "--wait=true", "--timeout=60s", check=False)


if __name__ == "__main__":
    main()
