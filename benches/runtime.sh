#!/usr/bin/env bash
# Runtime-level start cost, youki's recipe: `RUNTIME run` of one busybox bundle whose process
# is /bin/true, for corral-runtime, crun and runc, side by side in one hyperfine run; prints
# the ratios. Also the memory floor: the smallest memory limit in which each runtime still
# starts the bundle.
#
# crun refuses this host's hybrid cgroup layout, so the whole benchmark runs in a private mount
# namespace with a tmpfs over /sys/fs/cgroup/unified (the host is unchanged).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-50}"
# BASELINE=/path/to/an/older/corral-runtime adds it to the same hyperfine run (a before/after
# comparison under the same load).
BASELINE="${BASELINE:-}"
WARMUP="${WARMUP:-5}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
if [ ! -x "$CORRAL" ]; then
  while pgrep -x cargo >/dev/null; do sleep 5; done
  cargo build --release -p corral
fi
work=$(mktemp -d /var/tmp/corral-bench-runtime.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/true"
# The runtime's own small executable when it is built (target/release/corral-runtime), else a
# corral-runtime link to corral (argv[0] dispatch).
if [ -x "$(dirname "$CORRAL")/corral-runtime" ]; then
  ln -s "$(dirname "$CORRAL")/corral-runtime" "$work/bin/corral-runtime"
else
  ln -s "$CORRAL" "$work/bin/corral-runtime"
fi
(cd "$work/bundle" && "$work/bin/corral-runtime" spec)
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
s["process"]["args"] = ["/bin/true"]
json.dump(s, open(p, "w"))
PY
echo "machine: $(nproc) cpus, kernel $(uname -r), corral $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(crun --version | head -n1), $(runc --version | head -n1)"
if [ -n "$BASELINE" ]; then ln -s "$(readlink -f "$BASELINE")" "$work/bin/baseline-runtime"; fi
export work RUNS WARMUP BASELINE
unshare -m --propagation private bash -c '
  set -euo pipefail
  mount -t tmpfs tmpfs /sys/fs/cgroup/unified
  cd "$work"
  hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/run.json" \
    -n corral-runtime "$work/bin/corral-runtime --root $work/state-corral run -b $work/bundle bench" \
    -n crun "crun --root $work/state-crun run -b $work/bundle bench" \
    -n runc "runc --root $work/state-runc run -b $work/bundle bench" \
    ${BASELINE:+-n baseline "$work/bin/baseline-runtime --root $work/state-base run -b $work/bundle bench"}
  # The memory floor: halve the limit until the bundle no longer starts.
  floor() {
    local rt="$1" lim last_ok=""
    for lim in 16777216 8388608 4194304 2097152 1048576 786432 524288 393216 262144 196608 163840 131072; do
      python3 - "$work/bundle/config.json" "$lim" <<PY
import json, sys
p, lim = sys.argv[1], int(sys.argv[2])
s = json.load(open(p))
s.setdefault("linux", {}).setdefault("resources", {})["memory"] = {"limit": lim}
json.dump(s, open(p, "w"))
PY
      if $rt --root "$work/state-floor" run -b "$work/bundle" floor >/dev/null 2>&1; then last_ok=$lim; else
        $rt --root "$work/state-floor" delete -f floor >/dev/null 2>&1 || true
      fi
    done
    echo "memory floor $rt: ${last_ok:-none} bytes"
  }
  floor "$work/bin/corral-runtime"
  floor crun
  floor runc
'
python3 - "$work/run.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
c = r["corral-runtime"]
for n in ("crun", "runc", "baseline"):
    if n not in r:
        continue
    print(f"run /bin/true: corral-runtime {c['mean']*1000:.1f} ms, {n} {r[n]['mean']*1000:.1f} ms, {n}/corral = {r[n]['mean']/c['mean']:.2f} (means); "
          f"medians {c['median']*1000:.1f} / {r[n]['median']*1000:.1f} ms = {r[n]['median']/c['median']:.2f}; "
          f"user+sys {(c['user']+c['system'])*1000:.1f} / {(r[n]['user']+r[n]['system'])*1000:.1f} ms")
PY
