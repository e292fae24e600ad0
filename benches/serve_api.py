#!/usr/bin/env python3
"""corral serve's speed through the real HTTPS path (keep-alive connections, JSON, the token
and CA of the kubeconfig): API latency of single-object calls and lists, watch delivery, pod
start (100 pods to Ready), scheduler throughput (pods bound per second to fake Node objects,
no node agent in the measurement) and the idle footprint of the server with 20 running pods.

Usage: serve_api.py KUBECONFIG SERVE_PID [--quick | --footprint]. Prints one line per figure
with the anchor beside it. Run through benches/serve.sh, which starts and cleans up the
server. --footprint measures only the idle footprint, on a server that has done nothing else
(the full run measures it again after its load, with the allocator's high-water mark).
"""
import base64, http.client, json, os, ssl, statistics, sys, tempfile, threading, time

def load(kc_path):
    kc = json.load(open(kc_path))
    server = kc["clusters"][0]["cluster"]["server"]
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
    token = kc["users"][0]["user"]["token"]
    f = tempfile.NamedTemporaryFile(delete=False, suffix=".crt"); f.write(ca); f.close()
    ctx = ssl.create_default_context(cafile=f.name)
    host, port = server.removeprefix("https://").rsplit(":", 1)
    return host, int(port), token, ctx

class Client:
    def __init__(self, host, port, token, ctx):
        self.c = http.client.HTTPSConnection(host, port, context=ctx)
        self.h = {"Authorization": "Bearer " + token, "Content-Type": "application/json", "Accept": "application/json"}
        self.args = (host, port, token, ctx)
    def call(self, method, path, body=None, ctype=None):
        h = dict(self.h)
        if ctype: h["Content-Type"] = ctype
        self.c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = self.c.getresponse(); data = r.read()
        if r.status >= 300: raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else None

def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

def report(name, xs, anchor):
    print(f"{name:34s} p50 {pct(xs,50)*1000:8.2f} ms   p99 {pct(xs,99)*1000:8.2f} ms   n={len(xs):5d}   anchor: {anchor}")

def timed(f):
    t = time.perf_counter(); r = f(); return time.perf_counter() - t, r

def idle_footprint(c, pid, ns, names, label):
    """Waits until the pods are Ready, lets the server settle, and prints its RSS and CPU."""
    deadline = time.time() + 300
    while time.time() < deadline:
        items = c.call("GET", f"/api/v1/namespaces/{ns}/pods")["items"]
        ready = [p for p in items if p["metadata"]["name"] in names and any(
            x["type"] == "Ready" and x["status"] == "True" for x in p.get("status", {}).get("conditions", []))]
        if len(ready) == len(names): break
        time.sleep(0.5)
    time.sleep(15)
    def cpu():
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    rss = int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
    c0 = cpu(); time.sleep(30); c1 = cpu()
    print(f"{label:34s} RSS {rss:6.1f} MiB   CPU {(c1-c0)/30*100:5.2f} % of a core   anchor: k3s server ~1.6 GB, agent ~275 MB; goal < 50 MB, < 1 %")

