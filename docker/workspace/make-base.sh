#!/usr/bin/env bash
# Make a local Debian base image (berth/debian-base:<suite>) with debootstrap, for hosts
# that cannot pull images from a registry. Needs root, debootstrap and a Docker engine.
#
#   make-base.sh [--force] [--suite bookworm] [--mirror URL] [--tag IMAGE]
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian) and
# DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security).
# Idempotent: does nothing when the image already exists, unless --force.
set -euo pipefail

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TAG=""
FORCE=0

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print } /^set /{ exit }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        --suite) SUITE="${2:?--suite needs a value}"; shift ;;
        --mirror) MIRROR="${2:?--mirror needs a value}"; shift ;;
        --tag) TAG="${2:?--tag needs a value}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "make-base.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
TAG="${TAG:-berth/debian-base:$SUITE}"

if [ "$FORCE" -eq 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "make-base.sh: $TAG already exists (use --force to rebuild)"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "make-base.sh: debootstrap not found; install it (apt-get install -y debootstrap)" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "make-base.sh: must run as root (debootstrap needs it)" >&2
    exit 1
fi

ROOTFS="$(mktemp -d /tmp/berth-debian-base.XXXXXX)"
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the target when it fails.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
    done
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

echo "make-base.sh: debootstrap --variant=minbase $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR"

# Slim the tree the way the official images do: no apt caches or lists, no logs.
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
# debootstrap writes only "<suite> main"; add the updates and security suites.
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
cat > "$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
# Containers have no init to keep services from starting during package installs.
printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
# apt inside images: never install recommends by default, keep no caches.
cat > "$ROOTFS/etc/apt/apt.conf.d/90berth-docker" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT
: > "$ROOTFS/etc/hostname"
: > "$ROOTFS/etc/resolv.conf"

echo "make-base.sh: importing $TAG"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE" \
    - "$TAG"
docker image inspect --format '{{.Id}} {{.Size}}' "$TAG"
echo "make-base.sh: done: $TAG"
