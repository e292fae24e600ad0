#!/usr/bin/env bash
# corral's main job on a fresh Debian 12 machine, as root: set everything up, then make an image
# from Debian's busybox-static on the spot, import it, list and inspect it, round-trip it
# through an OCI archive, run a container of it, two containers that talk by name over a
# virtual network, and a VM of the same image (its own kernel) that a container reaches by name.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

corral=target/release/corral
work=$(mktemp -d /tmp/corral-demo.XXXXXX)
export CORRAL_ROOT="$work/root"
# The networks go first: their bridges, firewall rules and DNS servers are the host's.
trap '$corral vm rm -f vmweb >/dev/null 2>&1 || true; $corral rm -f web >/dev/null 2>&1 || true; $corral network rm -f demo-net corral >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# A root filesystem: busybox and its applets.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh ls cat echo true false env id ps sleep uname hostname mount nc ip nslookup httpd mkdir seq; do ln -s busybox "$work/rootfs/bin/$applet"; done
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
# A virtual network: a server and a client that finds it by name through the network's DNS.
$corral network create demo-net
$corral run -d --name web --network demo-net busybox:demo sh -c 'while true; do echo "hello from web" | nc -l -p 8080; done'
$corral run --rm --network demo-net busybox:demo sh -c 'ip -4 addr show eth0 | grep inet; nc web 8080'
$corral network inspect demo-net
# The same image as a virtual machine: its own kernel (Debian's cloud kernel), corral's agent
# as init; KVM where the host has hardware virtualization, QEMU's TCG otherwise.
$corral vm run --rm --network none --image busybox:demo -- sh -c 'echo "hello from a VM: kernel $(uname -r), $(nproc) CPU"'
$corral vm run -d --name vmweb --network demo-net --image busybox:demo -- sh -c 'mkdir -p /www && echo "hello from vm $(hostname)" > /www/index.html && exec httpd -f -p 80 -h /www'
$corral vm ls
$corral vm exec vmweb -- ps
$corral run --rm --network demo-net busybox:demo sh -c 'for i in $(seq 20); do printf "GET / HTTP/1.0\r\n\r\n" | nc vmweb 80 2>/dev/null | grep hello && exit 0; sleep 0.5; done; exit 1'
$corral vm rm -f vmweb
$corral rm -f web
$corral network rm demo-net corral
$corral image rm busybox:demo
$corral image prune
