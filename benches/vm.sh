#!/usr/bin/env bash
# What corral's VMs cost on top of QEMU (issue 5), three figures side by side in one run,
# each named with the accelerator it ran under (tcg on hosts without hardware virtualization):
#
#  1. `corral vm run --rm --network none --image busybox -- true` against a hand-written QEMU
#     command that boots the same kernel, initramfs and disks to the same point: the exact argv
#     corral gave QEMU (read from /proc/PID/cmdline of a VM corral started), with this script's
#     own socket paths and a fresh writable disk, and benches/vm_agent_client.py in place of the
#     monitor (Boot -> Ready, Exec `true` as session 0 -> Exit, Shutdown, QEMU exits).
#     The writable disk is a copy of the empty one corral makes for a new VM (`vm create`), made
#     inside the timed run (`cp --sparse`, as corral makes one per VM) or before it (QEMU +
#     client alone).
#     Goal: corral adds under 50 ms.
#  2. A detached VM: QEMU start -> agent Ready (`state.boot_ms` of `corral vm inspect`) over a
#     few starts, and the `corral vm exec VM true` round trip, split into its parts with the
#     client talking to the monitor's socket directly (Exec -> Exit without the CLI; Ping ->
#     Pong, the protocol floor: monitor + virtio-serial + agent, no process). `corral exec`
#     into a container for comparison. Goal: vm exec under 10 ms once the VM runs.
#  3. Resident memory of the monitor (corral-vm-monitor, QEMU's parent) against QEMU's, two VMs
#     running: VmRSS, Pss and private pages from /proc/PID/smaps_rollup. Goal: under 2 MiB.
#
# Builds nothing: needs target/release/corral and corral-vm-monitor (`cargo build --release -p
# corral`) and the static agent (`bash scripts/build-guest.sh`), hyperfine (scripts/setup.sh).
# Everything runs in a temporary CORRAL_ROOT under /var/tmp, with --network none; the VMs, the
# container, the processes it started and the directory are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-15}"            # benchmark 1: interleaved rounds of the three commands (plus a warmup round)
STARTS="${STARTS:-3}"         # benchmark 2, detached starts
EXEC_RUNS="${EXEC_RUNS:-50}"  # benchmark 2, exec round trips
PINGS="${PINGS:-200}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
CLIENT="$PWD/benches/vm_agent_client.py"

missing=""
for tool in hyperfine python3 qemu-system-x86_64; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -z "$missing" ] || { echo "vm.sh: missing:$missing (scripts/setup.sh installs them)" >&2; exit 1; }
if [ ! -x "$CORRAL" ] || [ ! -x "$(dirname "$CORRAL")/corral-vm-monitor" ]; then
  echo "vm.sh: $CORRAL or corral-vm-monitor next to it is missing: run cargo build --release -p corral" >&2
  exit 1
fi
if [ -z "${CORRAL_GUEST_AGENT:-}" ] && [ ! -x target/x86_64-unknown-linux-gnu/release/corral-guest ]; then
  echo "vm.sh: the guest agent is missing: run bash scripts/build-guest.sh (or set CORRAL_GUEST_AGENT)" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/corral-bench-vm.XXXXXX)
export CORRAL_ROOT="$work/corral"
# Copies of the binaries, so that a rebuild in the tree during the run changes nothing.
agent="${CORRAL_GUEST_AGENT:-$PWD/target/x86_64-unknown-linux-gnu/release/corral-guest}"
mkdir -p "$work/bin"
cp "$CORRAL" "$(dirname "$CORRAL")/corral-vm-monitor" "$agent" "$work/bin/"
CORRAL="$work/bin/corral"
export CORRAL_GUEST_AGENT="$work/bin/corral-guest"
hand="$work/hand"
mkdir -p "$hand"

