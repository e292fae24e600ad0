#!/usr/bin/env bash
# A real Debian 12 disk for corral's VM tests and benchmarks, built once per machine from
# Debian's packages and cached: debootstrap (minbase) with systemd, the cloud kernel, cloud-init,
# openssh-server and systemd-networkd, on one ext4 partition that SeaBIOS boots through
# syslinux's MBR and extlinux, as a qcow2 file that `corral vm create --boot-disk` imports.
#
# Usage: debian12-disk.sh [CACHE_DIR]   (default /var/cache/corral-test)
# Prints the disk's path: CACHE_DIR/debian12-<first 16 hex of this file's sha256>.qcow2, so a
# change of the recipe builds a new disk. Parallel callers wait on one lock for one builder.
# Exit 77: the disk cannot be built on this machine (not root, a tool missing, no Debian
# mirror reachable); the reason is on stderr. The downloaded packages stay in
# CACHE_DIR/debs, so a new recipe builds without the network's wait.
#
# What the guest is, as a sysadmin's Debian installed with DHCP:
# - systemd-networkd asks DHCP on every en*/eth* NIC (and uses the domain it is given as its
#   search domain, so peers resolve by their short names through systemd-resolved);
# - cloud-init (NoCloud, from the `cidata` seed corral attaches) sets the hostname, users,
#   keys and passwords, makes new SSH host keys per instance and grows the root partition and
#   filesystem at each boot; its network configuration is off, so that the address comes
#   from DHCP, not from the seed's network-config (tests/vm_disk.rs covers that path);
# - /etc/machine-id is empty (systemd makes one at first boot) and there are no SSH host keys.
# - the serial console (ttyS0) carries the kernel's messages and a getty.
set -euo pipefail

cache=${1:-/var/cache/corral-test}
recipe=$(sha256sum "$0" | cut -c1-16)
disk=$cache/debian12-$recipe.qcow2
if [ -f "$disk" ]; then
  echo "$disk"
  exit 0
fi

cannot() {
  echo "debian12-disk: cannot build here: $*" >&2
  exit 77
}
[ "$(id -u)" -eq 0 ] || cannot "needs root"
for tool in debootstrap qemu-img sfdisk mkfs.ext4 extlinux flock mount chroot; do
  command -v "$tool" >/dev/null 2>&1 || cannot "$tool not installed (scripts/setup.sh installs it)"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr" ] || cannot "$mbr missing (apt-get install syslinux-common)"

mkdir -p "$cache/debs"
exec 9>"$cache/debian12.lock"
flock 9
if [ -f "$disk" ]; then
  echo "$disk"
  exit 0
fi

# The mirror apt uses on this host (deb822 .sources or one-line lists), unless told.
mirror=${CORRAL_TEST_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(awk '
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm" && uri ~ /\/debian\/?$/) { print uri; exit } }
    /^deb / { if ($3 == "bookworm" && $2 ~ /\/debian\/?$/) { print $2; exit } }
  ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

# A builder killed midway left its directory: unmount and remove it (we hold the lock).
for old in "$cache"/build-*; do
  [ -d "$old" ] || continue
  for m in $(awk -v d="$old/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" || true
  done
  rm -rf "$old"
done

work=$(mktemp -d "$cache/build-XXXXXX")
cleanup() {
  for m in $(awk -v d="$work/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
root=$work/root

# python3-cffi-backend: debootstrap does not resolve the virtual package python3-cryptography
# depends on (python3-cffi-backend-api-min), so name its provider.
packages=systemd-sysv,systemd-resolved,udev,dbus,linux-image-cloud-amd64,cloud-init
packages+=,python3-cffi-backend,openssh-server,sudo,cloud-guest-utils,fdisk,iproute2
packages+=,iputils-ping,procps
echo "debian12-disk: debootstrap bookworm from $mirror" >&2
if ! debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$packages" \
  bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  if grep -qE "Failed getting release file|Couldn't download|Failure trying to run: wget|Temporary failure resolving" "$work/debootstrap.log"; then
    cannot "no Debian mirror reachable at $mirror (set CORRAL_TEST_DEBIAN_MIRROR)"
  fi
  echo "debian12-disk: debootstrap failed (log above)" >&2
  exit 1
fi

kver=$(basename "$(ls -d "$root"/lib/modules/*-cloud-amd64 | sort | tail -n 1)")

cat >"$root/etc/fstab" <<'EOF'
LABEL=debian-root / ext4 defaults,errors=remount-ro 0 1
EOF
echo debian >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/network/80-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4

[DHCPv4]
UseDomains=yes
EOF
cat >"$root/etc/cloud/cloud.cfg.d/90-corral-test.cfg" <<'EOF'
datasource_list: [NoCloud, None]
network: {config: disabled}
# No locales package: C.UTF-8 is the one libc always has.
locale: C.UTF-8
EOF
chroot "$root" systemctl enable --quiet systemd-networkd systemd-resolved
# Nothing that wakes up later to use the CPU or the network behind the test's back.
chroot "$root" systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer 2>/dev/null || true
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

mkdir -p "$root/boot/extlinux"
cat >"$root/boot/extlinux/extlinux.conf" <<EOF
SERIAL 0 115200
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  KERNEL /boot/vmlinuz-$kver
  INITRD /boot/initrd.img-$kver
  APPEND root=LABEL=debian-root ro console=ttyS0,115200
EOF

# What a running system never reads: documentation, manuals, translations, apt's indexes.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/debootstrap
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +

# One ext4 partition from 1 MiB on a 3 GiB sparse disk, filled without mounting (mkfs -d);
# extlinux (which reads ext4 without the 64bit feature) is installed through a loop mount.
raw=$work/disk.raw
truncate -s 3G "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
mkfs.ext4 -q -F -L debian-root -O ^64bit -E offset=1048576 -d "$root" "$raw" $((3 * 1024 * 1024 - 1024))k
mkdir "$work/mnt"
mount -o loop,offset=1048576 "$raw" "$work/mnt"
extlinux --install "$work/mnt/boot/extlinux" >/dev/null 2>&1
umount "$work/mnt"
dd if="$mbr" of="$raw" bs=440 count=1 conv=notrunc status=none

qemu-img convert -O qcow2 "$raw" "$work/disk.qcow2"
mv "$work/disk.qcow2" "$disk"
# Disks of older recipes are of no more use.
find "$cache" -maxdepth 1 -name 'debian12-*.qcow2' ! -name "${disk##*/}" -delete
echo "debian12-disk: built $disk ($(du -h "$disk" | cut -f1) on disk)" >&2
echo "$disk"
