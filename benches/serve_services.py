#!/usr/bin/env python3
"""The Service data path of corral serve: HTTP requests from the host to a ClusterIP Service
with 3 endpoints against the same requests straight to one pod's IP, in one run, and the
ratio (the goal: the VIP within 10 % of the pod). Each request is a new TCP connection, so
every one goes through the nftables lookup and DNAT (an established connection is only
conntrack).

Usage: serve_services.py KUBECONFIG [--quick]. Run through benches/serve.sh
(ONLY_SERVICES=1), which starts and cleans up the server. Anchor: kube-proxy's nftables mode
does the same work per new connection (one verdict-map lookup, a random endpoint, DNAT).
"""
import socket, sys, time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from serve_api import Client, load, pct  # noqa: E402

NS = "default"


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def get(ip, port):
    s = socket.create_connection((ip, port), timeout=5)
    s.sendall(b"GET /i HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    if b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"bad answer {data[:80]!r}")


def run(ip, port, n):
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        get(ip, port)
        lat.append(time.perf_counter() - t)
    return n / (time.perf_counter() - t0), lat


def main():
    n = 500 if "--quick" in sys.argv else 3000
    c = Client(*load(sys.argv[1]))
    c.call("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vipbench"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "vipbench"}},
                 "template": {"metadata": {"labels": {"app": "vipbench"}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox:test",
                                     "command": ["sh", "-c", "mkdir -p /www && echo hi > /www/i && exec httpd -f -p 8080 -h /www"],
                                     "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}})
    c.call("POST", f"/api/v1/namespaces/{NS}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "vipbench"},
        "spec": {"selector": {"app": "vipbench"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    deadline = time.time() + 300
    while time.time() < deadline:
        pods = [p for p in c.call("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dvipbench")["items"] if ready(p)]
        ep = c.call("GET", f"/api/v1/namespaces/{NS}/endpoints/vipbench") if pods else {}
        n_eps = sum(len(s.get("addresses", [])) for s in (ep.get("subsets") or []))
        if len(pods) == 3 and n_eps == 3:
            break
        time.sleep(0.2)
    vip = c.call("GET", f"/api/v1/namespaces/{NS}/services/vipbench")["spec"]["clusterIP"]
    pod_ip = pods[0]["status"]["podIP"]
    for _ in range(50):  # warm up both paths (the proxy's rules, ARP, the httpd)
        get(vip, 80)
        get(pod_ip, 8080)
    rounds = []
    for _ in range(2):  # alternate, so that drift hits both alike
        rounds.append(("pod", run(pod_ip, 8080, n)))
        rounds.append(("vip", run(vip, 80, n)))
    for name in ("pod", "vip"):
        rps = [r[0] for k, r in rounds if k == name]
        lat = [x for k, r in rounds if k == name for x in r[1]]
        label = f"straight to a pod IP" if name == "pod" else "through the service VIP (3 eps)"
        print(f"{label:34s} {sum(rps)/len(rps):8.0f} req/s   p50 {pct(lat,50)*1000:6.3f} ms   p99 {pct(lat,99)*1000:6.3f} ms   n={len(lat)}")
    pod_rps = sum(r[0] for k, r in rounds if k == "pod") / 2
    vip_rps = sum(r[0] for k, r in rounds if k == "vip") / 2
    print(f"{'VIP / pod throughput':34s} {vip_rps/pod_rps:8.3f}   (goal: >= 0.90; anchor: kube-proxy nftables mode, one map lookup + DNAT per new connection)")
    c.call("DELETE", f"/api/v1/namespaces/{NS}/services/vipbench")
    c.call("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/vipbench", {"propagationPolicy": "Background"})


if __name__ == "__main__":
    main()
