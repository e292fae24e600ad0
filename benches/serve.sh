#!/usr/bin/env bash
# corral serve through the real HTTPS path: API latency (create, get, list of 1,000 and
# 10,000 objects, watch delivery), scheduler throughput on fake nodes, pod start (100 pods to
# Ready), the idle footprint with 20 running pods and the workload controllers (a deleted
# pod replaced, a 10-replica rolling update; ONLY_WORKLOADS=1 runs just those) and the
# Service data path (the VIP against a pod IP; ONLY_SERVICES=1 runs just that) and the HPA's
# reaction time (load to new replicas Ready and back; ONLY_HPA=1 runs just that) — each
# printed with Kubernetes' published anchor beside it (no peer control plane runs on this machine: k3s and kube-apiserver are not
# packaged by Debian 12). QUICK=1 makes the API part smaller.
set -euo pipefail
cd "$(dirname "$0")/.."
CORRAL="${CORRAL:-$PWD/target/release/corral}"
[ -x "$CORRAL" ] || cargo build --release -p corral
work=$(mktemp -d /var/tmp/corral-bench-serve.XXXXXX)
export CORRAL_ROOT="$work/root"
port=$((20000 + RANDOM % 20000))
cleanup() {
  set +e
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  for p in $("$CORRAL" pod ls -q 2>/dev/null); do "$CORRAL" pod rm -f "$p" >/dev/null 2>&1; done
  for c in $("$CORRAL" ps -aq 2>/dev/null); do "$CORRAL" rm -f "$c" >/dev/null 2>&1; done
  "$CORRAL" network rm -f "bsrv$$" >/dev/null 2>&1
  # The service proxy's table of node "bench" (corral-svc-<FNV-1a of the node name>).
  nft delete table ip "$(python3 -c 'h=0x811c9dc5
for b in b"bench": h=((h^b)*0x01000193)&0xffffffff
print(f"corral-svc-{h:08x}")')" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/img/bin" "$work/img/etc"
cp /bin/busybox "$work/img/bin/" && ln -s busybox "$work/img/bin/sh"
echo "root:x:0:0:root:/root:/bin/sh" > "$work/img/etc/passwd"
tar -C "$work/img" -cf "$work/bb.tar" .
"$CORRAL" image import "$work/bb.tar" busybox:test >/dev/null
"$CORRAL" network create "bsrv$$" >/dev/null
serve() {
  rm -f "$CORRAL_ROOT/kubeconfig"
  "$CORRAL" serve --listen "127.0.0.1:$port" --network "bsrv$$" --node-name bench >>"$work/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -f "$CORRAL_ROOT/kubeconfig" ] && break; sleep 0.1; done
  sleep 0.5
}
serve
if [ -n "${ONLY_WORKLOADS:-}" ]; then
  python3 benches/serve_workloads.py "$CORRAL_ROOT/kubeconfig" ${QUICK:+--quick}
  exit 0
fi
if [ -n "${ONLY_SERVICES:-}" ]; then
  python3 benches/serve_services.py "$CORRAL_ROOT/kubeconfig" ${QUICK:+--quick}
  exit 0
fi
if [ -n "${ONLY_HPA:-}" ]; then
  python3 benches/serve_hpa.py "$CORRAL_ROOT/kubeconfig"
  exit 0
fi
python3 benches/serve_api.py "$CORRAL_ROOT/kubeconfig" "$pid" ${QUICK:+--quick}
# The idle footprint again, on a server (and store) that has done nothing else.
kill "$pid"; wait "$pid" 2>/dev/null || true
for p in $("$CORRAL" pod ls -q); do "$CORRAL" pod rm -f "$p" >/dev/null 2>&1; done
rm -rf "$CORRAL_ROOT/serve"
serve
python3 benches/serve_api.py "$CORRAL_ROOT/kubeconfig" "$pid" --footprint
python3 benches/serve_workloads.py "$CORRAL_ROOT/kubeconfig" ${QUICK:+--quick}
python3 benches/serve_services.py "$CORRAL_ROOT/kubeconfig" ${QUICK:+--quick}
python3 benches/serve_hpa.py "$CORRAL_ROOT/kubeconfig"
