#!/usr/bin/env bash
# Builds the workspace image (PROFILE=slim by default) from the local debootstrapped base,
# trusting the host's extra CA certificates (sites behind a TLS-inspecting proxy need them).
set -euo pipefail
cd "$(dirname "$0")/.."
cas=()
for f in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$f" ] && cas+=(--ca-bundle "$f")
done
exec docker/workspace/build.sh --profile "${PROFILE:-slim}" --base berth/debian-base:bookworm "${cas[@]}" "$@"
