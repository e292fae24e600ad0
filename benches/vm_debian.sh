#!/usr/bin/env bash
# A real Debian 12 disk (tests/src/debian12-disk.sh: debootstrap with systemd, cloud-init,
# openssh-server, systemd-networkd asking DHCP; built once and cached) booted by corral and by a
# hand-written QEMU command, side by side in one run, interleaved, RUNS boots each:
#
#  - corral: `corral vm start` of a VM made beforehand with `vm create --boot-disk DISK
#    --cloud-init USER-DATA --network NET` (the create, which copies the disk into the VM's
#    directory, is not timed; its time is printed apart). DHCP from corral's network.
#  - QEMU by hand: the same machine, accelerator, CPU model, CPUs and memory as corral gives QEMU
#    (q35, the accelerator corral picked, qemu64, 1 CPU, 1 GiB), the disk as a fresh qcow2
#    overlay of the cached one, the same cloud-init seed (a copy of the corral VM's, so cloud-init
#    does the same work), virtio-rng as corral gives it, and QEMU's user-mode network (its
#    built-in DHCP server) as a sysadmin writes by hand.
#
# Figures, each boot a first boot of a fresh disk:
#  - login prompt: from the start (vm start; QEMU's spawn) to `login:` on the serial console;
#  - network online: to systemd's "Finished systemd-networkd-wait-online" on the console (the
#    guest holds its DHCP lease);
#  - DHCP exchange in the guest: systemd-networkd's journal, from the NIC's carrier to the lease
#    ("DHCPv4 address ... acquired"), on the guest's monotonic clock, read over ssh. The issue's
#    goal: DHCP adds < 100 ms to the boot;
#  - corral's DHCP server seen from the host: its answers' delays on the network's bridge
#    (DISCOVER -> OFFER, REQUEST -> ACK, and the first DISCOVER -> ACK), captured with an
#    AF_PACKET socket during corral's boots. QEMU's user-mode DHCP server cannot be watched so.
#
# Needs root, qemu-system-x86_64, python3, ssh, genisoimage, target/release/corral (`cargo build
# --release -p corral`). Everything runs in a temporary CORRAL_ROOT under /var/tmp, with a
# network of its own; the VMs, QEMUs, the network and the directory are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"

missing=""
for tool in qemu-system-x86_64 qemu-img python3 ssh ssh-keygen genisoimage; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -z "$missing" ] || { echo "vm_debian.sh: missing:$missing (scripts/setup.sh installs them)" >&2; exit 1; }
if [ ! -x "$CORRAL" ] || [ ! -x "$(dirname "$CORRAL")/corral-vm-monitor" ]; then
  echo "vm_debian.sh: $CORRAL or corral-vm-monitor next to it is missing: run cargo build --release -p corral" >&2
  exit 1
