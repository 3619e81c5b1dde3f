#!/usr/bin/env bash
# Obtains the real external tools the tests and benchmarks use, from Debian's packages, idempotently:
#   - Xen's migration stream verifier (xen-utils-4.17, unpacked into .tools/xen, never installed system-wide)
#   - Prometheus and promtool (prometheus, unpacked into .tools/prometheus)
#   - etcd (etcd-server, a static Go binary, unpacked into .tools/etcd): the etcd arbiter's tests
#   - redis-cli, redis-benchmark, redis-server (redis-tools + redis-server, installed: they need shared libs)
#   - systemd-analyze (systemd, installed if missing), which checks the units in deploy/systemd
#   - QEMU (qemu-system-x86, installed if missing) and the guest scripts/guest.sh builds into .tools/guest
#     (Debian's cloud kernel, busybox, redis-server): the QEMU guest's tests
#   - nft (nftables, installed if missing): the fault matrix cuts links with rules inside its test namespaces
#     (never in the root namespace; the package's own service is not started)
# Writes .tools/env with the paths found. A tool that cannot be obtained is reported loudly, and the tests
# that need it fail with that message (they never pass silently).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=$root/.tools
mkdir -p "$tools/debs"

say() { echo "[tools] $*" >&2; }
updated=0
apt_update_once() {
  if [ $updated = 0 ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null 2>&1 || say "WARNING: apt-get update failed"
    updated=1
  fi
}

# unpack PKG DIR: download a .deb and extract it into DIR (no system install).
unpack() {
  local pkg=$1 dir=$2
  [ -f "$dir/.ok" ] && return 0
  ( cd "$tools/debs" && { ls ${pkg}_*.deb >/dev/null 2>&1 || apt-get download "$pkg" >/dev/null 2>&1 || { apt_update_once; apt-get download "$pkg" >/dev/null 2>&1; }; } ) \
    || { say "ERROR: could not download Debian package $pkg"; return 1; }
  rm -rf "$dir" && mkdir -p "$dir"
  dpkg-deb -x "$tools"/debs/${pkg}_*.deb "$dir" && touch "$dir/.ok"
}

status=0
if unpack xen-utils-4.17 "$tools/xen"; then
  say "xen verifier: $tools/xen/usr/lib/xen-4.17/bin/verify-stream-v2"
else status=1; fi

if unpack prometheus "$tools/prometheus"; then
  say "prometheus: $tools/prometheus/usr/bin/prometheus"
else status=1; fi

if unpack etcd-server "$tools/etcd" && [ -x "$tools/etcd/usr/bin/etcd" ]; then
  say "etcd: $tools/etcd/usr/bin/etcd"
else say "ERROR: no etcd binary at $tools/etcd/usr/bin/etcd (Debian package etcd-server)"; status=1; fi

if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
  apt_update_once
  say "apt-get install redis-tools redis-server"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools redis-server >/dev/null 2>&1 \
    || { say "ERROR: could not install redis-tools/redis-server"; status=1; }
fi
command -v redis-cli >/dev/null && say "redis: $(command -v redis-cli)"

if ! command -v systemd-analyze >/dev/null; then
  apt_update_once
  say "apt-get install systemd (for systemd-analyze)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1 \
    || { say "ERROR: could not install systemd (systemd-analyze)"; status=1; }
fi
command -v systemd-analyze >/dev/null && say "systemd-analyze: $(command -v systemd-analyze)"

if ! command -v nft >/dev/null; then
  apt_update_once
  say "apt-get install nftables (for the fault matrix's namespaces)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables >/dev/null 2>&1 \
    || { say "ERROR: could not install nftables (nft)"; status=1; }
fi
command -v nft >/dev/null && say "nft: $(command -v nft)"

if ! command -v arping >/dev/null; then
  apt_update_once
  say "apt-get install iputils-arping (for the virtual-IP hook's test)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iputils-arping >/dev/null 2>&1 \
    || { say "ERROR: could not install iputils-arping (arping)"; status=1; }
fi
command -v arping >/dev/null && say "arping: $(command -v arping)"

if ! command -v qemu-system-x86_64 >/dev/null; then
  apt_update_once
  say "apt-get install qemu-system-x86 (for the QEMU guest's tests)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null 2>&1 \
    || { say "ERROR: could not install qemu-system-x86"; status=1; }
fi
command -v qemu-system-x86_64 >/dev/null && say "qemu: $(command -v qemu-system-x86_64)"
bash "$root/scripts/guest.sh" || { say "ERROR: could not build the QEMU test guest (scripts/guest.sh)"; status=1; }

cat > "$tools/env" <<ENV
XEN_VERIFY=$tools/xen/usr/lib/xen-4.17/bin/verify-stream-v2
XEN_PYTHONPATH=$tools/xen/usr/lib/xen-4.17/lib/python
PROMETHEUS=$tools/prometheus/usr/bin/prometheus
PROMTOOL=$tools/prometheus/usr/bin/promtool
ETCD=$tools/etcd/usr/bin/etcd
REDIS_CLI=$(command -v redis-cli || echo missing)
REDIS_BENCHMARK=$(command -v redis-benchmark || echo missing)
REDIS_SERVER=$(command -v redis-server || echo missing)
SYSTEMD_ANALYZE=$(command -v systemd-analyze || echo missing)
NFT=$(command -v nft || echo missing)
ARPING=$(command -v arping || echo missing)
QEMU=$(command -v qemu-system-x86_64 || echo missing)
GUEST_KERNEL=$tools/guest/vmlinuz
GUEST_INITRD=$tools/guest/initramfs.img
ENV
[ $status = 0 ] || say "WARNING: some tools are missing; tests that need them will fail and say which"
exit 0
