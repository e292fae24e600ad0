#!/usr/bin/env bash
# `corral compose` against podman-compose, side by side in one run (issue 17): a 5-service
# project (one network, one volume, two published ports, a service_healthy dependency) —
# `up -d` to all running and the dependency healthy, `up -d` with no change, `down -v`.
# Prints the median of each over RUNS runs for both tools and the ratio podman-compose/corral.
#
# The peer: podman-compose from the project's .venv (pinned in scripts/requirements-test.txt)
# over Debian 12's podman 4.3.1, configured as tests/src/podman_compose.rs configures it for
# these machines: runc (crun refuses the hybrid cgroup layout), cgroupfs, file events, ulimits
# within root's hard limits, netavark + aardvark-dns (DNS by service name), an overlay store and
# network definitions in the bench's own directory; docker compose compatibility mode.
#
# What differs, said in the output too: podman runs health checks from systemd timers and
# there is no systemd here, so after podman-compose's `up -d` the bench runs `podman
# healthcheck run` on db once (what the timer would do) inside the timed step; and
# podman-compose 1.6 ignores `condition: service_healthy` on podman 4.3.1 (web does not wait
# for db). corral's step is `up -d --wait`: web starts once db is healthy, and up returns once
# every service runs and db is healthy.
#
# Cleanup: both projects down, the podman store removed, and what netavark left on the host
# since the start (nft tables/chains named NETAVARK, podmanN bridges, new entries of
# /run/containers/networks) removed; nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
PODMAN_COMPOSE="${PODMAN_COMPOSE:-$PWD/.venv/bin/podman-compose}"
if [ ! -x "$CORRAL" ]; then
  while pgrep -x cargo >/dev/null; do sleep 5; done
  cargo build --release -p corral
fi
for tool in podman runc; do
  command -v "$tool" >/dev/null || { echo "compose bench: $tool not installed: run scripts/setup.sh" >&2; exit 1; }
done
[ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ] \
  || { echo "compose bench: netavark not installed: run scripts/setup.sh" >&2; exit 1; }
[ -x "$PODMAN_COMPOSE" ] || { echo "compose bench: $PODMAN_COMPOSE missing: run scripts/setup.sh" >&2; exit 1; }

work=$(mktemp -d /var/tmp/corral-bench-compose.XXXXXX)
export CORRAL_ROOT="$work/root"
export CONTAINERS_CONF="$work/podman/containers.conf" CONTAINERS_STORAGE_CONF="$work/podman/storage.conf"
export PODMAN_COMPOSE_DOCKER_COMPOSE_COMPAT=1
before_links=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort)
before_chains=$(nft -j list ruleset | python3 -c '
import json, sys
for i in json.load(sys.stdin)["nftables"]:
    c = i.get("chain") or i.get("table")
    if c: print(c["family"], c.get("table", c["name"]), c["name"] if "table" in c else "")
')
had_run_networks=$([ -e /run/containers/networks ] && echo 1 || echo 0)
before_run_entries=$(ls -A /run/containers/networks 2>/dev/null | sort || true)

# Removes what netavark added since the start: chains named NETAVARK that are new (a new table
# only when it holds nothing else), new podmanN bridges, its run dir if it was not there.
remove_netavark_leftovers() {
  BEFORE="$before_chains" python3 - <<'PY'
import json, os, subprocess
before = set(tuple(l.split(" ")) for l in os.environ["BEFORE"].splitlines() if l)
items = json.loads(subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True).stdout)["nftables"]
tables = {(i["table"]["family"], i["table"]["name"]) for i in items if "table" in i}
for fam, tab in sorted(tables):
    chains = [i["chain"]["name"] for i in items if "chain" in i and (i["chain"]["family"], i["chain"]["table"]) == (fam, tab)]
    new_nv = [c for c in chains if "NETAVARK" in c and (fam, tab, c) not in before]
    if not new_nv:
        continue
    rules = [(r["chain"], r["handle"], any(f'"{c}"' in json.dumps(r.get("expr", [])) for c in new_nv))
             for r in (i["rule"] for i in items if "rule" in i) if (r["family"], r["table"]) == (fam, tab)]
    only_nv = all("NETAVARK" in c or all(m for rc, _, m in rules if rc == c) for c in chains)
    if (fam, tab, "") not in before and only_nv:
        subprocess.run(["nft", "delete", "table", fam, tab])
        continue
    for chain, handle, mentions in rules:
        if mentions and "NETAVARK" not in chain:
            subprocess.run(["nft", "delete", "rule", fam, tab, chain, "handle", str(handle)])
    for c in new_nv:
        subprocess.run(["nft", "flush", "chain", fam, tab, c])
    for c in new_nv:
        subprocess.run(["nft", "delete", "chain", fam, tab, c])
PY
  ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | comm -13 <(echo "$before_links") - \
    | grep -E '^(cni-)?podman[0-9]+$' | while read -r l; do ip link delete "$l"; done || true
  if [ "$had_run_networks" = 0 ]; then
    rm -rf /run/containers/networks
    rmdir /run/containers 2>/dev/null || true
  elif [ -d /run/containers/networks ]; then
    ls -A /run/containers/networks | sort | comm -13 <(echo "$before_run_entries") - \
      | while read -r e; do rm -rf "/run/containers/networks/$e"; done
  fi
}

