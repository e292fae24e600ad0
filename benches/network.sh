#!/usr/bin/env bash
# What networking costs: (1) the time a network adds to a container start, corral against
# podman, side by side in one hyperfine run; (2) the TCP path between two containers on one
# corral bridge against its floor, two network namespaces joined by a bare veth pair:
# throughput (iperf3) and ping-pong latency (sockperf), both run from the host with
# `nsenter -n` into each container's network namespace, so that only the network path differs.
#
# Goals (issue 4): corral adds < 5 ms to a start and podman adds 10x more; the bridge is
# within 10% of the floor. Prints a summary block for docs/benchmarks.md.
#
# podman runs as in benches/container.sh: a private mount namespace with a tmpfs over
# /sys/fs/cgroup/unified (crun refuses the host's hybrid layout), ulimits within the hard limits.
# corral's default network (`corral`, crl-br-default) is used when this root can have it; when
# another root on the host holds its bridge, a network of the benchmark's own is used instead
# (same bridge, veth and DNS path) and the summary says so.
#
# Everything it makes (state dir, containers, networks, namespaces, veths) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-30}"
WARMUP="${WARMUP:-5}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
for tool in hyperfine podman crun iperf3 sockperf nsenter python3; do
  command -v "$tool" >/dev/null || { echo "network.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
if [ ! -x "$CORRAL" ]; then
  while pgrep -x cargo >/dev/null; do sleep 5; done
  cargo build --release -p corral
fi

work=$(mktemp -d /var/tmp/corral-bench-network.XXXXXX)
tag=$$
ns_a="crlbench-a-$tag" ns_b="crlbench-b-$tag"
veth_a="cbench${tag}a" veth_b="cbench${tag}b"
veth_a=${veth_a:0:15} veth_b=${veth_b:0:15}
export CORRAL_ROOT="$work/corral"
default_was_there=no
ip link show crl-br-default >/dev/null 2>&1 && default_was_there=yes
bench_net=""
pids=()

cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  if [ -d "$CORRAL_ROOT" ]; then
    ids=$("$CORRAL" ps -a -q 2>/dev/null)
    [ -n "$ids" ] && "$CORRAL" rm -f $ids >/dev/null 2>&1
    [ -n "$bench_net" ] && "$CORRAL" network rm -f "$bench_net" >/dev/null 2>&1
    # The default network's bridge is removed only when this run made it.
    [ "$default_was_there" = no ] && "$CORRAL" network rm -f corral >/dev/null 2>&1
  fi
  ip netns del "$ns_a" 2>/dev/null
  ip netns del "$ns_b" 2>/dev/null
  ip link del "$veth_a" 2>/dev/null
  "${P[@]}" rm -a -f >/dev/null 2>&1
  "${P[@]}" rmi -a -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$work"
}
P=(podman --root "$work/podman" --runroot "$work/podman-run" --tmpdir "$work/podman-tmp" --storage-driver overlay
   --cgroup-manager cgroupfs --events-backend none --runtime crun)
trap cleanup EXIT

# The image: busybox, as in benches/container.sh.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/podman-tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$CORRAL" image import "$work/rootfs.tar" bench/busybox:1 >/dev/null
"$CORRAL" image save bench/busybox:1 -o "$work/img.tar"
"${P[@]}" load -q -i "$work/img.tar" >/dev/null

# The network corral's containers join: the default one if this root can have it.
net_flag=""
net_desc="the default network (corral, crl-br-default)"
if ! "$CORRAL" run --rm bench/busybox:1 /bin/true >/dev/null 2>"$work/default.err"; then
  echo "note: the default network is not available to this root: $(head -n1 "$work/default.err")" >&2
  "$CORRAL" rm -f $("$CORRAL" ps -a -q) >/dev/null 2>&1 || true
  bench_net="bench-$tag"
  for octet in $(seq 200 254); do
    if "$CORRAL" network create --subnet "10.124.$octet.0/24" "$bench_net" >/dev/null 2>&1; then
      break
    fi
  done
  "$CORRAL" network inspect "$bench_net" >/dev/null
  net_flag="--network $bench_net"
  net_desc="a network of its own ($bench_net, the default one being held by another root)"
fi

machine="$(nproc) cpus, kernel $(uname -r), corral $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(podman --version), $(crun --version | head -n1)"
echo "machine: $machine"

