#!/usr/bin/env bash
# Starts a private PostgreSQL server for the tests and prints its URL (BERTH_TEST_POSTGRES_URL).
# It uses Debian's server binaries with a data directory of its own, so it does not depend on the
# state of the system cluster on a fresh machine (not created, not started, port taken, no
# systemd). It listens on no TCP port at all: only a Unix socket in a directory nobody else may
# enter, because it trusts whoever connects (a superuser must not be open to every local user of
# a shared lab server). Every step reports to stderr; only the URL goes to stdout.
set -euo pipefail
log() { echo "ensure-postgres: $*" >&2; }

uid=$(id -u)
dir=${BERTH_TEST_PG_DIR:-/tmp/berth-test-pg-$uid}
port=${BERTH_TEST_PG_PORT:-55432}
case "$port" in '' | *[!0-9]*) log "BERTH_TEST_PG_PORT must be a number, not '$port'"; exit 1 ;; esac
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  log "no PostgreSQL server under /usr/lib/postgresql (scripts/install-deps.sh installs 'postgresql')"
  exit 1
fi

# PostgreSQL refuses to run as root: as root, run it as the 'postgres' account Debian creates.
owner=$(id -un)
[ "$uid" -eq 0 ] && owner=postgres
as_owner() {
  if [ "$uid" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Two test runs at once must not both initdb or start (the server itself must not inherit the lock).
exec 9>"$dir.lock"
flock 9

if [ ! -d "$dir" ]; then
  mkdir -m 0700 "$dir"
  chown "$owner": "$dir"
fi
if [ "$(stat -c %U "$dir")" != "$owner" ]; then
  log "$dir belongs to $(stat -c %U "$dir"), not $owner: refusing to use it (set BERTH_TEST_PG_DIR)"
  exit 1
fi
chmod 0700 "$dir"
data=$dir/data

if [ ! -f "$data/PG_VERSION" ]; then
  log "initdb $data"
  as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --no-locale -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { log "initdb failed:"; cat "$dir/initdb.log" >&2; exit 1; }
fi

if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  log "starting PostgreSQL ($bin), socket in $dir"
  # fsync off: test data is thrown away, and it makes the suite's many CREATE DATABASEs cheap.
  as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses='' -c fsync=off -c max_connections=200" start >/dev/null 9>&- ||
    { log "PostgreSQL did not start; its log:"; tail -n 30 "$dir/server.log" >&2; exit 1; }
fi

if ! as_owner "$bin/pg_isready" -q -h "$dir" -p "$port"; then
  log "PostgreSQL in $dir (port $port) does not answer; its log:"
  tail -n 30 "$dir/server.log" >&2
  exit 1
fi
echo "postgres://postgres@localhost:$port/postgres?host=$dir"
