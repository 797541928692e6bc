#!/usr/bin/env bash
# Builds berth-test/busybox:latest (FROM scratch + Debian's busybox-static) unless present.
set -euo pipefail
cd "$(dirname "$0")/.."
image=berth-test/busybox:latest
if docker image inspect "$image" >/dev/null 2>&1 && [ "${1:-}" != "--force" ]; then exit 0; fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp /bin/busybox "$ctx/busybox"
cp docker/test/Dockerfile docker/test/serve.sh "$ctx/"
docker build -q -t "$image" "$ctx" >/dev/null
echo "built $image"
