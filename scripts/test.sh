#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and runs corral's whole test suite: unit tests of
# every crate and the end-to-end tests that drive the real binary against the real kernel,
# podman, skopeo and docker-registry. Everything is built once, in the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

# Build every test binary once (the binary itself was built by setup, same profile).
cargo test --release --locked --workspace --no-run

# End-to-end tests are I/O-bound (registries, podman, unpacking): run more than one per core.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
status=0
cargo test --release --locked --workspace --no-fail-fast 2>&1 | tee /tmp/corral-test.log || status=$?

# Nothing may be left behind: a leftover mount, cgroup or process with corral's name is a
# cleanup bug.
leaks=$(grep -c corral /proc/self/mountinfo || true)
if [ "${leaks:-0}" -gt 0 ]; then
  echo "LEAK: $leaks mounts with 'corral' in their path remain:" >&2
  grep corral /proc/self/mountinfo >&2
  status=1
fi
cgroups=$(find /sys/fs/cgroup -maxdepth 3 -type d -name '*corral*' 2>/dev/null || true)
if [ -n "$cgroups" ]; then
  echo "LEAK: cgroups remain:" >&2
  echo "$cgroups" >&2
  status=1
fi
# A container's health checker ends within a tenth of a second of its container.
sleep 0.3
if pgrep -f 'corral-monitor |corral __monitor|corral __dns|corral __health|corral __pod|corral serve' >/dev/null; then
  echo "LEAK: container monitors, health checkers, pods or network DNS servers still run:" >&2
  pgrep -af 'corral-monitor |corral __monitor|corral __dns|corral __health|corral __pod|corral serve' >&2
  status=1
fi
# Network devices go with their namespaces asynchronously: give the kernel a moment.
for _ in $(seq 50); do
  ip -o link show | grep -q ': crl' || break
  sleep 0.1
done
links=$(ip -o link show | awk -F': ' '$2 ~ /^crl/ {print $2}')
if [ -n "$links" ]; then
  echo "LEAK: corral network devices remain:" >&2
  echo "$links" >&2
  status=1
fi
if pgrep -f 'corral-vm-monitor |corral __vm-monitor' >/dev/null; then
  echo "LEAK: VM monitors still run:" >&2
  pgrep -af 'corral-vm-monitor |corral __vm-monitor' >&2
  status=1
fi
if pgrep -x virtiofsd >/dev/null; then
  echo "LEAK: virtiofsd (a pod VM's share) still runs:" >&2
  pgrep -af virtiofsd >&2
  status=1
fi
if pgrep -f 'qemu-system-x86_64 -name corral-' >/dev/null; then
  echo "LEAK: corral's QEMU processes still run:" >&2
  pgrep -af 'qemu-system-x86_64 -name corral-' >&2
  status=1
fi
vmruns=$(find /run/corral -maxdepth 1 -name 'vm-*' 2>/dev/null || true)
if [ -n "$vmruns" ]; then
  echo "LEAK: VM runtime directories remain:" >&2
  echo "$vmruns" >&2
  status=1
fi
if nft list table ip corral >/dev/null 2>&1; then
  echo "LEAK: nft table ip corral remains:" >&2
  nft list table ip corral >&2
  status=1
fi
exit $status