# Kills a process this script started (its pid in FILE), if it is still the one we started.
kill_ours() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$work"; then
    kill "$pid" 2>/dev/null
  fi
}
cleanup() {
  set +e
  kill_ours "$hand/qemu.pid"
  if [ -d "$CORRAL_ROOT" ]; then
    ids=$("$CORRAL" vm ls -q 2>/dev/null)
    [ -n "$ids" ] && "$CORRAL" vm rm -f $ids >/dev/null 2>&1
    ids=$("$CORRAL" ps -a -q 2>/dev/null)
    [ -n "$ids" ] && "$CORRAL" rm -f $ids >/dev/null 2>&1
  fi
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
qemus() { pgrep -c -f "^[^ ]*qemu-system" || true; }

# The image: busybox, as in benches/container.sh.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$CORRAL" image import "$work/rootfs.tar" busybox >/dev/null

inspect() { # ID EXPR: a field of `corral vm inspect ID`, by a Python expression on `v`.
  "$CORRAL" vm inspect "$1" | python3 -c "import json,sys; v=json.load(sys.stdin)[0]; print($2)"
}
elapsed_ms() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000, 1))" "$1" "$EPOCHREALTIME"; }
vm_run_d() { "$CORRAL" vm run -d --network none --image busybox -- sleep 100000; }

# ---- 2. start -> agent ready (detached starts); the last VM stays for what follows ----------
echo "== QEMUs running on the machine: $(qemus)"
boot_ms=() run_d_ms=()
for i in $(seq "$STARTS"); do
  [ -n "${vm_a:-}" ] && "$CORRAL" vm rm -f "$vm_a" >/dev/null
  t=$EPOCHREALTIME
  vm_a=$(vm_run_d)
  run_d_ms+=("$(elapsed_ms "$t")")
  boot_ms+=("$(inspect "$vm_a" 'v["state"]["boot_ms"]')")
done
accel=$(inspect "$vm_a" 'v["accelerator"]')
qemu_a=$(inspect "$vm_a" 'v["state"]["qemu_pid"]')
mon_a=$(inspect "$vm_a" 'v["state"]["monitor_pid"]')
run_a=$(ls -d /run/corral/vm-"${vm_a:0:16}"-* | head -n 1)
ctl="$run_a/ctl.sock"
echo "accelerator: $accel; $STARTS detached starts: boot_ms (QEMU start -> agent Ready) ${boot_ms[*]}; vm run -d wall ms ${run_d_ms[*]}"