def pod(name):
    return {"metadata": {"name": name}, "spec": {"terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox:test", "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]}]}}

def footprint_only(c, pid):
    ns = f"fp-{os.getpid()}"
    c.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    names = [f"p{i}" for i in range(20)]
    for n in names:
        c.call("POST", f"/api/v1/namespaces/{ns}/pods", pod(n))
    idle_footprint(c, pid, ns, set(names), "idle footprint, 20 pods, fresh")
    c.call("DELETE", f"/api/v1/namespaces/{ns}")

def main():
    kc, pid = sys.argv[1], int(sys.argv[2]); quick = "--quick" in sys.argv
    args = load(kc); c = Client(*args)
    if "--footprint" in sys.argv:
        return footprint_only(c, pid)
    ns = f"bench-{os.getpid()}"
    c.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    base = f"/api/v1/namespaces/{ns}/configmaps"
    slo = "Kubernetes SLO p99 <= 1 s (mutating); goal p99 <= 10 ms"
    n = 1000 if quick else 10000
    creates, gets = [], []
    for i in range(n):
        d, _ = timed(lambda: c.call("POST", base, {"metadata": {"name": f"cm-{i:05d}", "labels": {"i": str(i % 10)}}, "data": {"k": "v" * 64}}))
        creates.append(d)
    for i in range(0, n, max(1, n // 1000)):
        d, _ = timed(lambda: c.call("GET", f"{base}/cm-{i:05d}"))
        gets.append(d)
    report("create (configmap)", creates, slo)
    report("get (configmap)", gets, "Kubernetes SLO p99 <= 1 s; goal p99 <= 10 ms")
    lists = [timed(lambda: c.call("GET", base + "?limit=1000"))[0] for _ in range(20)]
    report("list 1,000 of them (limit=1000)", lists, "Kubernetes SLO p99 <= 30 s (cluster-wide list)")
    if not quick:
        lists = [timed(lambda: c.call("GET", base))[0] for _ in range(10)]
        report(f"list all {n}", lists, "Kubernetes SLO p99 <= 30 s (cluster-wide list)")
    # Watch delivery: a watcher on its own connection; the time from a write's answer to the
    # event's arrival.
    seen = {}
    def watcher():
        w = Client(*args)
        rv = w.call("GET", base + "?limit=1")["metadata"]["resourceVersion"]
        w.c.request("GET", f"{base}?watch=true&resourceVersion={rv}", headers=w.h)
        r = w.c.getresponse(); buf = b""
        while True:
            chunk = r.readline()
            if not chunk: break
            ev = json.loads(chunk)
            name = ev["object"]["metadata"]["name"]
            if name.startswith("watched-"):
                seen[name] = time.perf_counter()
                if len(seen) == 300: break
    t = threading.Thread(target=watcher, daemon=True); t.start(); time.sleep(0.5)
    sent = {}
    for i in range(300):
        name = f"watched-{i}"
        c.call("POST", base, {"metadata": {"name": name}})
        sent[name] = time.perf_counter(); time.sleep(0.002)
    t.join(timeout=30)
    delays = [seen[k] - sent[k] for k in sent if k in seen]
    report("watch delivery (write -> event)", [max(0, d) for d in delays], "Kubernetes SLO p99 <= 1 s")
    c.call("DELETE", f"/api/v1/namespaces/{ns}")

    # Scheduler throughput: pods that only fake nodes can take, created while no fake node
    # exists (they wait), then 10 fake Ready nodes; the time until every pod is bound.
    sns = f"sched-{os.getpid()}"
    c.call("POST", "/api/v1/namespaces", {"metadata": {"name": sns}})
    npods = 1000 if quick else 2000
    for i in range(npods):
        c.call("POST", f"/api/v1/namespaces/{sns}/pods", {"metadata": {"name": f"p{i}"}, "spec": {
            "nodeSelector": {"bench": sns}, "containers": [{"name": "c", "image": "none:bench", "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}})
    t0 = time.perf_counter()
    for j in range(10):
        c.call("POST", "/api/v1/nodes", {"metadata": {"name": f"{sns}-n{j}", "labels": {"bench": sns}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"}, "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                       "conditions": [{"type": "Ready", "status": "True"}]}})
    while True:
        items = c.call("GET", f"/api/v1/namespaces/{sns}/pods?fieldSelector=spec.nodeName%3D")["items"]
        if not items: break
        if time.perf_counter() - t0 > 120: break
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    print(f"{'scheduler throughput':34s} {npods/dt:8.0f} pods/s ({npods} pods, 10 fake nodes, {dt:.2f} s)   anchor: kube-scheduler 680 pods/s at 5,000 nodes; goal >= 1,000")
    c.call("DELETE", f"/api/v1/namespaces/{sns}/pods?gracePeriodSeconds=0")
    for j in range(10):
        c.call("DELETE", f"/api/v1/nodes/{sns}-n{j}")
    c.call("DELETE", f"/api/v1/namespaces/{sns}")

    # Pod start: 100 pods of the busybox image, each from its ADDED event to Ready.
    pns = f"pods-{os.getpid()}"
    c.call("POST", "/api/v1/namespaces", {"metadata": {"name": pns}})
    added, ready = {}, {}
    rv = c.call("GET", f"/api/v1/namespaces/{pns}/pods")["metadata"]["resourceVersion"]
    def podwatch():
        w = Client(*args)
        w.c.request("GET", f"/api/v1/namespaces/{pns}/pods?watch=true&resourceVersion={rv}", headers=w.h)
        r = w.c.getresponse()
        while len(ready) < 100:
            line = r.readline()
            if not line: break
            ev = json.loads(line); o = ev["object"]; name = o["metadata"]["name"]; now = time.perf_counter()
            added.setdefault(name, now)
            if any(x["type"] == "Ready" and x["status"] == "True" for x in o.get("status", {}).get("conditions", [])):
                ready.setdefault(name, now)
    t = threading.Thread(target=podwatch, daemon=True); t.start(); time.sleep(0.3)
    t0 = time.perf_counter()
    for i in range(100):
        c.call("POST", f"/api/v1/namespaces/{pns}/pods", {"metadata": {"name": f"p{i}"}, "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox:test", "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]}]}})
    t.join(timeout=300)
    all_ready = time.perf_counter() - t0
    per = [ready[k] - added[k] for k in ready]
    report("pod start (created -> Ready)", per, f"Kubernetes SLO p99 <= 5 s; goal p99 < 0.5 s; all {len(ready)} Ready in {all_ready:.1f} s")

    # Footprint: 20 running pods, the server idle, after all of the above.
    keep = [f"p{i}" for i in range(20)]
    for i in range(20, 100):
        c.call("DELETE", f"/api/v1/namespaces/{pns}/pods/p{i}")
    idle_footprint(c, pid, pns, set(keep), "idle footprint, 20 pods, after load")
    c.call("DELETE", f"/api/v1/namespaces/{pns}")

if __name__ == "__main__":
    main()
