#!/usr/bin/env bash
# Starts Debian's PostgreSQL cluster (creating one if needed) and a `berth` superuser role for
# the tests; prints the URL tests use for BERTH_TEST_POSTGRES_URL.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q .; then
  pg_createcluster "$ver" main >/dev/null
fi
read -r cver cname cport cstatus _ < <(pg_lsclusters -h | head -1)
if [ "$cstatus" != "online" ]; then
  pg_ctlcluster "$cver" "$cname" start
fi
for _ in $(seq 1 30); do
  su postgres -c "psql -p $cport -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -p $cport -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='berth'\"" | grep -q 1 ||
  su postgres -c "psql -p $cport -qc \"CREATE ROLE berth LOGIN SUPERUSER PASSWORD 'berth-test-only'\"" >/dev/null
echo "postgres://berth:berth-test-only@127.0.0.1:$cport/postgres"
