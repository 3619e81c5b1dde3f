#!/usr/bin/env bash
# Builds the small Linux guest that the QEMU tests and benchmarks protect, from Debian's packages only, into
# .tools/guest (idempotent; rebuilt when this script changes):
#   vmlinuz        Debian's cloud kernel (linux-image-6.1.0-*-cloud-amd64)
#   initramfs.img  busybox (busybox-static), the virtio and virtio-net modules from the kernel package, redis-server with
#                  every library ldd lists, and an /init that brings up eth0 (QEMU user networking's own
#                  10.0.2.15, which never leaves QEMU) and runs redis-server on port 6379
# Needs redis-server installed on this machine (scripts/tools.sh does it) and xz. Prints what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.tools/guest
debs=$root/.tools/debs
stamp=$(sha256sum "$0" | cut -c1-16)
say() { echo "[guest] $*" >&2; }
if [ -f "$out/.ok" ] && [ "$(cat "$out/.ok")" = "$stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.img" ]; then
  say "guest: $out (cached)"
  exit 0
fi
mkdir -p "$debs" "$out"
download() {
  ( cd "$debs" && { ls "$1"_*.deb >/dev/null 2>&1 || apt-get download "$1" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get download "$1" >/dev/null 2>&1; }; } ) \
    || { say "ERROR: could not download Debian package $1"; exit 1; }
}
kernel=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' 2>/dev/null | cut -d' ' -f1 | sort -V | tail -1)
[ -n "$kernel" ] || { apt-get update -qq >/dev/null 2>&1; kernel=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' | cut -d' ' -f1 | sort -V | tail -1); }
[ -n "$kernel" ] || { say "ERROR: no linux-image-6.1.0-*-cloud-amd64 package known to apt"; exit 1; }
download "$kernel"
download busybox-static
command -v redis-server >/dev/null || { say "ERROR: redis-server is not installed (run npm run tools)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$debs/${kernel}"_*.deb "$work/kernel"
dpkg-deb -x "$debs"/busybox-static_*.deb "$work/busybox"
cp "$work"/kernel/boot/vmlinuz-* "$out/vmlinuz.new"

rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,sbin,proc,sys,dev,tmp,etc,lib/modules,data}
cp "$work/busybox/bin/busybox" "$rootfs/bin/busybox"
for applet in sh mount mkdir ip insmod sleep cat echo ifconfig route hostname; do ln -sf busybox "$rootfs/bin/$applet"; done
modules=$(find "$work/kernel/lib/modules" -type d -name kernel | head -1)
# The cloud kernel builds virtio itself as modules and its package has no modules.dep: each module's own
# `depends=` (its .modinfo) gives the load order, dependencies first. Some releases ship them xz-compressed:
# busybox insmod takes plain .ko files.
order=""
add_module() {
  local m=$1 ko dep
  case " $order " in *" $m "*) return 0 ;; esac
  ko=$(find "$modules" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
  [ -n "$ko" ] || { say "ERROR: module $m not in $kernel"; exit 1; }
  case $ko in *.xz) xz -dc "$ko" > "$rootfs/lib/modules/$m.ko" ;; *) cp "$ko" "$rootfs/lib/modules/$m.ko" ;; esac
  for dep in $(strings -a "$rootfs/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do add_module "$dep"; done
  order="$order $m"
}
add_module virtio_pci
add_module virtio_net
echo "$order" > "$rootfs/lib/modules/order"
redis=$(readlink -f "$(command -v redis-server)")
cp "$redis" "$rootfs/bin/redis-server"
for lib in $(ldd "$redis" | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cat > "$rootfs/init" <<'INIT'
#!/bin/sh
# The protected guest's init: network up, then redis-server in the foreground as the guest's service.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "colo-guest: network up, starting redis-server" > /dev/console
cd /data
while true; do
  /bin/redis-server --bind 0.0.0.0 --port 6379 --protected-mode no --save '' --appendonly no --daemonize no
  echo "colo-guest: redis-server exited ($?), restarting" > /dev/console
  sleep 1
done
INIT
chmod +x "$rootfs/init"
( cd "$rootfs" && find . | "$work/busybox/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1 ) > "$out/initramfs.img.new"
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$out/initramfs.img.new" "$out/initramfs.img"
echo "$kernel" > "$out/kernel-package"
echo "$stamp" > "$out/.ok"
say "guest: $out/vmlinuz ($kernel), $out/initramfs.img ($(du -h "$out/initramfs.img" | cut -f1))"
