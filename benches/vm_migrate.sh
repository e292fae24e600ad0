#!/usr/bin/env bash
# What a live migration costs (issue 6): `corral vm migrate VM --to ADDR:PORT` with corral's
# settings (bandwidth unlimited, downtime limit 30 ms, auto-converge) against the same command
# with `--qemu-defaults` (QEMU's own: downtime limit 300 ms, bandwidth 128 MiB/s, no
# auto-converge), for a busy VM: 512 MiB of memory, a guest process that keeps rewriting a
# 100 MiB buffer in a tmpfs (non-zero bytes: QEMU sends zero pages as a flag, which would flatter
# both). The VM goes A -> B -> A ..., 2 x ROUNDS times with each setting (ROUNDS each way); printed per run and as means:
# the whole migration's time, corral's downtime (QEMU's completion -> the destination's guest
# runs, plus QEMU's pause) and QEMU's own downtime, memory sent, dirty-sync rounds, and the
# ratio defaults / corral. A migration that has not converged after LIMIT seconds has its
# writer stopped (a file in the tmpfs that the loop checks) so that it completes; such a run
# is marked "no" under "converged while writing", and its times include the wait.
# Then the issue's other figure: `corral vm snapshot create --memory` and `snapshot restore`
# of the same running VM (SNAPS times each).
#
# Two "hosts" on this machine, as in tests/vm_migrate.rs: network namespaces <ns>a and <ns>b,
# a veth with addresses for the migration's traffic (10.127.0.1/.2), a veth without addresses
# for the LAN that `corral network create lan --parent` bridges on each side, two state roots.
# Everything (VMs, receivers, networks, namespaces, the directory) is removed on exit.
#
# Builds nothing: needs target/release/corral and corral-vm-monitor (`cargo build --release -p
# corral`) and the static agent (`bash scripts/build-guest.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"  # rounds of four moves: corral, defaults, defaults, corral (each setting both ways)
LIMIT="${LIMIT:-30}"   # seconds before a migration that does not converge has its writer stopped
SNAPS="${SNAPS:-3}"    # snapshot create / restore runs
CORRAL="${CORRAL:-$PWD/target/release/corral}"

for tool in python3 qemu-system-x86_64 nsenter ip; do
  command -v "$tool" >/dev/null || { echo "vm_migrate.sh: missing $tool" >&2; exit 1; }
done
if [ ! -x "$CORRAL" ] || [ ! -x "$(dirname "$CORRAL")/corral-vm-monitor" ]; then
  echo "vm_migrate.sh: $CORRAL or corral-vm-monitor next to it is missing: run cargo build --release -p corral" >&2
  exit 1
fi
if [ -z "${CORRAL_GUEST_AGENT:-}" ] && [ ! -x target/x86_64-unknown-linux-gnu/release/corral-guest ]; then
  echo "vm_migrate.sh: the guest agent is missing: run bash scripts/build-guest.sh (or set CORRAL_GUEST_AGENT)" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/corral-bench-migrate.XXXXXX)
agent="${CORRAL_GUEST_AGENT:-$PWD/target/x86_64-unknown-linux-gnu/release/corral-guest}"
mkdir -p "$work/bin" "$work/a" "$work/b"
# Copies of the binaries, so that a rebuild in the tree during the run changes nothing.
cp "$CORRAL" "$(dirname "$CORRAL")/corral-vm-monitor" "$agent" "$work/bin/"
CORRAL="$work/bin/corral"
export CORRAL_GUEST_AGENT="$work/bin/corral-guest"
ns="cmb$(printf %05x $(($$ % 1048576)))"   # not crl...: that prefix is corral's own
declare -A addr=([a]=10.127.0.1 [b]=10.127.0.2)
port=7070
declare -A receiver=()

