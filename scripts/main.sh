#!/usr/bin/env bash
# corral's main job on a fresh Debian 12 machine, as root: set everything up, then make an image
# from Debian's busybox-static on the spot, import it, list and inspect it, and round-trip it
# through an OCI archive.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

corral=target/release/corral
work=$(mktemp -d /tmp/corral-demo.XXXXXX)
export CORRAL_ROOT="$work/root"
trap 'rm -rf "$work"' EXIT

# A root filesystem: busybox and its applets.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh ls cat echo true false env id ps sleep uname hostname mount; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -czf "$work/busybox.tar.gz" .

set -x
$corral version
$corral info
$corral image import "$work/busybox.tar.gz" busybox:demo
$corral image ls
$corral image inspect busybox:demo > "$work/inspect.json"
head -n 20 "$work/inspect.json"
$corral image save busybox:demo -o "$work/busybox-oci.tar"
$corral image rm busybox:demo
$corral image load -i "$work/busybox-oci.tar"
$corral image ls
# A shell in a container of that image: its own PID namespace (it is PID 1), hostname, limits.
$corral run --rm --hostname demo -m 64m busybox:demo sh -c 'echo "hello from $(hostname), pid $$"; ls /'
$corral image rm busybox:demo
$corral image prune
