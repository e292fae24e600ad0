#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) for corral: the system packages corral and its
# tests use, then the release build. Idempotent: packages already present are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

# What corral itself needs at run time, what builds it (make runs jemalloc's build), and the
# real peers its tests and benchmarks drive (podman, skopeo, docker-registry); for VMs: QEMU, Debian's cloud kernel
# (the guest kernel of image VMs), firmware (SeaBIOS comes with QEMU, OVMF for UEFI), and what
# the tests build bootable disks and cloud-init seeds with (debootstrap: the real Debian 12
# disk of tests/vm_debian.rs, tests/src/debian12-disk.sh; ssh to reach it). podman-compose, the
# peer of `corral compose` (tests/compose_peer.rs, benches/compose.sh), needs netavark and
# aardvark-dns for DNS by service name (Debian's CNI plugins have no dnsname), iptables, which
# netavark 1.4 writes its rules with (its nftables driver came later; neither package pulls it
# in), and catatonit for `init: true`.
PACKAGES=(
  ca-certificates tar zstd gzip e2fsprogs util-linux iproute2 procps nftables
  gcc libc6-dev pkg-config make
  busybox-static
  podman buildah skopeo docker-registry apache2-utils containerd tmux
  netavark aardvark-dns iptables catatonit
  hyperfine runc crun python3 iperf3 sockperf strace
  qemu-system-x86 qemu-utils linux-image-cloud-amd64 ovmf
  extlinux syslinux-common genisoimage cpio fdisk
  libseccomp-dev libcap-ng-dev dnsmasq-base isolinux python3-venv
  debootstrap openssh-client
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (corral manages namespaces, cgroups, mounts and network devices)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# QEMU 7.2 (bookworm's) loses dirty pages of a busy guest during a live migration under TCG
# (the guest's kernel oopses on the destination: docs/benchmarks.md, "VM live migration");
# QEMU 10 (bookworm-backports, Debian's own build) migrates it intact. Install that one.
qemu_major=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p')
if [ "${qemu_major:-0}" -lt 8 ] && grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
  echo "setup: installing QEMU from bookworm-backports (bookworm's QEMU $qemu_major corrupts busy guests it migrates)"
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/corral-bookworm-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils
fi

if ! command -v cargo >/dev/null 2>&1; then
  for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH"
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no Rust toolchain found (cargo). Install one with rustup (Rust 1.85 or newer) and run again." >&2
  exit 1
fi

# virtiofsd serves a pod VM's share (its members' root filesystems). Debian 12 does not
# package it (QEMU 8 dropped its C one): the Rust one from crates.io, built once.
if ! command -v virtiofsd >/dev/null 2>&1 && [ ! -x /usr/libexec/virtiofsd ]; then
  echo "setup: building virtiofsd (crates.io)"
  cargo install --locked --quiet --root /usr/local virtiofsd@1.14.0
fi

# Python clients the tests drive (vncdotool: a real VNC client for VMs' screens; kubectl and
# the official Kubernetes client for `corral serve`; podman-compose, the peer of `corral
# compose` — 1.6 or newer: Debian's 1.0.3 cannot detect changes), pinned, in a virtual
# environment of the project's own.
if [ ! -x .venv/bin/vncdo ] || [ ! -x .venv/bin/podman-compose ] \
  || ! cmp -s scripts/requirements-test.txt .venv/requirements-test.txt; then
  echo "setup: making .venv (scripts/requirements-test.txt)"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt .venv/requirements-test.txt
fi

echo "setup: building corral (release)"
cargo build --release --locked -p corral
echo "setup: building the guest agent (static)"
bash scripts/build-guest.sh --locked