on() { # HOST ARGS...: corral on host a or b (bounded: a guest that broke must not hang this)
  local h=$1; shift
  CORRAL_ROOT="$work/$h" timeout 600 nsenter --net="/run/netns/$ns$h" "$CORRAL" "$@"
}
start_receiver() { # HOST: a receiver on a fresh port; sets $port
  port=$((port + 1))
  CORRAL_ROOT="$work/$1" nsenter --net="/run/netns/$ns$1" "$CORRAL" vm receive \
    --listen "${addr[$1]}:$port" 2>>"$work/receive-$1.log" &
  receiver[$1]=$!
  for _ in $(seq 100); do grep -q "receiving.*:$port" "$work/receive-$1.log" 2>/dev/null && return; sleep 0.05; done
  echo "vm_migrate.sh: the receiver on $1 did not start" >&2; exit 1
}
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    for h in a b; do
      echo "-- the VM on $h:" >&2
      on "$h" vm inspect mig 2>&1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"])' >&2
    done
  fi
  for h in a b; do
    ids=$(on "$h" vm ls -q 2>/dev/null)
    [ -n "$ids" ] && on "$h" vm rm -f $ids >/dev/null 2>&1
    on "$h" network rm lan >/dev/null 2>&1
  done
  for pid in "${receiver[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  ip netns del "${ns}a" 2>/dev/null
  ip netns del "${ns}b" 2>/dev/null
  ip link del "${ns}ca" 2>/dev/null
  ip link del "${ns}la" 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "${ns}a"
ip netns add "${ns}b"
for kind in c l; do
  ip link add "$ns${kind}a" netns "${ns}a" type veth peer name "$ns${kind}b" netns "${ns}b"
  for h in a b; do
    ip -n "$ns$h" link set lo up
    ip -n "$ns$h" link set "$ns$kind$h" up
  done
done
ip -n "${ns}a" addr add 10.127.0.1/30 dev "${ns}ca"
ip -n "${ns}b" addr add 10.127.0.2/30 dev "${ns}cb"

# The image: busybox, saved on A and loaded on B (the same digest on both).
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh cat dd mkdir mount sleep rm echo test; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
on a image import "$work/rootfs.tar" busybox >/dev/null
on a image save busybox -o "$work/busybox.tar"
on b image load -i "$work/busybox.tar" >/dev/null
on a network create lan --parent "${ns}la" --subnet 10.126.7.0/24 --gateway 10.126.7.1 --ip-range 10.126.7.64/26 >/dev/null
on b network create lan --parent "${ns}lb" --subnet 10.126.7.0/24 --gateway 10.126.7.2 --ip-range 10.126.7.128/26 >/dev/null
start_receiver a
port_a=$port
start_receiver b
port_b=$port
declare -A to=([a]="${addr[a]}:$port_a" [b]="${addr[b]}:$port_b")

# The VM: 512 MiB; its main process makes a 100 MiB source of random bytes once in a tmpfs,
# then rewrites a 100 MiB buffer from it over and over, except while /d/stop exists.
on a vm run -d --name mig --memory 512M --network lan --image busybox -- sh -c 'mkdir -p /d &&
  mount -t tmpfs -o size=220m t /d && dd if=/dev/urandom of=/d/block bs=1M count=1 2>/dev/null &&
  for i in 1 2 3 4 5 6 7 8 9 10; do cat /d/block /d/block /d/block /d/block /d/block /d/block /d/block /d/block /d/block /d/block; done > /d/src &&
  echo > /d/stop && while true; do
    if [ -e /d/stop ]; then sleep 0.1; else dd if=/d/src of=/d/buf bs=1M conv=notrunc 2>/dev/null; fi
  done' >/dev/null
for _ in $(seq 600); do on a vm exec mig -- test -e /d/stop && break; sleep 0.1; done
writer() { # HOST on|off: the guest's writer
  if [ "$2" = on ]; then on "$1" vm exec mig -- rm -f /d/stop; else on "$1" vm exec mig -- sh -c 'echo > /d/stop'; fi
}
accel=$(on a vm inspect mig | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["accelerator"])')
echo "== accelerator: $accel; QEMUs running on the machine: $(pgrep -c -f '^[^ ]*qemu-system' || true); $(nproc) CPUs"