fi
disk=$(bash tests/src/debian12-disk.sh) || { echo "vm_debian.sh: no Debian disk (above)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/corral-bench-vmdeb.XXXXXX)
export CORRAL_ROOT="$work/corral"
# Copies of the binaries, so that a rebuild in the tree during the run changes nothing.
mkdir -p "$work/bin"
cp "$CORRAL" "$(dirname "$CORRAL")/corral-vm-monitor" "$work/bin/"
CORRAL="$work/bin/corral"
tag=$$
net="bvd$tag"
qemu_pid=""
sniff_pid=""
cleanup() {
  set +e
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  [ -n "$sniff_pid" ] && kill "$sniff_pid" 2>/dev/null
  for vm in $("$CORRAL" vm ls -q 2>/dev/null); do "$CORRAL" vm rm -f "$vm" >/dev/null 2>&1; done
  "$CORRAL" network rm -f "$net" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

"$CORRAL" network create --subnet "10.233.$((tag % 200)).0/24" "$net" >/dev/null
bridge=$("$CORRAL" network inspect "$net" | python3 -c 'import json, sys; v = json.load(sys.stdin); v = v[0] if isinstance(v, list) else v; print(v["bridge"])')
ssh-keygen -q -t ed25519 -N "" -f "$work/key"
cat >"$work/user-data" <<EOF
#cloud-config
users:
  - name: bench
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys: ["$(cat "$work/key.pub")"]
EOF
ssh_opts=(-i "$work/key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -o LogLevel=ERROR -o ConnectTimeout=5)

# watch CONSOLE T0_NS: waits (at most 10 min) for the login prompt and network-online on the
# console file, polling every 20 ms; prints "LOGIN_S ONLINE_S" from T0.
watch() {
  python3 - "$1" "$2" <<'PY'
import re, sys, time
ONLINE = re.compile(rb"Finished .{0,60}(systemd-networkd-wait-online|Wait for Network to be Configured)")
path, t0 = sys.argv[1], int(sys.argv[2])
login = online = None
deadline = time.time() + 600
while (login is None or online is None) and time.time() < deadline:
    try:
        text = open(path, "rb").read()
    except FileNotFoundError:
        text = b""
    now = (time.time_ns() - t0) / 1e9
    # systemd shortens the unit's name on the console: "Finished systemd-networkd-…Wait for
    # Network to be Configured."
    if online is None and ONLINE.search(text):
        online = now
    if login is None and b" login: " in text:
        login = now
    time.sleep(0.02)
if login is None or online is None:
    sys.exit(f"no login prompt or network-online on {path} in 10 min")
print(f"{login:.2f} {online:.2f}")
PY
}

# sniff BRIDGE OUT: until the first ACK on BRIDGE (at most 10 min), writes to OUT the ms from
# the first DISCOVER to the first OFFER, from the first REQUEST to the first ACK, and from the
# first DISCOVER to the first ACK, as the host sees the frames.
sniff() {
  python3 - "$1" "$2" <<'PY'
import socket, struct, sys, time
bridge, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((bridge, 0))
s.settimeout(1)
seen = {}  # DHCP message type (option 53) -> first time seen
deadline = time.time() + 600
while 5 not in seen and time.time() < deadline:
    try:
        pkt = s.recv(4096)
    except socket.timeout:
        continue
    now = time.monotonic()
    if len(pkt) < 42 or pkt[12:14] != b"\x08\x00" or pkt[23] != 17:
        continue
    udp = 14 + (pkt[14] & 15) * 4
    ports = set(struct.unpack("!HH", pkt[udp:udp + 4]))
    opts = pkt[udp + 8 + 240:]
    if ports != {67, 68}:
        continue
    i = 0
    while i + 1 < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == 53:
            seen.setdefault(opts[i + 2], now)
        i += 2 + opts[i + 1]
ms = lambda a, b: f"{(seen[b] - seen[a]) * 1000:.2f}" if a in seen and b in seen else "nan"
open(out, "w").write(f"{ms(1, 2)} {ms(3, 5)} {ms(1, 5)}\n")
PY
}

# dhcp_ms SSH-ARGS...: carrier -> lease in the guest's networkd journal, in ms.
dhcp_ms() {
  local out=""
  for _ in $(seq 1 60); do
    if out=$(ssh "${ssh_opts[@]}" "$@" -- sudo journalctl -b -o short-monotonic -u systemd-networkd 2>/dev/null); then
      break
    fi
    sleep 2
  done
  python3 -c '
import re, sys
carrier = lease = None
for l in sys.stdin:
    m = re.match(r"\[\s*([0-9.]+)\]", l)
    if not m: continue
    t = float(m.group(1))
    if carrier is None and "Gained carrier" in l: carrier = t
    if lease is None and "DHCPv4 address" in l: lease = t
if carrier is None or lease is None: sys.exit("no carrier or lease in the journal")
print(f"{(lease - carrier) * 1000:.0f}")
' <<<"$out"
}

results="$work/results"
: >"$results"
for i in $(seq 1 "$RUNS"); do
  # corral
  vm="bvd$tag-$i"
  c0=$(date +%s%N)
  "$CORRAL" vm create --name "$vm" --cpus 1 --memory 1G --network "$net" \
    --boot-disk "$disk" --cloud-init "$work/user-data" >/dev/null
  create_s=$(python3 -c "import sys; print(f'{($(date +%s%N) - $c0) / 1e9:.2f}')")
  id=$("$CORRAL" vm inspect "$vm" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
  sniff "$bridge" "$work/sniff" &
  sniff_pid=$!
  sleep 0.5
  t0=$(date +%s%N)
  "$CORRAL" vm start "$vm" >/dev/null
  read -r login online < <(watch "$CORRAL_ROOT/vms/$id/console.log" "$t0")
  wait "$sniff_pid"
  read -r offer ack lease <"$work/sniff"
  ip=$("$CORRAL" vm inspect "$vm" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["network_endpoints"][0]["ip"])')
  dhcp=$(dhcp_ms "bench@$ip")
  echo "corral $login $online $dhcp $create_s $offer $ack $lease" >>"$results"
  echo "run $i corral: login prompt ${login}s, network online ${online}s, DHCP in the guest ${dhcp} ms (vm create ${create_s}s); on the bridge: DISCOVER->OFFER ${offer} ms, REQUEST->ACK ${ack} ms, DISCOVER->ACK ${lease} ms" >&2
  cp "$CORRAL_ROOT/vms/$id/seed.iso" "$work/seed.iso"
  "$CORRAL" vm rm -f "$vm" >/dev/null

  # QEMU by hand, the same guest
  rm -f "$work/hand.qcow2" "$work/hand.log"
  qemu-img create -q -f qcow2 -F qcow2 -b "$disk" "$work/hand.qcow2"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  t0=$(date +%s%N)
  qemu-system-x86_64 -machine q35 -accel tcg,tb-size=128 -cpu qemu64 -smp 1 -m 1024M \
    -nodefaults -no-user-config -nographic -serial "file:$work/hand.log" \
    -drive "file=$work/hand.qcow2,if=none,id=d0,format=qcow2" -device virtio-blk-pci,drive=d0 \
    -drive "file=$work/seed.iso,if=none,id=d1,format=raw,readonly=on" -device virtio-blk-pci,drive=d1 \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
    -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0 \
    2>>"$work/hand.err" &
  qemu_pid=$!
  read -r login online < <(watch "$work/hand.log" "$t0")
  dhcp=$(dhcp_ms -p "$port" bench@127.0.0.1)
  echo "qemu $login $online $dhcp" >>"$results"
  echo "run $i qemu:   login prompt ${login}s, network online ${online}s, DHCP in the guest ${dhcp} ms" >&2
  kill "$qemu_pid"
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=""
done

accel=$("$CORRAL" info 2>/dev/null | sed -n 's/.*accelerator[^a-z]*\([a-z]*\).*/\1/ip' | head -n 1)
python3 - "$results" "${accel:-tcg}" "$RUNS" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
def col(who, i):
    return [float(r[i]) for r in rows if r[0] == who]
print(f"Debian 12 disk, {sys.argv[3]} first boots each, accelerator {sys.argv[2]}, 1 CPU, 1 GiB (mean, min-max)")
for name, i, unit in [("login prompt", 1, "s"), ("network online (DHCP lease held)", 2, "s"),
                      ("DHCP in the guest (carrier -> lease)", 3, "ms")]:
    c, q = col("corral", i), col("qemu", i)
    print(f"  {name}: corral {st.mean(c):.2f} {unit} ({min(c):g}-{max(c):g}), "
          f"QEMU by hand {st.mean(q):.2f} {unit} ({min(q):g}-{max(q):g}), "
          f"ratio corral/QEMU {st.mean(c) / st.mean(q):.2f}x")
cr = col("corral", 4)
print(f"  corral vm create (imports the disk, not in the boot figures): {st.mean(cr):.2f} s")
for name, i in [("DISCOVER -> OFFER", 5), ("REQUEST -> ACK", 6), ("first DISCOVER -> ACK", 7)]:
    c = col("corral", i)
    print(f"  corral's DHCP server on the bridge, {name}: mean {st.mean(c):.2f} ms ({min(c):g}-{max(c):g})")
PY
