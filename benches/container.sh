#!/usr/bin/env bash
# Engine-level start cost: `corral run --rm IMAGE /bin/true` against `podman run --rm` (crun)
# on the same busybox image, no network, side by side in one hyperfine run; prints the ratio.
#
# podman's crun refuses this host's hybrid cgroup layout, so podman runs in a private mount
# namespace with a tmpfs over /sys/fs/cgroup/unified (the host is unchanged), as
# ARCHITECTURE.md prescribes. Root here lacks CAP_SYS_RESOURCE: podman gets ulimits within the
# hard limits.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-30}"
WARMUP="${WARMUP:-5}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
if [ ! -x "$CORRAL" ]; then
  while pgrep -x cargo >/dev/null; do sleep 5; done
  cargo build --release -p corral
fi
work=$(mktemp -d /var/tmp/corral-bench-container.XXXXXX)
cleanup() {
  set +e  # a step that finds nothing (grep without a match) must not end the cleanup early
  podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver overlay rmi -a -f >/dev/null 2>&1 || true
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Lazily unmounted layers can hold the directory for a moment: try again before giving up.
  for _ in 1 2 3 4 5; do rm -rf "$work" 2>/dev/null && break; sleep 1; done
  [ ! -e "$work" ] || { echo "container.sh: could not remove $work:" >&2; rm -rf "$work" 2>&1 | head -n 3 >&2; }
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
export CORRAL_ROOT="$work/corral"
"$CORRAL" image import "$work/rootfs.tar" bench/busybox:1 >/dev/null
"$CORRAL" image save bench/busybox:1 -o "$work/img.tar"

P=(podman --root "$work/podman" --runroot "$work/podman-run" --tmpdir "$work/podman-tmp" --storage-driver overlay
   --cgroup-manager cgroupfs --events-backend none --runtime crun)
mkdir -p "$work/podman-tmp"
"${P[@]}" load -q -i "$work/img.tar" >/dev/null

echo "machine: $(nproc) cpus, kernel $(uname -r), corral $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(podman --version), $(crun --version | head -n1)"
podman_cmd="${P[*]} run --rm --network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 docker.io/bench/busybox:1 /bin/true"
corral_cmd="$CORRAL run --rm --network none bench/busybox:1 /bin/true"
# hyperfine itself runs inside the private mount namespace so that podman sees no cgroup2 mount.
unshare -m --propagation private sh -c "
  mount -t tmpfs tmpfs /sys/fs/cgroup/unified &&
  hyperfine -N --warmup $WARMUP --runs $RUNS --export-json '$work/run.json' -n corral '$corral_cmd' -n podman '$podman_cmd'
"
python3 - "$work/run.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
c, p = r["corral"], r["podman"]
print(f"run --rm /bin/true: corral {c['mean']*1000:.1f} ms ± {c['stddev']*1000:.1f}, "
      f"podman {p['mean']*1000:.1f} ms ± {p['stddev']*1000:.1f}, ratio podman/corral = {p['mean']/c['mean']:.1f}")
PY
