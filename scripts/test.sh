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
cargo test --release --locked --workspace 2>&1 | tee /tmp/corral-test.log || status=$?

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
if pgrep -f 'corral (__monitor|__init)' >/dev/null; then
  echo "LEAK: container monitors still run:" >&2
  pgrep -af 'corral (__monitor|__init)' >&2
  status=1
fi
exit $status