here=a
results="$work/results.jsonl"
migrate() { # SETTING (corral|qemu): one move from $here to the other host, writer running
  local setting=$1 there flags=() converged=yes pid
  there=$([ "$here" = a ] && echo b || echo a)
  [ "$setting" = qemu ] && flags=(--qemu-defaults)
  writer "$here" on
  sleep 1
  on "$here" vm migrate mig --to "${to[$there]}" --json "${flags[@]}" > "$work/report.json" &
  pid=$!
  for _ in $(seq $((LIMIT * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    converged=no
    writer "$here" off || true   # the migration may complete meanwhile: the VM is gone from here
  fi
  wait "$pid"
  # The guest must have survived the move: its kernel says so on the console when it did not.
  if on "$there" vm logs --console mig | grep -q -E "Oops|BUG:|Kernel panic"; then
    echo "vm_migrate.sh: the guest's kernel broke after the move $here -> $there ($setting):" >&2
    on "$there" vm logs --console mig | grep -E "Oops|BUG:|RIP:|Kernel panic" | head -n 8 >&2
    cat "$work/report.json" >&2
    exit 1
  fi
  python3 - "$work/report.json" "$setting" "$here-$there" "$converged" >> "$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(setting=sys.argv[2], way=sys.argv[3], converged=sys.argv[4])
print(json.dumps(r))
PY
  writer "$there" off
  here=$there
}
for i in $(seq "$ROUNDS"); do migrate corral; migrate qemu; migrate qemu; migrate corral; done

python3 - "$results" "$accel" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n== {len(runs)} migrations of a 512 MiB VM rewriting 100 MiB ({sys.argv[2]})")
print(f"{'setting':8} {'way':5} {'total ms':>9} {'memory ms':>9} {'downtime ms':>11} {'QEMU downtime':>13} {'MiB sent':>9} {'rounds':>6}  converged while writing")
for r in runs:
    print(f"{r['setting']:8} {r['way']:5} {r['total_ms']:9} {r['memory_ms']:9} {r['downtime_ms']:11} {r['qemu_downtime_ms']:13} {r['ram_bytes'] >> 20:9} {r['dirty_sync_count']:6}  {r['converged']}")
def col(setting, key):
    return [r[key] for r in runs if r["setting"] == setting]
def ms(setting, key):
    v = col(setting, key)
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)
print()
for key in ["total_ms", "memory_ms", "downtime_ms", "qemu_downtime_ms"]:
    (c, cs), (q, qs) = ms("corral", key), ms("qemu", key)
    ratio = f"{q / c:.1f}x" if c else "-"
    print(f"{key:17} corral {c:9.0f} ± {cs:6.0f}   qemu defaults {q:9.0f} ± {qs:6.0f}   defaults / corral {ratio}")
for s in ["corral", "qemu"]:
    conv = col(s, "converged")
    print(f"{s}: converged while the guest wrote in {conv.count('yes')} of {len(conv)} runs")
PY

# Snapshots of the same VM (running, the writer stopped), on the host where it is now. A failure
# is printed in place of the figure.
creates=() restores=()
for i in $(seq "$SNAPS"); do
  t=$EPOCHREALTIME
  if on "$here" vm snapshot create --memory mig "s$i" >/dev/null 2>"$work/snap.err"; then
    creates+=("$(python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$t" "$EPOCHREALTIME")")
  else
    creates+=("failed($(tr '\n' ' ' < "$work/snap.err"))"); continue
  fi
  t=$EPOCHREALTIME
  if on "$here" vm snapshot restore mig "s$i" >/dev/null 2>"$work/snap.err"; then
    restores+=("$(python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$t" "$EPOCHREALTIME")")
  else
    restores+=("failed($(tr '\n' ' ' < "$work/snap.err"))")
  fi
done
echo
echo "== snapshot of the same running VM ($accel): create --memory ms: ${creates[*]}; restore (running VM) ms: ${restores[*]}"
on "$here" vm snapshot ls mig
