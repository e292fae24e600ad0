#!/usr/bin/env bash
# Builds corral's guest agent (corral-guest) as a static x86-64 binary: it runs as /init in the
# initramfs corral boots guests with, where there is no libc to link against.
# Output: target/x86_64-unknown-linux-gnu/release/corral-guest, where corral looks for it in a
# development tree (or point CORRAL_GUEST_AGENT at it).
# Debug info is stripped (symbols kept, for panics): the workspace's release profile keeps line
# tables, which make the agent 12.8 MB instead of 3.4 MB, and every guest boot carries it.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_PROFILE_RELEASE_STRIP=debuginfo RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release -p corral-guest --target x86_64-unknown-linux-gnu "$@"
echo "built target/x86_64-unknown-linux-gnu/release/corral-guest"