# The hand-written QEMU command: corral's exact argv with this script's paths in place of the
# VM's runtime directory and state directory.
python3 - "$qemu_a" "$run_a/" "$CORRAL_ROOT/vms/$vm_a/" "$hand/" > "$work/qemu-argv.sh" <<'PY'
import shlex, sys
pid, run_dir, vm_dir, hand = sys.argv[1:]
argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[:-1]
argv = [a.replace(run_dir, hand).replace(vm_dir, hand) for a in argv]
assert not any("/run/corral" in a or "/vms/" in a for a in argv), argv
print("qemu_argv=(" + " ".join(shlex.quote(a) for a in argv) + ")")
print("QEMU argv:", " ".join(argv), file=sys.stderr)
PY
# The writable disk: a copy of the one corral makes for a new VM (whatever its format), taken
# from a VM that was created and never started.
vm_t=$("$CORRAL" vm create --network none --image busybox -- true)
upper=$(inspect "$vm_t" 'v["config"]["upper_disk"]')
upper_name=$(basename "$upper")
cp --sparse=always "$upper" "$work/upper-template"
"$CORRAL" vm rm -f "$vm_t" >/dev/null
cat > "$work/hand.sh" <<EOF
#!/usr/bin/env bash
# One hand-written VM run. \$1: copy (copy the empty writable disk here) or premade (use the
# copy prepare.sh made before the timing).
set -e
h=$hand
. $work/qemu-argv.sh
rm -f "\$h"/*.sock "\$h/$upper_name" "\$h/console.log"
if [ "\$1" = copy ]; then
  cp --sparse=always "$work/upper-template" "\$h/$upper_name"
else
  mv "\$h/upper-next" "\$h/$upper_name"
fi
t0=\$(date +%s%N)
"\${qemu_argv[@]}" >"\$h/qemu.log" 2>&1 </dev/null &
q=\$!
echo \$q > "\$h/qemu.pid"
if ! python3 $CLIENT boot "\$h/agent.sock" --t0-ns "\$t0" --boot-ms-file "\$h/boot_ms.\$1"; then
  kill \$q 2>/dev/null; wait \$q || true; tail -n 20 "\$h/qemu.log" "\$h/console.log" >&2; exit 1
fi
wait \$q || { echo "hand.sh: QEMU exited \$?" >&2; tail -n 20 "\$h/qemu.log" "\$h/console.log" >&2; exit 1; }
EOF
cat > "$work/prepare.sh" <<EOF
#!/bin/sh
set -e
rm -f $hand/upper-next
cp --sparse=always $work/upper-template $hand/upper-next
EOF

# ---- 2. exec round trips ------------------------------------------------------------------
ct=$("$CORRAL" run -d --network none busybox sleep 100000)
echo "== exec round trips ($accel), QEMUs running (one is ours): $(qemus)"
hyperfine -N --warmup 5 --runs "$EXEC_RUNS" --export-json "$work/exec.json" \
  -n "corral vm exec VM true" "$CORRAL vm exec $vm_a true" \
  -n "corral exec CONTAINER true" "$CORRAL exec $ct true"
python3 "$CLIENT" exec "$ctl" "$EXEC_RUNS" > "$work/client-exec.json"
python3 "$CLIENT" ping "$ctl" "$PINGS" > "$work/client-ping.json"

# ---- 3. memory: two VMs running -------------------------------------------------------------
vm_b=$(vm_run_d)
qemu_b=$(inspect "$vm_b" 'v["state"]["qemu_pid"]')
mon_b=$(inspect "$vm_b" 'v["state"]["monitor_pid"]')
sleep 2
for p in "$mon_a" "$qemu_a" "$mon_b" "$qemu_b"; do
  { grep VmRSS "/proc/$p/status"; cat "/proc/$p/smaps_rollup"; } > "$work/mem.$p"
done
printf '%s\n' "$mon_a $qemu_a" "$mon_b $qemu_b" > "$work/mem.pids"
"$CORRAL" vm rm -f "$vm_a" "$vm_b" >/dev/null
"$CORRAL" rm -f "$ct" >/dev/null

# ---- 1. corral vm run --rm against the hand-written QEMU command ------------------------------
# Interleaved rounds (the order rotates each round) rather than one command's runs after the
# other's: the machine is shared, and load that comes and goes then hits all three alike.
# Round 0 is a warmup. Wall time by bash's $EPOCHREALTIME around each command.
echo "== vm run --rm true ($accel): $RUNS interleaved rounds; QEMUs running (none ours): $(qemus)"
names=(corral hand-copy hand-premade)
cmds=("$CORRAL vm run --rm --network none --image busybox -- true" "bash $work/hand.sh copy" "bash $work/hand.sh premade")
: > "$work/run.times"
for r in $(seq 0 "$RUNS"); do
  for k in 0 1 2; do
    j=$(( (r + k) % 3 ))
    sh "$work/prepare.sh"
    others=$(qemus)
    t=$EPOCHREALTIME
    ${cmds[$j]} >/dev/null || { echo "vm.sh: round $r: ${names[$j]} failed" >&2; exit 1; }
    echo "$r ${names[$j]} $(elapsed_ms "$t") $others" >> "$work/run.times"
  done
done
echo "== QEMUs running at the end: $(qemus)"

# ---- summary ----------------------------------------------------------------------------------
python3 - "$work" "$accel" "$(nproc)" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "${boot_ms[*]}" "${run_d_ms[*]}" <<'PY'
import json, statistics as st, sys
work, accel, cpus, commit, boot, run_d = sys.argv[1:7]
def hf(name):
    return {r["command"]: r for r in json.load(open(f"{work}/{name}.json"))["results"]}
ms = lambda s: s * 1000
ex = hf("exec")
rounds = {}
max_others = 0
for line in open(f"{work}/run.times"):
    r, name, t, others = line.split()
    max_others = max(max_others, int(others))
    if r != "0":
        rounds.setdefault(int(r), {})[name] = float(t)
series = {n: [rounds[r][n] for r in sorted(rounds)] for n in ("corral", "hand-copy", "hand-premade")}
hb = [float(l.split()[1]) for v in ("copy", "premade") for l in open(f"{work}/hand/boot_ms.{v}") if l.startswith("boot_ms")]
cb = [float(x) for x in boot.split()]
rd = [float(x) for x in run_d.split()]
print(f"\n---- summary ({cpus} cpus, accelerator {accel}, corral {commit}) ----")
print(f"1. vm run --rm --network none --image busybox -- true [{accel}], {len(rounds)} interleaved rounds "
      f"(up to {max_others} other QEMUs running on the machine meanwhile):")
labels = {"corral": "corral vm run --rm", "hand-copy": "hand-written, disk copied in the run", "hand-premade": "hand-written, disk copied before"}
for n, xs in series.items():
    print(f"   {labels[n]:31} mean {st.mean(xs):7.1f} ms ± {st.stdev(xs) if len(xs) > 1 else 0:5.1f}, median {st.median(xs):7.1f} ms")
c = series["corral"]
for n in ("hand-copy", "hand-premade"):
    h = series[n]
    d = [a - b for a, b in zip(c, h)]
    print(f"   corral - {labels[n]}: mean {st.mean(c) - st.mean(h):+.1f} ms, median {st.median(c) - st.median(h):+.1f} ms, "
          f"median of the paired differences {st.median(d):+.1f} ms; corral / hand-written = {st.mean(c) / st.mean(h):.3f}  (goal: < 50 ms)")
print(f"2. QEMU start -> agent Ready [{accel}]: corral (state.boot_ms) {', '.join(f'{x:.0f}' for x in cb)} ms "
      f"(mean {st.mean(cb):.0f}); hand-written (client) mean {st.mean(hb):.0f} ms, median {st.median(hb):.0f} ms over {len(hb)} boots")
print(f"   vm run -d wall - boot_ms (corral's own start path: create, disk, monitor, Ready -> CLI) [{accel}]: "
      f"{', '.join(f'{a - b:.0f}' for a, b in zip(rd, cb))} ms")
v, k = ex["corral vm exec VM true"], ex["corral exec CONTAINER true"]
ce = json.load(open(f"{work}/client-exec.json"))["ms"]
cp = json.load(open(f"{work}/client-ping.json"))["ms"]
print(f"   corral vm exec VM true [{accel}]:           mean {ms(v['mean']):6.2f} ms ± {ms(v['stddev']):.2f}, median {ms(v['median']):6.2f} ms ({len(v['times'])} runs)   (goal: < 10 ms)")
print(f"   Exec true via ctl.sock, no CLI [{accel}]:   mean {st.mean(ce):6.2f} ms, median {st.median(ce):6.2f} ms ({len(ce)} requests, one connection)")
print(f"   Ping via ctl.sock (protocol floor) [{accel}]: mean {st.mean(cp):6.2f} ms, median {st.median(cp):6.2f} ms ({len(cp)} requests)")
print(f"   => CLI {ms(v['median']) - st.median(ce):.2f} ms, guest fork+exec+wait {st.median(ce) - st.median(cp):.2f} ms, "
      f"monitor+channel+agent {st.median(cp):.2f} ms (medians)")
print(f"   corral exec CONTAINER true (no VM):   mean {ms(k['mean']):6.2f} ms ± {ms(k['stddev']):.2f}, median {ms(k['median']):6.2f} ms")
def mem(pid):
    d = {}
    for line in open(f"{work}/mem.{pid}"):
        p = line.split()
        if len(p) >= 2 and p[0].endswith(":") and p[1].isdigit():
            d[p[0][:-1]] = int(p[1]) / 1024
    d["Private"] = d["Private_Clean"] + d["Private_Dirty"]
    return d
print(f"3. memory with two VMs running [{accel}] (MiB):   VmRSS    Pss  Private (dirty)")
for i, line in enumerate(open(f"{work}/mem.pids")):
    mon, qemu = line.split()
    for name, pid in [(f"monitor {i + 1}", mon), (f"qemu {i + 1}", qemu)]:
        m = mem(pid)
        print(f"   {name:10} {m['VmRSS']:8.2f} {m['Pss']:7.2f} {m['Private']:7.2f} ({m['Private_Dirty']:.2f})")
PY
