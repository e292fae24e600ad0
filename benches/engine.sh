#!/usr/bin/env bash
# The engine's listing and events against podman's, side by side in one run (issue 12):
#   1. `ps -a` and `ps -a --filter label=...` over N containers (default 200), hyperfine;
#   2. events delivery latency: a follower of `events --format json` is running; containers
#      are created one at a time; the latency is the follower's receipt time minus the
#      event's own time (timeNano), median and p95 over M events (default 50).
#
# podman runs as benches/container.sh runs it: its own scratch storage, cgroupfs, crun in a
# private mount namespace with a tmpfs over /sys/fs/cgroup/unified (crun refuses this host's
# hybrid layout; the host is unchanged), ulimits within root's hard limits here. podman's
# events go to its file backend (its journald backend needs a journal; the file backend is
# the one that works everywhere). Containers are created, not started: listing cost, not
# process count, is what is compared.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-200}"
M="${M:-50}"
RUNS="${RUNS:-20}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
work=$(mktemp -d /var/tmp/corral-bench-engine.XXXXXX)
follower=""
cleanup() {
  set +e
  [ -n "$follower" ] && kill "$follower" 2>/dev/null
  "$CORRAL" rm -f -a >/dev/null 2>&1
  podman_ rm -a -f >/dev/null 2>&1
  podman_ rmi -a -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  for _ in 1 2 3 4 5; do rm -rf "$work" 2>/dev/null && break; sleep 1; done
}
podman_() {
  unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec "$@"' sh \
    podman --root "$work/podman" --runroot "$work/podman-run" --tmpdir "$work/podman-tmp" \
    --storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime crun "$@"
}
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/podman-tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/sh"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
export CORRAL_ROOT="$work/corral" CORRAL_DEFAULT_NETWORK=none
"$CORRAL" image import "$work/rootfs.tar" bench/busybox:1 >/dev/null
"$CORRAL" image save bench/busybox:1 -o "$work/img.tar"
podman_ load -q -i "$work/img.tar" >/dev/null
echo "machine: $(nproc) cpus, kernel $(uname -r), corral $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(podman --version)"

echo "creating $N containers in each ..."
for i in $(seq "$N"); do
  lab=$([ $((i % 10)) -eq 0 ] && echo tenth || echo other)
  "$CORRAL" create --network none -l "group=$lab" --name "c$i" bench/busybox:1 sh >/dev/null
  podman_ create --network none --label "group=$lab" --name "c$i" docker.io/bench/busybox:1 sh >/dev/null
done
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/ps.json" \
  -n "corral ps -a" "$CORRAL ps -a" \
  -n "podman ps -a" "unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec podman --root $work/podman --runroot $work/podman-run --tmpdir $work/podman-tmp --storage-driver overlay --cgroup-manager cgroupfs --events-backend file ps -a'" \
  -n "corral ps -a --filter" "$CORRAL ps -a --filter label=group=tenth" \
  -n "podman ps -a --filter" "unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec podman --root $work/podman --runroot $work/podman-run --tmpdir $work/podman-tmp --storage-driver overlay --cgroup-manager cgroupfs --events-backend file ps -a --filter label=group=tenth'" \
  >/dev/null
python3 - "$work/ps.json" "$N" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
for what in ["ps -a", "ps -a --filter"]:
    c, p = r["corral " + what], r["podman " + what]
    print(f"{what} over {sys.argv[2]} containers: corral {c['median']*1000:.1f} ms (mean {c['mean']*1000:.1f} ± {c['stddev']*1000:.1f}), "
          f"podman {p['median']*1000:.1f} ms (mean {p['mean']*1000:.1f} ± {p['stddev']*1000:.1f}), podman/corral = {p['median']/c['median']:.1f}")
PY
"$CORRAL" rm -f -a >/dev/null
podman_ rm -a -f >/dev/null

# Events: one follower at a time; $CREATE is run M times (a shell command); each create
# event's latency is its receipt by the follower minus its own timeNano.
latency() {  # $1: label; the follower command is in "${cmd[@]}"
  python3 - "$1" "$M" "${cmd[@]}" <<'PY'
import json, os, statistics, subprocess, sys, threading, time
label, m, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def rfc3339_ns(t):
    # podman's `Time`: 2026-12-02T02:20:01.123456789+00:00 (or Z); Python's own parser stops
    # at microseconds, so the fraction is read by hand.
    import datetime, re
    if not isinstance(t, str):
        return None
    m_ = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", t)
    if not m_:
        return None
    tz = "+00:00" if m_.group(3) == "Z" else m_.group(3)
    base = datetime.datetime.fromisoformat(m_.group(1) + tz).timestamp()
    frac = (m_.group(2) or "0").ljust(9, "0")[:9]
    return int(base) * 10**9 + int(frac)
f = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
lat = []
done = threading.Event()
def read():
    for line in f.stdout:
        t = time.time_ns()
        try:
            e = json.loads(line)
        except ValueError:
            continue
        tn = e.get("timeNano") or e.get("TimeNano") or rfc3339_ns(e.get("Time"))
        if (e.get("Action") or e.get("Status")) != "create" or tn is None:
            continue
        lat.append((t - int(tn)) / 1e6)
        if len(lat) >= m:
            done.set()
            return
threading.Thread(target=read, daemon=True).start()
time.sleep(1.5)  # the follower is up and reading
for i in range(m):
    subprocess.run(os.environ["CREATE"], shell=True, check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.05)
done.wait(30)
f.kill()
lat.sort()
if len(lat) < m:
    print(f"events delivery ({label}): only {len(lat)} of {m} create events arrived within 30 s")
else:
    print(f"events delivery ({label}, {m} creates): median {statistics.median(lat):.1f} ms, "
          f"p95 {lat[max(0, int(len(lat) * 0.95) - 1)]:.1f} ms, max {lat[-1]:.1f} ms")
PY
}
PODMAN="podman --root $work/podman --runroot $work/podman-run --tmpdir $work/podman-tmp --storage-driver overlay --cgroup-manager cgroupfs --events-backend file"
export CREATE="$CORRAL create --network none bench/busybox:1 sh"
cmd=("$CORRAL" events --format json --filter event=create)
latency corral
export CREATE="unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec $PODMAN create --network none docker.io/bench/busybox:1 sh'"
cmd=(unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec $PODMAN events --format json --filter event=create")
latency podman
