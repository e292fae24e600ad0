#!/usr/bin/env python3
"""corral serve's workload controllers, timed through the real HTTPS API:

- controller latency: a pod of a 10-replica Deployment deleted, until the replacement is
  Ready (p50/p99 over ROUNDS deletions);
- rolling update of the 10-replica Deployment (maxSurge 25%, maxUnavailable 0, readiness
  probe): time from the template change until the rollout completes, and the least number
  of Ready pods seen meanwhile (the goal is never below 10).

Usage: serve_workloads.py KUBECONFIG [--quick]. Run through benches/serve.sh (WORKLOADS=1),
which starts and cleans up the server. The anchor is Kubernetes' pod startup SLO (p99 of
a stateless pod's start, image pulled, at most 5 s), the only published figure that covers
the same path (controller, scheduler, node agent, container start, probe).
"""
import sys, time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from serve_api import Client, load, pct  # noqa: E402

NS = "default"
APPS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def deployment(version):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": 10,
            "selector": {"matchLabels": {"app": "bench"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main", "image": "busybox:test",
                        "env": [{"name": "VERSION", "value": version}],
                        "command": ["sh", "-c", "mkdir -p /www && echo $VERSION > /www/i && exec httpd -f -p 8080 -h /www"],
                        "readinessProbe": {"httpGet": {"path": "/i", "port": 8080}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }


def ready(p):
    return p["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def pods(c):
    return c.call("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dbench")["items"]


def wait(what, f, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = f()
        if r:
            return r
        time.sleep(0.02)
    raise RuntimeError(f"timed out: {what}")


def main():
    kc = sys.argv[1]
    rounds = 5 if "--quick" in sys.argv else 20
    c = Client(*load(kc))
    c.call("POST", APPS, deployment("v1"))
    wait("10 ready pods", lambda: sum(map(ready, pods(c))) == 10)

    # Controller latency: delete one pod, wait for a new Ready one in its place.
    lat = []
    for _ in range(rounds):
        before = {p["metadata"]["name"] for p in pods(c) if ready(p)}
        victim = sorted(before)[0]
        t0 = time.perf_counter()
        c.call("DELETE", f"/api/v1/namespaces/{NS}/pods/{victim}", {"gracePeriodSeconds": 0})
        wait("a replacement", lambda: any(
            ready(p) and p["metadata"]["name"] not in before for p in pods(c)))
        lat.append(time.perf_counter() - t0)
        wait("10 ready pods", lambda: sum(map(ready, pods(c))) == 10)
    print(f"{'deleted pod replaced and Ready':34s} p50 {pct(lat,50)*1000:8.1f} ms   p99 {pct(lat,99)*1000:8.1f} ms   n={len(lat):3d}"
          "   anchor: Kubernetes pod startup SLO p99 <= 5000 ms")

    # Rolling update of 10 replicas.
    t0 = time.perf_counter()
    c.call("PATCH", f"{APPS}/bench", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "env": [{"name": "VERSION", "value": "v2"}]}]}}}},
        ctype="application/strategic-merge-patch+json")
    lowest = 10

    def done():
        nonlocal lowest
        lowest = min(lowest, sum(map(ready, pods(c))))
        d = c.call("GET", f"{APPS}/bench")
        s = d.get("status", {})
        return (s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas") == 10
                and s.get("availableReplicas") == 10 and s.get("replicas") == 10)
    wait("the rollout", done, timeout=600)
    took = time.perf_counter() - t0
    print(f"{'rolling update, 10 replicas':34s} {took:8.2f} s   fewest Ready pods during it: {lowest} (goal: 10)"
          "   anchor: 10 pod starts in 3 waves of <= 5 s each (SLO)")
    c.call("DELETE", f"{APPS}/bench", {"propagationPolicy": "Background"})


if __name__ == "__main__":
    main()
