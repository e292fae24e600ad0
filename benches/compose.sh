#!/usr/bin/env bash
# `corral compose` on a 5-service project (one network, one volume, two published ports, a
# service_healthy dependency): `up -d` to all running and the dependency healthy, `up -d` with
# no change, `down -v`. Prints the mean of each over RUNS runs.
#
# The peer the issue names, podman-compose (1.6, from PyPI) over Debian 12's podman 4.3.1,
# does not run this project on this host: crun needs a private mount namespace with a tmpfs
# over the cgroup2 mount (the hybrid layout), which loses podman's network-namespace bind
# mounts between its invocations; its health checks need systemd timers (no systemd here), and
# podman-compose ignores `condition: service_healthy` on podman 4.3.1. So corral's figures are
# printed alone; docs/benchmarks.md says so.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
if [ ! -x "$CORRAL" ]; then
  while pgrep -x cargo >/dev/null; do sleep 5; done
  cargo build --release -p corral
fi
work=$(mktemp -d /var/tmp/corral-bench-compose.XXXXXX)
export CORRAL_ROOT="$work/root"
cleanup() {
  set +e
  (cd "$work/proj" && "$CORRAL" compose down -v >/dev/null 2>&1)
  "$CORRAL" ps -aq 2>/dev/null | xargs -r "$CORRAL" rm -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/proj"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh sleep touch test httpd true; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$CORRAL" image import "$work/rootfs.tar" localhost/bench-compose:1 >/dev/null
p1=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
p2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/proj/compose.yaml" <<YAML
x-svc: &svc
  image: localhost/bench-compose:1
  stop_signal: SIGKILL
services:
  db:
    <<: *svc
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    volumes: ["data:/data"]
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/ready"], interval: 100ms}
  web:
    <<: *svc
    command: ["httpd", "-f", "-p", "80"]
    ports: ["127.0.0.1:$p1:80"]
    depends_on: {db: {condition: service_healthy}}
  api:
    <<: *svc
    command: ["httpd", "-f", "-p", "80"]
    ports: ["127.0.0.1:$p2:80"]
    depends_on: [db]
  worker:
    <<: *svc
    command: ["sleep", "3600"]
    depends_on: [db]
  cache:
    <<: *svc
    command: ["sleep", "3600"]
volumes:
  data: {}
YAML
cd "$work/proj"
echo "machine: $(nproc) cpus, kernel $(uname -r), corral $(git -C "$OLDPWD" rev-parse --short HEAD 2>/dev/null || echo '?')"
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
up=0; same=0; down=0
for _ in $(seq "$RUNS"); do
  up=$((up + $(t "$CORRAL" compose up -d --wait)))
  same=$((same + $(t "$CORRAL" compose up -d)))
  down=$((down + $(t "$CORRAL" compose down -v)))
done
python3 - "$RUNS" "$up" "$same" "$down" <<'PY'
import sys
n, up, same, down = (int(x) for x in sys.argv[1:])
print(f"up -d --wait (5 services, healthy db): {up/n/1000:.1f} ms")
print(f"up -d, no change:                      {same/n/1000:.1f} ms")
print(f"down -v:                               {down/n/1000:.1f} ms")
PY