# ---- 1. start cost of a network -----------------------------------------------------------
ulimits="--ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
c_net="$CORRAL run --rm $net_flag bench/busybox:1 /bin/true"
c_none="$CORRAL run --rm --network none bench/busybox:1 /bin/true"
p_net="${P[*]} run --rm $ulimits docker.io/bench/busybox:1 /bin/true"
p_none="${P[*]} run --rm --network none $ulimits docker.io/bench/busybox:1 /bin/true"
unshare -m --propagation private sh -c "
  mount -t tmpfs tmpfs /sys/fs/cgroup/unified &&
  hyperfine -N --warmup $WARMUP --runs $RUNS --export-json '$work/start.json' \
    -n corral-network '$c_net' -n corral-none '$c_none' \
    -n podman-network '$p_net' -n podman-none '$p_none'
"

# ---- 2. the path between two containers against a bare veth pair ---------------------------
# Two long-running containers; their init's pid gives their network namespace.
a=$("$CORRAL" run -d $net_flag bench/busybox:1 sleep 600)
b=$("$CORRAL" run -d $net_flag bench/busybox:1 sleep 600)
read -r pid_a ip_a < <("$CORRAL" inspect --json "$a" | python3 -c '
import json, sys
c = json.load(sys.stdin)
nets = c["network_settings"]["networks"]
print(c["state"]["pid"], next(iter(nets.values()))["ip"].split("/")[0])')
pid_b=$("$CORRAL" inspect --json "$b" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"]["pid"])')

# The floor: two namespaces, one veth pair, nothing between.
ip netns add "$ns_a"
ip netns add "$ns_b"
ip link add "$veth_a" netns "$ns_a" type veth peer name "$veth_b" netns "$ns_b"
ip -n "$ns_a" addr add 10.126.255.1/30 dev "$veth_a"
ip -n "$ns_b" addr add 10.126.255.2/30 dev "$veth_b"
for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
ip -n "$ns_a" link set "$veth_a" up
ip -n "$ns_b" link set "$veth_b" up

# measure SERVER_PREFIX CLIENT_PREFIX SERVER_IP NAME: throughput in Gbit/s, latency in us.
measure() {
  local srv=$1 cli=$2 ip=$3 name=$4
  $srv iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.5
  $cli iperf3 -c "$ip" -p 5201 -t "$SECONDS_PER_RUN" -J > "$work/$name-iperf.json"
  $srv sockperf server --tcp -i "$ip" -p 11111 >/dev/null 2>&1 &
  local sp=$!
  pids+=($sp)
  sleep 0.5
  $cli sockperf ping-pong --tcp -i "$ip" -p 11111 -t "$SECONDS_PER_RUN" > "$work/$name-sockperf.txt" 2>&1
  kill "$sp" 2>/dev/null || true
}
measure "nsenter -t $pid_a -n" "nsenter -t $pid_b -n" "$ip_a" corral
measure "ip netns exec $ns_a" "ip netns exec $ns_b" 10.126.255.1 floor

# ---- summary ---------------------------------------------------------------------------------
python3 - "$work" "$machine" "$net_desc" <<'PY'
import json, re, sys
work, machine, net_desc = sys.argv[1:4]
r = {x["command"]: x["mean"] * 1000 for x in json.load(open(f"{work}/start.json"))["results"]}
c_add = r["corral-network"] - r["corral-none"]
p_add = r["podman-network"] - r["podman-none"]
def gbps(name):
    d = json.load(open(f"{work}/{name}-iperf.json"))
    return d["end"]["sum_received"]["bits_per_second"] / 1e9
def lat(name):
    text = open(f"{work}/{name}-sockperf.txt").read()
    m = re.search(r"Summary: Latency is ([0-9.]+) usec", text)
    return float(m.group(1)) if m else float("nan")
cg, fg, cl, fl = gbps("corral"), gbps("floor"), lat("corral"), lat("floor")
ratio = f"{p_add / c_add:.1f}" if c_add > 0 else "inf (corral adds nothing measurable)"
print(f"""
---- summary (paste into docs/benchmarks.md) ----
## Networks (benches/network.sh)

{machine}; corral's containers on {net_desc}.

| | with network | --network none | added |
|---|---|---|---|
| corral run --rm /bin/true | {r['corral-network']:.1f} ms | {r['corral-none']:.1f} ms | {c_add:.1f} ms |
| podman run --rm /bin/true | {r['podman-network']:.1f} ms | {r['podman-none']:.1f} ms | {p_add:.1f} ms |

podman_added / corral_added = {ratio} (goal: corral < 5 ms, podman 10x more).

| container to container, TCP | corral bridge | bare veth pair (floor) | corral / floor |
|---|---|---|---|
| throughput (iperf3, 1 stream) | {cg:.2f} Gbit/s | {fg:.2f} Gbit/s | {cg / fg:.2f} |
| latency (sockperf ping-pong, half RTT) | {cl:.2f} us | {fl:.2f} us | {cl / fl:.2f} |

Goal: within 10% of the floor.
""")
PY
