#!/usr/bin/env bash
# The production compose file must parse (docker-compose from Debian, v1 syntax).
set -euo pipefail
cd "$(dirname "$0")/../docker"
BERTH_PUBLIC_URL=https://berth.example.org BERTH_DOMAIN=example.org \
GUACAMOLE_JSON_SECRET_KEY=00112233445566778899aabbccddeeff \
  docker-compose -p berth -f compose.yaml config >/dev/null
echo "docker/compose.yaml: valid"
