#!/usr/bin/env bash
# The production compose file must parse (docker-compose from Debian, v1 syntax), with and
# without the monitoring profile, and the profile must gate exactly its own services.
set -euo pipefail
cd "$(dirname "$0")/../docker"
compose() {
  BERTH_PUBLIC_URL=https://berth.example.org BERTH_DOMAIN=example.org \
  GUACAMOLE_JSON_SECRET_KEY=00112233445566778899aabbccddeeff \
    docker-compose -p berth -f compose.yaml "$@"
}
compose config >/dev/null
compose --profile monitoring config >/dev/null

# docker-compose 1.29's `config --services` lists every service whatever the active profiles, so
# read them from the resolved config (PyYAML comes with Debian's docker-compose): a service
# starts when it has no profiles or one of them is active. Prints the names, space-separated.
enabled() {
  python3 -c '
import sys, yaml
active = set(sys.argv[1:])
services = yaml.safe_load(sys.stdin)["services"]
print(" ".join(sorted(n for n, s in services.items()
                      if "profiles" not in s or active & set(s["profiles"]))))
' "$@"
}
defined=$(compose --profile monitoring config --services | sort | tr '\n' ' ')
default=$(compose config | enabled)
monitoring=$(compose --profile monitoring config | enabled monitoring)
fail() { echo "docker/compose.yaml: $*" >&2; exit 1; }
for s in prometheus grafana; do
  [[ " $defined " == *" $s "* ]] || fail "service $s is not defined"
  [[ " $monitoring " == *" $s "* ]] || fail "service $s does not start with --profile monitoring"
  [[ " $default " != *" $s "* ]] || fail "service $s starts without --profile monitoring"
done
[[ $default == "berth guacamole guacd traefik" ]] || fail "default services are: $default"
echo "docker/compose.yaml: valid (default: $default; --profile monitoring: $monitoring)"

# The files the monitoring profile mounts.
python3 -m json.tool grafana/dashboards/berth.json >/dev/null
python3 -c '
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        yaml.safe_load(f)
' prometheus/prometheus.yml grafana/provisioning/datasources/prometheus.yml \
  grafana/provisioning/dashboards/berth.yml
echo "docker/prometheus, docker/grafana: valid"
