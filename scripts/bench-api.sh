#!/usr/bin/env bash
# Benchmark: the REST API's cheapest authenticated call (GET /api/v1/me with a personal token:
# one token lookup in the database per request) against /healthz (one database ping) on the same
# server, same wrk settings, same run. Loopback only. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BERTH_BIN:-target/release/berth}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
export BERTH_LISTEN=127.0.0.1:$port BERTH_DATABASE_URL=sqlite://$work/berth.db BERTH_DATA_DIR=$work/data \
       BERTH_STORAGE_ROOT=$work/storage BERTH_CONFIG=$work/none.toml BERTH_LOG=warn
"$BIN" serve >/dev/null 2>"$work/berth.log" & pids+=($!)
up=0
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && { up=1; break; }; sleep 0.1; done
[ "$up" = 1 ] || { echo "berth did not answer on port $port; its log:" >&2; cat "$work/berth.log" >&2; exit 1; }
echo "alice-password-long" | "$BIN" user add alice --password-stdin >/dev/null
cookie=$(curl -s -D - -o /dev/null -H "Origin: $base" --data "username=alice&password=alice-password-long" "$base/api/login" |
  tr -d '\r' | sed -n 's/^set-cookie: \(berth_session=[^;]*\).*/\1/Ip')
[ -n "$cookie" ] || { echo "login failed"; exit 1; }
token=$(curl -s -H "Cookie: $cookie" -H "Origin: $base" -H "Accept: text/html" \
  --data "op=create-token&name=bench&days=30&scope_workspace:read=yes" "$base/account/do" |
  sed -n 's|.*<code id="secret">\(berth_[0-9a-f]*\)</code>.*|\1|p')
[ -n "$token" ] || { echo "no token from the account page"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base/api/v1/me")
[ "$code" = 200 ] || { echo "/api/v1/me answered $code"; exit 1; }

run() { wrk -t"${THREADS:-2}" -c"$CONNS" -d"$DURATION" --latency "$@"; }
parse() {
  local out=$1
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out")|$(awk '$1=="99%" {print $2}' <<<"$out")|$(awk '/Non-2xx/ {print $5}' <<<"$out")"
}
run -H "Authorization: Bearer $token" "$base/api/v1/me" >/dev/null # warm-up
a=$(parse "$(run -H "Authorization: Bearer $token" "$base/api/v1/me")")
h=$(parse "$(run "$base/healthz")")
IFS='|' read -r a_rps a_p99 a_bad <<<"$a"
IFS='|' read -r h_rps h_p99 h_bad <<<"$h"
echo
echo "| endpoint | req/s | p99 | non-2xx |"
echo "|---|---|---|---|"
echo "| GET /api/v1/me (token) | $a_rps | $a_p99 | ${a_bad:-0} |"
echo "| GET /healthz (database ping) | $h_rps | $h_p99 | ${h_bad:-0} |"
echo
echo "ratio (API / healthz): $(python3 -c "print(f'{$a_rps/$h_rps:.2f}')")"
