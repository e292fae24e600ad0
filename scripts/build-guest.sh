#!/usr/bin/env bash
# Builds corral's guest agent (corral-guest) as a static x86-64 binary: it runs as /init in the
# initramfs corral boots guests with, where there is no libc to link against.
# Output: target/x86_64-unknown-linux-gnu/release/corral-guest, where corral looks for it in a
# development tree (or point CORRAL_GUEST_AGENT at it).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release -p corral-guest --target x86_64-unknown-linux-gnu "$@"
echo "built target/x86_64-unknown-linux-gnu/release/corral-guest"