cleanup() {
  set +e
  (cd "$work/corral" && "$CORRAL" compose -p bench down -v >/dev/null 2>&1)
  "$CORRAL" ps -aq 2>/dev/null | xargs -r "$CORRAL" rm -f >/dev/null 2>&1
  (cd "$work/podman-proj" && "$PODMAN_COMPOSE" -p bench down -v >/dev/null 2>&1)
  podman rm -a -f -t 0 >/dev/null 2>&1
  podman volume rm -a -f >/dev/null 2>&1
  podman network ls --format '{{.Name}}' 2>/dev/null | grep -vx podman | xargs -r podman network rm -f >/dev/null 2>&1
  podman rmi -a -f >/dev/null 2>&1
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
  remove_netavark_leftovers
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/corral" "$work/podman-proj" \
  "$work/podman/store/tmp" "$work/podman/net"
cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$work/podman/store/tmp"
[network]
network_backend = "netavark"
network_config_dir = "$work/podman/net"
CONF
cat > "$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "overlay"
graphroot = "$work/podman/store/root"
runroot = "$work/podman/store/run"
CONF
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh sleep touch test httpd true; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$CORRAL" image import "$work/rootfs.tar" localhost/bench-compose:1 >/dev/null
podman import --change 'CMD ["sh"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$work/rootfs.tar" localhost/bench-compose:1 >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The same file for both; each side publishes on ports of its own.
compose_yaml=$(cat <<'YAML'
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
    ports: ["127.0.0.1:${WEB_PORT}:80"]
    depends_on: {db: {condition: service_healthy}}
  api:
    <<: *svc
    command: ["httpd", "-f", "-p", "80"]
    ports: ["127.0.0.1:${API_PORT}:80"]
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
)
echo "$compose_yaml" > "$work/corral/compose.yaml"
echo "$compose_yaml" > "$work/podman-proj/compose.yaml"
printf 'WEB_PORT=%s\nAPI_PORT=%s\n' "$(free_port)" "$(free_port)" > "$work/corral/.env"
printf 'WEB_PORT=%s\nAPI_PORT=%s\n' "$(free_port)" "$(free_port)" > "$work/podman-proj/.env"

corral_up() { (cd "$work/corral" && "$CORRAL" compose -p bench up -d --wait); }
corral_same() { (cd "$work/corral" && "$CORRAL" compose -p bench up -d); }
corral_down() { (cd "$work/corral" && "$CORRAL" compose -p bench down -v); }
podman_up() {
  (cd "$work/podman-proj" && "$PODMAN_COMPOSE" -p bench up -d) && podman healthcheck run bench-db-1
}
podman_same() { (cd "$work/podman-proj" && "$PODMAN_COMPOSE" -p bench up -d); }
podman_down() { (cd "$work/podman-proj" && "$PODMAN_COMPOSE" -p bench down -v); }
running() { "$@" ps --filter label=com.docker.compose.project=bench --filter status=running -q | wc -l; }

# Microseconds one command takes; the bench stops if it fails.
t() {
  local s e
  s=$(date +%s%N)
  if ! "$@" >"$work/last.log" 2>&1; then
    echo "compose bench: $* failed:" >&2
    cat "$work/last.log" >&2
    exit 1
  fi
  e=$(date +%s%N)
  echo $(((e - s) / 1000))
}

echo "machine: $(nproc) cpus, kernel $(uname -r), corral $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $("$PODMAN_COMPOSE" --version 2>/dev/null | tr '\n' ' ')"
results="$work/results.txt"
: > "$results"
for _ in $(seq "$RUNS"); do
  for side in corral podman; do
    up=$(t "${side}_up")
    n=$(running "$([ $side = corral ] && echo "$CORRAL" || echo podman)")
    [ "$n" = 5 ] || { echo "compose bench: $side: $n of 5 services running after up" >&2; exit 1; }
    ids=$( [ $side = corral ] && "$CORRAL" ps -aq | sort || podman ps -aq | sort)
    same=$(t "${side}_same")
    ids2=$( [ $side = corral ] && "$CORRAL" ps -aq | sort || podman ps -aq | sort)
    [ "$ids" = "$ids2" ] || { echo "compose bench: $side recreated containers on an unchanged up" >&2; exit 1; }
    down=$(t "${side}_down")
    echo "$side $up $same $down" >> "$results"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for side in ("corral", "podman"):
    cols = list(zip(*[[int(x) for x in r[1:]] for r in rows if r[0] == side]))
    med[side] = [statistics.median(c) / 1000 for c in cols]
labels = ["up -d to all running, db healthy", "up -d, no change", "down -v"]
print(f"{'median of ' + str(len(rows) // 2) + ' runs':34s} {'corral':>10s} {'podman-compose':>15s} {'ratio':>7s}")
for i, label in enumerate(labels):
    c, p = med["corral"][i], med["podman"][i]
    print(f"{label:34s} {c:8.1f} ms {p:12.1f} ms {p / c:6.1f}x")
print("corral: up -d --wait (web starts once db is healthy). podman-compose: up -d, then")
print("`podman healthcheck run` of db (podman's health checks run from systemd timers; there is no")
print("systemd here); podman-compose 1.6 ignores `condition: service_healthy` on podman 4.3.1.")
PY
