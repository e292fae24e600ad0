#!/usr/bin/env bash
# DHCP on a network: the time from a client's first DISCOVER to its lease (busybox udhcpc,
# run in the client's network namespace with nsenter), with corral's server answering on a
# corral network, and side by side with dnsmasq (Debian's dnsmasq-base, as libvirt and Incus
# run it) answering on a bridge of the bench's own with the same client, the address given by
# MAC in both. Prints the mean of each over RUNS runs (hyperfine) and the ratio.
#
# The issue's goal: DHCP adds < 100 ms to a guest's boot.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-30}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
if [ ! -x "$CORRAL" ]; then
  while pgrep -x cargo >/dev/null; do sleep 5; done
  cargo build --release -p corral
fi
for t in hyperfine dnsmasq nsenter; do
  command -v "$t" >/dev/null || { echo "dhcp bench: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/corral-bench-dhcp.XXXXXX)
export CORRAL_ROOT="$work/root"
tag=$$
net="bdh$tag"
br="bdhbr$tag"
ns="bdhns$tag"
cleanup() {
  set +e
  "$CORRAL" rm -f "bdh$tag" >/dev/null 2>&1
  "$CORRAL" network rm "$net" >/dev/null 2>&1
  [ -n "${dnsmasq_pid:-}" ] && kill "$dnsmasq_pid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  ip link del "$br" 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$CORRAL" image import "$work/rootfs.tar" localhost/bench-dhcp:1 >/dev/null

client="busybox udhcpc -i eth0 -n -q -f -s /bin/true -t 5 -T 1"

# corral: a container on a corral network; the client runs in its network namespace.
"$CORRAL" network create --subnet 10.231.$((tag % 200)).0/24 "$net" >/dev/null
"$CORRAL" run -d --name "bdh$tag" --network "$net" localhost/bench-dhcp:1 sleep 3600 >/dev/null
pid=$("$CORRAL" inspect --format '{{.State.Pid}}' "bdh$tag")

# dnsmasq: a bridge of the bench's own and a veth into a network namespace of its own.
ip link add "$br" type bridge
ip addr add 10.232.$((tag % 200)).1/24 dev "$br"
ip link set "$br" up
ip netns add "$ns"
ip link add "bdhv$tag" type veth peer name eth0 netns "$ns"
ip link set "bdhv$tag" master "$br" up
ip -n "$ns" link set eth0 up
ip -n "$ns" link set lo up
mac=$(ip -n "$ns" -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
dnsmasq --keep-in-foreground --no-daemon --conf-file=/dev/null --port=0 --bind-interfaces \
  --interface="$br" --except-interface=lo --dhcp-range=10.232.$((tag % 200)).0,static,255.255.255.0 \
  --dhcp-host="$mac,10.232.$((tag % 200)).7" --dhcp-leasefile="$work/leases" --log-facility=- \
  >"$work/dnsmasq.log" 2>&1 &
dnsmasq_pid=$!
sleep 0.5

hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$work/h.json" \
  -n "corral" "nsenter --net=/proc/$pid/ns/net $client" \
  -n "dnsmasq" "ip netns exec $ns $client" \
  -n "client alone (no server: nsenter true)" "nsenter --net=/proc/$pid/ns/net true" >/dev/null
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
c, d, base = r["corral"], r["dnsmasq"], r["client alone (no server: nsenter true)"]
ms = lambda x: x["mean"] * 1000
print(f"DHCP lease (DISCOVER to ACK, udhcpc): corral {ms(c):.1f} ± {c['stddev']*1000:.1f} ms, "
      f"dnsmasq {ms(d):.1f} ± {d['stddev']*1000:.1f} ms, ratio dnsmasq/corral {ms(d)/ms(c):.2f}x; "
      f"entering the namespace alone {ms(base):.1f} ms (goal: < 100 ms added to a boot)")
PY
