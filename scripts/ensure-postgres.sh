#!/usr/bin/env bash
# Starts a private PostgreSQL server for the tests and prints its URL (BERTH_TEST_POSTGRES_URL).
# It uses Debian's server binaries with a data directory of its own, trust auth on loopback only,
# so it does not depend on the state of the system cluster on a fresh machine (not created, not
# started, port taken, no systemd). Every step reports to stderr; only the URL goes to stdout.
set -euo pipefail
log() { echo "ensure-postgres: $*" >&2; }

dir=${BERTH_TEST_PG_DIR:-/tmp/berth-test-pg}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  log "no PostgreSQL server under /usr/lib/postgresql (scripts/install-deps.sh installs 'postgresql')"
  exit 1
fi

# PostgreSQL refuses to run as root: as root, run it as the 'postgres' account Debian creates.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
data=$dir/data

if [ ! -f "$data/PG_VERSION" ]; then
  log "initdb $data"
  as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --no-locale -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { log "initdb failed:"; cat "$dir/initdb.log" >&2; exit 1; }
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 && [ -f "$dir/port" ]; then
  port=$(cat "$dir/port")
else
  port=${BERTH_TEST_PG_PORT:-55432}
  while ! port_free "$port"; do port=$((port + 1)); done
  log "starting PostgreSQL ($bin) on 127.0.0.1:$port"
  echo "$port" >"$dir/port"
  # fsync off: test data is thrown away, and it makes the suite's many CREATE DATABASEs cheap.
  as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null ||
    { log "PostgreSQL did not start; its log:"; tail -n 30 "$dir/server.log" >&2; exit 1; }
fi

if ! as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  log "PostgreSQL on port $port does not answer; its log:"
  tail -n 30 "$dir/server.log" >&2
  exit 1
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
