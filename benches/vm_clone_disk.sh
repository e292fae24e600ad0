#!/usr/bin/env bash
# What a clone of a disk-booted VM costs (issue 19, item 4): `corral vm clone TEMPLATE NEW` of a
# VM made from a 2 GiB qcow2 boot disk holding 200 MiB of data (a qcow2 overlay on the
# template's read-only disk, a cloud-init seed of the clone's own, the new VM's config) against
# a full copy of the same disk (`cp --sparse=always`, then `sync` of the copy: corral's clone is
# durable too). Prints the means and the ratio copy / clone. Goal: < 100 ms, as for image VMs.
#
# Nothing boots: the disk's content does not matter to a clone. Runs in a temporary CORRAL_ROOT
# under /var/tmp, removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-20}"
CORRAL="${CORRAL:-$PWD/target/release/corral}"
for tool in hyperfine qemu-img genisoimage python3; do
  command -v "$tool" >/dev/null || { echo "vm_clone_disk.sh: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -x "$CORRAL" ] || { echo "vm_clone_disk.sh: build corral first (cargo build --release -p corral)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/corral-bench-vmclone-disk.XXXXXX)
export CORRAL_ROOT="$work/root"
cleanup() {
  set +e
  for v in bench-clone bench-src; do "$CORRAL" vm rm -f "$v" >/dev/null 2>&1; done
  "$CORRAL" vm template rm bench-tpl >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
truncate -s 2G "$work/disk.raw"
dd if=/dev/urandom of="$work/disk.raw" bs=1M count=200 conv=notrunc status=none
qemu-img convert -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
rm "$work/disk.raw"
printf '#cloud-config\n' > "$work/user-data"
"$CORRAL" vm create --name bench-src --network none --boot-disk "$work/disk.qcow2" --cloud-init "$work/user-data" >/dev/null
"$CORRAL" vm template bench-src bench-tpl >/dev/null
tpl_disk="$CORRAL_ROOT/vm-templates/bench-tpl/disk.qcow2"
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$work/clone.json" \
  --prepare "sh -c '$CORRAL vm rm -f bench-clone >/dev/null 2>&1; true'" \
  -n clone "$CORRAL vm clone bench-tpl bench-clone" >/dev/null
hyperfine --warmup 1 --runs 5 --export-json "$work/copy.json" \
  --prepare "rm -f $work/copy.qcow2" \
  -n copy "cp --sparse=always $tpl_disk $work/copy.qcow2 && sync $work/copy.qcow2" >/dev/null
python3 - "$work/clone.json" "$work/copy.json" <<'PY'
import json, sys
cl = json.load(open(sys.argv[1]))["results"][0]
cp = json.load(open(sys.argv[2]))["results"][0]
print(f"disk VM clone (2 GiB qcow2, 200 MiB data): corral vm clone {cl['mean']*1000:.1f} ± {cl['stddev']*1000:.1f} ms, "
      f"full copy {cp['mean']*1000:.1f} ± {cp['stddev']*1000:.1f} ms, copy/clone {cp['mean']/cl['mean']:.1f}x (goal: clone < 100 ms)")
PY
