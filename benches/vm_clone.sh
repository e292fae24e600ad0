#!/usr/bin/env bash
# What a VM clone costs (issue 6): `corral vm clone TEMPLATE NEW` (a qcow2 overlay on the
# template's read-only disk, plus the new VM's config) against a full copy of the same disk
# (`cp` of the template's disk.qcow2, then `sync` of the copy, since corral's clone is durable
# too), for two disks: 200 MiB written into a 2G disk, and 1 GiB written into an 8G disk. Also
# the floor: `qemu-img create -f qcow2 -F qcow2 -b DISK` alone. Prints the means and the ratio
# copy / clone for each size. Goal: a clone in well under 100 ms, whatever the disk's size.
#
# The data is written by the guest (`dd if=/dev/urandom` in a VM of the busybox image), the VM
# is stopped and turned into a template (`corral vm template`), and hyperfine times each
# command, removing the previous clone or copy before each run (untimed). The copy reads from
# the page cache (the disk was just written): the copy's figure is a lower bound.
#
# Builds nothing: needs target/release/corral and corral-vm-monitor (`cargo build --release -p
# corral`), the static agent (`bash scripts/build-guest.sh`), hyperfine (scripts/setup.sh).
# Everything runs in a temporary CORRAL_ROOT under /var/tmp, with --network none; the VMs,
# templates and the directory are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-20}"            # clone runs per size
COPY_RUNS="${COPY_RUNS:-5}"   # copy runs per size
CORRAL="${CORRAL:-$PWD/target/release/corral}"

missing=""
for tool in hyperfine python3 qemu-system-x86_64 qemu-img; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -z "$missing" ] || { echo "vm_clone.sh: missing:$missing (scripts/setup.sh installs them)" >&2; exit 1; }
if [ ! -x "$CORRAL" ] || [ ! -x "$(dirname "$CORRAL")/corral-vm-monitor" ]; then
  echo "vm_clone.sh: $CORRAL or corral-vm-monitor next to it is missing: run cargo build --release -p corral" >&2
  exit 1
fi
if [ -z "${CORRAL_GUEST_AGENT:-}" ] && [ ! -x target/x86_64-unknown-linux-gnu/release/corral-guest ]; then
  echo "vm_clone.sh: the guest agent is missing: run bash scripts/build-guest.sh (or set CORRAL_GUEST_AGENT)" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/corral-bench-clone.XXXXXX)
export CORRAL_ROOT="$work/corral"
# Copies of the binaries, so that a rebuild in the tree during the run changes nothing.
agent="${CORRAL_GUEST_AGENT:-$PWD/target/x86_64-unknown-linux-gnu/release/corral-guest}"
mkdir -p "$work/bin"
cp "$CORRAL" "$(dirname "$CORRAL")/corral-vm-monitor" "$agent" "$work/bin/"
CORRAL="$work/bin/corral"
export CORRAL_GUEST_AGENT="$work/bin/corral-guest"

cleanup() {
  set +e
  if [ -d "$CORRAL_ROOT" ]; then
    ids=$("$CORRAL" vm ls -q 2>/dev/null)
    [ -n "$ids" ] && "$CORRAL" vm rm -f $ids >/dev/null 2>&1
    for t in $(python3 -c "import json,sys; print(' '.join(t['name'] for t in json.load(sys.stdin)))" \
               < <("$CORRAL" vm template ls --json 2>/dev/null)); do
      "$CORRAL" vm template rm "$t" >/dev/null 2>&1
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The image: busybox, as in benches/vm.sh.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true sleep dd sync; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
"$CORRAL" image import "$work/rootfs.tar" busybox >/dev/null

accel=$("$CORRAL" info 2>/dev/null | awk '/^VM accelerator:/{print $3}')
echo "corral vm clone against a full copy of the disk (guests under ${accel:-?})"
echo
printf '%-22s %14s %14s %14s %9s\n' "disk (data written)" "vm clone" "cp + sync" "qemu-img -b" "copy/clone"
for spec in 2G:200 8G:1024; do
  size=${spec%%:*}
  mib=${spec##*:}
  src="src$size"
  tpl="tpl$size"
  "$CORRAL" vm run --name "$src" --network none --disk "$size" --memory 256M --image busybox -- \
    sh -c "dd if=/dev/urandom of=/fill bs=1M count=$mib 2>/dev/null && sync" >/dev/null
  "$CORRAL" vm template "$src" "$tpl" >/dev/null
  disk="$CORRAL_ROOT/vm-templates/$tpl/disk.qcow2"
  used=$(du -m "$disk" | cut -f1)
  hyperfine --style none --warmup 2 --runs "$RUNS" \
    --prepare "$CORRAL vm rm -f c$size >/dev/null 2>&1 || true" \
    --export-json "$work/clone.json" \
    "$CORRAL vm clone $tpl c$size" >/dev/null
  "$CORRAL" vm rm -f "c$size" >/dev/null 2>&1 || true
  hyperfine --style none --warmup 1 --runs "$COPY_RUNS" \
    --prepare "rm -f $work/copy.qcow2" \
    --export-json "$work/copy.json" \
    "cp $disk $work/copy.qcow2 && sync $work/copy.qcow2" >/dev/null
  rm -f "$work/copy.qcow2"
  hyperfine --style none --warmup 2 --runs "$RUNS" \
    --prepare "rm -f $work/overlay.qcow2" \
    --export-json "$work/floor.json" \
    "qemu-img create -q -f qcow2 -F qcow2 -b $disk $work/overlay.qcow2" >/dev/null
  rm -f "$work/overlay.qcow2"
  python3 - "$work" "$size ($used MiB on disk)" <<'EOF'
import json, sys
work, label = sys.argv[1], sys.argv[2]
def stat(name):
    r = json.load(open(f"{work}/{name}.json"))["results"][0]
    return r["mean"] * 1000, r["stddev"] * 1000
c, cs = stat("clone")
p, ps = stat("copy")
f, fs = stat("floor")
cell = lambda m, s: f"{m:7.1f} ± {s:4.1f} ms"
print(f"{label:22} {cell(c, cs):>14} {cell(p, ps):>14} {cell(f, fs):>14} {p / c:8.1f}x")
EOF
  "$CORRAL" vm template rm "$tpl" >/dev/null
done
